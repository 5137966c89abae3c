//! The front view ([`FrontRing`]): produces requests, consumes responses, and validates
//! the back's `rsp_prod`; [`FrontIndices`] saves its private indices between views.

use super::sring::{
    needs_notify, Geometry, SringHeader, ENTRIES_OFFSET, PVT_OFFSET, REQ_EVENT_OFFSET,
    REQ_PROD_OFFSET, RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};
use super::RingError;
use crate::shared::SharedMem;
use core::marker::PhantomData;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A front ring's private state ([`FrontRing::indices`], [`FrontRing::resume`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontIndices {
    pub(super) req_prod_pvt: u32,
    pub(super) req_prod_published: u32,
    pub(super) rsp_cons: u32,
    pub(super) rsp_prod_seen: u32,
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
