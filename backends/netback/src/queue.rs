//! Serves one netif queue (a TX and an RX ring, one or two event channels, one tap
//! queue) from one thread: an event loop over the event-channel and tap descriptors,
//! never a thread per packet.
//!
//! TX ([`crate::tx`]): up to [`TX_BATCH`] packets per turn, fetched by one batched
//! grant copy (or one mapping), each written to the tap with its vnet header, every
//! slot answered. RX: up to [`RX_BATCH`] frames read from the tap, each placed in as many
//! of the guest's posted RX requests as it needs (page-sized pieces, a GSO extra slot
//! after the first), all of them filled by one batched grant copy.

use crate::pages::{local_ops, PageBuf};
use crate::profile::{bump, NetProfile};
use crate::vnet::{self, VnetHdr};
use sluice_abi::netif::{
    NetRxFlags, NetifExtraInfo, NetifRsp, NetifRxBackRing, NetifRxResponse, NetifTxBackRing,
    XEN_NETIF_NR_SLOTS_MIN,
};
use sluice_abi::ring::RingError;
use sluice_abi::shared::SharedMem;
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
const PAGE: usize = crate::pages::PAGE;
/// Where in its buffer a tap frame is read: its vnet header ends the first page, so the
/// frame's data starts on the second and each page-sized piece copied to the guest is
/// one page of ours ([`crate::pages`]).
const RX_AT: usize = PAGE - VNET_HDR_LEN;

/// A source and sink of Ethernet frames with vnet headers: a tap queue, or a datagram
/// socket in host tests. Non-blocking reads.
pub trait Frames: AsFd + Send + Sync {
    /// One frame into `buf` (`WouldBlock` when none waits).
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// One frame from `parts`.
    fn write_frame(&self, parts: &[IoSlice<'_>]) -> io::Result<usize>;
    /// One frame from `head` followed by `tail`, pieces of another domain's mapped
    /// pages (by default copied out first, then [`Frames::write_frame`]).
    fn write_frame_shared(
        &self,
        head: &[IoSlice<'_>],
        tail: &[SharedMem<'_>],
    ) -> io::Result<usize> {
        let mut bytes = Vec::new();
        for m in tail {
            let at = bytes.len();
            bytes.resize(at + m.len(), 0);
            m.read_bytes(0, &mut bytes[at..])
                .map_err(io::Error::other)?;
        }
        let mut parts = head.to_vec();
        parts.push(IoSlice::new(&bytes));
        self.write_frame(&parts)
    }
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
    fn write_frame_shared(
        &self,
        head: &[IoSlice<'_>],
        tail: &[SharedMem<'_>],
    ) -> io::Result<usize> {
        sluice_xen_sys::TapDevice::write_frame_shared(self, head, tail)
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
    /// This queue's profile (logged when it stops).
    pub profile: &'a NetProfile,
    /// TX by mapping the guest's grants instead of grant copy (`crate::tx`).
    pub tx_map: bool,
}

/// RX state kept between turns.
#[derive(Default)]
struct RxState {
    bufs: Vec<PageBuf>,
    /// A frame waiting for RX requests (the next turn takes it first).
    held: Option<Held>,
}

/// A tap frame read but not yet placed: `bufs[buf]` holds `len` bytes; it needs `need`
/// RX requests.
#[derive(Clone, Copy)]
struct Held {
    buf: usize,
    len: usize,
    need: u32,
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

impl<G: GrantMapper, E: EventChannels, T: Frames> Queue<'_, G, E, T> {
    /// Serves the rings until `stop` (Ok) or a protocol violation / device failure (Err).
    pub fn serve(
        &self,
        mut tx: NetifTxBackRing<'_>,
        mut rx: NetifRxBackRing<'_>,
    ) -> Result<(), QueueError> {
        let mut txs = crate::tx::TxState::default();
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
            // A held frame waits (without reading the tap) until the guest has posted
            // as many RX requests as it needs, woken by the post that makes them enough.
            let want_tap = match rxs.held {
                None => true,
                Some(h) if rx.final_check_for_requests_at_least(h.need)? => continue,
                Some(_) => false,
            };
            self.profile.wait.time(|| self.wait(want_tap))?;
            self.profile.drain.time(|| {
                fired.clear();
                self.evtchn.read_pending(&mut fired)?;
                for p in &fired {
                    self.evtchn.unmask(*p)?;
                }
                Ok::<_, QueueError>(())
            })?;
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
                st.bufs.push(PageBuf::new(RX_AT + FRAME_BUF));
            }
            let (n, was_held) = match st.held.take() {
                // Only ever taken first (k == 0): no plan of this turn uses a buffer yet.
                Some(h) => {
                    st.bufs.swap(k, h.buf);
                    (h.len, true)
                }
                None => match self.profile.tap_read.time(|| {
                    self.tap
                        .read_frame(&mut st.bufs[k].bytes_mut()[RX_AT..RX_AT + FRAME_BUF])
                }) {
                    Ok(n) => {
                        busy = true;
                        (n, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn_limited!(self.log, "tap read", "{}: tap read: {e}", self.name);
                        break;
                    }
                },
            };
            let frame = &st.bufs[k].bytes()[RX_AT..RX_AT + n];
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
                st.held = Some(Held {
                    buf: k,
                    len: n,
                    need: need as u32,
                });
                if !was_held {
                    bump(&self.profile.rx_held, 1);
                }
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
        let mut ops = 0;
        for p in &plans {
            let at = RX_AT + VNET_HDR_LEN;
            let data = &st.bufs[p.buf].bytes()[at..at + p.len];
            for &(ri, gref, from) in &p.slots {
                let to = (from + PAGE).min(p.len);
                ops += local_ops(at + from, to - from);
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
        bump(&self.profile.rx_ops, ops as u64);
        self.profile.rx_copy.time(|| self.grants.copy(&mut segs))?;
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
        self.profile.rx_turn(plans.len());
        bump(&self.profile.rx_frames, plans.len() as u64);
        bump(&self.profile.rx_slots, rsps.len() as u64);
        let bytes: usize = plans.iter().map(|p| p.len).sum();
        bump(&self.profile.rx_bytes, bytes as u64);
        for r in &rsps {
            ring.push_response(r)?;
        }
        if ring.push_responses_and_check_notify()? {
            bump(&self.profile.notifies, 1);
            self.evtchn.notify(self.rx_port)?;
        }
        Ok(true)
    }
}
