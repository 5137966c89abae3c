//! The backend's logic against a fake frontend over the fake transports (xenstore,
//! grants, event channels) and a real image file. Fast host tests, not the proof:
//! `tests/` (the real-Xen test bed) runs it against Linux's blkfront.

mod common;

use common::*;
use sluice_abi::types::GrantRef;

use sluice_abi::blkif::{BlkifRequestDiscard, BlkifRequestIndirect};
use std::os::unix::fs::MetadataExt;

fn read_write_flush_discard_indirect(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(5, 51712, "w");
    for (k, v) in [
        ("sectors", "2048"),
        ("sector-size", "512"),
        ("feature-discard", "1"),
        ("feature-flush-cache", "1"),
        ("info", "0"),
    ] {
        wait_for(&w.store.connect(), &format!("{be}/{k}"), v);
    }
    let mut f = Front::connect(&w, w.guest(5), &be, &fe, 0, 1);

    // Write two segments: sectors 2..=7 of page A (0x11) then 0..=3 of page B (0x22).
    let (a, _) = f.data_page(0, Some(0x11), true);
    let (b, _) = f.data_page(1, Some(0x22), true);
    let segs = [
        BlkifRequestSegment::new(a, 2, 7),
        BlkifRequestSegment::new(b, 0, 3),
    ];
    assert_eq!(f.rw(BlkifOp::Write, 100, &segs), BlkifRsp::Okay);
    let data = image_bytes(&img, 100, 10 * 512);
    assert!(data[..6 * 512].iter().all(|&x| x == 0x11));
    assert!(data[6 * 512..].iter().all(|&x| x == 0x22));
    assert_eq!(
        image_bytes(&img, 99, 512),
        vec![0xee; 512],
        "guard sector before"
    );
    assert_eq!(
        image_bytes(&img, 110, 512),
        vec![0xee; 512],
        "guard sector after"
    );

    // Read them back into a fresh page at offset 1024.
    let (c, cpage) = f.data_page(2, Some(0), false);
    assert_eq!(
        f.rw(BlkifOp::Read, 104, &[BlkifRequestSegment::new(c, 2, 5)]),
        BlkifRsp::Okay
    );
    let mut got = vec![0u8; 4 * 512];
    f.guest
        .mem()
        .read_bytes(cpage * XEN_PAGE_SIZE + 1024, &mut got)
        .unwrap();
    assert!(got[..2 * 512].iter().all(|&x| x == 0x11) && got[2 * 512..].iter().all(|&x| x == 0x22));

    // Flush without and with data.
    assert_eq!(f.rw(BlkifOp::FlushDiskcache, 0, &[]), BlkifRsp::Okay);
    assert_eq!(
        f.rw(
            BlkifOp::FlushDiskcache,
            200,
            &[BlkifRequestSegment::new(a, 0, 0)]
        ),
        BlkifRsp::Okay
    );
    assert_eq!(image_bytes(&img, 200, 512), vec![0x11; 512]);

    // Indirect: 20 full pages in one request (one indirect page of descriptors).
    let mut descs = vec![];
    for i in 0..20 {
        let (g, _) = f.data_page(10 + i, Some(i as u8 + 1), true);
        descs.push(BlkifRequestSegment::new(g, 0, 7));
    }
    let (ind, ipage) = f.data_page(40, Some(0), true);
    f.guest
        .mem()
        .write_bytes(ipage * XEN_PAGE_SIZE, descs.as_bytes())
        .unwrap();
    let id = f.id();
    let mut grefs = [GrantRef(0); 8];
    grefs[0] = GrantRef(ind);
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Write as u8,
        nr_segments: 20,
        id,
        sector_number: 512,
        indirect_grefs: grefs,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Okay);
    for i in 0..20u64 {
        assert_eq!(
            image_bytes(&img, 512 + 8 * i, 4096),
            vec![i as u8 + 1; 4096]
        );
    }

    // Discard punches a hole: zeroes, fewer blocks allocated.
    let before = std::fs::metadata(&img).unwrap().blocks();
    let id = f.id();
    let d = BlkifRequestDiscard {
        operation: BlkifOp::Discard as u8,
        id,
        sector_number: 1024,
        nr_sectors: 1024,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&d))), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 1024, 1024 * 512), vec![0; 1024 * 512]);
    assert!(
        std::fs::metadata(&img).unwrap().blocks() < before,
        "discard left the blocks allocated"
    );
    assert_eq!(image_bytes(&img, 1023, 512), vec![0xee; 512]);
}

