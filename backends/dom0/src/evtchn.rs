//! Event channels: the [`EventChannels`] seam, the device, and a fake hub.

use sluice_abi::types::{DomId, EvtchnPort};
#[cfg(any(test, feature = "fake"))]
use std::collections::{HashMap, VecDeque};
#[cfg(any(test, feature = "fake"))]
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
#[cfg(any(test, feature = "fake"))]
use std::time::Instant;

/// Failures of event-channel operations.
#[derive(Debug, thiserror::Error)]
pub enum EvtchnError {
    /// The device refused.
    #[error(transparent)]
    Device(#[from] sluice_xen_sys::EvtchnError),
    /// A fake port that does not exist or is not bound.
    #[error("event channel: no such port {0}")]
    NoSuchPort(EvtchnPort),
}

/// One set of event-channel bindings (one open of `/dev/xen/evtchn`). The frontend
/// half of this seam is `sluice_front_seams::EventChannels`.
pub trait EventChannels: Send {
    /// Binds to `remote_port` of `domid`; returns the local port.
    fn bind_interdomain(
        &self,
        domid: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError>;
    /// Allocates a port `domid` may bind to.
    fn bind_unbound_port(&self, domid: DomId) -> Result<EvtchnPort, EvtchnError>;
    /// Unbinds a local port.
    fn unbind(&self, port: EvtchnPort) -> Result<(), EvtchnError>;
    /// Signals the peer of a local port.
    fn notify(&self, port: EvtchnPort) -> Result<(), EvtchnError>;
    /// Lets a port fire again after it was read as pending.
    fn unmask(&self, port: EvtchnPort) -> Result<(), EvtchnError>;
    /// Waits for a pending port or the timeout; true if one is pending.
    fn wait(&self, timeout: Option<Duration>) -> Result<bool, EvtchnError>;
    /// Appends the ports that fired (each is masked until unmasked).
    fn read_pending(&self, out: &mut Vec<EvtchnPort>) -> Result<(), EvtchnError>;
    /// Unbinds everything.
    fn reset(&self) -> Result<(), EvtchnError>;
    /// A descriptor that polls readable while a port is pending, so that a loop can
    /// wait on it together with other descriptors (`None`: only [`Self::wait`] works,
    /// as for the fakes).
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

impl EventChannels for sluice_xen_sys::EvtchnDevice {
    fn bind_interdomain(
        &self,
        domid: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError> {
        Ok(EvtchnPort(sluice_xen_sys::EvtchnDevice::bind_interdomain(
            self,
            domid.0,
            remote_port.0,
        )?))
    }
    fn bind_unbound_port(&self, domid: DomId) -> Result<EvtchnPort, EvtchnError> {
        Ok(EvtchnPort(sluice_xen_sys::EvtchnDevice::bind_unbound_port(
            self, domid.0,
        )?))
    }
    fn unbind(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        Ok(sluice_xen_sys::EvtchnDevice::unbind(self, port.0)?)
    }
    fn notify(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        Ok(sluice_xen_sys::EvtchnDevice::notify(self, port.0)?)
    }
    fn unmask(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        Ok(sluice_xen_sys::EvtchnDevice::unmask(self, port.0)?)
    }
    fn wait(&self, timeout: Option<Duration>) -> Result<bool, EvtchnError> {
        Ok(sluice_xen_sys::EvtchnDevice::wait(self, timeout)?)
    }
    fn read_pending(&self, out: &mut Vec<EvtchnPort>) -> Result<(), EvtchnError> {
        let mut raw = Vec::new();
        sluice_xen_sys::EvtchnDevice::read_pending(self, &mut raw)?;
        out.extend(raw.into_iter().map(EvtchnPort));
        Ok(())
    }
    fn reset(&self) -> Result<(), EvtchnError> {
        Ok(sluice_xen_sys::EvtchnDevice::reset(self)?)
    }
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

#[cfg(any(test, feature = "fake"))]
#[derive(Debug)]
struct FakePort {
    endpoint: u64,
    /// The (domain, port) this one is connected to.
    peer: Option<(u16, u32)>,
    /// Domain allowed to bind to it while unbound.
    allowed: Option<u16>,
    masked: bool,
    pending: bool,
}

#[cfg(any(test, feature = "fake"))]
#[derive(Debug, Default)]
struct HubState {
    next_endpoint: u64,
    next_port: HashMap<u16, u32>,
    ports: HashMap<(u16, u32), FakePort>,
    queues: HashMap<u64, VecDeque<u32>>,
    notifications: u64,
}

#[cfg(any(test, feature = "fake"))]
/// In-process event channels between fake domains. Cloning shares the hub.
#[derive(Debug, Clone, Default)]
pub struct FakeEvtchnHub {
    inner: Arc<(Mutex<HubState>, Condvar)>,
}

#[cfg(any(test, feature = "fake"))]
impl FakeEvtchnHub {
    /// A new hub with no ports.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new set of bindings acting for domain `domid`.
    pub fn endpoint(&self, domid: u16) -> FakeEvtchn {
        let mut s = self.state();
        s.next_endpoint += 1;
        let id = s.next_endpoint;
        s.queues.insert(id, VecDeque::new());
        FakeEvtchn {
            hub: self.clone(),
            domid,
            id,
        }
    }

    /// Notifications sent through the hub so far.
    pub fn notifications(&self) -> u64 {
        self.state().notifications
    }
}

#[cfg(any(test, feature = "fake"))]
/// One fake open of the event-channel device, for domain `domid`.
#[derive(Debug)]
pub struct FakeEvtchn {
    hub: FakeEvtchnHub,
    domid: u16,
    id: u64,
}

#[cfg(any(test, feature = "fake"))]
impl FakeEvtchn {
    fn alloc(&self, s: &mut HubState) -> u32 {
        let p = s.next_port.entry(self.domid).or_insert(1);
        let port = *p;
        *p += 1;
        port
    }

    fn owned<'a>(&self, s: &'a mut HubState, port: u32) -> Result<&'a mut FakePort, EvtchnError> {
        match s.ports.get_mut(&(self.domid, port)) {
            Some(p) if p.endpoint == self.id => Ok(p),
            _ => Err(EvtchnError::NoSuchPort(EvtchnPort(port))),
        }
    }
}

#[cfg(any(test, feature = "fake"))]
impl EventChannels for FakeEvtchn {
    fn bind_interdomain(
        &self,
        domid: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError> {
        self.raw_bind_interdomain(domid.0, remote_port.0)
            .map(EvtchnPort)
    }
    fn bind_unbound_port(&self, domid: DomId) -> Result<EvtchnPort, EvtchnError> {
        self.raw_bind_unbound_port(domid.0).map(EvtchnPort)
    }
    fn unbind(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        self.raw_unbind(port.0)
    }
    fn notify(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        self.raw_notify(port.0)
    }
    fn unmask(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        self.raw_unmask(port.0)
    }
    fn wait(&self, timeout: Option<Duration>) -> Result<bool, EvtchnError> {
        self.raw_wait(timeout)
    }
    fn read_pending(&self, out: &mut Vec<EvtchnPort>) -> Result<(), EvtchnError> {
        let mut s = self.hub.state();
        if let Some(q) = s.queues.get_mut(&self.id) {
            out.extend(q.drain(..).map(EvtchnPort));
        }
        Ok(())
    }
    fn reset(&self) -> Result<(), EvtchnError> {
        self.raw_reset()
    }
}

#[cfg(any(test, feature = "fake"))]
impl FakeEvtchn {
    fn raw_bind_interdomain(&self, domid: u16, remote_port: u32) -> Result<u32, EvtchnError> {
        let mut s = self.hub.state();
        match s.ports.get(&(domid, remote_port)) {
            Some(r) if r.peer.is_none() && r.allowed == Some(self.domid) => {}
            _ => return Err(EvtchnError::NoSuchPort(EvtchnPort(remote_port))),
        }
        let port = self.alloc(&mut s);
        s.ports.insert(
            (self.domid, port),
            FakePort {
                endpoint: self.id,
                peer: Some((domid, remote_port)),
                allowed: None,
                masked: false,
                pending: false,
            },
        );
        if let Some(r) = s.ports.get_mut(&(domid, remote_port)) {
            r.peer = Some((self.domid, port));
        }
        Ok(port)
    }

    fn raw_bind_unbound_port(&self, domid: u16) -> Result<u32, EvtchnError> {
        let mut s = self.hub.state();
        let port = self.alloc(&mut s);
        s.ports.insert(
            (self.domid, port),
            FakePort {
                endpoint: self.id,
                peer: None,
                allowed: Some(domid),
                masked: false,
                pending: false,
            },
        );
        Ok(port)
    }

    fn raw_unbind(&self, port: u32) -> Result<(), EvtchnError> {
        let mut s = self.hub.state();
        let peer = self.owned(&mut s, port)?.peer;
        s.ports.remove(&(self.domid, port));
        if let Some(p) = peer.and_then(|p| s.ports.get_mut(&p)) {
            p.peer = None;
        }
        Ok(())
    }

    fn raw_notify(&self, port: u32) -> Result<(), EvtchnError> {
        let mut s = self.hub.state();
        let Some(peer) = self.owned(&mut s, port)?.peer else {
            return Ok(()); // like Xen: an unconnected port drops the event
        };
        s.notifications += 1;
        let Some(p) = s.ports.get_mut(&peer) else {
            return Ok(());
        };
        if p.pending && p.masked {
            return Ok(());
        }
        p.pending = true;
        if !p.masked {
            p.masked = true;
            let ep = p.endpoint;
            s.queues.entry(ep).or_default().push_back(peer.1);
            self.hub.inner.1.notify_all();
        }
        Ok(())
    }

    fn raw_unmask(&self, port: u32) -> Result<(), EvtchnError> {
        let mut s = self.hub.state();
        let p = self.owned(&mut s, port)?;
        p.masked = false;
        p.pending = false;
        Ok(())
    }

    fn raw_wait(&self, timeout: Option<Duration>) -> Result<bool, EvtchnError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.hub.state();
        loop {
            if s.queues.get(&self.id).is_some_and(|q| !q.is_empty()) {
                return Ok(true);
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(w) if !w.is_zero() => w,
                    _ => return Ok(false),
                },
                None => Duration::from_secs(3600),
            };
            s = self
                .hub
                .inner
                .1
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn raw_reset(&self) -> Result<(), EvtchnError> {
        let mut s = self.hub.state();
        let mine: Vec<u32> = s
            .ports
            .iter()
            .filter(|(_, p)| p.endpoint == self.id)
            .map(|(k, _)| k.1)
            .collect();
        drop(s);
        for port in mine {
            self.raw_unbind(port)?;
        }
        s = self.hub.state();
        if let Some(q) = s.queues.get_mut(&self.id) {
            q.clear();
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "fake"))]
impl Drop for FakeEvtchn {
    fn drop(&mut self) {
        let _ = self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interdomain_notify_mask_unmask() {
        let hub = FakeEvtchnHub::new();
        let front = hub.endpoint(5);
        let back = hub.endpoint(0);
        let fport = front.bind_unbound_port(DomId(0)).unwrap();
        assert!(back
            .bind_interdomain(DomId(5), EvtchnPort(fport.0 + 7))
            .is_err());
        let bport = back.bind_interdomain(DomId(5), fport).unwrap();
        assert!(!back.wait(Some(Duration::from_millis(1))).unwrap());
        front.notify(fport).unwrap();
        front.notify(fport).unwrap(); // coalesced while masked
        assert!(back.wait(Some(Duration::from_millis(1))).unwrap());
        let mut v = vec![];
        back.read_pending(&mut v).unwrap();
        assert_eq!(v, vec![bport]);
        v.clear();
        front.notify(fport).unwrap();
        back.read_pending(&mut v).unwrap();
        assert!(v.is_empty(), "masked until unmask");
        back.unmask(bport).unwrap();
        front.notify(fport).unwrap();
        back.read_pending(&mut v).unwrap();
        assert_eq!(v, vec![bport]);
        back.notify(bport).unwrap();
        v.clear();
        front.read_pending(&mut v).unwrap();
        assert_eq!(v, vec![fport]);
        assert!(front.unmask(EvtchnPort(bport.0 + 100)).is_err());
    }
}
