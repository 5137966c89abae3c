//! Test fakes shared by the crate's host tests: grant entries in plain memory, and
//! the bus (its grant table, ports, xenstore and watches over a fake xenstored) with
//! children calling it through [`BusInterface`].

use crate::bus::{BusFast, BusHw, BusStore, ChildInfo};
use crate::grants::{GrantEntries, Owner};
use crate::iface::{BusInterface, EventCallback, WatchCallback};
use crate::watches::WatchId;
use crate::xenstore_tests::{FakeXs, Mode};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{GrantInUse, SeamError};

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

/// The bus side as the driver composes it (grants and ports, xenstore and watches),
/// over fake hardware: what a child's calls reach.
pub(crate) struct World {
    pub(crate) hw: Hw,
    pub(crate) xs: FakeXs,
    pub(crate) fast: BusFast<EventCallback>,
    pub(crate) store: BusStore<WatchCallback>,
}

/// The hypercalls and grant frames.
pub(crate) struct Hw {
    pub(crate) entries: Entries,
    pub(crate) next_port: Cell<u32>,
    pub(crate) sent: RefCell<Vec<u32>>,
    pub(crate) closed: RefCell<Vec<u32>>,
}

impl BusHw for Hw {
    fn entries(&self) -> &dyn GrantEntries {
        &self.entries
    }
    fn alloc_unbound(&self, _remote: DomId) -> Result<EvtchnPort, SeamError> {
        self.next_port.set(self.next_port.get() + 1);
        Ok(EvtchnPort(self.next_port.get()))
    }
    fn send(&self, port: EvtchnPort) {
        self.sent.borrow_mut().push(port.0);
    }
    fn close(&self, port: EvtchnPort) {
        self.closed.borrow_mut().push(port.0);
    }
}

impl World {
    pub(crate) fn new(entries: usize, quota: usize) -> Rc<RefCell<World>> {
        Rc::new(RefCell::new(World {
            hw: Hw {
                entries: Entries::new(entries),
                next_port: Cell::new(10),
                sent: RefCell::new(Vec::new()),
                closed: RefCell::new(Vec::new()),
            },
            xs: FakeXs::new(Mode::Good),
            fast: BusFast::new(entries as u32, quota),
            store: BusStore::default(),
        }))
    }

    /// The bus DPC: routes `port`'s event to its callback.
    pub(crate) fn fire_port(&self, port: u32) -> bool {
        match self.fast.ports.route(EvtchnPort(port)) {
            Some(cb) => {
                (cb.func)(cb.ctx, port);
                true
            }
            None => false,
        }
    }

    /// The bus' xenstore work item: poll, then call the routed watch callbacks.
    pub(crate) fn run_watches(world: &RefCell<World>) -> usize {
        let routed = {
            let w = &mut *world.borrow_mut();
            w.store.poll(&mut w.xs).unwrap()
        };
        for r in &routed {
            (r.callback.func)(r.callback.ctx, r.id.0);
        }
        routed.len()
    }
}

/// A child's handle on the bus: what the FFI table gives it, in Rust.
pub(crate) struct FakeChild {
    pub(crate) world: Rc<RefCell<World>>,
    pub(crate) owner: Owner,
    pub(crate) info: ChildInfo,
}

impl BusInterface for FakeChild {
    fn grant_access(&self, domid: DomId, frame: u64, ro: bool) -> Result<GrantRef, SeamError> {
        let w = &mut *self.world.borrow_mut();
        w.fast.grant(&w.hw, self.owner, domid, frame, ro)
    }
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantInUse> {
        let w = &mut *self.world.borrow_mut();
        w.fast.end(&w.hw, self.owner, gref)
    }
    fn evtchn_alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError> {
        self.world.borrow().fast.ports.may_add(self.owner)?;
        let port = self.world.borrow().hw.alloc_unbound(remote)?;
        let w = &mut *self.world.borrow_mut();
        w.fast.add_port(&w.hw, self.owner, port).map(|()| port)
    }
    fn evtchn_bind(&self, port: EvtchnPort, cb: EventCallback) -> Result<(), SeamError> {
        self.world
            .borrow_mut()
            .fast
            .ports
            .bind(self.owner, port, cb)
    }
    fn evtchn_notify(&self, port: EvtchnPort) {
        let w = self.world.borrow();
        w.fast.notify(&w.hw, self.owner, port);
    }
    fn evtchn_close(&self, port: EvtchnPort) {
        let mine = self.world.borrow_mut().fast.forget_port(self.owner, port);
        if mine {
            self.world.borrow().hw.close(port);
        }
    }
    fn xs_read(&self, tx: u32, path: &str) -> Result<Option<String>, SeamError> {
        assert_eq!(tx, 0);
        let w = &mut *self.world.borrow_mut();
        w.store.xs.read(&mut w.xs, path)
    }
    fn xs_write(&self, tx: u32, path: &str, value: &str) -> Result<(), SeamError> {
        let w = &mut *self.world.borrow_mut();
        w.store.xs.write(&mut w.xs, tx, path, value.as_bytes())
    }
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, SeamError> {
        let w = &mut *self.world.borrow_mut();
        w.store.xs.directory(&mut w.xs, path)
    }
    fn xs_transaction_start(&self) -> Result<u32, SeamError> {
        let w = &mut *self.world.borrow_mut();
        w.store.xs.transaction_start(&mut w.xs)
    }
    fn xs_transaction_end(&self, tx: u32, commit: bool) -> Result<(), SeamError> {
        let w = &mut *self.world.borrow_mut();
        w.store.xs.transaction_end(&mut w.xs, tx, commit)
    }
    fn watch(&self, path: &str, cb: WatchCallback) -> Result<WatchId, SeamError> {
        let w = &mut *self.world.borrow_mut();
        w.store.watch(&mut w.xs, self.owner, path, cb)
    }
    fn unwatch(&self, id: WatchId) {
        let w = &mut *self.world.borrow_mut();
        w.store.unwatch(&mut w.xs, self.owner, id)
    }
    fn frontend_path(&self) -> &str {
        &self.info.frontend
    }
    fn backend_path(&self) -> &str {
        &self.info.backend
    }
    fn backend_domid(&self) -> DomId {
        self.info.domid
    }
}
