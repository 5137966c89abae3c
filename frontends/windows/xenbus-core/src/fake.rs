//! Test fakes shared by the crate's host tests: grant entries in plain memory.

use crate::grants::GrantEntries;
use alloc::vec::Vec;
use core::cell::Cell;

/// A grant table's entries (flags, domid, frame) in cells, as the hypervisor's shared
/// frames would hold them.
pub(crate) struct Entries(pub(crate) Vec<(Cell<u16>, Cell<u16>, Cell<u32>)>);

impl Entries {
    pub(crate) fn new(n: usize) -> Self {
        Entries(
            (0..n)
                .map(|_| (Cell::new(0), Cell::new(0), Cell::new(0)))
                .collect(),
        )
    }
}

impl GrantEntries for Entries {
    fn count(&self) -> u32 {
        self.0.len() as u32
    }
    fn write(&self, r: u32, domid: u16, frame: u32, flags: u16) {
        let e = &self.0[r as usize];
        e.1.set(domid);
        e.2.set(frame);
        e.0.set(flags);
    }
    fn cmpxchg_flags(&self, r: u32, old: u16, new: u16) -> u16 {
        let f = &self.0[r as usize].0;
        let cur = f.get();
        if cur == old {
            f.set(new);
        }
        cur
    }
    fn flags(&self, r: u32) -> u16 {
        self.0[r as usize].0.get()
    }
}
