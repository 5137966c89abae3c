//! Grants: the [`GrantMapper`] seam, `/dev/xen/gntdev`, and fake guest memory.

use sluice_abi::shared::SharedMem;
#[cfg(any(test, feature = "fake"))]
use sluice_abi::shared::{SharedPages, XEN_PAGE_SIZE};
use sluice_abi::types::{DomId, GrantRef};
#[cfg(any(test, feature = "fake"))]
use sluice_xen_sys::CopyPtr;
use sluice_xen_sys::{CopySegment, GntdevDevice, GrantMapping};
#[cfg(any(test, feature = "fake"))]
use std::collections::HashMap;
#[cfg(any(test, feature = "fake"))]
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(any(test, feature = "fake"))]
use std::sync::{Arc, Mutex};

/// Xen's `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Xen's `GNTST_bad_gntref`.
pub const GNTST_BAD_GNTREF: i16 = -4;
/// Xen's `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Xen's `GNTST_bad_copy_arg`.
pub const GNTST_BAD_COPY_ARG: i16 = -10;

/// Failures of grant operations.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The device refused.
    #[error(transparent)]
    Device(#[from] sluice_xen_sys::GntdevError),
    /// A fake mapping of a reference the domain did not grant (or not writable).
    #[error("grant {gref} of domain {domid} is not granted (or not for this access)")]
    BadRef {
        /// The domain.
        domid: DomId,
        /// The reference.
        gref: GrantRef,
    },
    /// A reference held mapped read-only was asked for writing (the caller falls back
    /// to grant copy, which gives the grant's current answer).
    #[error("grant {gref} of domain {domid} is mapped read-only")]
    MappedReadOnly {
        /// The domain.
        domid: u16,
        /// The reference.
        gref: u32,
    },
    /// The fake maps only references of consecutive pages.
    #[error("fake grants: references {0:?} are not consecutive pages")]
    NotContiguous(Vec<GrantRef>),
}

/// Pages of another domain mapped here, at a fixed address until dropped (so I/O may go
/// straight into them: [`sluice_xen_sys::StableMem`]).
pub trait GrantMap: Send + sluice_xen_sys::StableMem {
    /// The pages, consecutively.
    fn mem(&self) -> SharedMem<'_>;
}

/// Maps and copies other domains' grants: the backend half of the grant seam (the
/// frontend half is `sluice_front_seams::Grants`).
pub trait GrantMapper: Send + Sync {
    /// A mapping; unmapped on drop.
    type Mapping: GrantMap + 'static;
    /// Maps `refs` of `domid` as consecutive pages.
    fn map(
        &self,
        domid: DomId,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<Self::Mapping, GrantError>;
    /// Grant copy: results per segment in `status` (0: ok, `GNTST_*` otherwise).
    fn copy(&self, segs: &mut [CopySegment<'_>]) -> Result<(), GrantError>;
}

impl GrantMap for GrantMapping {
    fn mem(&self) -> SharedMem<'_> {
        GrantMapping::mem(self)
    }
}

impl GrantMapper for GntdevDevice {
    type Mapping = GrantMapping;
    fn map(
        &self,
        domid: DomId,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<GrantMapping, GrantError> {
        let raw: Vec<u32> = refs.iter().map(|r| r.0).collect();
        Ok(GntdevDevice::map(self, domid.0, &raw, writable)?)
    }
    fn copy(&self, segs: &mut [CopySegment<'_>]) -> Result<(), GrantError> {
        Ok(GntdevDevice::grant_copy(self, segs)?)
    }
}

#[cfg(any(test, feature = "fake"))]
#[derive(Debug, Clone, Copy)]
struct FakeGrant {
    page: usize,
    readonly: bool,
}

#[cfg(any(test, feature = "fake"))]
/// A fake domain's memory and grant table: pages it can grant to dom0.
pub struct FakeGuestMemory {
    domid: u16,
    pages: SharedPages,
    grants: Mutex<(u32, HashMap<u32, FakeGrant>)>,
    /// Live fake mappings per reference (as Xen's pin counts).
    mapped: Mutex<HashMap<u32, usize>>,
    /// Of those, the writable ones.
    mapped_writable: Mutex<HashMap<u32, usize>>,
    /// Pages handed out by [`FakeGuestMemory::alloc_pages`].
    used: Mutex<Vec<bool>>,
}

#[cfg(any(test, feature = "fake"))]
impl std::fmt::Debug for FakeGuestMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGuestMemory")
            .field("domid", &self.domid)
            .finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "fake"))]
impl FakeGuestMemory {
    /// `pages` zeroed pages of domain `domid`.
    pub fn new(domid: u16, pages: usize) -> Arc<Self> {
        Arc::new(Self {
            domid,
            pages: SharedPages::new(pages),
            grants: Mutex::new((8, HashMap::new())),
            mapped: Mutex::new(HashMap::new()),
            mapped_writable: Mutex::new(HashMap::new()),
            used: Mutex::new(vec![false; pages]),
        })
    }

