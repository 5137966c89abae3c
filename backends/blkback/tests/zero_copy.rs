//! One io_uring queue driven directly (fake grants and event channels, a real image
//! file): with persistent grants the data goes straight between the image and the
//! guest's mapped pages (no bounce buffer taken from the pool), with `O_DIRECT` and
//! without; with grant copy it goes through pooled bounce buffers, reused across
//! requests. The bytes are checked both ways each time.

use sluice_abi::blkif::{
    BlkifBackRing, BlkifFrontRing, BlkifOp, BlkifRequest, BlkifRequestSegment,
};
use sluice_abi::ring::REQ_PROD_OFFSET;
use sluice_blkback::disk::Disk;
use sluice_blkback::persistent::PersistentGrants;
use sluice_blkback::ring_server::{Queue, QueueStats};
use sluice_dom0::evtchn::FakeEvtchnHub;
use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
use sluice_dom0::EventChannels;
use sluice_xen_sys::IoQueue;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const PAGES: usize = 16;

/// Runs writes then reads of 16 pages (two requests of 8 segments, the second with
/// partial segments) three times over; returns the pool's (allocated, reused) counts and
/// whether zero copy was still on at the end.
fn run(persistent: bool, direct: bool) -> Option<((u64, u64), bool)> {
    run_with(persistent, direct, false, false).map(|(c, on, _)| (c, on))
}

