//! `sluice-hostile-blkfront`: a hostile blkif frontend for a domU whose own
//! `xen-blkfront` is not loaded. It takes over `device/vbd/<devid>` and attacks the
//! block backend in dom0 through the real xenbus protocol: pages granted with
//! `/dev/xen/gntalloc`, an event channel from `/dev/xen/evtchn`, xenstore over
//! `/dev/xen/xenbus`.
//!
//! Scenarios, each printing `@@HOSTILE PASS|FAIL name: detail`:
//! * ring grants it never made (or read-only ones), garbage in its xenstore nodes
//!   (non-numeric, overflowing, absurd ring-page-order and queue counts, a foreign
//!   protocol, non-UTF-8): the backend must refuse (state Closing/Closed, an `error`
//!   node) and offer the device again (InitWait) once the frontend resets to
//!   Initialising;
//! * once connected properly: requests with ungranted or freed grants, a read-only
//!   grant for a read, sectors past the end or overflowing, 0 or more than 11
//!   segments, bad sector ranges in a page, bad indirect requests, unknown operations:
//!   each must be answered `BLKIF_RSP_ERROR` / `BLKIF_RSP_EOPNOTSUPP` with its id;
//! * a valid write (direct and indirect), flush and read back: the device still works;
//!   the host checks that the image holds exactly these bytes and nothing else;
//! * a flood of bad requests ([`FLOOD_REQUESTS`], or `--flood N`) (unknown operation, past the end,
//!   never-granted page, in turn): each refused; dom0 checks the daemon's log stays
//!   bounded;
//! * a runaway `req_prod` far ahead of the backend: the backend must disconnect the
//!   device (Closing/Closed) without answering garbage.
//!
//! * with `--steady-devid`, meanwhile, a well-behaved frontend on another device of
//!   the same backend writes and reads back 32 KiB over and over: every round must be
//!   exact while the attack runs (the backend's other devices keep working); then it
//!   closes that device and resets it to Initialising, so that a blkfront loaded
//!   afterwards can take it.
//!
//! Usage: `sluice-hostile-blkfront --devid 51712 --data FILE --sector S
//! [--steady-devid 51728 [--steady-sector T]] [--flood N] [--timeout-scale F]`: the valid write puts
//! the first [`VALID_BYTES`] of FILE at 512-byte sector S (the steady device writes at T
//! of its own disk, default S); every wait (20 s for a backend state, 10 s for responses) is multiplied
//! by F. Exit status: the number of failed checks (at most 100).

#![deny(unsafe_code)]

use anyhow::{bail, Context, Result};
use sluice_abi::blkif::{
    BlkifFrontRing, BlkifOp, BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect,
    BlkifRequestSegment, BlkifResponse, BlkifRsp,
};
use sluice_abi::ring::{REQ_PROD_OFFSET, RSP_PROD_OFFSET};
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::{EvtchnDevice, GntallocDevice, GrantedPages};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A grant reference far beyond any grant table a domain has: never granted.
const BOGUS_GREF: u32 = 0x7fff_0000;
/// Pages the valid write covers: 4 direct segments, then 16 indirect ones.
const DIRECT_PAGES: usize = 4;
const INDIRECT_PAGES: usize = 16;
const DATA_PAGES: usize = DIRECT_PAGES + INDIRECT_PAGES;
/// Bytes of the data file the valid write puts on the disk (80 KiB).
pub const VALID_BYTES: usize = DATA_PAGES * XEN_PAGE_SIZE;
/// `feature-max-indirect-segments` of sluice-blkback (a larger count must be refused).
const BACKEND_MAX_INDIRECT: u16 = 256;

/// Frontend xenstore nodes a connection attempt may leave behind.
const FE_NODES: &[&str] = &[
    "ring-ref",
    "ring-ref0",
    "ring-ref1",
    "event-channel",
    "protocol",
    "ring-page-order",
    "num-ring-pages",
    "multi-queue-num-queues",
];

/// Frontend nodes to publish: key, raw value.
type Nodes<'a> = Vec<(&'a str, Vec<u8>)>;

const CLOSING: u32 = 5;
const CLOSED: u32 = 6;

struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        println!(
            "@@HOSTILE {} {name}: {detail}",
            if ok { "PASS" } else { "FAIL" }
        );
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

struct Front {
    xs: XsClient,
    fe: String,
    be: String,
    be_id: u16,
    ev: EvtchnDevice,
}

