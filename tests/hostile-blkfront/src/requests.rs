//! The hostile requests of the attack, one function per kind, in the order [`run`]
//! sends them over the connected ring: grants the backend must not use, ranges past the
//! end of the disk, bad segments, bad indirect requests, unknown and reserved
//! operations, barriers and discards, then a batch mixing bad requests with good ones.
//! Writes carry real data, so that one wrongly accepted shows in the image.
//!
//! [`run`]: crate::attack::run

use crate::attack::{Disk, Ids, Pages};
use crate::ring::{indirect, rw, seg, slot, Conn, BOGUS_GREF};
use anyhow::{Context, Result};
use sluice_abi::blkif::{BlkifOp, BlkifRequestDiscard, BlkifRequestSegment, BlkifRsp};
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_hostile_common::Report;
use BlkifOp::{Read, Write};
use BlkifRsp::{EOpNotSupp, Error, Okay};

/// `feature-max-indirect-segments` of sluice-blkback (a larger count must be refused).
const BACKEND_MAX_INDIRECT: u16 = 256;

/// Grants the backend must not use: never granted, withdrawn, read-only for a read.
pub(crate) fn bad_grants(
    c: &mut Conn,
    r: &mut Report,
    p: &Pages,
    d: Disk,
    ids: &mut Ids,
) -> Result<()> {
    let s = d.s;
    let mut next = || ids.next();
    c.expect(
        r,
        "read-gref-never-granted",
        rw(Read, next(), s, &[seg(BOGUS_GREF, 0, 7)]),
        Error,
    );
    c.expect(
        r,
        "write-gref-withdrawn",
        rw(Write, next(), s, &[seg(p.freed, 0, 7)]),
        Error,
    );
    c.expect(
        r,
        "read-into-read-only-grant",
        rw(Read, next(), s, &[seg(p.ro.grefs()[0], 0, 7)]),
        Error,
    );
    let mut ro_bytes = vec![0u8; XEN_PAGE_SIZE];
    p.ro.mem().read_bytes(0, &mut ro_bytes)?;
    r.check(
        "read-only-grant-untouched",
        ro_bytes.iter().all(|&b| b == 0xa5),
        "the read-only page still holds its 0xa5 bytes",
    );
    Ok(())
}

/// Writes past the end of the disk, across it, and with a sector number that overflows.
pub(crate) fn bad_ranges(c: &mut Conn, r: &mut Report, p: &Pages, d: Disk, ids: &mut Ids) {
    let sectors = d.sectors;
    let dseg = seg(p.dpages.grefs()[0], 0, 7);
    let mut next = || ids.next();
    c.expect(
        r,
        "write-at-first-sector-past-end",
        rw(Write, next(), sectors, &[dseg]),
        Error,
    );
    c.expect(
        r,
        "write-straddling-the-end",
        rw(Write, next(), sectors - 4, &[dseg]),
        Error,
    );
    c.expect(
        r,
        "write-sector-overflow",
        rw(Write, next(), u64::MAX - 3, &[dseg]),
        Error,
    );
    c.expect(
        r,
        "write-far-past-end",
        rw(Write, next(), sectors << 20, &[dseg]),
        Error,
    );
}

/// Bad segment counts and sector ranges inside a page.
pub(crate) fn bad_segments(c: &mut Conn, r: &mut Report, p: &Pages, d: Disk, ids: &mut Ids) {
    let s = d.s;
    let d0 = p.dpages.grefs()[0];
    let mut next = || ids.next();
    c.expect(r, "write-0-segments", rw(Write, next(), s, &[]), Error);
    let all: Vec<BlkifRequestSegment> = p.dpages.grefs()[..11]
        .iter()
        .map(|&g| seg(g, 0, 7))
        .collect();
    for nr in [12u8, 255] {
        let mut q = rw(Write, next(), s, &all);
        q.nr_segments = nr;
        c.expect(r, &format!("write-{nr}-segments"), q, Error);
    }
    c.expect(
        r,
        "write-first-sect-after-last",
        rw(Write, next(), s, &[seg(d0, 4, 3)]),
        Error,
    );
    c.expect(
        r,
        "write-last-sect-8",
        rw(Write, next(), s, &[seg(d0, 0, 8)]),
        Error,
    );
    c.expect(
        r,
        "write-first-sect-200",
        rw(Write, next(), s, &[seg(d0, 200, 201)]),
        Error,
    );
}

