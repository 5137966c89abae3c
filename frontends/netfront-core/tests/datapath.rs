//! Queues handed out of the frontend (`Frontend::detach_queues`), as a driver with a
//! lock per queue runs them: traffic both ways, a hostile backend breaking one queue
//! (and nothing else until the driver fails the device), teardown after they come back.

mod fake;

use fake::netback::{BackConfig, Misbehaviour, Netback};
use fake::{FrontPlatform, World, BACK, BACKEND_ID, FRONT};
use sluice_abi::netif::{NetRxFlags, NetifGsoType};
use sluice_abi::shared::SharedMem;
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::{
    DataQueue, Event, EventChannels, FrontState, Frontend, FrontendConfig, Pages, ProtocolError,
    TxError, TxOffload,
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

fn connected(cfg: BackConfig, queues: u32) -> Bed {
    let world = World::new();
    let mut be = Netback::new(world.clone(), cfg);
    let mut p = FrontPlatform(world.clone());
    let fcfg = FrontendConfig {
        max_queues: queues,
        ..Default::default()
    };
    let mut fe = Fe::new(FRONT, BACK, BACKEND_ID, fcfg).unwrap();
    fe.start(&mut p).unwrap();
    let ev = fe.backend_changed(&mut p, XenbusState::InitWait).unwrap();
    assert!(matches!(ev, Event::Connected { .. }), "{ev:?}");
    be.connect();
    fe.backend_changed(&mut p, XenbusState::Connected).unwrap();
    Bed { world, p, fe, be }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn tx<Pp: Pages>(
    q: &mut DataQueue<Pp>,
    p: &mut FrontPlatform,
    data: &[u8],
    off: &TxOffload,
) -> Result<(), TxError> {
    let mut buf = data.to_vec();
    let mems = [SharedMem::from_mut_slice(&mut buf)];
    q.transmit(|port| p.notify(port), &mems, off)
}

/// Polls until nothing is left; the packets received.
fn poll<Pp: Pages>(
    q: &mut DataQueue<Pp>,
    p: &mut FrontPlatform,
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut got = Vec::new();
    loop {
        let r = q.poll(|port| p.notify(port), 8, &mut |pkt| {
            let mut v = vec![0; pkt.len];
            pkt.copy_to(&mut v).unwrap();
            got.push(v);
        })?;
        if !r.more {
            return Ok(got);
        }
    }
}

#[test]
fn detached_queues_carry_traffic_and_come_back_for_teardown() {
    let mut b = connected(BackConfig::default(), 2);
    let mut qs = b.fe.detach_queues();
    assert_eq!(qs.len(), 2);
    assert_eq!(b.fe.queues(), 2, "still set up");
    // The frontend itself no longer reaches them.
    let mut buf = pattern(60, 0);
    let mems = [SharedMem::from_mut_slice(&mut buf)];
    assert_eq!(
        b.fe.transmit(&mut b.p, 1, &mems, &TxOffload::default()),
        Err(TxError::BadQueue(1))
    );

    let (tx_port, rx_port) = qs[1].ports();
    let d = pattern(9000, 1);
    tx(&mut qs[1], &mut b.p, &d, &TxOffload::default()).unwrap();
    assert!(
        b.world.borrow_mut().take_back_events(tx_port) > 0,
        "backend told"
    );
    b.be.pump_tx();
    assert_eq!(b.be.sent.last().unwrap().data, d);
    assert_eq!(b.be.sent.last().unwrap().queue, 1);

    // 20 packets in, polled 8 at a time (`more` until the ring is empty).
    for i in 0..20 {
        let r = pattern(1500, i);
        assert!(b.be.deliver(1, &r, NetRxFlags::empty(), None));
    }
    let got = poll(&mut qs[1], &mut b.p).unwrap();
    assert_eq!(got.len(), 20);
    assert_eq!(got[19], pattern(1500, 19));
    assert!(qs[1].tx_room());
    assert!(
        b.world.borrow_mut().take_back_events(rx_port) > 0,
        "buffers reposted"
    );
    assert_eq!(qs[1].stats().tx_packets, 1);
    assert_eq!(qs[1].stats().rx_packets, 20);
    assert_eq!(qs[0].stats().rx_packets, 0);

    b.fe.attach_queues(qs);
    assert!(!b.fe.any_broken());
    assert_eq!(b.fe.stats().rx_packets, 20);
    b.be.disconnect();
    b.be.set_state(XenbusState::Closing);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Closing),
        Ok(Event::Disconnected)
    );
    let w = b.world.borrow();
    assert_eq!(
        (w.live_grants(), w.live_allocs(), w.open_ports()),
        (0, 0, 0)
    );
    drop(w);
    assert_eq!(b.fe.queues(), 0);
    assert_eq!(b.fe.stats().tx_packets, 1, "counters outlive the rings");
    assert_eq!(b.fe.stats().rx_packets, 20);
}

