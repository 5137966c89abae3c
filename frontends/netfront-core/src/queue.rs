//! One queue: a TX and an RX ring, their event channel(s), and the pool pages the data
//! goes through (one granted page per TX id and per RX ring slot, granted for as long
//! as the rings exist).

use crate::error::{NegotiationError, ProtocolError, TxError};
use crate::Stats;
use alloc::vec::Vec;
use sluice_abi::netif::{
    NetRxFlags, NetTxFlags, NetifExtra, NetifExtraInfo, NetifGsoType, NetifRsp, NetifRxFrontRing,
    NetifRxRequest, NetifRxResponse, NetifTxFrontRing, NetifTxRequest, XEN_NETIF_MAX_TX_SIZE,
    XEN_NETIF_NR_SLOTS_MIN,
};
use sluice_abi::ring::{FrontIndices, RingError};
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{copy_shared, Pages, Platform, SeamError};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Shortest packet either way: an Ethernet header.
pub const MIN_PACKET: usize = 14;
/// Most data slots of one packet either way (`XEN_NETIF_NR_SLOTS_MIN`; Linux's
/// netfront never sends more and drops received packets with more).
pub const MAX_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN;

/// How the checksum of a transmitted packet stands (Linux's `ip_summed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxCsum {
    /// Filled in (or none).
    #[default]
    Complete,
    /// Left blank for the backend to fill in (`CHECKSUM_PARTIAL`).
    Partial,
    /// Known good (`CHECKSUM_UNNECESSARY`).
    Validated,
}

/// Offloads asked for one transmitted packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// Checksum state.
    pub csum: TxCsum,
    /// TCP segmentation by the backend: protocol and segment size.
    pub gso: Option<(NetifGsoType, u16)>,
}

/// Part of a received packet: `len` bytes at `offset` in RX slot `slot`'s page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RxFrag {
    slot: u16,
    offset: u16,
    len: u16,
}

/// A received packet, valid during the delivery callback.
#[derive(Debug)]
pub struct RxPacket<'a, Pp> {
    pool: &'a [Granted<Pp>],
    frags: &'a [RxFrag],
    /// Bytes in the packet.
    pub len: usize,
    /// The first response's flags (checksum state).
    pub flags: NetRxFlags,
    /// Segmentation offload the backend left to us: protocol and segment size.
    pub gso: Option<(NetifGsoType, u16)>,
}

impl<Pp: Pages> RxPacket<'_, Pp> {
    /// Copies the packet into `dst`, which must be exactly [`len`](Self::len) bytes
    /// (else [`SeamError::OutOfBounds`] and nothing is promised about `dst`). Each byte
    /// is read from the shared pages once.
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<(), SeamError> {
        if dst.len() != self.len {
            return Err(SeamError::OutOfBounds {
                offset: 0,
                len: dst.len(),
                size: self.len,
            });
        }
        self.copy_range(0, dst)
    }

    /// Copies bytes `offset..offset + dst.len()` of the packet into `dst` (a packet
    /// copied piecewise into a buffer of several parts, each byte read once when the
    /// ranges do not overlap). A range past [`len`](Self::len) is
    /// [`SeamError::OutOfBounds`], nothing promised about `dst`.
    pub fn copy_range(&self, offset: usize, dst: &mut [u8]) -> Result<(), SeamError> {
        let out_of_bounds = SeamError::OutOfBounds {
            offset,
            len: dst.len(),
            size: self.len,
        };
        let end = offset.checked_add(dst.len()).ok_or(out_of_bounds)?;
        if end > self.len {
            return Err(out_of_bounds);
        }
        // `pos`: packet offset of the current fragment's first byte.
        let mut pos = 0;
        for f in self.frags {
            let flen = f.len as usize;
            let (lo, hi) = (offset.max(pos), end.min(pos + flen));
            if lo < hi {
                let src = self.pool[f.slot as usize]
                    .page()
                    .slice(f.offset as usize + (lo - pos), hi - lo)?;
                src.read_bytes(0, &mut dst[lo - offset..hi - offset])
                    .map_err(|_| SeamError::OutOfBounds {
                        offset: f.offset as usize,
                        len: flen,
                        size: XEN_PAGE_SIZE,
                    })?;
            }
            pos += flen;
            if pos >= end {
                break;
            }
        }
        Ok(())
    }

    /// The backend left the checksum blank (a local sender's offload): the stack must
    /// treat it as `CHECKSUM_PARTIAL`.
    pub fn csum_blank(&self) -> bool {
        self.flags.contains(NetRxFlags::CSUM_BLANK)
    }

    /// The backend says the checksum is good.
    pub fn data_validated(&self) -> bool {
        self.flags.contains(NetRxFlags::DATA_VALIDATED)
    }
}

