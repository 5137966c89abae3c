//! Trapped device ranges of a domain with devices, emulated instruction by instruction
//! (crate::emulate): its ECAM window (into its virtual config space) and the MSI-X
//! table and PBA pages of its functions' BARs (the virtual table; the PBA read from the
//! device; the rest of those pages passed through to the device).

use super::{ecam, event};
use crate::arch::phys;
use crate::emulate::{MmioInsn, MmioOp};
use crate::hypercall::After;
use crate::log;
use crate::sched::World;
use crate::virt::VcpuState;
use crate::vpci::{self, DomainPci, MsixArea, MsixHit};
use alloc::vec::Vec;
use sluice_pciback::config::Width;
use sluice_pciback::vcfg::Event;

/// A nested page fault of a domain with devices in a trapped range: the instruction
/// emulated; one that cannot be crashes the domain (Xen's unhandleable emulation).
/// Elsewhere: left to the rest (a kill).
pub(super) fn mmio_exit(
    w: &mut World,
    i: usize,
    gpa: u64,
    flags: u64,
    delivering: bool,
) -> Option<After> {
    let d = w.domains[i].as_mut()?;
    let in_ecam = (vpci::ECAM_GPA..vpci::ECAM_GPA + vpci::ECAM_SIZE).contains(&gpa);
    let pci = d.pci.as_ref()?;
    if !in_ecam && pci.msix_hit(gpa, 1).is_none() {
        return None;
    }
    let decoded = d.mmio_insn(gpa, flags, delivering);
    let msix = match &decoded {
        Ok(insn) if !in_ecam => Some(d.pci.as_ref()?.msix_hit(gpa, insn.size.into())),
        _ => None,
    };
    let insn = match (decoded, msix) {
        (Ok(insn), None | Some(Some(_))) => insn,
        (r, _) => {
            let why = match r {
                Err(e) => e,
                Ok(_) => crate::emulate::Unhandleable::Straddle,
            };
            let rip = d.vcpu().rip();
            log!(
                "domain {} ({}): KILLED: unhandleable MMIO emulation at gpa {:#x} (rip {:#x}): {}",
                d.id,
                d.name(),
                gpa,
                rip,
                why
            );
            return Some(After::Kill);
        }
    };
    let (write, value) = match insn.op {
        MmioOp::Store(v) => (true, v),
        MmioOp::Load(_) => (false, 0),
    };
    let mut pci = d.pci.take()?;
    let (read, events) = match msix.flatten() {
        Some(hit) => msix_access(&mut pci, hit, &insn, write, value),
        None => match ecam() {
            // The window is page-aligned and the access inside one page: inside it.
            Some(mut cfg) => pci.ecam(&mut cfg, gpa - vpci::ECAM_GPA, insn.size, !write, value),
            None => (u64::MAX, Vec::new()),
        },
    };
    d.mmio_complete(&insn, read);
    for (k, e) in events {
        event::event(
            d,
            &mut pci,
            k,
            e,
            w.protection.as_mut(),
            w.inventory.as_mut(),
            &mut w.fa,
        );
    }
    d.pci = Some(pci);
    Some(After::Continue)
}

/// One access to a trapped MSI-X page: the table is the virtual one (an 8-byte access
/// is two 4-byte ones, low first); the PBA is read from the device and writes to it are
/// dropped; anything else in those pages goes to the device as it came.
fn msix_access(
    pci: &mut DomainPci,
    hit: MsixHit,
    insn: &MmioInsn,
    write: bool,
    value: u64,
) -> (u64, Vec<(usize, Event)>) {
    let k = hit.function;
    let vcfg = &mut pci.functions[k].vcfg;
    let mut events = Vec::new();
    let read = match (hit.area, write) {
        (MsixArea::Table(off), false) => match Width::from_bytes(insn.size.into()) {
            Some(w) => vcfg.msix_table_read(off, w).into(),
            None => {
                u64::from(vcfg.msix_table_read(off, Width::B4))
                    | u64::from(vcfg.msix_table_read(off + 4, Width::B4)) << 32
            }
        },
        (MsixArea::Table(off), true) => {
            let ev = match Width::from_bytes(insn.size.into()) {
                Some(w) => vcfg.msix_table_write(off, w, value as u32),
                None => {
                    let mut ev = vcfg.msix_table_write(off, Width::B4, value as u32);
                    ev.extend(vcfg.msix_table_write(off + 4, Width::B4, (value >> 32) as u32));
                    ev
                }
            };
            events.extend(ev.into_iter().map(|e| (k, e)));
            0
        }
        (MsixArea::Pba(_), true) => 0,
        (_, false) => device_read(hit.host, insn.size),
        (MsixArea::Other, true) => {
            device_write(hit.host, insn.size, value);
            0
        }
    };
    (read, events)
}

fn device_read(pa: u64, size: u8) -> u64 {
    match size {
        1 => phys::mmio_read_u8(pa).into(),
        2 => phys::mmio_read_u16(pa).into(),
        4 => phys::mmio_read_u32(pa).into(),
        _ => phys::mmio_read_u64(pa),
    }
}

fn device_write(pa: u64, size: u8, v: u64) {
    match size {
        1 => phys::mmio_write_u8(pa, v as u8),
        2 => phys::mmio_write_u16(pa, v as u16),
        4 => phys::mmio_write_u32(pa, v as u32),
        _ => phys::mmio_write_u64(pa, v),
    }
}
