//! The netfront core against hostile backends on the fake Xen world: bad TX and RX ids
//! and indices, malformed RX packets, a vanished or silent backend, a backend closing
//! or keeping rings mapped, garbage in xenstore, running out of memory at every step.

mod fake;

use fake::bed::{assert_failed, bed_with, connected, pattern, poll, read, tx, Bed, Fe, Got};
use fake::netback::{BackConfig, Misbehaviour, Netback};
use fake::{FrontPlatform, World, BACK, BACKEND_ID, FRONT};
use sluice_abi::netif::NetRxFlags;
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::{
    Event, FrontState, FrontendConfig, NegotiationError, NetifGsoType, ProtocolError, SeamError,
    TxError, TxOffload,
};

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

#[test]
fn dropped_without_shutdown_leaks_granted_pages_never_frees_them() {
    // The fake panics if a granted page is freed.
    let b = connected(BackConfig::default(), 2);
    drop(b.fe);
}
