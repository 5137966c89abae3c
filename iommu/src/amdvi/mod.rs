//! AMD-Vi: device table, host I/O page tables, command buffer, event log and interrupt
//! remapping tables (AMD IOMMU spec 48882, chapters 2 and 3).

use crate::domain::{Fault, FaultKind, IommuHw, MsiMessage};
use crate::error::{Error, Result};
use crate::hal::{read_phys_u32, write_phys_u32, Hal, PhysAddr, PAGE_SIZE};
use crate::pagetable::AmdViFormat;
use crate::{Bdf, Coverage};
use alloc::collections::BTreeMap;
use bitflags::bitflags;

pub const DEVICE_TABLE_BASE: u64 = 0x00;
pub const COMMAND_BASE: u64 = 0x08;
pub const EVENT_BASE: u64 = 0x10;
pub const CONTROL: u64 = 0x18;
pub const EXT_FEATURES: u64 = 0x30;
pub const COMMAND_HEAD: u64 = 0x2000;
pub const COMMAND_TAIL: u64 = 0x2008;
pub const EVENT_HEAD: u64 = 0x2010;
pub const EVENT_TAIL: u64 = 0x2018;
pub const STATUS: u64 = 0x2020;

bitflags! {
    /// The control register.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Control: u64 {
        const IOMMU_EN = 1 << 0;
        const EVENT_LOG_EN = 1 << 2;
        const EVENT_INT_EN = 1 << 3;
        const COM_WAIT_INT_EN = 1 << 4;
        const CMD_BUF_EN = 1 << 12;
        const GA_EN = 1 << 17;
    }
}

bitflags! {
    /// The status register.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Status: u64 {
        const EVENT_OVERFLOW = 1 << 0;
        const EVENT_LOG_INT = 1 << 1;
        const COM_WAIT_INT = 1 << 2;
        const EVENT_LOG_RUN = 1 << 3;
        const CMD_BUF_RUN = 1 << 4;
    }
}

const SPIN_LIMIT: u32 = 50_000_000;
/// Device-table entries: all 65536 requester ids (2 MiB).
const DEVICE_TABLE_PAGES: usize = 512;
/// Command buffer: 256 entries (one page), event log: 512 entries (two pages).
const COMMAND_LOG2: u64 = 8;
const EVENT_LOG2: u64 = 9;
/// Interrupt-remapping entries per device (legacy 32-bit format, one page is plenty).
/// MSI data bits 8-10 are the delivery mode, so indices stay below 256.
const IRT_ENTRIES: u32 = 256;

// Device-table entry bits.
const DTE_V: u64 = 1 << 0;
const DTE_TV: u64 = 1 << 1;
const DTE_IR: u64 = 1 << 61;
const DTE_IW: u64 = 1 << 62;
const DTE_IV: u64 = 1 << 0;
const DTE_INTCTL_REMAP: u64 = 2 << 60;

/// Command opcodes.
mod opcode {
    pub const COMPLETION_WAIT: u64 = 0x1;
    pub const INVALIDATE_DEVTAB_ENTRY: u64 = 0x2;
    pub const INVALIDATE_IOMMU_PAGES: u64 = 0x3;
    pub const INVALIDATE_INTERRUPT_TABLE: u64 = 0x5;
}

/// Driver options.
#[derive(Clone, Copy, Debug, Default)]
pub struct AmdViConfig {
    /// The unit caches non-present entries (capability header NpCache, bit 26): flush
    /// after map too.
    pub np_cache: bool,
    /// Virtual address bits to translate (from IVRS IVinfo); picks the page-table depth.
    pub va_bits: u8,
}

/// One AMD-Vi unit.
pub struct AmdVi<H: Hal> {
    hal: H,
    base: PhysAddr,
    coverage: Coverage,
    levels: u8,
    config: AmdViConfig,
    device_table: PhysAddr,
    command: PhysAddr,
    command_tail: u64,
    event_log: PhysAddr,
    event_head: u64,
    completion: PhysAddr,
    sequence: u64,
    /// Per-device interrupt-remapping table and its used-entry bitmap.
    irts: BTreeMap<u16, (PhysAddr, [u64; 4])>,
    invalidations: u64,
    /// Events lost to log overflow.
    pub lost_events: u64,
    pub ext_features: u64,
}

impl<H: Hal> AmdVi<H> {
    /// Per-device interrupt-remapping tables allocated (kept once made, as the device
    /// table is).
    pub fn interrupt_tables(&self) -> usize {
        self.irts.len()
    }

