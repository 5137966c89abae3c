//! The data path: one vif's TX and RX rings, served like a minimal netback (every TX
//! request answered OKAY, its data dropped; no RX traffic) until the first TX packet,
//! where the vif's [`Mode`] misbehaves.

use anyhow::{anyhow, Result};
use sluice_abi::netif::{
    NetRxFlags, NetTxFlags, NetifRsp, NetifRxBackRing, NetifRxResponse, NetifTxBackRing,
    NetifTxResponse,
};
use sluice_abi::ring::{REQ_PROD_OFFSET, RSP_PROD_OFFSET};
use sluice_abi::shared::SharedMem;

/// How a vif's backend misbehaves at the frontend's first TX packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Served correctly throughout.
    Ok,
    /// The TX response carries id [`BOGUS_TX_ID`], which no request has.
    BogusId,
    /// The RX ring's `rsp_prod` is set [`UNSOLICITED_RX`] past the frontend's `req_prod`:
    /// responses to buffers never posted.
    Unsolicited,
    /// Stops answering anything; the xenbus state stays Connected.
    Vanish,
    /// One RX response with data past its page (offset 4000, 1500 bytes) followed by an
    /// extra-info slot of an unknown type; TX keeps being answered.
    BadRx,
    /// The TX ring's `rsp_prod` jumps [`RUNAWAY`] ahead of every request.
    Runaway,
}

/// [`Mode::BogusId`]'s TX response id (a 256-slot ring's ids end at 255).
pub const BOGUS_TX_ID: u16 = 0xdead;
/// [`Mode::Unsolicited`]: responses beyond the posted RX requests.
pub const UNSOLICITED_RX: u32 = 8;
/// [`Mode::Runaway`]: how far ahead of `rsp_prod` the TX ring's index jumps.
pub const RUNAWAY: u32 = 0x4000_0000;

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::Ok,
        Mode::BogusId,
        Mode::Unsolicited,
        Mode::Vanish,
        Mode::BadRx,
        Mode::Runaway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::BogusId => "bogus-id",
            Mode::Unsolicited => "unsolicited",
            Mode::Vanish => "vanish",
            Mode::BadRx => "bad-rx",
            Mode::Runaway => "runaway",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                anyhow!("unknown mode {s:?} (one of {})", names.join(", "))
            })
    }
}

/// One vif's rings and where its misbehaviour stands.
pub struct Rings<'a> {
    pub tx: NetifTxBackRing<'a>,
    pub rx: NetifRxBackRing<'a>,
    pub tx_mem: SharedMem<'a>,
    pub rx_mem: SharedMem<'a>,
    pub mode: Mode,
    /// The misbehaviour happened: nothing more is answered (but TX for
    /// [`Mode::BadRx`]).
    pub misbehaved: bool,
    /// The next TX request slot holds an extra-info item.
    extra_next: bool,
}

impl<'a> Rings<'a> {
    /// Attaches to freshly connected rings.
    pub fn new(tx_mem: SharedMem<'a>, rx_mem: SharedMem<'a>, mode: Mode) -> Result<Self> {
        let e = |e| anyhow!("ring: {e}");
        Ok(Rings {
            tx: NetifTxBackRing::resume(tx_mem).map_err(e)?,
            rx: NetifRxBackRing::resume(rx_mem).map_err(e)?,
            tx_mem,
            rx_mem,
            mode,
            misbehaved: false,
            extra_next: false,
        })
    }

    /// Takes what the frontend published; returns whether to notify it and a line to
    /// log when it misbehaved just now.
    pub fn step(&mut self) -> Result<(bool, Option<String>)> {
        let e = |e| anyhow!("ring: {e}");
        let mut said = None;
        let mut notify = false;
        loop {
            if self.misbehaved && self.mode != Mode::BadRx {
                return Ok((notify, said));
            }
            let Some(req) = self.tx.pop_request().map_err(e)? else {
                notify |= self.tx.push_responses_and_check_notify().map_err(e)?;
                if self.tx.final_check_for_requests().map_err(e)? {
                    continue;
                }
                return Ok((notify, said));
            };
            if std::mem::take(&mut self.extra_next) {
                // An extra-info slot: answered NULL, as netback does.
                self.tx
                    .push_response(&NetifTxResponse {
                        id: 0,
                        status: NetifRsp::Null.raw(),
                    })
                    .map_err(e)?;
                continue;
            }
            self.extra_next =
                NetTxFlags::from_bits_retain(req.flags).contains(NetTxFlags::EXTRA_INFO);
            let okay = NetifTxResponse {
                id: req.id,
                status: NetifRsp::Okay.raw(),
            };
            if self.misbehaved || self.mode == Mode::Ok {
                self.tx.push_response(&okay).map_err(e)?;
                continue;
            }
            self.misbehaved = true;
            said = Some(self.misbehave(req.id, &okay)?);
            notify = true;
        }
    }

