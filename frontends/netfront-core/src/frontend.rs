//! The network frontend: xenbus state machine, negotiation as Linux's xen-netfront 6.1,
//! and the per-queue data path.

use crate::datapath::{DataQueue, Offers};
use crate::error::{NegotiationError, ProtocolError, TxError};
use crate::features::{parse_mac, BackendFeatures, FrontendConfig};
use crate::queue::{Queue, RxPacket, TxOffload};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::netif::{keys, XEN_NETIF_MAX_TX_SIZE};
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_abi::types::{DomId, EvtchnPort};
use sluice_abi::xenbus::XenbusState;
use sluice_front_seams::Platform;

/// The frontend's own xenbus state plus "failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontState {
    /// Started, waiting for the backend's InitWait.
    Initialising,
    /// Rings published, our state Connected: packets flow.
    Connected,
    /// The backend closed; a new InitWait sets the rings up again.
    Closed,
    /// Failed for good (protocol error, vanished backend, shutdown).
    Failed,
}

/// What a backend state change led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to do.
    Nothing,
    /// Rings up, RX buffers posted: start the queues and the carrier.
    Connected {
        /// Queues in use.
        queues: usize,
    },
    /// The backend closed: stop the queues, carrier off.
    Disconnected,
    /// The device failed.
    Failed,
}

/// Counters (the netdev's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets handed to the backend.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// TX responses with an error status.
    pub tx_errors: u64,
    /// Packets delivered.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Received packets dropped as malformed (bad status, outside the page, too many
    /// slots, a bad extra, too short).
    pub rx_errors: u64,
    /// Pages the backend still mapped at teardown: leaked, never reused.
    pub quarantined_pages: u64,
    /// Times the rings were set up.
    pub connects: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_errors += o.tx_errors;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_errors += o.rx_errors;
        self.quarantined_pages += o.quarantined_pages;
        self.connects += o.connects;
    }
}

/// The result of polling a queue ([`Frontend::poll`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Packets received (delivered or dropped).
    pub rx: usize,
    /// More RX responses are waiting (poll again rather than wait for an event).
    pub more: bool,
    /// TX responses consumed.
    pub tx_completed: usize,
    /// A packet of the largest kind fits: the TX queue may be woken.
    pub tx_room: bool,
}

/// The offloads in effect, from what the backend offers (our own offers are fixed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offloads {
    /// Scatter-gather: packets over one page.
    pub sg: bool,
    /// IPv4 TX checksum offload.
    pub ipv4_csum: bool,
    /// IPv6 TX checksum offload.
    pub ipv6_csum: bool,
    /// TCPv4 segmentation offload.
    pub tso4: bool,
    /// TCPv6 segmentation offload.
    pub tso6: bool,
    /// The backend's `mtu` node, if any.
    pub mtu: Option<u32>,
}

/// A Xen network frontend for one `vif`, generic over the guest kernel ([`Platform`]).
///
/// The driver calls [`start`](Self::start) at probe, [`backend_changed`](Self::backend_changed)
/// on each backend state change, [`transmit`](Self::transmit) per packet and
/// [`poll`](Self::poll) when a queue's event channel fired (NAPI).
pub struct Frontend<P: Platform> {
    nodename: String,
    backend: String,
    backend_id: DomId,
    config: FrontendConfig,
    /// Offer `feature-gso-tcpv4/v6` (receive GSO); `config.gso` unless
    /// [`set_receive_gso`](Self::set_receive_gso) said otherwise.
    rx_gso: bool,
    state: FrontState,
    mac: [u8; 6],
    features: BackendFeatures,
    /// The queues not handed out ([`detach_queues`](Self::detach_queues)).
    queues: Vec<DataQueue<P::Pages>>,
    /// Queues set up (attached or not); 0 while the rings are down.
    nqueues: usize,
    stats: Stats,
}

