//! The back view ([`BackRing`]): consumes requests, validates the front's `req_prod`,
//! and produces responses; attaching to a live ring after a backend restart.

use super::sring::{
    needs_notify, Geometry, SringHeader, REQ_EVENT_OFFSET, REQ_PROD_OFFSET, RSP_EVENT_OFFSET,
    RSP_PROD_OFFSET,
};
use super::RingError;
use crate::shared::SharedMem;
use core::marker::PhantomData;
use zerocopy::{FromBytes, Immutable, IntoBytes};

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
