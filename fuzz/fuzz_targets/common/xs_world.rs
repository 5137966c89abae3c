//! The fake Xen world both `*_xenstore` targets drive a real backend in: dom0's fake
//! xenstore, an event-channel hub, a guest with 16 granted pages (the last read-only)
//! and 4 unbound ports, and fuzzed node values written as the guest would write them.

use arbitrary::Arbitrary;
use sluice_dom0::evtchn::{FakeEvtchn, FakeEvtchnHub};
use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
use sluice_dom0::xenstore::{FakeXenStore, FakeXsConn, XBT_NULL};
use sluice_dom0::{EventChannels, XenStore};
use std::sync::atomic::{AtomicBool, Ordering};

/// A node's fuzzed value.
#[derive(Arbitrary, Debug)]
pub enum Val {
    Absent,
    /// A number; for ring references and event channels small ones name a real grant
    /// or port of the guest.
    Num(u32),
    Big(u64),
    Text(String),
    Bytes(Vec<u8>),
}

/// How [`World::put`] reads a [`Val::Num`].
#[derive(Clone, Copy)]
pub enum Kind {
    Plain,
    GrantRef,
    Port,
}

pub struct World {
    pub store: FakeXenStore,
    pub hub: FakeEvtchnHub,
    pub grants: FakeGrants,
    /// The guest's end of the event channels.
    pub gev: FakeEvtchn,
    /// The guest's unbound ports (for dom0).
    pub ports: Vec<u32>,
    refs: Vec<u32>,
    /// A connection for writing nodes and reading the backend's.
    pub xs: FakeXsConn,
}

impl World {
    pub fn new(domid: u16) -> Self {
        let store = FakeXenStore::new();
        let hub = FakeEvtchnHub::new();
        let grants = FakeGrants::new();
        let guest = FakeGuestMemory::new(domid, 16);
        grants.add_guest(guest.clone());
        let refs = (0..16).map(|p| guest.grant(p, p == 15)).collect();
        let gev = hub.endpoint(domid);
        let ports = (0..4)
            .map(|_| {
                gev.bind_unbound_port(sluice_abi::types::DomId(0))
                    .unwrap()
                    .0
            })
            .collect();
        let xs = store.connect();
        World {
            store,
            hub,
            grants,
            gev,
            ports,
            refs,
            xs,
        }
    }

    /// Writes `v` at `path` (removes it for [`Val::Absent`]; values over 64 bytes are
    /// not written).
    pub fn put(&self, path: &str, v: &Val, kind: Kind) {
        let bytes = match v {
            Val::Absent => {
                let _ = self.xs.rm(XBT_NULL, path);
                return;
            }
            Val::Num(n) => match kind {
                Kind::GrantRef if *n < 32 => self.refs[*n as usize % self.refs.len()]
                    .to_string()
                    .into_bytes(),
                Kind::Port if *n < 32 => self.ports[*n as usize % self.ports.len()]
                    .to_string()
                    .into_bytes(),
                _ => n.to_string().into_bytes(),
            },
            Val::Big(n) => n.to_string().into_bytes(),
            Val::Text(s) => s.as_bytes().to_vec(),
            Val::Bytes(b) => b.clone(),
        };
        if bytes.len() <= 64 {
            let _ = self.xs.write(XBT_NULL, path, &bytes);
        }
    }

    /// The toolstack removes the device at `be`, then `reconcile` runs: every queue
    /// thread stops. A queue waits for its event channel (a short tick at most); a
    /// notification ends the wait at once, so the guest keeps notifying meanwhile.
    pub fn remove_device(&self, be: &str, reconcile: impl FnOnce()) {
        let done = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let notifier = sc.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    for &p in &self.ports {
                        let _ = self.gev.notify(sluice_abi::types::EvtchnPort(p));
                    }
                    std::thread::yield_now();
                }
            });
            let _ = self.xs.rm(XBT_NULL, be);
            reconcile();
            done.store(true, Ordering::Release);
            // Joined by hand: the scope's own wait ends when the closure has returned,
            // before the thread has run its thread-local destructors and exited, and
            // LeakSanitizer's check after the input then finds the thread's handle
            // and TLS destructor list unreachable (a false leak, seen in a long run).
            let _ = notifier.join();
        });
    }
}