    /// Takes over the unit at `base`: a device table with every device blocked (DMA and
    /// interrupts), the command buffer and event log, then enables translation.
    pub fn new(hal: H, base: PhysAddr, coverage: Coverage, config: AmdViConfig) -> Result<Self> {
        let ext_features = hal.mmio_read64(base + EXT_FEATURES);
        // Host address translation size: 0 => 4 levels max, 1 => 5, 2 => 6.
        let max_levels = 4 + ((ext_features >> 10) & 3) as u8;
        let va_bits = if config.va_bits == 0 {
            48
        } else {
            config.va_bits
        };
        let levels = (va_bits.saturating_sub(12))
            .div_ceil(9)
            .clamp(3, max_levels.min(6));
        hal.mmio_write64(base + CONTROL, 0);
        let alloc =
            |pages: usize, align: u64| hal.alloc_frames(pages, align).ok_or(Error::OutOfMemory);
        let device_table = alloc(DEVICE_TABLE_PAGES, 2 << 20)?;
        let command = alloc(1, PAGE_SIZE)?;
        let event_log = alloc(2, PAGE_SIZE)?;
        let completion = alloc(1, PAGE_SIZE)?;
        let amd = AmdVi {
            hal,
            base,
            coverage,
            levels,
            config,
            device_table,
            command,
            command_tail: 0,
            event_log,
            event_head: 0,
            completion,
            sequence: 0,
            irts: BTreeMap::new(),
            invalidations: 0,
            lost_events: 0,
            ext_features,
        };
        for id in 0..=u16::MAX {
            amd.write_dte(id, Self::blocked_dte());
        }
        let hal = &amd.hal;
        hal.barrier();
        hal.mmio_write64(
            base + DEVICE_TABLE_BASE,
            device_table | (DEVICE_TABLE_PAGES as u64 - 1),
        );
        hal.mmio_write64(base + COMMAND_BASE, command | (COMMAND_LOG2 << 56));
        hal.mmio_write64(base + COMMAND_HEAD, 0);
        hal.mmio_write64(base + COMMAND_TAIL, 0);
        hal.mmio_write64(base + EVENT_BASE, event_log | (EVENT_LOG2 << 56));
        hal.mmio_write64(base + EVENT_HEAD, 0);
        hal.mmio_write64(base + EVENT_TAIL, 0);
        hal.mmio_write64(base + STATUS, Status::EVENT_OVERFLOW.bits());
        hal.mmio_write64(
            base + CONTROL,
            (Control::IOMMU_EN | Control::EVENT_LOG_EN | Control::CMD_BUF_EN).bits(),
        );
        Ok(amd)
    }

    /// DMA blocked (translation valid, mode 0, no permissions); interrupts aborted
    /// (IV=1, IntCtl=0).
    fn blocked_dte() -> [u64; 3] {
        [DTE_V | DTE_TV, 0, DTE_IV]
    }

    fn dte(&self, id: u16) -> PhysAddr {
        self.device_table + u64::from(id) * 32
    }

    /// Writes DTE quads 1 and 2 before quad 0 (which holds V and the root pointer).
    fn write_dte(&self, id: u16, q: [u64; 3]) {
        let e = self.dte(id);
        self.hal.write_phys_u64(e + 8, q[1]);
        self.hal.write_phys_u64(e + 16, q[2]);
        self.hal.write_phys_u64(e + 24, 0);
        self.hal.barrier();
        self.hal.write_phys_u64(e, q[0]);
    }

    fn spin(&self, what: &'static str, mut done: impl FnMut() -> bool) -> Result<()> {
        for _ in 0..SPIN_LIMIT {
            if done() {
                return Ok(());
            }
            self.hal.relax();
        }
        Err(Error::Timeout(what))
    }

    /// Queues commands, then COMPLETION_WAIT with a store, and waits for the store.
    fn submit(&mut self, commands: &[[u64; 2]]) -> Result<()> {
        let entries = 1u64 << COMMAND_LOG2;
        self.sequence += 1;
        let wait = [
            self.completion | 1 | (opcode::COMPLETION_WAIT << 60),
            self.sequence,
        ];
        for c in commands.iter().chain(core::iter::once(&wait)) {
            let next = (self.command_tail + 1) % entries;
            // Never overrun the head.
            self.spin("command buffer space", || {
                (self.hal.mmio_read64(self.base + COMMAND_HEAD) >> 4) % entries != next
            })?;
            let slot = self.command + self.command_tail * 16;
            self.hal.write_phys_u64(slot, c[0]);
            self.hal.write_phys_u64(slot + 8, c[1]);
            self.command_tail = next;
        }
        self.hal.barrier();
        self.hal
            .mmio_write64(self.base + COMMAND_TAIL, self.command_tail << 4);
        let seq = self.sequence;
        self.spin("COMPLETION_WAIT store", || {
            self.hal.read_phys_u64(self.completion) == seq
        })
    }

