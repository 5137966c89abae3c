//! Intel VT-d (legacy translation mode): root and context tables, second-level page tables,
//! queued or register-based invalidation, fault recording, interrupt remapping.

pub mod regs;

use crate::domain::{Fault, FaultKind, IommuHw, MsiMessage};
use crate::error::{Error, Result};
use crate::hal::{Hal, PhysAddr, PAGE_SIZE};
use crate::pagetable::VtdFormat;
use crate::{Bdf, Coverage};
use regs::*;

/// Polling budget for register handshakes and queue waits.
const SPIN_LIMIT: u32 = 50_000_000;

/// Interrupt-remapping table entries (one 4 KiB page of 16-byte entries).
const IRT_ENTRIES: u32 = 256;

/// Driver options.
#[derive(Clone, Copy, Debug, Default)]
pub struct VtdConfig {
    /// Use register-based invalidation even when queued invalidation is available.
    pub register_invalidation: bool,
    /// Enable interrupt remapping when the unit supports it.
    pub interrupt_remapping: bool,
}

enum Invalidation {
    Queue {
        base: PhysAddr,
        entries: u64,
        tail: u64,
        /// A word the wait descriptors write their sequence number to.
        status: PhysAddr,
        sequence: u32,
    },
    Registers,
}

/// One VT-d remapping unit.
pub struct Vtd<H: Hal> {
    hal: H,
    base: PhysAddr,
    pub cap: Capabilities,
    pub ecap: ExtCapabilities,
    coverage: Coverage,
    levels: u8,
    root_table: PhysAddr,
    context_tables: [PhysAddr; 256],
    inval: Invalidation,
    irt: Option<PhysAddr>,
    irt_used: [u64; (IRT_ENTRIES / 64) as usize],
    invalidations: u64,
}

impl<H: Hal> Vtd<H> {
    /// Takes over the unit at `base`: installs an empty root table (every device blocked),
    /// sets up invalidation, clears old faults, optionally enables interrupt remapping
    /// (compatibility-format interrupts stay blocked), then enables translation.
    pub fn new(hal: H, base: PhysAddr, coverage: Coverage, config: VtdConfig) -> Result<Self> {
        let cap = Capabilities::decode(hal.mmio_read64(base + CAP));
        let ecap = ExtCapabilities::decode(hal.mmio_read64(base + ECAP));
        // Widest supported width the unit can address: 4 levels (48-bit) or 3 (39-bit).
        let levels = if cap.sagaw & 0b100 != 0 && cap.mgaw >= 48 {
            4
        } else if cap.sagaw & 0b010 != 0 {
            3
        } else {
            return Err(Error::Unsupported("a 39- or 48-bit second-level width"));
        };
        let root_table = hal.alloc_frames(1, PAGE_SIZE).ok_or(Error::OutOfMemory)?;
        let mut vtd = Vtd {
            hal,
            base,
            cap,
            ecap,
            coverage,
            levels,
            root_table,
            context_tables: [0; 256],
            inval: Invalidation::Registers,
            irt: None,
            irt_used: [0; (IRT_ENTRIES / 64) as usize],
            invalidations: 0,
        };
        // Start from a known state: translation, queue and remapping off.
        vtd.set_global(Global::TE | Global::QIE | Global::IRE | Global::CFI, false)?;
        vtd.hal.mmio_write64(base + RTADDR, root_table);
        vtd.command(Global::SRTP)?;
        if ecap.queued_invalidation && !config.register_invalidation {
            let queue = vtd
                .hal
                .alloc_frames(1, PAGE_SIZE)
                .ok_or(Error::OutOfMemory)?;
            let status = vtd
                .hal
                .alloc_frames(1, PAGE_SIZE)
                .ok_or(Error::OutOfMemory)?;
            vtd.hal.mmio_write64(base + IQT, 0);
            vtd.hal.mmio_write64(base + IQA, queue); // QS=0: 256 entries, 128-bit descriptors
            vtd.set_global(Global::QIE, true)?;
            vtd.inval = Invalidation::Queue {
                base: queue,
                entries: 256,
                tail: 0,
                status,
                sequence: 0,
            };
        }
        vtd.invalidate_context(ContextScope::Global)?;
        vtd.invalidate_iotlb(IotlbScope::Global)?;
        vtd.clear_faults();
        if config.interrupt_remapping {
            vtd.enable_interrupt_remapping()?;
        }
        vtd.set_global(Global::TE, true)?;
        Ok(vtd)
    }

