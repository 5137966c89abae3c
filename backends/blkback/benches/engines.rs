//! Host benchmark: the io_uring engine vs the synchronous engine of one blkif queue,
//! same run, alternating A B A B. A fake frontend (fake grants and event channels,
//! grant copy = memcpy) keeps the whole ring full of 44 KiB reads (11 segments) or
//! writes against a real image file (page-cached). Prints per-pair ratios B/A.
//! Then, per engine, grant copy (A) vs persistent grants (B: the same 352 references
//! mapped once, memcpy through the mappings), same run, A B A B A B.
//!
//! `cargo xtask bench engines` (`cargo bench -p sluice-blkback --bench engines`; `--
//! persistent`: only the second part)

use sluice_abi::blkif::{BlkifFrontRing, BlkifOp, BlkifRequest, BlkifRequestSegment};
use sluice_abi::ring::REQ_PROD_OFFSET;
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_blkback::disk::Disk;
use sluice_blkback::journal::Ledger;
use sluice_blkback::persistent::{PersistentGrants, PERSISTENT_GRANTS_PER_QUEUE};
use sluice_blkback::ring_server::{Queue, QueueStats};
use sluice_dom0::evtchn::FakeEvtchnHub;
use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
use sluice_dom0::EventChannels;
use sluice_xen_sys::IoQueue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// (rounds per measurement, pairs per comparison); `SLUICE_BENCH_SMOKE=1` (`cargo
/// xtask test`): 3 rounds and one pair, to prove it runs.
fn size() -> (usize, usize) {
    if std::env::var("SLUICE_BENCH_SMOKE").is_ok_and(|v| v == "1") {
        (3, 1)
    } else {
        (300, 3)
    }
}

fn run(uring: bool, persistent: bool, op: BlkifOp, img: &std::path::Path) -> f64 {
    let guest = FakeGuestMemory::new(5, 1 + 32 * 11);
    let grants = FakeGrants::new();
    grants.add_guest(guest.clone());
    let hub = FakeEvtchnHub::new();
    let front_ev = hub.endpoint(5);
    let fport = front_ev
        .bind_unbound_port(sluice_abi::types::DomId(0))
        .unwrap();
    let back_ev = hub.endpoint(0);
    let bport = back_ev
        .bind_interdomain(sluice_abi::types::DomId(5), fport)
        .unwrap();
    let ring_mem = guest.page(0);
    BlkifFrontRing::init(ring_mem).unwrap();
    let refs: Vec<u32> = (1..=32 * 11).map(|p| guest.grant(p, false)).collect();
    let disk = Arc::new(Disk::open(img, false).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (g2, d2, s2, gm) = (grants.clone(), disk.clone(), stop.clone(), guest.clone());
    let backend = std::thread::spawn(move || {
        let q = Queue {
            domid: 5,
            disk: &d2,
            grants: &g2,
            evtchn: back_ev,
            port: bport,
            stop: &s2,
            name: "bench",
            persistent: persistent.then(|| PersistentGrants::new(5, PERSISTENT_GRANTS_PER_QUEUE)),
            profile: Default::default(),
            buffers: Default::default(),
            zero_copy: std::cell::Cell::new(true),
            coalesce: 0,
            merge: false,
            log: &Default::default(),
        };
        let ring = sluice_abi::blkif::BlkifBackRing::new(gm.page(0)).unwrap();
        let stats = Arc::new(QueueStats::default());
        if uring {
            let mut io = IoQueue::new(256).unwrap();
            q.serve_async(ring, &stats, &mut io, &mut Ledger::none())
                .unwrap();
        } else {
            q.serve(ring, &stats, &mut Ledger::none()).unwrap();
        }
    });
    let start = Instant::now();
    let mut bytes = 0u64;
    for round in 0..size().0 {
        let prod = ring_mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
        let mut ring = BlkifFrontRing::attach(ring_mem, prod).unwrap();
        for i in 0..32usize {
            let mut req = BlkifRequest {
                operation: op as u8,
                nr_segments: 11,
                id: i as u64,
                sector_number: (((round * 32 + i) * 88) % 60000) as u64,
                ..Default::default()
            };
            for s in 0..11 {
                req.seg[s] = BlkifRequestSegment::new(refs[i * 11 + s], 0, 7);
            }
            ring.push_request(&req).unwrap();
        }
        ring.push_requests().unwrap();
        front_ev.notify(fport).unwrap();
        let mut got = 0;
        while got < 32 {
            match ring.pop_response().unwrap() {
                Some(r) => {
                    assert_eq!(r.status, 0);
                    got += 1;
                }
                None => {
                    front_ev.wait(Some(Duration::from_millis(1))).unwrap();
                    let mut p = vec![];
                    front_ev.read_pending(&mut p).unwrap();
                    for x in p {
                        front_ev.unmask(x).unwrap();
                    }
                }
            }
        }
        bytes += 32 * 11 * XEN_PAGE_SIZE as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    backend.join().unwrap();
    bytes as f64 / secs / (1 << 20) as f64
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("bench.img");
    std::fs::write(&img, vec![0x5au8; 32 << 20]).unwrap();
    let only_persistent = std::env::args().any(|a| a == "persistent");
    // docs/bench.md's tables: (first column, per-pair ratios, median).
    let (mut engines, mut persistent) = (vec![], vec![]);
    let row = |label: String, ratios: &[f64]| {
        let cells: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let mut sorted = ratios.to_vec();
        sorted.sort_by(|x, y| x.total_cmp(y));
        format!(
            "| {label} | {} | {:.2} |",
            cells.join(", "),
            sorted[sorted.len() / 2]
        )
    };
    for op in [BlkifOp::Read, BlkifOp::Write] {
        if only_persistent {
            break;
        }
        let mut ratios = vec![];
        for pair in 0..size().1 {
            let a = run(false, false, op, &img);
            let b = run(true, false, op, &img);
            println!(
                "{op:?} pair {pair}: A sync {a:.0} MiB/s, B io_uring {b:.0} MiB/s, B/A {:.2}",
                b / a
            );
            ratios.push(b / a);
        }
        engines.push(row(format!("{op:?}").to_lowercase(), &ratios));
        ratios.sort_by(|x, y| x.total_cmp(y));
        println!(
            "{op:?}: median B/A {:.2} (pairs {:.2}-{:.2})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    for (engine, uring) in [("sync", false), ("io_uring", true)] {
        for op in [BlkifOp::Read, BlkifOp::Write] {
            let mut ratios = vec![];
            for pair in 0..size().1 {
                let a = run(uring, false, op, &img);
                let b = run(uring, true, op, &img);
                println!(
                    "{engine} {op:?} pair {pair}: A grant copy {a:.0} MiB/s, \
                     B persistent {b:.0} MiB/s, B/A {:.2}",
                    b / a
                );
                ratios.push(b / a);
            }
            persistent.push(row(format!("{engine}, {op:?}").to_lowercase(), &ratios));
            ratios.sort_by(|x, y| x.total_cmp(y));
            println!(
                "{engine} {op:?}: persistent/copy median B/A {:.2} (pairs {:.2}-{:.2})",
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1]
            );
        }
    }
    if !engines.is_empty() {
        println!("\nB = io_uring, A = synchronous (docs/bench.md):\n| op | per-pair B/A | median B/A |\n|---|---|---|");
        println!("{}", engines.join("\n"));
    }
    println!("\nB = persistent grants, A = grant copy (docs/bench.md):\n| engine, op | per-pair B/A | median B/A |\n|---|---|---|");
    println!("{}", persistent.join("\n"));
}
