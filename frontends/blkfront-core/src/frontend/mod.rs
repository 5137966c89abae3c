//! The block frontend: xenbus state machine, queues, request building, completion,
//! recovery after a backend reconnect.

mod complete;
mod lifecycle;
mod pages;
mod submit;

use crate::error::NegotiationError;
use crate::features::{DiskInfo, FrontendConfig, MAX_RING_PAGE_ORDER};
use crate::platform::{Pages, Platform, SeamError};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::blkif::{BlkifFrontRing, BLKIF_MAX_SEGMENTS_PER_REQUEST, SECTOR_SIZE};
use sluice_abi::ring::{FrontIndices, RingError};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;

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
    /// all completed with [`IoError::DeviceFailed`](crate::IoError::DeviceFailed).
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
