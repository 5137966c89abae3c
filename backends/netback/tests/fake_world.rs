//! sluice-netback against a fake netfront on the fake Xen world (fake xenstore, grants,
//! event channels; datagram sockets as taps): negotiation, both data paths with their
//! offloads, and what a hostile frontend gets.

mod common;
use common::*;

#[test]
fn negotiates_like_linux_netback() {
    let w = World::new(4);
    let (be, _fe) = w.add_vif(5, 0);
    let xs = w.store.connect();
    wait_for(&xs, &format!("{be}/state"), "2");
    for (k, v) in [
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("feature-rx-copy", "1"),
        ("feature-split-event-channels", "1"),
        ("multi-queue-max-queues", "4"),
    ] {
        assert_eq!(
            xs.read_opt(XBT_NULL, &format!("{be}/{k}"))
                .unwrap()
                .as_deref(),
            Some(v),
            "{k}"
        );
    }
    // The tap exists from InitWait on (the hotplug script needs it).
    w.tap(VIF, 0);
}

#[test]
fn tx_packet_reaches_the_tap_with_its_checksum_offload() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(1100);
    // Headers in one page, the rest at an odd offset of another (as netfront's frags).
    let g1 = f.fill(DATA, 100, &frame[..60]);
    let g2 = f.fill(DATA + 1, 7, &frame[60..]);
    let rsp = f.send(&[
        tx(
            g1,
            100,
            NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED | NetTxFlags::MORE_DATA,
            1,
            1100,
        ),
        tx(g2, 7, NetTxFlags::empty(), 2, 1040),
    ]);
    assert_eq!(
        rsp.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, 0), (2, 0)]
    );
    let (h, data) = read_frame(&tap);
    assert_eq!(data, frame);
    assert_eq!(
        (h.flags, h.csum_start, h.csum_offset),
        (vnet::F_NEEDS_CSUM, 34, 6)
    );
}

#[test]
fn tx_gso_extra_becomes_tap_segmentation() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let frame = tcp_frame(3000);
    let g1 = f.fill(DATA, 0, &frame[..2000]);
    let g2 = f.fill(DATA + 1, 0, &frame[2000..]);
    let extra = NetifExtraInfo::encode(
        &NetifExtra::Gso {
            size: 1448,
            gso_type: NetifGsoType::TcpV4,
            features: 0,
        },
        false,
    );
    let extra_slot = extra_slot(&extra);
    let rsp = f.send(&[
        tx(
            g1,
            0,
            NetTxFlags::CSUM_BLANK | NetTxFlags::MORE_DATA | NetTxFlags::EXTRA_INFO,
            7,
            3000,
        ),
        extra_slot,
        tx(g2, 0, NetTxFlags::empty(), 8, 1000),
    ]);
    let st: Vec<i16> = rsp.iter().map(|r| r.status).collect();
    assert_eq!(st, [0, NetifRsp::Null.raw(), 0]);
    assert_eq!((rsp[0].id, rsp[2].id), (7, 8));
    let (h, data) = read_frame(&tap);
    assert_eq!(data, frame);
    assert_eq!(
        (h.gso_type, h.gso_size, h.hdr_len),
        (vnet::GSO_TCPV4, 1448, 54)
    );
}

