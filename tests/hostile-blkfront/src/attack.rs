//! The attack on the device under test: refused connections, hostile requests,
//! valid I/O, the flood, a runaway `req_prod`.

use crate::flood::flood;
use crate::front::{Front, Nodes, CLOSED, CLOSING};
use crate::report::{secs, Report};
use crate::ring::{indirect, rw, seg, slot, Conn, BOGUS_GREF};
use crate::Args;
use anyhow::{bail, Context, Result};
use sluice_abi::blkif::{
    BlkifFrontRing, BlkifOp, BlkifRequestDiscard, BlkifRequestSegment, BlkifRsp,
};
use sluice_abi::ring::{REQ_PROD_OFFSET, RSP_PROD_OFFSET};
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_xen_sys::GntallocDevice;

/// Pages the valid write covers: 4 direct segments, then 16 indirect ones.
const DIRECT_PAGES: usize = 4;
const INDIRECT_PAGES: usize = 16;
const DATA_PAGES: usize = DIRECT_PAGES + INDIRECT_PAGES;
/// Bytes of the data file the valid write puts on the disk (80 KiB).
pub const VALID_BYTES: usize = DATA_PAGES * XEN_PAGE_SIZE;
/// `feature-max-indirect-segments` of sluice-blkback (a larger count must be refused).
const BACKEND_MAX_INDIRECT: u16 = 256;

