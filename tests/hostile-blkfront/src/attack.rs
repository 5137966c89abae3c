//! The attack on the device under test, one function per phase, run in this order by
//! [`run`]: refused connections, hostile requests (grants, ranges, segments, indirect
//! requests, operations, a mixed batch), valid I/O, the flood, a runaway `req_prod`.

use crate::flood::flood;
use crate::front::{Front, Nodes, CLOSED, CLOSING};
use crate::ring::{indirect, rw, seg, Conn, BOGUS_GREF};
use crate::{requests, Args};
use anyhow::{bail, Context, Result};
use sluice_abi::blkif::{BlkifFrontRing, BlkifOp, BlkifRequestSegment, BlkifRsp};
use sluice_abi::ring::{REQ_PROD_OFFSET, RSP_PROD_OFFSET};
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_hostile_common::{secs, Report};
use sluice_xen_sys::{GntallocDevice, GrantedPages};
use BlkifOp::{Read, Write};
use BlkifRsp::Okay;

/// Pages the valid write covers: 4 direct segments, then 16 indirect ones.
const DIRECT_PAGES: usize = 4;
const INDIRECT_PAGES: usize = 16;
const DATA_PAGES: usize = DIRECT_PAGES + INDIRECT_PAGES;
/// Bytes of the data file the valid write puts on the disk (80 KiB).
pub const VALID_BYTES: usize = DATA_PAGES * XEN_PAGE_SIZE;

/// The pages the attack grants to the backend.
pub(crate) struct Pages {
    pub(crate) ring: GrantedPages,
    /// The data the valid write puts on the disk.
    pub(crate) dpages: GrantedPages,
    /// Where the valid read puts it back.
    pub(crate) back: GrantedPages,
    /// Granted read-only, filled with 0xa5.
    pub(crate) ro: GrantedPages,
    /// Two pages of indirect segments.
    pub(crate) ind: GrantedPages,
    pub(crate) scratch: GrantedPages,
    /// A grant made and withdrawn: its reference is no longer valid.
    pub(crate) freed: u32,
}

/// Where the attack writes (`--sector`) and the disk's size, both in sectors.
#[derive(Clone, Copy)]
pub(crate) struct Disk {
    pub(crate) s: u64,
    pub(crate) sectors: u64,
}

/// Request ids, one after another across the phases.
pub(crate) struct Ids(u64);