/// Why a received packet was dropped (counted, never fatal: Linux drops these too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxDrop {
    Status,
    OutsidePage,
    TooManySlots,
    BadExtra,
    Length,
}

/// A packet whose responses are being consumed.
struct RxChain {
    /// Ring index of its first response: buffers from here on are held.
    start: u32,
    frags: Vec<RxFrag>,
    len: usize,
    flags: NetRxFlags,
    gso: Option<(NetifGsoType, u16)>,
    /// Extra-info slots still to come.
    in_extras: bool,
    /// Data slots after the extras.
    more_data: bool,
    bad: Option<RxDrop>,
}

/// A frontend-owned page and its grant (none yet while setting up).
#[derive(Debug)]
pub(crate) struct Granted<Pp> {
    /// Always `Some` until released or dropped.
    page: Option<Pp>,
    gref: Option<GrantRef>,
}

impl<Pp> Granted<Pp> {
    fn new(page: Pp) -> Self {
        Granted {
            page: Some(page),
            gref: None,
        }
    }

    fn page(&self) -> &Pp {
        self.page.as_ref().expect("live until released")
    }
}

impl<Pp> Drop for Granted<Pp> {
    /// A page dropped while still granted (the frontend dropped without
    /// [`crate::Frontend::shutdown`]) is leaked, never freed: the backend may still
    /// reach it.
    fn drop(&mut self) {
        if self.gref.is_some() {
            core::mem::forget(self.page.take());
        }
    }
}

pub(crate) struct Queue<Pp> {
    index: usize,
    tx_ring: Granted<Pp>,
    tx_at: FrontIndices,
    rx_ring: Granted<Pp>,
    rx_at: FrontIndices,
    pub(crate) tx_port: Option<EvtchnPort>,
    /// Equal to `tx_port` without split event channels.
    pub(crate) rx_port: Option<EvtchnPort>,
    split: bool,
    /// One page per TX id.
    tx_pool: Vec<Granted<Pp>>,
    tx_in_flight: Vec<bool>,
    tx_free: Vec<u16>,
    /// One page per RX ring slot (`index & (size - 1)`), posted with that id.
    rx_pool: Vec<Granted<Pp>>,
    rx_chain: Option<RxChain>,
    rx_frags: Vec<RxFrag>,
}

fn ring_err(queue: usize) -> impl Fn(RingError) -> ProtocolError {
    move |error| ProtocolError::Ring { queue, error }
}

impl<Pp: Pages> Queue<Pp> {
    /// Allocates, initialises and grants both rings and the pools, and allocates the
    /// event channel(s). On an error everything allocated so far is released.
    pub(crate) fn setup<P: Platform<Pages = Pp>>(
        p: &mut P,
        backend: DomId,
        index: usize,
        split: bool,
        stats: &mut Stats,
    ) -> Result<Self, NegotiationError> {
        let page = |p: &mut P| p.alloc_pages(1).map_err(NegotiationError::Platform);
        let tx_page = page(p)?;
        let rx_page = page(p)?;
        let tx_at = NetifTxFrontRing::init(tx_page.mem()).map_err(NegotiationError::Ring)?;
        let rx_at = NetifRxFrontRing::init(rx_page.mem()).map_err(NegotiationError::Ring)?;
        let (tx_size, rx_size) = (tx_at.size() as usize, rx_at.size() as usize);
        let mut q = Queue {
            index,
            tx_at: tx_at.indices(),
            rx_at: rx_at.indices(),
            tx_ring: Granted::new(tx_page),
            rx_ring: Granted::new(rx_page),
            tx_port: None,
            rx_port: None,
            split,
            tx_pool: Vec::new(),
            tx_in_flight: alloc::vec![false; tx_size],
            tx_free: (0..tx_size as u16).rev().collect(),
            rx_pool: Vec::new(),
            rx_chain: None,
            rx_frags: Vec::with_capacity(MAX_SLOTS),
        };
        match q.grant_all(p, backend, tx_size, rx_size) {
            Ok(()) => Ok(q),
            Err(e) => {
                stats.quarantined_pages += q.release(p);
                Err(e)
            }
        }
    }

