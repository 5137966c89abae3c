//! Connection lifecycle: the xenbus state machine (`talk_to_blkback`, connect,
//! disconnect), ring setup and teardown, and failing the device (protocol error,
//! timeout, shutdown).

use super::{Event, FrontState, Frontend, Queue, QueueOf, Timeout};
use crate::error::{IoError, NegotiationError};
use crate::features::{DiskInfo, RingLimits, MAX_RING_PAGE_ORDER};
use crate::platform::{Pages, Platform};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::blkif::{keys, protocols, BlkifFrontRing};
use sluice_abi::types::GrantRef;
use sluice_abi::xenbus::XenbusState;

impl<P: Platform, T> Frontend<P, T> {
    /// Publishes our state Initialising (after probe).
    pub fn start(&mut self, p: &mut P) -> Result<(), NegotiationError> {
        self.write_state(p, XenbusState::Initialising)
            .map_err(NegotiationError::Platform)
    }

    /// Reacts to the backend's new `state` (xenbus `otherend_changed`). A state the
    /// backend cannot be in from ours is ignored, as in Linux.
    pub fn backend_changed(
        &mut self,
        p: &mut P,
        state: XenbusState,
        mut done: impl FnMut(T, Result<(), IoError>),
    ) -> Result<Event, NegotiationError> {
        if self.state == FrontState::Failed {
            return Ok(Event::Nothing);
        }
        match state {
            XenbusState::InitWait => {
                if !matches!(
                    self.state,
                    FrontState::Initialising | FrontState::Disconnected
                ) {
                    return Ok(Event::Nothing);
                }
                match self.setup_rings(p) {
                    Ok(ev) => Ok(ev),
                    Err(e) => {
                        self.fail(p, &mut done);
                        Err(e)
                    }
                }
            }
            XenbusState::Connected => match self.state {
                FrontState::Initialised => match self.connect(p, &mut done) {
                    Ok(ev) => Ok(ev),
                    Err(e) => {
                        self.fail(p, &mut done);
                        Err(e)
                    }
                },
                FrontState::Connected => {
                    let sectors = crate::features::read_u64(p, &self.backend, keys::SECTORS, None);
                    match (sectors, self.disk.as_mut()) {
                        (Ok(s), Some(d)) if s != d.sectors => {
                            d.sectors = s;
                            Ok(Event::Resized { sectors: s })
                        }
                        _ => Ok(Event::Nothing),
                    }
                }
                _ => Ok(Event::Nothing),
            },
            XenbusState::Closing | XenbusState::Closed => match self.state {
                FrontState::Initialised | FrontState::Connected => {
                    self.disconnect(p);
                    let _ = self.write_state(p, XenbusState::Closed);
                    Ok(Event::Disconnected {
                        held: self.held.len(),
                    })
                }
                _ => Ok(Event::Nothing),
            },
            XenbusState::Unknown => {
                // The backend's directory is gone: nothing will reconnect.
                self.fail(p, &mut done);
                Ok(Event::Failed)
            }
            _ => Ok(Event::Nothing),
        }
    }