#[test]
fn rx_frame_fills_posted_pages_with_gso_extra() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    f.post_rx(DATA, 8);
    let frame = tcp_frame(9000);
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut msg = hdr.as_bytes().to_vec();
    msg.extend_from_slice(&frame);
    tap.send(&msg).unwrap();
    // Data 4096, the GSO extra, data 4096, data 808.
    let r = f.rx_responses(0, 4);
    let flags = NetRxFlags::from_bits_retain(r[0].flags);
    assert!(flags.contains(
        NetRxFlags::CSUM_BLANK
            | NetRxFlags::DATA_VALIDATED
            | NetRxFlags::MORE_DATA
            | NetRxFlags::EXTRA_INFO
    ));
    let extra = NetifExtraInfo::read_from_bytes(r[1].as_bytes()).unwrap();
    assert_eq!(
        extra.decode(),
        Ok(NetifExtra::Gso {
            size: 1448,
            gso_type: NetifGsoType::TcpV4,
            features: 0
        })
    );
    assert_eq!((r[0].id, r[0].status), (DATA as u16, 4096));
    assert_eq!(
        (r[2].id, r[2].status, r[2].flags),
        ((DATA + 2) as u16, 4096, NetRxFlags::MORE_DATA.bits())
    );
    assert_eq!(
        (r[3].id, r[3].status, r[3].flags),
        ((DATA + 3) as u16, 808, 0)
    );
    let mut got = f.page_bytes(DATA, 4096);
    got.extend(f.page_bytes(DATA + 2, 4096));
    got.extend(f.page_bytes(DATA + 3, 808));
    assert_eq!(got, frame);
}

#[test]
fn rx_waits_for_requests_then_delivers() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(200);
    let mut msg = VnetHdr::default().as_bytes().to_vec();
    msg.extend_from_slice(&frame);
    tap.send(&msg).unwrap();
    // Nothing posted yet: the backend holds the frame; posting wakes it.
    std::thread::sleep(Duration::from_millis(50));
    f.post_rx(DATA, 1);
    let r = f.rx_responses(0, 1);
    assert_eq!((r[0].status, r[0].flags), (200, 0));
    assert_eq!(f.page_bytes(DATA, 200), frame);
}

#[test]
fn rx_frame_over_more_slots_than_posted_sleeps_until_enough_are_posted() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(9000);
    let mut msg = VnetHdr::default().as_bytes().to_vec();
    msg.extend_from_slice(&frame);
    tap.send(&msg).unwrap();
    // One request posted, three needed: the backend consumes none and asks to be woken
    // by the post that makes three (req_event = req_cons + 3), rather than polling the
    // ring until then (it spun on fewer before: a CPU lost to the guest).
    f.post_rx(DATA, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.rx_ring().header().unwrap().req_event != 3 {
        assert!(
            Instant::now() < deadline,
            "req_event never armed for 3 requests"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    f.post_rx(DATA + 1, 2);
    let r = f.rx_responses(0, 3);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![4096, 4096, 808]
    );
    let mut got = f.page_bytes(DATA, 4096);
    got.extend(f.page_bytes(DATA + 1, 4096));
    got.extend(f.page_bytes(DATA + 2, 808));
    assert_eq!(got, frame);
}

#[test]
fn rx_frame_held_mid_batch_leaves_the_frames_before_it_intact() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    // Two frames wait on the tap before the guest posts one buffer: the first is placed,
    // the second read in the same turn and held for the next buffer.
    let a = udp_frame(200);
    let mut b = udp_frame(300);
    for x in &mut b[42..] {
        *x = !*x;
    }
    for frame in [&a, &b] {
        let mut msg = VnetHdr::default().as_bytes().to_vec();
        msg.extend_from_slice(frame);
        tap.send(&msg).unwrap();
    }
    f.post_rx(DATA, 1);
    let r = f.rx_responses(0, 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(f.page_bytes(DATA, 200), a, "the first frame's bytes");
    f.post_rx(DATA + 1, 1);
    let r = f.rx_responses(1, 1);
    assert_eq!(r[0].status, 300);
    assert_eq!(f.page_bytes(DATA + 1, 300), b, "the held frame's bytes");
}

#[test]
fn hostile_packets_are_dropped_and_the_vif_keeps_working() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(300);
    let good = f.fill(DATA, 0, &frame);
    // An ungranted reference: ERROR, nothing reaches the tap.
    let rsp = f.send(&[tx(GrantRef(9999), 0, NetTxFlags::empty(), 1, 300)]);
    assert_eq!(rsp[0].status, NetifRsp::Error.raw());
    // Zero-length and runt packets: ERROR.
    let rsp = f.send(&[tx(good, 0, NetTxFlags::empty(), 2, 0)]);
    assert_eq!(rsp[0].status, NetifRsp::Error.raw());
    let rsp = f.send(&[tx(good, 0, NetTxFlags::empty(), 3, 13)]);
    assert_eq!(rsp[0].status, NetifRsp::Error.raw());
    // Later slots larger than the packet's size: ERROR on both.
    let rsp = f.send(&[
        tx(good, 0, NetTxFlags::MORE_DATA, 4, 100),
        tx(good, 0, NetTxFlags::empty(), 5, 200),
    ]);
    assert_eq!(rsp.iter().map(|r| r.status).collect::<Vec<_>>(), [-1, -1]);
    // 19 slots (above 18, below the fatal 20): dropped, every slot answered.
    let mut chain = vec![tx(good, 0, NetTxFlags::MORE_DATA, 100, 19 * 16)];
    for i in 1..19 {
        let fl = if i < 18 {
            NetTxFlags::MORE_DATA
        } else {
            NetTxFlags::empty()
        };
        chain.push(tx(good, 0, fl, 100 + i, 16));
    }
    let rsp = f.send(&chain);
    assert!(rsp.iter().all(|r| r.status == -1), "{rsp:?}");
    // A checksum the backend cannot place (ARP with csum_blank): answered OKAY, dropped.
    let mut arp = udp_frame(60);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let ga = f.fill(DATA + 1, 0, &arp);
    let rsp = f.send(&[tx(ga, 0, NetTxFlags::CSUM_BLANK, 6, 60)]);
    assert_eq!(rsp[0].status, 0);
    // Still connected, and a good packet goes through: the first frame on the tap.
    let rsp = f.send(&[tx(good, 0, NetTxFlags::empty(), 7, 300)]);
    assert_eq!(rsp[0].status, 0);
    let (_, data) = read_frame(&tap);
    assert_eq!(data, frame);
    assert_eq!(
        f.xs.read_opt(XBT_NULL, &format!("{}/state", f.be))
            .unwrap()
            .as_deref(),
        Some("4")
    );
}

