//! One queue's data path on its own ([`DataQueue`]): what a driver holds under a
//! per-queue lock, in atomic context (transmit, NAPI poll), apart from the xenbus
//! control path ([`crate::Frontend`]), which may sleep.
//!
//! [`crate::Frontend::detach_queues`] hands the queues out once the rings are up;
//! [`crate::Frontend::attach_queues`] takes them back before anything that tears the
//! rings down. A queue needs no [`crate::Platform`]: it only notifies the backend
//! through its own event channels, by a function the driver passes in.

use crate::error::{ProtocolError, TxError};
use crate::frontend::{Poll, Stats};
use crate::queue::{Queue, RxPacket, TxOffload};
use sluice_abi::netif::{NetifGsoType, XEN_NETIF_MAX_TX_SIZE};
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_abi::types::EvtchnPort;
use sluice_front_seams::Pages;

/// The backend's data-path offers, fixed while the rings exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Offers {
    pub(crate) sg: bool,
    pub(crate) gso_tcpv4: bool,
    pub(crate) gso_tcpv6: bool,
}

/// One connected queue: its rings, pool pages and counters. A protocol violation
/// breaks it for good ([`DataQueue::broken`]): later transmits fail with
/// [`TxError::NotConnected`], polls do nothing, until the driver gives it back to the
/// [`crate::Frontend`] to be torn down ([`crate::Frontend::fail`]).
pub struct DataQueue<Pp> {
    pub(crate) queue: Queue<Pp>,
    offers: Offers,
    pub(crate) stats: Stats,
    broken: bool,
}

impl<Pp: Pages> DataQueue<Pp> {
    pub(crate) fn new(queue: Queue<Pp>, offers: Offers) -> Self {
        DataQueue {
            queue,
            offers,
            stats: Stats::default(),
            broken: false,
        }
    }

    /// Its event channels: (TX, RX), equal without split channels.
    pub fn ports(&self) -> (EvtchnPort, EvtchnPort) {
        let q = &self.queue;
        (q.tx_port.expect("bound"), q.rx_port.expect("bound"))
    }

    /// Whether a protocol violation broke it.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Its counters since the rings came up.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Largest packet [`transmit`](Self::transmit) takes.
    pub fn max_packet(&self) -> usize {
        if self.offers.sg {
            XEN_NETIF_MAX_TX_SIZE
        } else {
            XEN_PAGE_SIZE
        }
    }

    /// Whether a packet of the largest kind fits (wake the TX queue).
    pub fn tx_room(&mut self) -> bool {
        !self.broken && self.queue.tx_room()
    }

    /// Sends one packet, `frags` in order (copied, each byte read once: the caller may
    /// free them on return, whatever the result). `notify` is called with the TX
    /// channel when the backend is to be told. `Busy` asks the caller to stop the queue
    /// until a [`poll`](Self::poll) reports `tx_room`.
    pub fn transmit(
        &mut self,
        notify: impl FnOnce(EvtchnPort),
        frags: &[SharedMem<'_>],
        off: &TxOffload,
    ) -> Result<(), TxError> {
        if self.broken {
            return Err(TxError::NotConnected);
        }
        if let Some((t, mss)) = off.gso {
            let offered = match t {
                NetifGsoType::TcpV4 => self.offers.gso_tcpv4,
                NetifGsoType::TcpV6 => self.offers.gso_tcpv6,
                NetifGsoType::None => false,
            };
            if !offered || !self.offers.sg || mss == 0 {
                return Err(TxError::BadGso);
            }
        }
        let max = self.max_packet();
        let len: usize = frags.iter().map(|f| f.len()).sum();
        if self.queue.transmit(frags, off, max)? {
            notify(self.queue.tx_port.expect("bound"));
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Ok(())
    }

    /// Services the queue (its event channel fired; a NAPI poll): consumes TX
    /// responses, then receives up to `budget` packets, handing each valid one to
    /// `deliver`, and posts the freed RX buffers (`notify` with the RX channel when the
    /// backend is to be told). A protocol violation breaks the queue and is returned:
    /// the driver then fails the device.
    pub fn poll(
        &mut self,
        notify: impl FnOnce(EvtchnPort),
        budget: usize,
        deliver: &mut dyn FnMut(&RxPacket<'_, Pp>),
    ) -> Result<Poll, ProtocolError> {
        if self.broken {
            return Ok(Poll::default());
        }
        let q = &mut self.queue;
        let stats = &mut self.stats;
        let r = (|| {
            let tx_completed = q.tx_complete(stats)?;
            let (rx, more) = q.rx_poll(budget, stats, deliver)?;
            if q.rx_refill()? {
                notify(q.rx_port.expect("bound"));
            }
            Ok(Poll {
                rx,
                more,
                tx_completed,
                tx_room: q.tx_room(),
            })
        })();
        if r.is_err() {
            self.broken = true;
        }
        r
    }
}