    fn invalidate_devtab_entry(&mut self, id: u16) -> Result<()> {
        self.invalidations += 1;
        self.submit(&[[u64::from(id) | (opcode::INVALIDATE_DEVTAB_ENTRY << 60), 0]])
    }

    /// INVALIDATE_IOMMU_PAGES for `did`: `None` for the whole domain, else a naturally
    /// aligned power-of-two range covering `(iova, len)`.
    fn invalidate_pages(&mut self, did: u16, range: Option<(u64, u64)>, pde: bool) -> Result<()> {
        self.invalidations += 1;
        let address = match range {
            None => 0x7fff_ffff_ffff_f000 | 1,
            Some((iova, len)) => {
                let first = iova >> 12;
                let last = (iova + len - 1) >> 12;
                let mut order = 0u32;
                while (first >> order) != (last >> order) {
                    order += 1;
                }
                if order >= 51 {
                    0x7fff_ffff_ffff_f000 | 1
                } else if order == 0 {
                    first << 12
                } else {
                    // S=1: the lowest clear bit at or above 12 gives the size.
                    let base = (first >> order) << order << 12;
                    base | ((1u64 << (order + 11)) - 1) & !0xfff | 1
                }
            }
        };
        let cmd0 = (u64::from(did) << 32) | (opcode::INVALIDATE_IOMMU_PAGES << 60);
        self.submit(&[[cmd0, address | (u64::from(pde) << 1)]])
    }

    fn invalidate_interrupt_table(&mut self, id: u16) -> Result<()> {
        self.invalidations += 1;
        self.submit(&[[
            u64::from(id) | (opcode::INVALIDATE_INTERRUPT_TABLE << 60),
            0,
        ]])
    }

    /// Physical address of the event log (for diagnostics).
    pub fn event_log_base(&self) -> PhysAddr {
        self.event_log
    }

    /// Page-table levels in use.
    pub fn page_table_levels(&self) -> u8 {
        self.levels
    }
}

/// Event codes in words.
pub fn event_name(code: u8) -> &'static str {
    match code {
        0x1 => "ILLEGAL_DEV_TABLE_ENTRY",
        0x2 => "IO_PAGE_FAULT",
        0x3 => "DEV_TAB_HARDWARE_ERROR",
        0x4 => "PAGE_TAB_HARDWARE_ERROR",
        0x5 => "ILLEGAL_COMMAND_ERROR",
        0x6 => "COMMAND_HARDWARE_ERROR",
        0x7 => "IOTLB_INV_TIMEOUT",
        0x8 => "INVALID_DEVICE_REQUEST",
        0x9 => "INVALID_PPR_REQUEST",
        0xa => "EVENT_COUNTER_ZERO",
        _ => "unknown event",
    }
}

bitflags! {
    /// Access flags of IO_PAGE_FAULT and related events (event bits 48-59).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AccessFlags: u16 {
        /// Guest (nested) translation.
        const GN = 1 << 0;
        /// No-execute.
        const NX = 1 << 1;
        /// User/supervisor.
        const US = 1 << 2;
        /// Interrupt request (not a memory access).
        const I = 1 << 3;
        /// Present: the translation existed but denied the access.
        const PR = 1 << 4;
        /// Write access.
        const RW = 1 << 5;
        /// Permission bits were the cause.
        const PE = 1 << 6;
        /// Reserved bit set in a table entry.
        const RZ = 1 << 7;
        /// Translation request (ATS).
        const TR = 1 << 8;
    }
}

/// One event-log entry, decoded per its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    IllegalDevTableEntry {
        device: u16,
        address: u64,
        flags: AccessFlags,
    },
    IoPageFault {
        device: u16,
        domain: u16,
        address: u64,
        flags: AccessFlags,
    },
    DevTabHardwareError {
        device: u16,
        address: u64,
        flags: AccessFlags,
    },
    PageTabHardwareError {
        device: u16,
        domain: u16,
        address: u64,
        flags: AccessFlags,
    },
    IllegalCommandError {
        address: u64,
    },
    CommandHardwareError {
        address: u64,
    },
    IotlbInvTimeout {
        device: u16,
        address: u64,
    },
    InvalidDeviceRequest {
        device: u16,
        address: u64,
        flags: AccessFlags,
    },
    Other {
        code: u8,
        raw: [u64; 2],
    },
}

