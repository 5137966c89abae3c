//! The block frontend: xenbus state machine, queues, request building, completion,
//! recovery after a backend reconnect.

use crate::error::{IoError, NegotiationError, ProtocolError, SubmitError};
use crate::features::{DiskInfo, FlushKind, FrontendConfig, RingLimits, MAX_RING_PAGE_ORDER};
use crate::platform::{Pages, Platform, SeamError};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::blkif::{
    keys, protocols, BlkifFrontRing, BlkifOp, BlkifRequest, BlkifRequestDiscard,
    BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse, BlkifRsp, VdiskInfo,
    BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    SECTORS_PER_PAGE, SECTOR_SIZE, SEGMENTS_PER_INDIRECT_PAGE,
};
use sluice_abi::ring::{FrontIndices, RingError};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use zerocopy::{FromZeros, Immutable, IntoBytes};

/// What an I/O does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Read into the segments.
    Read,
    /// Write from the segments.
    Write,
    /// Write the segments (possibly none), then flush the disk cache (or a barrier,
    /// per the backend's features).
    Flush,
    /// Discard `nr_sectors` 512-byte sectors from `sector` (no segments).
    Discard {
        /// Length in 512-byte sectors.
        nr_sectors: u64,
        /// Securely erase.
        secure: bool,
    },
}

/// Sectors `first_sect..=last_sect` of a caller page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoSegment<Pg> {
    /// The caller's data page (never granted: data is copied through bounce pages).
    pub page: Pg,
    /// First 512-byte sector in the page (0..=7).
    pub first_sect: u8,
    /// Last, inclusive.
    pub last_sect: u8,
}

impl<Pg> IoSegment<Pg> {
    fn offset(&self) -> usize {
        self.first_sect as usize * SECTOR_SIZE as usize
    }
    fn len(&self) -> usize {
        (self.last_sect as usize + 1 - self.first_sect as usize) * SECTOR_SIZE as usize
    }
    fn sectors(&self) -> u64 {
        (self.last_sect - self.first_sect) as u64 + 1
    }
}

/// One block I/O from the block layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockIo<Pg> {
    /// The operation.
    pub op: IoOp,
    /// First 512-byte sector.
    pub sector: u64,
    /// Data, in disk order.
    pub segments: Vec<IoSegment<Pg>>,
}

/// The frontend's own xenbus state plus "failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontState {
    /// Started, waiting for the backend's InitWait.
    Initialising,
    /// Rings published, waiting for the backend to connect.
    Initialised,
    /// I/O flows.
    Connected,
    /// The backend went away; I/O is held for a reconnect.
    Disconnected,
    /// Failed for good (protocol error, vanished backend, shutdown): every I/O fails.
    Failed,
}

/// What a state change led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to do.
    Nothing,
    /// Rings and event channels published (our state Initialised).
    Initialised {
        /// Queues in use.
        queues: usize,
        /// Pages per ring.
        ring_pages: usize,
    },
    /// Connected; the disk as the backend describes it.
    Connected(DiskInfo),
    /// Still connected; the disk changed size.
    Resized {
        /// New size in 512-byte sectors.
        sectors: u64,
    },
    /// The backend closed; outstanding I/O is held until it reconnects.
    Disconnected {
        /// I/Os held.
        held: usize,
    },
    /// The device failed; every outstanding I/O was completed with an error.
    Failed,
}

/// What an expired I/O timer led to ([`Frontend::timed_out`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The I/O was not outstanding (already completed, or not submitted yet).
    NotOutstanding,
    /// The device failed; this many I/Os were on the rings and held for a reconnect,
    /// all completed with [`IoError::DeviceFailed`].
    DeviceFailed {
        /// On the rings, unanswered.
        in_flight: usize,
        /// Held while the backend was away.
        held: usize,
    },
}

/// Counters for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests sent.
    pub sent: u64,
    /// Responses consumed.
    pub completed: u64,
    /// Requests sent again after a reconnect.
    pub resubmitted: u64,
    /// Pages the backend kept mapped when we ended their grants: never reused or freed.
    pub quarantined_pages: u64,
    /// Times the rings were set up.
    pub connects: u64,
}

