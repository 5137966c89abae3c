//! Persistent grants (blkif `feature-persistent`): when both ends agree, the frontend
//! keeps reusing the same grant references for data (and indirect descriptor) pages and
//! never revokes them while connected, so a queue keeps each one mapped from its first
//! use until it is evicted (least recently used, beyond [`PERSISTENT_GRANTS_PER_QUEUE`])
//! or the queue stops. Data moves by memcpy through the mapping instead of grant copy.
//!
//! Read-only or writable: Linux's blkfront draws every grant, for a read or a write,
//! for data or an indirect descriptor page, from one pool of persistent grants, all
//! granted writable; so a reference first used for a write request may be used for a
//! read next. Linux's blkback therefore maps persistent grants writable whatever the
//! request (`xen_blkbk_map`: `GNTMAP_readonly` only without persistent grants, for
//! requests that only read guest memory). We do the same, with one difference: a
//! reference the frontend granted read-only (the writable map is refused) is mapped
//! read-only when the use only reads guest memory ([`Access::Read`]: a write request's
//! data, an indirect page) and kept so; a later use that writes into it
//! ([`Access::Write`]: a read request) is refused here and goes to grant copy, which
//! gives the grant's exact answer then. Without persistent grants nothing is mapped:
//! grant copy reads from the guest as `GNTCOPY_source_gref`, which needs only read access.
//!
//! One cache per queue, used only by that queue's thread (no locking). A reference
//! that cannot be mapped (not granted, read-only for a write into it, out of gntdev
//! resources) is not cached; the caller falls back to grant copy for it, which then
//! gives the exact per-segment result (a read into a read-only or ungranted page fails
//! the request).

use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, GrantRef};
use sluice_dom0::{GrantError, GrantMap, GrantMapper};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Mappings a queue keeps (Linux blkback's `xen_blkif_max_pgrants`: 32 ring slots x
/// (32 segments + 1 indirect page), what Linux blkfront uses at most by default).
pub const PERSISTENT_GRANTS_PER_QUEUE: usize = 1056;

/// What a use does to the guest's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads it (a write request's data, an indirect descriptor page).
    Read,
    /// Writes into it (a read request's data).
    Write,
}

/// Counters of one cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// References mapped (first uses, and uses after an eviction).
    pub mapped: u64,
    /// Uses of a reference already mapped.
    pub hits: u64,
    /// Mappings dropped to stay within the limit.
    pub evicted: u64,
    /// Uses whose mapping failed (the caller used grant copy instead).
    pub failed: u64,
    /// Of `mapped`, references mapped read-only (granted read-only, first used for
    /// reading).
    pub read_only: u64,
}

struct Entry<M> {
    /// Shared with I/O in flight straight into the page: an evicted mapping stays
    /// mapped until that I/O completes.
    mapping: Rc<M>,
    used: u64,
    writable: bool,
}

struct Inner<M> {
    entries: HashMap<u32, Entry<M>>,
    /// Last use -> reference: the first entry is the least recently used.
    lru: BTreeMap<u64, u32>,
    tick: u64,
    stats: CacheStats,
}

/// One queue's persistent grants: gref -> long-lived single-page writable mapping.
pub struct PersistentGrants<M: GrantMap> {
    domid: u16,
    limit: usize,
    inner: RefCell<Inner<M>>,
}

impl<M: GrantMap> std::fmt::Debug for PersistentGrants<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentGrants")
            .field("domid", &self.domid)
            .field("limit", &self.limit)
            .field("mapped", &self.len())
            .finish_non_exhaustive()
    }
}

impl<M: GrantMap> PersistentGrants<M> {
    /// An empty cache for domain `domid`'s grants holding at most `limit` (>= 1) mappings.
    pub fn new(domid: u16, limit: usize) -> Self {
        Self {
            domid,
            limit: limit.max(1),
            inner: RefCell::new(Inner {
                entries: HashMap::new(),
                lru: BTreeMap::new(),
                tick: 0,
                stats: CacheStats::default(),
            }),
        }
    }

    /// Mappings held now.
    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `gref` is mapped now.
    pub fn contains(&self, gref: u32) -> bool {
        self.inner.borrow().entries.contains_key(&gref)
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        self.inner.borrow().stats
    }

    /// Whether mapping every reference of `grefs` not mapped yet fits without evicting
    /// anything (zero-copy I/O holds its pages' mappings until it completes: it only
    /// goes ahead when that keeps the cache within its limit).
    pub fn room_for(&self, grefs: impl Iterator<Item = u32>) -> bool {
        let inner = self.inner.borrow();
        let missing = grefs.filter(|g| !inner.entries.contains_key(g)).count();
        inner.entries.len() + missing <= self.limit
    }

    /// Unmaps everything.
    pub fn clear(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.entries.clear();
        inner.lru.clear();
    }