impl Ids {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

pub(crate) fn run(r: &mut Report, a: &Args) -> Result<()> {
    let data = std::fs::read(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    if data.len() < VALID_BYTES {
        bail!("{} is shorter than {VALID_BYTES} bytes", a.data.display());
    }
    let f = Front::open(a.devid)?;
    let sectors = offered(r, &f)?;
    let p = grant_pages(&f, &data)?;
    refusals(r, &f, &p)?;

    // A proper connection.
    let port = f.connect(&p.ring).context("connecting properly")?;
    r.check("connect", true, format!("Connected, event channel {port}"));
    let mut c = Conn {
        ring: BlkifFrontRing::attach(p.ring.mem(), 0)?,
        ev: &f.ev,
        port,
    };
    let d = Disk {
        s: a.sector,
        sectors,
    };
    let mut ids = Ids(0xb10c_0000);

    // (b) Hostile requests. Writes carry real data, so that one wrongly accepted shows
    // in the image (the host checks it holds nothing but the valid write below).
    requests::bad_grants(&mut c, r, &p, d, &mut ids)?;
    requests::bad_ranges(&mut c, r, &p, d, &mut ids);
    requests::bad_segments(&mut c, r, &p, d, &mut ids);
    requests::bad_indirect(&mut c, r, &p, d, &mut ids)?;
    requests::bad_operations(&mut c, r, &p, d, &mut ids);
    requests::batch_mixed(&mut c, r, &p, d, &mut ids);
    valid_io(&mut c, r, &p, d, &mut ids, &data)?;

    // (c2) A flood of bad requests: each refused; dom0 checks that the daemon's log
    // stays bounded (rate limited per device and message class).
    flood(&mut c, r, sectors, p.dpages.grefs()[0], a.flood);

    runaway(&mut c, r, &f, &p.ring, port)?;
    // Done with this device: Closed, so that a later blkfront leaves it alone.
    f.clear();
    f.set_state(CLOSED)?;
    Ok(())
}

/// The backend must offer the device (InitWait) and publish its size; returns the size
/// in sectors.
fn offered(r: &mut Report, f: &Front) -> Result<u64> {
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
    Ok(sectors)
}

/// Grants the pages (the data file's first [`VALID_BYTES`] in `dpages`), withdraws one
/// grant, and initialises the ring.
fn grant_pages(f: &Front, data: &[u8]) -> Result<Pages> {
    let be_id = f.be_id;
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
    Ok(Pages {
        ring,
        dpages,
        back,
        ro,
        ind,
        scratch,
        freed,
    })
}

/// (a) Rings the backend cannot map, (e) garbage in xenstore: each connection refused,
/// and the device offered again after a reset.
fn refusals(r: &mut Report, f: &Front, p: &Pages) -> Result<()> {
    let be_id = f.be_id;
    let freed = p.freed;
    let good_ref = p.ring.grefs()[0].to_string().into_bytes();
    let port = || -> Result<Vec<u8>> {
        Ok(f.ev
            .bind_unbound_port(be_id)
            .context("allocating an event channel")?
            .to_string()
            .into_bytes())
    };
    let proto = || b"x86_64-abi".to_vec();

    let ro_ref = p.ro.grefs()[0].to_string().into_bytes();
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
    Ok(())
}

/// (c) The device still works: write 80 KiB (direct, then indirect), flush, read back
/// (indirect, and a partial direct segment).
fn valid_io(
    c: &mut Conn,
    r: &mut Report,
    p: &Pages,
    d: Disk,
    ids: &mut Ids,
    data: &[u8],
) -> Result<()> {
    let s = d.s;
    let mut next = || ids.next();
    let ipage = p.ind.page(0).context("indirect page")?;
    let i0 = p.ind.grefs()[0];
    let direct: Vec<BlkifRequestSegment> = p.dpages.grefs()[..DIRECT_PAGES]
        .iter()
        .map(|&g| seg(g, 0, 7))
        .collect();
    c.expect(r, "valid-write-direct", rw(Write, next(), s, &direct), Okay);
    for (i, &g) in p.dpages.grefs()[DIRECT_PAGES..].iter().enumerate() {
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
    for (i, &g) in p.back.grefs().iter().enumerate() {
        ipage.write(i * 8, &seg(g, 0, 7))?;
    }
    c.expect(
        r,
        "valid-read-indirect",
        indirect(Read, next(), s, DATA_PAGES as u16, &[i0]),
        Okay,
    );
    let mut got = vec![0u8; VALID_BYTES];
    p.back.mem().read_bytes(0, &mut got)?;
    r.check(
        "read-back-matches",
        got == data[..VALID_BYTES],
        format!("{VALID_BYTES} bytes at sector {s} read back"),
    );
    p.scratch.mem().fill(0, XEN_PAGE_SIZE, 0)?;
    c.expect(
        r,
        "valid-read-partial-segment",
        rw(Read, next(), s, &[seg(p.scratch.grefs()[0], 1, 3)]),
        Okay,
    );
    let mut page = vec![0u8; XEN_PAGE_SIZE];
    p.scratch.mem().read_bytes(0, &mut page)?;
    let ok = page[..512].iter().all(|&b| b == 0)
        && page[512..2048] == data[..1536]
        && page[2048..].iter().all(|&b| b == 0);
    r.check(
        "partial-segment-placed",
        ok,
        "sectors 1..=3 of the page hold the disk's first 3 sectors, the rest is untouched",
    );
    Ok(())
}

/// (d) A runaway req_prod: far ahead of anything the ring can hold. The backend must
/// disconnect without answering anything.
fn runaway(c: &mut Conn, r: &mut Report, f: &Front, ring: &GrantedPages, port: u32) -> Result<()> {
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
    Ok(())
}
