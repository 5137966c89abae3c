//! The netfront core against a fake netback on a fake Xen world: negotiation, TX and
//! RX round trips (SG, GSO, checksum flags, multi-queue), and hostile backends.
//! Hostile backends, garbage in xenstore and failures: `netfront_hostile.rs`.

mod fake;

use fake::bed::{assert_failed, bed_with, connected, connected_with, pattern, poll, read, tx};
use fake::netback::{BackConfig, Sent};
use proptest::prelude::*;
use sluice_abi::netif::{NetRxFlags, NetTxFlags, NetifRxResponse, NetifTxResponse};
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::{FrontState, FrontendConfig, NetifGsoType, TxCsum, TxError, TxOffload};

#[test]
fn negotiates_as_linux_netfront() {
    let mut b = connected(BackConfig::default(), 2);
    for (k, v) in [
        ("multi-queue-num-queues", "2"),
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("state", "4"),
    ] {
        assert_eq!(read(&b, k).as_deref(), Some(v), "{k}");
    }
    for q in 0..2 {
        for k in [
            "tx-ring-ref",
            "rx-ring-ref",
            "event-channel-tx",
            "event-channel-rx",
        ] {
            assert!(
                read(&b, &format!("queue-{q}/{k}")).is_some(),
                "queue-{q}/{k}"
            );
        }
        assert_eq!(read(&b, &format!("queue-{q}/event-channel")), None);
        // Every RX buffer is posted, and the backend was told.
        assert_eq!(b.be.rx_posted(q), 256);
        let (tx, rx) = b.fe.ports(q).unwrap();
        assert_ne!(tx, rx);
        assert!(b.world.borrow_mut().take_back_events(rx) > 0);
    }
    assert_eq!(b.be.queues(), 2);
    let o = b.fe.offloads();
    assert!(o.sg && o.tso4 && o.tso6 && o.ipv4_csum && o.ipv6_csum);
    assert_eq!(b.fe.max_packet(), 65535);
}

#[test]
fn single_queue_flat_keys_one_channel() {
    let cfg = BackConfig {
        max_queues: None,
        split: false,
        ..Default::default()
    };
    let b = connected(cfg, 8);
    assert_eq!(b.fe.queues(), 1);
    assert_eq!(read(&b, "multi-queue-num-queues"), None);
    assert!(read(&b, "tx-ring-ref").is_some());
    assert!(read(&b, "event-channel").is_some());
    assert_eq!(read(&b, "event-channel-tx"), None);
    let (tx, rx) = b.fe.ports(0).unwrap();
    assert_eq!(tx, rx);
}

#[test]
fn transmits_small_sg_and_gso_packets() {
    let mut b = connected(BackConfig::default(), 2);
    let small = pattern(60, 1);
    let jumbo = pattern(9014, 2);
    let gso = pattern(65535, 3);
    tx(&mut b, 0, &[&small], &TxOffload::default()).unwrap();
    tx(
        &mut b,
        0,
        &[&jumbo[..100], &jumbo[100..5000], &jumbo[5000..]],
        &TxOffload {
            csum: TxCsum::Partial,
            gso: None,
        },
    )
    .unwrap();
    let off = TxOffload {
        csum: TxCsum::Partial,
        gso: Some((NetifGsoType::TcpV4, 1448)),
    };
    tx(&mut b, 1, &[&gso[..54], &gso[54..]], &off).unwrap();
    let (tx1, _) = b.fe.ports(1).unwrap();
    assert!(
        b.world.borrow_mut().take_back_events(tx1) > 0,
        "backend notified"
    );
    b.be.pump_tx();
    assert_eq!(b.be.refused, 0);
    assert_eq!(
        b.be.sent,
        vec![
            Sent {
                queue: 0,
                data: small,
                flags: NetTxFlags::empty(),
                gso: None
            },
            Sent {
                queue: 0,
                data: jumbo,
                flags: NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED | NetTxFlags::MORE_DATA,
                gso: None
            },
            Sent {
                queue: 1,
                data: gso,
                flags: NetTxFlags::CSUM_BLANK
                    | NetTxFlags::DATA_VALIDATED
                    | NetTxFlags::MORE_DATA
                    | NetTxFlags::EXTRA_INFO,
                gso: Some((NetifGsoType::TcpV4, 1448)),
            },
        ]
    );
    for q in 0..2 {
        let r = b.fe.poll(&mut b.p, q, 64, |_| panic!("no rx")).unwrap();
        assert!(r.tx_room);
    }
    let s = b.fe.stats();
    assert_eq!(
        (s.tx_packets, s.tx_bytes, s.tx_errors),
        (3, 60 + 9014 + 65535, 0)
    );
}

