//! The provider side of the bus interface ([`crate::iface`]): what xenbus does for a
//! child's call, as the driver locks it. [`BusFast`] (grants and event-channel ports)
//! is taken at `DISPATCH_LEVEL` under a spin lock; [`BusStore`] (xenstore client and
//! watches) at `PASSIVE_LEVEL` under a mutex. Every operation names the calling
//! child's [`Owner`]; the hardware comes in through [`BusHw`] and [`XsTransport`].

use crate::children::Child;
use crate::grants::{GrantEntries, GrantTable, Owner};
use crate::ports::PortTable;
use crate::watches::{Routed, WatchId, Watches};
use crate::xenstore::{XsClient, XsTransport};
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{GrantInUse, SeamError};

/// What the bus calls in the kernel layer for a child.
pub trait BusHw {
    /// The grant entries in the BAR.
    fn entries(&self) -> &dyn GrantEntries;
    /// `EVTCHNOP_alloc_unbound` for `remote`.
    fn alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError>;
    /// `EVTCHNOP_send`.
    fn send(&self, port: EvtchnPort);
    /// `EVTCHNOP_close`.
    fn close(&self, port: EvtchnPort);
}

/// Grants and ports (the spin-locked half).
pub struct BusFast<E> {
    /// The one grant table.
    pub grants: GrantTable,
    /// The children's ports.
    pub ports: PortTable<E>,
}

impl<E: Clone> BusFast<E> {
    /// Over a table of `entries` grant entries, `quota` per child.
    pub fn new(entries: u32, quota: usize) -> Self {
        BusFast {
            grants: GrantTable::with_quota(entries, quota),
            ports: PortTable::default(),
        }
    }

    /// `owner` grants `domid` access to `frame`.
    pub fn grant(
        &mut self,
        hw: &dyn BusHw,
        owner: Owner,
        domid: DomId,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        self.grants
            .grant(hw.entries(), owner, domid, frame, readonly)
    }

    /// `owner` ends its grant.
    pub fn end(&mut self, hw: &dyn BusHw, owner: Owner, r: GrantRef) -> Result<(), GrantInUse> {
        self.grants.end(hw.entries(), owner, r)
    }

    /// Sends on `port` if it is `owner`'s; `false` (nothing sent) otherwise.
    pub fn notify(&self, hw: &dyn BusHw, owner: Owner, port: EvtchnPort) -> bool {
        let ok = self.ports.owns(owner, port);
        if ok {
            hw.send(port);
        }
        ok
    }

    /// Records `port`, just allocated for `owner` (after [`PortTable::may_add`] said
    /// yes outside the lock); over quota it is closed and refused; one already
    /// recorded (Xen never gives an open port twice) is refused and left open: it is
    /// its owner's.
    pub fn add_port(
        &mut self,
        hw: &dyn BusHw,
        owner: Owner,
        port: EvtchnPort,
    ) -> Result<(), SeamError> {
        let r = self.ports.add(owner, port);
        if r == Err(SeamError::NoResources) {
            hw.close(port);
        }
        r
    }

    /// Forgets `owner`'s port; the caller closes it (outside the lock) if `true`.
    pub fn forget_port(&mut self, owner: Owner, port: EvtchnPort) -> bool {
        self.ports.remove(owner, port)
    }

    /// A child is gone: its ports (for the caller to close) and how many grants its
    /// backend still maps (kept for good).
    pub fn release(&mut self, hw: &dyn BusHw, owner: Owner) -> (Vec<EvtchnPort>, usize) {
        let ports = self.ports.remove_owner(owner);
        (ports, self.grants.release_owner(hw.entries(), owner))
    }
}

/// Xenstore and watches (the passive half).
pub struct BusStore<W> {
    /// The client.
    pub xs: XsClient,
    /// The children's watches.
    pub watches: Watches<W>,
}

impl<W> Default for BusStore<W> {
    fn default() -> Self {
        BusStore {
            xs: XsClient::new(),
            watches: Watches::default(),
        }
    }
}

impl<W: Clone> BusStore<W> {
    /// Registers and sends `owner`'s watch.
    pub fn watch(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        owner: Owner,
        path: &str,
        cb: W,
    ) -> Result<WatchId, SeamError> {
        let id = self.watches.register(owner, path, cb)?;
        if let Err(e) = self.xs.watch(t, path, id.token().as_bytes()) {
            self.watches.unregister(owner, id);
            return Err(e);
        }
        Ok(id)
    }

    /// Removes `owner`'s watch (another's is left alone); `XS_UNWATCH` is best effort
    /// (an event that still comes has no route and is dropped).
    pub fn unwatch(&mut self, t: &mut (impl XsTransport + ?Sized), owner: Owner, id: WatchId) {
        if let Some((path, token)) = self.watches.unregister(owner, id) {
            let _ = self.xs.unwatch(t, &path, token.as_bytes());
        }
    }

    /// Removes every watch of a child that is gone.
    pub fn release(&mut self, t: &mut (impl XsTransport + ?Sized), owner: Owner) {
        for (path, token) in self.watches.remove_owner(owner) {
            let _ = self.xs.unwatch(t, &path, token.as_bytes());
        }
    }

    /// Reads the ring and returns the events to deliver (the caller calls them after
    /// dropping its lock); events for no live watch are dropped.
    pub fn poll(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
    ) -> Result<Vec<Routed<W>>, SeamError> {
        self.xs.poll(t)?;
        Ok(self.routed())
    }

    /// The queued events (read while serving requests), routed.
    pub fn routed(&mut self) -> Vec<Routed<W>> {
        let mut out = Vec::new();
        while let Some(ev) = self.xs.take_event() {
            out.extend(self.watches.route(&ev));
        }
        out
    }
}

/// Domain ids a backend can have (`DOMID_FIRST_RESERVED` = 0x7ff0).
const DOMID_FIRST_RESERVED: u32 = 0x7ff0;

/// A child's place in xenstore, as the bus tells it through the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// `device/<kind>/<id>`.
    pub frontend: String,
    /// `<frontend>/backend`: absolute, checked.
    pub backend: String,
    /// `<frontend>/backend-id`.
    pub domid: DomId,
}

/// Reads and checks a child's backend path and domain: the toolstack wrote them, so
/// a missing, relative, overlong or non-numeric value is refused (`EINVAL`) and the
/// child is not reported.
pub fn child_info(
    xs: &mut XsClient,
    t: &mut (impl XsTransport + ?Sized),
    child: &Child,
) -> Result<ChildInfo, SeamError> {
    let frontend = child.nodename();
    let bad = SeamError::Xenstore(22);
    let backend = xs
        .read(t, &alloc::format!("{frontend}/backend"))?
        .ok_or(bad)?;
    if !backend.starts_with('/')
        || backend.len() > sluice_abi::xs_wire::XENSTORE_ABS_PATH_MAX
        || backend.contains('\0')
    {
        return Err(bad);
    }
    let id = xs
        .read(t, &alloc::format!("{frontend}/backend-id"))?
        .ok_or(bad)?;
    let domid = crate::children::parse_id(&id)
        .filter(|&d| d < DOMID_FIRST_RESERVED)
        .ok_or(bad)?;
    Ok(ChildInfo {
        frontend,
        backend,
        domid: DomId(domid as u16),
    })
}
