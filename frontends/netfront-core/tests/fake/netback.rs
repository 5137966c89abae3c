//! A network backend in "dom0" over the real abi rings: it reads what the frontend
//! published, takes TX packets (checked with abi's `parse_tx_packet`, as a backend
//! must) and delivers packets into the posted RX buffers, SG and GSO extra included.
//! Hostile variants break one rule each.

use super::{World, BACK, FRONT};
use sluice_abi::netif::{
    parse_tx_packet, NetRxFlags, NetTxFlags, NetifExtra, NetifExtraInfo, NetifGsoType, NetifRsp,
    NetifRxBackRing, NetifRxResponse, NetifTxBackRing, NetifTxRequest, NetifTxResponse, TxPacket,
};
use sluice_abi::ring::RSP_PROD_OFFSET;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use std::cell::RefCell;
use std::rc::Rc;
use zerocopy::{FromBytes, IntoBytes};

/// What the backend offers (Linux netback 6.1's set by default).
#[derive(Clone, Debug)]
pub struct BackConfig {
    pub max_queues: Option<u32>,
    pub split: bool,
    pub sg: bool,
    pub gso: bool,
    pub rx_copy: bool,
}

impl Default for BackConfig {
    fn default() -> Self {
        BackConfig {
            max_queues: Some(4),
            split: true,
            sg: true,
            gso: true,
            rx_copy: true,
        }
    }
}

/// One rule broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    None,
    /// TX responses with an id outside the ring.
    TxBogusId,
    /// TX responses for an id not in flight.
    TxUnsentId,
    /// A packet's slots all answered with its first id.
    TxDuplicate,
    /// TX rsp_prod far past the requests.
    TxOverflow,
    /// TX answered with NETIF_RSP_ERROR.
    TxErrorStatus,
    /// Never answers TX.
    Silent,
    /// RX responses with the wrong id.
    RxBogusId,
    /// RX data past the end of its page.
    RxOutsidePage,
    /// RX error status.
    RxErrorStatus,
    /// An RX extra-info slot of type NONE.
    RxBadExtra,
    /// RX rsp_prod far past the requests.
    RxOverflow,
    /// An RX chain of 40 slots.
    RxTooManySlots,
    /// Keeps every ring grant mapped (teardown must quarantine, not free).
    KeepMapped,
}

struct BackQueue {
    tx: NetifTxBackRing<'static>,
    rx: NetifRxBackRing<'static>,
    tx_mem: SharedMem<'static>,
    rx_mem: SharedMem<'static>,
    tx_port: EvtchnPort,
    rx_port: EvtchnPort,
    refs: [GrantRef; 2],
    pending: Vec<NetifTxRequest>,
}

/// A received packet as the backend saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub queue: usize,
    pub data: Vec<u8>,
    pub flags: NetTxFlags,
    pub gso: Option<(NetifGsoType, u16)>,
}

pub struct Netback {
    world: Rc<RefCell<World>>,
    pub cfg: BackConfig,
    queues: Vec<BackQueue>,
    pub misbehave: Misbehaviour,
    /// TX packets taken, in order.
    pub sent: Vec<Sent>,
    /// TX chains refused by `parse_tx_packet`.
    pub refused: usize,
}

impl Netback {
    /// Publishes the backend's features and state InitWait, and the frontend's MAC.
    pub fn new(world: Rc<RefCell<World>>, cfg: BackConfig) -> Netback {
        {
            let mut w = world.borrow_mut();
            let mut set = |k: &str, v: &str| {
                w.xs.insert(format!("{BACK}/{k}"), v.into());
            };
            set("feature-rx-copy", if cfg.rx_copy { "1" } else { "0" });
            set("feature-sg", if cfg.sg { "1" } else { "0" });
            set("feature-gso-tcpv4", if cfg.gso { "1" } else { "0" });
            set("feature-gso-tcpv6", if cfg.gso { "1" } else { "0" });
            set("feature-ipv6-csum-offload", "1");
            set("feature-rx-flip", "0");
            set(
                "feature-split-event-channels",
                if cfg.split { "1" } else { "0" },
            );
            if let Some(n) = cfg.max_queues {
                set("multi-queue-max-queues", &n.to_string());
            }
            set("state", XenbusState::InitWait.xenstore_value());
            w.xs.insert(format!("{FRONT}/mac"), "00:16:3e:00:00:01".into());
        }
        Netback {
            world,
            cfg,
            queues: Vec::new(),
            misbehave: Misbehaviour::None,
            sent: Vec::new(),
            refused: 0,
        }
    }

    fn front(&self, key: &str) -> Option<String> {
        self.world
            .borrow()
            .xs
            .get(&format!("{FRONT}/{key}"))
            .cloned()
    }