    /// Runs `f` on the page of `gref`, mapping it first if it is not mapped yet
    /// (evicting the least recently used mapping when full). A failed mapping caches
    /// nothing and is returned.
    pub fn with_page<G, R>(
        &self,
        grants: &G,
        gref: u32,
        access: Access,
        f: impl FnOnce(SharedMem<'_>) -> R,
    ) -> Result<R, GrantError>
    where
        G: GrantMapper<Mapping = M>,
    {
        let m = self.mapping(grants, gref, access)?;
        Ok(f(m.mem()))
    }

    /// The mapping of `gref` (mapped first if need be, as [`PersistentGrants::with_page`]),
    /// shared: it stays mapped while the returned handle lives, even if evicted meanwhile.
    /// A mapping for [`Access::Read`] may be read-only: the caller must not write
    /// through it.
    pub fn mapping<G>(&self, grants: &G, gref: u32, access: Access) -> Result<Rc<M>, GrantError>
    where
        G: GrantMapper<Mapping = M>,
    {
        self.lookup(grants, gref, access, true)
    }

    /// As [`PersistentGrants::mapping`], but a failure is not counted (the caller falls
    /// back to a path that tries again and counts it).
    pub fn mapping_quiet<G>(
        &self,
        grants: &G,
        gref: u32,
        access: Access,
    ) -> Result<Rc<M>, GrantError>
    where
        G: GrantMapper<Mapping = M>,
    {
        self.lookup(grants, gref, access, false)
    }

    fn lookup<G>(
        &self,
        grants: &G,
        gref: u32,
        access: Access,
        count_failure: bool,
    ) -> Result<Rc<M>, GrantError>
    where
        G: GrantMapper<Mapping = M>,
    {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        inner.tick += 1;
        let now = inner.tick;
        if let Some(e) = inner.entries.get_mut(&gref) {
            if access == Access::Write && !e.writable {
                if count_failure {
                    inner.stats.failed += 1;
                }
                return Err(GrantError::MappedReadOnly {
                    domid: self.domid,
                    gref,
                });
            }
            inner.lru.remove(&e.used);
            e.used = now;
            inner.lru.insert(now, gref);
            inner.stats.hits += 1;
            return Ok(e.mapping.clone());
        }
        // Writable if the frontend granted it so (a later use may be a read request);
        // read-only if that is all it granted and all this use needs.
        let mapped = grants
            .map(DomId(self.domid), &[GrantRef(gref)], true)
            .map(|m| (m, true));
        let mapped = match mapped {
            Err(e) if access == Access::Read => grants
                .map(DomId(self.domid), &[GrantRef(gref)], false)
                .map(|m| (m, false))
                .map_err(|_| e),
            other => other,
        };
        let (mapping, writable) = match mapped {
            Ok((m, w)) => (Rc::new(m), w),
            Err(e) => {
                if count_failure {
                    inner.stats.failed += 1;
                }
                return Err(e);
            }
        };
        if inner.entries.len() >= self.limit {
            // Evict the least recently used mapping that no I/O holds; when I/O holds
            // them all, use this one uncached (unmapped when its user drops it), so the
            // mappings alive never exceed the limit by more than what is in use now.
            let victim = inner
                .lru
                .iter()
                .find(|(_, r)| {
                    inner
                        .entries
                        .get(r)
                        .is_none_or(|e| Rc::strong_count(&e.mapping) == 1)
                })
                .map(|(&t, &r)| (t, r));
            match victim {
                Some((t, old)) => {
                    inner.lru.remove(&t);
                    // Dropping the mapping unmaps it.
                    inner.entries.remove(&old);
                    inner.stats.evicted += 1;
                }
                None => {
                    inner.stats.mapped += 1;
                    inner.stats.read_only += u64::from(!writable);
                    return Ok(mapping);
                }
            }
        }
        inner.stats.mapped += 1;
        if !writable {
            inner.stats.read_only += 1;
        }
        inner.lru.insert(now, gref);
        inner.entries.insert(
            gref,
            Entry {
                mapping: mapping.clone(),
                used: now,
                writable,
            },
        );
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};

    #[test]
    fn maps_once_evicts_lru_and_unmaps_everything() {
        let g = FakeGuestMemory::new(4, 8);
        let grants = FakeGrants::new();
        grants.add_guest(g.clone());
        let refs: Vec<u32> = (0..6).map(|p| g.grant(p, false)).collect();
        let cache = PersistentGrants::new(4, 3);
        for &r in &refs[..3] {
            cache
                .with_page(&grants, r, Access::Write, |m| m.len())
                .unwrap();
        }
        // Touch refs[0]: refs[1] becomes the least recently used.
        cache
            .with_page(&grants, refs[0], Access::Write, |_| ())
            .unwrap();
        cache
            .with_page(&grants, refs[3], Access::Write, |_| ())
            .unwrap();
        assert!(!cache.contains(refs[1]) && g.mapped(refs[1]) == 0);
        assert!(cache.contains(refs[0]) && cache.contains(refs[2]) && cache.contains(refs[3]));
        assert_eq!(grants.live_mappings(), 3);
        // The mapping is the guest's page: writes through it are the guest's bytes.
        cache
            .with_page(&grants, refs[3], Access::Write, |m| {
                m.write_bytes(8, &[9; 4])
            })
            .unwrap()
            .unwrap();
        let mut back = [0u8; 4];
        g.page(3).read_bytes(8, &mut back).unwrap();
        assert_eq!(back, [9; 4]);
        // Not granted / read-only: nothing cached, nothing evicted.
        let ro = g.grant(7, true);
        assert!(cache
            .with_page(&grants, 9999, Access::Write, |_| ())
            .is_err());
        assert!(cache.with_page(&grants, ro, Access::Write, |_| ()).is_err());
        assert_eq!(cache.len(), 3);
        assert_eq!(
            cache.stats(),
            CacheStats {
                mapped: 4,
                hits: 2,
                evicted: 1,
                failed: 2,
                read_only: 0,
            }
        );
        assert!(!g.try_revoke(refs[0]), "still mapped");
        cache.clear();
        assert_eq!(grants.live_mappings(), 0);
        cache
            .with_page(&grants, refs[4], Access::Write, |_| ())
            .unwrap();
        drop(cache);
        assert_eq!(grants.live_mappings(), 0);
        assert!(g.try_revoke(refs[0]) && g.try_revoke(refs[4]));
    }

    #[test]
    fn mappings_held_by_io_are_not_evicted_and_never_pile_up() {
        let g = FakeGuestMemory::new(4, 8);
        let grants = FakeGrants::new();
        grants.add_guest(g.clone());
        let refs: Vec<u32> = (0..5).map(|p| g.grant(p, false)).collect();
        let cache = PersistentGrants::new(4, 2);
        // I/O holds refs[0]; refs[1] is cached but free.
        let held = cache.mapping(&grants, refs[0], Access::Write).unwrap();
        cache.mapping(&grants, refs[1], Access::Write).unwrap();
        assert!(cache.room_for([refs[0], refs[1]].into_iter()));
        assert!(!cache.room_for([refs[2]].into_iter()));
        // A new reference evicts refs[1] (free), not the older refs[0] (held).
        cache
            .with_page(&grants, refs[2], Access::Write, |_| ())
            .unwrap();
        assert!(cache.contains(refs[0]) && !cache.contains(refs[1]));
        // Everything held: a new one is used uncached and unmapped right after.
        let held2 = cache.mapping(&grants, refs[2], Access::Write).unwrap();
        cache
            .with_page(&grants, refs[3], Access::Write, |_| ())
            .unwrap();
        assert!(!cache.contains(refs[3]));
        assert_eq!(grants.live_mappings(), 2);
        // Released, a mapping can go again: refs[2] (free) goes, refs[0] (held) stays.
        drop(held2);
        cache
            .with_page(&grants, refs[4], Access::Write, |_| ())
            .unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(refs[0]) && cache.contains(refs[4]));
        drop(held);
        assert_eq!(grants.live_mappings(), 2);
        cache.clear();
        assert_eq!(grants.live_mappings(), 0);
    }

