//! Shared helpers for the initramfs builders: host programs and libraries to copy, and
//! kernel modules staged with their dependencies.

use crate::initramfs::Initramfs;
use crate::kernel::HostKernel;
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Copies kernel modules `names` with their dependencies into `r`'s `/lib/modules/` and
/// lists them, in load order, in `list` (an empty list for no names).
pub(super) fn stage_modules(
    r: &Initramfs,
    kernel: &HostKernel,
    names: &[&str],
    list: &str,
) -> Result<()> {
    let mut text = String::new();
    if !names.is_empty() {
        for ko in kernel.modules_in_load_order(names)? {
            let name = ko.file_name().unwrap().to_string_lossy().to_string();
            r.file(&ko, &format!("/lib/modules/{name}"))?;
            writeln!(text, "/lib/modules/{name}")?;
        }
    }
    r.bytes(list, text.as_bytes(), 0o644)
}

pub(super) fn which(prog: &str) -> Result<PathBuf> {
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(d).join(prog);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{prog} not found on the host: run `cargo xtask setup` (it installs it)")
}

pub(super) fn find_libgcc_s() -> Result<PathBuf> {
    for d in ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"] {
        let p = Path::new(d).join("libgcc_s.so.1");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("libgcc_s.so.1 not found")
}