    /// Maps the rings the frontend published (its state Connected), as netback's
    /// `connect`.
    pub fn connect(&mut self) {
        assert_eq!(
            self.front("state").as_deref(),
            Some("4"),
            "frontend not Connected"
        );
        assert_eq!(self.front("request-rx-copy").as_deref(), Some("1"));
        let n: usize = self
            .front("multi-queue-num-queues")
            .map(|v| v.parse().unwrap())
            .unwrap_or(1);
        for qi in 0..n {
            let dir = if n == 1 {
                String::new()
            } else {
                format!("queue-{qi}/")
            };
            let num = |s: &Self, k: &str| -> u32 {
                s.front(&format!("{dir}{k}"))
                    .unwrap_or_else(|| panic!("{dir}{k}"))
                    .parse()
                    .unwrap()
            };
            let refs = [
                GrantRef(num(self, "tx-ring-ref")),
                GrantRef(num(self, "rx-ring-ref")),
            ];
            let (tx_port, rx_port) = if self.front(&format!("{dir}event-channel")).is_some() {
                let p = EvtchnPort(num(self, "event-channel"));
                (p, p)
            } else {
                (
                    EvtchnPort(num(self, "event-channel-tx")),
                    EvtchnPort(num(self, "event-channel-rx")),
                )
            };
            let mut w = self.world.borrow_mut();
            let (tx_pg, rx_pg) = (w.map(refs[0], true).unwrap(), w.map(refs[1], true).unwrap());
            let (tx_mem, rx_mem) = (w.mem(tx_pg, 1), w.mem(rx_pg, 1));
            self.queues.push(BackQueue {
                tx: NetifTxBackRing::new(tx_mem).unwrap(),
                rx: NetifRxBackRing::new(rx_mem).unwrap(),
                tx_mem,
                rx_mem,
                tx_port,
                rx_port,
                refs,
                pending: Vec::new(),
            });
        }
        self.world
            .borrow_mut()
            .xs
            .insert(format!("{BACK}/state"), "4".into());
    }

    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Unmaps the rings (netback's disconnect), unless misbehaving.
    pub fn disconnect(&mut self) {
        for q in self.queues.drain(..) {
            if self.misbehave != Misbehaviour::KeepMapped {
                let mut w = self.world.borrow_mut();
                w.unmap(q.refs[0]);
                w.unmap(q.refs[1]);
            }
        }
    }

    /// Reads a packet's bytes through its grants (as a grant copy would).
    fn gather(&self, pkt: &TxPacket) -> Vec<u8> {
        let mut w = self.world.borrow_mut();
        let mut data = Vec::new();
        for (i, s) in pkt.slots().iter().enumerate() {
            let pg = w.map(s.gref, false).expect("tx grant");
            let mut buf = vec![0; pkt.slot_len(i) as usize];
            w.mem(pg, 1)
                .read_bytes(s.offset as usize, &mut buf)
                .unwrap();
            w.unmap(s.gref);
            data.extend_from_slice(&buf);
        }
        data
    }

    /// Takes every complete TX packet of every queue and answers it.
    pub fn pump_tx(&mut self) {
        for qi in 0..self.queues.len() {
            while let Some(r) = self.queues[qi].tx.pop_request().unwrap() {
                self.queues[qi].pending.push(r);
            }
            if self.misbehave == Misbehaviour::Silent {
                continue;
            }
            loop {
                let pending = &self.queues[qi].pending;
                let (ring_slots, ids) = match parse_tx_packet(pending) {
                    Ok(None) => break,
                    Ok(Some(pkt)) => {
                        let data = self.gather(&pkt);
                        self.sent.push(Sent {
                            queue: qi,
                            data,
                            flags: pkt.flags,
                            gso: pkt.gso.map(|g| match g {
                                NetifExtra::Gso { size, gso_type, .. } => (gso_type, size),
                                _ => unreachable!(),
                            }),
                        });
                        (
                            pkt.ring_slots,
                            pkt.slots().iter().map(|s| s.id).collect::<Vec<_>>(),
                        )
                    }
                    Err(e) => {
                        assert!(!e.fatal, "frontend sent a fatal chain: {e}");
                        self.refused += 1;
                        (e.ring_slots, vec![pending[0].id])
                    }
                };
                let extras = ring_slots - ids.len();
                let q = &mut self.queues[qi];
                q.pending.drain(..ring_slots);
                let mut rsps: Vec<NetifTxResponse> = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let status = if self.misbehave == Misbehaviour::TxErrorStatus {
                        NetifRsp::Error.raw()
                    } else {
                        NetifRsp::Okay.raw()
                    };
                    let id = match self.misbehave {
                        Misbehaviour::TxBogusId => 4000,
                        Misbehaviour::TxUnsentId => id.wrapping_add(100),
                        _ => *id,
                    };
                    rsps.push(NetifTxResponse { id, status });
                    if i == 0 {
                        for _ in 0..extras {
                            rsps.push(NetifTxResponse {
                                id: 0xdead,
                                status: NetifRsp::Null.raw(),
                            });
                        }
                    }
                }
                if self.misbehave == Misbehaviour::TxDuplicate {
                    // Every data slot answered with the first one's id.
                    for r in rsps.iter_mut().filter(|r| r.status != NetifRsp::Null.raw()) {
                        r.id = ids[0];
                    }
                }
                for r in &rsps {
                    q.tx.push_response(r).unwrap();
                }
                if q.tx.push_responses_and_check_notify().unwrap() {
                    self.world.borrow_mut().notify_front(q.tx_port);
                }
                if self.misbehave == Misbehaviour::TxOverflow {
                    let at = q.tx.rsp_prod_pvt().wrapping_add(1000);
                    q.tx_mem.store_u32_release(RSP_PROD_OFFSET, at).unwrap();
                }
            }
        }
    }