/// Indirect requests: too many, zero or never-granted segment pages, past the end, a
/// bad segment inside, an unknown inner operation.
pub(crate) fn bad_indirect(
    c: &mut Conn,
    r: &mut Report,
    p: &Pages,
    d: Disk,
    ids: &mut Ids,
) -> Result<()> {
    let (s, sectors) = (d.s, d.sectors);
    let d0 = p.dpages.grefs()[0];
    let mut next = || ids.next();
    // Indirect: the segment page holds valid segments over the data pages.
    let ipage = p.ind.page(0).context("indirect page")?;
    for (i, &g) in p.dpages.grefs().iter().enumerate() {
        ipage.write(i * 8, &seg(g, 0, 7))?;
    }
    let i0 = p.ind.grefs()[0];
    c.expect(
        r,
        "indirect-too-many-segments",
        indirect(Write, next(), s, BACKEND_MAX_INDIRECT + 1, &[i0]),
        Error,
    );
    c.expect(
        r,
        "indirect-4097-segments",
        indirect(Write, next(), s, 4097, &[i0; 8]),
        Error,
    );
    c.expect(
        r,
        "indirect-0-segments",
        indirect(Write, next(), s, 0, &[i0]),
        Error,
    );
    c.expect(
        r,
        "indirect-gref-never-granted",
        indirect(Write, next(), s, 1, &[BOGUS_GREF]),
        Error,
    );
    c.expect(
        r,
        "indirect-gref-withdrawn",
        indirect(Write, next(), s, 1, &[p.freed]),
        Error,
    );
    c.expect(
        r,
        "indirect-past-end",
        indirect(Write, next(), sectors - 8, 2, &[i0]),
        Error,
    );
    let bad = p.ind.page(1).context("indirect page")?;
    bad.write(0, &seg(d0, 0, 7))?;
    bad.write(8, &seg(d0, 0, 9))?;
    c.expect(
        r,
        "indirect-bad-segment",
        indirect(Write, next(), s, 2, &[p.ind.grefs()[1]]),
        Error,
    );
    let mut q = indirect(Write, next(), s, 1, &[i0]);
    q.nr_segments = 0x7f; // indirect_op
    c.expect(r, "indirect-unknown-inner-operation", q, Error);
    Ok(())
}

/// Unknown and reserved operations, barriers, discards.
pub(crate) fn bad_operations(c: &mut Conn, r: &mut Report, p: &Pages, d: Disk, ids: &mut Ids) {
    let (s, sectors) = (d.s, d.sectors);
    let d0 = p.dpages.grefs()[0];
    let dseg = seg(d0, 0, 7);
    let mut next = || ids.next();
    let mut q = rw(Write, next(), s, &[dseg]);
    q.operation = 0x7f;
    c.expect(r, "unknown-operation", q, EOpNotSupp);
    let mut q = rw(Write, next(), s, &[dseg]);
    q.operation = 4;
    c.expect(r, "reserved-operation", q, EOpNotSupp);
    // sluice-blkback offers barriers (feature-barrier): an empty one is answered Okay
    // (it writes nothing, so the image check still finds only the valid write), one past
    // the end of the disk is refused.
    c.expect(
        r,
        "write-barrier-empty",
        rw(BlkifOp::WriteBarrier, next(), s, &[]),
        Okay,
    );
    c.expect(
        r,
        "write-barrier-past-end",
        rw(BlkifOp::WriteBarrier, next(), sectors - 4, &[dseg]),
        Error,
    );
    let disc = |id, sector, nr_sectors, flag| {
        slot(&BlkifRequestDiscard {
            operation: BlkifOp::Discard as u8,
            flag,
            id,
            sector_number: sector,
            nr_sectors,
            ..Default::default()
        })
    };
    c.expect(
        r,
        "discard-past-end",
        disc(next(), sectors - 8, 16, 0),
        Error,
    );
    c.expect(
        r,
        "discard-overflow",
        disc(next(), u64::MAX - 1, 16, 0),
        Error,
    );
    c.expect(r, "discard-bad-flags", disc(next(), s, 8, 0x80), Error);
}

/// A batch: bad requests among good ones are each answered, with their own ids.
pub(crate) fn batch_mixed(c: &mut Conn, r: &mut Report, p: &Pages, d: Disk, ids: &mut Ids) {
    let (s, sectors) = (d.s, d.sectors);
    let dseg = seg(p.dpages.grefs()[0], 0, 7);
    let mut next = || ids.next();
    let batch = [
        rw(Read, next(), s, &[seg(p.scratch.grefs()[0], 0, 7)]),
        rw(Write, next(), sectors, &[dseg]),
        {
            let mut q = rw(Read, next(), s, &[dseg]);
            q.operation = 0xee;
            q
        },
        rw(Read, next(), s, &[seg(p.scratch.grefs()[0], 0, 7)]),
    ];
    let want = [Okay, Error, EOpNotSupp, Okay];
    match c.submit(&batch) {
        Ok(rsps) => {
            let ok = batch.iter().zip(want).all(|(q, w)| {
                rsps.iter()
                    .filter(|p| p.id == q.id)
                    .map(|p| p.status)
                    .eq([w as i16])
            });
            r.check(
                "batch-mixed",
                ok,
                format!(
                    "responses (id, status): {:?}",
                    rsps.iter().map(|p| (p.id, p.status)).collect::<Vec<_>>()
                ),
            );
        }
        Err(e) => r.check("batch-mixed", false, format!("{e:#}")),
    }
}
