//! The fake Xen world's frontend side (feature `fake`): a guest kernel's seams
//! (`sluice_front_seams`) over [`FakeGuestMemory`], a [`FakeEvtchnHub`] endpoint and a
//! [`FakeXenStore`] connection, so a real frontend core (blkfront-core, later
//! netfront-core) runs against a real backend daemon in one process.

use crate::evtchn::{EventChannels as _, FakeEvtchn, FakeEvtchnHub};
use crate::grant::{FakeGrants, FakeGuestMemory};
use crate::xenstore::{transaction, FakeXenStore, FakeXsConn, XenStore as _, XsError, XBT_NULL};
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{
    check_page_index, copy_shared, EventChannels, GrantInUse, Grants, Memory, Pages, SeamError,
    XenStore,
};
use std::sync::Arc;
use std::time::Duration;

/// Pages of a fake guest owned by its frontend; freed on drop (the fake panics when a
/// granted page is freed).
#[derive(Debug)]
pub struct FakeFrontPages {
    guest: Arc<FakeGuestMemory>,
    first: usize,
    count: usize,
}

impl FakeFrontPages {
    /// The first page's index in the guest's memory.
    pub fn first(&self) -> usize {
        self.first
    }
}

impl Pages for FakeFrontPages {
    fn count(&self) -> usize {
        self.count
    }
    fn mem(&self) -> SharedMem<'_> {
        self.guest
            .mem()
            .slice(self.first * XEN_PAGE_SIZE, self.count * XEN_PAGE_SIZE)
            .expect("allocation within the fake memory")
    }
}

impl Drop for FakeFrontPages {
    fn drop(&mut self) {
        self.guest.free_pages(self.first, self.count);
    }
}

fn xs_err(e: XsError) -> SeamError {
    match e {
        XsError::Errno(n) => SeamError::Xenstore(-(n.raw() as i32)),
        _ => SeamError::Xenstore(-5),
    }
}

/// A fake guest's kernel, as a frontend core sees it. Data pages (the block layer's)
/// are page indices in the guest's memory ([`FakeFront::alloc_data`]).
#[derive(Debug)]
pub struct FakeFront {
    guest: Arc<FakeGuestMemory>,
    evtchn: FakeEvtchn,
    xs: FakeXsConn,
    /// Bound ports and the queue each serves.
    ports: Vec<(EvtchnPort, usize)>,
}

impl FakeFront {
    /// Domain `domid` with `pages` pages of memory, its grants reachable through
    /// `grants`, its event channels on `hub`, connected to `store`.
    pub fn new(
        domid: DomId,
        pages: usize,
        grants: &FakeGrants,
        hub: &FakeEvtchnHub,
        store: &FakeXenStore,
    ) -> Self {
        let guest = FakeGuestMemory::new(domid.0, pages);
        grants.add_guest(guest.clone());
        FakeFront {
            guest,
            evtchn: hub.endpoint(domid.0),
            xs: store.connect(),
            ports: Vec::new(),
        }
    }

    /// The guest's memory.
    pub fn guest(&self) -> &Arc<FakeGuestMemory> {
        &self.guest
    }

    /// The guest's xenstore connection (to watch the backend's state).
    pub fn xs(&self) -> &FakeXsConn {
        &self.xs
    }

    /// `count` data pages for I/O (kept allocated for the test's life).
    pub fn alloc_data(&self, count: usize) -> Vec<usize> {
        let first = self
            .guest
            .alloc_pages(count)
            .expect("fake guest out of memory");
        (first..first + count).collect()
    }

    /// Waits up to `timeout` for events; returns the queues whose channel fired (and
    /// unmasks them, as Linux's handler does).
    pub fn wait_events(&self, timeout: Duration) -> Vec<usize> {
        let mut fired = Vec::new();
        if self.evtchn.wait(Some(timeout)).unwrap_or(false) {
            let _ = self.evtchn.read_pending(&mut fired);
        }
        let mut queues = Vec::new();
        for port in fired {
            let _ = self.evtchn.unmask(port);
            if let Some(&(_, q)) = self.ports.iter().find(|(p, _)| *p == port) {
                queues.push(q);
            }
        }
        queues
    }

