//! Where the test bed keeps things. All of it lives under the repository's `build/`
//! (git-ignored), so runs reuse caches and failed runs leave their logs in one place.

use std::path::{Path, PathBuf};

/// The repository root (`tests/` is one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives one level below the repository root")
        .to_path_buf()
}

/// `build/` at the repository root.
pub fn build_dir() -> PathBuf {
    repo_root().join("build")
}

/// Debian packages (`.deb`) and their unpacked tree; reused between runs.
pub fn xen_pkgs_dir() -> PathBuf {
    build_dir().join("xen-pkgs")
}

/// Derived kernel artefacts (the uncompressed guest kernel); reused between runs.
pub fn kernel_cache_dir() -> PathBuf {
    build_dir().join("kernel")
}

/// Staging trees, initramfs images and disk images of one boot.
pub fn run_dir(boot: &str) -> PathBuf {
    build_dir().join("testbed-run").join(boot)
}

/// Logs of one boot: serial console, per-guest console, dom0 daemon logs.
pub fn logs_dir(boot: &str) -> PathBuf {
    build_dir().join("testbed-logs").join(boot)
}