    /// Allocates and grants the rings, allocates the event channels and publishes them
    /// (`talk_to_blkback`).
    fn setup_rings(&mut self, p: &mut P) -> Result<Event, NegotiationError> {
        let limits = RingLimits::read(p, &self.backend)?;
        let nqueues = self.config.max_queues.min(limits.max_queues).max(1) as usize;
        let order = self
            .config
            .max_ring_page_order
            .min(limits.max_ring_page_order)
            .min(MAX_RING_PAGE_ORDER);
        let pages = 1usize << order;
        for qi in 0..nqueues {
            match self.setup_queue(p, qi, pages) {
                Ok(q) => self.queues.push(q),
                Err(e) => {
                    self.teardown_queues(p);
                    return Err(e);
                }
            }
        }
        let mut writes: Vec<(String, String)> = Vec::new();
        let node = |k: &str| format!("{}/{k}", self.nodename);
        if order > 0 {
            writes.push((node(keys::RING_PAGE_ORDER), format!("{order}")));
        }
        if nqueues > 1 {
            writes.push((node(keys::MULTI_QUEUE_NUM_QUEUES), format!("{nqueues}")));
        }
        for (qi, q) in self.queues.iter().enumerate() {
            let dir = if nqueues > 1 {
                format!("{}/queue-{qi}", self.nodename)
            } else {
                self.nodename.clone()
            };
            if order == 0 {
                writes.push((
                    format!("{dir}/{}", keys::RING_REF),
                    format!("{}", q.ring_grefs[0]),
                ));
            } else {
                for (i, g) in q.ring_grefs.iter().enumerate() {
                    writes.push((
                        format!("{dir}/{}{i}", keys::RING_REF_PREFIX),
                        format!("{g}"),
                    ));
                }
            }
            writes.push((
                format!("{dir}/{}", keys::EVENT_CHANNEL),
                format!("{}", q.port),
            ));
        }
        writes.push((node(keys::PROTOCOL), protocols::NATIVE.into()));
        writes.push((
            node(keys::FEATURE_PERSISTENT),
            if self.config.persistent { "1" } else { "0" }.into(),
        ));
        writes.push((
            node("state"),
            XenbusState::Initialised.xenstore_value().into(),
        ));
        let refs: Vec<(&str, &str)> = writes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(e) = p.write_all(&refs) {
            self.teardown_queues(p);
            return Err(NegotiationError::Platform(e));
        }
        self.state = FrontState::Initialised;
        self.stats.connects += 1;
        Ok(Event::Initialised {
            queues: nqueues,
            ring_pages: pages,
        })
    }

    fn setup_queue(
        &mut self,
        p: &mut P,
        qi: usize,
        pages: usize,
    ) -> Result<QueueOf<P, T>, NegotiationError> {
        let mem = p.alloc_pages(pages).map_err(NegotiationError::Platform)?;
        // Dropping `mem` on an error frees the pages (nothing granted yet).
        let (at, size) = match BlkifFrontRing::init(mem.mem()) {
            Ok(r) => (r.indices(), r.size()),
            Err(e) => return Err(NegotiationError::Ring(e)),
        };
        let mut grefs = Vec::with_capacity(pages);
        for i in 0..pages {
            match p.grant_access(self.backend_id, &mem, i, false) {
                Ok(g) => grefs.push(g),
                Err(e) => {
                    self.release_ring(p, mem, &grefs);
                    return Err(NegotiationError::Platform(e));
                }
            }
        }
        let port = match p.bind_unbound_port(self.backend_id, qi) {
            Ok(port) => port,
            Err(e) => {
                self.release_ring(p, mem, &grefs);
                return Err(NegotiationError::Platform(e));
            }
        };
        Ok(Queue {
            ring_mem: mem,
            ring_at: at,
            ring_grefs: grefs,
            port,
            shadow: (0..size).map(|_| None).collect(),
            free_ids: (0..size).rev().collect(),
            pool: Vec::new(),
            pages: 0,
        })
    }

    /// Ends the ring's grants and frees its pages, unless the backend still maps one:
    /// then the pages are quarantined (never freed).
    fn release_ring(&mut self, p: &mut P, mem: P::Pages, grefs: &[GrantRef]) {
        let mut in_use = false;
        for g in grefs {
            in_use |= p.end_access(*g).is_err();
        }
        if in_use {
            self.stats.quarantined_pages += mem.count() as u64;
            p.leak(mem);
        }
        // Otherwise `mem` is dropped here: freed.
    }

