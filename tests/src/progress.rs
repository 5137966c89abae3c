//! Step lines with times, so a person watching a long QEMU run sees where it is.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

thread_local! {
    static EXPECTING_FAILURE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a run that a negative test expects to fail): a failing step then prints
/// "refused as expected" instead of "FAILED", and the detail goes only to the run's
/// log folder (`failure.txt`), so a reader of the output sees no false alarm. The test
/// still checks the failure's kind itself.
pub fn expecting_failure<T>(f: impl FnOnce() -> T) -> T {
    let before = EXPECTING_FAILURE.replace(true);
    let r = f();
    EXPECTING_FAILURE.set(before);
    r
}

/// True inside [`expecting_failure`].
pub fn failure_expected() -> bool {
    EXPECTING_FAILURE.get()
}

/// Prints `[  12.3 s] message` to stderr.
pub fn note(msg: &str) {
    eprintln!("[{:7.1} s] {msg}", start().elapsed().as_secs_f64());
}

/// Runs `f`, printing a line before and one with the duration after.
pub fn step<T>(name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    note(&format!("{name} ..."));
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    match &r {
        Ok(_) => note(&format!("{name}: ok ({secs:.1} s)")),
        Err(_) if failure_expected() => note(&format!(
            "{name}: refused as expected ({secs:.1} s; detail in the log folder's failure.txt)"
        )),
        Err(e) => note(&format!("{name}: FAILED ({secs:.1} s): {e:#}")),
    }
    r
}
