//! The physical frame allocator: usable RAM from the boot memory map, less the
//! hypervisor image, the boot modules and the first MiB; freed frames go on a list
//! threaded through the frames themselves.

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

    pub fn free(&mut self, frame: u64) {
        phys::write_u64(frame, self.free_list);
        self.free_list = frame;
        self.free_listed += 1;
        self.handed_out -= 1;
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
