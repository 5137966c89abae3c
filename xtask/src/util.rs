//! Small helpers for running commands with readable progress and errors.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The repository root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

/// Runs `cmd`, echoing it first; fails with the command line when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| {
            format!("cannot start {line}: a missing tool? `cargo xtask setup` installs every tool the project uses")
        })?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(())
}

/// `cargo` from the toolchain that runs xtask (honours rust-toolchain.toml).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Prints a step header and its duration when it ends.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("\n==> {name}");
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    match &r {
        Ok(_) => eprintln!("<== {name}: ok ({secs:.1} s)"),
        Err(e) => eprintln!("<== {name}: FAILED ({secs:.1} s): {e:#}"),
    }
    r
}

/// True when `prog` is found on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Free space on the repository's filesystem in MiB (from `df`), or None when `df`
/// cannot tell. A full run needs about 9 GiB (target/ ~6, the hypervisor's and fuzz's
/// targets ~1.7, images ~0.5); a full disk fails a suite midway with "No space left".
pub fn free_mib() -> Option<u64> {
    let out = Command::new("df")
        .args(["-P", "-BM"])
        .arg(root())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let avail = line.split_whitespace().nth(3)?;
    avail.trim_end_matches('M').parse().ok()
}