    fn data(&self, page: usize) -> Result<SharedMem<'_>, SeamError> {
        self.guest
            .mem()
            .slice(page.saturating_mul(XEN_PAGE_SIZE), XEN_PAGE_SIZE)
            .map_err(|_| SeamError::OutOfBounds {
                offset: page.saturating_mul(XEN_PAGE_SIZE),
                len: XEN_PAGE_SIZE,
                size: self.guest.mem().len(),
            })
    }
}

impl Memory for FakeFront {
    type Pages = FakeFrontPages;
    type DataPage = usize;

    fn alloc_pages(&mut self, count: usize) -> Result<FakeFrontPages, SeamError> {
        let first = self
            .guest
            .alloc_pages(count)
            .ok_or(SeamError::NoResources)?;
        // Zeroed, as the kernel's allocator gives them.
        self.guest
            .mem()
            .fill(first * XEN_PAGE_SIZE, count * XEN_PAGE_SIZE, 0)
            .map_err(|_| SeamError::NoResources)?;
        Ok(FakeFrontPages {
            guest: self.guest.clone(),
            first,
            count,
        })
    }

    fn copy_in(
        &mut self,
        dst: &FakeFrontPages,
        dst_offset: usize,
        src: usize,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        copy_shared(dst.mem(), dst_offset, self.data(src)?, src_offset, len)
    }

    fn copy_out(
        &mut self,
        dst: usize,
        dst_offset: usize,
        src: &FakeFrontPages,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        copy_shared(self.data(dst)?, dst_offset, src.mem(), src_offset, len)
    }
}

impl Grants for FakeFront {
    fn grant_access(
        &mut self,
        domid: DomId,
        pages: &FakeFrontPages,
        index: usize,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        check_page_index(pages, index)?;
        // The fake grants to dom0 only, where the fake backends run.
        if domid != DomId::DOM0 {
            return Err(SeamError::Errno(-22));
        }
        Ok(GrantRef(self.guest.grant(pages.first + index, readonly)))
    }

    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantInUse> {
        if self.guest.try_revoke(gref.0) {
            Ok(())
        } else {
            Err(GrantInUse(gref))
        }
    }
}

impl EventChannels for FakeFront {
    fn bind_unbound_port(&mut self, domid: DomId, queue: usize) -> Result<EvtchnPort, SeamError> {
        let port = self
            .evtchn
            .bind_unbound_port(domid)
            .map_err(|_| SeamError::NoResources)?;
        self.ports.push((port, queue));
        Ok(port)
    }

    fn notify(&mut self, port: EvtchnPort) {
        let _ = self.evtchn.notify(port);
    }

    fn unbind(&mut self, port: EvtchnPort) {
        self.ports.retain(|(p, _)| *p != port);
        let _ = self.evtchn.unbind(port);
    }
}

impl XenStore for FakeFront {
    fn read_opt(&mut self, path: &str) -> Result<Option<String>, SeamError> {
        self.xs.read_opt(XBT_NULL, path).map_err(xs_err)
    }

    fn write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), SeamError> {
        transaction(&self.xs, 16, |tx| {
            for (k, v) in writes {
                self.xs.write(tx, k, v.as_bytes())?;
            }
            Ok(())
        })
        .map_err(xs_err)
    }
}

/// Waits until xenstore node `path` reads `want` (a hang guard of 20 s, not a timing
/// assertion: the tests' backends answer in milliseconds).
pub fn wait_for(xs: &FakeXsConn, path: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = xs.read_opt(XBT_NULL, path).unwrap();
        if v.as_deref() == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} is {v:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