impl<P: Platform> Frontend<P> {
    /// A frontend for `nodename` (`device/vif/<n>`) whose backend is at `backend` in
    /// domain `backend_id`.
    pub fn new(
        nodename: &str,
        backend: &str,
        backend_id: DomId,
        config: FrontendConfig,
    ) -> Result<Self, NegotiationError> {
        nodename
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or(NegotiationError::BadNodename)?;
        let mut config = config;
        config.max_queues = config.max_queues.max(1);
        Ok(Frontend {
            nodename: nodename.into(),
            backend: backend.into(),
            backend_id,
            rx_gso: config.gso,
            config,
            state: FrontState::Initialising,
            mac: [0; 6],
            features: BackendFeatures::default(),
            queues: Vec::new(),
            nqueues: 0,
            stats: Stats::default(),
        })
    }

    /// Whether to offer `feature-gso-tcpv4/v6` (so the backend may send GSO packets
    /// larger than the MTU) from the next connection on, independently of transmitting
    /// GSO (`FrontendConfig::gso`): a stack that segments on transmit but cannot take
    /// oversized frames (Windows' xennet: NDIS LSO, no receive coalescing) turns it off.
    /// `config.gso` by default.
    pub fn set_receive_gso(&mut self, on: bool) {
        self.rx_gso = on;
    }

    /// Reads our MAC address (`<nodename>/mac`) and publishes state Initialising.
    pub fn start(&mut self, p: &mut P) -> Result<[u8; 6], NegotiationError> {
        let path = format!("{}/{}", self.nodename, keys::MAC);
        let v = p
            .read_opt(&path)
            .map_err(NegotiationError::Platform)?
            .ok_or_else(|| NegotiationError::MissingNode(path.clone()))?;
        self.mac = parse_mac(&v).ok_or(NegotiationError::BadNode {
            path,
            value: v.chars().take(32).collect(),
        })?;
        p.switch_state(&self.nodename, XenbusState::Initialising)
            .map_err(NegotiationError::Platform)?;
        Ok(self.mac)
    }

    /// Our state.
    pub fn state(&self) -> FrontState {
        self.state
    }

    /// The MAC address read by [`start`](Self::start).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Queues in use (0 before the rings are up), attached or not.
    pub fn queues(&self) -> usize {
        self.nqueues
    }