impl Event {
    /// Decodes a 128-bit entry (AMD IOMMU spec 2.5).
    pub fn decode(e: [u64; 2]) -> Self {
        let code = ((e[0] >> 60) & 0xf) as u8;
        let device = e[0] as u16;
        let domain = (e[0] >> 32) as u16;
        let flags = AccessFlags::from_bits_truncate(((e[0] >> 48) & 0xfff) as u16);
        let address = e[1];
        match code {
            0x1 => Event::IllegalDevTableEntry {
                device,
                address,
                flags,
            },
            0x2 => Event::IoPageFault {
                device,
                domain,
                address,
                flags,
            },
            0x3 => Event::DevTabHardwareError {
                device,
                address,
                flags,
            },
            0x4 => Event::PageTabHardwareError {
                device,
                domain,
                address,
                flags,
            },
            0x5 => Event::IllegalCommandError { address },
            0x6 => Event::CommandHardwareError { address },
            0x7 => Event::IotlbInvTimeout { device, address },
            0x8 => Event::InvalidDeviceRequest {
                device,
                address,
                flags,
            },
            _ => Event::Other { code, raw: e },
        }
    }
}

/// Decodes one 128-bit event-log entry into the vendor-neutral [`Fault`].
pub fn decode_event(segment: u16, e: [u64; 2]) -> Fault {
    let code = ((e[0] >> 60) & 0xf) as u8;
    let event = Event::decode(e);
    let (device, kind) = match event {
        Event::IoPageFault { device, flags, .. }
        | Event::InvalidDeviceRequest { device, flags, .. }
        | Event::IllegalDevTableEntry { device, flags, .. } => {
            // QEMU 7.2 puts its IOMMU_RO/IOMMU_WO access bits (1, 2) in this field instead
            // of RW (bit 5): treat bit 1 as a write too.
            let write = flags.contains(AccessFlags::RW)
                || flags.contains(AccessFlags::NX) && !flags.contains(AccessFlags::GN);
            let kind =
                if flags.contains(AccessFlags::I) && !write && !flags.contains(AccessFlags::GN) {
                    FaultKind::Interrupt
                } else if code != 0x2 {
                    FaultKind::Other
                } else if write {
                    FaultKind::Write
                } else {
                    FaultKind::Read
                };
            (device, kind)
        }
        Event::DevTabHardwareError { device, .. }
        | Event::PageTabHardwareError { device, .. }
        | Event::IotlbInvTimeout { device, .. } => (device, FaultKind::Other),
        _ => (0, FaultKind::Other),
    };
    Fault {
        device: Bdf::from_requester_id(segment, device),
        address: e[1],
        kind,
        code: code.into(),
        reason: event_name(code),
    }
}

impl<H: Hal> IommuHw for AmdVi<H> {
    type Hal = H;
    type Format = AmdViFormat;

    fn hal(&self) -> &H {
        &self.hal
    }

    fn levels(&self) -> u8 {
        self.levels
    }

    fn max_leaf_level(&self) -> u8 {
        3
    }

    fn domain_ids(&self) -> core::ops::Range<u32> {
        1..1 << 16
    }

    fn covers(&self, device: Bdf) -> bool {
        self.coverage.covers(device)
    }

    fn attach(&mut self, device: Bdf, did: u16, root: PhysAddr) -> Result<()> {
        let id = device.requester_id();
        let q2 = self.hal.read_phys_u64(self.dte(id) + 16);
        let q0 = DTE_V | DTE_TV | (u64::from(self.levels) << 9) | root | DTE_IR | DTE_IW;
        self.write_dte(id, [q0, u64::from(did), q2]);
        self.invalidate_devtab_entry(id)?;
        self.invalidate_pages(did, None, true)
    }

    fn detach(&mut self, device: Bdf, did: u16) -> Result<()> {
        let id = device.requester_id();
        let q2 = self.hal.read_phys_u64(self.dte(id) + 16);
        let blocked = Self::blocked_dte();
        self.write_dte(id, [blocked[0], 0, q2]);
        self.invalidate_devtab_entry(id)?;
        self.invalidate_pages(did, None, true)
    }

    fn flush(&mut self, did: u16, range: Option<(u64, u64)>, tables_freed: bool) -> Result<()> {
        self.invalidate_pages(did, range, tables_freed)
    }

    fn flush_on_map(&self) -> bool {
        self.config.np_cache
    }

