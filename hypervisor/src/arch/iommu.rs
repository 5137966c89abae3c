//! The machine side of `sluice-iommu`: its [`Hal`] over the identity map. Table frames
//! come from a [`FramePool`] carved out of the frame allocator at boot; memory and
//! register accesses go through the bounds-checked accessors of [`super::phys`] (whose
//! `unsafe` blocks carry the safety arguments), so this file needs no `unsafe` itself.

use super::phys;
use crate::mm::{FramePool, PAGE};
use core::cell::RefCell;
use sluice_iommu::hal::{Hal, PhysAddr};

/// One IOMMU unit's view of the machine.
pub struct IommuHal {
    pool: RefCell<FramePool>,
    /// The unit's register block `[base, base + len)`: register accesses elsewhere are
    /// driver bugs and panic rather than touch another device or RAM.
    regs: (u64, u64),
    /// The unit's table reads snoop the CPU caches (VT-d ECAP.C; AMD-Vi always): else
    /// every table write is flushed to memory.
    coherent: bool,
}

impl IommuHal {
    /// `pool`: frames for the unit's tables; `regs`: its register block, already checked
    /// to be inside the identity map and outside RAM.
    pub fn new(pool: FramePool, regs: (u64, u64), coherent: bool) -> Self {
        IommuHal {
            pool: RefCell::new(pool),
            regs,
            coherent,
        }
    }

    /// Table frames in use.
    pub fn frames_in_use(&self) -> usize {
        self.pool.borrow().in_use()
    }

    /// Frees of frames the pool never handed out (driver bugs; refused).
    pub fn bad_frees(&self) -> u64 {
        self.pool.borrow().bad_frees
    }

    fn reg(&self, pa: PhysAddr, len: u64) -> PhysAddr {
        let (base, size) = self.regs;
        assert!(
            pa >= base && pa.checked_add(len).is_some_and(|e| e <= base + size),
            "IOMMU register access outside its block: {pa:#x}"
        );
        pa
    }

    fn table(&self, pa: PhysAddr) -> PhysAddr {
        let (start, end) = self.pool.borrow().range();
        assert!(
            pa >= start && pa.checked_add(8).is_some_and(|e| e <= end),
            "IOMMU table access outside its pool: {pa:#x}"
        );
        pa
    }
}

impl Hal for IommuHal {
    fn alloc_frames(&self, pages: usize, align: u64) -> Option<PhysAddr> {
        let pa = self.pool.borrow_mut().alloc(pages, align)?;
        phys::zero(pa, pages * PAGE as usize);
        if !self.coherent {
            phys::flush_cache(pa, pages * PAGE as usize);
        }
        Some(pa)
    }

    fn free_frames(&self, pa: PhysAddr, pages: usize) {
        self.pool.borrow_mut().free(pa, pages)
    }

    fn read_phys_u64(&self, pa: PhysAddr) -> u64 {
        phys::read_u64(self.table(pa))
    }

    fn write_phys_u64(&self, pa: PhysAddr, value: u64) {
        phys::write_u64(self.table(pa), value);
        if !self.coherent {
            phys::flush_cache(pa, 8);
        }
    }

    fn mmio_read32(&self, pa: PhysAddr) -> u32 {
        phys::mmio_read_u32(self.reg(pa, 4))
    }

    fn mmio_write32(&self, pa: PhysAddr, value: u32) {
        phys::mmio_write_u32(self.reg(pa, 4), value)
    }

    fn mmio_read64(&self, pa: PhysAddr) -> u64 {
        phys::mmio_read_u64(self.reg(pa, 8))
    }

    fn mmio_write64(&self, pa: PhysAddr, value: u64) {
        phys::mmio_write_u64(self.reg(pa, 8), value)
    }

    fn barrier(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }

    fn relax(&self) {
        core::hint::spin_loop();
    }
}
