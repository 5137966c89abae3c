//! Xen shared I/O rings (`xen/include/public/io/ring.h`), generic over the request and
//! response types, safe against a hostile peer.
//!
//! # Layout (byte-compatible with `DEFINE_RING_TYPES`)
//!
//! ```text
//! offset  0  u32 req_prod      written by the front (producer of requests)
//! offset  4  u32 req_event     written by the back: "notify me when req_prod passes this"
//! offset  8  u32 rsp_prod      written by the back (producer of responses)
//! offset 12  u32 rsp_event     written by the front
//! offset 16  u8  pvt[4]        protocol-private (netif smartpoll, tapif); zeroed by init
//! offset 20  u8  __pad[44]
//! offset 64  entries[size]     union { Req; Rsp }: stride = max(size) rounded to max(align)
//! ```
//!
//! `size` is the number of entries that fit in the area (one page or several: multi-page
//! rings use 1, 2, 4, ... pages) rounded down to a power of two, as `__RD32` does
//! ([`ring_size`]). Indices are free-running `u32`s (`RING_IDX`) that wrap; the slot of
//! index `i` is `i & (size - 1)`.
//!
//! # API (what backends and frontends code against)
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use sluice_abi::ring::{BackRing, FrontRing, RingError};
//! use sluice_abi::shared::SharedPages;
//! # fn main_() -> Result<(), RingError> {
//! # let notify_back = || {}; let notify_front = || {};
//! // Any zerocopy request/response pair; u64s keep the example short.
//! let pages = SharedPages::new(1); // or, over a grant mapping: unsafe { SharedMem::new(ptr, len) }
//! let mut front = FrontRing::<u64, u64>::init(pages.mem())?; // SHARED_RING_INIT + FRONT_RING_INIT
//! let mut back = BackRing::<u64, u64>::new(pages.mem())?; // BACK_RING_INIT: header untouched
//!
//! // Front: queue requests, publish them, notify the back only if it asked.
//! front.push_request(&7)?; // Err(RingError::Full) when no slot is free
//! if front.push_requests_and_check_notify()? {
//!     notify_back(); // e.g. an event-channel send
//! }
//! // Back: take every request, answer it, publish, notify if the front asked; sleep
//! // only when the final check (which re-arms req_event) still finds nothing.
//! while let Some(req) = back.pop_request()? {
//!     back.push_response(&(req * 2))?;
//! }
//! if back.push_responses_and_check_notify()? {
//!     notify_front();
//! }
//! assert!(!back.final_check_for_requests()?); // now it may sleep
//!
//! // Front: the mirror image.
//! assert_eq!(front.pop_response()?, Some(14));
//! assert!(!front.final_check_for_responses()?);
//! # Ok(()) }
//! # main_().unwrap();
//! # }
//! ```
//!
//! Every operation that reads an index the peer writes validates it and returns a typed
//! [`RingError`] (`RequestOverflow`, `ResponseOverflow`) instead of reading a slot that
//! was not produced; the views keep their state unchanged then, so the caller can report
//! the peer and disconnect. Index arithmetic is wrapping `u32` throughout: no overflow
//! panics, whatever the header holds. Entries are copied (never referenced) in and out
//! of shared memory through [`SharedMem`].
//!
//! # Memory ordering (each Xen barrier and its Rust equivalent)
//!
//! * `RING_PUSH_*`: `wmb(); prod = pvt;` → a `Release` store of `prod`: the entries,
//!   written before with relaxed stores, are visible to whoever `Acquire`-loads it.
//! * consuming: `rp = prod; rmb(); read entries` → an `Acquire` load of `prod` before the
//!   entry copies.
//! * `RING_PUSH_*_AND_CHECK_NOTIFY`: `wmb(); prod = new; mb(); read event` → the
//!   `Release` store, then a `SeqCst` fence, then the load of `event`.
//! * `RING_FINAL_CHECK_FOR_*`: `event = cons + 1; mb(); re-read prod` → store `event`,
//!   `SeqCst` fence, `Acquire` load of `prod`. The two `SeqCst` fences make the
//!   store-fence-load pairs on the two sides a Dekker pair: either the producer sees the
//!   new `event` (and notifies) or the consumer sees the new `prod` (and does not sleep),
//!   so no wake-up is lost.
//! * Slot reuse needs nothing more: the back reads request `i` before its `Release` of a
//!   `rsp_prod` past `i`, and the front writes a new request into that slot only after
//!   `Acquire`-loading that `rsp_prod` (and symmetrically for responses), so a slot is
//!   never written while the other side may still be reading it. The Miri run of
//!   `tests/ring_stress.rs` (`spin`) checks these orderings with weak-memory emulation.
//!
//! # Notification rule
//!
//! After publishing `old..new`, the producer notifies iff the consumer's event index lies
//! in `(old, new]`, i.e. `new - event < new - old` in wrapping `u32` arithmetic
//! ([`needs_notify`]).