    fn drain_faults(&mut self, out: &mut dyn FnMut(Fault)) -> Result<usize> {
        let entries = 1u64 << EVENT_LOG2;
        let tail = ((self.hal.mmio_read64(self.base + EVENT_TAIL) >> 4) & 0x7fff) % entries;
        let mut n = 0;
        // QEMU 7.2 never advances the tail register: past it, also accept entries the
        // hardware wrote (consumed slots are zeroed, so a non-zero code is a new event).
        let mut past_tail = false;
        while n < entries {
            let slot = self.event_log + self.event_head * 16;
            if self.event_head == tail || past_tail {
                if self.hal.read_phys_u64(slot) >> 60 == 0 {
                    break;
                }
                past_tail = true;
            }
            let e = [
                self.hal.read_phys_u64(slot),
                self.hal.read_phys_u64(slot + 8),
            ];
            self.hal.write_phys_u64(slot, 0);
            self.hal.write_phys_u64(slot + 8, 0);
            out(decode_event(self.coverage.segment, e));
            n += 1;
            self.event_head = (self.event_head + 1) % entries;
        }
        self.hal
            .mmio_write64(self.base + EVENT_HEAD, self.event_head << 4);
        let status = Status::from_bits_truncate(self.hal.mmio_read64(self.base + STATUS));
        let overflow = status.contains(Status::EVENT_OVERFLOW);
        if overflow || (past_tail && self.event_head != 0) {
            // Restart the log empty (the tail may only be written while the log is
            // disabled). This recovers from overflow, which stops logging until software
            // intervenes, and keeps QEMU's never-wrapping tail inside the log.
            if overflow {
                self.lost_events += 1;
            }
            let control = self.hal.mmio_read64(self.base + CONTROL);
            self.hal
                .mmio_write64(self.base + CONTROL, control & !Control::EVENT_LOG_EN.bits());
            self.hal.mmio_write64(self.base + EVENT_HEAD, 0);
            self.hal.mmio_write64(self.base + EVENT_TAIL, 0);
            self.hal
                .mmio_write64(self.base + STATUS, Status::EVENT_OVERFLOW.bits());
            self.hal.mmio_write64(self.base + CONTROL, control);
            self.event_head = 0;
        }
        Ok(n as usize)
    }

    fn map_msi(&mut self, device: Bdf, vector: u8, dest_apic_id: u8) -> Result<(u32, MsiMessage)> {
        let id = device.requester_id();
        if !self.irts.contains_key(&id) {
            let table = self
                .hal
                .alloc_frames(1, PAGE_SIZE)
                .ok_or(Error::OutOfMemory)?;
            self.irts.insert(id, (table, [0; 4]));
            let e = self.dte(id);
            let q = [
                self.hal.read_phys_u64(e),
                self.hal.read_phys_u64(e + 8),
                // IV, IntTabLen = log2(256), table root, IntCtl = remapped.
                DTE_IV | (8 << 1) | table | DTE_INTCTL_REMAP,
            ];
            self.write_dte(id, q);
            self.invalidate_devtab_entry(id)?;
        }
        let Some((table, used)) = self.irts.get_mut(&id) else {
            return Err(Error::NoInterruptEntry);
        };
        let index = (0..IRT_ENTRIES)
            .find(|i| used[(i / 64) as usize] & (1 << (i % 64)) == 0)
            .ok_or(Error::NoInterruptEntry)?;
        used[(index / 64) as usize] |= 1 << (index % 64);
        let table = *table;
        // RemapEn, fixed, physical destination, destination, vector.
        let irte = 1 | (u32::from(dest_apic_id) << 8) | (u32::from(vector) << 16);
        write_phys_u32(&self.hal, table + u64::from(index) * 4, irte);
        self.invalidate_interrupt_table(id)?;
        Ok((
            index,
            MsiMessage {
                address: 0xfee0_0000,
                data: index,
            },
        ))
    }

    fn unmap_msi(&mut self, device: Bdf, index: u32) -> Result<()> {
        let id = device.requester_id();
        let (table, used) = self.irts.get_mut(&id).ok_or(Error::NoInterruptEntry)?;
        if index >= IRT_ENTRIES || used[(index / 64) as usize] & (1 << (index % 64)) == 0 {
            return Err(Error::NoInterruptEntry);
        }
        used[(index / 64) as usize] &= !(1 << (index % 64));
        let table = *table;
        write_phys_u32(&self.hal, table + u64::from(index) * 4, 0);
        debug_assert_eq!(read_phys_u32(&self.hal, table + u64::from(index) * 4), 0);
        self.invalidate_interrupt_table(id)
    }

    fn invalidations(&self) -> u64 {
        self.invalidations
    }
}

#[cfg(test)]
mod tests;