/// [`run`], then (with persistent grants) eight contiguous 2-page writes pushed at once
/// and read back the same way, with `--merge` as `merge`; also returns how many
/// requests the queue merged into the one before.
fn run_with(
    persistent: bool,
    direct: bool,
    merge: bool,
    truncate: bool,
) -> Option<((u64, u64), bool, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("zc.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    if IoQueue::new(64).is_err() {
        eprintln!("io_uring unavailable here; skipping");
        return None;
    }
    let guest = FakeGuestMemory::new(7, 1 + PAGES);
    let grants = FakeGrants::new();
    grants.add_guest(guest.clone());
    let hub = FakeEvtchnHub::new();
    let front_ev = hub.endpoint(7);
    let fport = front_ev
        .bind_unbound_port(sluice_abi::types::DomId(0))
        .unwrap();
    let back_ev = hub.endpoint(0);
    let bport = back_ev
        .bind_interdomain(sluice_abi::types::DomId(7), fport)
        .unwrap();
    let ring_mem = guest.page(0);
    BlkifFrontRing::init(ring_mem).unwrap();
    let refs: Vec<u32> = (1..=PAGES).map(|p| guest.grant(p, false)).collect();
    let disk = Arc::new(Disk::open_with(&img, false, direct).unwrap());
    if direct && !disk.direct() {
        eprintln!("O_DIRECT refused on this file system; skipping");
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (g2, d2, s2, gm) = (grants.clone(), disk.clone(), stop.clone(), guest.clone());
    let backend = std::thread::spawn(move || {
        let mut io = IoQueue::new(64).unwrap();
        let q = Queue {
            domid: 7,
            disk: &d2,
            grants: &g2,
            evtchn: back_ev,
            port: bport,
            stop: &s2,
            name: "zc",
            persistent: persistent.then(|| PersistentGrants::new(7, 64)),
            profile: Default::default(),
            buffers: Default::default(),
            zero_copy: std::cell::Cell::new(true),
            coalesce: 0,
            merge,
            log: &Default::default(),
        };
        let ring = BlkifBackRing::new(gm.page(0)).unwrap();
        q.serve_async(
            ring,
            &Arc::new(QueueStats::default()),
            &mut io,
            &mut sluice_blkback::journal::Ledger::none(),
        )
        .unwrap();
        tx.send((
            q.buffers.counts(),
            q.zero_copy.get(),
            q.profile.merged.get(),
        ))
        .unwrap();
    });
    let rw = |op: BlkifOp, sector: u64, segs: &[BlkifRequestSegment], id: u64| {
        let prod = ring_mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
        let mut ring = BlkifFrontRing::attach(ring_mem, prod).unwrap();
        let mut req = BlkifRequest {
            operation: op as u8,
            nr_segments: segs.len() as u8,
            id,
            sector_number: sector,
            ..Default::default()
        };
        req.seg[..segs.len()].copy_from_slice(segs);
        ring.push_request(&req).unwrap();
        ring.push_requests().unwrap();
        front_ev.notify(fport).unwrap();
        loop {
            if let Some(r) = ring.pop_response().unwrap() {
                assert_eq!((r.id, r.status), (id, 0), "{op:?} at {sector}");
                return;
            }
            wait_event(&front_ev);
        }
    };
    let full = |pages: &[u32]| -> Vec<BlkifRequestSegment> {
        pages
            .iter()
            .map(|&g| BlkifRequestSegment::new(g, 0, 7))
            .collect()
    };
    // Partial segments: sectors 1..=6 of each page (3 KiB each).
    let partial = |pages: &[u32]| -> Vec<BlkifRequestSegment> {
        pages
            .iter()
            .map(|&g| BlkifRequestSegment::new(g, 1, 6))
            .collect()
    };
    let mut id = 0;
    for round in 0..3u8 {
        for p in 0..PAGES {
            guest
                .page(1 + p)
                .fill(0, 4096, round * 16 + p as u8 + 1)
                .unwrap();
        }
        id += 1;
        rw(BlkifOp::Write, 0, &full(&refs[..8]), id);
        id += 1;
        rw(BlkifOp::Write, 64, &partial(&refs[8..]), id);
        let mut image = vec![0u8; 64 * 512 + 8 * 3072];
        std::fs::File::open(&img)
            .unwrap()
            .read_exact_at(&mut image, 0)
            .unwrap();
        for p in 0..8 {
            let want = round * 16 + p as u8 + 1;
            assert!(image[p * 4096..(p + 1) * 4096].iter().all(|&b| b == want));
            let want = round * 16 + 8 + p as u8 + 1;
            let at = 64 * 512 + p * 3072;
            assert!(image[at..at + 3072].iter().all(|&b| b == want));
        }
        // Read them back into cleared pages: the partial reads leave sectors 0 and 7
        // of their pages alone.
        for p in 0..PAGES {
            guest.page(1 + p).fill(0, 4096, 0xcc).unwrap();
        }
        id += 1;
        rw(BlkifOp::Read, 0, &full(&refs[..8]), id);
        id += 1;
        rw(BlkifOp::Read, 64, &partial(&refs[8..]), id);
        for p in 0..PAGES {
            let mut page = vec![0u8; 4096];
            guest.page(1 + p).read_bytes(0, &mut page).unwrap();
            let want = round * 16 + p as u8 + 1;
            if p < 8 {
                assert!(page.iter().all(|&b| b == want), "page {p}");
            } else {
                assert!(page[..512].iter().all(|&b| b == 0xcc), "page {p} sector 0");
                assert!(page[512..3584].iter().all(|&b| b == want), "page {p}");
                assert!(page[3584..].iter().all(|&b| b == 0xcc), "page {p} sector 7");
            }
        }
    }
    if persistent {
        // Eight requests of 2 pages each, contiguous on the disk, on the ring before
        // the backend looks: one round (merged into one I/O with `merge`).
        // `ok`: how many of the eight must succeed (the rest must fail).
        let batch = |op: BlkifOp, first_id: u64, ok: usize| {
            let prod = ring_mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
            let mut ring = BlkifFrontRing::attach(ring_mem, prod).unwrap();
            for k in 0..8usize {
                let mut req = BlkifRequest {
                    operation: op as u8,
                    nr_segments: 2,
                    id: first_id + k as u64,
                    sector_number: 512 + 16 * k as u64,
                    ..Default::default()
                };
                req.seg[..2].copy_from_slice(&full(&refs[2 * k..2 * k + 2]));
                ring.push_request(&req).unwrap();
            }
            ring.push_requests().unwrap();
            front_ev.notify(fport).unwrap();
            let mut ids = Vec::new();
            while ids.len() < 8 {
                while let Some(r) = ring.pop_response().unwrap() {
                    let want_ok = r.id < first_id + ok as u64;
                    assert_eq!(r.status == 0, want_ok, "{op:?} {}: {}", r.id, r.status);
                    ids.push(r.id);
                }
                wait_event(&front_ev);
            }
            ids.sort_unstable();
            assert_eq!(ids, (first_id..first_id + 8).collect::<Vec<_>>());
        };
        for p in 0..PAGES {
            guest.page(1 + p).fill(0, 4096, 0x40 + p as u8).unwrap();
        }
        batch(BlkifOp::Write, 1000, 8);
        let mut image = vec![0u8; PAGES * 4096];
        std::fs::File::open(&img)
            .unwrap()
            .read_exact_at(&mut image, 512 * 512)
            .unwrap();
        for p in 0..PAGES {
            let page = &image[p * 4096..(p + 1) * 4096];
            assert!(page.iter().all(|&b| b == 0x40 + p as u8), "disk page {p}");
            guest.page(1 + p).fill(0, 4096, 0).unwrap();
        }
        batch(BlkifOp::Read, 2000, 8);
        for p in 0..PAGES {
            let mut page = vec![0u8; 4096];
            guest.page(1 + p).read_bytes(0, &mut page).unwrap();
            assert!(
                page.iter().all(|&b| b == 0x40 + p as u8),
                "page {p} read back"
            );
        }
        if truncate {
            // The image loses the second half of the batch's range: the merged read
            // comes back short and is done again request by request, so the first four
            // succeed and the last four fail, as they would alone.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&img)
                .unwrap()
                .set_len(512 * 512 + 4 * 16 * 512)
                .unwrap();
            batch(BlkifOp::Read, 3000, 4);
        }
    }
    stop.store(true, Ordering::Release);
    backend.join().unwrap();
    Some(rx.recv().unwrap())
}

#[test]
fn merge_sends_contiguous_requests_as_one_io_each_answered() {
    // Without --merge nothing is merged; with it, the eight contiguous writes (and
    // reads) of one round go as fewer I/Os, every request answered OKAY and every
    // byte where it belongs (checked in run_with).
    if let Some((_, on, merged)) = run_with(true, true, false, false) {
        assert!(on);
        assert_eq!(merged, 0);
    }
    if let Some((counts, on, merged)) = run_with(true, true, true, false) {
        assert!(on && counts == (0, 0), "zero copy, no bounce buffer");
        assert_eq!(merged, 2 * 7, "all eight of each batch in one I/O");
    }
}

#[test]
fn persistent_grants_go_straight_to_the_pages_with_o_direct() {
    if let Some((counts, on)) = run(true, true) {
        assert_eq!(counts, (0, 0), "no bounce buffer taken");
        assert!(on, "zero copy stayed on");
    }
}

#[test]
fn persistent_grants_go_straight_to_the_pages_buffered() {
    if let Some((counts, on)) = run(true, false) {
        assert_eq!(counts, (0, 0), "no bounce buffer taken");
        assert!(on);
    }
}

#[test]
fn grant_copy_uses_pooled_bounce_buffers() {
    if let Some(((allocated, reused), _)) = run(false, true) {
        // 12 requests, one at a time: 2 classes (32 KiB and 24 KiB -> 32 KiB): one
        // allocation, reused for the rest.
        assert_eq!((allocated, reused), (1, 11));
    }
}

#[test]
fn a_merged_io_cut_short_is_done_again_request_by_request() {
    // The same statuses with and without --merge (checked in run_with): four OKAY,
    // four errors.
    for merge in [false, true] {
        if let Some((_, _, merged)) = run_with(true, true, merge, true) {
            assert_eq!(merged > 0, merge);
        }
    }
}

/// The frontend's side: waits up to 5 ms for the backend's event, then takes it.
fn wait_event(ev: &impl EventChannels) {
    ev.wait(Some(Duration::from_millis(5))).unwrap();
    let mut p = vec![];
    ev.read_pending(&mut p).unwrap();
    for x in p {
        ev.unmask(x).unwrap();
    }
}
