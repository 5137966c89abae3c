//! The bus interface's provider side in xenbus: the bus state its children share
//! ([`Shared`]: the one grant table and the ports behind a spin lock, the xenstore
//! client and watches behind a passive mutex), the interrupt handler that routes
//! ports to the children's callbacks and wakes the xenstore work item that delivers
//! watch events ([`Handler`]), and each child's object ([`ChildBus`]) that
//! `IRP_MN_QUERY_INTERFACE` hands out. The logic is `sluice_xenbus_core::bus`'s.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{GrantInUse, SeamError};
use sluice_wdm::sync::{PassiveMutex, SpinLock};
use sluice_wdm::xen::{self, Event, GrantFrames, Hypercalls, IoMap, IrqHandler, WorkItem};
use sluice_xenbus_core::bus::{BusFast, BusHw, BusStore, ChildInfo};
use sluice_xenbus_core::grants::{GrantEntries, Owner};
use sluice_xenbus_core::iface::{BusInterface, EventCallback, WatchCallback};
use sluice_xenbus_core::watches::WatchId;
use sluice_xenbus_core::xenstore::XsTransport;

/// How long one xenstore wait may take, in milliseconds.
const XENSTORE_WAIT_MS: u32 = 5_000;
/// Grant references one child may hold (of 32 frames' 16376; of 4 frames' 2040 when
/// Xen allows no more, still at most half the table).
pub const GRANTS_PER_CHILD: usize = 4096;

/// What the bus' children share.
pub struct Shared {
    pub hypercalls: Hypercalls,
    pub grant_map: IoMap,
    pub fast: SpinLock<BusFast<EventCallback>>,
    pub store: PassiveMutex<BusStore<WatchCallback>>,
    pub xenstore: IoMap,
    pub xenstore_port: u32,
    /// Set by the DPC when the xenstore port fires.
    pub xs_event: Event,
    /// Cleared when the bus stops: children's calls fail from then on.
    pub alive: AtomicBool,
    /// Held by the work item while it delivers watch events.
    pub delivering: PassiveMutex<()>,
}

/// The hardware side of [`BusFast`].
pub struct Hw<'a> {
    shared: &'a Shared,
    frames: GrantFrames<'a>,
}

impl<'a> Hw<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        Hw {
            shared,
            frames: GrantFrames(&shared.grant_map),
        }
    }
}

impl BusHw for Hw<'_> {
    fn entries(&self) -> &dyn GrantEntries {
        &self.frames
    }
    fn alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError> {
        self.shared
            .hypercalls
            .evtchn_alloc_unbound(remote.0)
            .map(EvtchnPort)
            .map_err(|e| SeamError::Errno((-e).clamp(1, 0xffff) as i32))
    }
    fn send(&self, port: EvtchnPort) {
        self.shared.hypercalls.evtchn_send(port.0)
    }
    fn close(&self, port: EvtchnPort) {
        self.shared.hypercalls.evtchn_close(port.0)
    }
}

/// The xenstore ring and channel as the client reaches them.
pub struct Transport<'a> {
    pub page: &'a IoMap,
    pub hypercalls: &'a Hypercalls,
    pub port: u32,
    pub event: &'a Event,
}

impl XsTransport for Transport<'_> {
    fn ring(&self) -> SharedMem<'_> {
        self.page.mem()
    }
    fn notify(&mut self) {
        self.hypercalls.evtchn_send(self.port);
    }
    fn wait(&mut self) -> bool {
        self.event.wait(XENSTORE_WAIT_MS)
    }
}

impl Shared {
    /// The xenstore transport (with the store mutex held by the caller).
    pub fn transport(&self) -> Transport<'_> {
        Transport {
            page: &self.xenstore,
            hypercalls: &self.hypercalls,
            port: self.xenstore_port,
            event: &self.xs_event,
        }
    }
}

/// The DPC's view of the bus: ports to callbacks, xenstore to the work item.
pub struct Handler {
    pub shared: Arc<Shared>,
    /// Polls xenstore and calls the routed watch callbacks (PASSIVE_LEVEL).
    pub work: WorkItem,
}

impl Handler {
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        let s = shared.clone();
        Arc::new(Handler {
            shared,
            work: WorkItem::new(alloc::boxed::Box::new(move || deliver_watches(&s))),
        })
    }
}

impl IrqHandler for Handler {
    fn port(&self, port: u32) {
        // Copy the callback out, then call it with no lock held (it may grant or
        // notify, which take the same lock).
        let cb = self.shared.fast.lock().ports.route(EvtchnPort(port));
        if let Some(cb) = cb {
            (cb.func)(cb.ctx, port);
        }
    }
    fn xenstore(&self) {
        self.shared.xs_event.set();
        self.work.queue();
    }
}

/// The work item: read the ring for watch events (if no request is in flight: one that
/// is reads them itself and queues them), then call each routed callback after the
/// mutex is dropped.
fn deliver_watches(shared: &Shared) {
    if !shared.alive.load(Ordering::Acquire) {
        return;
    }
    let _delivering = shared.delivering.lock();
    let routed = {
        let mut st = shared.store.lock();
        match st.poll(&mut shared.transport()) {
            Ok(r) => r,
            Err(e) => {
                sluice_wdm::log!("xenbus: xenstore poll: {}", e);
                Vec::new()
            }
        }
    };
    for r in routed {
        (r.callback.func)(r.callback.ctx, r.id.0);
    }
}

/// One child's end of the bus interface.
pub struct ChildBus {
    pub handler: Arc<Handler>,
    pub owner: Owner,
    pub info: ChildInfo,
}

