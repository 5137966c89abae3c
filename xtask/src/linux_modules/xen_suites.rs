//! The real-Xen suites that use the built modules: `linux-blkfront-xen` and
//! `linux-blkfront-xen-sluice` (the test bed's block scenarios with `sluice-blkfront.ko`
//! swapped in for the stock `xen-blkfront.ko` under a kernel "version" of its own, removed
//! when done) and `xen-console` (the guests load `sluice-consfront.ko`).

use super::{build, Kernel};
use crate::util::{cargo, run};
use anyhow::{ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A kernel "version" that exists only for the real-Xen blkfront suite: the host's
/// kernel image and modules, with `xen-blkfront.ko` replaced by `sluice-blkfront.ko`.
/// Its numbers sort below every real version, so nothing picks it unless asked by name
/// (`SLUICE_KERNEL_VERSION`); the suite removes it when done.
const SWAPPED_KERNEL: &str = "6.1.0-0-sluiceblk";

/// Builds the swapped kernel tree; returns a guard that removes it.
fn swap_in_blkfront(kernel: &Kernel, ko: &Path) -> Result<impl Drop> {
    struct Cleanup(Vec<PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(p)
                } else {
                    fs::remove_file(p)
                };
            }
        }
    }
    let real = Path::new("/lib/modules").join(&kernel.version);
    let fake = Path::new("/lib/modules").join(SWAPPED_KERNEL);
    let image = Path::new("/boot").join(format!("vmlinuz-{SWAPPED_KERNEL}"));
    let guard = Cleanup(vec![fake.clone(), image.clone()]);
    if fake.exists() {
        fs::remove_dir_all(&fake)?;
    }
    fs::create_dir_all(fake.join("sluice"))?;
    for f in [
        "kernel",
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        std::os::unix::fs::symlink(real.join(f), fake.join(f))?;
    }
    fs::copy(ko, fake.join("sluice/xen-blkfront.ko"))?;
    let dep = fs::read_to_string(real.join("modules.dep"))?;
    let stock = "kernel/drivers/block/xen-blkfront.ko:";
    ensure!(
        dep.lines().any(|l| l.starts_with(stock)),
        "modules.dep of {} has no xen-blkfront",
        kernel.version
    );
    let dep: String = dep
        .lines()
        .map(|l| match l.strip_prefix(stock) {
            Some(rest) => format!("sluice/xen-blkfront.ko:{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    fs::write(fake.join("modules.dep"), dep)?;
    let _ = fs::remove_file(&image);
    std::os::unix::fs::symlink(&kernel.image, &image)?;
    Ok(guard)
}

/// `linux-blkfront-xen`: the test bed's real-Xen block scenarios (PV and PVH domUs,
/// kernel blkback; console, raw pattern write/read-verify, ext4 + fsck, host-side image
/// checks) with `sluice-blkfront.ko` as the guests' block frontend instead of the stock
/// `xen-blkfront`.
pub fn run_blkfront_xen() -> Result<()> {
    testbed_with_blkfront("xen_blk")
}

/// `linux-blkfront-xen-sluice`: the same with Sluice's userspace blkback (and
/// consoleback) in dom0 (`tests/tests/xen_userspace.rs`).
pub fn run_blkfront_xen_sluice() -> Result<()> {
    testbed_with_blkfront("xen_userspace")
}

/// `xen-console`: secondary consoles on real Xen (`tests/tests/xen_console.rs`): the
/// modules built first (the guests load `sluice-consfront.ko`).
pub fn run_console_xen() -> Result<()> {
    build()?;
    run(cargo()
        .args([
            "test",
            "-p",
            "sluice-testbed",
            "--test",
            "xen_console",
            "--",
        ])
        .args(["--ignored", "--nocapture", "--test-threads=1"]))
}

fn testbed_with_blkfront(test: &str) -> Result<()> {
    let (kernel, kos) = build()?;
    let ko = kos
        .iter()
        .find(|k| k.ends_with("sluice-blkfront.ko"))
        .context("sluice-blkfront.ko was not built")?;
    let _swap = swap_in_blkfront(&kernel, ko)?;
    run(cargo()
        .env("SLUICE_KERNEL_VERSION", SWAPPED_KERNEL)
        // sluice-blkfront re-announces Initialising on probe: unload/reload is tested.
        .env("SLUICE_TESTBED_BLKFRONT", "sluice")
        .args(["test", "-p", "sluice-testbed", "--test", test, "--"])
        .args(["--ignored", "--nocapture", "--test-threads=1"]))
}
