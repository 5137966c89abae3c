//! Serves one netif queue (a TX and an RX ring, one or two event channels, one tap
//! queue) from one thread: an event loop over the event-channel and tap descriptors,
//! never a thread per packet.
//!
//! TX: the guest's requests are copied out of the ring once (into `pending`), parsed
//! ([`parse_tx_packet`]), every slot of up to [`TX_BATCH`] packets fetched with one
//! batched grant copy, each packet written to the tap with its vnet header, every slot
//! answered. RX: up to [`RX_BATCH`] frames read from the tap, each placed in as many
//! of the guest's posted RX requests as it needs (page-sized pieces, a GSO extra slot
//! after the first), all of them filled by one batched grant copy.

use crate::vnet::{self, VnetHdr};
use sluice_abi::netif::{
    parse_tx_packet, NetRxFlags, NetTxFlags, NetifExtraInfo, NetifRsp, NetifRxBackRing,
    NetifRxResponse, NetifTxBackRing, NetifTxRequest, NetifTxResponse, TxPacket,
    XEN_NETIF_NR_SLOTS_MIN,
};
use sluice_abi::ring::RingError;
use sluice_abi::types::{DomId, EvtchnPort};
use sluice_dom0::{warn_limited, CopyPtr, CopySegment, EventChannels, GrantMapper, LogLimiter};
use sluice_xen_sys::VNET_HDR_LEN;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// Most TX packets per grant-copy batch.
pub const TX_BATCH: usize = 64;
/// Most tap frames per grant-copy batch.
pub const RX_BATCH: usize = 64;
/// Bytes of the largest frame a tap hands us (vnet header + 64 KiB GSO frame + Ethernet).
pub const FRAME_BUF: usize = VNET_HDR_LEN + 65536 + vnet::ETH_HLEN;
const PAGE: usize = 4096;

/// A source and sink of Ethernet frames with vnet headers: a tap queue, or a datagram
/// socket in host tests. Non-blocking reads.
pub trait Frames: AsFd + Send + Sync {
    /// One frame into `buf` (`WouldBlock` when none waits).
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// One frame from `parts`.
    fn write_frame(&self, parts: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Which offloaded frames the reader accepts (device-wide; no-op by default).
    fn set_offloads(&self, _csum: bool, _tso4: bool, _tso6: bool) -> io::Result<()> {
        Ok(())
    }
}

impl Frames for sluice_xen_sys::TapDevice {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        sluice_xen_sys::TapDevice::read_frame(self, buf)
    }
    fn write_frame(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        sluice_xen_sys::TapDevice::write_frame(self, parts)
    }
    fn set_offloads(&self, csum: bool, tso4: bool, tso6: bool) -> io::Result<()> {
        sluice_xen_sys::TapDevice::set_offloads(
            self,
            sluice_xen_sys::TapOffloads { csum, tso4, tso6 },
        )
        .map_err(io::Error::other)
    }
}

impl Frames for std::os::unix::net::UnixDatagram {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn write_frame(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        self.send(&whole)
    }
}

/// What the frontend negotiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `feature-sg`: RX packets may span several slots.
    pub sg: bool,
    /// `feature-gso-tcpv4` (with `sg`).
    pub gso4: bool,
    /// `feature-gso-tcpv6` (with `sg`).
    pub gso6: bool,
    /// Checksum offload for IPv4 (not `feature-no-csum-offload`).
    pub csum4: bool,
    /// `feature-ipv6-csum-offload`.
    pub csum6: bool,
}

/// Per-vif counters (all queues).
#[derive(Debug, Default)]
pub struct NetStats {
    /// Guest packets written to the tap.
    pub tx_packets: AtomicU64,
    /// Guest packets dropped (refused chain, bad grant, unplaceable checksum, tap error).
    pub tx_dropped: AtomicU64,
    /// Frames given to the guest.
    pub rx_packets: AtomicU64,
    /// Tap frames dropped (runt, unsupported offload, too large, bad grant).
    pub rx_dropped: AtomicU64,
}

