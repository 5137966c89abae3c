//! An in-memory [`Hal`] for host tests and benchmarks.
//!
//! "Physical memory" is a map of 4 KiB frames; MMIO is a register file. Optionally the mock
//! emulates the consumer side of the VT-d invalidation queue / register invalidation and the
//! AMD-Vi command buffer, so the drivers' protocols (doorbells, wait descriptors,
//! COMPLETION_WAIT stores) run end to end on the host and every command issued is logged.

use super::{Hal, PhysAddr, PAGE_SIZE};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;

/// Which hardware the register file pretends to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Plain registers: reads return what was written.
    Plain,
    /// A VT-d unit at `base` with the given CAP and ECAP registers.
    Vtd { base: PhysAddr, cap: u64, ecap: u64 },
    /// An AMD-Vi unit at `base` with the given extended-feature register.
    AmdVi { base: PhysAddr, efr: u64 },
}

/// One command the emulated hardware consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// A 128-bit descriptor from the VT-d invalidation queue or AMD-Vi command buffer.
    Queued([u64; 2]),
    /// A VT-d register-based context-cache invalidation (the CCMD value).
    ContextReg(u64),
    /// A VT-d register-based IOTLB invalidation (IVA, IOTLB register values).
    IotlbReg(u64, u64),
}

struct Inner {
    frames: BTreeMap<u64, Box<[u64; 512]>>,
    free: Vec<u64>,
    next_frame: u64,
    limit: u64,
    allocated_pages: usize,
    /// 32-bit registers keyed by address.
    regs: BTreeMap<PhysAddr, u32>,
    model: Model,
    consumed: Vec<Consumed>,
}

/// The mock HAL. Frames are handed out from 1 MiB upwards.
pub struct MockHal {
    inner: RefCell<Inner>,
}

impl MockHal {
    /// A mock with `limit` bytes of allocatable memory and the given register model.
    pub fn new(limit: u64, model: Model) -> Self {
        let hal = MockHal {
            inner: RefCell::new(Inner {
                frames: BTreeMap::new(),
                free: Vec::new(),
                next_frame: 0x10_0000,
                limit: 0x10_0000 + limit,
                allocated_pages: 0,
                regs: BTreeMap::new(),
                model,
                consumed: Vec::new(),
            }),
        };
        match model {
            Model::Vtd { base, cap, ecap } => {
                hal.set_reg(base, 0x10);
                hal.set_reg(base + 0x08, cap);
                hal.set_reg(base + 0x10, ecap);
            }
            Model::AmdVi { base, efr } => hal.set_reg(base + 0x30, efr),
            Model::Plain => {}
        }
        hal
    }

    /// Every command consumed so far, oldest first.
    pub fn consumed(&self) -> Vec<Consumed> {
        self.inner.borrow().consumed.clone()
    }

    /// Forgets the consumed-command log.
    pub fn clear_consumed(&self) {
        self.inner.borrow_mut().consumed.clear();
    }

    /// Frames currently allocated.
    pub fn allocated_pages(&self) -> usize {
        self.inner.borrow().allocated_pages
    }

    /// Sets a 64-bit register as the hardware would (fault records, status, event tails),
    /// without side effects.
    pub fn set_reg(&self, pa: PhysAddr, value: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.regs.insert(pa, value as u32);
        inner.regs.insert(pa + 4, (value >> 32) as u32);
    }

    /// Sets a 32-bit register without side effects.
    pub fn set_reg32(&self, pa: PhysAddr, value: u32) {
        self.inner.borrow_mut().regs.insert(pa, value);
    }

    /// Reads a 64-bit register without side effects.
    pub fn reg(&self, pa: PhysAddr) -> u64 {
        self.inner.borrow().reg64(pa)
    }
}

impl Inner {
    fn read(&self, pa: PhysAddr) -> u64 {
        self.frames
            .get(&(pa & !(PAGE_SIZE - 1)))
            .map(|f| f[((pa & (PAGE_SIZE - 1)) / 8) as usize])
            .unwrap_or(0)
    }

    fn write(&mut self, pa: PhysAddr, value: u64) {
        let frame = self
            .frames
            .entry(pa & !(PAGE_SIZE - 1))
            .or_insert_with(|| Box::new([0; 512]));
        frame[((pa & (PAGE_SIZE - 1)) / 8) as usize] = value;
    }

    fn reg32(&self, pa: PhysAddr) -> u32 {
        self.regs.get(&pa).copied().unwrap_or(0)
    }

    fn reg64(&self, pa: PhysAddr) -> u64 {
        u64::from(self.reg32(pa)) | (u64::from(self.reg32(pa + 4)) << 32)
    }

    fn set64(&mut self, pa: PhysAddr, value: u64) {
        self.regs.insert(pa, value as u32);
        self.regs.insert(pa + 4, (value >> 32) as u32);
    }