/// Publishes raw TX slots without waiting for answers.
fn publish(f: &Front, slots: &[NetifTxRequest]) {
    let mut ring = f.tx_ring();
    for s in slots {
        ring.push_request(s).unwrap();
    }
    ring.push_requests().unwrap();
    f.ev.notify(EvtchnPort(f.tx_port)).unwrap();
}

fn closes_with_error(f: &Front) {
    let xs = &f.xs;
    wait_for(xs, &format!("{}/state", f.be), "5");
    assert!(xs
        .read_opt(XBT_NULL, &format!("{}/error", f.be))
        .unwrap()
        .is_some());
}

#[test]
fn fatal_frontends_are_disconnected_alone() {
    for case in [
        "runaway",
        "bad-extra",
        "too-many-slots",
        "crosses-page",
        "endless",
        "extra-with-no-slot-after",
        "more-data-with-no-slot-after",
    ] {
        let w = World::new(1);
        let bad = connected(&w, 5);
        let other = connected(&w, 6);
        let g = bad.fill(DATA, 0, &udp_frame(100));
        match case {
            "runaway" => {
                bad.guest
                    .page(TX_PAGE)
                    .store_u32_release(REQ_PROD_OFFSET, 100_000)
                    .unwrap();
                bad.ev.notify(EvtchnPort(bad.tx_port)).unwrap();
            }
            "bad-extra" => {
                let e = NetifExtraInfo {
                    extra_type: 9,
                    ..Default::default()
                };
                publish(
                    &bad,
                    &[tx(g, 0, NetTxFlags::EXTRA_INFO, 1, 100), extra_slot(&e)],
                );
            }
            "too-many-slots" => {
                let mut chain = vec![tx(g, 0, NetTxFlags::MORE_DATA, 1, 21 * 8)];
                for i in 1..21 {
                    let fl = if i < 20 {
                        NetTxFlags::MORE_DATA
                    } else {
                        NetTxFlags::empty()
                    };
                    chain.push(tx(g, 0, fl, 1 + i, 8));
                }
                publish(&bad, &chain);
            }
            "crosses-page" => publish(&bad, &[tx(g, 4000, NetTxFlags::empty(), 1, 200)]),
            // Linux netback: "Missing extra info" / "Asked for N slots": a frontend
            // publishes whole packets.
            "extra-with-no-slot-after" => {
                publish(&bad, &[tx(g, 0, NetTxFlags::EXTRA_INFO, 1, 100)])
            }
            "more-data-with-no-slot-after" => {
                publish(&bad, &[tx(g, 0, NetTxFlags::MORE_DATA, 1, 100)])
            }
            "endless" => {
                // A chain of extra-info slots, each saying another follows, filling the ring.
                let e = NetifExtraInfo::encode(&NetifExtra::McastAdd([1; 6]), true);
                let mut chain = vec![tx(g, 0, NetTxFlags::EXTRA_INFO, 1, 100)];
                chain.extend(std::iter::repeat_n(extra_slot(&e), 255));
                publish(&bad, &chain);
            }
            _ => unreachable!(),
        }
        closes_with_error(&bad);
        // The other guest's vif still carries traffic.
        let tap = w.tap("vif6.0", 0);
        let frame = udp_frame(120);
        let go = other.fill(DATA, 0, &frame);
        let rsp = other.send(&[tx(go, 0, NetTxFlags::empty(), 1, 120)]);
        assert_eq!(rsp[0].status, 0, "{case}");
        assert_eq!(read_frame(&tap).1, frame, "{case}");
    }
}

