//! A domain's nested page table: 4 KiB leaves, and 2 MiB leaves wherever its RAM is
//! one aligned, contiguous run of its own frames (as Xen's p2m uses superpages). A
//! 2 MiB leaf is split into 512 4 KiB leaves, with the same translations, before any
//! page inside it changes (a grant mapping, add_to_physmap); once every page of such a
//! table is back to the run it was split from (the domain's own frames, writable,
//! cacheable), the leaves are merged again. Device memory (a BAR, `mmio.rs`) gets 2 MiB
//! leaves where guest and host addresses align, uncached, never merged or split by
//! the RAM paths (which stop at the end of its RAM). 1 GiB leaves are not made: a
//! domain's RAM is at most 512 MiB here, and a 1 GiB BAR costs one table of 2 MiB leaves.

use super::{Domain, ADDR_MASK, NPT_FLAGS};
use crate::addr::{Gpa, Hpa};
use crate::arch::phys;
use crate::mm::{FrameAllocator, Owner, PAGE};
use crate::virt::{VcpuState, VirtBackend};

/// PS: the entry of a page-directory level is a leaf.
pub(super) const NPT_LARGE: u64 = 1 << 7;
/// A 2 MiB leaf's size, and its frames.
pub const LARGE: u64 = 2 << 20;
const LARGE_FRAMES: u64 = LARGE / PAGE;
/// The flags of a leaf that may be part of a merged 2 MiB leaf (no other bit set).
const FLAGS_MASK: u64 = 0xFFF | (0xFFF << 52);

/// Where the nested walk for one guest-physical address ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// The address of its 4 KiB leaf entry (which may be non-present).
    Page(u64),
    /// The address of the 2 MiB leaf (a page-directory entry) holding it.
    Large(u64),
    /// A table on the way is missing.
    Unmapped,
}

impl<B: VirtBackend + Clone> Domain<B> {
    /// The nested walk for `gpa` (no table allocated).
    pub(super) fn slot(&self, gpa: u64) -> Slot {
        let mut table = self.npt_root.0;
        for level in (1..4).rev() {
            let at = table + ((gpa >> (12 + 9 * level)) & 0x1FF) * 8;
            let e = phys::read_u64(at);
            if e & 1 == 0 {
                return Slot::Unmapped;
            }
            if e & NPT_LARGE != 0 {
                // Only page-directory leaves are ever made.
                return if level == 1 {
                    Slot::Large(at)
                } else {
                    Slot::Unmapped
                };
            }
            table = e & ADDR_MASK;
        }
        Slot::Page(table + ((gpa >> 12) & 0x1FF) * 8)
    }

    /// The leaf entry mapping `gpa` and the host address it gives (None: not present).
    pub(super) fn lookup(&self, gpa: u64) -> Option<(u64, Hpa)> {
        match self.slot(gpa) {
            Slot::Page(at) => {
                let e = phys::read_u64(at);
                (e & 1 != 0).then_some((e, Hpa((e & ADDR_MASK) | (gpa & (PAGE - 1)))))
            }
            Slot::Large(at) => {
                let e = phys::read_u64(at);
                Some((e, Hpa((e & ADDR_MASK & !(LARGE - 1)) | (gpa & (LARGE - 1)))))
            }
            Slot::Unmapped => None,
        }
    }

    /// The page-directory entry covering `gpa`, allocating the levels above it; None
    /// when a table cannot be allocated.
    fn pd_entry(&mut self, fa: &mut FrameAllocator, gpa: u64) -> Option<u64> {
        let mut table = self.npt_root.0;
        for level in (2..4).rev() {
            let at = table + ((gpa >> (12 + 9 * level)) & 0x1FF) * 8;
            let e = phys::read_u64(at);
            table = if e & 1 != 0 {
                e & ADDR_MASK
            } else {
                let t = fa.alloc()?;
                phys::write_u64(at, t | NPT_FLAGS);
                t
            };
        }
        Some(table + ((gpa >> 21) & 0x1FF) * 8)
    }