    /// Issues a one-shot global command (SRTP, SIRTP, WBF) and waits for its status.
    fn command(&mut self, bit: Global) -> Result<()> {
        let keep =
            Global::from_bits_truncate(self.hal.mmio_read32(self.base + GSTS)) & Global::PERSISTENT;
        self.hal.barrier();
        self.hal.mmio_write32(self.base + GCMD, (keep | bit).bits());
        let done = |s: u32| {
            if bit == Global::WBF {
                s & Global::WBF.bits() == 0
            } else {
                s & bit.bits() != 0
            }
        };
        self.spin("global command", |v| done(v.hal.mmio_read32(v.base + GSTS)))
    }

    /// Sets or clears persistent global bits and waits for GSTS to follow.
    fn set_global(&mut self, bits: Global, on: bool) -> Result<()> {
        let cur =
            Global::from_bits_truncate(self.hal.mmio_read32(self.base + GSTS)) & Global::PERSISTENT;
        let want = if on { cur | bits } else { cur - bits };
        if want == cur {
            return Ok(());
        }
        self.hal.barrier();
        self.hal.mmio_write32(self.base + GCMD, want.bits());
        self.spin("global status", |v| {
            Global::from_bits_truncate(v.hal.mmio_read32(v.base + GSTS)) & bits
                == if on { bits } else { Global::empty() }
        })
    }

    fn spin(&mut self, what: &'static str, mut done: impl FnMut(&Self) -> bool) -> Result<()> {
        for _ in 0..SPIN_LIMIT {
            if done(self) {
                return Ok(());
            }
            self.hal.relax();
        }
        Err(Error::Timeout(what))
    }

    /// Queues descriptors followed by a wait descriptor and waits for its status write.
    fn submit(&mut self, descriptors: &[[u64; 2]]) -> Result<()> {
        let Invalidation::Queue {
            base,
            entries,
            tail,
            status,
            sequence,
        } = &mut self.inval
        else {
            return Err(Error::Unsupported("queued invalidation"));
        };
        *sequence = sequence.wrapping_add(1);
        let seq = *sequence;
        // Wait descriptor: status write (SW) of `seq` to `status`, fence (FN).
        let wait = [5 | (1 << 5) | (1 << 6) | (u64::from(seq) << 32), *status];
        for d in descriptors.iter().chain(core::iter::once(&wait)) {
            let slot = *base + *tail * 16;
            self.hal.write_phys_u64(slot, d[0]);
            self.hal.write_phys_u64(slot + 8, d[1]);
            *tail = (*tail + 1) % *entries;
        }
        let (tail, status) = (*tail, *status);
        self.hal.barrier();
        self.hal.mmio_write64(self.base + IQT, tail << 4);
        let result = self.spin("invalidation wait descriptor", |v| {
            (v.hal.read_phys_u64(status) as u32) == seq
                || Fsts::from_bits_truncate(v.hal.mmio_read32(v.base + FSTS))
                    .intersects(Fsts::IQE | Fsts::ITE)
        });
        let fsts = Fsts::from_bits_truncate(self.hal.mmio_read32(self.base + FSTS));
        if fsts.intersects(Fsts::IQE | Fsts::ITE) {
            self.hal
                .mmio_write32(self.base + FSTS, (Fsts::IQE | Fsts::ITE | Fsts::ICE).bits());
            return Err(Error::Timeout("invalidation queue error"));
        }
        result
    }

    fn invalidate_context(&mut self, scope: ContextScope) -> Result<()> {
        self.invalidations += 1;
        let (granularity, did, sid) = match scope {
            ContextScope::Global => (1u64, 0u64, 0u64),
            ContextScope::Device { did, sid } => (3, u64::from(did), u64::from(sid)),
        };
        match self.inval {
            Invalidation::Queue { .. } => {
                self.submit(&[[1 | (granularity << 4) | (did << 16) | (sid << 32), 0]])
            }
            Invalidation::Registers => {
                let v = (1 << 63) | (granularity << 61) | did | (sid << 16);
                self.hal.barrier();
                self.hal.mmio_write64(self.base + CCMD, v);
                self.spin("context-cache invalidation", |s| {
                    s.hal.mmio_read64(s.base + CCMD) >> 63 == 0
                })
            }
        }
    }

