//! A fake Xen world for the frontend cores' host tests (feature `fake`): a grant table,
//! event channels, xenstore and pages, the frontend's [`Platform`](crate::Platform)
//! as [`FrontPlatform`]; each core's tests put their fake backend beside it.
//!
//! The fake checks the frontend's discipline as a hypervisor would: it panics when the
//! frontend frees a page that is still granted, grants a freed page, or touches freed
//! memory.

extern crate std;

use crate::{
    check_page_index, copy_shared, EventChannels, GrantInUse, Grants, Memory, Pages, SeamError,
    XenStore,
};
use sluice_abi::shared::{SharedMem, SharedPages};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use std::boxed::Box;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::format;
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

/// The backend's domain in the fake world.
pub const BACKEND_ID: DomId = DomId(0);
/// A page's size.
pub const PAGE: usize = 4096;

/// A page of the fake world: allocation and index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pg {
    /// Which allocation.
    pub alloc: usize,
    /// Which page of it.
    pub index: usize,
}

struct Alloc {
    pages: &'static SharedPages,
    count: usize,
    freed: bool,
}

#[derive(Debug)]
struct Grant {
    domid: DomId,
    page: Pg,
    readonly: bool,
    mapped: u32,
}

#[derive(Default)]
struct Port {
    queue: usize,
    to_back: u32,
    to_front: u32,
    closed: bool,
}

#[derive(Default)]
pub struct World {
    allocs: Vec<Alloc>,
    grants: BTreeMap<GrantRef, Grant>,
    next_gref: GrantRef,
    ports: BTreeMap<EvtchnPort, Port>,
    next_port: EvtchnPort,
    pub xs: BTreeMap<String, String>,
    /// Allocations still allowed (None: unlimited).
    pub alloc_budget: Option<usize>,
}

impl World {
    pub fn new() -> Rc<RefCell<World>> {
        Rc::new(RefCell::new(World {
            next_gref: GrantRef(8),
            next_port: EvtchnPort(1),
            ..Default::default()
        }))
    }

    pub fn mem(&self, first: Pg, count: usize) -> SharedMem<'static> {
        let a = &self.allocs[first.alloc];
        assert!(!a.freed, "access to freed pages {first:?}");
        assert!(first.index + count <= a.count, "pages out of allocation");
        a.pages
            .mem()
            .slice(first.index * PAGE, count * PAGE)
            .expect("in bounds")
    }

    /// Allocates caller (block layer) pages.
    pub fn alloc(&mut self, count: usize) -> Pg {
        let pages: &'static SharedPages = Box::leak(Box::new(SharedPages::new(count)));
        self.allocs.push(Alloc {
            pages,
            count,
            freed: false,
        });
        Pg {
            alloc: self.allocs.len() - 1,
            index: 0,
        }
    }

    pub fn page_bytes(&self, page: Pg) -> Vec<u8> {
        let mut v = vec![0; PAGE];
        self.mem(page, 1).read_bytes(0, &mut v).unwrap();
        v
    }

    pub fn fill_page(&self, page: Pg, bytes: &[u8]) {
        self.mem(page, 1).write_bytes(0, bytes).unwrap();
    }

    pub fn live_grants(&self) -> usize {
        self.grants.len()
    }

    pub fn mapped_grants(&self) -> usize {
        self.grants.values().filter(|g| g.mapped > 0).count()
    }

    pub fn open_ports(&self) -> usize {
        self.ports.values().filter(|p| !p.closed).count()
    }

    pub fn live_allocs(&self) -> usize {
        self.allocs.iter().filter(|a| !a.freed).count()
    }

    /// Takes the pending frontend notifications of `port`.
    pub fn take_front_events(&mut self, port: EvtchnPort) -> u32 {
        let p = self.ports.get_mut(&port).expect("port");
        std::mem::take(&mut p.to_front)
    }

    /// The backend signals the frontend.
    pub fn notify_front(&mut self, port: EvtchnPort) {
        let p = self.ports.get_mut(&port).expect("port");
        assert!(!p.closed, "backend notify on a closed port");
        p.to_front += 1;
    }

    /// The queue the frontend bound `port` for.
    pub fn port_queue(&self, port: EvtchnPort) -> Option<usize> {
        self.ports.get(&port).map(|p| p.queue)
    }

    /// Whether the frontend closed `port`.
    pub fn port_closed(&self, port: EvtchnPort) -> bool {
        self.ports.get(&port).is_none_or(|p| p.closed)
    }

    pub fn take_back_events(&mut self, port: EvtchnPort) -> u32 {
        let p = self.ports.get_mut(&port).expect("port");
        std::mem::take(&mut p.to_back)
    }

    /// Backend maps a grant: it must exist, be for the backend, and be writable when
    /// the backend writes.
    pub fn map(&mut self, gref: GrantRef, write: bool) -> Result<Pg, String> {
        let g = self
            .grants
            .get_mut(&gref)
            .ok_or(format!("grant {gref} does not exist"))?;
        if g.domid != BACKEND_ID {
            return Err(format!("grant {gref} is for domain {}", g.domid));
        }
        if write && g.readonly {
            return Err(format!("grant {gref} is read-only"));
        }
        g.mapped += 1;
        let page = g.page;
        assert!(!self.allocs[page.alloc].freed, "granted page was freed");
        Ok(page)
    }

    pub fn unmap(&mut self, gref: GrantRef) {
        if let Some(g) = self.grants.get_mut(&gref) {
            g.mapped = g.mapped.saturating_sub(1);
        }
    }
}