    /// The backend is Connected: read the disk and features, go Connected, resubmit.
    fn connect(
        &mut self,
        p: &mut P,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) -> Result<Event, NegotiationError> {
        let disk = DiskInfo::read(p, &self.backend)?;
        self.persistent = self.config.persistent && disk.persistent;
        let budget = if self.persistent {
            self.config.persistent_pages_per_ring
        } else {
            self.config.pages_per_ring
        };
        (self.page_budget, self.max_segments) =
            crate::features::budget_and_segments(budget, disk.max_segments(&self.config));
        self.disk = Some(disk);
        self.write_state(p, XenbusState::Connected)
            .map_err(NegotiationError::Platform)?;
        self.state = FrontState::Connected;
        self.resubmit_held(p, done);
        Ok(Event::Connected(disk))
    }

    /// Tears the rings down and holds the outstanding I/O, oldest first, for a reconnect.
    pub(super) fn disconnect(&mut self, p: &mut P) {
        let mut outstanding = Vec::new();
        for qi in 0..self.queues.len() {
            for slot in 0..self.queues[qi].shadow.len() {
                if let Some(s) = self.queues[qi].shadow[slot].take() {
                    self.give_back(p, qi, s.bounce, s.indirect);
                    outstanding.push((s.seq, s.tag, s.io));
                }
            }
        }
        outstanding.sort_by_key(|(seq, _, _)| *seq);
        // Held I/O not yet resubmitted is older than anything on the rings.
        let mut held: VecDeque<_> = outstanding.into();
        while let Some(h) = self.held.pop_back() {
            held.push_front(h);
        }
        self.held = held;
        self.teardown_queues(p);
        self.disk = None;
        self.state = FrontState::Disconnected;
    }

    fn teardown_queues(&mut self, p: &mut P) {
        for q in core::mem::take(&mut self.queues) {
            // The ring view goes here, before its pages are released.
            let Queue {
                ring_mem,
                ring_grefs,
                port,
                pool,
                ..
            } = q;
            p.unbind(port);
            self.release_ring(p, ring_mem, &ring_grefs);
            self.drop_pool(p, pool);
        }
    }

    /// Fails the device: every held and in-flight I/O completes with
    /// [`IoError::DeviceFailed`], the rings are torn down, our state is Closed.
    pub fn fail(&mut self, p: &mut P, done: &mut impl FnMut(T, Result<(), IoError>)) {
        if self.state != FrontState::Disconnected && self.state != FrontState::Failed {
            self.disconnect(p);
        }
        self.state = FrontState::Failed;
        for (_, tag, _) in core::mem::take(&mut self.held) {
            done(tag, Err(IoError::DeviceFailed));
        }
        let _ = self.write_state(p, XenbusState::Closed);
    }

    /// Whether the I/O tagged `tag` is outstanding: on a ring or held for a reconnect
    /// (not yet completed through a `done` callback).
    pub fn outstanding(&self, tag: &T) -> bool
    where
        T: PartialEq,
    {
        self.held.iter().any(|(_, t, _)| t == tag)
            || self
                .queues
                .iter()
                .flat_map(|q| q.shadow.iter().flatten())
                .any(|s| s.tag == *tag)
    }

    /// The driver's I/O timer for `tag` expired. If that I/O is still outstanding the
    /// backend is taken for dead (it stopped answering without a state change): the
    /// device fails as in [`fail`](Self::fail), every outstanding I/O (this one
    /// included) completes with [`IoError::DeviceFailed`], and
    /// [`Timeout::DeviceFailed`] says how many waited on the rings. Otherwise nothing
    /// changes ([`Timeout::NotOutstanding`]): the I/O was already completed (its
    /// `done` may still be on its way to the kernel) or not yet submitted.
    pub fn timed_out(
        &mut self,
        p: &mut P,
        tag: &T,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) -> Timeout
    where
        T: PartialEq,
    {
        if !self.outstanding(tag) {
            return Timeout::NotOutstanding;
        }
        let in_flight = self.in_flight();
        let held = self.held.len();
        self.fail(p, done);
        Timeout::DeviceFailed { in_flight, held }
    }

    /// Driver removal or module unload: fails what is outstanding and releases
    /// everything.
    pub fn shutdown(&mut self, p: &mut P, mut done: impl FnMut(T, Result<(), IoError>)) {
        self.fail(p, &mut done);
    }
}