    fn invalidate_iotlb(&mut self, scope: IotlbScope) -> Result<()> {
        self.invalidations += 1;
        let drain = (u64::from(self.cap.drain_read) << 1) | u64::from(self.cap.drain_write);
        let (granularity, did, addr) = match scope {
            IotlbScope::Global => (1u64, 0u64, 0u64),
            IotlbScope::Domain(did) => (2, u64::from(did), 0),
            IotlbScope::Pages {
                did,
                addr,
                order,
                leaf_only,
            } => (
                3,
                u64::from(did),
                addr | (u64::from(leaf_only) << 6) | u64::from(order),
            ),
        };
        match self.inval {
            Invalidation::Queue { .. } => {
                self.submit(&[[2 | (granularity << 4) | (drain << 6) | (did << 16), addr]])
            }
            Invalidation::Registers => {
                let reg = self.base + self.ecap.iotlb_offset;
                if granularity == 3 {
                    self.hal.mmio_write64(reg, addr);
                }
                let v = (1 << 63) | (granularity << 60) | (drain << 48) | (did << 32);
                self.hal.barrier();
                self.hal.mmio_write64(reg + 8, v);
                self.spin("IOTLB invalidation", |s| {
                    s.hal.mmio_read64(reg + 8) >> 63 == 0
                })
            }
        }
    }

    fn flush_write_buffer(&mut self) -> Result<()> {
        if self.cap.rwbf {
            self.command(Global::WBF)?;
        }
        Ok(())
    }

    fn context_entry(&mut self, device: Bdf, create: bool) -> Result<Option<PhysAddr>> {
        let bus = usize::from(device.bus);
        if self.context_tables[bus] == 0 {
            if !create {
                return Ok(None);
            }
            let table = self
                .hal
                .alloc_frames(1, PAGE_SIZE)
                .ok_or(Error::OutOfMemory)?;
            self.context_tables[bus] = table;
            self.hal.barrier();
            // Root entry: present, context-table pointer (legacy mode uses the low half).
            self.hal
                .write_phys_u64(self.root_table + bus as u64 * 16, table | 1);
        }
        Ok(Some(
            self.context_tables[bus] + u64::from(device.devfn()) * 16,
        ))
    }

    fn clear_faults(&mut self) {
        for i in 0..self.cap.fault_count {
            let record = self.base + self.cap.fault_offset + u64::from(i) * 16;
            self.hal.mmio_write32(record + 12, 1 << 31);
        }
        self.hal.mmio_write32(self.base + FSTS, Fsts::PFO.bits());
    }

    /// Routes fault events to an MSI (address, data) and unmasks them.
    pub fn set_fault_interrupt(&mut self, msg: MsiMessage) {
        self.hal.mmio_write32(self.base + FEDATA, msg.data);
        self.hal
            .mmio_write32(self.base + FEADDR, msg.address as u32);
        self.hal
            .mmio_write32(self.base + FEUADDR, (msg.address >> 32) as u32);
        self.hal.mmio_write32(self.base + FECTL, 0);
    }

    fn enable_interrupt_remapping(&mut self) -> Result<()> {
        if !self.ecap.interrupt_remapping {
            return Err(Error::Unsupported("interrupt remapping"));
        }
        if !matches!(self.inval, Invalidation::Queue { .. }) {
            return Err(Error::Unsupported(
                "interrupt remapping without queued invalidation",
            ));
        }
        let irt = self
            .hal
            .alloc_frames(1, PAGE_SIZE)
            .ok_or(Error::OutOfMemory)?;
        // S = 7: 2^(7+1) = 256 entries; EIME = 0 (xAPIC destinations).
        self.hal.mmio_write64(self.base + IRTA, irt | 7);
        self.command(Global::SIRTP)?;
        self.invalidate_interrupt_entries(None)?;
        self.set_global(Global::IRE, true)?;
        self.irt = Some(irt);
        Ok(())
    }

    fn invalidate_interrupt_entries(&mut self, index: Option<u32>) -> Result<()> {
        self.invalidations += 1;
        let d = match index {
            None => 4,
            Some(i) => 4 | (1 << 4) | (u64::from(i) << 32),
        };
        self.submit(&[[d, 0]])
    }

