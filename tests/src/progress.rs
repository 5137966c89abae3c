//! Step lines with times, so a person watching a long QEMU run sees where it is.

use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
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
        Err(e) => note(&format!("{name}: FAILED ({secs:.1} s): {e:#}")),
    }
    r
}