use crate::shared::{SharedMem, SharedMemError};
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Offset of `req_prod` in the shared ring header.
pub const REQ_PROD_OFFSET: usize = 0;
/// Offset of `req_event`.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Offset of `rsp_prod`.
pub const RSP_PROD_OFFSET: usize = 8;
/// Offset of `rsp_event`.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Offset of the 4-byte protocol-private union `pvt`.
pub const PVT_OFFSET: usize = 16;
/// Offset of the first entry (`ring[0]`): the header is 64 bytes.
pub const ENTRIES_OFFSET: usize = 64;

/// The 64-byte header of a shared ring (`struct *_sring` up to `ring[]`), for snapshots
/// ([`FrontRing::header`]) and layout tests. Never accessed in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SringHeader {
    pub req_prod: u32,
    pub req_event: u32,
    pub rsp_prod: u32,
    pub rsp_event: u32,
    /// `union { netif.smartpoll_active; tapif_user.msg; pvt_pad[4] } pvt`.
    pub pvt: [u8; 4],
    pub pad: [u8; 44],
}

const _: () = assert!(size_of::<SringHeader>() == ENTRIES_OFFSET);

/// Size in bytes of one ring slot, `sizeof(union { Req req; Rsp rsp; })`: the larger
/// size rounded up to the larger alignment.
pub const fn entry_size<Req, Rsp>() -> usize {
    let size = if size_of::<Req>() > size_of::<Rsp>() {
        size_of::<Req>()
    } else {
        size_of::<Rsp>()
    };
    let align = if align_of::<Req>() > align_of::<Rsp>() {
        align_of::<Req>()
    } else {
        align_of::<Rsp>()
    };
    size.div_ceil(align) * align
}

/// Number of entries of a ring whose area (header included) is `area_len` bytes and
/// whose slots are `entry_size` bytes: the largest power of two that fits (`__RD32`).
pub fn ring_size(area_len: usize, entry_size: usize) -> Result<u32, RingError> {
    let needed = ENTRIES_OFFSET + entry_size;
    if entry_size == 0 || area_len < needed {
        return Err(RingError::AreaTooSmall {
            len: area_len,
            needed,
        });
    }
    let fitting = (area_len - ENTRIES_OFFSET) / entry_size;
    let fitting = u32::try_from(fitting).map_err(|_| RingError::AreaTooLarge { len: area_len })?;
    // `fitting >= 1`, so this is the top set bit: the largest power of two <= fitting.
    Ok(1u32 << (31 - fitting.leading_zeros()))
}

/// The event-threshold rule of `RING_PUSH_*_AND_CHECK_NOTIFY`: having moved the producer
/// index from `old` to `new`, notify iff the consumer's `event` is in `(old, new]`.
pub fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Why a ring operation failed. The view's state is unchanged by a failed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The area cannot hold the header and one entry.
    AreaTooSmall { len: usize, needed: usize },
    /// The area holds more than `u32::MAX` entries.
    AreaTooLarge { len: usize },
    /// The area does not start on a 4-byte boundary (the indices are atomic `u32`s).
    Misaligned { addr: usize },
    /// The front has `size` requests outstanding: wait for responses.
    Full,
    /// The back tried to push a response with no consumed request left to answer.
    NoRequestToAnswer,
    /// The front's `req_prod` claims requests that cannot exist: more than the free
    /// slots ahead of our consumer, or behind it (`RING_REQUEST_PROD_OVERFLOW`).
    RequestOverflow {
        req_prod: u32,
        req_cons: u32,
        rsp_prod_pvt: u32,
        size: u32,
    },
    /// The back's `rsp_prod` claims responses to requests we never published, or moved
    /// behind our consumer (`RING_RESPONSE_PROD_OVERFLOW`, made exact).
    ResponseOverflow {
        rsp_prod: u32,
        rsp_cons: u32,
        req_prod: u32,
    },
    /// An access fell outside the shared area (cannot happen for a validated ring; kept
    /// as an error rather than a panic).
    Shared(SharedMemError),
}