impl Front {
    /// The frontend of this domain's `device/vbd/<devid>`: its backend's path and domain
    /// from xenstore, and an event-channel device.
    fn open(devid: u32) -> Result<Front> {
        let xs = XsClient::open().context("opening xenstore (/dev/xen/xenbus)")?;
        let domid = xs.read_u64(XBT_NULL, "domid")?.context("no domid node")?;
        let fe = format!("/local/domain/{domid}/device/vbd/{devid}");
        let be = xs
            .read_opt(XBT_NULL, &format!("{fe}/backend"))?
            .with_context(|| format!("{fe}/backend is missing"))?;
        let be_id = xs
            .read_u64(XBT_NULL, &format!("{fe}/backend-id"))?
            .context("no backend-id")? as u16;
        Ok(Front {
            xs,
            fe,
            be,
            be_id,
            ev: EvtchnDevice::open()?,
        })
    }

    fn read(&self, path: &str) -> Option<String> {
        self.xs
            .read_opt(XBT_NULL, path)
            .ok()
            .flatten()
            .map(|s| s.trim_end_matches('\0').to_string())
    }

    fn be_state(&self) -> u32 {
        self.read(&format!("{}/state", self.be))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn be_error(&self) -> String {
        self.read(&format!("{}/error", self.be))
            .unwrap_or_else(|| "no error node".into())
    }

    /// Waits until the backend's state satisfies `ok`; returns the last state seen and
    /// whether it did.
    fn wait_be(&self, ok: impl Fn(u32) -> bool, timeout: Duration) -> (u32, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.be_state();
            if ok(s) {
                return (s, true);
            }
            if Instant::now() > deadline {
                return (s, false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.xs
            .write(XBT_NULL, &format!("{}/{key}", self.fe), value)
            .with_context(|| format!("writing {}/{key}", self.fe))
    }

    fn set_state(&self, s: u32) -> Result<()> {
        self.write("state", s.to_string().as_bytes())
    }

    fn clear(&self) {
        for n in FE_NODES {
            let _ = self.xs.rm(XBT_NULL, &format!("{}/{n}", self.fe));
        }
    }

    /// Back to Initialising; the backend must offer the device again (InitWait).
    fn reset(&self, r: &mut Report, name: &str) -> bool {
        self.clear();
        if let Err(e) = self.set_state(1) {
            r.check(&format!("{name}/reset"), false, format!("{e:#}"));
            return false;
        }
        let (s, ok) = self.wait_be(|s| s == 2, secs(20));
        r.check(
            &format!("{name}/reset"),
            ok,
            format!("frontend Initialising -> backend state {s} (want 2, InitWait)"),
        );
        ok
    }

    /// Publishes `nodes` and Initialised; the backend must refuse (Closing/Closed with
    /// an `error` node) rather than connect, and come back after a reset.
    fn expect_refusal(&self, r: &mut Report, name: &str, nodes: &[(&str, Vec<u8>)]) -> bool {
        self.clear();
        for (k, v) in nodes {
            if let Err(e) = self.write(k, v) {
                r.check(name, false, format!("{e:#}"));
                return false;
            }
        }
        if let Err(e) = self.set_state(3) {
            r.check(name, false, format!("{e:#}"));
            return false;
        }
        let (s, answered) = self.wait_be(|s| s >= 4, secs(20));
        let refused = answered && (s == CLOSING || s == CLOSED);
        let detail = if refused {
            format!("backend state {s}, error: {}", self.be_error())
        } else if answered {
            format!("backend went to state {s} instead of refusing")
        } else {
            format!("backend stayed in state {s} for {:?}", secs(20))
        };
        r.check(name, refused, detail);
        self.reset(r, name)
    }

    /// A proper connection over `ring` (its one page): ring-ref, a fresh event channel,
    /// protocol, Initialised; waits for Connected. Returns the local port.
    fn connect(&self, ring: &GrantedPages) -> Result<u32> {
        self.clear();
        BlkifFrontRing::init(ring.mem()).context("initialising the ring")?;
        let port = self
            .ev
            .bind_unbound_port(self.be_id)
            .context("allocating an event channel")?;
        self.write("ring-ref", ring.grefs()[0].to_string().as_bytes())?;
        self.write("event-channel", port.to_string().as_bytes())?;
        self.write("protocol", b"x86_64-abi")?;
        self.set_state(3)?;
        let (s, ok) = self.wait_be(|s| s >= 4, secs(20));
        if !ok || s != 4 {
            bail!(
                "backend state {s} instead of Connected (error: {})",
                self.be_error()
            );
        }
        self.set_state(4)?;
        Ok(port)
    }
}

/// A connected ring.
struct Conn<'a> {
    ring: BlkifFrontRing<'a>,
    ev: &'a EvtchnDevice,
    port: u32,
}

impl Conn<'_> {
    /// Pushes `reqs` at once and collects as many responses (10 s at most).
    fn submit(&mut self, reqs: &[BlkifRequest]) -> Result<Vec<BlkifResponse>> {
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
    fn expect(&mut self, r: &mut Report, name: &str, req: BlkifRequest, want: BlkifRsp) -> bool {
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

/// Bad requests of the flood by default (`--flood N`; three kinds in turn: an unknown
/// operation, a write past the end of the disk, a write from a grant never made). 10^4
/// take about 40 s under TCG (10^5: 397 s, too long for every run of the suite).
pub const FLOOD_REQUESTS: u64 = 10_000;
const FLOOD_ID: u64 = 0xf100_0000_0000;

/// Sends `total` bad requests, a ring's worth at a time: every one must be refused,
/// with its id.
fn flood(c: &mut Conn, r: &mut Report, sectors: u64, dgref: u32, total: u64) {
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

/// `n` seconds times `--timeout-scale` (the test bed passes its own scale).
fn secs(n: u64) -> Duration {
    static SCALE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        let a: Vec<String> = std::env::args().collect();
        a.iter()
            .position(|x| x == "--timeout-scale")
            .and_then(|i| a.get(i + 1))
            .and_then(|v| v.parse().ok())
            .filter(|&f: &f64| f > 0.0)
            .unwrap_or(1.0)
    });
    Duration::from_secs_f64(n as f64 * scale)
}

fn seg(gref: u32, first: u8, last: u8) -> BlkifRequestSegment {
    BlkifRequestSegment::new(gref, first, last)
}

fn rw(op: BlkifOp, id: u64, sector: u64, segs: &[BlkifRequestSegment]) -> BlkifRequest {
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
fn slot<T: IntoBytes + Immutable>(v: &T) -> BlkifRequest {
    let mut b = [0u8; size_of::<BlkifRequest>()];
    b[..size_of::<T>()].copy_from_slice(v.as_bytes());
    BlkifRequest::read_from_bytes(&b).expect("a slot is 112 bytes")
}

fn indirect(op: BlkifOp, id: u64, sector: u64, nr_segments: u16, grefs: &[u32]) -> BlkifRequest {
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

struct Args {
    devid: u32,
    data: std::path::PathBuf,
    sector: u64,
    steady_devid: Option<u32>,
    steady_sector: Option<u64>,
    flood: u64,
}

fn args() -> Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| -> Result<String> {
        let i = a
            .iter()
            .position(|x| x == k)
            .with_context(|| format!("{k} is required"))?;
        a.get(i + 1)
            .cloned()
            .with_context(|| format!("{k} needs a value"))
    };
    let steady_devid = match a.iter().position(|x| x == "--steady-devid") {
        Some(_) => Some(get("--steady-devid")?.parse().context("--steady-devid")?),
        None => None,
    };
    let steady_sector = match a.iter().position(|x| x == "--steady-sector") {
        Some(_) => Some(get("--steady-sector")?.parse().context("--steady-sector")?),
        None => None,
    };
    Ok(Args {
        devid: get("--devid")?.parse().context("--devid")?,
        data: get("--data")?.into(),
        sector: get("--sector")?.parse().context("--sector")?,
        steady_devid,
        steady_sector,
        flood: match a.iter().position(|x| x == "--flood") {
            Some(_) => get("--flood")?.parse().context("--flood")?,
            None => FLOOD_REQUESTS,
        },
    })
}

fn main() {
    let mut r = Report {
        passed: 0,
        failed: 0,
    };
    match args() {
        Err(e) => r.check("arguments", false, format!("{e:#}")),
        Ok(a) => {
            let stop = AtomicBool::new(false);
            let started = AtomicBool::new(false);
            std::thread::scope(|sc| {
                let steady = a.steady_devid.map(|devid| {
                    let sector = a.steady_sector.unwrap_or(a.sector);
                    let (stop, started) = (&stop, &started);
                    sc.spawn(move || steady_device(devid, sector, started, stop))
                });
                // The attack starts once the steady device is connected (or failed to).
                let t = Instant::now();
                while steady.is_some() && !started.load(Ordering::Acquire) {
                    if t.elapsed() > secs(60) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Err(e) = run(&mut r, &a) {
                    r.check("run", false, format!("{e:#}"));
                }
                stop.store(true, Ordering::Release);
                if let (Some(h), Some(devid)) = (steady, a.steady_devid) {
                    let (ok, detail) = match h.join() {
                        Ok(Ok(rounds)) if rounds >= STEADY_MIN_ROUNDS => (
                            true,
                            format!(
                                "{rounds} rounds of a {STEADY_BYTES}-byte write + read-back on device {devid} while the attack ran, all exact; device reset to Initialising"
                            ),
                        ),
                        Ok(Ok(rounds)) => (
                            false,
                            format!("only {rounds} rounds on device {devid} during the attack (want >= {STEADY_MIN_ROUNDS})"),
                        ),
                        Ok(Err(e)) => (false, format!("device {devid}: {e:#}")),
                        Err(_) => (false, "the steady thread panicked".into()),
                    };
                    r.check("other-device-keeps-working", ok, detail);
                }
            });
        }
    }
    println!("@@HOSTILE-SUMMARY {} passed, {} failed", r.passed, r.failed);
    std::process::exit(r.failed.min(100) as i32);
}

/// Bytes the steady device writes and reads back per round (8 pages, one request each).
const STEADY_BYTES: usize = 8 * XEN_PAGE_SIZE;
/// Rounds the steady device must complete while the attack runs.
const STEADY_MIN_ROUNDS: u64 = 3;

/// A well-behaved frontend on `devid`: connects, then until `stop` writes a fresh
/// pattern of [`STEADY_BYTES`] at `sector` and reads it back, failing on any error or
/// mismatch; then closes the device and resets it to Initialising (backend InitWait).
/// Returns the rounds completed.
fn steady_device(devid: u32, sector: u64, started: &AtomicBool, stop: &AtomicBool) -> Result<u64> {
    let result = (|| -> Result<u64> {
        let f = Front::open(devid)?;
        let be_id = f.be_id;
        let (s0, ok) = f.wait_be(|s| s == 2, secs(30));
        if !ok {
            bail!("backend state {s0}, never InitWait");
        }
        let gnt = GntallocDevice::open()?;
        let ring = gnt.alloc(be_id, 1, true)?;
        let out = gnt.alloc(be_id, 8, true)?;
        let back = gnt.alloc(be_id, 8, true)?;
        let port = f.connect(&ring).context("connecting")?;
        started.store(true, Ordering::Release);
        let mut c = Conn {
            ring: BlkifFrontRing::attach(ring.mem(), 0)?,
            ev: &f.ev,
            port,
        };
        let segs = |p: &GrantedPages| -> Vec<BlkifRequestSegment> {
            p.grefs().iter().map(|&g| seg(g, 0, 7)).collect()
        };
        let mut rounds = 0u64;
        let mut id = 0x57ea_0000u64;
        while !stop.load(Ordering::Acquire) {
            let fill: Vec<u8> = (0..STEADY_BYTES)
                .map(|i| (i as u64 ^ rounds.wrapping_mul(0x9e37)) as u8)
                .collect();
            out.mem().write_bytes(0, &fill)?;
            back.mem().fill(0, STEADY_BYTES, 0)?;
            for (op, pages) in [(BlkifOp::Write, &out), (BlkifOp::Read, &back)] {
                id += 1;
                let rsp = c.submit(&[rw(op, id, sector, &segs(pages))])?;
                if rsp[0].id != id || rsp[0].status != BlkifRsp::Okay as i16 {
                    bail!(
                        "round {rounds}: {op:?} answered id {:#x} status {} (want {id:#x}, 0)",
                        rsp[0].id,
                        rsp[0].status
                    );
                }
            }
            let mut got = vec![0u8; STEADY_BYTES];
            back.mem().read_bytes(0, &mut got)?;
            if got != fill {
                bail!("round {rounds}: the data read back differs from what was written");
            }
            rounds += 1;
        }
        // Hand the device over: Closing, Closed, then Initialising again.
        f.set_state(CLOSING)?;
        let (s, ok) = f.wait_be(|s| s == CLOSING || s == CLOSED, secs(20));
        if !ok {
            bail!("after {rounds} rounds: backend state {s} after our Closing");
        }
        f.set_state(CLOSED)?;
        let (s, ok) = f.wait_be(|s| s == CLOSED, secs(20));
        if !ok {
            bail!("after {rounds} rounds: backend state {s} after our Closed");
        }
        f.clear();
        f.set_state(1)?;
        let (s, ok) = f.wait_be(|s| s == 2, secs(20));
        if !ok {
            bail!("after {rounds} rounds: backend state {s} after our reset (want InitWait)");
        }
        Ok(rounds)
    })();
    // Never leave the attack waiting for us.
    started.store(true, Ordering::Release);
    result
}

fn run(r: &mut Report, a: &Args) -> Result<()> {
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