/// Why a queue stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Runaway ring indices or similar: the vif is disconnected.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// A TX chain bad enough to disconnect for.
    #[error("{0}")]
    Protocol(sluice_abi::netif::TxPacketError),
    /// The TX ring is full of one unfinished chain.
    #[error("a TX packet fills the whole ring without ending")]
    Endless,
    /// The published TX requests end inside a packet (an extra-info or more-data flag
    /// with no slot after it): as Linux netback ("Missing extra info", "Asked for N
    /// slots"), a protocol violation, since a frontend publishes whole packets.
    #[error("a TX packet continues past the published requests")]
    Unfinished,
    /// The event channel failed.
    #[error("event channel: {0}")]
    Evtchn(#[from] sluice_dom0::EvtchnError),
    /// Grant copy could not be issued at all.
    #[error("grant copy: {0}")]
    Grant(#[from] sluice_dom0::GrantError),
    /// Waiting failed.
    #[error("poll: {0}")]
    Poll(io::Error),
}

/// One queue's parts.
pub struct Queue<'a, G: GrantMapper, E: EventChannels, T: Frames> {
    /// Log prefix.
    pub name: &'a str,
    /// The frontend's domain.
    pub domid: DomId,
    /// Grant copy.
    pub grants: &'a G,
    /// Bound ports.
    pub evtchn: E,
    /// Local port of TX notifications (the only one without split channels).
    pub tx_port: EvtchnPort,
    /// Local port of RX notifications.
    pub rx_port: EvtchnPort,
    /// This queue of the tap.
    pub tap: &'a T,
    /// What the frontend negotiated.
    pub features: Features,
    /// Set to stop.
    pub stop: &'a AtomicBool,
    /// The vif's log rate limit.
    pub log: &'a LogLimiter,
    /// The vif's counters.
    pub stats: &'a NetStats,
}

/// TX state kept between turns.
#[derive(Default)]
struct TxState {
    /// Requests consumed from the ring, not yet answered (our own copy: read once).
    pending: Vec<NetifTxRequest>,
    bufs: Vec<Vec<u8>>,
}

/// RX state kept between turns.
#[derive(Default)]
struct RxState {
    bufs: Vec<Vec<u8>>,
    /// `bufs[.0]` holds a frame of `.1` bytes waiting for RX requests (the next turn
    /// takes it first).
    held: Option<(usize, usize)>,
}

/// A frame placed in RX requests.
struct RxPlan {
    buf: usize,
    len: usize,
    /// Index of its first response in the turn's response list.
    first_rsp: usize,
    /// (response index, grant, bytes from) per data slot.
    slots: Vec<(usize, sluice_abi::types::GrantRef, usize)>,
}

enum Parsed {
    Good(Box<TxPacket>),
    Dropped,
}