/// A frontend-owned 4 KiB page used for bounce data or an indirect segment list.
#[derive(Debug)]
struct PoolPage<Pp> {
    page: Pp,
    /// Set while granted; persistent grants stay set between requests.
    gref: Option<GrantRef>,
}

struct Shadow<Pp, Dp, T> {
    seq: u64,
    tag: T,
    io: BlockIo<Dp>,
    wire_op: u8,
    /// For an indirect request, the read or write it carries: Linux's blkback answers
    /// with this operation rather than `BLKIF_OP_INDIRECT`; both are accepted.
    inner_op: u8,
    bounce: Vec<PoolPage<Pp>>,
    indirect: Vec<PoolPage<Pp>>,
}

struct Queue<Pp, Dp, T> {
    /// The ring's pages; a ring view borrows them per operation ([`Queue::ring`]).
    ring_mem: Pp,
    /// The ring's private indices between views.
    ring_at: FrontIndices,
    ring_grefs: Vec<GrantRef>,
    port: EvtchnPort,
    shadow: Vec<Option<Shadow<Pp, Dp, T>>>,
    free_ids: Vec<u32>,
    /// This ring's free bounce/indirect pages: with persistent grants each stays
    /// granted, so a backend's per-ring cache sees only this ring's pages, never more
    /// than the budget.
    pool: Vec<PoolPage<Pp>>,
    /// Pages held by this ring's requests in flight (data + indirect).
    pages: usize,
}

impl<Pp: Pages, Dp, T> Queue<Pp, Dp, T> {
    /// Runs `f` on a view of the ring and keeps its private indices.
    fn ring<R>(&mut self, f: impl FnOnce(&mut BlkifFrontRing<'_>) -> R) -> Result<R, RingError> {
        let mut ring = BlkifFrontRing::resume(self.ring_mem.mem(), self.ring_at)?;
        let r = f(&mut ring);
        self.ring_at = ring.indices();
        Ok(r)
    }
}

type QueueOf<P, T> =
    Queue<<P as crate::platform::Memory>::Pages, <P as crate::platform::Memory>::DataPage, T>;
type PoolOf<P> = PoolPage<<P as crate::platform::Memory>::Pages>;
type PoolVec<P> = Vec<PoolOf<P>>;
type IoOf<P> = BlockIo<<P as crate::platform::Memory>::DataPage>;

/// A Xen block frontend for one virtual disk, generic over the guest kernel
/// ([`Platform`]) and the caller's per-I/O tag `T` (a `struct request *` in Linux).
///
/// The driver calls [`backend_changed`](Self::backend_changed) on every backend state
/// change, [`submit`](Self::submit) for each I/O and [`handle_event`](Self::handle_event)
/// when a queue's event channel fires; completions come back through the `done`
/// callbacks as `(tag, result)`, exactly once per submitted I/O.
pub struct Frontend<P: Platform, T> {
    nodename: String,
    backend: String,
    backend_id: DomId,
    handle: u16,
    config: FrontendConfig,
    state: FrontState,
    queues: Vec<QueueOf<P, T>>,
    disk: Option<DiskInfo>,
    persistent: bool,
    max_segments: usize,
    /// Pages in flight per ring, at most (set at connect).
    page_budget: usize,
    held: VecDeque<(u64, T, IoOf<P>)>,
    next_seq: u64,
    stats: Stats,
    /// A protocol violation was seen by [`poll`](Self::poll) (interrupt context, where
    /// nothing may be torn down): every I/O is refused until the driver calls
    /// [`fail`](Self::fail) from process context.
    broken: bool,
}

/// What one [`Frontend::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// I/Os completed through `done`.
    pub completed: usize,
    /// The budget ran out with responses (possibly) left: poll again.
    pub more: bool,
}

