//! One xennet adapter over netfront-core's `Frontend` (one queue): what
//! MiniportInitializeEx, the backend-state watch, MiniportSendNetBufferLists and the
//! event callback call, with NDIS' answers (statuses, link state, frames to indicate).

use crate::csum::{self, BackendCaps};
use crate::filter::{self, ETH_HEADER};
use crate::oid::Info;
use crate::status;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::DomId;
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::{
    parse_mac, Event, Frontend, FrontendConfig, NegotiationError, Platform, ProtocolError, TxError,
    TxOffload, MIN_PACKET,
};

/// Frames indicated per event callback at most (the rest waits for the next poll).
pub const RX_BUDGET: usize = 64;

/// What a backend state change means for NDIS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Nothing to indicate.
    Unchanged,
    /// Connected: indicate media connected (MTU in [`Info::mtu`]).
    Up,
    /// The backend closed: media disconnected (a later InitWait reconnects).
    Down,
    /// The device failed for good: media disconnected.
    Failed,
}

/// Why the adapter could not start.
#[derive(Debug)]
pub enum StartError {
    /// netfront-core's (missing or malformed `mac`, xenstore).
    Negotiation(NegotiationError),
    /// The MAC in xenstore is multicast or zero: not a station address.
    BadMac([u8; 6]),
}

/// A received frame to indicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The whole Ethernet frame.
    pub data: Vec<u8>,
    /// The backend left the TCP/UDP checksum blank (NETRXF_csum_blank).
    pub csum_blank: bool,
    /// The backend validated the checksum (NETRXF_data_validated).
    pub data_validated: bool,
    /// NDIS' receive checksum bits for the NBL (`csum::rx_info`, masked by what
    /// receive offload Windows enabled); a blank checksum was filled in.
    pub csum_info: u32,
}

/// One adapter.
pub struct Nic<P: Platform> {
    front: Frontend<P>,
    frontend: String,
    /// Held ([`hold`](Self::hold)): the emulated NIC owns the vif in this boot.
    held: bool,
    /// What OIDs answer from (MAC, link, MTU, counters, filter).
    pub info: Info,
    /// Frames sent or received that xennet itself refused or dropped.
    tx_refused: u64,
    rx_oversized: u64,
}

impl<P: Platform> Nic<P> {
    /// A NIC for `frontend` (`device/vif/<n>`) with its backend at `backend` in `domid`
    /// (from the bus interface). One queue: NDIS RSS is not done. No GSO: NDIS
    /// receive coalescing and LSO are not done, so `feature-gso-tcpv4/v6` is not
    /// offered (no receive GSO: NDIS 6.20 has no receive coalescing, so the backend
    /// sends no frame over the MTU), but GSO is transmitted (NDIS LSO v2) when the
    /// backend offers it.
    pub fn new(frontend: &str, backend: &str, domid: DomId) -> Result<Self, NegotiationError> {
        let cfg = FrontendConfig {
            max_queues: 1,
            gso: true,
            ..FrontendConfig::default()
        };
        let mut front = Frontend::new(frontend, backend, domid, cfg)?;
        front.set_receive_gso(false);
        Ok(Nic {
            front,
            frontend: frontend.into(),
            held: false,
            info: Info {
                mtu: filter::DEFAULT_MTU,
                ..Info::default()
            },
            tx_refused: 0,
            rx_oversized: 0,
        })
    }

    /// The frontend.
    pub fn front(&self) -> &Frontend<P> {
        &self.front
    }

