//! The console frontend: xenbus states as Linux's `hvc_xen` for `device/console/<n>`,
//! and the two byte rings of `struct xencons_interface`.

use crate::error::{ConsoleError, RingSide};
use alloc::format;
use alloc::string::String;
use sluice_abi::console::{RingIndices, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_front_seams::{Pages, Platform, SeamError};

const IN_OFFSET: usize = 0;
const OUT_OFFSET: usize = XENCONS_IN_SIZE;
const IN_CONS: usize = XENCONS_IN_SIZE + XENCONS_OUT_SIZE;
const IN_PROD: usize = IN_CONS + 4;
const OUT_CONS: usize = IN_CONS + 8;
const OUT_PROD: usize = IN_CONS + 12;

/// The frontend's own state plus "failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontState {
    /// Not started, or the backend closed and the ring is torn down (a backend that
    /// starts again gets a new ring).
    Closed,
    /// Ring published, state Initialised: bytes flow (the backend may not read yet).
    Initialised,
    /// The backend is Connected and so are we.
    Connected,
    /// Failed for good.
    Failed,
}

/// What a backend state change led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to do.
    Nothing,
    /// Both ends Connected.
    Connected,
    /// A new ring was published after the backend came back.
    Reopened,
    /// The backend closed: the ring is gone, the tty should hang up.
    Disconnected,
    /// The device failed ([`Frontend::failure`] says why).
    Failed,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes put into the output ring.
    pub bytes_out: u64,
    /// Bytes taken from the input ring.
    pub bytes_in: u64,
    /// Times a ring was published.
    pub connects: u64,
    /// Pages the backend still mapped at teardown: leaked, never reused.
    pub quarantined_pages: u64,
}

struct Ring<Pg> {
    pages: Pg,
    gref: GrantRef,
    port: EvtchnPort,
    /// Ours: written to the page, never read from it.
    out_prod: u32,
    /// Ours: written to the page, never read from it.
    in_cons: u32,
}

/// A Xen console frontend for one `device/console/<n>`, generic over the guest kernel.
///
/// The driver calls [`start`](Self::start) at probe, [`backend_changed`](Self::backend_changed)
/// on each backend state change, [`write`](Self::write) for output and
/// [`read`](Self::read) when the event channel fired, [`shutdown`](Self::shutdown) at remove.
pub struct Frontend<P: Platform> {
    nodename: String,
    backend_id: DomId,
    number: u32,
    state: FrontState,
    ring: Option<Ring<P::Pages>>,
    failure: Option<ConsoleError>,
    stats: Stats,
}