impl<G: GrantMapper, E: EventChannels, T: Frames> Queue<'_, G, E, T> {
    /// Serves the rings until `stop` (Ok) or a protocol violation / device failure (Err).
    pub fn serve(
        &self,
        mut tx: NetifTxBackRing<'_>,
        mut rx: NetifRxBackRing<'_>,
    ) -> Result<(), QueueError> {
        let mut txs = TxState::default();
        let mut rxs = RxState::default();
        let mut fired = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let a = self.tx_turn(&mut tx, &mut txs)?;
            let b = self.rx_turn(&mut rx, &mut rxs)?;
            if a || b {
                continue;
            }
            if tx.final_check_for_requests()? {
                continue;
            }
            let want_tap = rxs.held.is_none();
            if !want_tap && rx.final_check_for_requests()? {
                continue;
            }
            self.wait(want_tap)?;
            fired.clear();
            self.evtchn.read_pending(&mut fired)?;
            for p in &fired {
                self.evtchn.unmask(*p)?;
            }
        }
        Ok(())
    }

    fn wait(&self, want_tap: bool) -> Result<(), QueueError> {
        const TICK: Duration = Duration::from_millis(200);
        let tap: Option<BorrowedFd<'_>> = want_tap.then(|| self.tap.as_fd());
        match self.evtchn.poll_fd() {
            Some(ev) => {
                let mut fds = vec![rustix::event::PollFd::new(
                    &ev,
                    rustix::event::PollFlags::IN,
                )];
                if let Some(t) = &tap {
                    fds.push(rustix::event::PollFd::new(t, rustix::event::PollFlags::IN));
                }
                let ts = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: TICK.as_nanos() as i64,
                };
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
                    Err(e) => Err(QueueError::Poll(e.into())),
                }
            }
            None => {
                // The fake event channels have no descriptor: alternate short waits.
                if let Some(t) = &tap {
                    let mut fds = [rustix::event::PollFd::new(t, rustix::event::PollFlags::IN)];
                    let ts = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 1_000_000,
                    };
                    let _ = rustix::event::poll(&mut fds, Some(&ts));
                }
                self.evtchn.wait(Some(Duration::from_millis(1)))?;
                Ok(())
            }
        }
    }

    /// One batch of guest packets to the tap; true if anything was consumed.
    fn tx_turn(
        &self,
        ring: &mut NetifTxBackRing<'_>,
        st: &mut TxState,
    ) -> Result<bool, QueueError> {
        let size = ring.size() as usize;
        while st.pending.len() < size {
            match ring.pop_request()? {
                Some(r) => st.pending.push(r),
                None => break,
            }
        }
        let mut parsed = Vec::new();
        let mut at = 0;
        while parsed.len() < TX_BATCH {
            match parse_tx_packet(&st.pending[at..]) {
                Ok(None) => break,
                Ok(Some(p)) => {
                    parsed.push((at, p.ring_slots, Parsed::Good(Box::new(p))));
                    at += p.ring_slots;
                }
                Err(e) if e.fatal => {
                    warn_limited!(self.log, "fatal tx packet", "{}: {e}", self.name);
                    return Err(QueueError::Protocol(e));
                }
                Err(e) => {
                    warn_limited!(
                        self.log,
                        "dropped tx packet",
                        "{}: dropping: {e}",
                        self.name
                    );
                    parsed.push((at, e.ring_slots, Parsed::Dropped));
                    at += e.ring_slots;
                }
            }
        }
        if at == 0 {
            if st.pending.len() >= size {
                return Err(QueueError::Endless);
            }
            if !st.pending.is_empty() {
                // Everything published was fetched (the ring is not full) and a chain
                // is still open.
                return Err(QueueError::Unfinished);
            }
            return Ok(false);
        }
        while st.bufs.len() < parsed.len() {
            st.bufs.push(vec![0u8; 65536]);
        }
        // One grant copy for every slot of every good packet.
        let mut segs = Vec::new();
        let mut ranges = Vec::with_capacity(parsed.len());
        for ((_, _, p), buf) in parsed.iter().zip(st.bufs.iter_mut()) {
            let from = segs.len();
            if let Parsed::Good(p) = p {
                let mut rest = &mut buf[..usize::from(p.len)];
                for (i, slot) in p.slots().iter().enumerate() {
                    let n = usize::from(p.slot_len(i));
                    let (this, tail) = rest.split_at_mut(n);
                    rest = tail;
                    if n > 0 {
                        segs.push(CopySegment {
                            local: CopyPtr::FromGuest(this),
                            domid: self.domid.0,
                            gref: slot.gref.0,
                            offset: slot.offset,
                            status: 0,
                        });
                    }
                }
            }
            ranges.push(from..segs.len());
        }
        if !segs.is_empty() {
            self.grants.copy(&mut segs)?;
        }
        let bad: Vec<Option<(u32, i16)>> = ranges
            .iter()
            .map(|r| {
                segs[r.clone()]
                    .iter()
                    .find(|s| s.status != 0)
                    .map(|s| (s.gref, s.status))
            })
            .collect();
        drop(segs);
        for (((start, n, p), buf), bad) in parsed.iter().zip(st.bufs.iter()).zip(bad) {
            let status = match p {
                Parsed::Dropped => NetifRsp::Error,
                Parsed::Good(_) if bad.is_some() => {
                    let (gref, s) = bad.unwrap_or_default();
                    warn_limited!(
                        self.log,
                        "bad tx grant",
                        "{}: tx grant {gref} does not copy (GNTST {s}); packet dropped",
                        self.name
                    );
                    NetifRsp::Error
                }
                Parsed::Good(p) => {
                    self.to_tap(p, &buf[..usize::from(p.len)]);
                    NetifRsp::Okay
                }
            };
            if status != NetifRsp::Okay {
                self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
            answer_tx(ring, &st.pending[*start..start + n], status)?;
        }
        st.pending.drain(..at);
        if ring.push_responses_and_check_notify()? {
            self.evtchn.notify(self.tx_port)?;
        }
        Ok(true)
    }

    fn to_tap(&self, p: &TxPacket, frame: &[u8]) {
        let hdr = match vnet::tx_header(p, frame) {
            Ok(h) => h,
            Err(e) => {
                warn_limited!(
                    self.log,
                    "tx headers",
                    "{}: dropping a tx packet: {e}",
                    self.name
                );
                self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match self
            .tap
            .write_frame(&[IoSlice::new(hdr.as_bytes()), IoSlice::new(frame)])
        {
            Ok(_) => {
                self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // The tap is down or refuses the frame: Linux netback drops too.
                warn_limited!(self.log, "tap write", "{}: tap write: {e}", self.name);
                self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One batch of tap frames to the guest; true if anything was read.
    fn rx_turn(
        &self,
        ring: &mut NetifRxBackRing<'_>,
        st: &mut RxState,
    ) -> Result<bool, QueueError> {
        let mut plans: Vec<RxPlan> = Vec::new();
        let mut rsps: Vec<NetifRxResponse> = Vec::new();
        let mut busy = false;
        while plans.len() < RX_BATCH {
            let k = plans.len();
            while st.bufs.len() <= k {
                st.bufs.push(vec![0u8; FRAME_BUF]);
            }
            let n = match st.held.take() {
                // Only ever taken first (k == 0): no plan of this turn uses a buffer yet.
                Some((at, n)) => {
                    st.bufs.swap(k, at);
                    n
                }
                None => match self.tap.read_frame(&mut st.bufs[k]) {
                    Ok(n) => {
                        busy = true;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn_limited!(self.log, "tap read", "{}: tap read: {e}", self.name);
                        break;
                    }
                },
            };
            let frame = &st.bufs[k][..n];
            let Some((hdr, data)) = frame
                .split_at_checked(VNET_HDR_LEN)
                .and_then(|(h, d)| Some((VnetHdr::read_from_bytes(h).ok()?, d)))
            else {
                self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let f = self.features;
            let meta = vnet::rx_meta(&hdr, f.gso4, f.gso6);
            let data_slots = data.len().div_ceil(PAGE);
            let Some(meta) = meta.filter(|_| {
                data.len() >= vnet::ETH_HLEN
                    && (f.sg || data_slots == 1)
                    && data_slots <= XEN_NETIF_NR_SLOTS_MIN
            }) else {
                self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let need = data_slots + usize::from(meta.gso.is_some());
            if (ring.unconsumed_requests()? as usize) < need {
                // Wait for the guest to post more; keep the frame where it is: the
                // buffers before it hold this turn's frames, still to be copied.
                st.held = Some((k, n));
                break;
            }
            let mut plan = RxPlan {
                buf: k,
                len: data.len(),
                first_rsp: rsps.len(),
                slots: Vec::with_capacity(data_slots),
            };
            for i in 0..data_slots {
                let Some(req) = ring.pop_request()? else {
                    return Err(QueueError::Ring(RingError::NoRequestToAnswer));
                };
                let bytes = (data.len() - i * PAGE).min(PAGE);
                let mut flags = if i == 0 {
                    meta.flags
                } else {
                    NetRxFlags::empty()
                };
                if i + 1 < data_slots {
                    flags |= NetRxFlags::MORE_DATA;
                }
                plan.slots.push((rsps.len(), req.gref, i * PAGE));
                rsps.push(NetifRxResponse {
                    id: req.id,
                    offset: 0,
                    flags: flags.bits(),
                    status: bytes as i16,
                });
                if i == 0 {
                    if let Some(g) = &meta.gso {
                        if ring.pop_request()?.is_none() {
                            return Err(QueueError::Ring(RingError::NoRequestToAnswer));
                        }
                        let extra = NetifExtraInfo::encode(g, false);
                        rsps.push(
                            NetifRxResponse::read_from_bytes(extra.as_bytes()).unwrap_or_default(),
                        );
                    }
                }
            }
            plans.push(plan);
        }
        if plans.is_empty() {
            return Ok(busy);
        }
        let mut segs = Vec::new();
        let mut seg_rsp = Vec::new();
        for p in &plans {
            let data = &st.bufs[p.buf][VNET_HDR_LEN..VNET_HDR_LEN + p.len];
            for &(ri, gref, from) in &p.slots {
                let to = (from + PAGE).min(p.len);
                segs.push(CopySegment {
                    local: CopyPtr::ToGuest(&data[from..to]),
                    domid: self.domid.0,
                    gref: gref.0,
                    offset: 0,
                    status: 0,
                });
                seg_rsp.push(ri);
            }
        }
        self.grants.copy(&mut segs)?;
        let mut failed = vec![false; plans.len()];
        for (s, &ri) in segs.iter().zip(&seg_rsp) {
            if s.status != 0 {
                rsps[ri].status = NetifRsp::Error.raw();
                let pi = plans.partition_point(|p| p.first_rsp <= ri) - 1;
                if !failed[pi] {
                    failed[pi] = true;
                    warn_limited!(
                        self.log,
                        "bad rx grant",
                        "{}: rx grant {} does not copy (GNTST {}); frame dropped",
                        self.name,
                        s.gref,
                        s.status
                    );
                }
            }
        }
        drop(segs);
        let dropped = failed.iter().filter(|f| **f).count() as u64;
        self.stats.rx_dropped.fetch_add(dropped, Ordering::Relaxed);
        self.stats
            .rx_packets
            .fetch_add(plans.len() as u64 - dropped, Ordering::Relaxed);
        for r in &rsps {
            ring.push_response(r)?;
        }
        if ring.push_responses_and_check_notify()? {
            self.evtchn.notify(self.rx_port)?;
        }
        Ok(true)
    }
}

/// Answers every slot of one TX chain (our copy of it): `status` for data slots,
/// `NETIF_RSP_NULL` for extra-info slots, in ring order.
fn answer_tx(
    ring: &mut NetifTxBackRing<'_>,
    chain: &[NetifTxRequest],
    status: NetifRsp,
) -> Result<(), RingError> {
    let Some(first) = chain.first() else {
        return Ok(());
    };
    let rsp = |id| NetifTxResponse {
        id,
        status: status.raw(),
    };
    ring.push_response(&rsp(first.id))?;
    let mut i = 1;
    if NetTxFlags::from_bits_retain(first.flags).contains(NetTxFlags::EXTRA_INFO) {
        while let Some(slot) = chain.get(i) {
            i += 1;
            ring.push_response(&NetifTxResponse {
                id: 0,
                status: NetifRsp::Null.raw(),
            })?;
            let more =
                NetifExtraInfo::read_from_prefix(slot.as_bytes()).is_ok_and(|(e, _)| e.more());
            if !more {
                break;
            }
        }
    }
    for slot in &chain[i.min(chain.len())..] {
        ring.push_response(&rsp(slot.id))?;
    }
    Ok(())
}