impl From<SharedMemError> for RingError {
    fn from(e: SharedMemError) -> Self {
        Self::Shared(e)
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AreaTooSmall { len, needed } => write!(
                f,
                "ring area of {len} bytes is too small (needs at least {needed})"
            ),
            Self::AreaTooLarge { len } => {
                write!(f, "ring area of {len} bytes holds more than 2^32 entries")
            }
            Self::Misaligned { addr } => {
                write!(f, "ring area at {addr:#x} is not 4-byte aligned")
            }
            Self::Full => write!(f, "ring is full"),
            Self::NoRequestToAnswer => {
                write!(f, "no consumed request is waiting for a response")
            }
            Self::RequestOverflow {
                req_prod,
                req_cons,
                rsp_prod_pvt,
                size,
            } => write!(
                f,
                "peer's req_prod {req_prod} is impossible (req_cons {req_cons}, rsp_prod_pvt {rsp_prod_pvt}, ring size {size})"
            ),
            Self::ResponseOverflow {
                rsp_prod,
                rsp_cons,
                req_prod,
            } => write!(
                f,
                "peer's rsp_prod {rsp_prod} is impossible (rsp_cons {rsp_cons}, published req_prod {req_prod})"
            ),
            Self::Shared(e) => write!(f, "ring access: {e}"),
        }
    }
}

impl core::error::Error for RingError {}

/// What the two views share: the area, its geometry, and typed slot access.
#[derive(Clone, Copy, Debug)]
struct Geometry<'a> {
    mem: SharedMem<'a>,
    size: u32,
    stride: usize,
}

impl<'a> Geometry<'a> {
    fn new<Req, Rsp>(mem: SharedMem<'a>) -> Result<Self, RingError> {
        const {
            assert!(
                entry_size::<Req, Rsp>() > 0,
                "ring entries cannot be zero-sized"
            );
            assert!(
                align_of::<Req>() <= ENTRIES_OFFSET && align_of::<Rsp>() <= ENTRIES_OFFSET,
                "ring entries aligned beyond 64 bytes would move ring[0]"
            );
        }
        if !mem.addr().is_multiple_of(4) {
            return Err(RingError::Misaligned { addr: mem.addr() });
        }
        let stride = entry_size::<Req, Rsp>();
        let size = ring_size(mem.len(), stride)?;
        Ok(Self { mem, size, stride })
    }

    /// Byte offset of the slot of index `idx`. In bounds: `size * stride + 64 <= len`.
    #[inline]
    fn slot(&self, idx: u32) -> usize {
        ENTRIES_OFFSET + (idx & (self.size - 1)) as usize * self.stride
    }

    fn header(&self) -> Result<SringHeader, RingError> {
        // Index words as `u32` atomics, like every other access to them.
        let mut h = SringHeader {
            req_prod: self.mem.load_u32_acquire(REQ_PROD_OFFSET)?,
            req_event: self.mem.load_u32_acquire(REQ_EVENT_OFFSET)?,
            rsp_prod: self.mem.load_u32_acquire(RSP_PROD_OFFSET)?,
            rsp_event: self.mem.load_u32_acquire(RSP_EVENT_OFFSET)?,
            pvt: [0; 4],
            pad: [0; 44],
        };
        self.mem.read_bytes(PVT_OFFSET, &mut h.pvt)?;
        self.mem.read_bytes(PVT_OFFSET + 4, &mut h.pad)?;
        Ok(h)
    }
}

/// A front ring's private state ([`FrontRing::indices`], [`FrontRing::resume`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontIndices {
    req_prod_pvt: u32,
    req_prod_published: u32,
    rsp_cons: u32,
    rsp_prod_seen: u32,
}

/// The front end of a ring: produces requests, consumes responses
/// (`*_front_ring_t` plus the shared page).
#[derive(Debug)]
pub struct FrontRing<'a, Req, Rsp> {
    geo: Geometry<'a>,
    /// Next request index to fill (`req_prod_pvt`).
    req_prod_pvt: u32,
    /// The `req_prod` we last published: the back can have seen requests up to here.
    req_prod_published: u32,
    /// Next response index to consume (`rsp_cons`).
    rsp_cons: u32,
    /// The back's `rsp_prod` as last read and validated.
    rsp_prod_seen: u32,
    _entries: PhantomData<fn(Req) -> Rsp>,
}