    fn grant_all<P: Platform<Pages = Pp>>(
        &mut self,
        p: &mut P,
        backend: DomId,
        tx_size: usize,
        rx_size: usize,
    ) -> Result<(), NegotiationError> {
        let err = NegotiationError::Platform;
        self.tx_ring.gref = Some(
            p.grant_access(backend, self.tx_ring.page(), 0, false)
                .map_err(err)?,
        );
        self.rx_ring.gref = Some(
            p.grant_access(backend, self.rx_ring.page(), 0, false)
                .map_err(err)?,
        );
        for (pool, n, readonly) in [(0, tx_size, true), (1, rx_size, false)] {
            for _ in 0..n {
                let page = p.alloc_pages(1).map_err(err)?;
                let v = if pool == 0 {
                    &mut self.tx_pool
                } else {
                    &mut self.rx_pool
                };
                v.push(Granted::new(page));
                let last = v.last_mut().expect("just pushed");
                last.gref = Some(
                    p.grant_access(backend, last.page(), 0, readonly)
                        .map_err(err)?,
                );
            }
        }
        let port = p.bind_unbound_port(backend, self.index).map_err(err)?;
        self.tx_port = Some(port);
        self.rx_port = Some(port);
        if self.split {
            self.rx_port = Some(p.bind_unbound_port(backend, self.index).map_err(err)?);
        }
        Ok(())
    }

    pub(crate) fn tx_ring_ref(&self) -> GrantRef {
        self.tx_ring.gref.expect("granted at setup")
    }

    pub(crate) fn rx_ring_ref(&self) -> GrantRef {
        self.rx_ring.gref.expect("granted at setup")
    }

    pub(crate) fn split(&self) -> bool {
        self.split
    }

    /// Unbinds the channels and ends every grant; pages the backend still maps are
    /// leaked (never freed or reused), the rest freed. Returns the pages leaked.
    pub(crate) fn release<P: Platform<Pages = Pp>>(self, p: &mut P) -> u64 {
        if let Some(port) = self.tx_port {
            p.unbind(port);
        }
        if self.split {
            if let Some(port) = self.rx_port {
                p.unbind(port);
            }
        }
        let mut leaked = 0;
        let all = [self.tx_ring, self.rx_ring]
            .into_iter()
            .chain(self.tx_pool)
            .chain(self.rx_pool);
        for mut g in all {
            let in_use = match g.gref.take() {
                Some(gref) => p.end_access(gref).is_err(),
                None => false,
            };
            let page = g.page.take().expect("live until released");
            if in_use {
                leaked += page.count() as u64;
                p.leak(page);
            }
            // Otherwise `page` is dropped here: freed.
        }
        leaked
    }