    /// Counters (those of detached queues count from when they are attached again).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        for q in &self.queues {
            s.add(&q.stats);
        }
        s
    }

    /// The event channels of attached `queue`: (TX, RX), equal without split channels.
    pub fn ports(&self, queue: usize) -> Option<(EvtchnPort, EvtchnPort)> {
        Some(self.queues.get(queue)?.ports())
    }

    /// Hands every queue out (in index order), for a driver that runs each one's data
    /// path under a lock of its own ([`DataQueue`]). Until
    /// [`attach_queues`](Self::attach_queues), [`transmit`](Self::transmit) and
    /// [`poll`](Self::poll) see no queue, and a teardown (backend Closing, `fail`,
    /// `shutdown`) cannot release them: attach them first.
    pub fn detach_queues(&mut self) -> Vec<DataQueue<P::Pages>> {
        core::mem::take(&mut self.queues)
    }

    /// Takes queues back (those of [`detach_queues`](Self::detach_queues), in index
    /// order, all of them). A broken queue is kept, to be released by the teardown
    /// that follows ([`fail`](Self::fail)).
    pub fn attach_queues(&mut self, queues: impl IntoIterator<Item = DataQueue<P::Pages>>) {
        self.queues.extend(queues);
    }

    /// Whether an attached queue is broken (a protocol violation in its poll).
    pub fn any_broken(&self) -> bool {
        self.queues.iter().any(|q| q.broken())
    }

    /// The offloads the backend offered (valid once connected).
    pub fn offloads(&self) -> Offloads {
        let f = &self.features;
        Offloads {
            sg: f.sg,
            ipv4_csum: f.ipv4_csum,
            ipv6_csum: f.ipv6_csum,
            tso4: self.config.gso && f.sg && f.gso_tcpv4,
            tso6: self.config.gso && f.sg && f.gso_tcpv6,
            mtu: f.mtu,
        }
    }

    /// Reacts to the backend's new `state` (xenbus `otherend_changed`), as Linux's
    /// `netback_changed`.
    pub fn backend_changed(
        &mut self,
        p: &mut P,
        state: XenbusState,
    ) -> Result<Event, NegotiationError> {
        if self.state == FrontState::Failed {
            return Ok(Event::Nothing);
        }
        match state {
            XenbusState::InitWait => {
                if !matches!(self.state, FrontState::Initialising | FrontState::Closed) {
                    return Ok(Event::Nothing);
                }
                match self.connect(p) {
                    Ok(ev) => Ok(ev),
                    Err(e) => {
                        self.fail(p);
                        Err(e)
                    }
                }
            }
            XenbusState::Closing | XenbusState::Closed => {
                if self.state != FrontState::Connected {
                    return Ok(Event::Nothing);
                }
                self.teardown(p);
                self.state = FrontState::Closed;
                let _ = p.switch_state(&self.nodename, XenbusState::Closed);
                Ok(Event::Disconnected)
            }
            XenbusState::Unknown => {
                // The backend's directory is gone: nothing will come back.
                self.fail(p);
                Ok(Event::Failed)
            }
            _ => Ok(Event::Nothing),
        }
    }

    /// `talk_to_netback` + `xennet_connect`: reads the backend's features, sets up the
    /// queues, publishes them and our requests, posts the RX buffers, goes Connected.
    fn connect(&mut self, p: &mut P) -> Result<Event, NegotiationError> {
        let f = BackendFeatures::read(p, &self.backend)?;
        if !f.rx_copy {
            return Err(NegotiationError::NoRxCopy);
        }
        self.features = f;
        let nq = self.config.max_queues.min(f.max_queues) as usize;
        let split = self.config.split_event_channels && f.split_event_channels;
        let offers = Offers {
            sg: f.sg,
            gso_tcpv4: self.config.gso && f.gso_tcpv4,
            gso_tcpv6: self.config.gso && f.gso_tcpv6,
        };
        self.nqueues = nq;
        for qi in 0..nq {
            match Queue::setup(p, self.backend_id, qi, split, &mut self.stats) {
                Ok(q) => self.queues.push(DataQueue::new(q, offers)),
                Err(e) => {
                    self.teardown(p);
                    return Err(e);
                }
            }
        }
        let mut w: Vec<(String, String)> = Vec::new();
        let node = &self.nodename;
        // Linux writes the count whenever the backend has the node, and flat keys for
        // a single queue.
        let probed = p
            .read_opt(&format!(
                "{}/{}",
                self.backend,
                keys::MULTI_QUEUE_MAX_QUEUES
            ))
            .map_err(NegotiationError::Platform)?
            .is_some();
        if probed {
            w.push((
                format!("{node}/{}", keys::MULTI_QUEUE_NUM_QUEUES),
                format!("{nq}"),
            ));
        }
        for (qi, q) in self.queues.iter().map(|q| &q.queue).enumerate() {
            let dir = if nq == 1 {
                node.clone()
            } else {
                format!("{node}/queue-{qi}")
            };
            w.push((
                format!("{dir}/{}", keys::TX_RING_REF),
                format!("{}", q.tx_ring_ref()),
            ));
            w.push((
                format!("{dir}/{}", keys::RX_RING_REF),
                format!("{}", q.rx_ring_ref()),
            ));
            let (tx, rx) = (q.tx_port.expect("bound"), q.rx_port.expect("bound"));
            if q.split() {
                w.push((format!("{dir}/{}", keys::EVENT_CHANNEL_TX), format!("{tx}")));
                w.push((format!("{dir}/{}", keys::EVENT_CHANNEL_RX), format!("{rx}")));
            } else {
                w.push((format!("{dir}/{}", keys::EVENT_CHANNEL), format!("{tx}")));
            }
        }
        let gso: &[&str] = if self.rx_gso {
            &[keys::FEATURE_GSO_TCPV4, keys::FEATURE_GSO_TCPV6]
        } else {
            &[]
        };
        for key in [
            keys::REQUEST_RX_COPY,
            keys::FEATURE_RX_NOTIFY,
            keys::FEATURE_SG,
            keys::FEATURE_IPV6_CSUM_OFFLOAD,
        ]
        .iter()
        .chain(gso)
        {
            w.push((format!("{node}/{key}"), "1".into()));
        }
        let refs: Vec<(&str, &str)> = w.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Err(e) = p.write_all(&refs) {
            self.teardown(p);
            return Err(NegotiationError::Platform(e));
        }
        for qi in 0..self.queues.len() {
            let notify = match self.queues[qi].queue.rx_refill() {
                Ok(n) => n,
                Err(e) => {
                    self.teardown(p);
                    return Err(NegotiationError::Ring(match e {
                        ProtocolError::Ring { error, .. } => error,
                        _ => sluice_abi::ring::RingError::Full,
                    }));
                }
            };
            if notify {
                p.notify(self.queues[qi].queue.rx_port.expect("bound"));
            }
        }
        if let Err(e) = p.switch_state(&self.nodename, XenbusState::Connected) {
            self.teardown(p);
            return Err(NegotiationError::Platform(e));
        }
        self.state = FrontState::Connected;
        self.stats.connects += 1;
        Ok(Event::Connected { queues: nq })
    }

    fn teardown(&mut self, p: &mut P) {
        for q in core::mem::take(&mut self.queues) {
            self.stats.add(&q.stats);
            self.stats.quarantined_pages += q.queue.release(p);
        }
        self.nqueues = 0;
    }

    /// Fails the device for good: rings torn down (pages still mapped are leaked),
    /// state Closing then Closed published. Later transmits fail with
    /// [`TxError::NotConnected`]; polls do nothing.
    pub fn fail(&mut self, p: &mut P) {
        if self.state == FrontState::Failed {
            return;
        }
        self.teardown(p);
        self.state = FrontState::Failed;
        let _ = p.switch_state(&self.nodename, XenbusState::Closing);
        let _ = p.switch_state(&self.nodename, XenbusState::Closed);
    }

    /// The driver is removing the device (unbind, `rmmod`): as [`fail`](Self::fail).
    pub fn shutdown(&mut self, p: &mut P) {
        self.fail(p);
    }

    /// Largest packet [`transmit`](Self::transmit) takes.
    pub fn max_packet(&self) -> usize {
        if self.features.sg {
            XEN_NETIF_MAX_TX_SIZE
        } else {
            XEN_PAGE_SIZE
        }
    }

    /// Whether `queue` has room for a packet of the largest kind (wake its TX queue).
    pub fn tx_room(&mut self, queue: usize) -> bool {
        self.state == FrontState::Connected
            && self.queues.get_mut(queue).is_some_and(|q| q.tx_room())
    }

    /// Sends one packet, `frags` in order (copied, each byte read once: the caller may
    /// free them on return, whatever the result; they may be pages others still write,
    /// hence [`SharedMem`]). `Busy` asks the caller to stop the queue until a
    /// [`poll`](Self::poll) reports `tx_room`.
    pub fn transmit(
        &mut self,
        p: &mut P,
        queue: usize,
        frags: &[SharedMem<'_>],
        off: &TxOffload,
    ) -> Result<(), TxError> {
        if self.state != FrontState::Connected {
            return Err(TxError::NotConnected);
        }
        let q = self.queues.get_mut(queue).ok_or(TxError::BadQueue(queue))?;
        q.transmit(|port| p.notify(port), frags, off)
    }

    /// Services `queue` after its event channel fired: consumes TX responses, then
    /// receives up to `budget` packets, handing each valid one to `deliver`, and posts
    /// the freed RX buffers. A protocol violation fails the device and is returned.
    pub fn poll(
        &mut self,
        p: &mut P,
        queue: usize,
        budget: usize,
        mut deliver: impl FnMut(&RxPacket<'_, P::Pages>),
    ) -> Result<Poll, ProtocolError> {
        if self.state != FrontState::Connected {
            return Ok(Poll::default());
        }
        let Some(q) = self.queues.get_mut(queue) else {
            return Ok(Poll::default());
        };
        let r = q.poll(|port| p.notify(port), budget, &mut deliver);
        if r.is_err() {
            self.fail(p);
        }
        r
    }
}
