//! Device memory in a domain's nested page table: the BARs of its assigned functions,
//! mapped uncached above its RAM where the guest placed them (`vpci`, `passthrough`).

use super::{Domain, ADDR_MASK, NPT_FLAGS};
use crate::addr::{Gpa, Hpa};
use crate::arch::phys;
use crate::mm::{FrameAllocator, PAGE};
use crate::virt::{VcpuState, VirtBackend};

/// PWT | PCD: uncached, as device registers must be.
const NPT_UNCACHED: u64 = 0x18;

impl<B: VirtBackend + Clone> Domain<B> {
    /// Maps `pages` pages of device memory at host `hpa` at guest `gpa`: only above its
    /// RAM and where nothing is mapped yet (false, nothing mapped, otherwise).
    pub fn map_mmio(&mut self, fa: &mut FrameAllocator, gpa: u64, hpa: u64, pages: u64) -> bool {
        if gpa < self.mem_bytes || !gpa.is_multiple_of(PAGE) || !hpa.is_multiple_of(PAGE) {
            return false;
        }
        // Never over anything already mapped (another BAR, a grant mapping).
        if (0..pages).any(|p| self.lookup(gpa + p * PAGE).is_some()) {
            return false;
        }
        for p in 0..pages {
            if self
                .map(fa, Gpa(gpa + p * PAGE), Hpa(hpa + p * PAGE))
                .is_none()
            {
                self.unmap_mmio(fa, gpa, p);
                return false;
            }
            self.set_leaf_flags(gpa + p * PAGE, NPT_FLAGS | NPT_UNCACHED);
        }
        true
    }

    fn set_leaf_flags(&mut self, gpa: u64, flags: u64) {
        if let Some(slot) = self.leaf(gpa) {
            let e = phys::read_u64(slot);
            phys::write_u64(slot, (e & ADDR_MASK) | flags);
        }
    }

    /// The 4 KiB leaf entry of `gpa` (device memory is never in a 2 MiB leaf: those
    /// are only made inside its RAM).
    fn leaf(&self, gpa: u64) -> Option<u64> {
        match self.slot(gpa) {
            super::npt::Slot::Page(at) => Some(at),
            _ => None,
        }
    }

    /// Unmaps `pages` pages of device memory at guest `gpa`; every vCPU's TLB is flushed
    /// before it runs again (and other CPUs are made to leave it by the caller's sync).
    pub fn unmap_mmio(&mut self, fa: &mut FrameAllocator, gpa: u64, pages: u64) {
        if gpa < self.mem_bytes {
            return;
        }
        for p in 0..pages {
            if let Some(slot) = self.leaf(gpa + p * PAGE) {
                phys::write_u64(slot, 0);
            }
        }
        for v in self.vcpus.iter_mut() {
            match v.slot.as_mut() {
                Some(s) => s.flush_tlb(),
                None => v.flush_pending = true,
            }
            if v.running_on.is_some() && v.slot.is_none() {
                fa.tlbs_stale();
            }
        }
    }
}