#[test]
fn receives_small_sg_and_gso_packets() {
    let mut b = connected(BackConfig::default(), 2);
    let small = pattern(60, 4);
    let jumbo = pattern(9014, 5);
    let gso = pattern(65000, 6);
    assert!(b.be.deliver(0, &small, NetRxFlags::DATA_VALIDATED, None));
    assert!(b.be.deliver(0, &jumbo, NetRxFlags::empty(), None));
    let g = Some((NetifGsoType::TcpV6, 1440));
    assert!(b.be.deliver(
        1,
        &gso,
        NetRxFlags::CSUM_BLANK | NetRxFlags::DATA_VALIDATED,
        g
    ));
    let got = poll(&mut b, 0).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, small);
    assert_eq!(got[0].1, NetRxFlags::DATA_VALIDATED);
    assert_eq!(got[1].0, jumbo);
    let got = poll(&mut b, 1).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, gso);
    assert_eq!(got[0].2, g);
    // The buffers came back.
    assert_eq!(b.be.rx_posted(0), 256);
    assert_eq!(b.be.rx_posted(1), 256);
    let s = b.fe.stats();
    assert_eq!(
        (s.rx_packets, s.rx_bytes, s.rx_errors),
        (3, 60 + 9014 + 65000, 0)
    );
}

#[test]
fn ring_full_is_busy_then_room_after_completions() {
    let mut b = connected(BackConfig::default(), 1);
    let big = pattern(65535, 7);
    let mut sent = 0;
    loop {
        match tx(&mut b, 0, &[&big], &TxOffload::default()) {
            Ok(()) => sent += 1,
            Err(TxError::Busy) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 100, "never busy");
    }
    assert_eq!(sent, 256 / 16, "16 slots each");
    assert!(!b.fe.tx_room(0));
    b.be.pump_tx();
    assert_eq!(b.be.sent.len(), sent);
    let r = b.fe.poll(&mut b.p, 0, 64, |_| {}).unwrap();
    assert!(r.tx_room);
    assert_eq!(r.tx_completed, 256);
}

#[test]
fn gso_off_is_neither_offered_nor_sent() {
    // A backend offering GSO, a frontend configured without it (Windows' xennet):
    // no feature-gso-* nodes (so netback sends no oversized frames), no TSO offload,
    // and a GSO packet from the stack refused before it reaches the ring.
    let mut b = connected_with(
        BackConfig::default(),
        FrontendConfig {
            max_queues: 1,
            gso: false,
            ..Default::default()
        },
    );
    assert_eq!(read(&b, "feature-gso-tcpv4"), None);
    assert_eq!(read(&b, "feature-gso-tcpv6"), None);
    assert_eq!(read(&b, "feature-sg").as_deref(), Some("1"));
    let o = b.fe.offloads();
    assert!(o.sg && !o.tso4 && !o.tso6);
    let d = pattern(9000, 4);
    for t in [NetifGsoType::TcpV4, NetifGsoType::TcpV6] {
        let off = TxOffload {
            csum: TxCsum::Partial,
            gso: Some((t, 1448)),
        };
        assert_eq!(tx(&mut b, 0, &[&d], &off), Err(TxError::BadGso));
    }
    tx(&mut b, 0, &[&d], &TxOffload::default()).unwrap();
    b.be.pump_tx();
    assert_eq!(b.be.sent.len(), 1);
    assert_eq!(b.be.sent[0].gso, None);
}