    /// The misbehaviour, at TX request `id`; the line to log.
    fn misbehave(&mut self, id: u16, okay: &NetifTxResponse) -> Result<String> {
        let e = |e| anyhow!("ring: {e}");
        let m = self.mode.name();
        Ok(match self.mode {
            Mode::Ok => unreachable!("Ok never misbehaves"),
            Mode::BogusId => {
                self.tx
                    .push_response(&NetifTxResponse {
                        id: BOGUS_TX_ID,
                        status: NetifRsp::Okay.raw(),
                    })
                    .map_err(e)?;
                self.tx.push_responses().map_err(e)?;
                format!("[{m}]: answered tx request id {id} with id {BOGUS_TX_ID}")
            }
            Mode::Unsolicited => {
                let req_prod = self.rx_mem.load_u32_acquire(REQ_PROD_OFFSET)?;
                let bogus = req_prod.wrapping_add(UNSOLICITED_RX);
                self.rx_mem.store_u32_release(RSP_PROD_OFFSET, bogus)?;
                format!("[{m}]: rx rsp_prod set to {bogus}, {UNSOLICITED_RX} past the posted req_prod {req_prod} (tx id {id} unanswered)")
            }
            Mode::Runaway => {
                let at = self.tx.rsp_prod_pvt().wrapping_add(RUNAWAY);
                self.tx_mem.store_u32_release(RSP_PROD_OFFSET, at)?;
                format!(
                    "[{m}]: tx rsp_prod set to {at} ({RUNAWAY:#x} ahead; tx id {id} unanswered)"
                )
            }
            Mode::Vanish => {
                format!("[{m}]: stopped answering at tx id {id}; state stays Connected")
            }
            Mode::BadRx => {
                self.tx.push_response(okay).map_err(e)?;
                let (Some(a), Some(_)) = (
                    self.rx.pop_request().map_err(e)?,
                    self.rx.pop_request().map_err(e)?,
                ) else {
                    return Ok(format!(
                        "[{m}]: fewer than 2 rx buffers posted: nothing sent"
                    ));
                };
                // Data past the end of its page, and an extra-info item follows.
                self.rx
                    .push_response(&NetifRxResponse {
                        id: a.id,
                        offset: 4000,
                        flags: NetRxFlags::EXTRA_INFO.bits(),
                        status: 1500,
                    })
                    .map_err(e)?;
                // The extra-info slot: type 0xee (unknown), no more; the rest garbage.
                self.rx
                    .push_response(&NetifRxResponse {
                        id: 0x00ee,
                        offset: 0xffff,
                        flags: 0xffff,
                        status: -1,
                    })
                    .map_err(e)?;
                self.rx.push_responses().map_err(e)?;
                format!("[{m}]: rx response for buffer id {} with 1500 bytes at offset 4000 and an extra-info slot of type 0xee", a.id)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_abi::netif::{
        NetifRxFrontRing, NetifRxRequest, NetifTxFrontRing, NetifTxRequest, NetifTxResponse,
    };
    use sluice_abi::ring::RingError;

    #[repr(align(4096))]
    struct Page([u8; 4096]);

    fn page() -> Box<Page> {
        Box::new(Page([0; 4096]))
    }

    fn tx_req(id: u16) -> NetifTxRequest {
        NetifTxRequest {
            gref: sluice_abi::netif::GrantRef(1),
            offset: 0,
            flags: 0,
            id,
            size: 60,
        }
    }

    type Tx<'a> = NetifTxFrontRing<'a>;
    type Rx<'a> = NetifRxFrontRing<'a>;

    /// A frontend's rings: 16 RX buffers posted, `n` TX packets sent one by one, the
    /// backend stepping after each; then `check` sees the frontend's rings.
    fn run(mode: Mode, n: u16, check: impl FnOnce(&mut Tx<'_>, &mut Rx<'_>, Option<String>)) {
        let (mut t, mut r) = (page(), page());
        let (tm, rm) = (
            SharedMem::from_mut_slice(&mut t.0),
            SharedMem::from_mut_slice(&mut r.0),
        );
        let mut tf = NetifTxFrontRing::init(tm).unwrap();
        let mut rf = NetifRxFrontRing::init(rm).unwrap();
        for i in 0..16 {
            rf.push_request(&NetifRxRequest {
                id: i,
                pad: 0,
                gref: sluice_abi::netif::GrantRef(1),
            })
            .unwrap();
        }
        rf.push_requests().unwrap();
        let mut back = Rings::new(tm, rm, mode).unwrap();
        let mut said = None;
        for i in 0..n {
            tf.push_request(&tx_req(i)).unwrap();
            tf.push_requests().unwrap();
            let (_, s) = back.step().unwrap();
            said = said.or(s);
        }
        check(&mut tf, &mut rf, said);
    }

    fn tx_responses(f: &mut Tx<'_>) -> Result<Vec<NetifTxResponse>, RingError> {
        let mut out = vec![];
        while let Some(r) = f.pop_response()? {
            out.push(r);
        }
        Ok(out)
    }

    fn rx_responses(f: &mut Rx<'_>) -> Result<Vec<NetifRxResponse>, RingError> {
        let mut out = vec![];
        while let Some(r) = f.pop_response()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn modes_parse_by_name() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()).unwrap(), m);
        }
        assert!(Mode::parse("nice").is_err());
    }

    #[test]
    fn ok_answers_every_tx_request() {
        run(Mode::Ok, 3, |t, r, said| {
            assert_eq!(said, None);
            let ids: Vec<u16> = tx_responses(t).unwrap().iter().map(|r| r.id).collect();
            assert_eq!(ids, [0, 1, 2]);
            assert!(rx_responses(r).unwrap().is_empty());
        });
    }

    #[test]
    fn bogus_id_answers_the_first_packet_with_an_id_never_sent_then_nothing() {
        run(Mode::BogusId, 3, |t, _, said| {
            assert!(said.unwrap().contains("with id 57005"));
            let rsp = tx_responses(t).unwrap();
            assert_eq!(rsp.len(), 1);
            assert_eq!(rsp[0].id, BOGUS_TX_ID);
        });
    }

    #[test]
    fn unsolicited_publishes_rx_responses_beyond_the_posted_buffers() {
        run(Mode::Unsolicited, 2, |_, r, said| {
            assert!(said.is_some());
            assert!(matches!(
                rx_responses(r),
                Err(RingError::ResponseOverflow { rsp_prod: 24, .. })
            ));
        });
    }

    #[test]
    fn runaway_moves_tx_rsp_prod_far_ahead() {
        run(Mode::Runaway, 2, |t, _, said| {
            assert!(said.is_some());
            assert!(matches!(
                tx_responses(t),
                Err(RingError::ResponseOverflow {
                    rsp_prod: RUNAWAY,
                    ..
                })
            ));
        });
    }

    #[test]
    fn vanish_answers_nothing_from_the_first_packet_on() {
        run(Mode::Vanish, 4, |t, r, said| {
            assert!(said.is_some());
            assert!(tx_responses(t).unwrap().is_empty());
            assert!(rx_responses(r).unwrap().is_empty());
        });
    }

    #[test]
    fn bad_rx_sends_one_malformed_packet_and_keeps_answering_tx() {
        run(Mode::BadRx, 3, |t, r, said| {
            assert!(said.unwrap().contains("offset 4000"));
            assert_eq!(tx_responses(t).unwrap().len(), 3);
            let rx = rx_responses(r).unwrap();
            assert_eq!(rx.len(), 2);
            assert_eq!((rx[0].id, rx[0].offset, rx[0].status), (0, 4000, 1500));
            assert_eq!(rx[1].id & 0xff, 0xee);
        });
    }
}