fn hostile_requests_get_errors_and_touch_nothing(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(7, 51712, "w");
    let mut f = Front::connect(&w, w.guest(7), &be, &fe, 0, 1);
    let (a, _) = f.data_page(0, Some(0x55), true);
    let ro = f.guest.grant(65, true);
    let len = std::fs::metadata(&img).unwrap().len();
    // Bad grant reference.
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(9999, 0, 7)]),
        BlkifRsp::Error
    );
    // Read into a read-only grant.
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(ro, 0, 7)]),
        BlkifRsp::Error
    );
    // Past the end, straddling the end, overflowing.
    assert_eq!(
        f.rw(
            BlkifOp::Write,
            SECTORS,
            &[BlkifRequestSegment::new(a, 0, 0)]
        ),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(
            BlkifOp::Write,
            SECTORS - 4,
            &[BlkifRequestSegment::new(a, 0, 7)]
        ),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(
            BlkifOp::Write,
            u64::MAX - 1,
            &[BlkifRequestSegment::new(a, 0, 7)]
        ),
        BlkifRsp::Error
    );
    // Bad segments: last < first, beyond the page, too many, none.
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 5, 2)]),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 8)]),
        BlkifRsp::Error
    );
    let id = f.id();
    let req = BlkifRequest {
        operation: BlkifOp::Write as u8,
        nr_segments: 12,
        id,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, req)), BlkifRsp::Error);
    assert_eq!(f.rw(BlkifOp::Read, 0, &[]), BlkifRsp::Error);
    // Unknown and reserved operations.
    let id = f.id();
    assert_eq!(
        status(f.submit(
            0,
            BlkifRequest {
                operation: 99,
                id,
                ..Default::default()
            }
        )),
        BlkifRsp::EOpNotSupp
    );
    // Discard past the end; indirect with too many segments; indirect page with a bad descriptor.
    let id = f.id();
    let d = BlkifRequestDiscard {
        operation: BlkifOp::Discard as u8,
        id,
        sector_number: SECTORS - 1,
        nr_sectors: 2,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&d))), BlkifRsp::Error);
    let id = f.id();
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Write as u8,
        nr_segments: 4000,
        id,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Error);
    let (ind, ipage) = f.data_page(2, Some(0), true);
    f.guest
        .mem()
        .write_bytes(
            ipage * XEN_PAGE_SIZE,
            [BlkifRequestSegment::new(a, 7, 1)].as_bytes(),
        )
        .unwrap();
    let id = f.id();
    let mut grefs = [GrantRef(0); 8];
    grefs[0] = GrantRef(ind);
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Write as u8,
        nr_segments: 1,
        id,
        indirect_grefs: grefs,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Error);
    // Nothing was written anywhere, the image did not grow, and the device still works.
    assert_eq!(std::fs::metadata(&img).unwrap().len(), len);
    assert_eq!(
        image_bytes(&img, 0, (SECTORS * 512) as usize),
        vec![0xee; (SECTORS * 512) as usize]
    );
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 0)]),
        BlkifRsp::Okay
    );
    assert_eq!(
        w.store
            .connect()
            .read_opt(XBT_NULL, &format!("{be}/state"))
            .unwrap()
            .as_deref(),
        Some("4")
    );
    // The status file counts them: one OKAY, every refusal above as failed (at least
    // the 13 asserted one by one). Written by the daemon's loop, so wait for it.
    let want_ok = format!("\"{be}\":{{\"ok\":1,\"failed\":");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(w.status_file()).unwrap_or_default();
        if t.contains(&want_ok) || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let failed: u64 = text
        .split(&want_ok)
        .nth(1)
        .and_then(|r| r.split('}').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("status file: {text}"));
    assert!(failed >= 13, "status file: {text}");
}

fn read_only_disk(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(8, 51712, "r");
    wait_for(&w.store.connect(), &format!("{be}/info"), "4");
    wait_for(&w.store.connect(), &format!("{be}/feature-discard"), "0");
    let mut f = Front::connect(&w, w.guest(8), &be, &fe, 0, 1);
    let (a, _) = f.data_page(0, Some(1), false);
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    assert_eq!(image_bytes(&img, 0, 4096), vec![0xee; 4096]);
}