impl Drop for ChildBus {
    /// The last reference went (a child that left xenstore: its PDO deleted at its
    /// REMOVE and its driver's InterfaceDereference done; PASSIVE_LEVEL both): its
    /// watches removed, ports closed, unmapped grants ended. A stopped bus did that
    /// already (`alive` false).
    fn drop(&mut self) {
        let s = &self.handler.shared;
        if !s.alive.load(Ordering::Acquire) {
            return;
        }
        {
            let mut st = s.store.lock();
            let mut t = s.transport();
            st.release(&mut t, self.owner);
        }
        let hw = Hw::new(s);
        let (ports, kept) = s.fast.lock().release(&hw, self.owner);
        for p in ports {
            s.hypercalls.evtchn_close(p.0);
        }
        if kept > 0 {
            sluice_wdm::log!(
                "xenbus: {} grants of a removed child still mapped, kept",
                kept
            );
        }
    }
}

const ENODEV: i32 = 19;
/// `EWOULDBLOCK`: a PASSIVE-only call made above PASSIVE_LEVEL (blkfront-core writes
/// its state Closed when a hostile backend fails the device inside the event DPC:
/// that write is refused rather than waited for at DISPATCH_LEVEL).
const EWOULDBLOCK: i32 = 11;

impl ChildBus {
    fn shared(&self) -> Result<&Shared, SeamError> {
        let s = &self.handler.shared;
        if s.alive.load(Ordering::Acquire) {
            Ok(s)
        } else {
            Err(SeamError::Errno(ENODEV))
        }
    }

    /// Runs `f` on the store under its mutex, then has queued watch events delivered.
    fn store<R>(
        &self,
        f: impl FnOnce(&mut BusStore<WatchCallback>, &mut Transport<'_>) -> Result<R, SeamError>,
    ) -> Result<R, SeamError> {
        let s = self.shared()?;
        if !sluice_wdm::hw::at_passive() {
            return Err(SeamError::Errno(EWOULDBLOCK));
        }
        let (r, events) = {
            let mut st = s.store.lock();
            let r = f(&mut st, &mut s.transport());
            (r, st.xs.pending_events())
        };
        if events > 0 {
            self.handler.work.queue();
        }
        r
    }
}

impl BusInterface for ChildBus {
    fn grant_access(&self, domid: DomId, frame: u64, ro: bool) -> Result<GrantRef, SeamError> {
        let s = self.shared()?;
        let hw = Hw::new(s);
        s.fast.lock().grant(&hw, self.owner, domid, frame, ro)
    }
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantInUse> {
        let s = self.shared().map_err(|_| GrantInUse(gref))?;
        let hw = Hw::new(s);
        s.fast.lock().end(&hw, self.owner, gref)
    }
    fn evtchn_alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError> {
        let s = self.shared()?;
        let hw = Hw::new(s);
        s.fast.lock().ports.may_add(self.owner)?;
        let port = hw.alloc_unbound(remote)?;
        s.fast.lock().add_port(&hw, self.owner, port)?;
        Ok(port)
    }
    fn evtchn_bind(&self, port: EvtchnPort, cb: EventCallback) -> Result<(), SeamError> {
        self.shared()?.fast.lock().ports.bind(self.owner, port, cb)
    }
    fn evtchn_notify(&self, port: EvtchnPort) {
        if let Ok(s) = self.shared() {
            let hw = Hw::new(s);
            s.fast.lock().notify(&hw, self.owner, port);
        }
    }
    fn evtchn_close(&self, port: EvtchnPort) {
        if let Ok(s) = self.shared() {
            if s.fast.lock().forget_port(self.owner, port) {
                s.hypercalls.evtchn_close(port.0);
                // A DPC already past the routing may still be calling the callback:
                // wait it out, unless we are in it (a device failed from its own
                // event callback, at DISPATCH_LEVEL; the callback is ours then).
                if sluice_wdm::hw::at_passive() {
                    xen::flush_dpcs();
                }
            }
        }
    }
    fn xs_read(&self, tx: u32, path: &str) -> Result<Option<String>, SeamError> {
        self.store(|st, t| {
            if tx == 0 {
                st.xs.read(t, path)
            } else {
                st.xs.read_in(t, tx, path)
            }
        })
    }
    fn xs_write(&self, tx: u32, path: &str, value: &str) -> Result<(), SeamError> {
        self.store(|st, t| st.xs.write(t, tx, path, value.as_bytes()))
    }
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, SeamError> {
        self.store(|st, t| st.xs.directory(t, path))
    }
    fn xs_transaction_start(&self) -> Result<u32, SeamError> {
        self.store(|st, t| st.xs.transaction_start(t))
    }
    fn xs_transaction_end(&self, tx: u32, commit: bool) -> Result<(), SeamError> {
        self.store(|st, t| st.xs.transaction_end(t, tx, commit))
    }
    fn watch(&self, path: &str, cb: WatchCallback) -> Result<WatchId, SeamError> {
        self.store(|st, t| st.watch(t, self.owner, path, cb))
    }
    fn unwatch(&self, id: WatchId) {
        let _ = self.store(|st, t| {
            st.unwatch(t, self.owner, id);
            Ok(())
        });
        // Wait out a delivery already running (it may have routed this watch before
        // it was removed). A watch callback must not call unwatch (it holds this).
        if let Ok(s) = self.shared() {
            if sluice_wdm::hw::at_passive() {
                drop(s.delivering.lock());
            }
        }
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
