//! A guest's config-space accesses turned into machine actions: BARs mapped into (and
//! out of) its nested page table, MSIs checked and routed through interrupt remapping.

use super::{ecam, Inventory};
use crate::arch::lapic;
use crate::domain::Domain;
use crate::iommu::Protection;
use crate::log;
use crate::mm::{FrameAllocator, PAGE};
use crate::vpci::{self, DomainPci, MappedBar, MsiRoute};
use alloc::vec::Vec;
use sluice_pciback::inventory::BarKind;
use sluice_pciback::vcfg::Event;

/// Acts on event `e` of function `k` of domain `d` (its `pci` taken out meanwhile).
pub(super) fn event(
    d: &mut Domain,
    pci: &mut DomainPci,
    k: usize,
    e: Event,
    prot: Option<&mut Protection>,
    inv: Option<&Inventory>,
    fa: &mut FrameAllocator,
) {
    let (id, nr_vcpus) = (d.id, d.nr_vcpus);
    // Another assigned function's BAR already there (the vcfg checks only its own).
    let clash = match e {
        Event::MapBar { guest, size, .. } => pci.functions.iter().enumerate().any(|(j, f)| {
            j != k
                && f.bars
                    .iter()
                    .any(|b| guest < b.guest + b.size && b.guest < guest.saturating_add(size))
        }),
        _ => false,
    };
    let a = &mut pci.functions[k];
    match e {
        Event::DroppedWrite { off, width } => log!(
            "passthrough: d{}: {}: write of {} bytes at {:#x} dropped (no handler; later ones counted)",
            id,
            a.host,
            width,
            off
        ),
        Event::MapBar {
            index,
            kind,
            guest,
            host,
            size,
        } => {
            if kind == BarKind::Io {
                log!("passthrough: d{}: {}: I/O BAR {} not passed through", id, a.host, index);
                return;
            }
            if clash {
                log!(
                    "passthrough: d{}: {}: BAR {} at guest {:#x} refused: over another device's BAR",
                    id,
                    a.host,
                    index,
                    guest
                );
                return;
            }
            if !size.is_multiple_of(PAGE) || !host.is_multiple_of(PAGE) || !guest.is_multiple_of(PAGE) {
                log!(
                    "passthrough: d{}: {}: BAR {} of {:#x} bytes shares a page: not mapped",
                    id,
                    a.host,
                    index,
                    size
                );
                return;
            }
            // The MSI-X table and PBA pages stay unmapped (trapped): not emulated yet,
            // so a guest touching them faults.
            let trapped = a.vcfg.trapped();
            let mut mapped = Vec::new();
            let mut ok = true;
            for p in 0..size / PAGE {
                let off = p * PAGE;
                if trapped
                    .iter()
                    .any(|t| t.bar == index && off >= t.start && off < t.end)
                {
                    continue;
                }
                if !d.map_mmio(fa, guest + off, host + off, 1) {
                    ok = false;
                    break;
                }
                mapped.push(off);
            }
            if !ok {
                for off in mapped {
                    d.unmap_mmio(fa, guest + off, 1);
                }
            }
            log!(
                "passthrough: d{}: {}: BAR {} ({:#x} bytes) at guest {:#x} -> host {:#x}{}",
                id,
                a.host,
                index,
                size,
                guest,
                host,
                if ok {
                    ""
                } else {
                    ": NOT MAPPED (something there, or no memory)"
                }
            );
            if !ok {
                return;
            }
            a.bars.push(MappedBar {
                index,
                guest,
                host,
                size,
            });
        }
        Event::UnmapBar { index, guest } => {
            if let Some(p) = a.bars.iter().position(|b| b.index == index && b.guest == guest) {
                let b = a.bars.remove(p);
                d.unmap_mmio(fa, b.guest, b.size / PAGE);
                log!("passthrough: d{}: {}: BAR {} unmapped from {:#x}", id, a.host, index, guest);
            }
        }
        Event::BarRefused { index, guest, why } => log!(
            "passthrough: d{}: {}: BAR {} at guest {:#x} refused: {:?}",
            id,
            a.host,
            index,
            guest,
            why
        ),
        Event::MsiEnable {
            addr,
            data,
            vectors,
        } => {
            let Some(prot) = prot else { return };
            if let Some(old) = a.msi.take() {
                let _ = prot.unmap_msi(a.unit, a.host, old.irte);
            }
            if !prot.interrupt_remapping(a.unit) {
                // Without remapping the device's message would name any host vector.
                log!("passthrough: d{}: {}: MSI refused: the IOMMU does not remap interrupts", id, a.host);
                return;
            }
            let guest = match vpci::guest_msi(addr, data.into(), nr_vcpus) {
                Ok(g) => g,
                Err(why) => {
                    log!("passthrough: d{}: {}: MSI refused: {}", id, a.host, why);
                    return;
                }
            };
            let (Some(slot), Some(inv)) = (a.slot, inv) else {
                log!("passthrough: d{}: {}: MSI refused: no host vector", id, a.host);
                return;
            };
            let vector = lapic::DEVICE_VECTOR + slot as u8;
            match prot.map_msi(a.unit, a.host, vector, inv.bsp_apic) {
                Ok((irte, msg)) => {
                    if let Some(mut cfg) = ecam() {
                        a.vcfg.msi_program(&mut cfg, msg.address, msg.data as u16);
                    }
                    a.msi = Some(MsiRoute { irte, slot, guest });
                    log!(
                        "passthrough: d{}: {}: MSI vector {:#x} on vCPU {} -> remapping entry {} (host vector {:#x}){}",
                        id,
                        a.host,
                        guest.vector,
                        guest.vcpu,
                        irte,
                        vector,
                        if vectors > 1 { "; multi-message: only the first" } else { "" }
                    );
                }
                Err(e) => log!("passthrough: d{}: {}: MSI: IOMMU: {}", id, a.host, e),
            }
        }
        Event::MsiDisable => {
            if let (Some(prot), Some(old)) = (prot, a.msi.take()) {
                let _ = prot.unmap_msi(a.unit, a.host, old.irte);
                log!("passthrough: d{}: {}: MSI off", id, a.host);
            }
        }
        Event::MsixUnmask { entry, .. } | Event::MsixMask { entry } => log!(
            "passthrough: d{}: {}: MSI-X entry {}: not done (stays masked)",
            id,
            a.host,
            entry
        ),
    }
}