fn runaway_ring_disconnects_only_that_device(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be1, fe1, _) = w.add_disk(9, 51712, "w");
    let (be2, fe2, img2) = w.add_disk(10, 51712, "w");
    let mut bad = Front::connect(&w, w.guest(9), &be1, &fe1, 0, 1);
    let mut good = Front::connect(&w, w.guest(10), &be2, &fe2, 0, 1);
    // req_prod far beyond what the ring can hold.
    bad.guest
        .mem()
        .store_u32_release(REQ_PROD_OFFSET, 100_000)
        .unwrap();
    bad.ev.notify(EvtchnPort(bad.rings[0].0)).unwrap();
    wait_for(&bad.xs, &format!("{be1}/state"), "5");
    assert!(bad
        .xs
        .read_opt(XBT_NULL, &format!("{be1}/error"))
        .unwrap()
        .unwrap()
        .contains("ring"));
    let (a, _) = good.data_page(0, Some(0x77), true);
    assert_eq!(
        good.rw(BlkifOp::Write, 8, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    assert_eq!(image_bytes(&img2, 8, 4096), vec![0x77; 4096]);
    let _ = &mut bad;
}

fn garbage_in_xenstore_is_refused(cfg: Cfg) {
    let w = World::new(1, cfg);
    let xs = w.store.connect();
    // frontend-id not a number: the device is never offered.
    let (be, _, _) = w.add_disk(11, 51712, "w");
    let _ = be;
    let (be_b, fe_b, _) = w.add_disk(12, 51712, "w");
    xs.write(XBT_NULL, &format!("{ROOT}/13/1/frontend-id"), b"banana")
        .unwrap();
    xs.write(
        XBT_NULL,
        &format!("{ROOT}/13/1/frontend"),
        b"/local/domain/13/device/vbd/1",
    )
    .unwrap();
    xs.write(XBT_NULL, &format!("{ROOT}/13/1/state"), b"1")
        .unwrap();
    // A frontend whose ring-ref is garbage: the backend closes that device.
    wait_for(&xs, &format!("{be_b}/state"), "2");
    xs.write(XBT_NULL, &format!("{fe_b}/ring-ref"), b"-1")
        .unwrap();
    xs.write(XBT_NULL, &format!("{fe_b}/event-channel"), b"1")
        .unwrap();
    xs.write(XBT_NULL, &format!("{fe_b}/state"), b"3").unwrap();
    wait_for(&xs, &format!("{be_b}/state"), "5");
    // Bad ring page order.
    let (be_c, fe_c, _) = w.add_disk(14, 51712, "w");
    wait_for(&xs, &format!("{be_c}/state"), "2");
    xs.write(XBT_NULL, &format!("{fe_c}/ring-page-order"), b"9")
        .unwrap();
    xs.write(XBT_NULL, &format!("{fe_c}/state"), b"3").unwrap();
    wait_for(&xs, &format!("{be_c}/state"), "5");
    assert_eq!(
        xs.read_opt(XBT_NULL, &format!("{ROOT}/13/1/state"))
            .unwrap()
            .as_deref(),
        Some("1")
    );
    // The first device is still fine.
    let mut f = Front::connect(
        &w,
        w.guest(11),
        &format!("{ROOT}/11/51712"),
        "/local/domain/11/device/vbd/51712",
        0,
        1,
    );
    let (a, _) = f.data_page(0, Some(3), true);
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
}

fn multi_page_multi_queue_and_reconnect(cfg: Cfg) {
    let w = World::new(4, cfg);
    let (be, fe, img) = w.add_disk(15, 51712, "w");
    wait_for(
        &w.store.connect(),
        &format!("{be}/multi-queue-max-queues"),
        "4",
    );
    wait_for(
        &w.store.connect(),
        &format!("{be}/max-ring-page-order"),
        "4",
    );
    let guest = w.guest(15);
    let mut f = Front::connect(&w, guest.clone(), &be, &fe, 1, 2);
    let (a, _) = f.data_page(0, Some(0x42), true);
    for q in 0..2 {
        let id = f.id();
        let mut req = BlkifRequest {
            operation: BlkifOp::Write as u8,
            nr_segments: 1,
            id,
            sector_number: 8 * q as u64,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(a, 0, 7);
        assert_eq!(status(f.submit(q, req)), BlkifRsp::Okay, "queue {q}");
    }
    assert_eq!(image_bytes(&img, 0, 8192), vec![0x42; 8192]);
    // Frontend closes, then restarts and reconnects with one single-page ring.
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"5").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "5");
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"6").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "6");
    for k in [
        "ring-page-order",
        "multi-queue-num-queues",
        "queue-0",
        "queue-1",
    ] {
        f.xs.rm(XBT_NULL, &format!("{fe}/{k}")).unwrap();
    }
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
    let mut f2 = Front::connect(&w, guest, &be, &fe, 0, 1);
    let (b, _) = f2.data_page(5, Some(0x43), true);
    assert_eq!(
        f2.rw(BlkifOp::Write, 16, &[BlkifRequestSegment::new(b, 0, 7)]),
        BlkifRsp::Okay
    );
    assert_eq!(image_bytes(&img, 16, 4096), vec![0x43; 4096]);
    // The toolstack detaches it: online=0, state=5 -> Closed; then removes it.
    f2.xs
        .write(XBT_NULL, &format!("{be}/online"), b"0")
        .unwrap();
    f2.xs.write(XBT_NULL, &format!("{be}/state"), b"5").unwrap();
    wait_for(&f2.xs, &format!("{be}/state"), "6");
    f2.xs.rm(XBT_NULL, &be).unwrap();
    let _ = (&f2.fe, &f2.be, &w.hub);
}