impl<P: Platform, T> Frontend<P, T> {
    /// A frontend for the device at `nodename` (`device/vbd/<n>`) whose backend lives at
    /// `backend` in domain `backend_id` (xenbus's `otherend` and `otherend_id`).
    pub fn new(
        nodename: &str,
        backend: &str,
        backend_id: DomId,
        config: FrontendConfig,
    ) -> Result<Self, NegotiationError> {
        let handle = nodename
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u16>().ok())
            .ok_or(NegotiationError::BadNodename)?;
        let mut config = config;
        config.max_queues = config.max_queues.max(1);
        config.max_ring_page_order = config.max_ring_page_order.min(MAX_RING_PAGE_ORDER);
        Ok(Frontend {
            nodename: nodename.into(),
            backend: backend.into(),
            backend_id,
            handle,
            config,
            state: FrontState::Initialising,
            queues: Vec::new(),
            disk: None,
            persistent: false,
            max_segments: BLKIF_MAX_SEGMENTS_PER_REQUEST,
            page_budget: BLKIF_MAX_SEGMENTS_PER_REQUEST,
            held: VecDeque::new(),
            next_seq: 0,
            stats: Stats::default(),
            broken: false,
        })
    }

    /// Our state.
    pub fn state(&self) -> FrontState {
        self.state
    }

    /// The disk, once connected.
    pub fn disk(&self) -> Option<&DiskInfo> {
        self.disk.as_ref()
    }

    /// Queues in use (0 before the rings are set up).
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The event channel of `queue`.
    pub fn port(&self, queue: usize) -> Option<EvtchnPort> {
        self.queues.get(queue).map(|q| q.port)
    }

    /// Segments one read or write may carry (direct or indirect).
    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// Pages (data + indirect) a ring may have in flight: the persistent or the
    /// non-persistent budget of [`FrontendConfig`], chosen at connect.
    /// [`max_segments`](Self::max_segments) is limited so that one request fits.
    pub fn page_budget(&self) -> usize {
        self.page_budget
    }

    /// Pages ring `queue` has in flight (0 for no such ring).
    pub fn pages_in_flight(&self, queue: usize) -> usize {
        self.queues.get(queue).map_or(0, |q| q.pages)
    }

    /// Pages ring `queue` holds, free in its pool or in flight (0 for no such ring).
    pub fn ring_pages(&self, queue: usize) -> usize {
        self.queues.get(queue).map_or(0, |q| q.pages + q.pool.len())
    }

    /// Request slots per ring (0 before the rings are set up).
    pub fn ring_slots(&self) -> usize {
        self.queues.first().map_or(0, |q| q.shadow.len())
    }

    /// Whether [`poll`](Self::poll) saw a protocol violation the driver has not
    /// failed the device for yet.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Whether persistent grants are in use.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// I/Os waiting for a reconnect.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// I/Os on the rings.
    pub fn in_flight(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.shadow.iter().filter(|s| s.is_some()).count())
            .sum()
    }

    fn write_state(&self, p: &mut P, state: XenbusState) -> Result<(), SeamError> {
        p.switch_state(&self.nodename, state)
    }

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
    fn disconnect(&mut self, p: &mut P) {
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

    fn drop_pool(&mut self, p: &mut P, pool: PoolVec<P>) {
        for pp in pool {
            match pp.gref {
                Some(g) if p.end_access(g).is_err() => {
                    self.stats.quarantined_pages += 1;
                    p.leak(pp.page);
                }
                _ => drop(pp.page),
            }
        }
    }

    fn take_page(&mut self, p: &mut P, qi: usize, readonly: bool) -> Result<PoolOf<P>, SeamError> {
        let mut pp = match self.queues[qi].pool.pop() {
            Some(pp) => pp,
            None => PoolPage {
                page: p.alloc_pages(1)?,
                gref: None,
            },
        };
        if pp.gref.is_none() {
            // Persistent grants are writable: the page serves reads and writes in turn.
            let ro = readonly && !self.persistent;
            match p.grant_access(self.backend_id, &pp.page, 0, ro) {
                Ok(g) => pp.gref = Some(g),
                Err(e) => {
                    self.queues[qi].pool.push(pp);
                    return Err(e);
                }
            }
        }
        Ok(pp)
    }

    /// A request's pages go back to ring `qi`: out of its pages in flight, into its pool.
    fn give_back(&mut self, p: &mut P, qi: usize, bounce: PoolVec<P>, indirect: PoolVec<P>) {
        let q = &mut self.queues[qi];
        q.pages = q.pages.saturating_sub(bounce.len() + indirect.len());
        self.release_pages(p, qi, bounce);
        self.release_pages(p, qi, indirect);
    }

    fn release_pages(&mut self, p: &mut P, qi: usize, pages: PoolVec<P>) {
        for mut pp in pages {
            if !self.persistent {
                if let Some(g) = pp.gref.take() {
                    if p.end_access(g).is_err() {
                        // The backend still maps it: never reuse or free this page.
                        self.stats.quarantined_pages += 1;
                        p.leak(pp.page);
                        continue;
                    }
                }
            }
            self.queues[qi].pool.push(pp);
        }
    }

    fn validate(&self, io: &IoOf<P>) -> Result<(), SubmitError> {
        let disk = self.disk.as_ref().ok_or(SubmitError::DeviceFailed)?;
        let readonly = disk.info.contains(VdiskInfo::READONLY);
        let (max, min) = match io.op {
            IoOp::Read => (self.max_segments, 1),
            IoOp::Write => (self.max_segments, 1),
            IoOp::Flush => (BLKIF_MAX_SEGMENTS_PER_REQUEST, 0),
            IoOp::Discard { .. } => (0, 0),
        };
        if io.segments.len() > max || io.segments.len() < min {
            return Err(SubmitError::BadSegmentCount {
                given: io.segments.len(),
                max,
            });
        }
        for (i, s) in io.segments.iter().enumerate() {
            if s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE {
                return Err(SubmitError::BadSegment(i));
            }
        }
        let len = match io.op {
            IoOp::Discard { nr_sectors, secure } => {
                let Some(d) = disk.discard else {
                    return Err(SubmitError::Unsupported);
                };
                if secure && !d.secure {
                    return Err(SubmitError::Unsupported);
                }
                nr_sectors
            }
            IoOp::Flush if disk.flush.is_none() => return Err(SubmitError::Unsupported),
            _ => io.segments.iter().map(|s| s.sectors()).sum(),
        };
        if !matches!(io.op, IoOp::Read) && readonly {
            return Err(SubmitError::ReadOnly);
        }
        if io.op == IoOp::Flush && io.segments.is_empty() {
            // A bare cache flush addresses no sectors (Linux leaves its position at
            // u64::MAX); it goes out with sector 0.
            return Ok(());
        }
        match io.sector.checked_add(len) {
            Some(end) if end <= disk.sectors => Ok(()),
            _ => Err(SubmitError::OutOfRange),
        }
    }

    /// Sends `io` on `queue`; its completion comes through a later
    /// [`handle_event`](Self::handle_event). While the backend is away (reconnecting)
    /// the I/O is held and sent after the reconnect.
    pub fn submit(
        &mut self,
        p: &mut P,
        queue: usize,
        tag: T,
        io: IoOf<P>,
    ) -> Result<(), (SubmitError, T, IoOf<P>)> {
        if self.broken {
            return Err((SubmitError::DeviceFailed, tag, io));
        }
        match self.state {
            FrontState::Failed => return Err((SubmitError::DeviceFailed, tag, io)),
            FrontState::Connected => {}
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.held.push_back((seq, tag, io));
                return Ok(());
            }
        }
        if queue >= self.queues.len() {
            return Err((SubmitError::NoSuchQueue(queue), tag, io));
        }
        if let Err(e) = self.validate(&io) {
            return Err((e, tag, io));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.held.is_empty() {
            // Older I/O from before a reconnect is still waiting for ring space: new I/O
            // queues behind it (a flush must not overtake the writes it covers).
            self.held.push_back((seq, tag, io));
            return Ok(());
        }
        self.send(p, queue, seq, tag, io)
    }

    /// Builds the ring request: bounce pages (data copied in for writes), indirect
    /// pages when the segments do not fit in the slot.
    fn send(
        &mut self,
        p: &mut P,
        qi: usize,
        seq: u64,
        tag: T,
        io: IoOf<P>,
    ) -> Result<(), (SubmitError, T, IoOf<P>)> {
        match self.queues[qi].ring(|r| r.is_full()) {
            Ok(false) if !self.queues[qi].free_ids.is_empty() => {}
            Ok(_) => return Err((SubmitError::RingFull, tag, io)),
            Err(_) => return Err((SubmitError::DeviceFailed, tag, io)),
        }
        // The ring's page budget, before anything is taken. `connect` limits a request
        // to the budget, so one always goes on a ring with nothing in flight; the
        // check on `in_flight` keeps that true even if the budget changed under held I/O.
        let pages = match io.op {
            IoOp::Discard { .. } => 0,
            _ => crate::features::request_pages(io.segments.len()),
        };
        let in_flight = self.queues[qi].pages;
        if in_flight > 0 && in_flight + pages > self.page_budget {
            return Err((
                SubmitError::PageBudget {
                    pages,
                    in_flight,
                    budget: self.page_budget,
                },
                tag,
                io,
            ));
        }
        let writes = matches!(io.op, IoOp::Write | IoOp::Flush);
        let mut bounce: Vec<PoolOf<P>> = Vec::with_capacity(io.segments.len());
        let mut segs: Vec<BlkifRequestSegment> = Vec::with_capacity(io.segments.len());
        for s in &io.segments {
            let pp = match self.take_page(p, qi, writes) {
                Ok(pp) => pp,
                Err(e) => {
                    self.release_pages(p, qi, bounce);
                    return Err((SubmitError::NoResources(e), tag, io));
                }
            };
            if writes {
                if let Err(e) = p.copy_in(&pp.page, s.offset(), s.page, s.offset(), s.len()) {
                    bounce.push(pp);
                    self.release_pages(p, qi, bounce);
                    return Err((SubmitError::Copy(e), tag, io));
                }
            }
            segs.push(BlkifRequestSegment::new(
                pp.gref.unwrap_or_default(),
                s.first_sect,
                s.last_sect,
            ));
            bounce.push(pp);
        }
        let flush_op = match self.disk.and_then(|d| d.flush) {
            Some(FlushKind::WriteBarrier) => BlkifOp::WriteBarrier,
            _ => BlkifOp::FlushDiskcache,
        };
        let id = *self.queues[qi].free_ids.last().unwrap_or(&0);
        let mut indirect = Vec::new();
        let mut inner_op = 0;
        let (slot, wire_op) = match io.op {
            IoOp::Discard { nr_sectors, secure } => (
                as_slot(&BlkifRequestDiscard {
                    operation: BlkifOp::Discard.raw(),
                    flag: if secure { BLKIF_DISCARD_SECURE } else { 0 },
                    handle: self.handle,
                    id: id as u64,
                    sector_number: io.sector,
                    nr_sectors,
                    ..Default::default()
                }),
                BlkifOp::Discard.raw(),
            ),
            op if segs.len() <= BLKIF_MAX_SEGMENTS_PER_REQUEST => {
                let wire = match op {
                    IoOp::Read => BlkifOp::Read,
                    IoOp::Write => BlkifOp::Write,
                    _ => flush_op,
                };
                let mut r = BlkifRequest {
                    operation: wire.raw(),
                    nr_segments: segs.len() as u8,
                    handle: self.handle,
                    id: id as u64,
                    sector_number: if segs.is_empty() { 0 } else { io.sector },
                    ..Default::default()
                };
                r.seg[..segs.len()].copy_from_slice(&segs);
                (r, wire.raw())
            }
            op => {
                let inner = if op == IoOp::Read {
                    BlkifOp::Read
                } else {
                    BlkifOp::Write
                };
                inner_op = inner.raw();
                let npages = segs.len().div_ceil(SEGMENTS_PER_INDIRECT_PAGE);
                let mut ind = BlkifRequestIndirect {
                    operation: BlkifOp::Indirect.raw(),
                    indirect_op: inner.raw(),
                    nr_segments: segs.len() as u16,
                    id: id as u64,
                    sector_number: io.sector,
                    handle: self.handle,
                    ..Default::default()
                };
                for (i, chunk) in segs.chunks(SEGMENTS_PER_INDIRECT_PAGE).enumerate() {
                    let pp = match self.take_page(p, qi, true) {
                        Ok(pp) => pp,
                        Err(e) => {
                            self.release_pages(p, qi, bounce);
                            self.release_pages(p, qi, indirect);
                            return Err((SubmitError::NoResources(e), tag, io));
                        }
                    };
                    let written = pp.page.slice(0, chunk.as_bytes().len()).and_then(|m| {
                        m.write_bytes(0, chunk.as_bytes())
                            .map_err(|_| SeamError::OutOfBounds {
                                offset: 0,
                                len: chunk.as_bytes().len(),
                                size: m.len(),
                            })
                    });
                    ind.indirect_grefs[i] = pp.gref.unwrap_or_default();
                    indirect.push(pp);
                    if let Err(e) = written {
                        self.release_pages(p, qi, bounce);
                        self.release_pages(p, qi, indirect);
                        return Err((SubmitError::Copy(e), tag, io));
                    }
                }
                debug_assert!(npages <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
                (as_slot(&ind), BlkifOp::Indirect.raw())
            }
        };
        let q = &mut self.queues[qi];
        if !matches!(q.ring(|r| r.push_request(&slot)), Ok(Ok(()))) {
            // Checked not full above; keep the I/O rather than lose it.
            self.release_pages(p, qi, bounce);
            self.release_pages(p, qi, indirect);
            return Err((SubmitError::RingFull, tag, io));
        }
        q.free_ids.pop();
        q.pages += bounce.len() + indirect.len();
        q.shadow[id as usize] = Some(Shadow {
            seq,
            tag,
            io,
            wire_op,
            inner_op,
            bounce,
            indirect,
        });
        self.stats.sent += 1;
        if let Ok(Ok(true)) = q.ring(|r| r.push_requests_and_check_notify()) {
            p.notify(q.port);
        }
        Ok(())
    }

    fn resubmit_held(&mut self, p: &mut P, done: &mut impl FnMut(T, Result<(), IoError>)) {
        let n = self.queues.len();
        if n == 0 {
            return;
        }
        while let Some((seq, tag, io)) = self.held.pop_front() {
            if let Err(e) = self.validate(&io) {
                // The disk changed under the reconnect (smaller, read-only, feature gone).
                let _ = e;
                done(tag, Err(IoError::DeviceFailed));
                continue;
            }
            let qi = (seq as usize) % n;
            match self.send(p, qi, seq, tag, io) {
                Ok(()) => self.stats.resubmitted += 1,
                Err((_, tag, io)) => {
                    self.held.push_front((seq, tag, io));
                    break;
                }
            }
        }
    }

    /// The event channel of `queue` fired: consumes every response, completes the I/Os
    /// (copying read data out of the bounce pages) and sends held I/O where room
    /// appeared. A protocol violation fails the device (every outstanding I/O completes
    /// with [`IoError::DeviceFailed`]) and is returned for the log.
    pub fn handle_event(
        &mut self,
        p: &mut P,
        queue: usize,
        mut done: impl FnMut(T, Result<(), IoError>),
    ) -> Result<usize, ProtocolError> {
        match self.poll(p, queue, usize::MAX, &mut done) {
            Ok(polled) => Ok(polled.completed),
            Err(e) => Err(self.protocol_error(p, e, &mut done)),
        }
    }

    /// [`handle_event`](Self::handle_event) for interrupt context: completes at most
    /// `budget` I/Os (then `more` is set and the caller polls again), tears nothing
    /// down and never sleeps in the platform beyond what the data path itself does
    /// (grants, copies, notify; bounce pages are allocated only when the pool is
    /// empty). A protocol violation marks the frontend broken (every later I/O is
    /// refused, outstanding ones stay until then) and is returned: the driver must
    /// then call [`fail`](Self::fail) from process context.
    pub fn poll(
        &mut self,
        p: &mut P,
        queue: usize,
        budget: usize,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) -> Result<Polled, ProtocolError> {
        let mut polled = Polled::default();
        if self.broken || self.state != FrontState::Connected || queue >= self.queues.len() {
            return Ok(polled);
        }
        let r = self.poll_ring(p, queue, budget, done, &mut polled);
        if let Err(e) = r {
            self.broken = true;
            return Err(e);
        }
        self.resubmit_held(p, done);
        Ok(polled)
    }

    fn poll_ring(
        &mut self,
        p: &mut P,
        queue: usize,
        budget: usize,
        done: &mut impl FnMut(T, Result<(), IoError>),
        polled: &mut Polled,
    ) -> Result<(), ProtocolError> {
        let ring_err = |error| ProtocolError::Ring { queue, error };
        loop {
            loop {
                if polled.completed >= budget {
                    polled.more = true;
                    return Ok(());
                }
                let rsp = match self.queues[queue].ring(|r| r.pop_response()) {
                    Ok(Ok(Some(r))) => r,
                    Ok(Ok(None)) => break,
                    Ok(Err(error)) | Err(error) => return Err(ring_err(error)),
                };
                let (tag, result) = self.complete(p, queue, rsp)?;
                polled.completed += 1;
                done(tag, result);
            }
            match self.queues[queue].ring(|r| r.final_check_for_responses()) {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => return Ok(()),
                Ok(Err(error)) | Err(error) => return Err(ring_err(error)),
            }
        }
    }

    fn protocol_error(
        &mut self,
        p: &mut P,
        e: ProtocolError,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) -> ProtocolError {
        // Nothing the backend says can be trusted any more: fail every outstanding I/O
        // rather than hold it for a reconnect.
        self.disconnect(p);
        self.fail(p, done);
        e
    }

    fn complete(
        &mut self,
        p: &mut P,
        queue: usize,
        rsp: BlkifResponse,
    ) -> Result<(T, Result<(), IoError>), ProtocolError> {
        let q = &mut self.queues[queue];
        let id = rsp.id;
        let slot = usize::try_from(id)
            .ok()
            .filter(|&i| i < q.shadow.len())
            .ok_or(ProtocolError::ResponseIdOutOfRange { queue, id })?;
        let (sent, inner) = match &q.shadow[slot] {
            None => return Err(ProtocolError::ResponseForUnsentRequest { queue, id }),
            Some(s) => (s.wire_op, s.inner_op),
        };
        let indirect_answer = sent == BlkifOp::Indirect.raw() && rsp.operation == inner;
        if rsp.operation != sent && !indirect_answer {
            return Err(ProtocolError::OperationMismatch {
                queue,
                id,
                sent,
                answered: rsp.operation,
            });
        }
        let Some(s) = q.shadow[slot].take() else {
            return Err(ProtocolError::ResponseForUnsentRequest { queue, id });
        };
        q.free_ids.push(slot as u32);
        self.stats.completed += 1;
        let result = match BlkifRsp::try_from(rsp.status) {
            Ok(BlkifRsp::Okay) => {
                let mut r = Ok(());
                if s.io.op == IoOp::Read {
                    for (seg, pp) in s.io.segments.iter().zip(&s.bounce) {
                        if let Err(e) =
                            p.copy_out(seg.page, seg.offset(), &pp.page, seg.offset(), seg.len())
                        {
                            r = Err(IoError::Copy(e));
                            break;
                        }
                    }
                }
                r
            }
            Ok(BlkifRsp::EOpNotSupp) => {
                // As Linux: stop offering what the backend refused.
                if let Some(d) = self.disk.as_mut() {
                    match s.io.op {
                        IoOp::Flush => d.flush = None,
                        IoOp::Discard { .. } => d.discard = None,
                        _ => {}
                    }
                }
                Err(IoError::NotSupported)
            }
            Ok(BlkifRsp::Error) => Err(IoError::Backend(rsp.status)),
            Err(_) => Err(IoError::Backend(rsp.status)),
        };
        self.give_back(p, queue, s.bounce, s.indirect);
        Ok((s.tag, result))
    }
}

impl<P: Platform, T> Drop for Frontend<P, T> {
    /// Dropped without [`shutdown`](Self::shutdown) (which ends the grants): no grant
    /// can be ended without the platform, so pages still granted are leaked, never
    /// freed under a backend that may map them.
    fn drop(&mut self) {
        // A ring's pool goes with it (its pages may be granted persistently).
        for q in self.queues.drain(..) {
            core::mem::forget(q);
        }
    }
}

/// A request variant written into a ring slot (the C union).
fn as_slot<V: IntoBytes + Immutable>(v: &V) -> BlkifRequest {
    let mut slot = BlkifRequest::new_zeroed();
    let src = v.as_bytes();
    slot.as_mut_bytes()[..src.len()].copy_from_slice(src);
    slot
}
