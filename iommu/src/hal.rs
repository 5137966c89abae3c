//! The hardware abstraction layer: the only seam through which the drivers touch the machine.
//!
//! Every table walk, register protocol and invalidation decision in this crate is ordinary
//! safe code over this trait. The real implementation (in a kernel or hypervisor) is the only
//! place that needs `unsafe`: it turns physical addresses into volatile pointers. The
//! [`mock`] implementation keeps "physical memory" in a map so that all logic runs in host
//! unit tests.

/// A physical (host) address.
pub type PhysAddr = u64;

/// The base page size of both IOMMU formats.
pub const PAGE_SIZE: u64 = 4096;

/// Physical memory and MMIO access for the IOMMU drivers.
///
/// All methods take `&self`; implementations use interior mutability where they need it.
pub trait Hal {
    /// Allocates `pages` physically contiguous 4 KiB frames aligned to `align` bytes
    /// (a power of two, at least 4096), zero-filled. `None` when memory is exhausted.
    fn alloc_frames(&self, pages: usize, align: u64) -> Option<PhysAddr>;
    /// Returns frames obtained from [`Hal::alloc_frames`].
    fn free_frames(&self, pa: PhysAddr, pages: usize);
    /// Reads a naturally aligned 64-bit word of physical memory.
    fn read_phys_u64(&self, pa: PhysAddr) -> u64;
    /// Writes a naturally aligned 64-bit word of physical memory (a single store, so the
    /// IOMMU never sees a torn entry).
    fn write_phys_u64(&self, pa: PhysAddr, value: u64);
    /// Reads a 32-bit MMIO register.
    fn mmio_read32(&self, pa: PhysAddr) -> u32;
    /// Writes a 32-bit MMIO register.
    fn mmio_write32(&self, pa: PhysAddr, value: u32);
    /// Reads a 64-bit MMIO register.
    fn mmio_read64(&self, pa: PhysAddr) -> u64;
    /// Writes a 64-bit MMIO register.
    fn mmio_write64(&self, pa: PhysAddr, value: u64);
    /// Orders earlier memory writes before later ones and before MMIO writes (the IOMMU
    /// reads tables from memory after a doorbell). A full fence on x86 is enough; the
    /// mock needs nothing.
    fn barrier(&self) {}
    /// Called in bounded polling loops (waiting for a register bit or a completion). The
    /// mock uses it to run its emulated hardware; a kernel may pause the CPU.
    fn relax(&self) {}
}

impl<T: Hal + ?Sized> Hal for &T {
    fn alloc_frames(&self, pages: usize, align: u64) -> Option<PhysAddr> {
        (**self).alloc_frames(pages, align)
    }
    fn free_frames(&self, pa: PhysAddr, pages: usize) {
        (**self).free_frames(pa, pages)
    }
    fn read_phys_u64(&self, pa: PhysAddr) -> u64 {
        (**self).read_phys_u64(pa)
    }
    fn write_phys_u64(&self, pa: PhysAddr, value: u64) {
        (**self).write_phys_u64(pa, value)
    }
    fn mmio_read32(&self, pa: PhysAddr) -> u32 {
        (**self).mmio_read32(pa)
    }
    fn mmio_write32(&self, pa: PhysAddr, value: u32) {
        (**self).mmio_write32(pa, value)
    }
    fn mmio_read64(&self, pa: PhysAddr) -> u64 {
        (**self).mmio_read64(pa)
    }
    fn mmio_write64(&self, pa: PhysAddr, value: u64) {
        (**self).mmio_write64(pa, value)
    }
    fn barrier(&self) {
        (**self).barrier()
    }
    fn relax(&self) {
        (**self).relax()
    }
}

/// Reads a 32-bit word of physical memory through the 64-bit accessors.
pub fn read_phys_u32<H: Hal + ?Sized>(hal: &H, pa: PhysAddr) -> u32 {
    let word = hal.read_phys_u64(pa & !7);
    (word >> ((pa & 4) * 8)) as u32
}

/// Writes a 32-bit word of physical memory through the 64-bit accessors (read-modify-write
/// of the containing word; callers only use it for entries the hardware does not write).
pub fn write_phys_u32<H: Hal + ?Sized>(hal: &H, pa: PhysAddr, value: u32) {
    let shift = (pa & 4) * 8;
    let word = hal.read_phys_u64(pa & !7);
    let word = (word & !(0xffff_ffffu64 << shift)) | (u64::from(value) << shift);
    hal.write_phys_u64(pa & !7, word);
}

pub mod mock;
