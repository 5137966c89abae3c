//! The netfront core against a fake netback on a fake Xen world: negotiation, TX and
//! RX round trips (SG, GSO, checksum flags, multi-queue), and hostile backends.

mod fake;

use fake::netback::{BackConfig, Misbehaviour, Netback, Sent};
use fake::{FrontPlatform, World, BACK, BACKEND_ID, FRONT};
use proptest::prelude::*;
use sluice_abi::netif::{NetRxFlags, NetTxFlags, NetifRxResponse, NetifTxResponse};
use sluice_abi::shared::SharedMem;
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::{
    Event, FrontState, Frontend, FrontendConfig, NegotiationError, NetifGsoType, ProtocolError,
    SeamError, TxCsum, TxError, TxOffload,
};
use std::cell::RefCell;
use std::rc::Rc;

type Fe = Frontend<FrontPlatform>;

struct Bed {
    world: Rc<RefCell<World>>,
    p: FrontPlatform,
    fe: Fe,
    be: Netback,
}

fn bed_with(cfg: BackConfig, fcfg: FrontendConfig) -> Bed {
    let world = World::new();
    let be = Netback::new(world.clone(), cfg);
    let mut p = FrontPlatform(world.clone());
    let mut fe = Fe::new(FRONT, BACK, BACKEND_ID, fcfg).unwrap();
    assert_eq!(fe.start(&mut p).unwrap(), [0, 0x16, 0x3e, 0, 0, 1]);
    Bed { world, p, fe, be }
}

/// A connected bed: negotiation done, backend mapped the rings.
fn connected(cfg: BackConfig, queues: u32) -> Bed {
    let mut b = bed_with(
        cfg,
        FrontendConfig {
            max_queues: queues,
            ..Default::default()
        },
    );
    let ev =
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait)
            .unwrap();
    assert!(matches!(ev, Event::Connected { .. }), "{ev:?}");
    b.be.connect();
    b.fe.backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
    b
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

type Got = (Vec<u8>, NetRxFlags, Option<(NetifGsoType, u16)>);

/// Transmits `frags` (copied into mutable buffers: the core takes shared memory).
fn tx(b: &mut Bed, q: usize, frags: &[&[u8]], off: &TxOffload) -> Result<(), TxError> {
    let mut bufs: Vec<Vec<u8>> = frags.iter().map(|f| f.to_vec()).collect();
    let mems: Vec<SharedMem<'_>> = bufs
        .iter_mut()
        .map(|v| SharedMem::from_mut_slice(v))
        .collect();
    b.fe.transmit(&mut b.p, q, &mems, off)
}

fn poll(b: &mut Bed, q: usize) -> Result<Vec<Got>, ProtocolError> {
    let mut got = Vec::new();
    loop {
        let r = b.fe.poll(&mut b.p, q, 64, |pkt| {
            let mut v = vec![0; pkt.len];
            pkt.copy_to(&mut v).unwrap();
            got.push((v, pkt.flags, pkt.gso));
        })?;
        if !r.more {
            return Ok(got);
        }
    }
}

fn read(b: &Bed, key: &str) -> Option<String> {
    b.world.borrow().xs.get(&format!("{FRONT}/{key}")).cloned()
}

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
    let mut b = bed_with(
        BackConfig::default(),
        FrontendConfig {
            max_queues: 1,
            gso: false,
            ..Default::default()
        },
    );
    let ev =
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait)
            .unwrap();
    assert!(matches!(ev, Event::Connected { .. }), "{ev:?}");
    b.be.connect();
    b.fe.backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
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

/// After a fatal error: failed, transmits refused, channels closed, grants ended
/// (ring pages the backend still maps quarantined, never freed).
fn assert_failed(b: &mut Bed) {
    assert_eq!(b.fe.state(), FrontState::Failed);
    assert_eq!(read(b, "state").as_deref(), Some("6"));
    assert_eq!(
        tx(b, 0, &[&[0u8; 60][..]], &TxOffload::default()),
        Err(TxError::NotConnected)
    );
    assert_eq!(b.world.borrow().open_ports(), 0);
    let mapped = b.world.borrow().mapped_grants();
    assert_eq!(
        b.world.borrow().live_grants(),
        mapped,
        "only mapped grants live"
    );
    assert_eq!(b.fe.stats().quarantined_pages, mapped as u64);
    // Polls after the failure do nothing.
    assert_eq!(b.fe.poll(&mut b.p, 0, 64, |_| panic!()).unwrap().rx, 0);
}

fn tx_hostile(m: Misbehaviour) -> (Bed, Result<Vec<Got>, ProtocolError>) {
    let mut b = connected(BackConfig::default(), 1);
    b.be.misbehave = m;
    let d = pattern(9000, 9);
    for _ in 0..3 {
        tx(&mut b, 0, &[&d], &TxOffload::default()).unwrap();
    }
    b.be.pump_tx();
    let r = poll(&mut b, 0);
    (b, r)
}

