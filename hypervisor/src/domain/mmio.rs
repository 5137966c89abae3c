//! Device memory in a domain's nested page table: the BARs of its assigned functions,
//! mapped uncached above its RAM where the guest placed them (`vpci`, `passthrough`).
//! Wherever guest and host address are both 2 MiB aligned and a whole 2 MiB of the
//! range remains, one 2 MiB leaf maps it (a 1 GiB BAR: 512 leaves in one table, not
//! 262144 4 KiB leaves in 513); the rest in 4 KiB leaves.

use super::npt::{Slot, LARGE};
use super::{Domain, ADDR_MASK, NPT_FLAGS};
use crate::addr::{Gpa, Hpa};
use crate::arch::phys;
use crate::mm::{FrameAllocator, PAGE};
use crate::virt::{VcpuState, VirtBackend};

/// PWT | PCD: uncached, as device registers must be.
const NPT_UNCACHED: u64 = 0x18;
const LARGE_PAGES: u64 = LARGE / PAGE;

/// What mapping a range of device memory took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MmioCost {
    /// 2 MiB leaves made.
    pub large: u64,
    /// 4 KiB leaves made.
    pub small: u64,
    /// Page-table frames allocated for it.
    pub tables: u64,
}

impl MmioCost {
    pub fn add(&mut self, o: MmioCost) {
        self.large += o.large;
        self.small += o.small;
        self.tables += o.tables;
    }
}

/// The start of the 2 MiB region after the one holding `gpa`.
fn next_large(gpa: u64) -> u64 {
    (gpa & !(LARGE - 1)) + LARGE
}

impl<B: VirtBackend + Clone> Domain<B> {
    /// Maps `pages` pages of device memory at host `hpa` at guest `gpa`: only above its
    /// RAM and where nothing is mapped yet (None, nothing mapped, otherwise).
    pub fn map_mmio(
        &mut self,
        fa: &mut FrameAllocator,
        gpa: u64,
        hpa: u64,
        pages: u64,
    ) -> Option<MmioCost> {
        if gpa < self.mem_bytes || !gpa.is_multiple_of(PAGE) || !hpa.is_multiple_of(PAGE) {
            return None;
        }
        let len = pages.checked_mul(PAGE)?;
        let end = gpa.checked_add(len)?;
        if hpa.checked_add(len)? > ADDR_MASK + PAGE || end > ADDR_MASK + PAGE {
            return None;
        }
        // Never over anything already mapped (another BAR, a grant mapping).
        if self.any_mapped(gpa, end) {
            return None;
        }
        let before = fa.handed_out;
        let mut cost = MmioCost::default();
        let mut p = 0;
        while p < pages {
            let (g, h) = (gpa + p * PAGE, hpa + p * PAGE);
            let whole =
                g.is_multiple_of(LARGE) && h.is_multiple_of(LARGE) && pages - p >= LARGE_PAGES;
            // A 2 MiB leaf where the page directory entry is free (a table left there by
            // earlier 4 KiB leaves, all non-present now, is kept: 4 KiB leaves again).
            if whole
                && self
                    .map_large_flags(fa, Gpa(g), Hpa(h), NPT_UNCACHED)
                    .is_some()
            {
                cost.large += 1;
                p += LARGE_PAGES;
                continue;
            }
            if self.map(fa, Gpa(g), Hpa(h)).is_none() {
                self.unmap_mmio(fa, gpa, p);
                return None;
            }
            self.set_leaf_flags(g, NPT_FLAGS | NPT_UNCACHED);
            cost.small += 1;
            p += 1;
        }
        cost.tables = fa.handed_out.saturating_sub(before);
        Some(cost)
    }

    /// Whether anything is mapped in `[gpa, end)` (a missing table skips its range).
    fn any_mapped(&self, gpa: u64, end: u64) -> bool {
        let mut g = gpa;
        while g < end {
            match self.slot(g) {
                Slot::Large(_) => return true,
                Slot::Page(at) if phys::read_u64(at) & 1 != 0 => return true,
                Slot::Page(_) => g += PAGE,
                Slot::Unmapped => g = next_large(g),
            }
        }
        false
    }

    fn set_leaf_flags(&mut self, gpa: u64, flags: u64) {
        if let Slot::Page(slot) = self.slot(gpa) {
            let e = phys::read_u64(slot);
            phys::write_u64(slot, (e & ADDR_MASK) | flags);
        }
    }

    /// The nested page table's entry for `gpa` above its RAM: the host address and
    /// whether a 2 MiB leaf maps it (None: nothing mapped). For the host tests.
    #[cfg(test)]
    pub fn mmio_at(&self, gpa: u64) -> Option<(Hpa, bool)> {
        if gpa < self.mem_bytes {
            return None;
        }
        let large = matches!(self.slot(gpa), Slot::Large(_));
        self.lookup(gpa).map(|(_, h)| (h, large))
    }

    /// Unmaps `pages` pages of device memory at guest `gpa` (above its RAM only); every
    /// vCPU's TLB is flushed before it runs again (and other CPUs are made to leave it
    /// by the caller's sync). A 2 MiB leaf wholly inside goes at once; one only partly
    /// inside (never made by `map_mmio` for a range unmapped whole) is split first.
    pub fn unmap_mmio(&mut self, fa: &mut FrameAllocator, gpa: u64, pages: u64) {
        if gpa < self.mem_bytes {
            return;
        }
        let end = gpa.saturating_add(pages.saturating_mul(PAGE));
        let mut g = gpa;
        while g < end {
            match self.slot(g) {
                Slot::Large(pde) if g.is_multiple_of(LARGE) && end - g >= LARGE => {
                    phys::write_u64(pde, 0);
                    g += LARGE;
                }
                Slot::Large(pde) => {
                    // Without a frame for the split the whole leaf goes (more is
                    // unmapped than asked, never less).
                    match self.split(fa, pde) {
                        Some(t) => phys::write_u64(t + ((g >> 12) & 0x1FF) * 8, 0),
                        None => phys::write_u64(pde, 0),
                    }
                    g += PAGE;
                }
                Slot::Page(at) => {
                    phys::write_u64(at, 0);
                    g += PAGE;
                }
                Slot::Unmapped => g = next_large(g),
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