    /// Write-1-to-clear registers: AMD-Vi status; VT-d fault status and the F bit of
    /// fault records.
    fn is_w1c(&self, pa: PhysAddr) -> Option<u32> {
        match self.model {
            Model::AmdVi { base, .. } if pa == base + 0x2020 => Some(0x67),
            Model::Vtd { base, cap, .. } => {
                let records = base + ((cap >> 24) & 0x3ff) * 16;
                let count = ((cap >> 40) & 0xff) + 1;
                if pa == base + 0x34 {
                    Some(0x7f)
                } else if pa >= records && pa < records + count * 16 && (pa - records) % 16 == 12 {
                    Some(1 << 31)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn write32(&mut self, pa: PhysAddr, value: u32) {
        match self.is_w1c(pa) {
            Some(mask) => {
                let old = self.reg32(pa);
                self.regs.insert(pa, old & !(value & mask));
            }
            None => {
                self.regs.insert(pa, value);
            }
        }
    }

    fn side_effects(&mut self, pa: PhysAddr) {
        match self.model {
            Model::Plain => {}
            Model::Vtd { base, ecap, .. } => self.vtd_side_effects(base, ecap, pa - base),
            Model::AmdVi { base, .. } => self.amdvi_side_effects(base, pa - base),
        }
    }

    fn vtd_side_effects(&mut self, base: PhysAddr, ecap: u64, off: u64) {
        let iotlb = ((ecap >> 8) & 0x3ff) * 16;
        match off {
            // GCMD: persistent bits are mirrored into GSTS; one-shot bits (SRTP, SIRTP)
            // report completion at the same positions; WBF completes at once.
            0x18 => {
                let gsts = self.reg32(base + 0x18) & !(1 << 27);
                self.regs.insert(base + 0x1c, gsts);
            }
            0x28 => {
                let value = self.reg64(base + 0x28);
                if value >> 63 == 1 {
                    self.consumed.push(Consumed::ContextReg(value));
                    self.set64(base + 0x28, value & !(1 << 63));
                }
            }
            o if o == iotlb + 8 => {
                let value = self.reg64(base + iotlb + 8);
                if value >> 63 == 1 {
                    let iva = self.reg64(base + iotlb);
                    self.consumed.push(Consumed::IotlbReg(iva, value));
                    self.set64(base + iotlb + 8, value & !(1 << 63));
                }
            }
            // IQT: consume descriptors from head to tail.
            0x88 => {
                let iqa = self.reg64(base + 0x90);
                let queue = iqa & !0xfff;
                let entries = 256u64 << (iqa & 7);
                let mut head = self.reg64(base + 0x80) >> 4;
                let tail = self.reg64(base + 0x88) >> 4;
                while head != tail {
                    let d0 = self.read(queue + head * 16);
                    let d1 = self.read(queue + head * 16 + 8);
                    self.consumed.push(Consumed::Queued([d0, d1]));
                    // Wait descriptor with a status write.
                    if d0 & 0xf == 5 && d0 & (1 << 5) != 0 {
                        let addr = d1 & !3;
                        let word = self.read(addr & !7);
                        let shift = (addr & 4) * 8;
                        let word = (word & !(0xffff_ffffu64 << shift)) | ((d0 >> 32) << shift);
                        self.write(addr & !7, word);
                    }
                    head = (head + 1) % entries;
                }
                self.set64(base + 0x80, head << 4);
            }
            _ => {}
        }
    }

    fn amdvi_side_effects(&mut self, base: PhysAddr, off: u64) {
        // Command buffer tail doorbell.
        if off == 0x2008 {
            let cmd_base = self.reg64(base + 0x08);
            let ring = cmd_base & 0x000f_ffff_ffff_f000;
            let entries = 1u64 << ((cmd_base >> 56) & 0xf);
            let mut head = (self.reg64(base + 0x2000) & 0x7fff0) >> 4;
            let tail = (self.reg64(base + 0x2008) & 0x7fff0) >> 4;
            while head != tail {
                let c0 = self.read(ring + head * 16);
                let c1 = self.read(ring + head * 16 + 8);
                self.consumed.push(Consumed::Queued([c0, c1]));
                if c0 >> 60 == 1 && c0 & 1 != 0 {
                    self.write(c0 & 0x000f_ffff_ffff_fff8, c1);
                }
                head = (head + 1) % entries;
            }
            self.set64(base + 0x2000, head << 4);
        }
    }
}

impl Hal for MockHal {
    fn alloc_frames(&self, pages: usize, align: u64) -> Option<PhysAddr> {
        let mut inner = self.inner.borrow_mut();
        let start = if pages == 1 && align <= PAGE_SIZE && !inner.free.is_empty() {
            inner.free.pop().unwrap_or_default()
        } else {
            let start = inner.next_frame.next_multiple_of(align.max(PAGE_SIZE));
            let end = start + pages as u64 * PAGE_SIZE;
            if end > inner.limit {
                return None;
            }
            inner.next_frame = end;
            start
        };
        inner.allocated_pages += pages;
        for i in 0..pages as u64 {
            inner
                .frames
                .insert(start + i * PAGE_SIZE, Box::new([0; 512]));
        }
        Some(start)
    }

    fn free_frames(&self, pa: PhysAddr, pages: usize) {
        let mut inner = self.inner.borrow_mut();
        for i in 0..pages as u64 {
            let frame = pa + i * PAGE_SIZE;
            assert!(
                inner.frames.remove(&frame).is_some(),
                "free of a frame that is not allocated: {frame:#x}"
            );
            inner.free.push(frame);
        }
        inner.allocated_pages -= pages;
    }

    fn read_phys_u64(&self, pa: PhysAddr) -> u64 {
        self.inner.borrow().read(pa)
    }

    fn write_phys_u64(&self, pa: PhysAddr, value: u64) {
        self.inner.borrow_mut().write(pa, value)
    }

    fn mmio_read32(&self, pa: PhysAddr) -> u32 {
        self.inner.borrow().reg32(pa)
    }

    fn mmio_write32(&self, pa: PhysAddr, value: u32) {
        let mut inner = self.inner.borrow_mut();
        inner.write32(pa, value);
        inner.side_effects(pa & !7);
    }

    fn mmio_read64(&self, pa: PhysAddr) -> u64 {
        self.inner.borrow().reg64(pa)
    }

    fn mmio_write64(&self, pa: PhysAddr, value: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.write32(pa, value as u32);
        inner.write32(pa + 4, (value >> 32) as u32);
        inner.side_effects(pa);
    }
}