#[test]
fn transmit_gso_without_receive_gso_offers_nothing_but_sends_gso() {
    // Windows' xennet: NDIS LSO on transmit, no receive coalescing. The backend must
    // not send oversized frames (no feature-gso-* of ours), yet GSO packets go out.
    let mut b = bed_with(
        BackConfig::default(),
        FrontendConfig {
            max_queues: 1,
            ..Default::default()
        },
    );
    b.fe.set_receive_gso(false);
    b.fe.backend_changed(&mut b.p, XenbusState::InitWait)
        .unwrap();
    b.be.connect();
    b.fe.backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
    assert_eq!(read(&b, "feature-gso-tcpv4"), None);
    assert_eq!(read(&b, "feature-gso-tcpv6"), None);
    let o = b.fe.offloads();
    assert!(o.tso4 && o.tso6);
    let d = pattern(9000, 4);
    let off = TxOffload {
        csum: TxCsum::Partial,
        gso: Some((NetifGsoType::TcpV6, 1440)),
    };
    tx(&mut b, 0, &[&d], &off).unwrap();
    b.be.pump_tx();
    assert_eq!(b.be.sent[0].gso, Some((NetifGsoType::TcpV6, 1440)));
    assert_eq!(b.be.sent[0].data, d);
}

#[test]
fn refuses_bad_lengths_and_unoffered_gso() {
    let cfg = BackConfig {
        sg: false,
        gso: false,
        ..Default::default()
    };
    let mut b = connected(cfg, 1);
    let d = pattern(70000, 8);
    let off = TxOffload::default();
    assert_eq!(
        tx(&mut b, 0, &[&d[..13]], &off),
        Err(TxError::BadLength(13))
    );
    assert_eq!(
        tx(&mut b, 0, &[&d[..4097]], &off),
        Err(TxError::BadLength(4097))
    );
    assert_eq!(tx(&mut b, 0, &[&d[..4096]], &off), Ok(()));
    assert_eq!(tx(&mut b, 1, &[&d[..60]], &off), Err(TxError::BadQueue(1)));
    let gso = TxOffload {
        gso: Some((NetifGsoType::TcpV4, 1448)),
        ..off
    };
    assert_eq!(tx(&mut b, 0, &[&d[..60]], &gso), Err(TxError::BadGso));
    let mut b = connected(BackConfig::default(), 1);
    assert_eq!(
        tx(&mut b, 0, &[&d[..65536]], &off),
        Err(TxError::BadLength(65536))
    );
    let zero = TxOffload {
        gso: Some((NetifGsoType::TcpV4, 0)),
        ..off
    };
    assert_eq!(tx(&mut b, 0, &[&d[..60]], &zero), Err(TxError::BadGso));
    b.be.pump_tx();
    assert_eq!(b.be.sent.len(), 0);
}

