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

    pub fn free(&mut self, frame: u64) {
        phys::write_u64(frame, self.free_list);
        self.free_list = frame;
        self.free_listed += 1;
        self.handed_out -= 1;
    }
}