/// A backend daemon that stops (crash, restart) under a connected frontend, after more
/// requests than the ring has slots: the next one takes the device over without
/// moving the frontend's view back to InitWait, and serves the live ring from where
/// the first one stopped (a request published while no backend ran included).
fn restarted_backend_takes_over_live_rings(cfg: Cfg) {
    let mut w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(17, 51712, "w");
    let mut f = Front::connect(&w, w.guest(17), &be, &fe, 0, 1);
    for i in 0..40u64 {
        let (g, _) = f.data_page(0, Some(i as u8), true);
        let seg = [BlkifRequestSegment::new(g, 0, 7)];
        assert_eq!(f.rw(BlkifOp::Write, 8 * (i % 16), &seg), BlkifRsp::Okay);
    }
    w.stop_backend();
    assert_eq!(
        w.grants.live_mappings(),
        0,
        "the stopped backend unmapped everything"
    );
    // Published while no backend runs.
    let (port, _) = f.rings[0];
    let mem = f.guest.mem().slice(0, XEN_PAGE_SIZE).unwrap();
    let prod = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
    let mut ring = BlkifFrontRing::attach(mem, prod).unwrap();
    let (g, _) = f.data_page(1, Some(0x77), true);
    let mut req = BlkifRequest {
        operation: BlkifOp::Write as u8,
        nr_segments: 1,
        id: 4242,
        sector_number: 256,
        ..Default::default()
    };
    req.seg[0] = BlkifRequestSegment::new(g, 0, 7);
    ring.push_request(&req).unwrap();
    ring.push_requests().unwrap();
    f.ev.notify(EvtchnPort(port)).unwrap();
    let watch = w.store.connect();
    watch.watch(&format!("{be}/state"), "t").unwrap();
    while watch.next_watch_event(Duration::ZERO).unwrap().is_some() {}
    w.start_backend(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        if let Some(r) = ring.pop_response().unwrap() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the unanswered request was not served"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!((r.id, status(r)), (4242, BlkifRsp::Okay));
    assert_eq!(image_bytes(&img, 256, 4096), vec![0x77; 4096]);
    let (g, _) = f.data_page(2, Some(0x78), true);
    let seg = [BlkifRequestSegment::new(g, 0, 7)];
    assert_eq!(f.rw(BlkifOp::Write, 264, &seg), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 264, 4096), vec![0x78; 4096]);
    // The backend state node was never rewritten (no InitWait in between).
    let xs = w.store.connect();
    assert_eq!(
        xs.read_opt(XBT_NULL, &format!("{be}/state"))
            .unwrap()
            .as_deref(),
        Some("4")
    );
    while let Some(ev) = watch.next_watch_event(Duration::ZERO).unwrap() {
        let v = xs.read_opt(XBT_NULL, &format!("{be}/state")).unwrap();
        assert_eq!(
            v.as_deref(),
            Some("4"),
            "state changed after the restart: {ev:?}"
        );
    }
}

