//! Serves one netif queue (a TX and an RX ring, one or two event channels, one tap
//! queue) from one thread: an event loop over the event-channel and tap descriptors,
//! never a thread per packet.
//!
//! TX ([`crate::tx`]): up to [`TX_BATCH`] packets per turn, fetched by one batched
//! grant copy (or one mapping), each written to the tap with its vnet header, every
//! slot answered. RX: up to [`RX_BATCH`] frames read from the tap, each placed in as many
//! of the guest's posted RX requests as it needs (page-sized pieces, a GSO extra slot
//! after the first), all of them filled by one batched grant copy.

use crate::profile::{bump, NetProfile};
use crate::rx::RxState;
use crate::vnet;
use sluice_abi::netif::{NetifRxBackRing, NetifTxBackRing};
use sluice_abi::ring::RingError;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort};
use sluice_dom0::{warn_limited, EventChannels, GrantMapper, LogLimiter};
use sluice_xen_sys::{FrameRing, VNET_HDR_LEN};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Most TX packets per grant-copy batch.
pub const TX_BATCH: usize = 64;
/// How often a queue logs what it moved, with `--profile`.
const PROFILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Most tap frames per grant-copy batch.
pub const RX_BATCH: usize = 64;
/// Bytes of the largest frame a tap hands us (vnet header + 64 KiB GSO frame + Ethernet).
pub const FRAME_BUF: usize = VNET_HDR_LEN + 65536 + vnet::ETH_HLEN;
/// Where in its buffer a tap frame is read: its vnet header ends the first page, so the
/// frame's data starts on the second and each page-sized piece copied to the guest is
/// one page of ours ([`crate::pages`]).
pub(crate) const RX_AT: usize = crate::pages::PAGE - VNET_HDR_LEN;
/// Tap reads kept in flight in a queue's io_uring (each a buffer of
/// `RX_AT + FRAME_BUF` bytes, about 70 KiB).
pub const RING_BUFS: usize = 32;

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
    /// Tap reads and writes through io_uring, in batches ([`FrameRing`]), where the
    /// kernel has it (else one syscall per frame, as without).
    pub uring: bool,
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
        let mut ring = self.open_ring();
        let mut fired = Vec::new();
        let r = (|| {
            while !self.stop.load(Ordering::Acquire) {
                if let Some(line) = self.profile.interval(PROFILE_INTERVAL) {
                    tracing::info!("{}: {line}", self.name);
                }
                let a = self.tx_turn(&mut tx, &mut txs, ring.as_mut())?;
                let b = self.rx_turn(&mut rx, &mut rxs, ring.as_mut())?;
                if a || b {
                    continue;
                }
                if tx.final_check_for_requests()? {
                    continue;
                }
                // A held frame waits (without reading the tap) until the guest has
                // posted as many RX requests as it needs, woken by the post that makes
                // them enough.
                let want_tap = match rxs.held {
                    None => true,
                    Some(need) if rx.final_check_for_requests_at_least(need)? => continue,
                    Some(_) => false,
                };
                let drain = self.profile.wait.time(|| match ring.as_mut() {
                    Some(r) => self.wait_ring(r, &mut rxs),
                    None => self.wait(want_tap).map(|()| true),
                })?;
                if drain {
                    self.profile.drain.time(|| {
                        fired.clear();
                        self.evtchn.read_pending(&mut fired)?;
                        for p in &fired {
                            self.evtchn.unmask(*p)?;
                        }
                        Ok::<_, QueueError>(())
                    })?;
                }
            }
            Ok(())
        })();
        if let Some(r) = &ring {
            bump(&self.profile.tap_calls, r.enters());
        }
        r
    }

    /// The queue's io_uring over its tap (and event channel), reads armed; `None` with
    /// `uring` off or where io_uring is unavailable (then one syscall per frame).
    fn open_ring(&self) -> Option<FrameRing<'_>> {
        if !self.uring {
            return None;
        }
        let fd = self.tap.as_fd();
        match FrameRing::new(fd, self.evtchn.poll_fd(), RING_BUFS, FRAME_BUF, RX_AT) {
            Ok(r) => {
                // The event channel's descriptor (sluice_xen_sys::EvtchnDevice's file:
                // a read gives the fired ports as native-endian u32s, a write of them
                // unmasks them) is read in the ring too.
                let mut r = r.with_side_reads();
                for i in 0..r.buffers() {
                    if r.arm(i).is_err() {
                        return None;
                    }
                }
                Some(r)
            }
            Err(e) => {
                warn_limited!(
                    self.log,
                    "io_uring",
                    "{}: io_uring unavailable ({e}): one syscall per frame",
                    self.name
                );
                None
            }
        }
    }

    /// Sleeps in the ring until a tap frame is read, the event channel fires or the
    /// tick passes; true if the event channel is to be drained.
    fn wait_ring(&self, ring: &mut FrameRing<'_>, rxs: &mut RxState) -> Result<bool, QueueError> {
        const TICK: Duration = Duration::from_millis(200);
        let before = ring.completions();
        let fired = if self.evtchn.poll_fd().is_some() {
            if ring.wait(TICK).map_err(QueueError::Poll)? {
                match ring.side_bytes() {
                    // Unmask what fired with the next enter (no syscall now).
                    Ok(ports) if !ports.is_empty() => {
                        let ports = ports[..ports.len() - ports.len() % 4].to_vec();
                        bump(&self.profile.evtchn_ring, 1);
                        ring.side_write(&ports).map_err(QueueError::Poll)?;
                        false
                    }
                    // Nothing or an error: drain the usual way (which reports it).
                    _ => true,
                }
            } else {
                false
            }
        } else {
            // The fake event channels have no descriptor: alternate short waits.
            ring.wait(Duration::from_millis(1))
                .map_err(QueueError::Poll)?;
            self.evtchn.wait(Some(Duration::from_millis(1)))?;
            true
        };
        if ring.completions() == before && !fired {
            // A quiet tick: retry reads that failed (never sooner, so a failing tap
            // cannot make us spin).
            for i in rxs.parked.drain(..) {
                ring.arm(i).map_err(QueueError::Poll)?;
            }
        }
        Ok(fired)
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
                bump(&self.profile.tap_calls, 1);
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
}