#[test]
fn hostile_tx_ids_and_indices_fail_the_device() {
    let (mut b, r) = tx_hostile(Misbehaviour::TxBogusId);
    assert_eq!(r, Err(ProtocolError::TxIdOutOfRange { queue: 0, id: 4000 }));
    assert_failed(&mut b);
    let (mut b, r) = tx_hostile(Misbehaviour::TxUnsentId);
    assert!(
        matches!(r, Err(ProtocolError::TxIdNotInFlight { queue: 0, .. })),
        "{r:?}"
    );
    assert_failed(&mut b);
    let (mut b, r) = tx_hostile(Misbehaviour::TxDuplicate);
    assert!(
        matches!(r, Err(ProtocolError::TxIdNotInFlight { queue: 0, .. })),
        "{r:?}"
    );
    assert_failed(&mut b);
    let (mut b, r) = tx_hostile(Misbehaviour::TxOverflow);
    assert!(
        matches!(r, Err(ProtocolError::Ring { queue: 0, .. })),
        "{r:?}"
    );
    assert_failed(&mut b);
}

#[test]
fn tx_error_status_is_counted_not_fatal() {
    let (mut b, r) = tx_hostile(Misbehaviour::TxErrorStatus);
    assert_eq!(r, Ok(vec![]));
    assert_eq!(b.fe.stats().tx_errors, 9, "3 packets of 3 slots");
    assert_eq!(b.fe.state(), FrontState::Connected);
    assert!(b.fe.tx_room(0));
    b.be.misbehave = Misbehaviour::None;
    tx(&mut b, 0, &[&pattern(60, 0)], &TxOffload::default()).unwrap();
}

fn rx_hostile(m: Misbehaviour) -> (Bed, Result<Vec<Got>, ProtocolError>) {
    let mut b = connected(BackConfig::default(), 1);
    b.be.misbehave = m;
    assert!(b.be.deliver(
        0,
        &pattern(9000, 10),
        NetRxFlags::empty(),
        Some((NetifGsoType::TcpV4, 1448))
    ));
    let r = poll(&mut b, 0);
    (b, r)
}

#[test]
fn hostile_rx_ids_and_indices_fail_the_device() {
    let (mut b, r) = rx_hostile(Misbehaviour::RxBogusId);
    assert_eq!(
        r,
        Err(ProtocolError::RxIdMismatch {
            queue: 0,
            id: 1,
            expected: 0
        })
    );
    assert_failed(&mut b);
    let (mut b, r) = rx_hostile(Misbehaviour::RxOverflow);
    assert!(
        matches!(r, Err(ProtocolError::Ring { queue: 0, .. })),
        "{r:?}"
    );
    assert_failed(&mut b);
}

#[test]
fn malformed_rx_packets_are_dropped_and_buffers_reused() {
    for m in [
        Misbehaviour::RxOutsidePage,
        Misbehaviour::RxErrorStatus,
        Misbehaviour::RxBadExtra,
        Misbehaviour::RxTooManySlots,
    ] {
        let (mut b, r) = rx_hostile(m);
        assert_eq!(r, Ok(vec![]), "{m:?}");
        assert_eq!(b.fe.stats().rx_errors, 1, "{m:?}");
        assert_eq!(b.fe.state(), FrontState::Connected);
        assert_eq!(b.be.rx_posted(0), 256, "{m:?}: buffers posted again");
        b.be.misbehave = Misbehaviour::None;
        let good = pattern(1500, 11);
        // Many more packets than the ring holds: nothing leaked.
        for _ in 0..600 {
            assert!(b.be.deliver(0, &good, NetRxFlags::empty(), None));
            let got = poll(&mut b, 0).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, good);
        }
    }
}

#[test]
fn vanished_backend_fails_silent_backend_never_blocks() {
    let mut b = connected(BackConfig::default(), 2);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Unknown),
        Ok(Event::Failed)
    );
    assert_failed(&mut b);

    let mut b = connected(BackConfig::default(), 1);
    b.be.misbehave = Misbehaviour::Silent;
    let d = pattern(1500, 12);
    let mut n = 0;
    while tx(&mut b, 0, &[&d], &TxOffload::default()).is_ok() {
        b.be.pump_tx();
        n += 1;
        assert!(n <= 256);
    }
    assert_eq!(n, 256);
    assert!(!b.fe.poll(&mut b.p, 0, 64, |_| {}).unwrap().tx_room);
    // The driver's TX watchdog gives up on it.
    b.fe.fail(&mut b.p);
    assert_failed(&mut b);
}