impl<'a, Req, Rsp> FrontRing<'a, Req, Rsp>
where
    Req: IntoBytes + Immutable,
    Rsp: FromBytes,
{
    /// `XEN_FRONT_RING_INIT`: initialises the shared header (indices 0, events 1, `pvt`
    /// and padding zeroed) and attaches at index 0. Only the front initialises.
    pub fn init(mem: SharedMem<'a>) -> Result<Self, RingError> {
        Self::init_at(mem, 0)
    }

    /// Like [`init`](Self::init) but as if `start` requests had already been exchanged:
    /// both producer indices are `start`, both events `start + 1`. Used to exercise index
    /// wrap-around; Xen's own init is `start == 0`.
    pub fn init_at(mem: SharedMem<'a>, start: u32) -> Result<Self, RingError> {
        let geo = Geometry::new::<Req, Rsp>(mem)?;
        // Relaxed stores: the back attaches only after it learns of the ring through
        // xenstore, which orders this for it. The indices are written as the same `u32`
        // atomics every later access uses (no mixed-size accesses to one word).
        let next = start.wrapping_add(1);
        mem.store_u32_relaxed(REQ_PROD_OFFSET, start)?;
        mem.store_u32_relaxed(REQ_EVENT_OFFSET, next)?;
        mem.store_u32_relaxed(RSP_PROD_OFFSET, start)?;
        mem.store_u32_relaxed(RSP_EVENT_OFFSET, next)?;
        mem.fill(PVT_OFFSET, ENTRIES_OFFSET - PVT_OFFSET, 0)?; // pvt and __pad
        Ok(Self::with_geometry(geo, start))
    }

    /// `FRONT_RING_ATTACH`: attaches to an already initialised shared ring, with private
    /// indices `start` (the header is left as it is).
    pub fn attach(mem: SharedMem<'a>, start: u32) -> Result<Self, RingError> {
        Ok(Self::with_geometry(Geometry::new::<Req, Rsp>(mem)?, start))
    }

    /// Re-attaches a view to a ring this front already drives, with the private indices
    /// an earlier view saved ([`indices`](Self::indices)). Lets the owner of the pages
    /// keep the ring state while views borrow the memory only for a while. Indices no
    /// view of a ring of this size can have are refused ([`RingError::Full`]).
    pub fn resume(mem: SharedMem<'a>, at: FrontIndices) -> Result<Self, RingError> {
        let geo = Geometry::new::<Req, Rsp>(mem)?;
        let outstanding = at.req_prod_pvt.wrapping_sub(at.rsp_cons);
        let published = at.req_prod_pvt.wrapping_sub(at.req_prod_published);
        let seen = at.rsp_prod_seen.wrapping_sub(at.rsp_cons);
        if outstanding > geo.size || published > outstanding || seen > outstanding - published {
            return Err(RingError::Full);
        }
        Ok(Self {
            geo,
            req_prod_pvt: at.req_prod_pvt,
            req_prod_published: at.req_prod_published,
            rsp_cons: at.rsp_cons,
            rsp_prod_seen: at.rsp_prod_seen,
            _entries: PhantomData,
        })
    }

    /// The private indices, for [`resume`](Self::resume).
    pub fn indices(&self) -> FrontIndices {
        FrontIndices {
            req_prod_pvt: self.req_prod_pvt,
            req_prod_published: self.req_prod_published,
            rsp_cons: self.rsp_cons,
            rsp_prod_seen: self.rsp_prod_seen,
        }
    }

    fn with_geometry(geo: Geometry<'a>, start: u32) -> Self {
        Self {
            geo,
            req_prod_pvt: start,
            req_prod_published: start,
            rsp_cons: start,
            rsp_prod_seen: start,
            _entries: PhantomData,
        }
    }

    /// `RING_SIZE`: number of slots.
    pub fn size(&self) -> u32 {
        self.geo.size
    }

    /// `req_prod_pvt`: index the next request goes to.
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// `rsp_cons`: index of the next response to consume.
    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    /// `RING_FREE_REQUESTS`: slots free for new requests.
    #[inline]
    pub fn free_requests(&self) -> u32 {
        // `req_prod_pvt - rsp_cons <= size` is our own invariant (push refuses to exceed
        // it; rsp_cons only advances over validated responses), so no underflow.
        self.geo.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// `RING_FULL`.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Requests pushed but not yet answered (published or not).
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Copies `req` into the next free slot (`RING_GET_REQUEST` + `req_prod_pvt++`). It
    /// is invisible to the back until [`push_requests`](Self::push_requests) or
    /// [`push_requests_and_check_notify`](Self::push_requests_and_check_notify).
    #[inline]
    pub fn push_request(&mut self, req: &Req) -> Result<(), RingError> {
        if self.is_full() {
            return Err(RingError::Full);
        }
        self.geo.mem.write(self.geo.slot(self.req_prod_pvt), req)?;
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_REQUESTS`: publishes the pushed requests without checking `req_event`.
    #[inline]
    pub fn push_requests(&mut self) -> Result<(), RingError> {
        // wmb(); req_prod = req_prod_pvt: the Release store orders the entry writes
        // before the index for a back that Acquire-loads it.
        self.geo
            .mem
            .store_u32_release(REQ_PROD_OFFSET, self.req_prod_pvt)?;
        self.req_prod_published = self.req_prod_pvt;
        Ok(())
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the pushed requests and says
    /// whether the back asked to be notified of them (its `req_event` lies in the newly
    /// published range).
    pub fn push_requests_and_check_notify(&mut self) -> Result<bool, RingError> {
        // `old` is our own last published value, not a re-read of the shared field a
        // hostile back could scribble on; with an honest back they are equal.
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        self.push_requests()?;
        // mb(): the back must see the new req_prod before we read req_event. A SeqCst
        // fence between our store and load pairs with the one in the back's
        // final_check_for_requests (store req_event; mb; load req_prod).
        SharedMem::fence_full();
        let event = self.geo.mem.load_u32_relaxed(REQ_EVENT_OFFSET)?;
        Ok(needs_notify(old, new, event))
    }

    /// Reads and validates the back's `rsp_prod`; returns the responses available.
    #[inline]
    fn refresh_responses(&mut self) -> Result<u32, RingError> {
        // rp = rsp_prod; rmb(): Acquire orders the following entry reads after it.
        let rsp_prod = self.geo.mem.load_u32_acquire(RSP_PROD_OFFSET)?;
        let available = rsp_prod.wrapping_sub(self.rsp_cons);
        // Each response answers one request the back could see: at most the published
        // requests not yet answered. Covers "behind rsp_cons" too (the difference wraps
        // to a huge number).
        if available > self.req_prod_published.wrapping_sub(self.rsp_cons) {
            return Err(RingError::ResponseOverflow {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                req_prod: self.req_prod_published,
            });
        }
        self.rsp_prod_seen = rsp_prod;
        Ok(available)
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`: re-reads `rsp_prod` and counts the responses
    /// not yet consumed.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        self.refresh_responses()
    }

    /// Takes the next response (`RING_COPY_RESPONSE` + `rsp_cons++`), or `None` when
    /// there is none. Re-reads `rsp_prod` only when the last seen batch is used up.
    #[inline]
    pub fn pop_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_cons == self.rsp_prod_seen && self.refresh_responses()? == 0 {
            return Ok(None);
        }
        let rsp = self.geo.mem.read(self.geo.slot(self.rsp_cons))?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: true if responses are pending; otherwise sets
    /// `rsp_event = rsp_cons + 1` (asking for a notification on the next response) and
    /// checks again, so that sleeping after `false` cannot miss a response.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.refresh_responses()? > 0 {
            return Ok(true);
        }
        self.geo
            .mem
            .store_u32_relaxed(RSP_EVENT_OFFSET, self.rsp_cons.wrapping_add(1))?;
        // mb(): our rsp_event store must be visible before we re-read rsp_prod; pairs
        // with the fence in the back's push_responses_and_check_notify.
        SharedMem::fence_full();
        Ok(self.refresh_responses()? > 0)
    }

    /// A snapshot of the shared header (diagnostics).
    pub fn header(&self) -> Result<SringHeader, RingError> {
        self.geo.header()
    }
}

