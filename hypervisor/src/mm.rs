//! The physical frame allocator: usable RAM from the boot memory map, less the
//! hypervisor image, the boot modules and the first MiB; freed frames go on a list
//! threaded through the frames themselves. Every allocatable frame has a record in the
//! frame table (Xen's `page_info`): its owner (free, the hypervisor, or a domain) and how
//! many grant mappings of it other domains hold; a mapped frame never goes back.
//!
//! A frame just removed from a nested page table may still be reachable through a stale
//! TLB entry on a CPU running another vCPU of that domain until that CPU has left its
//! guest (it flushes before it enters again). So a frame freed while such a flush is
//! outstanding is held back, not reused, until the CPUs are synced (Xen's tlbflush
//! clock, with one epoch): [`FrameAllocator::tlbs_stale`], [`FrameAllocator::tlbs_synced`].

use crate::addr::Hpa;
use crate::arch::phys;

pub const PAGE: u64 = 4096;
const MAX_REGIONS: usize = 32;
const MAX_RESERVED: usize = 16;

pub struct FrameAllocator {
    regions: [(u64, u64); MAX_REGIONS],
    nregions: usize,
    reserved: [(u64, u64); MAX_RESERVED],
    nreserved: usize,
    /// RAM the firmware keeps (ACPI tables and NVS): never handed out, but no device's
    /// registers either.
    firmware: [(u64, u64); MAX_REGIONS],
    nfirmware: usize,
    cursor_region: usize,
    cursor: u64,
    free_list: u64,
    pub free_listed: u64,
    pub handed_out: u64,
    /// The frame table: one u64 record per frame from `table_first` (a frame number),
    /// `table_len` of them, at host address `table` (0: not set up yet).
    table: u64,
    table_first: u64,
    table_len: u64,
    /// Frees refused: frames freed twice, or still mapped by a grant (kept, never reused).
    pub bad_frees: u64,
    /// Frames a domain's NPT reached that it may not ([`crate::domain::Domain::audit`]).
    pub bad_reaches: u64,
    /// An NPT entry was removed or downgraded while a vCPU of its domain ran on another
    /// CPU, and that CPU has not been synced since.
    tlbs_stale: bool,
    /// Frames freed while `tlbs_stale`: a list threaded like the free list, reusable
    /// once the CPUs are synced.
    held: u64,
    /// Frames on that list now, and ever.
    pub held_back: u64,
    pub held_total: u64,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Who owns a frame (the frame table's record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Outside every usable region (device memory, firmware RAM, the first MiB): never
    /// a domain's.
    NotRam,
    Free,
    /// The hypervisor's own (its image, the boot modules, page tables, VMCBs, heap,
    /// shared_info, grant frames).
    Xen,
    Domain(u16),
}

const REC_OWNER: u64 = 0xFFFF_FFFF;
const REC_XEN: u64 = 0xFFFF_FFFF;
const REC_MAPS_SHIFT: u32 = 32;
const REC_MAPS_MAX: u64 = 0xFFFF;
/// On a freed frame whose contents are to stay as they were (a dead domain's poisoned
/// RAM, see `passthrough::check_watched`); handing the frame out again clears it.
const REC_WATCH: u64 = 1 << 63;

/// The grant-mapping count of a frame record.
fn maps(r: u64) -> u64 {
    (r >> REC_MAPS_SHIFT) & REC_MAPS_MAX
}

impl FrameAllocator {
    pub const fn new() -> Self {
        FrameAllocator {
            regions: [(0, 0); MAX_REGIONS],
            nregions: 0,
            reserved: [(0, 0); MAX_RESERVED],
            nreserved: 0,
            firmware: [(0, 0); MAX_REGIONS],
            nfirmware: 0,
            cursor_region: 0,
            cursor: 0,
            free_list: 0,
            free_listed: 0,
            handed_out: 0,
            table: 0,
            table_first: 0,
            table_len: 0,
            bad_frees: 0,
            bad_reaches: 0,
            tlbs_stale: false,
            held: 0,
            held_back: 0,
            held_total: 0,
        }
    }

