//! One queue: a TX and an RX ring, their event channel(s), and the pool pages the data
//! goes through (one granted page per TX id and per RX ring slot, granted for as long
//! as the rings exist).
//!
//! This module holds the types and the queue's life (setup, grants, release, ring
//! access); `tx` transmits and completes, `rx` posts, consumes and assembles.

mod rx;
mod tx;

use crate::error::{NegotiationError, ProtocolError};
use crate::Stats;
use alloc::vec::Vec;
use sluice_abi::netif::{
    NetRxFlags, NetifGsoType, NetifRxFrontRing, NetifTxFrontRing, XEN_NETIF_NR_SLOTS_MIN,
};
use sluice_abi::ring::{FrontIndices, RingError};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{Pages, Platform};

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