    /// Page-selective invalidation order covering `[iova, iova + len)`, if one exists.
    fn psi_order(&self, iova: u64, len: u64) -> Option<(u64, u8)> {
        if !self.cap.page_selective {
            return None;
        }
        let first = iova >> 12;
        let last = (iova + len - 1) >> 12;
        let mut order = 0u8;
        while (first >> order) != (last >> order) {
            order += 1;
        }
        (order <= self.cap.mamv).then_some(((first >> order) << order << 12, order))
    }

    /// The unit's register base.
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// Levels of second-level tables (3: 39-bit, 4: 48-bit).
    pub fn page_table_levels(&self) -> u8 {
        self.levels
    }

    /// True when queued invalidation is in use.
    pub fn queued(&self) -> bool {
        matches!(self.inval, Invalidation::Queue { .. })
    }

    /// True when interrupt remapping is enabled (only remapped-format interrupts with a
    /// programmed entry are delivered).
    /// Context tables allocated (one per bus that had a device attached; kept, as
    /// the root table is, once made).
    pub fn context_tables(&self) -> usize {
        self.context_tables.iter().filter(|&&t| t != 0).count()
    }

    pub fn interrupt_remapping(&self) -> bool {
        self.irt.is_some()
    }

    /// Guest (IOVA) address width of new domains in bits: 39 (3 levels) or 48 (4).
    pub fn address_width(&self) -> u8 {
        12 + 9 * self.levels
    }
}

enum ContextScope {
    Global,
    Device { did: u16, sid: u16 },
}

enum IotlbScope {
    Global,
    Domain(u16),
    Pages {
        did: u16,
        addr: u64,
        order: u8,
        leaf_only: bool,
    },
}

impl<H: Hal> IommuHw for Vtd<H> {
    type Hal = H;
    type Format = VtdFormat;

    fn hal(&self) -> &H {
        &self.hal
    }

    fn levels(&self) -> u8 {
        self.levels
    }

    fn max_leaf_level(&self) -> u8 {
        if self.cap.super_1g && self.cap.super_2m {
            3
        } else if self.cap.super_2m {
            2
        } else {
            1
        }
    }

    fn domain_ids(&self) -> core::ops::Range<u32> {
        // Under caching mode, domain id 0 tags cached not-present entries: never use it.
        // Without it, 0 is kept free too so that "no domain" is unambiguous.
        1..self.cap.domains.min(1 << 16)
    }

    fn covers(&self, device: Bdf) -> bool {
        self.coverage.covers(device)
    }

    fn attach(&mut self, device: Bdf, did: u16, root: PhysAddr) -> Result<()> {
        let entry = self
            .context_entry(device, true)?
            .ok_or(Error::OutOfMemory)?;
        let aw = u64::from(self.levels - 2); // 1: 39-bit 3-level, 2: 48-bit 4-level
        self.hal
            .write_phys_u64(entry + 8, aw | (u64::from(did) << 8));
        self.hal.barrier();
        // Present, translation type 0 (untranslated requests through second-level tables).
        self.hal.write_phys_u64(entry, root | 1);
        if self.cap.caching_mode {
            // Not-present entries may be cached under domain id 0.
            self.invalidate_context(ContextScope::Device {
                did: 0,
                sid: device.requester_id(),
            })?;
            self.invalidate_iotlb(IotlbScope::Domain(did))
        } else {
            self.flush_write_buffer()
        }
    }

    fn detach(&mut self, device: Bdf, did: u16) -> Result<()> {
        let Some(entry) = self.context_entry(device, false)? else {
            return Err(Error::NotAttached(device));
        };
        self.hal.write_phys_u64(entry, 0);
        self.hal.barrier();
        self.hal.write_phys_u64(entry + 8, 0);
        self.invalidate_context(ContextScope::Device {
            did,
            sid: device.requester_id(),
        })?;
        self.invalidate_iotlb(IotlbScope::Domain(did))
    }

    fn flush(&mut self, did: u16, range: Option<(u64, u64)>, tables_freed: bool) -> Result<()> {
        self.flush_write_buffer()?;
        match range.and_then(|(iova, len)| self.psi_order(iova, len)) {
            Some((addr, order)) => self.invalidate_iotlb(IotlbScope::Pages {
                did,
                addr,
                order,
                leaf_only: !tables_freed,
            }),
            None => self.invalidate_iotlb(IotlbScope::Domain(did)),
        }
    }

    fn flush_on_map(&self) -> bool {
        self.cap.caching_mode
    }

