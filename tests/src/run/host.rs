//! The host's checks of the disk images after the run ([`HostCheck`]): patterns, holes,
//! untouched sectors, and ext4 file systems read with e2fsck and debugfs.

use super::BootReport;
use crate::error::Failure;
use crate::images::{HostCheck, Prepared};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

pub(super) fn host_checks(prepared: &Prepared, report: &mut BootReport) -> Result<()> {
    for (step_name, checks) in &prepared.host_checks {
        for (id, c) in checks {
            match c {
                HostCheck::Pattern {
                    image,
                    data,
                    sectors,
                } => {
                    crate::pattern::verify_pattern(image, data, sectors)
                        .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?;
                }
                HostCheck::Ext4 { image, data } => host_ext4(image, data)
                    .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?,
                HostCheck::Hole {
                    image,
                    sector,
                    count,
                } => crate::pattern::verify_hole(image, *sector, *count)
                    .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?,
                HostCheck::OnlyWritten {
                    image,
                    size,
                    sector,
                    data,
                } => crate::pattern::verify_only_written(image, *size, *sector, data)
                    .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?,
            }
            report
                .passed
                .push((format!("{step_name}/{id} (host)"), "image verified".into()));
        }
    }
    Ok(())
}

/// e2fsck on the image must be clean, and the files read with debugfs must be what the
/// guest wrote.
fn host_ext4(image: &Path, data: &[u8]) -> Result<()> {
    let e2fsck = ["/usr/sbin/e2fsck", "/sbin/e2fsck"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("e2fsck not on the host: run `cargo xtask setup` (installs e2fsprogs)")?;
    let o = Command::new(e2fsck).arg("-fn").arg(image).output()?;
    if !o.status.success() {
        bail!(
            "host e2fsck -fn {}: {}\n{}",
            image.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let debugfs = ["/usr/sbin/debugfs", "/sbin/debugfs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("debugfs not on the host: run `cargo xtask setup` (installs e2fsprogs)")?;
    let cat = |path: &str| -> Result<Vec<u8>> {
        let o = Command::new(debugfs)
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(image)
            .output()?;
        if !o.status.success() {
            bail!("debugfs cat {path} failed");
        }
        Ok(o.stdout)
    };
    if cat("/pattern.bin")? != data {
        bail!("/pattern.bin in the image differs from what the guest wrote");
    }
    if cat("/dir/big.bin")? != data[..128 * 4096] {
        bail!("/dir/big.bin in the image differs from what the guest wrote");
    }
    for n in [0, 7, 15] {
        if cat(&format!("/dir/file-{n}.txt"))? != format!("sluice file {n}\n").as_bytes() {
            bail!("/dir/file-{n}.txt in the image differs");
        }
    }
    trimmed_to_used(image, debugfs)
}

/// After the guest's fstrim (`check_ext4` wrote 16 MiB of random data, deleted it and
/// ran fstrim) the image, sparse when created, may hold at most the file system's used
/// blocks plus 8 MiB of allocated data: without the discards reaching the image the
/// deleted file's 16 MiB would still be allocated.
fn trimmed_to_used(image: &Path, debugfs: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let o = Command::new(debugfs)
        .arg("-R")
        .arg("stats")
        .arg(image)
        .output()?;
    if !o.status.success() {
        bail!("debugfs stats failed");
    }
    let stats = String::from_utf8_lossy(&o.stdout);
    let field = |name: &str| -> Result<u64> {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("debugfs stats has no '{name}'"))
    };
    let (blocks, free, size) = (
        field("Block count:")?,
        field("Free blocks:")?,
        field("Block size:")?,
    );
    let used = (blocks - free.min(blocks)) * size;
    let allocated = std::fs::metadata(image)?.blocks() * 512;
    const SLACK: u64 = 8 << 20;
    if allocated > used + SLACK {
        bail!(
            "{}: {allocated} bytes allocated but the file system uses only {used}: the fstrim \
             of the deleted 16 MiB did not punch holes in the image",
            image.display()
        );
    }
    Ok(())
}