/// The frontend's view of the world.
pub struct FrontPlatform(pub Rc<RefCell<World>>);

/// Frontend-owned pages of the fake world; freed (checked) on drop.
pub struct FakePages {
    world: Rc<RefCell<World>>,
    first: Pg,
    count: usize,
}

impl std::fmt::Debug for FakePages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakePages({:?}, {})", self.first, self.count)
    }
}

impl Pages for FakePages {
    fn count(&self) -> usize {
        self.count
    }
    fn mem(&self) -> SharedMem<'_> {
        self.world.borrow().mem(self.first, self.count)
    }
}

impl Drop for FakePages {
    fn drop(&mut self) {
        let mut w = self.world.borrow_mut();
        let first = self.first;
        assert!(!w.allocs[first.alloc].freed, "double free of {first:?}");
        assert!(
            !w.grants.values().any(|g| g.page.alloc == first.alloc),
            "freeing pages that are still granted"
        );
        w.allocs[first.alloc].freed = true;
    }
}

impl Memory for FrontPlatform {
    type Pages = FakePages;
    type DataPage = Pg;

    fn alloc_pages(&mut self, count: usize) -> Result<FakePages, SeamError> {
        let mut w = self.0.borrow_mut();
        if let Some(b) = w.alloc_budget.as_mut() {
            if *b == 0 {
                return Err(SeamError::NoResources);
            }
            *b -= 1;
        }
        let first = w.alloc(count);
        Ok(FakePages {
            world: self.0.clone(),
            first,
            count,
        })
    }

    fn copy_in(
        &mut self,
        dst: &FakePages,
        dst_offset: usize,
        src: Pg,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        let w = self.0.borrow();
        copy_shared(
            w.mem(dst.first, dst.count),
            dst_offset,
            w.mem(src, 1),
            src_offset,
            len,
        )
    }

    fn copy_out(
        &mut self,
        dst: Pg,
        dst_offset: usize,
        src: &FakePages,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        let w = self.0.borrow();
        copy_shared(
            w.mem(dst, 1),
            dst_offset,
            w.mem(src.first, src.count),
            src_offset,
            len,
        )
    }
}

impl Grants for FrontPlatform {
    fn grant_access(
        &mut self,
        domid: DomId,
        pages: &FakePages,
        index: usize,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        check_page_index(pages, index)?;
        let page = Pg {
            alloc: pages.first.alloc,
            index: pages.first.index + index,
        };
        let mut w = self.0.borrow_mut();
        assert!(!w.allocs[page.alloc].freed, "granting a freed page");
        let gref = w.next_gref;
        w.next_gref.0 += 1;
        w.grants.insert(
            gref,
            Grant {
                domid,
                page,
                readonly,
                mapped: 0,
            },
        );
        Ok(gref)
    }

    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantInUse> {
        let mut w = self.0.borrow_mut();
        match w.grants.get(&gref) {
            None => panic!("end_access of unknown grant {gref}"),
            Some(g) if g.mapped > 0 => Err(GrantInUse(gref)),
            Some(_) => {
                w.grants.remove(&gref);
                Ok(())
            }
        }
    }
}

impl EventChannels for FrontPlatform {
    fn bind_unbound_port(&mut self, _domid: DomId, queue: usize) -> Result<EvtchnPort, SeamError> {
        let mut w = self.0.borrow_mut();
        let port = w.next_port;
        w.next_port.0 += 1;
        w.ports.insert(
            port,
            Port {
                queue,
                ..Default::default()
            },
        );
        Ok(port)
    }

    fn notify(&mut self, port: EvtchnPort) {
        let mut w = self.0.borrow_mut();
        let p = w.ports.get_mut(&port).expect("notify on unknown port");
        assert!(!p.closed, "notify on a closed port");
        p.to_back += 1;
    }

    fn unbind(&mut self, port: EvtchnPort) {
        let mut w = self.0.borrow_mut();
        let p = w.ports.get_mut(&port).expect("close of unknown port");
        assert!(!p.closed, "double close");
        p.closed = true;
    }
}

impl XenStore for FrontPlatform {
    fn read_opt(&mut self, path: &str) -> Result<Option<String>, SeamError> {
        Ok(self.0.borrow().xs.get(path).cloned())
    }

    fn write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), SeamError> {
        let mut w = self.0.borrow_mut();
        for (k, v) in writes {
            w.xs.insert((*k).into(), (*v).into());
        }
        Ok(())
    }
}