    /// Delivers `data` on queue `qi` into posted RX buffers, full pages from offset 0,
    /// a GSO extra slot after the first if `gso`. False if too few buffers are posted.
    pub fn deliver(
        &mut self,
        qi: usize,
        data: &[u8],
        flags: NetRxFlags,
        gso: Option<(NetifGsoType, u16)>,
    ) -> bool {
        let m = self.misbehave;
        let q = &mut self.queues[qi];
        let mut nslots = data.len().div_ceil(4096).max(1);
        if m == Misbehaviour::RxTooManySlots {
            nslots = 40;
        }
        let need = nslots + usize::from(gso.is_some());
        if (q.rx.unconsumed_requests().unwrap() as usize) < need {
            return false;
        }
        let mut w = self.world.borrow_mut();
        for i in 0..nslots {
            let req = q.rx.pop_request().unwrap().unwrap();
            let chunk: &[u8] = if m == Misbehaviour::RxTooManySlots {
                &data[..data.len().min(100)]
            } else {
                &data[(i * 4096).min(data.len())..((i + 1) * 4096).min(data.len())]
            };
            let pg = w.map(req.gref, true).expect("rx grant writable");
            w.mem(pg, 1).write_bytes(0, chunk).unwrap();
            w.unmap(req.gref);
            let mut f = if i == 0 { flags } else { NetRxFlags::empty() };
            if i + 1 < nslots {
                f |= NetRxFlags::MORE_DATA;
            }
            if i == 0 && gso.is_some() {
                f |= NetRxFlags::EXTRA_INFO;
            }
            let mut rsp = NetifRxResponse {
                id: req.id,
                offset: 0,
                flags: f.bits(),
                status: chunk.len() as i16,
            };
            match m {
                Misbehaviour::RxBogusId => rsp.id = rsp.id.wrapping_add(1),
                Misbehaviour::RxOutsidePage => rsp.offset = 4000,
                Misbehaviour::RxErrorStatus => rsp.status = NetifRsp::Error.raw(),
                _ => {}
            }
            q.rx.push_response(&rsp).unwrap();
            if i == 0 {
                if let Some((gso_type, size)) = gso {
                    // The extra takes a request (its id is lost) and a response slot.
                    let _ = q.rx.pop_request().unwrap().unwrap();
                    let mut info = NetifExtraInfo::encode(
                        &NetifExtra::Gso {
                            size,
                            gso_type,
                            features: 0,
                        },
                        false,
                    );
                    if m == Misbehaviour::RxBadExtra {
                        info.extra_type = 0;
                    }
                    q.rx.push_response(&NetifRxResponse::read_from_bytes(info.as_bytes()).unwrap())
                        .unwrap();
                }
            }
        }
        if q.rx.push_responses_and_check_notify().unwrap() {
            w.notify_front(q.rx_port);
        }
        if m == Misbehaviour::RxOverflow {
            let at = q.rx.rsp_prod_pvt().wrapping_add(1000);
            q.rx_mem.store_u32_release(RSP_PROD_OFFSET, at).unwrap();
        }
        true
    }

    /// RX buffers the frontend has posted and we have not used.
    pub fn rx_posted(&mut self, qi: usize) -> u32 {
        self.queues[qi].rx.unconsumed_requests().unwrap()
    }

    pub fn set_state(&self, s: XenbusState) {
        self.world
            .borrow_mut()
            .xs
            .insert(format!("{BACK}/state"), s.xenstore_value().into());
    }
}

impl Netback {
    /// Answers up to `rsps.len()` posted RX buffers with arbitrary responses.
    pub fn raw_rx(&mut self, qi: usize, rsps: &[NetifRxResponse]) {
        let q = &mut self.queues[qi];
        let n = (q.rx.unconsumed_requests().unwrap() as usize).min(rsps.len());
        for r in &rsps[..n] {
            q.rx.pop_request().unwrap().unwrap();
            q.rx.push_response(r).unwrap();
        }
        q.rx.push_responses().unwrap();
    }

    /// Answers outstanding TX requests with arbitrary responses.
    pub fn raw_tx(&mut self, qi: usize, rsps: &[NetifTxResponse]) {
        let q = &mut self.queues[qi];
        while let Some(r) = q.tx.pop_request().unwrap() {
            q.pending.push(r);
        }
        let n = q.pending.len().min(rsps.len());
        q.pending.drain(..n);
        for r in &rsps[..n] {
            q.tx.push_response(r).unwrap();
        }
        q.tx.push_responses().unwrap();
    }
}
