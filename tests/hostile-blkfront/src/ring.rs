//! The ring side: a connected ring (submit, expect a status) and request builders.

use anyhow::{bail, Result};
use sluice_abi::blkif::{
    BlkifFrontRing, BlkifOp, BlkifRequest, BlkifRequestIndirect, BlkifRequestSegment,
    BlkifResponse, BlkifRsp,
};
use sluice_hostile_common::{secs, Report};
use sluice_xen_sys::EvtchnDevice;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A grant reference far beyond any grant table a domain has: never granted.
pub(crate) const BOGUS_GREF: u32 = 0x7fff_0000;

/// A connected ring.
pub(crate) struct Conn<'a> {
    pub(crate) ring: BlkifFrontRing<'a>,
    pub(crate) ev: &'a EvtchnDevice,
    pub(crate) port: u32,
}

impl Conn<'_> {
    /// Pushes `reqs` at once and collects as many responses (10 s at most).
    pub(crate) fn submit(&mut self, reqs: &[BlkifRequest]) -> Result<Vec<BlkifResponse>> {
        for q in reqs {
            self.ring.push_request(q)?;
        }
        self.ring.push_requests()?;
        self.ev.notify(self.port)?;
        let deadline = Instant::now() + secs(10);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        loop {
            while let Some(rsp) = self.ring.pop_response()? {
                out.push(rsp);
            }
            if out.len() >= reqs.len() {
                return Ok(out);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} response(s) after {:?}",
                    out.len(),
                    reqs.len(),
                    secs(10)
                );
            }
            if self.ev.wait(Some(Duration::from_millis(50)))? {
                pending.clear();
                self.ev.read_pending(&mut pending)?;
                for &p in &pending {
                    self.ev.unmask(p)?;
                }
            }
        }
    }

    /// Sends one request; the response must carry its id and `want`.
    pub(crate) fn expect(
        &mut self,
        r: &mut Report,
        name: &str,
        req: BlkifRequest,
        want: BlkifRsp,
    ) -> bool {
        match self.submit(&[req]) {
            Ok(rsp) => {
                let got = rsp[0];
                let ok = got.id == req.id && got.status == want as i16;
                r.check(
                    name,
                    ok,
                    format!(
                        "response id {:#x} status {} (want id {:#x} status {})",
                        got.id, got.status, req.id, want as i16
                    ),
                );
                ok
            }
            Err(e) => {
                r.check(name, false, format!("{e:#}"));
                false
            }
        }
    }
}

pub(crate) fn seg(gref: u32, first: u8, last: u8) -> BlkifRequestSegment {
    BlkifRequestSegment::new(gref, first, last)
}

pub(crate) fn rw(op: BlkifOp, id: u64, sector: u64, segs: &[BlkifRequestSegment]) -> BlkifRequest {
    let mut q = BlkifRequest {
        operation: op as u8,
        nr_segments: segs.len() as u8,
        id,
        sector_number: sector,
        ..Default::default()
    };
    q.seg[..segs.len()].copy_from_slice(segs);
    q
}

/// Any request variant as a ring slot.
pub(crate) fn slot<T: IntoBytes + Immutable>(v: &T) -> BlkifRequest {
    let mut b = [0u8; size_of::<BlkifRequest>()];
    b[..size_of::<T>()].copy_from_slice(v.as_bytes());
    BlkifRequest::read_from_bytes(&b).expect("a slot is 112 bytes")
}

pub(crate) fn indirect(
    op: BlkifOp,
    id: u64,
    sector: u64,
    nr_segments: u16,
    grefs: &[u32],
) -> BlkifRequest {
    let mut q = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: op as u8,
        nr_segments,
        id,
        sector_number: sector,
        ..Default::default()
    };
    for (dst, &g) in q.indirect_grefs.iter_mut().zip(grefs) {
        *dst = g.into();
    }
    slot(&q)
}