    /// Sets up the frame table over every usable region (call once the regions and
    /// reservations are known, before anything is allocated). False when it does not fit.
    pub fn init_frame_table(&mut self) -> bool {
        let regions = &self.regions[..self.nregions];
        let (Some(first), Some(end)) = (
            regions.iter().map(|r| r.0).min(),
            regions.iter().map(|r| r.1).max(),
        ) else {
            return false;
        };
        let len = (end - first) / PAGE;
        let Some(t) = self.alloc_contiguous((len * 8).div_ceil(PAGE), PAGE) else {
            return false;
        };
        self.table = t;
        self.table_first = first / PAGE;
        self.table_len = len;
        // The table's own frames (and any skipped for alignment, already free-listed,
        // which stay Free) and the reserved ranges (the image, the modules) are the
        // hypervisor's.
        let mut f = t;
        while f < t + (len * 8).next_multiple_of(PAGE) {
            self.set_rec(f, REC_XEN);
            f += PAGE;
        }
        for k in 0..self.nreserved {
            let (start, end) = self.reserved[k];
            let mut f = start;
            while f < end {
                self.set_rec(f, REC_XEN);
                f += PAGE;
            }
        }
        true
    }

    fn rec_pa(&self, frame: u64) -> Option<u64> {
        let i = Hpa(frame).mfn().0.checked_sub(self.table_first)?;
        (self.table != 0 && i < self.table_len).then(|| self.table + i * 8)
    }

    fn rec(&self, frame: u64) -> Option<u64> {
        self.rec_pa(frame).map(phys::read_u64)
    }

    fn set_rec(&mut self, frame: u64, v: u64) {
        if let Some(pa) = self.rec_pa(frame) {
            phys::write_u64(pa, v);
        }
    }

    /// Who owns the frame holding `hpa`.
    pub fn owner(&self, hpa: Hpa) -> Owner {
        match self.rec(hpa.page().0).map(|r| r & REC_OWNER) {
            None => Owner::NotRam,
            Some(0) => Owner::Free,
            Some(REC_XEN) => Owner::Xen,
            Some(id) => Owner::Domain((id - 1) as u16),
        }
    }

    /// Gives a frame the hypervisor allocated to domain `id` (its RAM).
    pub fn assign(&mut self, hpa: Hpa, id: u16) {
        if let Some(r) = self.rec(hpa.0) {
            debug_assert_eq!(r & REC_OWNER, REC_XEN);
            self.set_rec(hpa.0, (r & !REC_OWNER) | (id as u64 + 1));
        }
    }

    /// Marks a frame (about to be freed) to be watched: [`FrameAllocator::for_each_watched`]
    /// names it for as long as it stays free, never after it was handed out again.
    pub fn watch(&mut self, hpa: Hpa) {
        let f = hpa.page().0;
        if let Some(r) = self.rec(f) {
            self.set_rec(f, r | REC_WATCH);
        }
    }

    /// Calls `f` with every watched frame that has stayed free since it was freed.
    pub fn for_each_watched(&self, mut f: impl FnMut(u64)) {
        for i in 0..self.table_len {
            let frame = (self.table_first + i) * PAGE;
            if self.rec(frame) == Some(REC_WATCH) {
                f(frame);
            }
        }
    }

    /// Counts one more grant mapping of a domain's frame; false (nothing counted) when
    /// the frame is not a domain's or the count is full.
    pub fn get_map(&mut self, hpa: Hpa) -> bool {
        let f = hpa.page().0;
        match self.rec(f) {
            Some(r) if !matches!(r & REC_OWNER, 0 | REC_XEN) && maps(r) < REC_MAPS_MAX => {
                self.set_rec(f, r + (1 << REC_MAPS_SHIFT));
                true
            }
            _ => false,
        }
    }

    /// Drops a grant mapping counted by [`FrameAllocator::get_map`].
    pub fn put_map(&mut self, hpa: Hpa) {
        let f = hpa.page().0;
        if let Some(r) = self.rec(f).filter(|&r| maps(r) > 0) {
            self.set_rec(f, r - (1 << REC_MAPS_SHIFT));
        }
    }

    /// Usable RAM `[start, end)`; only the part below 4 GiB (the identity map) is used.
    pub fn add_region(&mut self, start: u64, end: u64) {
        let start = start.max(0x10_0000).next_multiple_of(PAGE);
        let end = end.min(4 << 30) & !(PAGE - 1);
        if start < end && self.nregions < MAX_REGIONS {
            self.regions[self.nregions] = (start, end);
            self.nregions += 1;
        }
    }