/// A full ring of writes submitted at once, then reads of them: with io_uring they
/// are in flight together and may be answered in any order.
fn many_in_flight(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(16, 51712, "w");
    let f = Front::connect(&w, w.guest(16), &be, &fe, 0, 1);
    let (port, _) = f.rings[0];
    let mem = f.guest.mem().slice(0, XEN_PAGE_SIZE).unwrap();
    let prod = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
    let mut ring = BlkifFrontRing::attach(mem, prod).unwrap();
    let n = ring.size() as usize;
    for i in 0..n {
        let (g, _) = f.data_page(i, Some(i as u8 + 1), true);
        let mut req = BlkifRequest {
            operation: BlkifOp::Write as u8,
            nr_segments: 1,
            id: 1000 + i as u64,
            sector_number: 8 * i as u64,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(g, 0, 7);
        ring.push_request(&req).unwrap();
    }
    ring.push_requests().unwrap();
    f.ev.notify(EvtchnPort(port)).unwrap();
    let mut ids = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} answered", ids.len());
        match ring.pop_response().unwrap() {
            Some(r) => {
                assert_eq!(status(r), BlkifRsp::Okay);
                ids.push(r.id);
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    ids.sort();
    assert_eq!(ids, (1000..1000 + n as u64).collect::<Vec<_>>());
    for i in 0..n as u64 {
        assert_eq!(image_bytes(&img, 8 * i, 4096), vec![i as u8 + 1; 4096]);
    }
}

/// A barrier (`feature-barrier`) is answered after every request before it and before
/// any after it, and its data lands over the writes before it.
fn barrier_orders_writes(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(17, 51712, "w");
    wait_for(&w.store.connect(), &format!("{be}/feature-barrier"), "1");
    let f = Front::connect(&w, w.guest(17), &be, &fe, 0, 1);
    let (port, _) = f.rings[0];
    let mem = f.guest.mem().slice(0, XEN_PAGE_SIZE).unwrap();
    let prod = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
    let mut ring = BlkifFrontRing::attach(mem, prod).unwrap();
    // Ids 1000..1010 before the barrier (all to sector 0..8 * 10), 2000 the barrier
    // (page of 0xbb over sector 0), 3000..3010 after it (elsewhere).
    let write = |id: u64, sector: u64, g: u32, op: BlkifOp| {
        let mut req = BlkifRequest {
            operation: op as u8,
            nr_segments: 1,
            id,
            sector_number: sector,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(g, 0, 7);
        req
    };
    for i in 0..10u64 {
        let (g, _) = f.data_page(i as usize, Some(0x10 + i as u8), true);
        ring.push_request(&write(1000 + i, 8 * i, g, BlkifOp::Write))
            .unwrap();
    }
    let (b, _) = f.data_page(10, Some(0xbb), true);
    ring.push_request(&write(2000, 0, b, BlkifOp::WriteBarrier))
        .unwrap();
    for i in 0..10u64 {
        let (g, _) = f.data_page(11 + i as usize, Some(0x30 + i as u8), true);
        ring.push_request(&write(3000 + i, 512 + 8 * i, g, BlkifOp::Write))
            .unwrap();
    }
    ring.push_requests().unwrap();
    f.ev.notify(EvtchnPort(port)).unwrap();
    let mut ids = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < 21 {
        assert!(Instant::now() < deadline, "{} of 21 answered", ids.len());
        match ring.pop_response().unwrap() {
            Some(r) => {
                assert_eq!(status(r), BlkifRsp::Okay, "response {}", r.id);
                ids.push(r.id);
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let at = ids.iter().position(|&id| id == 2000).unwrap();
    assert!(
        ids[..at].iter().all(|&id| id < 2000) && ids[at + 1..].iter().all(|&id| id > 2000),
        "barrier out of order: {ids:?}"
    );
    assert_eq!(at, 10, "{ids:?}");
    assert_eq!(image_bytes(&img, 0, 4096), vec![0xbb; 4096]);
    for i in 1..10u64 {
        assert_eq!(image_bytes(&img, 8 * i, 4096), vec![0x10 + i as u8; 4096]);
        assert_eq!(
            image_bytes(&img, 512 + 8 * i, 4096),
            vec![0x30 + i as u8; 4096]
        );
    }
}

/// Frontend closes (Closing, Closed) and restarts (Initialising), as Linux's blkfront
/// does on reconnect; returns once the backend is Closed (its queues joined).
fn close_and_restart(f: &Front) {
    let (fe, be) = (&f.fe, &f.be);
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"5").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "5");
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"6").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "6");
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
}

fn write_pages(f: &mut Front, sector: u64, grefs: &[u32]) -> BlkifRsp {
    let segs: Vec<_> = grefs
        .iter()
        .map(|&g| BlkifRequestSegment::new(g, 0, 7))
        .collect();
    f.rw(BlkifOp::Write, sector, &segs)
}

/// With both ends agreeing, each data and indirect page is mapped once, on first use,
/// and reused; no grant copy at all; everything is unmapped when the frontend closes.
fn persistent_grants_are_reused_and_unmapped_on_close(engine: IoEngine) {
    let w = World::new(1, Cfg::new(engine, true));
    let (be, fe, img) = w.add_disk(20, 51712, "w");
    wait_for(&w.store.connect(), &format!("{be}/feature-persistent"), "1");
    let mut f = Front::connect(&w, w.guest(20), &be, &fe, 0, 1);
    assert_eq!(
        (w.grants.maps_made(), w.grants.live_mappings()),
        (1, 1),
        "the ring"
    );
    let (a, _) = f.data_page(0, Some(0x31), false);
    let (b, _) = f.data_page(1, Some(0x32), false);
    let (c, cpage) = f.data_page(2, Some(0), false);
    let mut descs = vec![];
    let mut pages = vec![];
    for i in 0..20 {
        let (g, _) = f.data_page(10 + i, Some(0x40 + i as u8), false);
        descs.push(BlkifRequestSegment::new(g, 0, 7));
        pages.push(g);
    }
    let (ind, ipage) = f.data_page(40, Some(0), false);
    f.guest
        .mem()
        .write_bytes(ipage * XEN_PAGE_SIZE, descs.as_bytes())
        .unwrap();
    for round in 0..5u64 {
        assert_eq!(write_pages(&mut f, 8 * round, &[a, b]), BlkifRsp::Okay);
        assert_eq!(
            f.rw(
                BlkifOp::Read,
                8 * round + 8,
                &[BlkifRequestSegment::new(c, 0, 7)]
            ),
            BlkifRsp::Okay
        );
        let mut got = vec![0u8; 4096];
        f.guest
            .mem()
            .read_bytes(cpage * XEN_PAGE_SIZE, &mut got)
            .unwrap();
        assert_eq!(got, vec![0x32; 4096], "round {round}: read back page b");
        let id = f.id();
        let mut grefs = [GrantRef(0); 8];
        grefs[0] = GrantRef(ind);
        let req = BlkifRequestIndirect {
            operation: BlkifOp::Indirect as u8,
            indirect_op: BlkifOp::Write as u8,
            nr_segments: 20,
            id,
            sector_number: 512,
            indirect_grefs: grefs,
            ..Default::default()
        };
        assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Okay);
    }
    for i in 0..20u64 {
        assert_eq!(
            image_bytes(&img, 512 + 8 * i, 4096),
            vec![0x40 + i as u8; 4096]
        );
    }
    // 3 + 20 data pages + 1 indirect page, each mapped exactly once; no grant copy.
    assert_eq!(w.grants.maps_made(), 1 + 24);
    assert_eq!(w.grants.live_mappings(), 1 + 24);
    assert_eq!(w.grants.segments_copied(), 0);
    for g in [a, b, c, ind].into_iter().chain(pages.iter().copied()) {
        assert_eq!(f.guest.mapped(g), 1, "gref {g}");
    }
    assert!(
        !f.guest.try_revoke(a),
        "a persistent grant stays mapped while connected"
    );
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0, "all unmapped on disconnect");
    assert!(f.guest.try_revoke(a) && f.guest.try_revoke(ind));
}

