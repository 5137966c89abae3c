//! `sluice-hostile-netfront`: a hostile netif frontend for a domU. It takes over
//! `device/vif/<devid>` (unbound from xen-netfront first) and attacks the network
//! backend in dom0 through the real xenbus protocol: pages granted with
//! `/dev/xen/gntalloc`, an event channel from `/dev/xen/evtchn`, xenstore over
//! `/dev/xen/xenbus`.
//!
//! Scenarios, each printing `@@HOSTILE PASS|FAIL name: detail`:
//! * garbage in its xenstore nodes (non-numeric, never-granted or missing ring refs, a
//!   bogus event channel, `request-rx-copy` = 0, absurd queue counts, non-UTF-8): the
//!   backend must refuse (Closing/Closed with an `error` node) and offer the vif again
//!   once the frontend goes Closed, then Initialising;
//! * once connected: an ARP request for the peer (dom0's bridge address) must be
//!   answered (TX and RX work); TX packets with a never-granted grant, zero or runt
//!   length, a first slot smaller than the chain, more slots than the backend's
//!   limit, and a flood of [`FLOOD_PACKETS`] zero-length packets: every slot answered
//!   `NETIF_RSP_ERROR`, then the ARP round trip again; RX requests with never-granted
//!   grants: the frame for us is answered `NETIF_RSP_ERROR`, then with good pages the
//!   ARP round trip again;
//! * what Linux netback disconnects for (a first slot of 64 KiB - 1 or one crossing
//!   its page, 22 slots, an extra-info slot of type 0 or unknown, an extra-info or
//!   more-data flag with no slot after it, a runaway `req_prod` on the TX and on the
//!   RX ring): the backend must close the vif (Closing/Closed) without answering it,
//!   and after a reset a new connection must carry the ARP round trip.
//!
//! Usage: `sluice-hostile-netfront --devid 1 --ip 10.99.0.250 --peer 10.99.0.1
//! [--timeout-scale F]`: every wait is multiplied by F. Exit status: the number of
//! failed checks (at most 100).

#![deny(unsafe_code)]

mod conn;
mod frames;
mod xenbus;

use anyhow::{bail, Context, Result};
use conn::{Conn, Pages};
use frames::{arp_request, extra, tx, Ident};
use sluice_abi::netif::{keys, NetTxFlags, NetifTxRequest};
use sluice_abi::ring::REQ_PROD_OFFSET;
use sluice_hostile_common::{arg, secs, Report};
use sluice_xen_sys::GntallocDevice;
use std::time::Instant;
use xenbus::{good_nodes, with, Front, CLOSED};

/// A grant reference far beyond any grant table a domain has: never granted.
const BOGUS_GREF: u32 = 0x7fff_0000;
/// RX pages posted per connection (ids 0..RX_PAGES).
const RX_PAGES: usize = 16;
/// Zero-length packets of the flood (the backend's log must stay bounded).
pub const FLOOD_PACKETS: usize = 4096;
/// RX request ids of the never-granted pages.
const BAD_RX_ID: u16 = 0x8000;

