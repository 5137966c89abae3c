//! Turns a [`Boot`] into what QEMU needs: the dom0 initramfs (Xen toolstack, kernel
//! modules, daemons, one script and one `xl` config per guest step, the guest kernel
//! and initramfs) and one raw image per guest disk.

mod dom0;
mod dom0_sh;
mod guest;
mod guest_sh;
mod staging;
#[cfg(test)]
mod tests;
mod validate;
mod xl;

use crate::kernel::HostKernel;
use crate::paths::run_dir;
use crate::scenario::{vdev, Boot, GuestStep};
use crate::serial::VirtioDisk;
use crate::xenpkgs::XenTree;
use anyhow::Result;
use std::fs;
use std::path::PathBuf;
use validate::validate;

pub use dom0::{daemon_args, step_daemons};
pub use guest::{secondary_console_module, HOSTILE_BIN};
pub use xl::{disk_spec, vif_mac, vif_spec, USERSPACE_BLOCK_SCRIPT, USERSPACE_VIF_SCRIPT};

/// The guest address of step `step_idx` on dom0's bridge.
pub fn guest_ip(step_idx: usize) -> String {
    format!("10.99.0.{}", 10 + step_idx)
}

/// What the host verifies in a disk image after the run.
#[derive(Debug, Clone)]
pub enum HostCheck {
    Pattern {
        image: PathBuf,
        data: Vec<u8>,
        sectors: Vec<u64>,
    },
    Ext4 {
        image: PathBuf,
        data: Vec<u8>,
    },
    /// `count` sectors at `sector` were discarded: a hole reading as zeroes.
    Hole {
        image: PathBuf,
        sector: u64,
        count: u64,
    },
    /// The image is `size` bytes, holds `data` at `sector` and zeroes everywhere else.
    OnlyWritten {
        image: PathBuf,
        size: u64,
        sector: u64,
        data: Vec<u8>,
    },
}

/// Per step: its name and the host checks of its workloads ([`Prepared::host_checks`]).
type StepHostChecks = Vec<(String, Vec<(String, HostCheck)>)>;

/// Everything built for one boot.
#[derive(Debug)]
pub struct Prepared {
    pub xen: PathBuf,
    pub kernel: HostKernel,
    pub dom0_initrd: PathBuf,
    /// Raw images as dom0's virtio disks, in QEMU order.
    pub disks: Vec<VirtioDisk>,
    /// Per step: the checks the guest must report and the host checks to run after.
    pub host_checks: Vec<(String, Vec<(String, HostCheck)>)>,
}

/// The seed of a disk's test data.
pub(super) fn seed(boot: &Boot, step: &GuestStep, disk: usize) -> String {
    format!("{}/{}/{}", boot.name, step.name, disk)
}

/// The virtio serial (and `/dev/NAME` link in dom0) of disk `disk` of step `step`.
pub fn disk_serial(step_idx: usize, disk: usize) -> String {
    format!("sluice-s{step_idx}d{disk}")
}

/// Builds everything; `progress` gets one line per finished part.
pub fn prepare(boot: &Boot, xen: &XenTree, kernel: &HostKernel) -> Result<Prepared> {
    validate(boot)?;
    let dir = run_dir(&boot.name);
    fs::create_dir_all(&dir)?;
    let xen_bin = xen.hypervisor()?;

    // Guest initramfs (one for all steps: /init picks the step from the command line).
    let guest_initrd = dir.join("domu.cpio");
    let host_checks = guest::guest_initramfs(boot, kernel, &dir, &guest_initrd)?;

    // Disk images: sparse, all zero.
    let mut disks = Vec::new();
    for (si, step) in boot.steps.iter().enumerate() {
        for (di, d) in step.disks.iter().enumerate() {
            if d.of.is_some() {
                // An earlier step's device.
                continue;
            }
            let img = dir.join(format!("{}-{}.img", step.name, vdev(di)));
            let f = fs::File::create(&img)?;
            f.set_len(d.size_mib << 20)?;
            disks.push(VirtioDisk {
                image: img,
                serial: disk_serial(si, di),
                sector_size: d.sector_size,
            });
        }
    }

    // dom0 initramfs.
    let dom0_initrd = dir.join("dom0.cpio");
    dom0::dom0_initramfs(boot, xen, kernel, &dir, &guest_initrd, &disks, &dom0_initrd)?;
    Ok(Prepared {
        xen: xen_bin,
        kernel: kernel.clone(),
        dom0_initrd,
        disks,
        host_checks,
    })
}
