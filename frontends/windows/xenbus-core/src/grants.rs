//! Grant table v1 entries in the grant frames (mapped in the platform device's BAR):
//! reference allocation, granting, ending. The entry writes are the driver's
//! ([`GrantEntries`]: atomics on the mapped frames); the bookkeeping is here.

use alloc::vec::Vec;
use sluice_abi::grant_table::{GrantEntryFlags, GNTTAB_NR_RESERVED_ENTRIES};
use sluice_abi::types::{DomId, GrantRef};
use sluice_front_seams::{GrantInUse, SeamError};

/// `GTF_permit_access`.
pub const GTF_PERMIT_ACCESS: u16 = 1;

/// The grant entries as the driver reaches them.
pub trait GrantEntries {
    /// Entries the mapped frames hold.
    fn count(&self) -> u32;
    /// Writes `frame` and `domid`, then (release) `flags`.
    fn write(&self, r: u32, domid: u16, frame: u32, flags: u16);
    /// Compare-and-exchange of an entry's flags; returns the old value.
    fn cmpxchg_flags(&self, r: u32, old: u16, new: u16) -> u16;
    /// An entry's flags.
    fn flags(&self, r: u32) -> u16;
}

/// Free references (the reserved first 8 never handed out).
#[derive(Debug)]
pub struct GrantTable {
    free: Vec<u32>,
    used: Vec<bool>,
}

impl GrantTable {
    /// A table of `entries` entries.
    pub fn new(entries: u32) -> Self {
        let free = (GNTTAB_NR_RESERVED_ENTRIES..entries).rev().collect();
        GrantTable {
            free,
            used: alloc::vec![false; entries as usize],
        }
    }

    /// Grants `domid` access to guest frame `frame`.
    pub fn grant(
        &mut self,
        e: &(impl GrantEntries + ?Sized),
        domid: DomId,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        let frame = u32::try_from(frame).map_err(|_| SeamError::Errno(75))?; // EOVERFLOW
        let r = *self.free.last().ok_or(SeamError::NoResources)?;
        if r >= e.count() {
            return Err(SeamError::NoResources);
        }
        self.free.pop();
        let mut flags = GTF_PERMIT_ACCESS;
        if readonly {
            flags |= GrantEntryFlags::READONLY.bits();
        }
        e.write(r, domid.0, frame, flags);
        self.used[r as usize] = true;
        Ok(GrantRef(r))
    }

    /// Ends a grant unless the backend still maps it (Xen's `GTF_reading` /
    /// `GTF_writing`); a reference not granted by us is refused the same way.
    pub fn end(&mut self, e: &(impl GrantEntries + ?Sized), r: GrantRef) -> Result<(), GrantInUse> {
        let idx = r.0 as usize;
        if !self.used.get(idx).copied().unwrap_or(false) {
            return Err(GrantInUse(r));
        }
        let busy = (GrantEntryFlags::READING | GrantEntryFlags::WRITING).bits();
        let mut flags = e.flags(r.0);
        loop {
            if flags & busy != 0 {
                return Err(GrantInUse(r));
            }
            let old = e.cmpxchg_flags(r.0, flags, 0);
            if old == flags {
                break;
            }
            flags = old;
        }
        self.used[idx] = false;
        self.free.push(r.0);
        Ok(())
    }

    /// References free now.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fake::Entries;

    #[test]
    fn grant_writes_the_entry_and_end_frees_it() {
        let e = Entries::new(16);
        let mut t = GrantTable::new(16);
        let r = t.grant(&e, DomId(0), 0x1234, true).unwrap();
        assert!(
            r.0 >= GNTTAB_NR_RESERVED_ENTRIES,
            "reserved refs are never used"
        );
        let ent = &e.0[r.0 as usize];
        assert_eq!((ent.0.get(), ent.1.get(), ent.2.get()), (1 | 4, 0, 0x1234));
        t.end(&e, r).unwrap();
        assert_eq!(ent.0.get(), 0);
        assert_eq!(t.free_count(), 8);
    }

    #[test]
    fn a_mapped_grant_is_not_ended() {
        let e = Entries::new(16);
        let mut t = GrantTable::new(16);
        let r = t.grant(&e, DomId(1), 7, false).unwrap();
        // The backend maps it: Xen sets GTF_writing.
        e.0[r.0 as usize]
            .0
            .set(GTF_PERMIT_ACCESS | GrantEntryFlags::WRITING.bits());
        assert_eq!(t.end(&e, r), Err(GrantInUse(r)));
        e.0[r.0 as usize].0.set(GTF_PERMIT_ACCESS);
        assert_eq!(t.end(&e, r), Ok(()));
    }

    #[test]
    fn exhaustion_and_bad_refs_are_errors() {
        let e = Entries::new(10);
        let mut t = GrantTable::new(10);
        t.grant(&e, DomId(0), 1, false).unwrap();
        t.grant(&e, DomId(0), 2, false).unwrap();
        assert_eq!(t.grant(&e, DomId(0), 3, false), Err(SeamError::NoResources));
        assert_eq!(
            t.end(&e, GrantRef(3)),
            Err(GrantInUse(GrantRef(3))),
            "reserved ref"
        );
        assert_eq!(t.end(&e, GrantRef(9999)), Err(GrantInUse(GrantRef(9999))));
        assert!(
            t.grant(&e, DomId(0), 1 << 40, false).is_err(),
            "frame past 32 bits"
        );
    }
}