#[test]
fn unoffered_gso_and_bad_lengths_refused_by_a_detached_queue() {
    let cfg = BackConfig {
        sg: false,
        gso: false,
        ..Default::default()
    };
    let mut b = connected(cfg, 1);
    let mut qs = b.fe.detach_queues();
    let q = &mut qs[0];
    assert_eq!(q.max_packet(), 4096);
    let gso = TxOffload {
        gso: Some((NetifGsoType::TcpV4, 1448)),
        ..Default::default()
    };
    assert_eq!(tx(q, &mut b.p, &pattern(60, 0), &gso), Err(TxError::BadGso));
    let off = TxOffload::default();
    assert_eq!(
        tx(q, &mut b.p, &pattern(4097, 0), &off),
        Err(TxError::BadLength(4097))
    );
    assert_eq!(
        tx(q, &mut b.p, &pattern(13, 0), &off),
        Err(TxError::BadLength(13))
    );
    b.be.pump_tx();
    assert!(b.be.sent.is_empty());
}

/// A broken queue refuses everything; the device stays up until the driver, having
/// taken the queues back, fails it: then only grants the backend maps stay.
fn assert_broken_then_failed(
    mut b: Bed,
    mut qs: Vec<DataQueue<<FrontPlatform as sluice_netfront_core::Memory>::Pages>>,
) {
    let q = &mut qs[0];
    assert!(q.broken());
    assert!(!q.tx_room());
    assert_eq!(
        tx(q, &mut b.p, &pattern(60, 0), &TxOffload::default()),
        Err(TxError::NotConnected)
    );
    let r = q.poll(|_| panic!("no notify"), 64, &mut |_| panic!("no packet"));
    assert_eq!(r.unwrap().rx, 0);
    assert_eq!(b.fe.state(), FrontState::Connected, "the driver's call");
    b.fe.attach_queues(qs);
    assert!(b.fe.any_broken());
    b.fe.fail(&mut b.p);
    assert_eq!(b.fe.state(), FrontState::Failed);
    let w = b.world.borrow();
    assert_eq!(w.open_ports(), 0);
    assert_eq!(
        w.live_grants(),
        w.mapped_grants(),
        "only mapped grants live"
    );
}

#[test]
fn hostile_tx_response_breaks_the_queue_until_the_driver_fails_the_device() {
    let mut b = connected(BackConfig::default(), 1);
    let mut qs = b.fe.detach_queues();
    b.be.misbehave = Misbehaviour::TxBogusId;
    for _ in 0..3 {
        tx(
            &mut qs[0],
            &mut b.p,
            &pattern(9000, 3),
            &TxOffload::default(),
        )
        .unwrap();
    }
    b.be.pump_tx();
    assert_eq!(
        poll(&mut qs[0], &mut b.p),
        Err(ProtocolError::TxIdOutOfRange { queue: 0, id: 4000 })
    );
    assert_broken_then_failed(b, qs);
}

#[test]
fn hostile_rx_response_breaks_the_queue_until_the_driver_fails_the_device() {
    let mut b = connected(BackConfig::default(), 1);
    let mut qs = b.fe.detach_queues();
    b.be.misbehave = Misbehaviour::RxBogusId;
    assert!(b
        .be
        .deliver(0, &pattern(3000, 4), NetRxFlags::empty(), None));
    assert_eq!(
        poll(&mut qs[0], &mut b.p),
        Err(ProtocolError::RxIdMismatch {
            queue: 0,
            id: 1,
            expected: 0
        })
    );
    assert_broken_then_failed(b, qs);
}

/// As the kernel module fills an skb: a linear head, then page-sized parts.
#[test]
fn packet_copied_piecewise_matches_the_whole() {
    let mut b = connected(BackConfig::default(), 1);
    let mut qs = b.fe.detach_queues();
    let d = pattern(20000, 7);
    assert!(b.be.deliver(
        0,
        &d,
        NetRxFlags::empty(),
        Some((NetifGsoType::TcpV4, 1448))
    ));
    let mut pieces = Vec::new();
    let r = qs[0]
        .poll(|port| b.p.notify(port), 64, &mut |pkt| {
            let mut whole = vec![0; pkt.len];
            pkt.copy_to(&mut whole).unwrap();
            let mut v = vec![0; pkt.len];
            let mut at = 0;
            for n in [256, 4096, 4096, 1, 4095, 4096] {
                pkt.copy_range(at, &mut v[at..at + n]).unwrap();
                at += n;
            }
            let rest = pkt.len - at;
            pkt.copy_range(at, &mut v[at..]).unwrap();
            assert!(
                pkt.copy_range(at, &mut vec![0; rest + 1]).is_err(),
                "past the end"
            );
            assert!(
                pkt.copy_range(usize::MAX, &mut [0u8; 2]).is_err(),
                "overflow"
            );
            pkt.copy_range(pkt.len, &mut []).unwrap();
            pieces.push((whole, v));
        })
        .unwrap();
    assert_eq!(r.rx, 1);
    assert_eq!(pieces[0].0, d);
    assert_eq!(pieces[0].1, d);
}