    /// Maps guest-physical `gpa` to `frame` as a 4 KiB leaf, allocating table levels
    /// (a 2 MiB leaf there is split first).
    pub(super) fn map(&mut self, fa: &mut FrameAllocator, gpa: Gpa, frame: Hpa) -> Option<()> {
        let pde = self.pd_entry(fa, gpa.0)?;
        let e = phys::read_u64(pde);
        let table = if e & 1 == 0 {
            let t = fa.alloc()?;
            phys::write_u64(pde, t | NPT_FLAGS);
            t
        } else if e & NPT_LARGE != 0 {
            self.split(fa, pde)?
        } else {
            e & ADDR_MASK
        };
        phys::write_u64(table + ((gpa.0 >> 12) & 0x1FF) * 8, frame.0 | NPT_FLAGS);
        Some(())
    }

    /// Maps the 2 MiB at `gpa` (aligned, nothing mapped there yet) to the contiguous
    /// frames from `base` (aligned) as one leaf.
    pub(super) fn map_large(&mut self, fa: &mut FrameAllocator, gpa: Gpa, base: Hpa) -> Option<()> {
        self.map_large_flags(fa, gpa, base, 0)
    }

    /// As [`Domain::map_large`], with `extra` leaf flags (device memory: uncached).
    pub(super) fn map_large_flags(
        &mut self,
        fa: &mut FrameAllocator,
        gpa: Gpa,
        base: Hpa,
        extra: u64,
    ) -> Option<()> {
        if !gpa.0.is_multiple_of(LARGE) || !base.0.is_multiple_of(LARGE) {
            return None;
        }
        let pde = self.pd_entry(fa, gpa.0)?;
        if phys::read_u64(pde) & 1 != 0 {
            return None;
        }
        phys::write_u64(pde, base.0 | NPT_FLAGS | NPT_LARGE | extra);
        Some(())
    }

    /// Replaces the 2 MiB leaf at page-directory entry `pde` by a table of 512 4 KiB
    /// leaves with the same frames and permissions (no translation changes, so no TLB
    /// needs flushing for the split itself); returns the table.
    pub(super) fn split(&mut self, fa: &mut FrameAllocator, pde: u64) -> Option<u64> {
        let e = phys::read_u64(pde);
        let t = fa.alloc()?;
        let base = e & ADDR_MASK & !(LARGE - 1);
        let flags = e & FLAGS_MASK & !NPT_LARGE;
        for i in 0..LARGE_FRAMES {
            phys::write_u64(t + i * 8, (base + i * PAGE) | flags);
        }
        phys::write_u64(pde, t | NPT_FLAGS);
        self.npt_splits += 1;
        Some(t)
    }

    /// Merges the table of 4 KiB leaves covering `gpa` back into one 2 MiB leaf when it
    /// maps a contiguous, aligned run of the domain's own frames, each writable and
    /// cacheable, inside its RAM. The table frame is freed: the caller has already
    /// flushed every vCPU's TLB and marked the TLBs stale if a vCPU runs elsewhere (so
    /// the allocator holds the frame back until then).
    fn try_merge(&mut self, fa: &mut FrameAllocator, gpa: u64) {
        let start = gpa & !(LARGE - 1);
        if start + LARGE > self.mem_bytes {
            return;
        }
        let Some(pde) = self.pd_entry(fa, start) else {
            return;
        };
        let e = phys::read_u64(pde);
        if e & 1 == 0 || e & NPT_LARGE != 0 {
            return;
        }
        let table = e & ADDR_MASK;
        let base = phys::read_u64(table) & ADDR_MASK;
        if !base.is_multiple_of(LARGE) {
            return;
        }
        let leaf = |i: u64| phys::read_u64(table + i * 8);
        if !(0..LARGE_FRAMES).all(|i| leaf(i) == (base + i * PAGE) | NPT_FLAGS) {
            return;
        }
        if !(0..LARGE_FRAMES).all(|i| fa.owner(Hpa(base + i * PAGE)) == Owner::Domain(self.id)) {
            return;
        }
        phys::write_u64(pde, base | NPT_FLAGS | NPT_LARGE);
        fa.free(table);
        self.npt_merges += 1;
    }

    /// Puts `frame` at guest-physical `gpa` (inside the domain's memory), returning the
    /// frame that was there.
    pub fn remap(&mut self, fa: &mut FrameAllocator, gpa: Gpa, frame: Hpa) -> Option<Hpa> {
        self.remap_flags(fa, gpa, frame, true)
    }