pub(crate) fn run(r: &mut Report, a: &Args) -> Result<()> {
    let data = std::fs::read(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    if data.len() < VALID_BYTES {
        bail!("{} is shorter than {VALID_BYTES} bytes", a.data.display());
    }
    let f = Front::open(a.devid)?;
    let be_id = f.be_id;
    println!("hostile frontend: {} -> {} (domain {be_id})", f.fe, f.be);
    let sectors: u64 = f
        .read(&format!("{}/sectors", f.be))
        .and_then(|s| s.parse().ok())
        .context("the backend publishes no sectors")?;
    let (s0, ok) = f.wait_be(|s| s == 2, secs(30));
    r.check(
        "initwait",
        ok,
        format!("backend state {s0}, {sectors} sectors"),
    );
    if !ok {
        bail!("the backend never offered the device");
    }

    let gnt = GntallocDevice::open()?;
    let ring = gnt.alloc(be_id, 1, true)?;
    let dpages = gnt.alloc(be_id, DATA_PAGES, true)?;
    let back = gnt.alloc(be_id, DATA_PAGES, true)?;
    let ro = gnt.alloc(be_id, 1, false)?;
    let ind = gnt.alloc(be_id, 2, true)?;
    let scratch = gnt.alloc(be_id, 1, true)?;
    // A grant made and withdrawn: its reference is no longer valid (allocated last, so
    // that none of the pages above reuses it).
    let freed = {
        let p = gnt.alloc(be_id, 1, true)?;
        p.grefs()[0]
    };
    dpages.mem().write_bytes(0, &data[..VALID_BYTES])?;
    ro.mem().fill(0, XEN_PAGE_SIZE, 0xa5)?;
    BlkifFrontRing::init(ring.mem())?;
    let good_ref = ring.grefs()[0].to_string().into_bytes();
    let port = || -> Result<Vec<u8>> {
        Ok(f.ev
            .bind_unbound_port(be_id)
            .context("allocating an event channel")?
            .to_string()
            .into_bytes())
    };
    let proto = || b"x86_64-abi".to_vec();

    // (a) Rings the backend cannot map, (e) garbage in xenstore.
    let ro_ref = ro.grefs()[0].to_string().into_bytes();
    let refusals: Vec<(&str, Nodes)> = vec![
        (
            "ring-ref-never-granted",
            vec![
                ("ring-ref", BOGUS_GREF.to_string().into_bytes()),
                ("event-channel", port()?),
                ("protocol", proto()),
            ],
        ),
        (
            "ring-ref-withdrawn-grant",
            vec![
                ("ring-ref", freed.to_string().into_bytes()),
                ("event-channel", port()?),
            ],
        ),
        (
            "ring-ref-read-only-grant",
            vec![("ring-ref", ro_ref.clone()), ("event-channel", port()?)],
        ),
        (
            "ring-ref-not-a-number",
            vec![("ring-ref", b"12abc".to_vec()), ("event-channel", port()?)],
        ),
        (
            "ring-ref-over-32-bits",
            vec![
                ("ring-ref", b"4294967296".to_vec()),
                ("event-channel", port()?),
            ],
        ),
        ("ring-ref-missing", vec![("event-channel", port()?)]),
        (
            "event-channel-not-a-number",
            vec![
                ("ring-ref", good_ref.clone()),
                ("event-channel", b"port7".to_vec()),
            ],
        ),
        (
            "event-channel-not-offered",
            vec![
                ("ring-ref", good_ref.clone()),
                ("event-channel", b"4000".to_vec()),
            ],
        ),
        (
            "ring-page-order-absurd",
            vec![
                ("ring-page-order", b"4000000000".to_vec()),
                ("ring-ref", good_ref.clone()),
                ("event-channel", port()?),
            ],
        ),
        (
            "ring-page-order-without-refs",
            vec![
                ("ring-page-order", b"1".to_vec()),
                ("ring-ref0", good_ref.clone()),
                ("event-channel", port()?),
            ],
        ),
        (
            "queues-absurd",
            vec![
                ("multi-queue-num-queues", b"4096".to_vec()),
                ("ring-ref", good_ref.clone()),
                ("event-channel", port()?),
            ],
        ),
        (
            "protocol-foreign",
            vec![
                ("ring-ref", good_ref.clone()),
                ("event-channel", port()?),
                ("protocol", b"x86_32-abi".to_vec()),
            ],
        ),
        (
            "protocol-not-utf8",
            vec![
                ("ring-ref", good_ref.clone()),
                ("event-channel", port()?),
                ("protocol", vec![0xff, 0xfe, 0x00, 0x41]),
            ],
        ),
    ];
    for (name, nodes) in &refusals {
        if !f.expect_refusal(r, name, nodes) {
            bail!("{name}: the backend did not come back; stopping");
        }
    }

    // A proper connection.
    let port = f.connect(&ring).context("connecting properly")?;
    r.check("connect", true, format!("Connected, event channel {port}"));
    let mut c = Conn {
        ring: BlkifFrontRing::attach(ring.mem(), 0)?,
        ev: &f.ev,
        port,
    };
    let s = a.sector;
    let d0 = dpages.grefs()[0];
    let dseg = seg(d0, 0, 7);
    let mut id = 0xb10c_0000u64;
    let mut next = || {
        id += 1;
        id
    };
    use BlkifOp::{Read, Write};
    use BlkifRsp::{EOpNotSupp, Error, Okay};

    // (b) Hostile requests. Writes carry real data, so that one wrongly accepted shows
    // in the image (the host checks it holds nothing but the valid write below).
    c.expect(
        r,
        "read-gref-never-granted",
        rw(Read, next(), s, &[seg(BOGUS_GREF, 0, 7)]),
        Error,
    );
    c.expect(
        r,
        "write-gref-withdrawn",
        rw(Write, next(), s, &[seg(freed, 0, 7)]),
        Error,
    );
    c.expect(
        r,
        "read-into-read-only-grant",
        rw(Read, next(), s, &[seg(ro.grefs()[0], 0, 7)]),
        Error,
    );
    let mut ro_bytes = vec![0u8; XEN_PAGE_SIZE];
    ro.mem().read_bytes(0, &mut ro_bytes)?;
    r.check(
        "read-only-grant-untouched",
        ro_bytes.iter().all(|&b| b == 0xa5),
        "the read-only page still holds its 0xa5 bytes",
    );
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
    c.expect(r, "write-0-segments", rw(Write, next(), s, &[]), Error);
    let all: Vec<BlkifRequestSegment> =
        dpages.grefs()[..11].iter().map(|&g| seg(g, 0, 7)).collect();
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
    // Indirect: the segment page holds valid segments over the data pages.
    let ipage = ind.page(0).context("indirect page")?;
    for (i, &g) in dpages.grefs().iter().enumerate() {
        ipage.write(i * 8, &seg(g, 0, 7))?;
    }
    let i0 = ind.grefs()[0];
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
        indirect(Write, next(), s, 1, &[freed]),
        Error,
    );
    c.expect(
        r,
        "indirect-past-end",
        indirect(Write, next(), sectors - 8, 2, &[i0]),
        Error,
    );
    let bad = ind.page(1).context("indirect page")?;
    bad.write(0, &seg(d0, 0, 7))?;
    bad.write(8, &seg(d0, 0, 9))?;
    c.expect(
        r,
        "indirect-bad-segment",
        indirect(Write, next(), s, 2, &[ind.grefs()[1]]),
        Error,
    );
    let mut q = indirect(Write, next(), s, 1, &[i0]);
    q.nr_segments = 0x7f; // indirect_op
    c.expect(r, "indirect-unknown-inner-operation", q, Error);
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
    // A batch: bad requests among good ones are each answered, with their own ids.
    let batch = [
        rw(Read, next(), s, &[seg(scratch.grefs()[0], 0, 7)]),
        rw(Write, next(), sectors, &[dseg]),
        {
            let mut q = rw(Read, next(), s, &[dseg]);
            q.operation = 0xee;
            q
        },
        rw(Read, next(), s, &[seg(scratch.grefs()[0], 0, 7)]),
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

    // (c) The device still works: write 80 KiB (direct, then indirect), flush, read
    // back (indirect, and a partial direct segment).
    let direct: Vec<BlkifRequestSegment> = dpages.grefs()[..DIRECT_PAGES]
        .iter()
        .map(|&g| seg(g, 0, 7))
        .collect();
    c.expect(r, "valid-write-direct", rw(Write, next(), s, &direct), Okay);
    for (i, &g) in dpages.grefs()[DIRECT_PAGES..].iter().enumerate() {
        ipage.write(i * 8, &seg(g, 0, 7))?;
    }
    c.expect(
        r,
        "valid-write-indirect",
        indirect(
            Write,
            next(),
            s + (DIRECT_PAGES as u64 * 8),
            INDIRECT_PAGES as u16,
            &[i0],
        ),
        Okay,
    );
    c.expect(
        r,
        "valid-flush",
        rw(BlkifOp::FlushDiskcache, next(), 0, &[]),
        Okay,
    );
    for (i, &g) in back.grefs().iter().enumerate() {
        ipage.write(i * 8, &seg(g, 0, 7))?;
    }
    c.expect(
        r,
        "valid-read-indirect",
        indirect(Read, next(), s, DATA_PAGES as u16, &[i0]),
        Okay,
    );
    let mut got = vec![0u8; VALID_BYTES];
    back.mem().read_bytes(0, &mut got)?;
    r.check(
        "read-back-matches",
        got == data[..VALID_BYTES],
        format!("{VALID_BYTES} bytes at sector {s} read back"),
    );
    scratch.mem().fill(0, XEN_PAGE_SIZE, 0)?;
    c.expect(
        r,
        "valid-read-partial-segment",
        rw(Read, next(), s, &[seg(scratch.grefs()[0], 1, 3)]),
        Okay,
    );
    let mut page = vec![0u8; XEN_PAGE_SIZE];
    scratch.mem().read_bytes(0, &mut page)?;
    let ok = page[..512].iter().all(|&b| b == 0)
        && page[512..2048] == data[..1536]
        && page[2048..].iter().all(|&b| b == 0);
    r.check(
        "partial-segment-placed",
        ok,
        "sectors 1..=3 of the page hold the disk's first 3 sectors, the rest is untouched",
    );

    // (c2) A flood of bad requests: each refused; dom0 checks that the daemon's log
    // stays bounded (rate limited per device and message class).
    flood(&mut c, r, sectors, d0, a.flood);

    // (d) A runaway req_prod: far ahead of anything the ring can hold.
    let mem = ring.mem();
    let rsp_before = mem.load_u32_acquire(RSP_PROD_OFFSET)?;
    let runaway = c.ring.req_prod_pvt().wrapping_add(1000);
    mem.store_u32_release(REQ_PROD_OFFSET, runaway)?;
    f.ev.notify(port)?;
    let (st, ok) = f.wait_be(|s| s == CLOSING || s == CLOSED, secs(30));
    r.check(
        "runaway-req-prod-disconnects",
        ok,
        format!(
            "req_prod {runaway} -> backend state {st} (error: {})",
            f.be_error()
        ),
    );
    let rsp_after = mem.load_u32_acquire(RSP_PROD_OFFSET)?;
    r.check(
        "runaway-answered-nothing",
        rsp_after == rsp_before,
        format!("rsp_prod {rsp_before} -> {rsp_after}"),
    );
    // Done with this device: Closed, so that a later blkfront leaves it alone.
    f.clear();
    f.set_state(CLOSED)?;
    Ok(())
}