#[test]
fn garbage_in_xenstore_closes_the_vif() {
    let cases: [(&str, Option<&str>); 6] = [
        ("tx-ring-ref", Some("banana")),
        ("rx-ring-ref", None),
        ("event-channel-rx", None),
        ("request-rx-copy", Some("0")),
        ("feature-rx-notify", None),
        ("multi-queue-num-queues", Some("9")),
    ];
    for (key, value) in cases {
        let w = World::new(2);
        let (be, fe) = w.add_vif(5, 0);
        let f = Front::connect(
            &w,
            w.guest(5),
            &be,
            &fe,
            |nodes| {
                nodes.retain(|(k, _)| k != key);
                if let Some(v) = value {
                    nodes.push((key.into(), v.into()));
                }
            },
            "5",
        );
        closes_with_error(&f);
    }
    // An ungranted ring reference too.
    let w = World::new(1);
    let (be, fe) = w.add_vif(5, 0);
    let f = Front::connect(
        &w,
        w.guest(5),
        &be,
        &fe,
        |nodes| {
            nodes.retain(|(k, _)| k != "rx-ring-ref");
            nodes.push(("rx-ring-ref".into(), "4000".into()));
        },
        "5",
    );
    closes_with_error(&f);
}

#[test]
fn a_refused_vif_is_offered_again_after_the_frontend_resets() {
    let w = World::new(1);
    let (be, fe) = w.add_vif(5, 0);
    let bad = Front::connect(
        &w,
        w.guest(5),
        &be,
        &fe,
        |nodes| {
            nodes.retain(|(k, _)| k != "tx-ring-ref");
            nodes.push(("tx-ring-ref".into(), "banana".into()));
        },
        "5",
    );
    closes_with_error(&bad);
    // As xen-netfront after a failure: Closed (the backend follows), then Initialising.
    bad.xs
        .write(XBT_NULL, &format!("{fe}/state"), b"6")
        .unwrap();
    wait_for(&bad.xs, &format!("{be}/state"), "6");
    bad.xs
        .write(XBT_NULL, &format!("{fe}/state"), b"1")
        .unwrap();
    wait_for(&bad.xs, &format!("{be}/state"), "2");
    assert_eq!(
        bad.xs.read_opt(XBT_NULL, &format!("{be}/error")).unwrap(),
        None,
        "the error node is gone once the vif is offered again"
    );
    let f = Front::connect(&w, bad.guest.clone(), &be, &fe, |_| {}, "4");
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(64);
    let g = f.fill(DATA, 0, &frame);
    assert_eq!(f.send(&[tx(g, 0, NetTxFlags::empty(), 1, 64)])[0].status, 0);
    assert_eq!(read_frame(&tap).1, frame);
}