fn run(r: &mut Report, devid: u32, who: &mut Ident) -> Result<()> {
    let f = Front::open(devid)?;
    let mac = f.read(&format!("{}/mac", f.fe)).context("no mac node")?;
    let bytes: Vec<u8> = mac
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    who.mac = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad mac {mac:?}"))?;
    println!(
        "hostile netfront: {} -> {} (domain {}), mac {mac}",
        f.fe, f.be, f.be_id
    );
    // xen-netfront was unbound from this vif: Closed; the backend follows.
    let back = f.reset();
    r.check(
        "initwait",
        back.is_ok(),
        match &back {
            Ok(()) => "frontend Closed then Initialising -> backend InitWait".into(),
            Err(e) => format!("{e:#}"),
        },
    );
    back?;
    let gnt = GntallocDevice::open()?;
    let p = Pages {
        tx: gnt.alloc(f.be_id, 1, true)?,
        rx: gnt.alloc(f.be_id, 1, true)?,
        data: gnt.alloc(f.be_id, 1, true)?,
        rxbuf: gnt.alloc(f.be_id, RX_PAGES, true)?,
    };
    let (txr, rxr) = (p.tx.grefs()[0], p.rx.grefs()[0]);

    // (a) Garbage in xenstore.
    let port = || -> Result<u32> { Ok(f.ev.bind_unbound_port(f.be_id)?) };
    let good = |port: u32| good_nodes(txr, rxr, port);
    let bogus = BOGUS_GREF.to_string();
    let cases: Vec<(&str, xenbus::Nodes)> = vec![
        (
            "tx-ring-ref-not-a-number",
            with(good(port()?), keys::TX_RING_REF, Some(b"12abc")),
        ),
        (
            "tx-ring-ref-never-granted",
            with(good(port()?), keys::TX_RING_REF, Some(bogus.as_bytes())),
        ),
        (
            "rx-ring-ref-never-granted",
            with(good(port()?), keys::RX_RING_REF, Some(bogus.as_bytes())),
        ),
        (
            "rx-ring-ref-over-32-bits",
            with(good(port()?), keys::RX_RING_REF, Some(b"4294967296")),
        ),
        (
            "rx-ring-ref-missing",
            with(good(port()?), keys::RX_RING_REF, None),
        ),
        (
            "event-channel-not-a-number",
            with(good(0), keys::EVENT_CHANNEL, Some(b"port7")),
        ),
        (
            "event-channel-not-offered",
            with(good(0), keys::EVENT_CHANNEL, Some(b"4000")),
        ),
        (
            "event-channel-missing",
            with(good(0), keys::EVENT_CHANNEL, None),
        ),
        (
            "request-rx-copy-0",
            with(good(port()?), keys::REQUEST_RX_COPY, Some(b"0")),
        ),
        (
            "queues-absurd",
            with(good(port()?), keys::MULTI_QUEUE_NUM_QUEUES, Some(b"4096")),
        ),
        (
            "queues-0",
            with(good(port()?), keys::MULTI_QUEUE_NUM_QUEUES, Some(b"0")),
        ),
        (
            "tx-ring-ref-not-utf8",
            with(good(port()?), keys::TX_RING_REF, Some(&[0xff, 0xfe, 0x31])),
        ),
    ];
    for (name, nodes) in &cases {
        if !f.expect_refusal(r, name, nodes) {
            bail!("{name}: the backend did not offer the vif again; stopping");
        }
    }

    // (b) Connected: hostile packets each answered ERROR, the vif keeps working.
    let mut c = Conn::open(&f, &p, who, true).context("connecting properly")?;
    r.check(
        "connect",
        true,
        format!("Connected, event channel {}", c.port),
    );
    let a = c.arp();
    r.check(
        "arp-before",
        a.is_ok(),
        a.unwrap_or_else(|e| format!("{e:#}")),
    );
    let d = p.data.grefs()[0];
    let none = NetTxFlags::empty();
    let more = NetTxFlags::MORE_DATA;
    c.expect_error(
        r,
        "tx-gref-never-granted",
        vec![tx(BOGUS_GREF, 0, none, 0, 60)],
    );
    c.expect_error(r, "tx-zero-length", vec![tx(d, 0, none, 0, 0)]);
    c.expect_error(r, "tx-runt-13-bytes", vec![tx(d, 0, none, 0, 13)]);
    c.expect_error(
        r,
        "tx-first-size-smaller-than-chain",
        vec![tx(d, 0, more, 0, 100), tx(d, 0, none, 0, 200)],
    );
    let chain = |n: u16| -> Vec<NetifTxRequest> {
        (0..n)
            .map(|i| {
                tx(
                    d,
                    i * 64,
                    if i + 1 < n { more } else { none },
                    0,
                    if i == 0 { n * 64 } else { 64 },
                )
            })
            .collect()
    };
    c.expect_error(r, "tx-19-slots", chain(19));
    c.expect_error(r, "tx-20-slots", chain(20));
    // A flood of zero-length packets, half a ring at a time.
    let t = Instant::now();
    let (mut refused, mut wrong) = (0usize, None);
    for _ in 0..FLOOD_PACKETS / 128 {
        let batch: Vec<NetifTxRequest> = (0..128).map(|_| tx(d, 0, none, c.next_id(), 0)).collect();
        match c.send(&batch) {
            Ok(rsp) => {
                for p in rsp {
                    if p.status == -1 {
                        refused += 1;
                    } else {
                        wrong.get_or_insert((p.id, p.status));
                    }
                }
            }
            Err(e) => {
                wrong.get_or_insert((0, 0));
                r.check("tx-flood", false, format!("{e:#}"));
                break;
            }
        }
    }
    r.check(
        "tx-flood",
        refused == FLOOD_PACKETS && wrong.is_none(),
        format!(
            "{refused} of {FLOOD_PACKETS} zero-length packets answered ERROR in {:.1} s (first wrong (id, status): {wrong:?})",
            t.elapsed().as_secs_f64()
        ),
    );
    let a = c.arp();
    r.check(
        "arp-after-bad-tx",
        a.is_ok(),
        a.unwrap_or_else(|e| format!("{e:#}")),
    );
    f.reset().context("reset before the RX scenario")?;

    // (c) RX requests with never-granted pages: the frame for us is an ERROR response.
    let mut c = Conn::open(&f, &p, who, false).context("connecting for RX")?;
    // One page only: the next frame for us (whichever) is answered into it; the ARP
    // reply after it then waits for the good pages.
    c.post_rx(BAD_RX_ID, BOGUS_GREF)?;
    c.kick()?;
    c.p.data.mem().write_bytes(0, &arp_request(who))?;
    let id = c.next_id();
    let sent = c.send(&[tx(d, 0, none, id, 60)]);
    let deadline = Instant::now() + secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline && !seen.iter().any(|&(_, s, _)| s == -1) {
        seen.extend(c.rx_frames()?);
        c.poll()?;
    }
    let ok =
        sent.is_ok() && seen.iter().all(|&(i, s, _)| i >= BAD_RX_ID && s == -1) && !seen.is_empty();
    r.check(
        "rx-gref-never-granted",
        ok,
        format!(
            "RX responses (id, status): {:?}",
            seen.iter().map(|(i, s, _)| (*i, *s)).collect::<Vec<_>>()
        ),
    );
    c.post_good_rx()?;
    let a = c.arp();
    r.check(
        "arp-after-bad-rx",
        a.is_ok(),
        a.unwrap_or_else(|e| format!("{e:#}")),
    );
    f.reset().context("reset after the RX scenario")?;

    // (d) What Linux netback disconnects for: each on a fresh connection.
    type Publish = Box<dyn Fn(&mut Conn) -> Result<()>>;
    let slots = |s: Vec<NetifTxRequest>| -> Publish {
        Box::new(move |c: &mut Conn| {
            for q in &s {
                c.tx.push_request(q)?;
            }
            c.tx.push_requests()?;
            Ok(c.f.ev.notify(c.port)?)
        })
    };
    let runaway = |rx_ring: bool| -> Publish {
        Box::new(move |c: &mut Conn| {
            let (mem, prod) = if rx_ring {
                (c.p.rx.mem(), c.rx.req_prod_pvt())
            } else {
                (c.p.tx.mem(), c.tx.req_prod_pvt())
            };
            mem.store_u32_release(REQ_PROD_OFFSET, prod.wrapping_add(1000))?;
            c.f.ev.notify(c.port)?;
            if rx_ring {
                // A frame for us makes the backend look at its RX requests.
                c.p.data.mem().write_bytes(0, &arp_request(c.who))?;
                c.tx.push_request(&tx(c.p.data.grefs()[0], 0, NetTxFlags::empty(), 0x7777, 60))?;
                c.tx.push_requests()?;
                c.f.ev.notify(c.port)?;
            }
            Ok(())
        })
    };
    let fatal: Vec<(&str, Publish)> = vec![
        ("tx-first-slot-64k", slots(vec![tx(d, 0, none, 1, 0xffff)])),
        (
            "tx-offset-past-page",
            slots(vec![tx(d, 4000, none, 1, 200)]),
        ),
        ("tx-22-slots", slots(chain(22))),
        (
            "tx-extra-type-0",
            slots(vec![
                tx(d, 0, NetTxFlags::EXTRA_INFO, 1, 60),
                extra(0, false),
            ]),
        ),
        (
            "tx-extra-type-unknown",
            slots(vec![
                tx(d, 0, NetTxFlags::EXTRA_INFO, 1, 60),
                extra(0x7f, false),
            ]),
        ),
        (
            "tx-extra-flag-no-slot-after",
            slots(vec![tx(d, 0, NetTxFlags::EXTRA_INFO, 1, 60)]),
        ),
        (
            "tx-more-data-no-slot-after",
            slots(vec![tx(d, 0, more, 1, 120)]),
        ),
        ("tx-runaway-req-prod", runaway(false)),
        ("rx-runaway-req-prod", runaway(true)),
    ];
    for (name, publish) in fatal {
        let c = Conn::open(&f, &p, who, !name.starts_with("rx-"))
            .with_context(|| format!("connecting for {name}"))?;
        c.expect_disconnect(r, name, |c| publish(c));
        let back = f.reset();
        r.check(
            &format!("{name}/reset"),
            back.is_ok(),
            back.as_ref()
                .map_or_else(|e| format!("{e:#}"), |_| "backend InitWait again".into()),
        );
        back?;
    }
    // Still served after all that.
    let mut c = Conn::open(&f, &p, who, true).context("connecting at the end")?;
    c.expect_error(r, "tx-zero-length-at-the-end", vec![tx(d, 0, none, 0, 0)]);
    let a = c.arp();
    r.check(
        "arp-at-the-end",
        a.is_ok(),
        a.unwrap_or_else(|e| format!("{e:#}")),
    );
    // Leave the vif closed.
    f.set_state(CLOSED)?;
    Ok(())
}

fn main() {
    let mut r = Report {
        passed: 0,
        failed: 0,
    };
    let parsed = (|| -> Result<(u32, Ident)> {
        let devid = arg("--devid").context("--devid is required")?.parse()?;
        let ip = arg("--ip").context("--ip is required")?.parse()?;
        let peer = arg("--peer").context("--peer is required")?.parse()?;
        Ok((
            devid,
            Ident {
                mac: [0; 6],
                ip,
                peer,
            },
        ))
    })();
    match parsed {
        Err(e) => r.check("arguments", false, format!("{e:#}")),
        Ok((devid, mut who)) => {
            if let Err(e) = run(&mut r, devid, &mut who) {
                r.check("run", false, format!("{e:#}"));
            }
        }
    }
    r.finish();
}