    /// The domain.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// Allocates `count` consecutive free pages (the guest kernel's page allocator, for
    /// a fake frontend); returns the first, or `None` when no run is free.
    pub fn alloc_pages(&self, count: usize) -> Option<usize> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let n = used.len();
        let first =
            (0..n.checked_sub(count)? + 1).find(|&f| used[f..f + count].iter().all(|u| !u))?;
        used[first..first + count]
            .iter_mut()
            .for_each(|u| *u = true);
        Some(first)
    }

    /// Frees pages from [`alloc_pages`](Self::alloc_pages).
    ///
    /// # Panics
    /// When one of them is not allocated or is still granted (a frontend bug the fake
    /// exists to catch: Xen would let the backend keep writing a freed page).
    pub fn free_pages(&self, first: usize, count: usize) {
        let granted = self
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .values()
            .any(|g| (first..first + count).contains(&g.page));
        assert!(
            !granted,
            "fake guest {}: freeing granted pages {first}+{count}",
            self.domid
        );
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for u in &mut used[first..first + count] {
            assert!(
                *u,
                "fake guest {}: double free of page in {first}+{count}",
                self.domid
            );
            *u = false;
        }
    }

    /// Live grants (not revoked).
    pub fn live_grants(&self) -> usize {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .len()
    }

    /// All of the memory, as the guest sees it.
    pub fn mem(&self) -> SharedMem<'_> {
        self.pages.mem()
    }

    /// Page `n` of the memory.
    pub fn page(&self, n: usize) -> SharedMem<'_> {
        self.pages
            .mem()
            .slice(n * XEN_PAGE_SIZE, XEN_PAGE_SIZE)
            .expect("page index within the fake memory")
    }

    /// Grants page `page` to dom0; returns the reference.
    pub fn grant(&self, page: usize, readonly: bool) -> u32 {
        assert!(page < self.pages.pages(), "fake guest has no page {page}");
        let mut g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        let r = g.0;
        g.0 += 1;
        g.1.insert(r, FakeGrant { page, readonly });
        r
    }

    /// Grants page `page` under a chosen reference (e.g. the toolstack's reserved
    /// console and xenstore references 0 and 1).
    pub fn grant_at(&self, gref: u32, page: usize, readonly: bool) {
        assert!(page < self.pages.pages(), "fake guest has no page {page}");
        let mut g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        g.1.insert(gref, FakeGrant { page, readonly });
    }

    /// How many live mappings of `gref` dom0 holds.
    pub fn mapped(&self, gref: u32) -> usize {
        self.mapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&gref)
            .copied()
            .unwrap_or(0)
    }

    /// How many of the live mappings of `gref` are writable.
    pub fn mapped_writable(&self, gref: u32) -> usize {
        self.mapped_writable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&gref)
            .copied()
            .unwrap_or(0)
    }

    /// Ends a grant as `gnttab_try_end_foreign_access` does: refused (false) while dom0
    /// still maps it.
    pub fn try_revoke(&self, gref: u32) -> bool {
        if self.mapped(gref) > 0 {
            return false;
        }
        self.revoke(gref);
        true
    }

    /// Revokes a grant unconditionally (a hostile guest rewriting its grant table;
    /// existing fake mappings keep working, as Xen keeps a mapped page mapped).
    pub fn revoke(&self, gref: u32) {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&gref);
    }

    fn lookup(&self, gref: u32, write: bool) -> Option<usize> {
        let g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        g.1.get(&gref)
            .filter(|g| !(write && g.readonly))
            .map(|g| g.page)
    }
}