impl<P: Platform> Frontend<P> {
    /// A frontend for `nodename` (`device/console/<n>`, n >= 1) whose backend is in
    /// domain `backend_id`.
    pub fn new(nodename: &str, backend_id: DomId) -> Result<Self, ConsoleError> {
        let number = nodename
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n >= 1)
            .ok_or(ConsoleError::BadNodename)?;
        if !backend_id.is_ordinary() {
            return Err(ConsoleError::BadBackendId(backend_id.get()));
        }
        Ok(Frontend {
            nodename: nodename.into(),
            backend_id,
            number,
            state: FrontState::Closed,
            ring: None,
            failure: None,
            stats: Stats::default(),
        })
    }

    /// The console number (`<n>` of `device/console/<n>`).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Our state.
    pub fn state(&self) -> FrontState {
        self.state
    }

    /// Why the device failed, once it has.
    pub fn failure(&self) -> Option<&ConsoleError> {
        self.failure.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The event channel, while a ring is up.
    pub fn port(&self) -> Option<EvtchnPort> {
        self.ring.as_ref().map(|r| r.port)
    }

    /// The grant of the ring page, while a ring is up.
    pub fn ring_ref(&self) -> Option<GrantRef> {
        self.ring.as_ref().map(|r| r.gref)
    }

    /// Probe: sets up the ring and publishes it (`ring-ref`, `port`, state
    /// Initialised). A failure fails the device and is returned.
    pub fn start(&mut self, p: &mut P) -> Result<(), ConsoleError> {
        if self.state != FrontState::Closed {
            return Ok(());
        }
        self.publish(p).inspect_err(|e| self.fail(p, e.clone()))
    }

    fn publish(&mut self, p: &mut P) -> Result<(), ConsoleError> {
        let pages = p.alloc_pages(1)?;
        // On an error the pages are freed on drop: never granted.
        let gref = p.grant_access(self.backend_id, &pages, 0, false)?;
        let port = match p.bind_unbound_port(self.backend_id, 0) {
            Ok(port) => port,
            Err(e) => {
                self.ring = Some(Ring {
                    pages,
                    gref,
                    port: EvtchnPort(0),
                    out_prod: 0,
                    in_cons: 0,
                });
                self.release(p, false);
                return Err(e.into());
            }
        };
        self.ring = Some(Ring {
            pages,
            gref,
            port,
            out_prod: 0,
            in_cons: 0,
        });
        let (rr, pp) = (
            format!("{}/ring-ref", self.nodename),
            format!("{}/port", self.nodename),
        );
        let (gv, pv) = (format!("{gref}"), format!("{port}"));
        p.write_all(&[(&rr, &gv), (&pp, &pv)])?;
        p.switch_state(&self.nodename, XenbusState::Initialised)?;
        self.state = FrontState::Initialised;
        self.stats.connects += 1;
        Ok(())
    }

    /// Reacts to the backend's new `state` (xenbus `otherend_changed`).
    pub fn backend_changed(
        &mut self,
        p: &mut P,
        state: XenbusState,
    ) -> Result<Event, ConsoleError> {
        if self.state == FrontState::Failed {
            return Ok(Event::Nothing);
        }
        match state {
            XenbusState::Connected if self.state == FrontState::Initialised => {
                if let Err(e) = p.switch_state(&self.nodename, XenbusState::Connected) {
                    let e = ConsoleError::from(e);
                    self.fail(p, e.clone());
                    return Err(e);
                }
                self.state = FrontState::Connected;
                Ok(Event::Connected)
            }
            XenbusState::Initialising | XenbusState::InitWait
                if self.state == FrontState::Closed =>
            {
                self.start(p).map(|()| Event::Reopened)
            }
            XenbusState::Closing | XenbusState::Closed
                if matches!(self.state, FrontState::Initialised | FrontState::Connected) =>
            {
                self.release(p, true);
                self.state = FrontState::Closed;
                let _ = p.switch_state(&self.nodename, XenbusState::Closed);
                Ok(Event::Disconnected)
            }
            XenbusState::Unknown => {
                self.fail(p, ConsoleError::BackendVanished);
                Err(ConsoleError::BackendVanished)
            }
            _ => Ok(Event::Nothing),
        }
    }

    fn live(&mut self) -> Result<&mut Ring<P::Pages>, ConsoleError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        self.ring.as_mut().ok_or(ConsoleError::NotConnected)
    }

    /// Checked output indices: the backend's `out_cons` read once against our `out_prod`.
    fn out_indices(mem: SharedMem<'_>, out_prod: u32) -> Result<RingIndices, ConsoleError> {
        let cons = mem.load_u32_acquire(OUT_CONS).map_err(bounds)?;
        RingIndices::check(cons, out_prod, XENCONS_OUT_SIZE).map_err(|_| {
            ConsoleError::RunawayIndex {
                ring: RingSide::Output,
                cons,
                prod: out_prod,
            }
        })
    }

    /// Bytes [`write`](Self::write) would take now (the tty's `write_room`).
    pub fn write_room(&mut self, p: &mut P) -> Result<usize, ConsoleError> {
        let r = {
            let ring = self.live()?;
            Self::out_indices(ring.pages.mem(), ring.out_prod).map(|i| i.free())
        };
        self.check(p, r)
    }

    /// Puts as much of `data` as fits into the output ring and notifies the backend;
    /// returns how many bytes it took (0: full, wait for an event).
    pub fn write(&mut self, p: &mut P, data: &[u8]) -> Result<usize, ConsoleError> {
        let r = (|| {
            let Ring {
                pages,
                out_prod,
                port,
                ..
            } = self.live()?;
            let mem = pages.mem();
            let idx = Self::out_indices(mem, *out_prod)?;
            let n = data.len().min(idx.free());
            let mut done = 0;
            for r in idx.writable() {
                let take = r.len().min(n - done);
                mem.write_bytes(OUT_OFFSET + r.start, &data[done..done + take])
                    .map_err(bounds)?;
                done += take;
            }
            // The bytes are in place before the backend may read them (Release).
            *out_prod = idx.produced(n);
            mem.store_u32_release(OUT_PROD, *out_prod).map_err(bounds)?;
            Ok((n, *port))
        })();
        let (n, port) = self.check(p, r)?;
        if n > 0 {
            p.notify(port);
            self.stats.bytes_out += n as u64;
        }
        Ok(n)
    }

    /// Takes up to `buf.len()` bytes of input (the backend's `in_prod` read once and
    /// checked first) and notifies the backend that there is room; returns the count.
    pub fn read(&mut self, p: &mut P, buf: &mut [u8]) -> Result<usize, ConsoleError> {
        let r = (|| {
            let Ring {
                pages,
                in_cons,
                port,
                ..
            } = self.live()?;
            let mem = pages.mem();
            let prod = mem.load_u32_acquire(IN_PROD).map_err(bounds)?;
            let idx = RingIndices::check(*in_cons, prod, XENCONS_IN_SIZE).map_err(|_| {
                ConsoleError::RunawayIndex {
                    ring: RingSide::Input,
                    cons: *in_cons,
                    prod,
                }
            })?;
            let n = buf.len().min(idx.used());
            let mut done = 0;
            for r in idx.readable() {
                let take = r.len().min(n - done);
                mem.read_bytes(IN_OFFSET + r.start, &mut buf[done..done + take])
                    .map_err(bounds)?;
                done += take;
            }
            // The bytes are copied out before the backend may reuse them (Release).
            *in_cons = idx.consumed(n);
            mem.store_u32_release(IN_CONS, *in_cons).map_err(bounds)?;
            Ok((n, *port))
        })();
        let (n, port) = self.check(p, r)?;
        if n > 0 {
            p.notify(port);
            self.stats.bytes_in += n as u64;
        }
        Ok(n)
    }

    /// Fails the device on a protocol error (not on `NotConnected`).
    fn check<T>(&mut self, p: &mut P, r: Result<T, ConsoleError>) -> Result<T, ConsoleError> {
        if let Err(e) = &r {
            if !matches!(e, ConsoleError::NotConnected) && self.failure.is_none() {
                self.fail(p, e.clone());
            }
        }
        r
    }

    /// Unbinds the channel and ends the grant; a page the backend still maps is leaked.
    fn release(&mut self, p: &mut P, bound: bool) {
        if let Some(ring) = self.ring.take() {
            if bound {
                p.unbind(ring.port);
            }
            match p.end_access(ring.gref) {
                Ok(()) => drop(ring.pages),
                Err(_) => {
                    self.stats.quarantined_pages += 1;
                    p.leak(ring.pages);
                }
            }
        }
    }

    fn fail(&mut self, p: &mut P, why: ConsoleError) {
        if self.state == FrontState::Failed {
            return;
        }
        let bound = self.ring.as_ref().is_some_and(|r| r.port != EvtchnPort(0));
        self.release(p, bound);
        self.state = FrontState::Failed;
        self.failure = Some(why);
        let _ = p.switch_state(&self.nodename, XenbusState::Closing);
        let _ = p.switch_state(&self.nodename, XenbusState::Closed);
    }

    /// The driver is removing the device (unbind, `rmmod`): the ring is released and
    /// state Closed published; later calls fail with [`ConsoleError::NotConnected`].
    pub fn shutdown(&mut self, p: &mut P) {
        if self.state == FrontState::Failed {
            return;
        }
        let bound = self.ring.is_some();
        self.release(p, bound);
        self.state = FrontState::Closed;
        let _ = p.switch_state(&self.nodename, XenbusState::Closing);
        let _ = p.switch_state(&self.nodename, XenbusState::Closed);
    }
}

fn bounds(_: sluice_abi::shared::SharedMemError) -> ConsoleError {
    ConsoleError::Platform(SeamError::OutOfBounds {
        offset: IN_CONS,
        len: 16,
        size: sluice_abi::shared::XEN_PAGE_SIZE,
    })
}
