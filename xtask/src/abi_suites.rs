//! Suites for the `abi` crate's shared ring: the long two-thread stress test, the ring
//! under Miri, and a short run of every fuzz target.

use crate::util::{cargo, have, root, run};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Seconds each fuzz target runs in `abi-fuzz-smoke`.
const FUZZ_SECONDS: u32 = 5;

/// `abi-ring-stress`: 10^7 requests between two threads over one shared ring, with
/// eventfd notifications driven by the ring's event-threshold protocol (release build).
pub fn ring_stress() -> Result<()> {
    run(cargo().args([
        "test",
        "--release",
        "-p",
        "sluice-abi",
        "--test",
        "ring_stress",
        "--",
        "--ignored",
        "--nocapture",
    ]))
}

/// `cargo +nightly ...` through the rustup proxy, with the variables the outer (pinned)
/// cargo set removed so that `+nightly` decides the toolchain.
pub fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    c
}

fn have_nightly() -> bool {
    have("rustup") && crate::setup::have_nightly()
}

/// The targets `cargo fuzz list` names.
pub fn fuzz_targets() -> Result<Vec<String>> {
    let list = nightly_cargo()
        .args(["fuzz", "list"])
        .output()
        .context("cargo +nightly fuzz list")?;
    if !list.status.success() {
        bail!(
            "cargo +nightly fuzz list failed: {}",
            String::from_utf8_lossy(&list.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("fuzz/ has no targets");
    }
    Ok(targets)
}

/// `abi-fuzz-lint`: fmt and clippy of the `fuzz/` workspace (its own workspace, outside
/// the host workspace's checks): every target still builds against today's crates.
pub fn fuzz_lint() -> Result<()> {
    if !have_nightly() {
        eprintln!("abi-fuzz-lint: SKIPPED: no nightly toolchain (`cargo xtask setup` installs it)");
        return Ok(());
    }
    let fuzz_dir = root().join("fuzz");
    run(nightly_cargo()
        .current_dir(&fuzz_dir)
        .args(["fmt", "--check"]))?;
    run(nightly_cargo().current_dir(&fuzz_dir).args([
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// `abi-fuzz-smoke` (opt-in): the lint above, then every target with its seeds for a
/// short while under ASan; a crash fails the suite.
pub fn fuzz_smoke() -> Result<()> {
    if !have_nightly() {
        eprintln!(
            "abi-fuzz-smoke: SKIPPED: no nightly toolchain (cargo-fuzz needs one: `cargo xtask setup` installs it)"
        );
        return Ok(());
    }
    if !have("cargo-fuzz") {
        bail!(
            "cargo-fuzz is not installed: run `cargo xtask setup` (or `cargo install cargo-fuzz`)"
        );
    }
    let targets = fuzz_targets()?;
    fuzz_lint()?;
    let fuzz_dir = root().join("fuzz");
    for t in &targets {
        let scratch = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&scratch)?;
        // 16 codegen units instead of cargo-fuzz's one: a shorter build for a 5 s run
        // (still optimised: unoptimised, the xenstore and ring targets took 20-70 s
        // just to replay their seeds).
        run(nightly_cargo().args([
            "fuzz",
            "run",
            "--codegen-units",
            "16",
            t,
            scratch.to_str().context("non-UTF-8 path")?,
            fuzz_dir
                .join("seeds")
                .join(t)
                .to_str()
                .context("non-UTF-8 path")?,
            "--",
            &format!("-max_total_time={FUZZ_SECONDS}"),
            "-print_final_stats=1",
        ]))
        .with_context(|| format!("fuzz target {t} found a failure (see fuzz/artifacts/{t}/)"))?;
    }
    Ok(())
}

/// `abi-ring-miri`: the `shared` and `ring` unit tests under Miri (undefined behaviour,
/// aliasing, out-of-bounds), then the two-thread ring under Miri's data-race detector and
/// weak-memory emulation (which fails if an index publish is not `Release`).
pub fn ring_miri() -> Result<()> {
    if !have_nightly() {
        eprintln!(
            "abi-ring-miri: SKIPPED: no nightly toolchain (Miri needs one: `cargo xtask setup` installs it)"
        );
        return Ok(());
    }
    // Idempotent: a no-op when Miri is installed.
    run(Command::new("rustup").args([
        "component",
        "add",
        "--toolchain",
        "nightly",
        "miri",
        "rust-src",
    ]))?;
    // The unit tests copy at every alignment on one thread; Miri's weak-memory emulation
    // cannot model mixed-size atomics, which only the two-thread run below needs.
    run(nightly_cargo()
        .env("MIRIFLAGS", "-Zmiri-disable-weak-memory-emulation")
        .args([
            "miri",
            "test",
            "-p",
            "sluice-abi",
            "--lib",
            "--",
            "shared::tests",
            "ring::tests",
        ]))?;
    run(nightly_cargo().args([
        "miri",
        "test",
        "-p",
        "sluice-abi",
        "--test",
        "ring_stress",
        "spin",
    ]))
}