    fn drain_faults(&mut self, out: &mut dyn FnMut(Fault)) -> Result<usize> {
        let mut n = 0;
        for i in 0..self.cap.fault_count {
            let record = self.base + self.cap.fault_offset + u64::from(i) * 16;
            let hi = self.hal.mmio_read64(record + 8);
            if hi >> 63 == 0 {
                continue;
            }
            let lo = self.hal.mmio_read64(record);
            let code = ((hi >> 32) & 0xff) as u8;
            let read = hi & (1 << 62) != 0;
            let kind = if code >= 0x20 {
                FaultKind::Interrupt
            } else if read {
                FaultKind::Read
            } else {
                FaultKind::Write
            };
            out(Fault {
                device: Bdf::from_requester_id(self.coverage.segment, hi as u16),
                address: if code >= 0x20 { lo >> 48 } else { lo & !0xfff },
                kind,
                code: code.into(),
                reason: fault_reason(code),
            });
            // F is write-1-to-clear.
            self.hal.mmio_write32(record + 12, 1 << 31);
            n += 1;
        }
        let fsts = self.hal.mmio_read32(self.base + FSTS);
        if fsts & Fsts::PFO.bits() != 0 {
            self.hal.mmio_write32(self.base + FSTS, Fsts::PFO.bits());
        }
        Ok(n)
    }

    fn map_msi(&mut self, device: Bdf, vector: u8, dest_apic_id: u8) -> Result<(u32, MsiMessage)> {
        let irt = self
            .irt
            .ok_or(Error::Unsupported("interrupt remapping (not enabled)"))?;
        let index = (0..IRT_ENTRIES)
            .find(|i| self.irt_used[(i / 64) as usize] & (1 << (i % 64)) == 0)
            .ok_or(Error::NoInterruptEntry)?;
        self.irt_used[(index / 64) as usize] |= 1 << (index % 64);
        let entry = irt + u64::from(index) * 16;
        // High: source id, SQ=0 (all 16 bits compared), SVT=1 (verify the requester).
        self.hal
            .write_phys_u64(entry + 8, u64::from(device.requester_id()) | (1 << 18));
        self.hal.barrier();
        // Low: present, physical destination, edge, fixed delivery, vector, xAPIC id.
        self.hal.write_phys_u64(
            entry,
            1 | (u64::from(vector) << 16) | (u64::from(dest_apic_id) << 40),
        );
        self.invalidate_interrupt_entries(Some(index))?;
        let handle = u64::from(index);
        let address =
            0xfee0_0000 | ((handle & 0x7fff) << 5) | (1 << 4) | (((handle >> 15) & 1) << 2);
        Ok((index, MsiMessage { address, data: 0 }))
    }

    fn unmap_msi(&mut self, _device: Bdf, index: u32) -> Result<()> {
        let irt = self.irt.ok_or(Error::NoInterruptEntry)?;
        if index >= IRT_ENTRIES || self.irt_used[(index / 64) as usize] & (1 << (index % 64)) == 0 {
            return Err(Error::NoInterruptEntry);
        }
        self.hal.write_phys_u64(irt + u64::from(index) * 16, 0);
        self.invalidate_interrupt_entries(Some(index))?;
        self.irt_used[(index / 64) as usize] &= !(1 << (index % 64));
        Ok(())
    }

    fn invalidations(&self) -> u64 {
        self.invalidations
    }
}

/// The remappable-format MSI address for interrupt-remapping table `index` (what a
/// device must send to use that entry; for tests of unprogrammed entries).
pub fn remappable_msi_address(index: u32) -> u64 {
    let handle = u64::from(index);
    0xfee0_0000 | ((handle & 0x7fff) << 5) | (1 << 4) | (((handle >> 15) & 1) << 2)
}

#[cfg(test)]
mod tests;

/// An IOAPIC redirection-table entry in remappable format for interrupt-remapping table
/// `index` (VT-d spec 5.1.5.1): the entry the hypervisor programs into the IOAPIC after
/// [`IommuHw::map_msi`] with the IOAPIC's source id. `vector` must match the IRTE's.
pub fn remappable_ioapic_rte(index: u32, vector: u8, level_triggered: bool, masked: bool) -> u64 {
    let index = u64::from(index);
    u64::from(vector)
        | (((index >> 15) & 1) << 11)
        | (u64::from(level_triggered) << 15)
        | (u64::from(masked) << 16)
        | (1 << 48)
        | ((index & 0x7fff) << 49)
}
