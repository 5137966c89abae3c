//! The `xl` side of a guest step: its config file, and the disk and vif specifications
//! (also typed for `xl block-attach` and `xl network-attach`).

use super::disk_serial;
use crate::scenario::{vdev, BlockBackend, Disk, GuestStep, GuestType, NetBackend};
use std::fmt::Write as _;

/// The hotplug script for vifs served by a userspace backend.
pub const USERSPACE_VIF_SCRIPT: &str = "vif-userspace";

/// The no-op hotplug script for disks served by a userspace backend.
pub const USERSPACE_BLOCK_SCRIPT: &str = "block-userspace";

/// The `xl` config of one guest step.
pub(super) fn guest_cfg(step_idx: usize, step: &GuestStep) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "name = \"{}\"", step.name);
    let _ = writeln!(s, "type = \"{}\"", step.guest_type.xl_type());
    if let Some(k) = &step.kernel {
        let _ = writeln!(s, "kernel = \"/sluice/guest/{}.elf\"", step.name);
        let _ = writeln!(s, "cmdline = \"{}\"", k.cmdline);
        if k.ramdisk.is_some() {
            let _ = writeln!(s, "ramdisk = \"/sluice/guest/{}.ramdisk\"", step.name);
        }
    } else {
        let _ = writeln!(s, "kernel = \"/sluice/guest/vmlinux\"");
        let _ = writeln!(s, "ramdisk = \"/sluice/guest/initrd.cpio\"");
        // Guests run together on a loaded 2-core TCG host starve each other's vCPUs for
        // tens of seconds (a PV guest's boot: "BUG: soft lockup - CPU#1 stuck for 21s",
        // 2026-12-07, load 10): not a fault of the disk path, so their soft-lockup
        // detector is off; hung tasks (I/O stuck 120 s) are still reported.
        let quiet = if step.together.is_some() {
            "quiet nosoftlockup"
        } else {
            "quiet"
        };
        let _ = writeln!(
            s,
            "extra = \"console=hvc0 {quiet} sluice.step={}\"",
            step.name
        );
    }
    let _ = writeln!(s, "memory = {}", step.memory_mib);
    let _ = writeln!(s, "vcpus = {}", step.vcpus);
    for ev in ["on_poweroff", "on_reboot", "on_crash"] {
        let _ = writeln!(s, "{ev} = \"destroy\"");
    }
    if step.guest_type == GuestType::Pvh {
        // TCG's SVM lacks nrip-save, so Xen cannot emulate RDTSCP for PVH guests.
        let _ = writeln!(s, "tsc_mode = \"native\"");
    }
    let disks: Vec<String> = step
        .disks
        .iter()
        .enumerate()
        .map(|(di, d)| format!("'{}'", disk_spec(step_idx, di, d)))
        .collect();
    if !disks.is_empty() {
        let _ = writeln!(s, "disk = [ {} ]", disks.join(", "));
    }
    if let Some(v) = &step.vif {
        if crate::hostile_net::has(step) {
            // A second vif for the hostile netfront (`crate::hostile_net`).
            let second = vif_spec(step_idx, v.backend).replace(
                &vif_mac(step_idx),
                &crate::hostile_net::hostile_mac(step_idx),
            );
            let _ = writeln!(
                s,
                "vif = [ '{}', '{second}' ]",
                vif_spec(step_idx, v.backend)
            );
        } else {
            let _ = writeln!(s, "vif = [ '{}' ]", vif_spec(step_idx, v.backend));
        }
    }
    if let Some(nic) = &step.passed_nic {
        let _ = writeln!(s, "{}", nic.xl_pci_line());
    }
    s
}

/// The MAC address of step `step_idx`'s vif.
pub fn vif_mac(step_idx: usize) -> String {
    format!("00:16:3e:00:99:{step_idx:02x}")
}

/// The `xl` vif specification of step `step_idx` (in the guest config and for `xl
/// network-attach`).
pub fn vif_spec(step_idx: usize, backend: NetBackend) -> String {
    let (mac, br) = (vif_mac(step_idx), crate::scenario::NET_BRIDGE);
    match backend {
        NetBackend::Userspace => format!("mac={mac},bridge={br},script={USERSPACE_VIF_SCRIPT}"),
        NetBackend::Kernel => format!("mac={mac},bridge={br}"),
    }
}

/// The `xl` disk specification of disk `di` of step `step_idx` (in the guest config and
/// for `xl block-attach`).
pub fn disk_spec(step_idx: usize, di: usize, d: &Disk) -> String {
    let extra = match d.backend {
        BlockBackend::KernelBlkback => String::new(),
        BlockBackend::Userspace => format!("backendtype=phy,script={USERSPACE_BLOCK_SCRIPT},"),
    };
    format!(
        "format=raw,vdev={},access={},{extra}target=/dev/{}",
        vdev(di),
        if d.readonly { "ro" } else { "rw" },
        match d.of {
            Some((s, k)) => disk_serial(s, k),
            None => disk_serial(step_idx, di),
        }
    )
}