    /// As [`Domain::remap`], read-only in the nested page table unless `writable`. A
    /// 2 MiB leaf there is split first (None if no table frame is left). A vCPU of the
    /// domain running on another CPU may keep the old translation until that CPU leaves
    /// its guest: the allocator holds back frames freed until then.
    pub fn remap_flags(
        &mut self,
        fa: &mut FrameAllocator,
        gpa: Gpa,
        frame: Hpa,
        writable: bool,
    ) -> Option<Hpa> {
        let (gpa, frame) = (gpa.0, frame.0);
        if gpa >= self.mem_bytes {
            return None;
        }
        let slot = match self.slot(gpa) {
            Slot::Page(at) => at,
            Slot::Large(pde) => self.split(fa, pde)? + ((gpa >> 12) & 0x1FF) * 8,
            Slot::Unmapped => return None,
        };
        let old = phys::read_u64(slot);
        if let Some(pci) = self.pci.as_mut() {
            // Its devices may still DMA to the old frame: the IOMMU follows (and the
            // frame is held back) before the CPUs' TLBs are declared synced.
            pci.stale.push(gpa);
            fa.tlbs_stale();
        }
        let flags = if writable { NPT_FLAGS } else { NPT_FLAGS & !2 };
        phys::write_u64(slot, frame | flags);
        for v in self.vcpus.iter_mut() {
            match v.slot.as_mut() {
                Some(s) => s.flush_tlb(),
                None => v.flush_pending = true,
            }
            if v.running_on.is_some() && v.slot.is_none() {
                fa.tlbs_stale();
            }
        }
        self.try_merge(fa, gpa);
        (old & 1 != 0).then_some(Hpa(old & ADDR_MASK))
    }

    /// Frees the nested page table and the domain's own frames it maps (the
    /// hypervisor's are freed by the caller; another domain's, a grant mapping, are
    /// all undone before this). Returns the number of frames freed.
    pub(super) fn free_npt(&mut self, fa: &mut FrameAllocator) -> u64 {
        fn free_frame(fa: &mut FrameAllocator, f: u64, id: u16) -> u64 {
            match fa.owner(Hpa(f)) {
                Owner::Domain(o) if o == id => {
                    fa.free(f);
                    1
                }
                Owner::Xen => 0,
                o => {
                    crate::log!(
                        "d{}: HYPERVISOR BUG: frame {:#x} of {:?} still in its physmap",
                        id,
                        f,
                        o
                    );
                    0
                }
            }
        }
        fn free_table(fa: &mut FrameAllocator, table: u64, level: u32, id: u16) -> u64 {
            let mut n = 0;
            for i in 0..512 {
                let e = phys::read_u64(table + i * 8);
                if e & 1 == 0 {
                    continue;
                }
                n += if level == 0 {
                    free_frame(fa, e & ADDR_MASK, id)
                } else if level == 1 && e & NPT_LARGE != 0 {
                    let base = e & ADDR_MASK & !(LARGE - 1);
                    (0..LARGE_FRAMES)
                        .map(|k| free_frame(fa, base + k * PAGE, id))
                        .sum()
                } else {
                    free_table(fa, e & ADDR_MASK, level - 1, id)
                };
            }
            fa.free(table);
            n + 1
        }
        if self.npt_root.0 == 0 {
            return 0;
        }
        let n = free_table(fa, self.npt_root.0, 3, self.id);
        self.npt_root = Hpa(0);
        n
    }

    /// Calls `f` with every frame the nested page table maps (each frame of a 2 MiB
    /// leaf on its own).
    pub(super) fn for_each_frame(&self, f: &mut dyn FnMut(Hpa)) {
        fn walk(table: u64, level: u32, f: &mut dyn FnMut(Hpa)) {
            for i in 0..512 {
                let e = phys::read_u64(table + i * 8);
                if e & 1 == 0 {
                    continue;
                }
                if level == 0 {
                    f(Hpa(e & ADDR_MASK));
                } else if level == 1 && e & NPT_LARGE != 0 {
                    let base = e & ADDR_MASK & !(LARGE - 1);
                    (0..LARGE_FRAMES).for_each(|k| f(Hpa(base + k * PAGE)));
                } else {
                    walk(e & ADDR_MASK, level - 1, f);
                }
            }
        }
        if self.npt_root.0 != 0 {
            walk(self.npt_root.0, 3, f);
        }
    }

    /// How many 2 MiB leaves the nested page table has now.
    pub fn large_leaves(&self) -> u64 {
        let mut n = 0;
        let mut gpa = 0;
        while gpa < self.mem_bytes {
            n += matches!(self.slot(gpa), Slot::Large(_)) as u64;
            gpa += LARGE;
        }
        n
    }
}