    /// MiniportInitializeEx (PASSIVE): reads and checks the MAC, publishes
    /// Initialising.
    pub fn start(&mut self, p: &mut P) -> Result<[u8; 6], StartError> {
        let mac = self.front.start(p).map_err(StartError::Negotiation)?;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            self.front.fail(p);
            return Err(StartError::BadMac(mac));
        }
        self.info.mac = mac;
        Ok(mac)
    }

    /// MiniportInitializeEx in a boot whose emulated NICs were not unplugged
    /// (`unplug_request::NicRole::Hold`): reads and checks the MAC (NDIS needs one) but
    /// writes nothing to xenstore, so the backend never connects to us; the link stays
    /// down, backend changes are ignored and sends refused, so the emulated NIC is the
    /// only one driving the vif in this boot.
    pub fn hold(&mut self, p: &mut P) -> Result<[u8; 6], StartError> {
        let path = format!("{}/mac", self.frontend);
        let v = p
            .read_opt(&path)
            .map_err(|e| StartError::Negotiation(NegotiationError::Platform(e)))?
            .ok_or_else(|| StartError::Negotiation(NegotiationError::MissingNode(path.clone())))?;
        let mac = parse_mac(&v).ok_or(StartError::Negotiation(NegotiationError::BadNode {
            path,
            value: v.chars().take(32).collect(),
        }))?;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(StartError::BadMac(mac));
        }
        self.held = true;
        self.info.mac = mac;
        self.info.link_up = false;
        Ok(mac)
    }

    /// Whether the NIC is held ([`hold`](Self::hold)).
    pub fn held(&self) -> bool {
        self.held
    }

    /// The backend's state changed (watch, PASSIVE).
    pub fn backend_changed(
        &mut self,
        p: &mut P,
        state: XenbusState,
    ) -> Result<Link, NegotiationError> {
        if self.held {
            return Ok(Link::Unchanged);
        }
        let r = self.front.backend_changed(p, state);
        let link = match r {
            Ok(Event::Nothing) => return Ok(Link::Unchanged),
            Ok(Event::Connected { .. }) => {
                let o = self.front.offloads();
                self.info.mtu = filter::mtu(o.mtu, self.front.max_packet());
                self.info.backend = Some(BackendCaps {
                    csum4: o.ipv4_csum,
                    csum6: o.ipv6_csum,
                    tso4: o.tso4,
                    tso6: o.tso6,
                });
                Link::Up
            }
            Ok(Event::Disconnected) => Link::Down,
            Ok(Event::Failed) | Err(_) => Link::Failed,
        };
        self.info.link_up = link == Link::Up;
        if link != Link::Up {
            self.info.backend = None;
        }
        r.map(|_| link)
    }

    /// One NET_BUFFER's frame, `frags` its MDLs' mapped bytes in order: the NDIS status
    /// to complete it with. netfront-core copies the frame, so the NET_BUFFER_LIST may
    /// be completed at once. A full ring drops the frame (RESOURCES): xennet keeps no
    /// send queue of its own.
    pub fn send(&mut self, p: &mut P, frags: &[SharedMem<'_>], off: &TxOffload) -> u32 {
        let len: usize = frags.iter().map(|f| f.len()).sum();
        let st = if !self.info.link_up {
            status::MEDIA_DISCONNECTED
        } else if len < MIN_PACKET || (off.gso.is_none() && len > self.info.mtu + ETH_HEADER) {
            status::INVALID_LENGTH
        } else {
            match self.front.transmit(p, 0, frags, off) {
                Ok(()) => status::SUCCESS,
                Err(TxError::Busy) => status::RESOURCES,
                Err(_) => status::FAILURE,
            }
        };
        if st == status::SUCCESS {
            self.info.counters.xmit_ok += 1;
        } else {
            self.tx_refused += 1;
        }
        self.refresh();
        st
    }

    /// One NET_BUFFER of an NBL with checksum info `ck` and LSO info `lso` (0: none),
    /// `frame` xennet's copy of it (headers rewritten here, `csum::tx_prepare`): the
    /// NDIS status and, for LSO, the info to write back at completion.
    pub fn send_frame(
        &mut self,
        p: &mut P,
        frame: &mut [u8],
        ck: u32,
        lso: u64,
    ) -> (u32, Option<u64>) {
        let Some(back) = self.info.backend.filter(|_| self.info.link_up) else {
            self.tx_refused += 1;
            self.refresh();
            return (status::MEDIA_DISCONNECTED, None);
        };
        match csum::tx_prepare(frame, ck, lso, back) {
            Ok(prep) => {
                let st = self.send(p, &[SharedMem::from_mut_slice(frame)], &prep.off);
                (st, prep.lso_complete.filter(|_| st == status::SUCCESS))
            }
            Err(_) => {
                self.tx_refused += 1;
                self.refresh();
                (status::INVALID_PACKET, None)
            }
        }
    }

    /// The queue's event fired (DPC): TX responses consumed, up to [`RX_BUDGET`] frames
    /// received; those the filter passes are returned to indicate. Frames over the MTU
    /// (GSO from the backend: NDIS receive coalescing is not done) are dropped and
    /// counted. `more`: poll again. A protocol violation fails the device.
    pub fn receive(&mut self, p: &mut P) -> Result<(Vec<Frame>, bool), ProtocolError> {
        let mut out = Vec::new();
        let mut dropped_big = 0u64;
        let mut dropped_nomem = 0u64;
        let info = &self.info;
        let max = info.mtu + ETH_HEADER;
        let r = self.front.poll(p, 0, RX_BUDGET, |pkt| {
            if pkt.len > max {
                dropped_big += 1;
                return;
            }
            let mut dst = [0u8; 6];
            if pkt.copy_range(0, &mut dst).is_err() || !info.filter.accepts(&info.mac, &dst) {
                return;
            }
            let mut data = vec![0u8; pkt.len];
            if pkt.copy_to(&mut data).is_err() {
                dropped_nomem += 1;
                return;
            }
            let (blank, valid) = (pkt.csum_blank(), pkt.data_validated());
            let bits = csum::rx_info(&mut data, blank, valid);
            let v6 = csum::parse(&data, false).is_some_and(|h| h.v6);
            out.push(Frame {
                data,
                csum_blank: blank,
                data_validated: valid,
                csum_info: info.offload.rx_mask(bits, v6),
            });
        });
        self.rx_oversized += dropped_big;
        self.info.counters.rcv_no_buffer += dropped_nomem;
        self.info.counters.rcv_ok += out.len() as u64;
        self.refresh();
        match r {
            Ok(poll) => Ok((out, poll.more)),
            Err(e) => {
                self.info.link_up = false;
                Err(e)
            }
        }
    }

    /// Error counters: ours plus netfront-core's (TX responses with an error status,
    /// malformed received packets).
    fn refresh(&mut self) {
        let s = self.front.stats();
        self.info.counters.xmit_error = self.tx_refused + s.tx_errors;
        self.info.counters.rcv_error = self.rx_oversized + s.rx_errors;
    }

    /// MiniportHaltEx (PASSIVE): rings torn down, state Closed.
    pub fn halt(&mut self, p: &mut P) {
        if !self.held {
            self.front.shutdown(p);
        }
        self.info.link_up = false;
    }
}
