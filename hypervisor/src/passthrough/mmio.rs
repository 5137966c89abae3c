//! Trapped device ranges of a domain with devices: its ECAM window, emulated
//! instruction by instruction (crate::emulate) into its virtual config space.

use super::{ecam, event};
use crate::emulate::MmioOp;
use crate::hypercall::After;
use crate::log;
use crate::sched::World;
use crate::virt::VcpuState;
use crate::vpci;
use alloc::vec::Vec;

/// A nested page fault of a domain with devices in its ECAM window: the instruction
/// emulated into its virtual config space (crate::emulate); one that cannot be crashes
/// the domain (Xen's unhandleable emulation). Elsewhere: left to the rest (a kill).
pub(super) fn ecam_exit(
    w: &mut World,
    i: usize,
    gpa: u64,
    flags: u64,
    delivering: bool,
) -> Option<After> {
    let d = w.domains[i].as_mut()?;
    if d.pci.is_none() || !(vpci::ECAM_GPA..vpci::ECAM_GPA + vpci::ECAM_SIZE).contains(&gpa) {
        return None;
    }
    let insn = match d.mmio_insn(gpa, flags, delivering) {
        Ok(insn) => insn,
        Err(e) => {
            let rip = d.vcpu().rip();
            log!(
                "domain {} ({}): KILLED: unhandleable MMIO emulation at gpa {:#x} (rip {:#x}): {}",
                d.id,
                d.name(),
                gpa,
                rip,
                e
            );
            return Some(After::Kill);
        }
    };
    // The window is page-aligned and the access inside one page (checked): inside it.
    let (write, value) = match insn.op {
        MmioOp::Store(v) => (true, v),
        MmioOp::Load(_) => (false, 0),
    };
    let mut pci = d.pci.take()?;
    let (read, events) = match ecam() {
        Some(mut cfg) => pci.ecam(&mut cfg, gpa - vpci::ECAM_GPA, insn.size, !write, value),
        None => (u64::MAX, Vec::new()),
    };
    d.mmio_complete(&insn, read);
    for (k, e) in events {
        event::event(
            d,
            &mut pci,
            k,
            e,
            w.protection.as_mut(),
            w.inventory.as_ref(),
            &mut w.fa,
        );
    }
    d.pci = Some(pci);
    Some(After::Continue)
}
