//! Persistent grants (blkif `feature-persistent`): when both ends agree, the frontend
//! keeps reusing the same grant references for data (and indirect descriptor) pages and
//! never revokes them while connected, so a queue keeps each one mapped from its first
//! use until it is purged or the queue stops. Data moves by memcpy through the mapping
//! instead of grant copy.
//!
//! Full cache: a queue maps at most [`PERSISTENT_GRANTS_PER_QUEUE`] references. A
//! reference first used when the cache is full is **not** mapped (nothing is evicted on
//! a miss): the use fails with [`MapError::Full`] and the caller moves that segment by
//! grant copy, batched with the request's others. Evicting on every miss made a
//! frontend whose pool is larger than the cache (sluice-blkfront with 1 MiB requests x
//! 8 in flight: 2048 pages) map and unmap a page per segment, each a gntdev ioctl and an
//! munmap with its TLB flush: slower than copying. A purge lets the cache follow a
//! working set that moves: when a cache that turned a reference away has seen at least
//! as many uses as it holds mappings since its last purge, up to [`PURGE_PERCENT`] of
//! its mappings that no use touched since that purge, and that no I/O holds, are
//! unmapped, least recently used first. (Linux blkback purges the same way, 5 % at a
//! time every 100 ms in `purge_persistent_gnt`; it maps the excess per request where
//! we copy it.)
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
//! resources, cache full) is not cached; the caller falls back to grant copy for it,
//! which then gives the exact per-segment result (a read into a read-only or ungranted
//! page fails the request).

use foldhash::HashMap;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, GrantRef};
use sluice_dom0::{GrantError, GrantMap, GrantMapper};
use std::cell::RefCell;
use std::rc::Rc;

/// Mappings a queue keeps (Linux blkback's `xen_blkif_max_pgrants`: 32 ring slots x
/// (32 segments + 1 indirect page), what Linux blkfront uses at most by default).
pub const PERSISTENT_GRANTS_PER_QUEUE: usize = 1056;

/// Most mappings one purge unmaps, in percent of the cache's limit (at least one):
/// Linux blkback's `LRU_PERCENT_CLEAN`.
pub const PURGE_PERCENT: usize = 5;

/// Why a use did not get a persistent mapping (the caller uses grant copy instead).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The cache holds its limit: the reference is used once, by grant copy.
    #[error("persistent grant cache full")]
    Full,
    /// Mapping the reference failed (or it is mapped read-only and this use writes).
    #[error(transparent)]
    Grant(#[from] GrantError),
}

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
    /// References mapped (first uses, and uses after a purge).
    pub mapped: u64,
    /// Uses of a reference already mapped.
    pub hits: u64,
    /// Uses turned away because the cache was full (the caller used grant copy).
    pub full: u64,
    /// Mappings purged (unused for a generation while the cache turned uses away).
    pub purged: u64,
    /// Uses whose mapping failed (the caller used grant copy instead).
    pub failed: u64,
    /// Of `mapped`, references mapped read-only (granted read-only, first used for
    /// reading).
    pub read_only: u64,
}

struct Entry<M> {
    /// Shared with I/O in flight straight into the page: a cleared mapping stays mapped
    /// until that I/O completes (purges skip mappings in use).
    mapping: Rc<M>,
    used: u64,
    writable: bool,
}

struct Inner<M> {
    /// By grant reference (the guest's choice: foldhash's per-process seed keeps a
    /// guest from picking colliding references cheaply, and the cache is bounded;
    /// std's SipHash was 6% of a queue thread's samples under `perf` in dom0).
    entries: HashMap<u32, Entry<M>>,
    /// Uses so far (each entry's `used` is the tick of its last one: the least
    /// recently used has the smallest, found by a purge; no order is kept per use).
    tick: u64,
    /// `tick` at the last purge (or when the cache was made).
    generation_start: u64,
    /// A use was turned away since the last purge.
    turned_away: bool,
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
                entries: HashMap::default(),
                tick: 0,
                generation_start: 0,
                turned_away: false,
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

    /// Whether mapping every reference of `grefs` not mapped yet fits within the limit
    /// (zero-copy I/O needs every page of a request mapped: it only goes ahead when
    /// none of them would be turned away).
    pub fn room_for(&self, grefs: impl Iterator<Item = u32>) -> bool {
        let inner = self.inner.borrow();
        let missing = grefs.filter(|g| !inner.entries.contains_key(g)).count();
        inner.entries.len() + missing <= self.limit
    }