fn arb_packet() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, bool, bool)> {
    (
        14usize..=65535,
        any::<u8>(),
        prop::collection::vec(1usize..20000, 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(len, seed, cuts, gso, partial)| {
            let d = pattern(len, seed);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % len).collect();
            cuts.sort();
            (d, cuts, gso && len > 1514, partial)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random packets on random queues through TX, echoed by the backend into RX:
    /// every byte, flag and GSO size arrives, in order per queue.
    #[test]
    fn round_trip(pkts in prop::collection::vec((arb_packet(), 0usize..2), 1..40)) {
        let mut b = connected(BackConfig::default(), 2);
        let mut expect: [Vec<Vec<u8>>; 2] = [vec![], vec![]];
        for ((d, cuts, gso, partial), q) in &pkts {
            let mut frags: Vec<&[u8]> = vec![];
            let mut at = 0;
            for &c in cuts.iter().chain(std::iter::once(&d.len())) {
                frags.push(&d[at..c]);
                at = c;
            }
            let off = TxOffload {
                csum: if *partial { TxCsum::Partial } else { TxCsum::Complete },
                gso: gso.then_some((NetifGsoType::TcpV6, 1440)),
            };
            loop {
                match tx(&mut b, *q, &frags, &off) {
                    Ok(()) => break,
                    Err(TxError::Busy) => {
                        b.be.pump_tx();
                        b.fe.poll(&mut b.p, *q, 64, |_| {}).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            expect[*q].push(d.clone());
        }
        b.be.pump_tx();
        prop_assert_eq!(b.be.refused, 0);
        let sent = std::mem::take(&mut b.be.sent);
        prop_assert_eq!(sent.len(), pkts.len());
        let mut got: [Vec<Vec<u8>>; 2] = [vec![], vec![]];
        for s in &sent {
            let q = &s.queue;
            let mut flags = NetRxFlags::empty();
            if s.flags.contains(NetTxFlags::CSUM_BLANK) {
                flags |= NetRxFlags::CSUM_BLANK | NetRxFlags::DATA_VALIDATED;
            }
            while !b.be.deliver(*q, &s.data, flags, s.gso) {
                for (v, _, _) in poll(&mut b, *q).unwrap() {
                    got[*q].push(v);
                }
            }
        }
        for (q, got) in got.iter_mut().enumerate() {
            for (v, _, _) in poll(&mut b, q).unwrap() {
                got.push(v);
            }
        }
        prop_assert_eq!(&got, &expect);
        prop_assert_eq!(b.fe.stats().rx_errors, 0);
    }

    /// Arbitrary RX responses: never a panic; either packets (each within the data the
    /// backend could have written) or a failed device with the grants ended.
    #[test]
    fn arbitrary_rx_responses(raw in prop::collection::vec((any::<u16>(), any::<u16>(), any::<u16>(), any::<i16>()), 1..300)) {
        let mut b = connected(BackConfig::default(), 1);
        let rsps: Vec<NetifRxResponse> = raw
            .iter()
            .enumerate()
            .map(|(i, &(id, offset, flags, status))| NetifRxResponse {
                // Mostly the right id, so that chains get assembled.
                id: if id % 4 == 0 { id } else { i as u16 },
                offset: offset % 8192,
                flags: flags & 0x1f,
                status,
            })
            .collect();
        b.be.raw_rx(0, &rsps);
        match poll(&mut b, 0) {
            Ok(got) => {
                for (v, _, _) in got {
                    prop_assert!(v.len() >= 14 && v.len() <= 18 * 4096);
                }
                prop_assert_eq!(b.fe.state(), FrontState::Connected);
            }
            Err(_) => assert_failed(&mut b),
        }
    }

    /// Arbitrary TX responses: never a panic; errors fail the device.
    #[test]
    fn arbitrary_tx_responses(raw in prop::collection::vec((any::<u16>(), any::<i16>()), 1..40), n in 1usize..10) {
        let mut b = connected(BackConfig::default(), 1);
        for _ in 0..n {
            tx(&mut b, 0, &[&pattern(5000, 1)], &TxOffload::default()).unwrap();
        }
        let rsps: Vec<NetifTxResponse> = raw
            .iter()
            .map(|&(id, status)| NetifTxResponse { id: id % 300, status: status % 3 - 1 })
            .collect();
        b.be.raw_tx(0, &rsps);
        match b.fe.poll(&mut b.p, 0, 64, |_| panic!("no rx")) {
            Ok(_) => prop_assert_eq!(b.fe.state(), FrontState::Connected),
            Err(_) => assert_failed(&mut b),
        }
    }
}
