//! Builds a Sluice daemon from the workspace so a scenario can put it in dom0.

use crate::paths::repo_root;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// `cargo build --release -p PACKAGE --bin BIN` in the repository, returning the binary.
/// Honours `CARGO_TARGET_DIR`. The binary is copied into dom0 with its ldd libraries,
/// so a normal glibc build works.
pub fn cargo_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["build", "--release", "-q", "-p", package, "--bin", bin])
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("running {cargo} build -p {package}"))?;
    if !st.success() {
        bail!("cargo build -p {package} --bin {bin} failed: {st}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let p = target.join("release").join(bin);
    if !p.exists() {
        bail!("{} missing after cargo build", p.display());
    }
    Ok(p)
}

/// True when the root workspace has a package named `package` (e.g. a backend that
/// has not landed yet is simply absent).
pub fn workspace_has_package(package: &str) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(["pkgid", "-q", package])
        .current_dir(repo_root())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