/// No agreement, no mappings: grant copy as before, whichever side says no (or says
/// garbage).
fn grant_copy_without_agreement(engine: IoEngine) {
    for (frontend, limit, offered) in [
        (None, PERSISTENT_GRANTS_PER_QUEUE, "1"),
        (Some("0"), PERSISTENT_GRANTS_PER_QUEUE, "1"),
        (Some("yes"), PERSISTENT_GRANTS_PER_QUEUE, "1"),
        (Some("1"), 0, "0"),
    ] {
        let cfg = Cfg {
            persistent: false,
            limit,
            ..Cfg::new(engine, false)
        };
        let w = World::new(1, cfg);
        let (be, fe, img) = w.add_disk(21, 51712, "w");
        wait_for(
            &w.store.connect(),
            &format!("{be}/feature-persistent"),
            offered,
        );
        let mut f = Front::connect_with(&w, w.guest(21), &be, &fe, 0, 1, frontend);
        let (a, _) = f.data_page(0, Some(0x51), false);
        for i in 0..3 {
            assert_eq!(write_pages(&mut f, 8 * i, &[a]), BlkifRsp::Okay);
        }
        assert_eq!(image_bytes(&img, 16, 4096), vec![0x51; 4096]);
        assert_eq!(
            w.grants.maps_made(),
            1,
            "{frontend:?}/{limit}: only the ring"
        );
        assert_eq!(w.grants.segments_copied(), 3, "{frontend:?}/{limit}");
        assert!(f.guest.try_revoke(a), "not kept mapped");
    }
}

/// Beyond the limit a new reference is copied, not mapped, and nothing is evicted; the
/// count never exceeds the limit (the default 1056 too), even for one request with more
/// pages than the limit; the data is right either way.
fn persistent_grants_full_cache_copies(engine: IoEngine) {
    let cfg = Cfg {
        limit: 4,
        ..Cfg::new(engine, true)
    };
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(22, 51712, "w");
    let mut f = Front::connect(&w, w.guest(22), &be, &fe, 0, 1);
    let g: Vec<u32> = (0..5)
        .map(|i| f.data_page(i, Some(0x60 + i as u8), false).0)
        .collect();
    assert_eq!(write_pages(&mut f, 0, &g[..4]), BlkifRsp::Okay);
    assert_eq!(w.grants.segments_copied(), 0);
    assert_eq!(write_pages(&mut f, 64, &g[4..5]), BlkifRsp::Okay);
    assert_eq!(f.guest.mapped(g[4]), 0, "g4 copied, not mapped");
    assert_eq!(w.grants.segments_copied(), 1);
    assert_eq!(image_bytes(&img, 64, 4096), vec![0x64; 4096]);
    for (i, &r) in g[..4].iter().enumerate() {
        assert_eq!(f.guest.mapped(r), 1, "g{i} kept");
    }
    assert_eq!(w.grants.live_mappings(), 1 + 4);
    // One request of 11 pages through a full cache of 4: right data, still 4 mappings.
    let many: Vec<u32> = (0..11)
        .map(|i| f.data_page(20 + i, Some(0x70 + i as u8), false).0)
        .collect();
    assert_eq!(write_pages(&mut f, 128, &many), BlkifRsp::Okay);
    for i in 0..11u64 {
        assert_eq!(
            image_bytes(&img, 128 + 8 * i, 4096),
            vec![0x70 + i as u8; 4096]
        );
    }
    // A generation (4 uses) after the first turned-away use, the least recently used
    // mapping not used since goes (5 % of 4, at least one): g0 at the request's 5th
    // page, g1 at its 9th; those two pages were mapped, the other 9 copied.
    assert_eq!(w.grants.live_mappings(), 1 + 4);
    assert_eq!(w.grants.segments_copied(), 1 + 9);
    assert_eq!((f.guest.mapped(g[0]), f.guest.mapped(g[1])), (0, 0));
    assert_eq!((f.guest.mapped(many[4]), f.guest.mapped(many[8])), (1, 1));
    // A read gives the disk's bytes in a page mapped at the start and in one mapped
    // after a purge.
    let (r, r_page) = f.data_page(40, Some(0), false);
    let segs = [
        BlkifRequestSegment::new(g[2], 0, 7),
        BlkifRequestSegment::new(r, 0, 7),
    ];
    assert_eq!(f.rw(BlkifOp::Read, 128, &segs), BlkifRsp::Okay);
    let mut got = vec![0u8; 4096];
    for (page, want) in [(64 + 2, 0x70), (r_page, 0x71)] {
        f.guest.page(page).read_bytes(0, &mut got).unwrap();
        assert_eq!(got, vec![want; 4096], "page {page}");
    }
    // (r was mapped: g3 was purged a generation after the purge at the 9th page.)
    assert_eq!(w.grants.segments_copied(), 1 + 9);
    assert_eq!((f.guest.mapped(g[3]), f.guest.mapped(r)), (0, 1));
    assert_eq!(w.grants.live_mappings(), 1 + 4);
    drop(w);

    // The default limit: 1100 distinct references (all of a few pages) in 100 requests.
    let w = World::new(1, Cfg::new(engine, true));
    let (be, fe, _) = w.add_disk(23, 51712, "w");
    let mut f = Front::connect(&w, w.guest(23), &be, &fe, 0, 1);
    for r in 0..100u64 {
        let refs: Vec<u32> = (0..11)
            .map(|_| f.guest.grant(64 + r as usize % 32, false))
            .collect();
        assert_eq!(write_pages(&mut f, 88 * (r % 20), &refs), BlkifRsp::Okay);
        assert!(w.grants.live_mappings() <= 1 + PERSISTENT_GRANTS_PER_QUEUE);
    }
    assert_eq!(w.grants.live_mappings(), 1 + PERSISTENT_GRANTS_PER_QUEUE);
    assert_eq!(w.grants.maps_made(), 1 + PERSISTENT_GRANTS_PER_QUEUE);
    assert_eq!(
        w.grants.segments_copied(),
        1100 - PERSISTENT_GRANTS_PER_QUEUE
    );
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0);
}

