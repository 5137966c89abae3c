//! The flood of bad requests (`--flood N`).

use crate::ring::{rw, seg, Conn, BOGUS_GREF};
use sluice_abi::blkif::{BlkifOp, BlkifRequest, BlkifRsp};
use sluice_hostile_common::Report;
use std::time::Instant;

/// Bad requests of the flood by default (`--flood N`; three kinds in turn: an unknown
/// operation, a write past the end of the disk, a write from a grant never made). 10^4
/// take about 40 s under TCG (10^5: 397 s, too long for every run of the suite).
pub const FLOOD_REQUESTS: u64 = 10_000;
const FLOOD_ID: u64 = 0xf100_0000_0000;

/// Sends `total` bad requests, a ring's worth at a time: every one must be refused,
/// with its id.
pub(crate) fn flood(c: &mut Conn, r: &mut Report, sectors: u64, dgref: u32, total: u64) {
    let t = Instant::now();
    let batch = u64::from(c.ring.size());
    let (mut sent, mut refused) = (0u64, 0u64);
    let mut wrong = None;
    while sent < total {
        let n = batch.min(total - sent);
        let reqs: Vec<BlkifRequest> = (sent..sent + n)
            .map(|i| {
                let id = FLOOD_ID + i;
                match i % 3 {
                    0 => BlkifRequest {
                        operation: 0xee,
                        ..rw(BlkifOp::Write, id, 0, &[seg(dgref, 0, 7)])
                    },
                    1 => rw(BlkifOp::Write, id, sectors, &[seg(dgref, 0, 7)]),
                    _ => rw(BlkifOp::Write, id, 0, &[seg(BOGUS_GREF, 0, 7)]),
                }
            })
            .collect();
        match c.submit(&reqs) {
            Ok(rsps) => {
                for p in rsps {
                    if p.status != BlkifRsp::Okay as i16
                        && (FLOOD_ID + sent..FLOOD_ID + sent + n).contains(&p.id)
                    {
                        refused += 1;
                    } else {
                        wrong.get_or_insert((p.id, p.status));
                    }
                }
            }
            Err(e) => {
                r.check("flood-refused", false, format!("after {sent}: {e:#}"));
                return;
            }
        }
        sent += n;
    }
    r.check(
        "flood-refused",
        refused == total && wrong.is_none(),
        format!(
            "{refused} of {total} bad requests refused in {:.1} s (first wrong \
             response (id, status): {wrong:?})",
            t.elapsed().as_secs_f64()
        ),
    );
}
