//! The debug key's dump of the assigned devices' interrupts (crate::dump): per function
//! its MSI route, and per MSI-X entry (the first 8) the guest's mask bit, the device's
//! mask and pending (PBA) bits, its remapping entry, host slot and guest vector; the
//! host slots' interrupts counted and not yet delivered; the IOMMU's faults.

use crate::arch::{lapic, phys};
use crate::log;
use crate::sched::World;
use crate::vpci::Assigned;
use alloc::string::String;
use core::fmt::Write;
use sluice_pciback::config::Width;

/// The device's vector control word and PBA bit of MSI-X entry `entry` (its BARs
/// mapped), read from the device.
fn device_bits(a: &Assigned, entry: u16) -> Option<(u32, bool)> {
    let m = a.vcfg.msix()?;
    let ctrl = super::event::msix_entry_host(a, entry).map(|at| phys::mmio_read_u32(at + 12))?;
    let pba = a.bars.iter().find(|b| b.index == m.pba_bir)?;
    let word = phys::mmio_read_u32(pba.host + u64::from(m.pba_off) + 4 * u64::from(entry / 32));
    Some((ctrl, word & 1 << (entry % 32) != 0))
}

/// Logs the dump of every assigned function and the host slots.
pub fn dump(w: &World) {
    for d in w.domains.iter().flatten() {
        let Some(pci) = d.pci.as_ref() else { continue };
        for a in &pci.functions {
            log!(
                "dump: d{} {}: MSI {}; host slot {:?}",
                d.id,
                a.host,
                a.msi.map_or("-".into(), |r| alloc::format!(
                    "vector {:#x} vCPU {} IRTE {} slot {}",
                    r.guest.vector,
                    r.guest.vcpu,
                    r.irte,
                    r.slot
                )),
                a.slot
            );
            let Some(m) = a.vcfg.msix() else { continue };
            for entry in 0..m.entries.min(8) {
                let guest = a
                    .vcfg
                    .msix_table_read(16 * u64::from(entry) + 12, Width::B4);
                let mut s = String::new();
                let _ = write!(
                    s,
                    "dump: d{} {}: MSI-X {entry}: guest mask {}",
                    d.id,
                    a.host,
                    guest & 1
                );
                match device_bits(a, entry) {
                    Some((ctrl, pending)) => {
                        let _ = write!(s, ", device mask {} pending {}", ctrl & 1, pending as u8);
                    }
                    None => s.push_str(", device: BAR not mapped"),
                }
                match a.msix.iter().find(|(e, _)| *e == entry) {
                    Some((_, r)) => {
                        let _ = write!(
                            s,
                            ", vector {:#x} vCPU {} IRTE {} slot {}",
                            r.guest.vector, r.guest.vcpu, r.irte, r.slot
                        );
                    }
                    None => s.push_str(", no route"),
                }
                log!("{}", s);
            }
        }
    }
    let mut s = String::new();
    for slot in 0..lapic::DEVICE_SLOTS {
        let n = lapic::peek_device_irqs(slot);
        if n > 0 {
            let _ = write!(s, " {slot}:{n}");
        }
    }
    log!(
        "dump: host slots with interrupts not yet delivered:{}; IOMMU faults {}",
        if s.is_empty() { " none" } else { &s },
        w.protection.as_ref().map_or(0, |p| p.faults())
    );
}