    #[test]
    fn read_only_grants_are_mapped_read_only_for_reading_only() {
        let g = FakeGuestMemory::new(4, 4);
        let grants = FakeGrants::new();
        grants.add_guest(g.clone());
        let rw = g.grant(0, false);
        let ro = g.grant(1, true);
        g.page(1).fill(0, 4096, 0x42).unwrap();
        let cache = PersistentGrants::new(4, 4);
        // Granted writable: mapped writable even for a use that only reads (the
        // frontend may use the same reference for a read request next).
        cache.with_page(&grants, rw, Access::Read, |_| ()).unwrap();
        assert_eq!((g.mapped(rw), g.mapped_writable(rw)), (1, 1));
        cache.with_page(&grants, rw, Access::Write, |_| ()).unwrap();
        // Granted read-only: mapped read-only for reading, and kept...
        let mut b = [0u8; 4];
        cache
            .with_page(&grants, ro, Access::Read, |m| m.read_bytes(8, &mut b))
            .unwrap()
            .unwrap();
        assert_eq!(b, [0x42; 4]);
        cache.with_page(&grants, ro, Access::Read, |_| ()).unwrap();
        assert_eq!((g.mapped(ro), g.mapped_writable(ro)), (1, 0));
        // ...refused for writing into it (the caller uses grant copy), nothing more mapped.
        assert!(matches!(
            cache.with_page(&grants, ro, Access::Write, |_| ()),
            Err(GrantError::MappedReadOnly { gref, .. }) if gref == ro
        ));
        // Not granted: not mapped at all.
        assert!(cache
            .with_page(&grants, 9999, Access::Read, |_| ())
            .is_err());
        assert_eq!((cache.len(), grants.live_mappings()), (2, 2));
        assert_eq!(
            cache.stats(),
            CacheStats {
                mapped: 2,
                hits: 2,
                evicted: 0,
                failed: 2,
                read_only: 1,
            }
        );
        drop(cache);
        assert_eq!(grants.live_mappings(), 0);
    }
}