    /// Unmaps everything.
    pub fn clear(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.entries.clear();
    }

    /// Runs `f` on the page of `gref`, mapping it first if it is not mapped yet and the
    /// cache has room ([`MapError::Full`] otherwise). A failed mapping caches nothing
    /// and is returned.
    pub fn with_page<G, R>(
        &self,
        grants: &G,
        gref: u32,
        access: Access,
        f: impl FnOnce(SharedMem<'_>) -> R,
    ) -> Result<R, MapError>
    where
        G: GrantMapper<Mapping = M>,
    {
        let m = self.mapping(grants, gref, access)?;
        Ok(f(m.mem()))
    }

    /// The mapping of `gref` (mapped first if need be, as [`PersistentGrants::with_page`]),
    /// shared: it stays mapped while the returned handle lives, even if the cache is
    /// cleared meanwhile.
    /// A mapping for [`Access::Read`] may be read-only: the caller must not write
    /// through it.
    pub fn mapping<G>(&self, grants: &G, gref: u32, access: Access) -> Result<Rc<M>, MapError>
    where
        G: GrantMapper<Mapping = M>,
    {
        self.lookup(grants, gref, access, true)
    }

    /// As [`PersistentGrants::mapping`], but a failure is not counted (the caller falls
    /// back to a path that tries again and counts it).
    pub fn mapping_quiet<G>(&self, grants: &G, gref: u32, access: Access) -> Result<Rc<M>, MapError>
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
    ) -> Result<Rc<M>, MapError>
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
                }
                .into());
            }
            e.used = now;
            inner.stats.hits += 1;
            return Ok(e.mapping.clone());
        }
        if inner.entries.len() >= self.limit {
            self.purge(inner);
            if inner.entries.len() >= self.limit {
                inner.turned_away = true;
                inner.stats.full += 1;
                return Err(MapError::Full);
            }
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
                return Err(e.into());
            }
        };
        inner.stats.mapped += 1;
        inner.stats.read_only += u64::from(!writable);
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

    /// When a use was turned away since the last purge (or since the cache was made)
    /// and at least a generation (as many uses as the limit) has passed since then,
    /// unmaps up to [`PURGE_PERCENT`] of the limit among the mappings not used since
    /// then and not held by I/O, least recently used first. The work is bounded: one
    /// pass over the cache (at most the limit's entries) and a sort of the unused ones,
    /// once a generation (the uses in between cost a tick each, no ordered structure).
    fn purge(&self, inner: &mut Inner<M>) {
        if !inner.turned_away || inner.tick - inner.generation_start < self.limit as u64 {
            return;
        }
        let most = (self.limit * PURGE_PERCENT / 100).max(1);
        let start = inner.generation_start;
        let mut victims: Vec<(u64, u32)> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.used <= start && Rc::strong_count(&e.mapping) == 1)
            .map(|(&r, e)| (e.used, r))
            .collect();
        victims.sort_unstable();
        for &(_, r) in victims.iter().take(most) {
            // Dropping the mapping unmaps it.
            inner.entries.remove(&r);
            inner.stats.purged += 1;
        }
        inner.generation_start = inner.tick;
        inner.turned_away = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};

    #[test]
    fn maps_once_turns_away_when_full_and_unmaps_everything() {
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
        cache
            .with_page(&grants, refs[0], Access::Write, |_| ())
            .unwrap();
        // Full: a new reference is turned away (the caller copies), nothing evicted.
        assert!(matches!(
            cache.with_page(&grants, refs[3], Access::Write, |_| ()),
            Err(MapError::Full)
        ));
        assert!(!cache.contains(refs[3]) && g.mapped(refs[3]) == 0);
        assert!((0..3).all(|i| cache.contains(refs[i])));
        assert_eq!(grants.live_mappings(), 3);
        assert!(!cache.room_for([refs[0], refs[3]].into_iter()));
        assert!(cache.room_for([refs[0], refs[2]].into_iter()));
        // The mapping is the guest's page: writes through it are the guest's bytes.
        cache
            .with_page(&grants, refs[2], Access::Write, |m| {
                m.write_bytes(8, &[9; 4])
            })
            .unwrap()
            .unwrap();
        let mut back = [0u8; 4];
        g.page(2).read_bytes(8, &mut back).unwrap();
        assert_eq!(back, [9; 4]);
        // Not granted / read-only: nothing cached.
        let ro = g.grant(7, true);
        cache.clear();
        assert!(matches!(
            cache.with_page(&grants, 9999, Access::Write, |_| ()),
            Err(MapError::Grant(_))
        ));
        assert!(cache.with_page(&grants, ro, Access::Write, |_| ()).is_err());
        assert_eq!(cache.len(), 0);
        assert_eq!(
            cache.stats(),
            CacheStats {
                mapped: 3,
                hits: 2,
                full: 1,
                purged: 0,
                failed: 2,
                read_only: 0,
            }
        );
        assert_eq!(grants.live_mappings(), 0);
        cache
            .with_page(&grants, refs[4], Access::Write, |_| ())
            .unwrap();
        assert!(!g.try_revoke(refs[4]), "still mapped");
        drop(cache);
        assert_eq!(grants.live_mappings(), 0);
        assert!(g.try_revoke(refs[0]) && g.try_revoke(refs[4]));
    }

    /// A full cache that turns uses away purges, once a generation, up to 5 % of its
    /// limit among the mappings unused since the last purge and not held by I/O.
    #[test]
    fn purges_the_unused_a_generation_after_turning_away() {
        const LIMIT: usize = 40;
        let g = FakeGuestMemory::new(4, 64);
        let grants = FakeGrants::new();
        grants.add_guest(g.clone());
        let refs: Vec<u32> = (0..50).map(|p| g.grant(p, false)).collect();
        let cache = PersistentGrants::new(4, LIMIT);
        let use_ = |r: u32| cache.mapping(&grants, r, Access::Write).map(|_| ());
        // Ticks 1-40 fill the cache; I/O holds refs[1].
        let mut held = None;
        for (i, &r) in refs[..LIMIT].iter().enumerate() {
            let m = cache.mapping(&grants, r, Access::Write).unwrap();
            if i == 1 {
                held = Some(m);
            }
        }
        // Tick 41: turned away (the first one: no purge yet).
        assert!(matches!(use_(refs[40]), Err(MapError::Full)));
        // Ticks 42-77: the working set refs[4..40] again.
        for &r in &refs[4..LIMIT] {
            use_(r).unwrap();
        }
        // Tick 78: a generation since the cache was made, a use turned away: a purge,
        // but every mapping was used since the cache was made: nothing goes.
        assert!(matches!(use_(refs[40]), Err(MapError::Full)));
        assert_eq!(cache.stats().purged, 0);
        // Ticks 79-114: the working set again; 115-117 turned away (under a generation).
        for &r in &refs[4..LIMIT] {
            use_(r).unwrap();
        }
        for &r in &refs[40..43] {
            assert!(matches!(use_(r), Err(MapError::Full)));
        }
        assert_eq!(cache.stats().purged, 0);
        // Tick 118: a generation since the purge at 78: unused since then are refs[0..4];
        // refs[1] is held, so the two least recently used others go (5 % of 40).
        use_(refs[43]).unwrap();
        assert_eq!(cache.stats().purged, 2);
        assert!(!cache.contains(refs[0]) && !cache.contains(refs[2]));
        assert_eq!((g.mapped(refs[0]), g.mapped(refs[2])), (0, 0));
        assert!(cache.contains(refs[1]) && cache.contains(refs[3]));
        assert!(cache.contains(refs[43]));
        use_(refs[44]).unwrap();
        assert!(matches!(use_(refs[45]), Err(MapError::Full)));
        assert_eq!(cache.len(), LIMIT);
        assert_eq!(grants.live_mappings(), LIMIT);
        let s = cache.stats();
        assert_eq!((s.mapped, s.full, s.purged), (42, 6, 2));
        // Released, refs[1] may go at a later purge; held or not, clear unmaps all once
        // the I/O's handle is gone.
        drop(held);
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
            Err(MapError::Grant(GrantError::MappedReadOnly { gref, .. })) if gref == ro
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
                failed: 2,
                read_only: 1,
                ..CacheStats::default()
            }
        );
        drop(cache);
        assert_eq!(grants.live_mappings(), 0);
    }
}
