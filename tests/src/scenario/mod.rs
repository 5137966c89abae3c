//! The typed description of one test-bed run: one Xen boot, the dom0 daemons it starts,
//! and a list of guest steps, each one domU with its disks and workloads.

mod boot;
mod misbehaviour;
mod step;
mod workload;

use std::path::PathBuf;

pub use boot::{guest_blkfront_reloads, standard_steps, Boot, Dom0Daemon};
pub use misbehaviour::{
    BackendMisbehaviour, NetMisbehaviour, HOSTILE_LOG_LINES, HOSTILE_LOG_MAX_LINES,
    HOSTILE_STEADY_SECTORS, HOSTILE_WRITE_BYTES,
};
pub use step::{CustomKernel, GuestStep};
pub use workload::{vdev, Workload};

/// Guest virtualisation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    Pv,
    /// PVH; under QEMU TCG it needs `tsc_mode="native"` (added automatically).
    Pvh,
}

impl GuestType {
    pub fn xl_type(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
        }
    }
}

/// Who serves a virtual disk in dom0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockBackend {
    /// Linux's `xen-blkback` with the stock `block` hotplug script.
    KernelBlkback,
    /// A userspace daemon in dom0 (e.g. `sluice-blkback`) that watches `backend/vbd`.
    /// The disk line keeps `backendtype=phy` but names the no-op hotplug script
    /// `/etc/xen/scripts/block-userspace` (it only reports `hotplug-status connected`),
    /// and `xen-blkback.ko` is not loaded, so the daemon is the only backend.
    Userspace,
}

/// Who serves guest consoles in dom0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleBackend {
    /// Xen's `xenconsoled`.
    Xenconsoled,
    /// A userspace daemon from [`Boot::daemons`] (e.g. `sluice-consoleback`);
    /// `xenconsoled` is not started.
    Userspace,
}

/// Who serves a guest's network interface (`vif`) in dom0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetBackend {
    /// A userspace daemon in dom0 (`sluice-netback`, a plain [`Dom0Daemon`]) that watches
    /// `backend/vif`; the vif line names the hotplug script
    /// `/etc/xen/scripts/vif-userspace` (puts the daemon's tap on the bridge, reports
    /// `hotplug-status connected`); `xen-netback.ko` is not loaded in that boot.
    Userspace,
    /// Linux's `xen-netback` with Xen's stock `vif-bridge` script. Both would watch
    /// `backend/vif`, so the two kinds take turns: a step with a kernel vif stops the
    /// [`Dom0Daemon::serves_net`] daemons and loads `xen-netback.ko`; a step with a
    /// userspace vif unloads it and starts them (same-boot A/B comparisons).
    Kernel,
}

/// Who drives a guest's vif in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFrontend {
    /// The kernel's `xen-netfront`, loaded at boot.
    Stock,
    /// A module file on the host (e.g. `sluice-netfront.ko`, built for the guest
    /// kernel), loaded at boot instead of `xen-netfront`; its module name is the file
    /// stem with `-` as `_`.
    Module(PathBuf),
}

/// A guest's one network interface: who serves it in dom0 and who drives it in the
/// guest ([`GuestStep::with_vif`], [`GuestStep::with_vif_frontend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vif {
    /// dom0's end.
    pub backend: NetBackend,
    /// The guest's end.
    pub frontend: NetFrontend,
}

impl Vif {
    /// The frontend module's file on the host and its module name, when the guest's end
    /// is a module of ours.
    pub fn module(&self) -> Option<(&PathBuf, String)> {
        match &self.frontend {
            NetFrontend::Stock => None,
            NetFrontend::Module(ko) => Some((
                ko,
                ko.file_stem()
                    .map(|n| n.to_string_lossy().replace('-', "_"))
                    .unwrap_or_default(),
            )),
        }
    }
}

/// dom0's bridge for guests' vifs, and its address (`/24`).
pub const NET_BRIDGE: &str = "xenbr0";
/// dom0's address on [`NET_BRIDGE`].
pub const NET_DOM0_IP: &str = "10.99.0.1";

/// One virtual disk of a guest. Disk `i` is `xvd` + `a+i` in the guest; in dom0 it is
/// a QEMU virtio disk (a raw file on the host, read back after the run; discards in
/// dom0 punch holes in it).
#[derive(Debug, Clone)]
pub struct Disk {
    pub size_mib: u64,
    pub backend: BlockBackend,
    /// Logical (and physical) sector size of dom0's virtio disk: 512 or 4096. The
    /// backend passes it on to the guest (`sector-size` in xenstore).
    pub sector_size: u32,
    /// Attached read-only (`access=ro`: `mode` = `r` for the backend).
    pub readonly: bool,
    /// The dom0 device of an earlier step's disk `(step, disk)` instead of an image of
    /// its own ([`GuestStep::with_disk_of`]): a fresh guest reads what another left.
    pub of: Option<(usize, usize)>,
}
