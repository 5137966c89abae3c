//! A device's life with its frontend and the toolstack: a runaway ring disconnects only
//! its device, garbage in xenstore is refused, multi-page rings and multi-queue with
//! reconnects, and a restarted backend taking over live rings.

use crate::common::*;

pub(crate) fn runaway_ring_disconnects_only_that_device(cfg: Cfg) {
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

pub(crate) fn garbage_in_xenstore_is_refused(cfg: Cfg) {
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

pub(crate) fn multi_page_multi_queue_and_reconnect(cfg: Cfg) {
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
pub(crate) fn restarted_backend_takes_over_live_rings(cfg: Cfg) {
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
