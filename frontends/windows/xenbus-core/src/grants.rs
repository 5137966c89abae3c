//! Grant table v1 entries in the grant frames (mapped in the platform device's BAR):
//! reference allocation, granting, ending. The entry writes are the driver's
//! ([`GrantEntries`]: atomics on the mapped frames); the bookkeeping is here.
//!
//! There is one table per bus, owned by xenbus: every child grants through the bus
//! interface, each reference is tagged with the child ([`Owner`]) that granted it, a
//! child can end only its own references, and a per-child quota keeps one child from
//! starving the others. So two children never hand out the same reference.

use alloc::collections::BTreeMap;
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

/// Who granted a reference: the bus' key for a child device.
pub type Owner = u32;

/// Free references (the reserved first 8 never handed out), each used one tagged with
/// its [`Owner`].
#[derive(Debug)]
pub struct GrantTable {
    free: Vec<u32>,
    owner: Vec<Option<Owner>>,
    held: BTreeMap<Owner, usize>,
    quota: usize,
}

impl GrantTable {
    /// A table of `entries` entries, any owner may hold all of them.
    pub fn new(entries: u32) -> Self {
        Self::with_quota(entries, usize::MAX)
    }

    /// A table of `entries` entries, one owner holding at most `quota` at a time.
    pub fn with_quota(entries: u32, quota: usize) -> Self {
        let free = (GNTTAB_NR_RESERVED_ENTRIES..entries).rev().collect();
        GrantTable {
            free,
            owner: alloc::vec![None; entries as usize],
            held: BTreeMap::new(),
            quota,
        }
    }

    /// References `owner` holds now.
    pub fn held_by(&self, owner: Owner) -> usize {
        self.held.get(&owner).copied().unwrap_or(0)
    }

    /// Grants `domid` access to guest frame `frame` for `owner`.
    pub fn grant(
        &mut self,
        e: &(impl GrantEntries + ?Sized),
        owner: Owner,
        domid: DomId,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        let frame = u32::try_from(frame).map_err(|_| SeamError::Errno(75))?; // EOVERFLOW
        let r = *self.free.last().ok_or(SeamError::NoResources)?;
        if r >= e.count() || self.held_by(owner) >= self.quota {
            return Err(SeamError::NoResources);
        }
        self.free.pop();
        let mut flags = GTF_PERMIT_ACCESS;
        if readonly {
            flags |= GrantEntryFlags::READONLY.bits();
        }
        e.write(r, domid.0, frame, flags);
        self.owner[r as usize] = Some(owner);
        *self.held.entry(owner).or_insert(0) += 1;
        Ok(GrantRef(r))
    }

    /// Ends `owner`'s grant unless the backend still maps it (Xen's `GTF_reading` /
    /// `GTF_writing`); a reference not granted by `owner` (free, reserved, another
    /// child's, out of range) is refused the same way and left alone.
    pub fn end(
        &mut self,
        e: &(impl GrantEntries + ?Sized),
        owner: Owner,
        r: GrantRef,
    ) -> Result<(), GrantInUse> {
        let idx = r.0 as usize;
        if self.owner.get(idx).copied().flatten() != Some(owner) {
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
        self.owner[idx] = None;
        if let Some(n) = self.held.get_mut(&owner) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&owner);
            }
        }
        self.free.push(r.0);
        Ok(())
    }

    /// A child is gone: ends each of its grants the backend no longer maps; those it
    /// still maps stay granted (and owned) for good, as a leaked page would. Returns
    /// how many stay.
    pub fn release_owner(&mut self, e: &(impl GrantEntries + ?Sized), owner: Owner) -> usize {
        let mine: Vec<u32> = (0..self.owner.len() as u32)
            .filter(|&r| self.owner[r as usize] == Some(owner))
            .collect();
        mine.into_iter()
            .filter(|&r| self.end(e, owner, GrantRef(r)).is_err())
            .count()
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
        let r = t.grant(&e, 1, DomId(0), 0x1234, true).unwrap();
        assert!(
            r.0 >= GNTTAB_NR_RESERVED_ENTRIES,
            "reserved refs are never used"
        );
        let ent = &e.0[r.0 as usize];
        assert_eq!((ent.0.get(), ent.1.get(), ent.2.get()), (1 | 4, 0, 0x1234));
        t.end(&e, 1, r).unwrap();
        assert_eq!(ent.0.get(), 0);
        assert_eq!(t.free_count(), 8);
    }

    #[test]
    fn a_mapped_grant_is_not_ended() {
        let e = Entries::new(16);
        let mut t = GrantTable::new(16);
        let r = t.grant(&e, 1, DomId(1), 7, false).unwrap();
        // The backend maps it: Xen sets GTF_writing.
        e.0[r.0 as usize]
            .0
            .set(GTF_PERMIT_ACCESS | GrantEntryFlags::WRITING.bits());
        assert_eq!(t.end(&e, 1, r), Err(GrantInUse(r)));
        e.0[r.0 as usize].0.set(GTF_PERMIT_ACCESS);
        assert_eq!(t.end(&e, 1, r), Ok(()));
    }

    #[test]
    fn exhaustion_and_bad_refs_are_errors() {
        let e = Entries::new(10);
        let mut t = GrantTable::new(10);
        t.grant(&e, 1, DomId(0), 1, false).unwrap();
        t.grant(&e, 1, DomId(0), 2, false).unwrap();
        assert_eq!(
            t.grant(&e, 1, DomId(0), 3, false),
            Err(SeamError::NoResources)
        );
        assert_eq!(
            t.end(&e, 1, GrantRef(3)),
            Err(GrantInUse(GrantRef(3))),
            "reserved ref"
        );
        assert_eq!(
            t.end(&e, 1, GrantRef(9999)),
            Err(GrantInUse(GrantRef(9999)))
        );
        assert!(
            t.grant(&e, 1, DomId(0), 1 << 40, false).is_err(),
            "frame past 32 bits"
        );
    }

    #[test]
    fn children_share_one_table_without_collisions_or_trespass() {
        let e = Entries::new(64);
        let mut t = GrantTable::with_quota(64, 20);
        let mut a = alloc::vec::Vec::new();
        let mut b = alloc::vec::Vec::new();
        for i in 0..20 {
            a.push(t.grant(&e, 1, DomId(0), i, false).unwrap());
            b.push(t.grant(&e, 2, DomId(0), 100 + i, false).unwrap());
        }
        let mut all: alloc::vec::Vec<u32> = a.iter().chain(&b).map(|r| r.0).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40, "no reference handed out twice");
        // The quota: child 1 holds 20, so it gets no more though refs are free.
        assert_eq!(
            t.grant(&e, 1, DomId(0), 9, false),
            Err(SeamError::NoResources)
        );
        // Child 2 cannot end child 1's grant: the entry stays as child 1 wrote it.
        assert_eq!(t.end(&e, 2, a[0]), Err(GrantInUse(a[0])));
        assert_eq!(e.0[a[0].0 as usize].2.get(), 0);
        assert_eq!(e.0[a[0].0 as usize].0.get(), GTF_PERMIT_ACCESS);
        assert_eq!(t.end(&e, 1, a[0]), Ok(()));
        // Child 2 goes away with one grant still mapped by its backend.
        e.0[b[3].0 as usize]
            .0
            .set(GTF_PERMIT_ACCESS | GrantEntryFlags::READING.bits());
        assert_eq!(t.release_owner(&e, 2), 1);
        assert_eq!(t.held_by(2), 1);
        assert_eq!(t.held_by(1), 19);
    }
}