    fn tx<R>(&mut self, f: impl FnOnce(&mut NetifTxFrontRing<'_>) -> R) -> Result<R, RingError> {
        let mut ring = NetifTxFrontRing::resume(self.tx_ring.page().mem(), self.tx_at)?;
        let r = f(&mut ring);
        self.tx_at = ring.indices();
        Ok(r)
    }

    fn rx<R>(&mut self, f: impl FnOnce(&mut NetifRxFrontRing<'_>) -> R) -> Result<R, RingError> {
        with_rx(self.rx_ring.page(), &mut self.rx_at, f)
    }

    /// Whether a packet of the largest kind fits now (data slots, a GSO slot, ids).
    pub(crate) fn tx_room(&mut self) -> bool {
        let free = self.tx(|r| r.free_requests()).unwrap_or(0) as usize;
        free > MAX_SLOTS && self.tx_free.len() >= MAX_SLOTS
    }

    /// Copies the packet (`frags` in order) into TX pool pages, fills the requests and
    /// publishes them. Returns whether the backend is to be notified.
    pub(crate) fn transmit(
        &mut self,
        frags: &[SharedMem<'_>],
        off: &TxOffload,
        max_len: usize,
    ) -> Result<bool, TxError> {
        let len: usize = frags.iter().map(|f| f.len()).sum();
        if !(MIN_PACKET..=max_len.min(XEN_NETIF_MAX_TX_SIZE)).contains(&len) {
            return Err(TxError::BadLength(len));
        }
        let nslots = len.div_ceil(XEN_PAGE_SIZE);
        if nslots > MAX_SLOTS {
            return Err(TxError::BadLength(len));
        }
        let extra = usize::from(off.gso.is_some());
        let free = self.tx(|r| r.free_requests()).map_err(|_| TxError::Busy)? as usize;
        if free < nslots + extra || self.tx_free.len() < nslots {
            return Err(TxError::Busy);
        }
        // No allocation here: a driver sends from atomic context.
        let mut id_buf = [0u16; MAX_SLOTS];
        let ids = &mut id_buf[..nslots];
        for id in ids.iter_mut() {
            *id = self.tx_free.pop().expect("counted");
        }
        let ids = &*ids;
        if let Err(e) = self.copy_packet(frags, ids) {
            self.tx_free.extend(ids.iter().rev());
            return Err(TxError::Copy(e));
        }
        let mut first_flags = match off.csum {
            TxCsum::Complete => NetTxFlags::empty(),
            TxCsum::Partial => NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED,
            TxCsum::Validated => NetTxFlags::DATA_VALIDATED,
        };
        if nslots > 1 {
            first_flags |= NetTxFlags::MORE_DATA;
        }
        if extra > 0 {
            first_flags |= NetTxFlags::EXTRA_INFO;
        }
        let mut req_buf = [NetifTxRequest::new_zeroed(); MAX_SLOTS + 1];
        let mut nreqs = 0;
        for (i, &id) in ids.iter().enumerate() {
            let gref = self.tx_pool[id as usize].gref.expect("granted at setup");
            let (flags, size) = if i == 0 {
                (first_flags, len as u16)
            } else {
                let more = i + 1 < nslots;
                let bytes = (len - i * XEN_PAGE_SIZE).min(XEN_PAGE_SIZE);
                let f = if more {
                    NetTxFlags::MORE_DATA
                } else {
                    NetTxFlags::empty()
                };
                (f, bytes as u16)
            };
            req_buf[nreqs] = NetifTxRequest {
                gref,
                offset: 0,
                flags: flags.bits(),
                id,
                size,
            };
            nreqs += 1;
            if i == 0 {
                if let Some((gso_type, size)) = off.gso {
                    let info = NetifExtraInfo::encode(
                        &NetifExtra::Gso {
                            size,
                            gso_type,
                            features: 0,
                        },
                        false,
                    );
                    let mut bytes = [0u8; core::mem::size_of::<NetifTxRequest>()];
                    bytes[..8].copy_from_slice(info.as_bytes());
                    req_buf[nreqs] = NetifTxRequest::read_from_bytes(&bytes).expect("same size");
                    nreqs += 1;
                }
            }
        }
        for &id in ids {
            self.tx_in_flight[id as usize] = true;
        }
        let pushed = self.tx(|r| {
            for req in &req_buf[..nreqs] {
                r.push_request(req)?;
            }
            r.push_requests_and_check_notify()
        });
        match pushed {
            Ok(Ok(notify)) => Ok(notify),
            // Free slots were counted above, so the ring cannot refuse; if it does the
            // packet is lost, never half sent.
            _ => Err(TxError::Busy),
        }
    }

    fn copy_packet(&self, frags: &[SharedMem<'_>], ids: &[u16]) -> Result<(), SeamError> {
        let (mut slot, mut off) = (0usize, 0usize);
        for frag in frags {
            let mut at = 0;
            while at < frag.len() {
                let n = (frag.len() - at).min(XEN_PAGE_SIZE - off);
                let page = self.tx_pool[ids[slot] as usize].page();
                copy_shared(page.mem(), off, *frag, at, n)?;
                at += n;
                off += n;
                if off == XEN_PAGE_SIZE {
                    slot += 1;
                    off = 0;
                }
            }
        }
        Ok(())
    }

    /// Consumes TX responses: frees their ids, counts errors. Returns responses taken.
    pub(crate) fn tx_complete(&mut self, stats: &mut Stats) -> Result<usize, ProtocolError> {
        let queue = self.index;
        let size = self.tx_in_flight.len();
        let mut taken = 0;
        loop {
            let rsp = match self.tx(|r| r.pop_response()).and_then(|r| r) {
                Ok(Some(rsp)) => rsp,
                Ok(None) => {
                    let more = self
                        .tx(|r| r.final_check_for_responses())
                        .and_then(|r| r)
                        .map_err(ring_err(queue))?;
                    if more {
                        continue;
                    }
                    return Ok(taken);
                }
                Err(e) => return Err(ring_err(queue)(e)),
            };
            taken += 1;
            // Read once: `rsp` is our copy of the slot.
            if rsp.status == NetifRsp::Null.raw() {
                continue; // the slot of an extra-info request
            }
            let id = rsp.id;
            if id as usize >= size {
                return Err(ProtocolError::TxIdOutOfRange { queue, id });
            }
            if !core::mem::replace(&mut self.tx_in_flight[id as usize], false) {
                return Err(ProtocolError::TxIdNotInFlight { queue, id });
            }
            self.tx_free.push(id);
            if rsp.status != NetifRsp::Okay.raw() {
                stats.tx_errors += 1;
            }
        }
    }

    /// Posts every free RX buffer (those not holding an undelivered packet) and
    /// publishes them. Returns whether the backend is to be notified.
    pub(crate) fn rx_refill(&mut self) -> Result<bool, ProtocolError> {
        let hold = self.rx_chain.as_ref().map(|c| c.start);
        let pool = &self.rx_pool;
        let mask = pool.len() as u32 - 1;
        with_rx(self.rx_ring.page(), &mut self.rx_at, |r| {
            let start = hold.unwrap_or(r.rsp_cons());
            let want = start
                .wrapping_add(pool.len() as u32)
                .wrapping_sub(r.req_prod_pvt())
                .min(r.free_requests());
            for _ in 0..want {
                let i = r.req_prod_pvt() & mask;
                r.push_request(&NetifRxRequest {
                    id: i as u16,
                    pad: 0,
                    gref: pool[i as usize].gref.expect("granted at setup"),
                })?;
            }
            r.push_requests_and_check_notify()
        })
        .and_then(|r| r)
        .map_err(ring_err(self.index))
    }

    /// Consumes RX responses and hands each whole, valid packet to `deliver`, at most
    /// `budget` packets (dropped ones included). Returns (packets taken, more pending).
    pub(crate) fn rx_poll(
        &mut self,
        budget: usize,
        stats: &mut Stats,
        deliver: &mut dyn FnMut(&RxPacket<'_, Pp>),
    ) -> Result<(usize, bool), ProtocolError> {
        let queue = self.index;
        let mask = self.rx_pool.len() as u32 - 1;
        let mut done = 0;
        while done < budget {
            let popped = self
                .rx(|r| {
                    let at = r.rsp_cons();
                    r.pop_response().map(|o| o.map(|rsp| (at, rsp)))
                })
                .and_then(|r| r)
                .map_err(ring_err(queue))?;
            let Some((at, rsp)) = popped else {
                let more = self
                    .rx(|r| r.final_check_for_responses())
                    .and_then(|r| r)
                    .map_err(ring_err(queue))?;
                if more {
                    continue;
                }
                return Ok((done, false));
            };
            if !self.rx_take(at, &rsp, mask)? {
                continue;
            }
            let chain = self.rx_chain.take().expect("complete chain");
            done += 1;
            match chain.bad {
                Some(_) => stats.rx_errors += 1,
                None => {
                    stats.rx_packets += 1;
                    stats.rx_bytes += chain.len as u64;
                    deliver(&RxPacket {
                        pool: &self.rx_pool,
                        frags: &chain.frags,
                        len: chain.len,
                        flags: chain.flags,
                        gso: chain.gso,
                    });
                }
            }
            self.rx_frags = chain.frags;
            self.rx_frags.clear();
        }
        Ok((done, true))
    }

    /// Adds response `rsp` (ring index `at`) to the packet being assembled; returns
    /// whether the packet is complete.
    fn rx_take(
        &mut self,
        at: u32,
        rsp: &NetifRxResponse,
        mask: u32,
    ) -> Result<bool, ProtocolError> {
        let queue = self.index;
        let Some(chain) = self.rx_chain.as_mut() else {
            // First response of a packet.
            let expected = (at & mask) as u16;
            if rsp.id != expected {
                return Err(ProtocolError::RxIdMismatch {
                    queue,
                    id: rsp.id,
                    expected,
                });
            }
            let flags = NetRxFlags::from_bits_retain(rsp.flags);
            let mut chain = RxChain {
                start: at,
                frags: core::mem::take(&mut self.rx_frags),
                len: 0,
                flags,
                gso: None,
                in_extras: flags.contains(NetRxFlags::EXTRA_INFO),
                more_data: flags.contains(NetRxFlags::MORE_DATA),
                bad: None,
            };
            chain.add_data(rsp, at & mask);
            let complete = !chain.in_extras && !chain.more_data;
            self.rx_chain = Some(chain);
            if complete {
                self.rx_chain.as_mut().expect("set").finish();
            }
            return Ok(complete);
        };
        if chain.in_extras {
            // This slot holds an extra-info item, not a response with an id.
            let info = NetifExtraInfo::read_from_bytes(rsp.as_bytes()).expect("same size");
            match info.decode() {
                Ok(NetifExtra::Gso { size, gso_type, .. })
                    if size > 0 && gso_type != NetifGsoType::None =>
                {
                    chain.gso = Some((gso_type, size))
                }
                Ok(NetifExtra::Hash { .. }) => {}
                _ => chain.bad = chain.bad.or(Some(RxDrop::BadExtra)),
            }
            chain.in_extras = info.more();
        } else {
            let expected = (at & mask) as u16;
            if rsp.id != expected {
                return Err(ProtocolError::RxIdMismatch {
                    queue,
                    id: rsp.id,
                    expected,
                });
            }
            chain.more_data =
                NetRxFlags::from_bits_retain(rsp.flags).contains(NetRxFlags::MORE_DATA);
            chain.add_data(rsp, at & mask);
        }
        // A chain can never hold more than the ring's buffers; past the slot limit it is
        // only dropped, once complete.
        if at.wrapping_sub(chain.start) as usize + 1 >= self.rx_pool.len()
            && (chain.in_extras || chain.more_data)
        {
            chain.bad = chain.bad.or(Some(RxDrop::TooManySlots));
            chain.in_extras = false;
            chain.more_data = false;
        }
        let complete = !chain.in_extras && !chain.more_data;
        if complete {
            chain.finish();
        }
        Ok(complete)
    }
}

fn with_rx<Pp: Pages, R>(
    page: &Pp,
    at: &mut FrontIndices,
    f: impl FnOnce(&mut NetifRxFrontRing<'_>) -> R,
) -> Result<R, RingError> {
    let mut ring = NetifRxFrontRing::resume(page.mem(), *at)?;
    let r = f(&mut ring);
    *at = ring.indices();
    Ok(r)
}

impl RxChain {
    fn add_data(&mut self, rsp: &NetifRxResponse, slot: u32) {
        if self.bad.is_some() {
            return;
        }
        let Ok(len) = rsp.byte_count() else {
            self.bad = Some(RxDrop::Status);
            return;
        };
        if rsp.offset as usize + len as usize > XEN_PAGE_SIZE {
            self.bad = Some(RxDrop::OutsidePage);
            return;
        }
        if self.frags.len() == MAX_SLOTS {
            self.bad = Some(RxDrop::TooManySlots);
            return;
        }
        self.frags.push(RxFrag {
            slot: slot as u16,
            offset: rsp.offset,
            len,
        });
        self.len += len as usize;
    }

    fn finish(&mut self) {
        if self.bad.is_none() && self.len < MIN_PACKET {
            self.bad = Some(RxDrop::Length);
        }
    }
}