/// Per-queue caches; reconnecting (with or without the feature) starts from nothing;
/// a toolstack detach unmaps everything.
fn persistent_grants_across_reconnect(engine: IoEngine) {
    let w = World::new(2, Cfg::new(engine, true));
    let (be, fe, img) = w.add_disk(24, 51712, "w");
    let guest = w.guest(24);
    let mut f = Front::connect(&w, guest.clone(), &be, &fe, 0, 2);
    let (a, _) = f.data_page(0, Some(0x24), false);
    for q in 0..2 {
        let id = f.id();
        let mut req = BlkifRequest {
            operation: BlkifOp::Write as u8,
            nr_segments: 1,
            id,
            sector_number: 8 * q as u64,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(a, 0, 7);
        assert_eq!(status(f.submit(q, req)), BlkifRsp::Okay);
    }
    assert_eq!(guest.mapped(a), 2, "one mapping per queue");
    assert_eq!(w.grants.live_mappings(), 2 + 2);
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0);
    for k in [
        "multi-queue-num-queues",
        "queue-0",
        "queue-1",
        "feature-persistent",
    ] {
        f.xs.rm(XBT_NULL, &format!("{fe}/{k}")).unwrap();
    }
    // Reconnect without the feature: grant copy.
    let mut f2 = Front::connect_with(&w, guest.clone(), &be, &fe, 0, 1, None);
    let copied = w.grants.segments_copied();
    assert_eq!(write_pages(&mut f2, 16, &[a]), BlkifRsp::Okay);
    assert_eq!(w.grants.segments_copied(), copied + 1);
    assert_eq!((guest.mapped(a), w.grants.live_mappings()), (0, 1));
    close_and_restart(&f2);
    assert_eq!(w.grants.live_mappings(), 0);
    // And with it again: mapped afresh.
    let mut f3 = Front::connect(&w, guest.clone(), &be, &fe, 0, 1);
    let (b, _) = f3.data_page(1, Some(0x25), false);
    assert_eq!(write_pages(&mut f3, 24, &[a, b]), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 24, 8192)[..4096], vec![0x24; 4096][..]);
    assert_eq!((guest.mapped(a), guest.mapped(b)), (1, 1));
    // The toolstack detaches it: everything unmapped.
    f3.xs
        .write(XBT_NULL, &format!("{be}/online"), b"0")
        .unwrap();
    f3.xs.write(XBT_NULL, &format!("{be}/state"), b"5").unwrap();
    wait_for(&f3.xs, &format!("{be}/state"), "6");
    assert_eq!(w.grants.live_mappings(), 0);
    assert!(guest.try_revoke(a) && guest.try_revoke(b));
}