#[cfg(any(test, feature = "fake"))]
/// Fake grant device: maps and copies grants of registered fake guests.
#[derive(Debug, Clone, Default)]
pub struct FakeGrants {
    guests: Arc<Mutex<HashMap<u16, Arc<FakeGuestMemory>>>>,
    counters: Arc<FakeGrantCounters>,
}

#[cfg(any(test, feature = "fake"))]
#[derive(Debug, Default)]
struct FakeGrantCounters {
    live: AtomicUsize,
    maps: AtomicUsize,
    copied: AtomicUsize,
}

#[cfg(any(test, feature = "fake"))]
impl FakeGrants {
    /// No guests yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a guest's grants reachable.
    pub fn add_guest(&self, mem: Arc<FakeGuestMemory>) {
        self.guests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mem.domid, mem);
    }

    /// Mappings made and not yet dropped (pages are not counted: one per `map` call).
    pub fn live_mappings(&self) -> usize {
        self.counters.live.load(Ordering::SeqCst)
    }

    /// Successful `map` calls so far.
    pub fn maps_made(&self) -> usize {
        self.counters.maps.load(Ordering::SeqCst)
    }

    /// Grant-copy segments issued so far (whatever their result).
    pub fn segments_copied(&self) -> usize {
        self.counters.copied.load(Ordering::SeqCst)
    }

    fn guest(&self, domid: u16) -> Option<Arc<FakeGuestMemory>> {
        self.guests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&domid)
            .cloned()
    }
}

#[cfg(any(test, feature = "fake"))]
/// A fake mapping: a window on the guest's memory.
#[derive(Debug)]
pub struct FakeMapping {
    guest: Arc<FakeGuestMemory>,
    first: usize,
    count: usize,
    refs: Vec<u32>,
    writable: bool,
    counters: Arc<FakeGrantCounters>,
}

#[cfg(any(test, feature = "fake"))]
impl Drop for FakeMapping {
    fn drop(&mut self) {
        let release = |m: &Mutex<HashMap<u32, usize>>| {
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            for r in &self.refs {
                if let Some(n) = m.get_mut(r) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(r);
                    }
                }
            }
        };
        release(&self.guest.mapped);
        if self.writable {
            release(&self.guest.mapped_writable);
        }
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "fake"))]
// The one `unsafe` outside sluice-xen-sys: the fake's pages, for zero-copy I/O tests.
#[allow(unsafe_code)]
// SAFETY: the region is a fixed slice of the guest's `SharedPages` (one heap allocation
// freed only when the last `Arc<FakeGuestMemory>` goes, and `self` holds one); `mem`
// returns the same slice every time.
unsafe impl sluice_xen_sys::StableMem for FakeMapping {
    fn stable_mem(&self) -> SharedMem<'_> {
        GrantMap::mem(self)
    }
}

#[cfg(any(test, feature = "fake"))]
impl GrantMap for FakeMapping {
    fn mem(&self) -> SharedMem<'_> {
        self.guest
            .mem()
            .slice(self.first * XEN_PAGE_SIZE, self.count * XEN_PAGE_SIZE)
            .expect("mapping checked against the fake memory")
    }
}

#[cfg(any(test, feature = "fake"))]
impl GrantMapper for FakeGrants {
    type Mapping = FakeMapping;