#[test]
fn frontend_restart_reconnects() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    f.xs.write(XBT_NULL, &format!("{}/state", f.fe), b"1")
        .unwrap();
    wait_for(&f.xs, &format!("{}/state", f.be), "2");
    let g = Front::connect(&w, f.guest.clone(), &f.be, &f.fe, |_| {}, "4");
    let frame = udp_frame(64);
    let gr = g.fill(DATA, 0, &frame);
    assert_eq!(
        g.send(&[tx(gr, 0, NetTxFlags::empty(), 1, 64)])[0].status,
        0
    );
    assert_eq!(read_frame(&tap).1, frame);
}

#[test]
fn toolstack_detach_closes_and_removes_the_tap() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let xs = w.store.connect();
    xs.write(XBT_NULL, &format!("{}/online", f.be), b"0")
        .unwrap();
    xs.write(XBT_NULL, &format!("{}/state", f.be), b"5")
        .unwrap();
    wait_for(&xs, &format!("{}/state", f.be), "6");
    let tap = w.tap(VIF, 0);
    xs.rm(XBT_NULL, &f.be).unwrap();
    // The backend drops its end: the host end sees the peer gone.
    tap.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tap.send(&[0u8; 20]).is_ok() {
        assert!(Instant::now() < deadline, "the tap stayed open");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn rx_into_an_ungranted_page_is_an_error_response() {
    let w = World::new(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    {
        let mut ring = f.rx_ring();
        ring.push_request(&NetifRxRequest {
            id: 3,
            pad: 0,
            gref: GrantRef(4242),
        })
        .unwrap();
        ring.push_requests().unwrap();
        f.ev.notify(EvtchnPort(f.rx_port)).unwrap();
    }
    let mut msg = VnetHdr::default().as_bytes().to_vec();
    msg.extend_from_slice(&udp_frame(100));
    tap.send(&msg).unwrap();
    let r = f.rx_responses(0, 1);
    assert_eq!((r[0].id, r[0].status), (3, NetifRsp::Error.raw()));
    // The vif goes on: the next frame lands in a granted page.
    f.post_rx(DATA, 1);
    msg.truncate(10);
    msg.extend_from_slice(&udp_frame(90));
    tap.send(&msg).unwrap();
    let r = f.rx_responses(1, 1);
    assert_eq!((r[0].id, r[0].status), (DATA as u16, 90));
    assert_eq!(f.page_bytes(DATA, 90), udp_frame(90));
}

#[test]
fn two_queues_each_with_its_own_rings_channels_and_tap_queue() {
    let w = World::new(2);
    let (be, fe) = w.add_vif(5, 0);
    let guest = w.guest(5);
    let xs = w.store.connect();
    wait_for(&xs, &format!("{be}/state"), "2");
    let ev = w.hub.endpoint(5);
    // Queue q: TX ring at page 10 + 2q, RX ring at 11 + 2q; one event channel each.
    let mut ports = vec![];
    for q in 0..2usize {
        let (txp, rxp) = (10 + 2 * q, 11 + 2 * q);
        NetifTxFrontRing::init(guest.page(txp)).unwrap();
        NetifRxFrontRing::init(guest.page(rxp)).unwrap();
        let port = ev.bind_unbound_port(DomId(0)).unwrap().0;
        ports.push(port);
        for (k, v) in [
            ("tx-ring-ref", guest.grant(txp, false).to_string()),
            ("rx-ring-ref", guest.grant(rxp, false).to_string()),
            ("event-channel", port.to_string()),
        ] {
            xs.write(XBT_NULL, &format!("{fe}/queue-{q}/{k}"), v.as_bytes())
                .unwrap();
        }
    }
    for (k, v) in front_nodes(0, 0, 0, 0) {
        if !k.starts_with("tx-") && !k.starts_with("rx-") && !k.starts_with("event-") {
            xs.write(XBT_NULL, &format!("{fe}/{k}"), v.as_bytes())
                .unwrap();
        }
    }
    xs.write(XBT_NULL, &format!("{fe}/multi-queue-num-queues"), b"2")
        .unwrap();
    xs.write(XBT_NULL, &format!("{fe}/state"), b"4").unwrap();
    wait_for(&xs, &format!("{be}/state"), "4");
    for (q, port) in ports.iter().enumerate() {
        let frame = udp_frame(100 + q);
        guest.page(DATA + q).write_bytes(0, &frame).unwrap();
        let g = GrantRef(guest.grant(DATA + q, true));
        let mut ring = NetifTxFrontRing::init(guest.page(10 + 2 * q)).unwrap();
        ring.push_request(&tx(g, 0, NetTxFlags::empty(), 1, frame.len() as u16))
            .unwrap();
        ring.push_requests().unwrap();
        ev.notify(EvtchnPort(*port)).unwrap();
        let (_, got) = read_frame(&w.tap(VIF, q));
        assert_eq!(got, frame, "queue {q}");
    }
}

#[test]
fn restarted_daemon_takes_over_live_rings() {
    let mut w = World::new(1);
    let f = connected(&w, 5);
    let frame = udp_frame(80);
    let g = f.fill(DATA, 0, &frame);
    assert_eq!(f.send(&[tx(g, 0, NetTxFlags::empty(), 1, 80)])[0].status, 0);
    assert_eq!(read_frame(&w.tap(VIF, 0)).1, frame);
    w.stop_backend();
    // A packet published while no daemon runs; then a new daemon: served once, the
    // state stays Connected (no InitWait: the frontend never sees a change).
    let frame2 = udp_frame(90);
    let g2 = f.fill(DATA + 1, 0, &frame2);
    publish(&f, &[tx(g2, 0, NetTxFlags::empty(), 2, 90)]);
    w.start(1);
    assert_eq!(read_frame(&w.tap(VIF, 1)).1, frame2);
    let mem = f.guest.page(TX_PAGE);
    let deadline = Instant::now() + Duration::from_secs(20);
    while mem
        .load_u32_acquire(sluice_abi::ring::RSP_PROD_OFFSET)
        .unwrap()
        != 2
    {
        assert!(
            Instant::now() < deadline,
            "the second packet was never answered"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let rsp: NetifTxResponse = mem.read(sluice_abi::ring::ENTRIES_OFFSET + 12).unwrap();
    assert_eq!((rsp.id, rsp.status), (2, 0));
    // Slot 0 still holds the first daemon's answer: nothing was served twice (a daemon
    // attaching at 0 would re-read that slot, now a response, as a request).
    let old: NetifTxResponse = mem.read(sluice_abi::ring::ENTRIES_OFFSET).unwrap();
    assert_eq!((old.id, old.status), (1, 0));
    assert_eq!(
        f.xs.read_opt(XBT_NULL, &format!("{}/state", f.be))
            .unwrap()
            .as_deref(),
        Some("4")
    );
    // RX works on the new tap too.
    f.post_rx(DATA + 2, 1);
    let mut msg = VnetHdr::default().as_bytes().to_vec();
    msg.extend_from_slice(&frame);
    // The new daemon's tap is the second one opened under that name.
    w.tap(VIF, 1).send(&msg).unwrap();
    let r = f.rx_responses(0, 1);
    assert_eq!(r[0].status, 80);
}