/// The back end of a ring: consumes requests, produces responses
/// (`*_back_ring_t` plus the shared page).
#[derive(Debug)]
pub struct BackRing<'a, Req, Rsp> {
    geo: Geometry<'a>,
    /// Next response index to fill (`rsp_prod_pvt`).
    rsp_prod_pvt: u32,
    /// The `rsp_prod` we last published.
    rsp_prod_published: u32,
    /// Next request index to consume (`req_cons`).
    req_cons: u32,
    /// The front's `req_prod` as last read and validated.
    req_prod_seen: u32,
    _entries: PhantomData<fn(Rsp) -> Req>,
}

impl<'a, Req, Rsp> BackRing<'a, Req, Rsp>
where
    Req: FromBytes,
    Rsp: IntoBytes + Immutable,
{
    /// `BACK_RING_INIT`: attaches at index 0; the header is the front's to initialise.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, RingError> {
        Self::attach(mem, 0)
    }

    /// `BACK_RING_ATTACH` at the shared `rsp_prod`: takes over a live ring whose
    /// earlier back end went away (a restarted backend daemon). Requests the front
    /// published after the last response are served; answered ones are not seen again.
    /// On a fresh ring (`rsp_prod` 0) this is [`BackRing::new`]. The value is the
    /// peer's to change, but any start is safe: `req_prod` is validated against it.
    pub fn resume(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let start = mem.load_u32_acquire(RSP_PROD_OFFSET)?;
        Self::attach(mem, start)
    }

    /// `BACK_RING_ATTACH`: attaches with private indices `start`.
    pub fn attach(mem: SharedMem<'a>, start: u32) -> Result<Self, RingError> {
        Ok(Self {
            geo: Geometry::new::<Req, Rsp>(mem)?,
            rsp_prod_pvt: start,
            rsp_prod_published: start,
            req_cons: start,
            req_prod_seen: start,
            _entries: PhantomData,
        })
    }

    /// Attaches with responses published up to `rsp_prod` and requests consumed up to
    /// `req_cons` (a restarted backend that kept a record of the requests it had taken
    /// and not answered): at most a ring's worth may lie between them.
    pub fn attach_at(mem: SharedMem<'a>, rsp_prod: u32, req_cons: u32) -> Result<Self, RingError> {
        let mut ring = Self::attach(mem, rsp_prod)?;
        if req_cons.wrapping_sub(rsp_prod) > ring.geo.size {
            return Err(RingError::Full);
        }
        ring.req_cons = req_cons;
        ring.req_prod_seen = req_cons;
        Ok(ring)
    }

    /// `RING_SIZE`: number of slots.
    pub fn size(&self) -> u32 {
        self.geo.size
    }

    /// `req_cons`: index of the next request to consume.
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// `rsp_prod_pvt`: index the next response goes to.
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    /// Requests consumed and not yet answered.
    #[inline]
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Reads and validates the front's `req_prod`; returns the requests available.
    #[inline]
    fn refresh_requests(&mut self) -> Result<u32, RingError> {
        // rp = req_prod; rmb(): Acquire orders the following entry reads after it.
        let req_prod = self.geo.mem.load_u32_acquire(REQ_PROD_OFFSET)?;
        let available = req_prod.wrapping_sub(self.req_cons);
        // The front can have at most `size` requests unanswered, i.e. `size -
        // unanswered()` beyond our consumer (`RING_REQUEST_PROD_OVERFLOW`); an index
        // behind req_cons wraps to a huge `available` and fails the same test.
        // `unanswered() <= size` is our own invariant.
        if available > self.geo.size - self.unanswered() {
            return Err(RingError::RequestOverflow {
                req_prod,
                req_cons: self.req_cons,
                rsp_prod_pvt: self.rsp_prod_pvt,
                size: self.geo.size,
            });
        }
        self.req_prod_seen = req_prod;
        Ok(available)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`: re-reads `req_prod` and counts the requests not
    /// yet consumed.
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        self.refresh_requests()
    }

    /// Takes the next request (`RING_COPY_REQUEST` + `req_cons++`), or `None` when there
    /// is none. Re-reads `req_prod` only when the last seen batch is used up.
    #[inline]
    pub fn pop_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.req_cons == self.req_prod_seen && self.refresh_requests()? == 0 {
            return Ok(None);
        }
        let req = self.geo.mem.read(self.geo.slot(self.req_cons))?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Copies `rsp` into the next response slot (`RING_GET_RESPONSE` + `rsp_prod_pvt++`);
    /// the slot is that of the oldest consumed, unanswered request. Invisible to the
    /// front until published.
    #[inline]
    pub fn push_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::NoRequestToAnswer);
        }
        self.geo.mem.write(self.geo.slot(self.rsp_prod_pvt), rsp)?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES`: publishes the pushed responses without checking `rsp_event`.
    #[inline]
    pub fn push_responses(&mut self) -> Result<(), RingError> {
        // wmb(); rsp_prod = rsp_prod_pvt (Release store).
        self.geo
            .mem
            .store_u32_release(RSP_PROD_OFFSET, self.rsp_prod_pvt)?;
        self.rsp_prod_published = self.rsp_prod_pvt;
        Ok(())
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the pushed responses and says
    /// whether the front asked to be notified of them.
    pub fn push_responses_and_check_notify(&mut self) -> Result<bool, RingError> {
        let old = self.rsp_prod_published;
        let new = self.rsp_prod_pvt;
        self.push_responses()?;
        // mb(): pairs with the fence in the front's final_check_for_responses.
        SharedMem::fence_full();
        let event = self.geo.mem.load_u32_relaxed(RSP_EVENT_OFFSET)?;
        Ok(needs_notify(old, new, event))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: true if requests are pending; otherwise sets
    /// `req_event = req_cons + 1` and checks again, so that sleeping after `false`
    /// cannot miss a request.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        self.final_check_for_requests_at_least(1)
    }

    /// [`Self::final_check_for_requests`] for a consumer that needs `n` requests at
    /// once (a netif RX frame over several slots; `n` of 0 counts as 1): true if at
    /// least `n` are unconsumed; otherwise sets `req_event = req_cons + n`, so the
    /// front's push that makes `n` available notifies (not each single request before
    /// it), and checks again. Sleeping after `false` cannot miss that push, and a
    /// consumer waiting for `n` does not spin on fewer.
    pub fn final_check_for_requests_at_least(&mut self, n: u32) -> Result<bool, RingError> {
        let n = n.max(1);
        if self.refresh_requests()? >= n {
            return Ok(true);
        }
        self.geo
            .mem
            .store_u32_relaxed(REQ_EVENT_OFFSET, self.req_cons.wrapping_add(n))?;
        // mb(): pairs with the fence in the front's push_requests_and_check_notify.
        SharedMem::fence_full();
        Ok(self.refresh_requests()? >= n)
    }

    /// A snapshot of the shared header (diagnostics).
    pub fn header(&self) -> Result<SringHeader, RingError> {
        self.geo.header()
    }
}

#[cfg(test)]
mod tests {
    use crate::shared::SharedPages;

    #[test]
    fn front_resume_keeps_private_indices_and_refuses_impossible_ones() {
        let pages = SharedPages::new(1);
        let mut f = FrontRing::<u64, u64>::init(pages.mem()).unwrap();
        f.push_request(&1).unwrap();
        let at = f.indices();
        let g = FrontRing::<u64, u64>::resume(pages.mem(), at).unwrap();
        assert_eq!(
            (g.req_prod_pvt(), g.free_requests()),
            (1, f.free_requests())
        );
        let bad = FrontIndices {
            req_prod_pvt: 1000,
            ..FrontIndices::default()
        };
        assert!(matches!(
            FrontRing::<u64, u64>::resume(pages.mem(), bad),
            Err(RingError::Full)
        ));
        let bad = FrontIndices {
            rsp_prod_seen: 1,
            ..FrontIndices::default()
        };
        assert!(FrontRing::<u64, u64>::resume(pages.mem(), bad).is_err());
    }

    use super::*;
    use zerocopy::FromZeros;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
    #[repr(C)]
    struct Req {
        id: u64,
        body: [u8; 104],
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
    #[repr(C)]
    struct Rsp {
        id: u64,
        status: i16,
        _pad: [u8; 6],
    }

    fn req(id: u64) -> Req {
        Req {
            id,
            body: [id as u8; 104],
        }
    }

    fn rsp(id: u64) -> Rsp {
        Rsp {
            id,
            status: 0,
            _pad: [0; 6],
        }
    }

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    #[test]
    fn geometry_matches_ring_h() {
        // 112-byte blkif-sized entries: (4096 - 64) / 112 = 36 -> 32.
        assert_eq!(entry_size::<Req, Rsp>(), 112);
        assert_eq!(ring_size(4096, 112), Ok(32));
        assert_eq!(ring_size(2 * 4096, 112), Ok(64));
        assert_eq!(ring_size(4096, 8), Ok(256)); // 504 -> 256
        assert_eq!(ring_size(64 + 12, 12), Ok(1));
        assert!(ring_size(64 + 11, 12).is_err());
        assert!(ring_size(4096, 0).is_err());
        // union { [u8; 12]; u64 } is 16 bytes: size rounded up to the larger alignment.
        assert_eq!(entry_size::<[u8; 12], u64>(), 16);
        assert_eq!(entry_size::<u16, [u8; 3]>(), 4);
    }

    #[test]
    fn notify_rule() {
        assert!(needs_notify(0, 1, 1));
        assert!(!needs_notify(1, 2, 1));
        assert!(needs_notify(0, 5, 3));
        assert!(!needs_notify(0, 5, 6));
        assert!(needs_notify(u32::MAX - 1, 2, 0));
        assert!(!needs_notify(3, 3, 3)); // nothing published: never notify
    }

    #[test]
    fn round_trip_with_notifications() {
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0);
        let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
        let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
        assert_eq!(front.size(), 32);
        assert_eq!(front.free_requests(), 32);

        // A fresh ring has req_event = 1: the first request notifies.
        front.push_request(&req(7)).unwrap();
        assert_eq!(back.unconsumed_requests(), Ok(0), "not yet published");
        assert!(front.push_requests_and_check_notify().unwrap());
        // The back has not re-armed (req_event still 1): further pushes do not notify.
        front.push_request(&req(8)).unwrap();
        assert!(!front.push_requests_and_check_notify().unwrap());

        assert_eq!(back.pop_request().unwrap(), Some(req(7)));
        assert_eq!(back.pop_request().unwrap(), Some(req(8)));
        assert_eq!(back.pop_request().unwrap(), None);
        assert!(!back.final_check_for_requests().unwrap());
        assert_eq!(back.header().unwrap().req_event, 3);

        back.push_response(&rsp(7)).unwrap();
        back.push_response(&rsp(8)).unwrap();
        assert_eq!(
            back.push_response(&rsp(9)),
            Err(RingError::NoRequestToAnswer)
        );
        // rsp_event is still 1 from init: response 0 (index 0 -> 1) crosses it.
        assert!(back.push_responses_and_check_notify().unwrap());
        assert_eq!(front.pop_response().unwrap(), Some(rsp(7)));
        assert_eq!(front.pop_response().unwrap(), Some(rsp(8)));
        assert_eq!(front.pop_response().unwrap(), None);
        assert!(!front.final_check_for_responses().unwrap());

        // Now the back sleeps with req_event = 3: the next request notifies.
        front.push_request(&req(9)).unwrap();
        assert!(front.push_requests_and_check_notify().unwrap());
    }

    #[test]
    fn resumed_back_serves_only_unanswered_requests() {
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0);
        let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
        // 40 round trips (past one lap of the 32-slot ring), then the back dies.
        {
            let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
            for i in 0..40 {
                front.push_request(&req(i)).unwrap();
                front.push_requests_and_check_notify().unwrap();
                assert_eq!(back.pop_request().unwrap(), Some(req(i)));
                back.push_response(&rsp(i)).unwrap();
                back.push_responses_and_check_notify().unwrap();
                assert_eq!(front.pop_response().unwrap(), Some(rsp(i)));
            }
        }
        // One request published while no back end ran.
        front.push_request(&req(40)).unwrap();
        front.push_requests_and_check_notify().unwrap();
        // A fresh back at index 0 would take 41 "requests" from a 32-slot ring.
        assert!(BackRing::<Req, Rsp>::new(mem)
            .unwrap()
            .pop_request()
            .is_err());
        let mut back = BackRing::<Req, Rsp>::resume(mem).unwrap();
        assert_eq!(back.pop_request().unwrap(), Some(req(40)));
        assert_eq!(back.pop_request().unwrap(), None);
        back.push_response(&rsp(40)).unwrap();
        back.push_responses_and_check_notify().unwrap();
        assert_eq!(front.pop_response().unwrap(), Some(rsp(40)));
    }

    #[test]
    fn full_ring_refuses_and_recovers() {
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0);
        let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
        let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
        for i in 0..32 {
            front.push_request(&req(i)).unwrap();
        }
        assert!(front.is_full());
        assert_eq!(front.push_request(&req(99)), Err(RingError::Full));
        front.push_requests().unwrap();
        for i in 0..32 {
            assert_eq!(back.pop_request().unwrap(), Some(req(i)));
            back.push_response(&rsp(i)).unwrap();
        }
        back.push_responses().unwrap();
        assert_eq!(front.pop_response().unwrap(), Some(rsp(0)));
        assert_eq!(front.free_requests(), 1);
        front.push_request(&req(32)).unwrap();
    }

    #[test]
    fn final_check_sees_late_request() {
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0);
        let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
        let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
        assert!(!back.final_check_for_requests().unwrap());
        front.push_request(&req(1)).unwrap();
        front.push_requests().unwrap(); // published without looking at req_event
        assert!(back.final_check_for_requests().unwrap());
    }

    #[test]
    fn hostile_req_prod_is_an_error() {
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0);
        let _front = FrontRing::<Req, Rsp>::init(mem).unwrap();
        let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
        mem.store_u32_relaxed(REQ_PROD_OFFSET, 33).unwrap();
        assert!(matches!(
            back.pop_request(),
            Err(RingError::RequestOverflow { req_prod: 33, .. })
        ));
        mem.store_u32_relaxed(REQ_PROD_OFFSET, u32::MAX).unwrap(); // "behind" req_cons
        assert!(back.unconsumed_requests().is_err());
        mem.store_u32_relaxed(REQ_PROD_OFFSET, 32).unwrap();
        assert_eq!(back.unconsumed_requests(), Ok(32));
        assert!(back.pop_request().unwrap().is_some());
        assert_eq!(back.req_cons(), 1);
    }

    #[test]
    fn hostile_rsp_prod_is_an_error() {
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0);
        let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
        front.push_request(&req(1)).unwrap();
        // One request pushed but unpublished: no response can exist yet.
        mem.store_u32_relaxed(RSP_PROD_OFFSET, 1).unwrap();
        assert!(matches!(
            front.pop_response(),
            Err(RingError::ResponseOverflow { rsp_prod: 1, .. })
        ));
        front.push_requests().unwrap();
        assert!(front.pop_response().unwrap().is_some());
        assert_eq!(front.pop_response(), Ok(None));
    }

    #[test]
    fn rejects_bad_areas() {
        let mut small = [0u32; 19]; // 76 bytes < 64 + 112
        let mem = SharedMem::from_mut_slice(small.as_mut_bytes());
        assert!(matches!(
            FrontRing::<Req, Rsp>::init(mem),
            Err(RingError::AreaTooSmall {
                len: 76,
                needed: 176
            })
        ));
        let mut page = Page([0; 4096]);
        let mem = SharedMem::from_mut_slice(&mut page.0[1..]);
        assert!(matches!(
            BackRing::<Req, Rsp>::new(mem),
            Err(RingError::Misaligned { .. })
        ));
        let _ = Req::new_zeroed();
    }
}