    fn map(
        &self,
        domid: DomId,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<FakeMapping, GrantError> {
        let guest = self.guest(domid.0).ok_or(GrantError::BadRef {
            domid,
            gref: refs.first().copied().unwrap_or_default(),
        })?;
        let mut first = None;
        for (i, &r) in refs.iter().enumerate() {
            let page = guest
                .lookup(r.0, writable)
                .ok_or(GrantError::BadRef { domid, gref: r })?;
            let f = *first.get_or_insert(page);
            if page != f + i {
                return Err(GrantError::NotContiguous(refs.to_vec()));
            }
        }
        let first = first.ok_or(GrantError::Device(sluice_xen_sys::GntdevError::Empty))?;
        {
            let mut m = guest.mapped.lock().unwrap_or_else(|p| p.into_inner());
            for &r in refs {
                *m.entry(r.0).or_insert(0) += 1;
            }
        }
        if writable {
            let mut m = guest
                .mapped_writable
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for &r in refs {
                *m.entry(r.0).or_insert(0) += 1;
            }
        }
        self.counters.live.fetch_add(1, Ordering::SeqCst);
        self.counters.maps.fetch_add(1, Ordering::SeqCst);
        Ok(FakeMapping {
            guest,
            first,
            count: refs.len(),
            refs: refs.iter().map(|r| r.0).collect(),
            writable,
            counters: self.counters.clone(),
        })
    }

    fn copy(&self, segs: &mut [CopySegment<'_>]) -> Result<(), GrantError> {
        self.counters.copied.fetch_add(segs.len(), Ordering::SeqCst);
        for s in segs.iter_mut() {
            let Some(guest) = self.guest(s.domid) else {
                s.status = GNTST_BAD_DOMAIN;
                continue;
            };
            if s.offset as usize + s.local.len() > XEN_PAGE_SIZE {
                s.status = GNTST_BAD_COPY_ARG;
                continue;
            }
            let to_guest = matches!(s.local, CopyPtr::ToGuest(_));
            let Some(page) = guest.lookup(s.gref, to_guest) else {
                s.status = if guest.lookup(s.gref, false).is_some() {
                    GNTST_PERMISSION_DENIED
                } else {
                    GNTST_BAD_GNTREF
                };
                continue;
            };
            let at = page * XEN_PAGE_SIZE + s.offset as usize;
            let r = match &mut s.local {
                CopyPtr::ToGuest(b) => guest.mem().write_bytes(at, b),
                CopyPtr::FromGuest(b) => guest.mem().read_bytes(at, b),
            };
            s.status = if r.is_ok() { 0 } else { GNTST_BAD_COPY_ARG };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_map_and_copy_respect_grants() {
        let g = FakeGuestMemory::new(3, 4);
        let grants = FakeGrants::new();
        grants.add_guest(g.clone());
        let a = g.grant(1, false);
        let b = g.grant(2, true);
        let (ga, gb) = (GrantRef(a), GrantRef(b));
        let m = grants.map(DomId(3), &[ga, gb], false).unwrap();
        assert_eq!(m.mem().len(), 2 * XEN_PAGE_SIZE);
        assert!(
            grants.map(DomId(3), &[ga, gb], true).is_err(),
            "b is read-only"
        );
        assert!(
            grants.map(DomId(3), &[gb, ga], false).is_err(),
            "not consecutive"
        );
        assert!(
            grants.map(DomId(4), &[ga], false).is_err(),
            "unknown domain"
        );
        let data = [7u8; 16];
        let mut back = [0u8; 16];
        let mut segs = [
            CopySegment {
                local: CopyPtr::ToGuest(&data),
                domid: 3,
                gref: a,
                offset: 100,
                status: 1,
            },
            CopySegment {
                local: CopyPtr::ToGuest(&data),
                domid: 3,
                gref: b,
                offset: 0,
                status: 1,
            },
            CopySegment {
                local: CopyPtr::ToGuest(&data),
                domid: 3,
                gref: 999,
                offset: 0,
                status: 1,
            },
        ];
        grants.copy(&mut segs).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.status).collect::<Vec<_>>(),
            [0, GNTST_PERMISSION_DENIED, GNTST_BAD_GNTREF]
        );
        let mut segs = [CopySegment {
            local: CopyPtr::FromGuest(&mut back),
            domid: 3,
            gref: a,
            offset: 100,
            status: 1,
        }];
        grants.copy(&mut segs).unwrap();
        assert_eq!(segs[0].status, 0);
        assert_eq!(back, data);
        assert_eq!((g.mapped(a), g.mapped(b)), (1, 1));
        assert_eq!((g.mapped_writable(a), g.mapped_writable(b)), (0, 0));
        let w = grants.map(DomId(3), &[ga], true).unwrap();
        assert_eq!((g.mapped(a), g.mapped_writable(a)), (2, 1));
        drop(w);
        assert_eq!(grants.live_mappings(), 1);
        assert!(!g.try_revoke(a), "mapped: Xen refuses to end the grant");
        drop(m);
        assert_eq!((g.mapped(a), grants.live_mappings()), (0, 0));
        assert_eq!(grants.maps_made(), 2);
        assert_eq!(grants.segments_copied(), 4);
        assert!(g.try_revoke(a));
        assert!(grants.map(DomId(3), &[ga], false).is_err());
    }
}
