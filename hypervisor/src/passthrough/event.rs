//! A guest's config-space accesses turned into machine actions: BARs mapped into (and
//! out of) its nested page table, MSIs checked and routed through interrupt remapping.

use super::{ecam, Inventory};
use crate::arch::{lapic, phys};
use crate::domain::{Domain, MmioCost};
use crate::iommu::Protection;
use crate::log;
use crate::mm::{FrameAllocator, PAGE};
use crate::vpci::{self, Assigned, DomainPci, MappedBar, MsiRoute};
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
    inv: Option<&mut Inventory>,
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
            // The MSI-X table and PBA pages stay unmapped (trapped, emulated): the rest
            // is mapped in runs of untrapped pages (2 MiB leaves where aligned).
            let trapped = a.vcfg.trapped();
            let is_trapped = |p: u64| {
                let off = p * PAGE;
                trapped
                    .iter()
                    .any(|t| t.bar == index && off >= t.start && off < t.end)
            };
            let t0 = d.clock.now_ns();
            let pages = size / PAGE;
            let mut cost = MmioCost::default();
            let mut runs: Vec<(u64, u64)> = Vec::new();
            let mut ok = true;
            let mut p = 0;
            while p < pages {
                if is_trapped(p) {
                    p += 1;
                    continue;
                }
                let mut n = 1;
                while p + n < pages && !is_trapped(p + n) {
                    n += 1;
                }
                match d.map_mmio(fa, guest + p * PAGE, host + p * PAGE, n) {
                    Some(c) => cost.add(c),
                    None => {
                        ok = false;
                        break;
                    }
                }
                runs.push((p, n));
                p += n;
            }
            if !ok {
                for (p, n) in runs {
                    d.unmap_mmio(fa, guest + p * PAGE, n);
                }
            }
            let us = d.clock.now_ns().saturating_sub(t0) / 1000;
            log!(
                "passthrough: d{}: {}: BAR {} ({:#x} bytes) at guest {:#x} -> host {:#x}{}",
                id,
                a.host,
                index,
                size,
                guest,
                host,
                if ok {
                    alloc::format!(
                        ": {} 2-MiB leaves, {} 4-KiB leaves, {} table frames, {} us",
                        cost.large,
                        cost.small,
                        cost.tables,
                        us
                    )
                } else {
                    ": NOT MAPPED (something there, or no memory)".into()
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
        Event::MsixUnmask { entry, addr, data } => {
            let (Some(prot), Some(inv)) = (prot, inv) else { return };
            msix_unmask(a, id, nr_vcpus, entry, addr, data, prot, inv);
        }
        Event::MsixMask { entry } => {
            let (Some(prot), Some(inv)) = (prot, inv) else { return };
            msix_mask(a, entry, prot, inv);
            log!("passthrough: d{}: {}: MSI-X entry {} masked", id, a.host, entry);
        }
    }
}

/// The host address of MSI-X table entry `entry` of `a` (its BAR mapped in the guest).
pub(super) fn msix_entry_host(a: &Assigned, entry: u16) -> Option<u64> {
    let m = a.vcfg.msix()?;
    let b = a.bars.iter().find(|b| b.index == m.table_bir)?;
    Some(b.host + u64::from(m.table_off) + 16 * u64::from(entry))
}

/// The guest unmasked MSI-X entry `entry` with `addr`/`data`: checked as an MSI, given
/// a host slot and an interrupt-remapping entry, whose message is written to the
/// device's table entry, which is unmasked last. Refused: it stays masked.
#[allow(clippy::too_many_arguments)]
fn msix_unmask(
    a: &mut Assigned,
    id: u16,
    nr_vcpus: usize,
    entry: u16,
    addr: u64,
    data: u32,
    prot: &mut Protection,
    inv: &mut Inventory,
) {
    msix_mask(a, entry, prot, inv);
    let refuse = |why: &str| {
        log!(
            "passthrough: d{}: {}: MSI-X entry {} refused: {}",
            id,
            a.host,
            entry,
            why
        )
    };
    if !prot.interrupt_remapping(a.unit) {
        return refuse("the IOMMU does not remap interrupts");
    }
    let guest = match vpci::guest_msi(addr, data, nr_vcpus) {
        Ok(g) => g,
        Err(why) => return refuse(why),
    };
    let Some(at) = msix_entry_host(a, entry) else {
        return refuse("its table's BAR is not mapped");
    };
    let Some(slot) = inv.slots.iter().position(|s| !s) else {
        return refuse("no host vector free");
    };
    let vector = lapic::DEVICE_VECTOR + slot as u8;
    match prot.map_msi(a.unit, a.host, vector, inv.bsp_apic) {
        Ok((irte, msg)) => {
            inv.slots[slot] = true;
            phys::mmio_write_u32(at, msg.address as u32);
            phys::mmio_write_u32(at + 4, (msg.address >> 32) as u32);
            phys::mmio_write_u32(at + 8, msg.data);
            phys::mmio_write_u32(at + 12, 0);
            a.msix.push((entry, MsiRoute { irte, slot, guest }));
            log!(
                "passthrough: d{}: {}: MSI-X entry {} vector {:#x} on vCPU {} -> remapping entry {} (host vector {:#x})",
                id,
                a.host,
                entry,
                guest.vector,
                guest.vcpu,
                irte,
                vector
            );
        }
        Err(e) => refuse(&alloc::format!("IOMMU: {e}")),
    }
}

/// Masks MSI-X entry `entry` at the device, then removes its remapping entry and frees
/// its host slot (an interrupt counted there meanwhile is dropped).
pub(super) fn msix_mask(a: &mut Assigned, entry: u16, prot: &mut Protection, inv: &mut Inventory) {
    if let Some(at) = msix_entry_host(a, entry) {
        phys::mmio_write_u32(at + 12, 1);
    }
    if let Some(p) = a.msix.iter().position(|(e, _)| *e == entry) {
        let (_, r) = a.msix.remove(p);
        let _ = prot.unmap_msi(a.unit, a.host, r.irte);
        inv.slots[r.slot] = false;
        lapic::take_device_irqs(r.slot);
    }
}