    /// RAM the firmware keeps (memory-map types 3, 4, 5): not allocatable, but not a place
    /// for device registers either (see [`FrameAllocator::overlaps_ram`]).
    pub fn add_firmware_ram(&mut self, start: u64, end: u64) {
        if start < end && self.nfirmware < MAX_REGIONS {
            self.firmware[self.nfirmware] = (start, end);
            self.nfirmware += 1;
        }
    }

    /// Memory that is in a usable region but must not be handed out.
    pub fn reserve(&mut self, start: u64, end: u64) {
        if self.nreserved < MAX_RESERVED {
            self.reserved[self.nreserved] = (start & !(PAGE - 1), end.next_multiple_of(PAGE));
            self.nreserved += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.regions[..self.nregions]
            .iter()
            .map(|(s, e)| (e - s) / PAGE)
            .sum()
    }

    /// A zeroed 4 KiB frame.
    pub fn alloc(&mut self) -> Option<u64> {
        let frame = if self.free_list != 0 {
            let f = self.free_list;
            self.free_list = phys::read_u64(f);
            self.free_listed -= 1;
            f
        } else {
            self.bump()?
        };
        phys::zero(frame, PAGE as usize);
        self.handed_out += 1;
        self.set_rec(frame, REC_XEN);
        Some(frame)
    }

    fn bump(&mut self) -> Option<u64> {
        while self.cursor_region < self.nregions {
            let (start, end) = self.regions[self.cursor_region];
            let f = self.cursor.max(start);
            if f >= end {
                self.cursor_region += 1;
                continue;
            }
            self.cursor = f + PAGE;
            if let Some(&(_, rend)) = self.reserved[..self.nreserved]
                .iter()
                .find(|(rs, re)| f < *re && f + PAGE > *rs)
            {
                self.cursor = rend;
                continue;
            }
            return Some(f);
        }
        None
    }

    /// `pages` physically contiguous zeroed frames starting at a multiple of `align` (a
    /// power of two, at least a page), taken from the never-used part of a region (the
    /// free list holds single frames). Frames skipped to reach the alignment go on the
    /// free list, so none are lost.
    pub fn alloc_contiguous(&mut self, pages: u64, align: u64) -> Option<u64> {
        if pages == 0 || !align.is_power_of_two() {
            return None;
        }
        let len = pages.checked_mul(PAGE)?;
        let align = align.max(PAGE);
        while self.cursor_region < self.nregions {
            let (start, end) = self.regions[self.cursor_region];
            let from = self.cursor.max(start);
            let first = from.checked_next_multiple_of(align)?;
            if first.checked_add(len).is_none_or(|e| e > end) {
                self.skip_to(from, end);
                self.cursor_region += 1;
                continue;
            }
            if let Some(&(_, rend)) = self.reserved[..self.nreserved]
                .iter()
                .find(|(rs, re)| first < *re && first + len > *rs)
            {
                self.skip_to(from, rend.min(end));
                self.cursor = rend;
                continue;
            }
            self.skip_to(from, first);
            self.cursor = first + len;
            phys::zero(first, len as usize);
            self.handed_out += pages;
            for i in 0..pages {
                self.set_rec(first + i * PAGE, REC_XEN);
            }
            return Some(first);
        }
        None
    }

    /// Puts the never-used, unreserved frames of `[from, to)` on the free list.
    fn skip_to(&mut self, from: u64, to: u64) {
        let mut f = from;
        while f < to {
            let reserved = self.reserved[..self.nreserved]
                .iter()
                .any(|(rs, re)| f < *re && f + PAGE > *rs);
            if !reserved {
                phys::write_u64(f, self.free_list);
                self.free_list = f;
                self.free_listed += 1;
            }
            f += PAGE;
        }
    }

    /// True when any byte of `[start, start + len)` is RAM: usable, kept by the firmware,
    /// or in the first MiB (a device register block named by firmware must not be).
    pub fn overlaps_ram(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        start < 0x10_0000
            || self.regions[..self.nregions]
                .iter()
                .chain(&self.firmware[..self.nfirmware])
                .any(|&(s, e)| start < e && end > s)
    }

    /// Returns a frame. One already free, or still mapped by another domain's grant
    /// mapping, is refused (logged, counted in `bad_frees`, never reused): a domain must
    /// never reach a frame on the free list.
    pub fn free(&mut self, frame: u64) {
        if let Some(r) = self.rec(frame) {
            if r & REC_OWNER == 0 || maps(r) != 0 {
                crate::log!(
                    "mm: HYPERVISOR BUG: free of frame {:#x} refused ({}): kept off the free list",
                    frame,
                    if r & REC_OWNER == 0 {
                        "already free"
                    } else {
                        "still grant-mapped"
                    }
                );
                self.bad_frees += 1;
                return;
            }
            // Free; a watch mark stays until the frame is handed out again.
            self.set_rec(frame, r & REC_WATCH);
        }
        self.handed_out -= 1;
        if self.tlbs_stale {
            // Another CPU may still translate to it: not reused before it is synced.
            phys::write_u64(frame, self.held);
            self.held = frame;
            self.held_back += 1;
            self.held_total += 1;
            return;
        }
        phys::write_u64(frame, self.free_list);
        self.free_list = frame;
        self.free_listed += 1;
    }

    /// A nested page table entry was removed or made read-only while a vCPU of its
    /// domain ran on another CPU (its TLB may still hold the old translation): frames
    /// freed from now on are held back until [`FrameAllocator::tlbs_synced`].
    pub fn tlbs_stale(&mut self) {
        self.tlbs_stale = true;
    }

    /// Every CPU that ran a vCPU with a stale translation has left its guest (and
    /// flushes before it enters again): the frames held back become reusable.
    pub fn tlbs_synced(&mut self) {
        self.tlbs_stale = false;
        while self.held != 0 {
            let f = self.held;
            self.held = phys::read_u64(f);
            self.held_back -= 1;
            phys::write_u64(f, self.free_list);
            self.free_list = f;
            self.free_listed += 1;
        }
    }

    /// Whether frames freed now would be held back (a sync is outstanding).
    pub fn tlbs_are_stale(&self) -> bool {
        self.tlbs_stale
    }
}

/// Most frames a [`FramePool`] manages (8 MiB).
pub const POOL_MAX_PAGES: usize = 2048;

/// A fixed range of contiguous frames handed out in aligned, contiguous runs (what an
/// IOMMU needs for its device table, queues and page tables), tracked by a bitmap.
pub struct FramePool {
    base: u64,
    pages: usize,
    used: [u64; POOL_MAX_PAGES / 64],
    in_use: usize,
    /// Frees of frames the pool did not hand out (refused, counted).
    pub bad_frees: u64,
}

impl FramePool {
    /// A pool over `[base, base + pages * 4 KiB)`; `pages` is capped at
    /// [`POOL_MAX_PAGES`]. `base` must be page aligned.
    pub fn new(base: u64, pages: usize) -> Self {
        FramePool {
            base,
            pages: pages.min(POOL_MAX_PAGES),
            used: [0; POOL_MAX_PAGES / 64],
            in_use: 0,
            bad_frees: 0,
        }
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// First fit: `pages` free frames starting at a multiple of `align`. Not zeroed.
    pub fn alloc(&mut self, pages: usize, align: u64) -> Option<u64> {
        if pages == 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(PAGE);
        let mut pa = self.base.checked_next_multiple_of(align)?;
        loop {
            let i = usize::try_from((pa - self.base) / PAGE).ok()?;
            if i.checked_add(pages)? > self.pages {
                return None;
            }
            match (i..i + pages).find(|&j| self.is_used(j)) {
                None => {
                    for j in i..i + pages {
                        self.set(j, true);
                    }
                    self.in_use += pages;
                    return Some(pa);
                }
                // Continue after the used frame, at the next aligned address.
                Some(j) => {
                    pa = (self.base + (j as u64 + 1) * PAGE).checked_next_multiple_of(align)?
                }
            }
        }
    }

    /// Returns frames from [`FramePool::alloc`]; frames outside the pool or not in use
    /// are refused (and counted in `bad_frees`).
    pub fn free(&mut self, pa: u64, pages: usize) {
        let ok = pa >= self.base
            && pa.is_multiple_of(PAGE)
            && usize::try_from((pa - self.base) / PAGE)
                .ok()
                .and_then(|i| Some((i, i.checked_add(pages)?)))
                .is_some_and(|(i, e)| e <= self.pages && (i..e).all(|j| self.is_used(j)));
        if !ok {
            self.bad_frees += 1;
            return;
        }
        let i = ((pa - self.base) / PAGE) as usize;
        for j in i..i + pages {
            self.set(j, false);
        }
        self.in_use -= pages;
    }

    /// Frames handed out and not returned.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// The pool's range.
    pub fn range(&self) -> (u64, u64) {
        (self.base, self.base + self.pages as u64 * PAGE)
    }
}