#[test]
fn backend_close_releases_everything_and_reconnects() {
    let mut b = connected(BackConfig::default(), 2);
    tx(&mut b, 0, &[&pattern(3000, 1)], &TxOffload::default()).unwrap();
    b.be.disconnect();
    b.be.set_state(XenbusState::Closing);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Closing),
        Ok(Event::Disconnected)
    );
    assert_eq!(read(&b, "state").as_deref(), Some("6"));
    assert_eq!(b.world.borrow().live_grants(), 0);
    assert_eq!(b.world.borrow().live_allocs(), 0, "every page freed");
    assert_eq!(b.world.borrow().open_ports(), 0);
    assert_eq!(
        tx(&mut b, 0, &[&pattern(60, 1)], &TxOffload::default()),
        Err(TxError::NotConnected)
    );
    // The backend comes back.
    b.be.set_state(XenbusState::InitWait);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait),
        Ok(Event::Connected { queues: 2 })
    );
    b.be.connect();
    let d = pattern(2000, 2);
    tx(&mut b, 1, &[&d], &TxOffload::default()).unwrap();
    b.be.pump_tx();
    assert_eq!(b.be.sent.last().unwrap().data, d);
    assert_eq!(b.fe.stats().connects, 2);
}

#[test]
fn backend_keeping_rings_mapped_gets_them_quarantined() {
    let mut b = connected(BackConfig::default(), 2);
    b.be.misbehave = Misbehaviour::KeepMapped;
    b.be.disconnect();
    b.fe.shutdown(&mut b.p);
    assert_eq!(b.fe.stats().quarantined_pages, 4, "2 rings x 2 queues");
    assert_eq!(b.world.borrow().live_grants(), 4);
}

fn negotiation_error(set: &[(&str, &str)], del: &[&str]) -> NegotiationError {
    let mut b = bed_with(BackConfig::default(), FrontendConfig::default());
    for (k, v) in set {
        b.world
            .borrow_mut()
            .xs
            .insert(format!("{BACK}/{k}"), v.to_string());
    }
    for k in del {
        b.world.borrow_mut().xs.remove(&format!("{BACK}/{k}"));
    }
    let e =
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait)
            .unwrap_err();
    assert_eq!(b.fe.state(), FrontState::Failed);
    assert_eq!(b.world.borrow().live_grants(), 0);
    assert_eq!(b.world.borrow().live_allocs(), 0);
    assert_eq!(b.world.borrow().open_ports(), 0);
    e
}

#[test]
fn xenstore_garbage_is_an_error() {
    let e = negotiation_error(&[("multi-queue-max-queues", "lots")], &[]);
    assert!(matches!(e, NegotiationError::BadNode { .. }), "{e:?}");
    let e = negotiation_error(&[("feature-sg", "2")], &[]);
    assert!(matches!(e, NegotiationError::BadNode { .. }), "{e:?}");
    let e = negotiation_error(&[("feature-gso-tcpv4", "-1")], &[]);
    assert!(matches!(e, NegotiationError::BadNode { .. }), "{e:?}");
    let long = "9".repeat(5000);
    let e = negotiation_error(&[("mtu", &long)], &[]);
    match e {
        NegotiationError::BadNode { value, .. } => assert_eq!(value.len(), 32, "cut"),
        e => panic!("{e:?}"),
    }
    assert_eq!(
        negotiation_error(&[], &["feature-rx-copy"]),
        NegotiationError::NoRxCopy
    );
    // A bad MAC is refused at start.
    let world = World::new();
    let _be = Netback::new(world.clone(), BackConfig::default());
    world
        .borrow_mut()
        .xs
        .insert(format!("{FRONT}/mac"), "00:16:3e:00:00".into());
    let mut p = FrontPlatform(world.clone());
    let mut fe = Fe::new(FRONT, BACK, BACKEND_ID, FrontendConfig::default()).unwrap();
    assert!(matches!(
        fe.start(&mut p),
        Err(NegotiationError::BadNode { .. })
    ));
    world.borrow_mut().xs.remove(&format!("{FRONT}/mac"));
    assert!(matches!(
        fe.start(&mut p),
        Err(NegotiationError::MissingNode(_))
    ));
    assert!(Fe::new("device/vif/x", BACK, BACKEND_ID, FrontendConfig::default()).is_err());
}

#[test]
fn out_of_memory_at_every_step_leaks_nothing() {
    // 2 queues need 2 x (2 ring + 512 pool) pages; fail at many points.
    for budget in [0, 1, 2, 3, 100, 257, 513, 514, 515, 1000, 1027] {
        let mut b = bed_with(
            BackConfig::default(),
            FrontendConfig {
                max_queues: 2,
                ..Default::default()
            },
        );
        b.world.borrow_mut().alloc_budget = Some(budget);
        let e =
            b.fe.backend_changed(&mut b.p, XenbusState::InitWait)
                .unwrap_err();
        assert_eq!(
            e,
            NegotiationError::Platform(SeamError::NoResources),
            "{budget}"
        );
        assert_eq!(b.world.borrow().live_grants(), 0);
        assert_eq!(b.world.borrow().live_allocs(), 0);
        assert_eq!(b.world.borrow().open_ports(), 0);
    }
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

#[test]
fn dropped_without_shutdown_leaks_granted_pages_never_frees_them() {
    // The fake panics if a granted page is freed.
    let b = connected(BackConfig::default(), 2);
    drop(b.fe);
}