/// A frontend that agreed but hands references it did not grant, or read-only ones,
/// gets BLKIF_RSP_ERROR for that request when the access needs them (a read-only page
/// is fine for a write: it falls back to grant copy); nothing failing stays mapped.
fn hostile_grefs_with_persistent_grants(engine: IoEngine) {
    let w = World::new(1, Cfg::new(engine, true));
    let (be, fe, img) = w.add_disk(25, 51712, "w");
    let mut f = Front::connect(&w, w.guest(25), &be, &fe, 0, 1);
    let (a, apage) = f.data_page(0, Some(0x5a), false);
    let ro = f.guest.grant(apage + 1, true);
    f.guest
        .mem()
        .fill((apage + 1) * XEN_PAGE_SIZE, XEN_PAGE_SIZE, 0x5b)
        .unwrap();
    // Not granted at all, alone and next to a good one; as an indirect page.
    assert_eq!(write_pages(&mut f, 0, &[9999]), BlkifRsp::Error);
    assert_eq!(write_pages(&mut f, 0, &[a, 9999]), BlkifRsp::Error);
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(9999, 0, 7)]),
        BlkifRsp::Error
    );
    let id = f.id();
    let mut grefs = [GrantRef(0); 8];
    grefs[0] = GrantRef(9998);
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Read as u8,
        nr_segments: 3,
        id,
        indirect_grefs: grefs,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Error);
    assert_eq!(
        image_bytes(&img, 0, 8192),
        vec![0xee; 8192],
        "nothing written"
    );
    // Read-only: a read into it fails; a write from it is served through a read-only
    // mapping, kept; a read into it later still fails (grant copy, not the mapping) and
    // leaves the page alone.
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(ro, 0, 7)]),
        BlkifRsp::Error
    );
    assert_eq!(f.guest.mapped(ro), 0);
    assert_eq!(write_pages(&mut f, 8, &[ro]), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 8, 4096), vec![0x5b; 4096]);
    assert_eq!((f.guest.mapped(ro), f.guest.mapped_writable(ro)), (1, 0));
    assert_eq!(write_pages(&mut f, 16, &[ro]), BlkifRsp::Okay);
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(ro, 0, 7)]),
        BlkifRsp::Error
    );
    let mut back = vec![0u8; XEN_PAGE_SIZE];
    f.guest
        .mem()
        .read_bytes((apage + 1) * XEN_PAGE_SIZE, &mut back)
        .unwrap();
    assert_eq!(back, vec![0x5b; XEN_PAGE_SIZE], "read-only page untouched");
    assert_eq!((f.guest.mapped(ro), f.guest.mapped_writable(ro)), (1, 0));
    // Flipped to read-only (revoked and granted again read-only under the same number)
    // before the backend mapped it: refused like any read-only page.
    let (flip, fpage) = f.data_page(2, Some(0), false);
    f.guest.revoke(flip);
    f.guest.grant_at(flip, fpage, true);
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(flip, 0, 7)]),
        BlkifRsp::Error
    );
    // Once mapped, a persistent grant stays mapped (Xen keeps a mapped page mapped
    // whatever the guest writes in its grant table): a later flip changes nothing.
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    f.guest.revoke(a);
    f.guest.grant_at(a, apage, true);
    assert_eq!(
        f.rw(BlkifOp::Read, 8, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    // The ring, the good page (writable) and the read-only one are mapped; the device
    // is still connected; close unmaps them.
    assert_eq!(w.grants.live_mappings(), 1 + 2);
    assert_eq!((f.guest.mapped_writable(a), f.guest.mapped(flip)), (1, 0));
    wait_for(&f.xs, &format!("{be}/state"), "4");
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0);
}

macro_rules! persistent_cases {
    ($($name:ident),*) => {
        mod persistent_sync_io {
            $(#[test] fn $name() { super::$name(sluice_blkback::IoEngine::Sync) })*
        }
        mod persistent_io_uring {
            $(#[test] fn $name() { super::$name(sluice_blkback::IoEngine::Uring) })*
        }
        mod persistent_io_uring_zero_copy {
            $(#[test] fn $name() {
                super::ZERO_COPY.with(|z| z.set(true));
                super::$name(sluice_blkback::IoEngine::Uring)
            })*
        }
    };
}

persistent_cases!(
    persistent_grants_are_reused_and_unmapped_on_close,
    grant_copy_without_agreement,
    persistent_grants_full_cache_copies,
    persistent_grants_across_reconnect,
    hostile_grefs_with_persistent_grants
);

/// Every case with both engines, with persistent grants (frontend agrees) and without
/// (frontend does not write `feature-persistent`: grant copy).
macro_rules! both_engines {
    ($($name:ident),*) => {
        mod sync_io {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Sync, false)) })*
        }
        mod io_uring {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Uring, false)) })*
        }
        mod sync_io_persistent {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Sync, true)) })*
        }
        mod io_uring_persistent {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Uring, true)) })*
        }
        mod io_uring_persistent_zero_copy {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Uring, true).zero_copy()) })*
        }
        // Zero copy without O_DIRECT (any segment alignment goes straight to the pages).
        mod io_uring_persistent_zero_copy_buffered {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() {
                super::$name(Cfg::new(IoEngine::Uring, true).zero_copy().buffered())
            })*
        }
        mod sync_io_buffered {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Sync, false).buffered()) })*
        }
    };
}

both_engines!(
    many_in_flight,
    barrier_orders_writes,
    restarted_backend_takes_over_live_rings,
    read_write_flush_discard_indirect,
    hostile_requests_get_errors_and_touch_nothing,
    read_only_disk,
    runaway_ring_disconnects_only_that_device,
    garbage_in_xenstore_is_refused,
    multi_page_multi_queue_and_reconnect
);
