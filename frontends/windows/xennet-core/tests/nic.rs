//! xennet's adapter logic over the real netfront-core and the fake netback of
//! netfront-core's own tests (real abi rings in the fake Xen world), well-behaved and
//! hostile: NDIS statuses, link state, MTU, receive filter, counters.

#[path = "../../../netfront-core/tests/fake/mod.rs"]
mod fake;

use fake::netback::{BackConfig, Misbehaviour, Netback};
use fake::{FrontPlatform, World, BACK, BACKEND_ID, FRONT};
use sluice_abi::netif::{NetRxFlags, NetTxFlags, NetifGsoType};
use sluice_abi::shared::SharedMem;
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::TxOffload;
use sluice_xennet_core::csum::{fold, lso_bits, rx_bits, sum, tx_bits};
use sluice_xennet_core::filter::packet_type;
use sluice_xennet_core::nic::{Link, Nic, StartError};
use sluice_xennet_core::oid;
use sluice_xennet_core::status;
use std::cell::RefCell;
use std::rc::Rc;

const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 1];

struct Bed {
    world: Rc<RefCell<World>>,
    p: FrontPlatform,
    nic: Nic<FrontPlatform>,
    be: Netback,
}

fn bed_with(cfg: BackConfig, tweak: impl FnOnce(&mut World)) -> Bed {
    let world = World::new();
    let be = Netback::new(world.clone(), cfg);
    tweak(&mut world.borrow_mut());
    let p = FrontPlatform(world.clone());
    let nic = Nic::new(FRONT, BACK, BACKEND_ID).unwrap();
    Bed { world, p, nic, be }
}

fn up(cfg: BackConfig, tweak: impl FnOnce(&mut World)) -> Bed {
    let mut b = bed_with(cfg, tweak);
    assert_eq!(b.nic.start(&mut b.p).unwrap(), MAC);
    assert_eq!(
        b.nic
            .backend_changed(&mut b.p, XenbusState::InitWait)
            .unwrap(),
        Link::Up
    );
    b.be.connect();
    b.nic
        .backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
    assert!(b.nic.info.link_up);
    b
}

fn frame(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| i as u8).collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&MAC);
    f
}

fn send(b: &mut Bed, data: &[u8]) -> u32 {
    let mut buf = data.to_vec();
    let mems = [SharedMem::from_mut_slice(&mut buf)];
    b.nic.send(&mut b.p, &mems, &TxOffload::default())
}

fn rx(b: &mut Bed) -> Vec<Vec<u8>> {
    let (frames, _) = b.nic.receive(&mut b.p).unwrap();
    frames.into_iter().map(|f| f.data).collect()
}

#[test]
fn frames_go_both_ways_and_the_filter_decides_what_is_indicated() {
    let mut b = up(BackConfig::default(), |_| {});
    assert_eq!(b.nic.info.mtu, 1500);
    let out = frame([0xff; 6], 60);
    assert_eq!(send(&mut b, &out), status::SUCCESS);
    b.be.pump_tx();
    assert_eq!(b.be.sent.last().unwrap().data, out);
    assert_eq!(b.nic.info.counters.xmit_ok, 1);

    let to_us = frame(MAC, 100);
    let to_other = frame([0x00, 0x16, 0x3e, 9, 9, 9], 100);
    let bcast = frame([0xff; 6], 100);
    // No filter set yet: nothing indicated.
    assert!(b.be.deliver(0, &to_us, NetRxFlags::empty(), None));
    assert!(rx(&mut b).is_empty());
    b.nic
        .info
        .filter
        .set_bits(packet_type::DIRECTED | packet_type::BROADCAST)
        .unwrap();
    for f in [&to_us, &to_other, &bcast] {
        assert!(b.be.deliver(0, f, NetRxFlags::empty(), None));
    }
    assert_eq!(rx(&mut b), vec![to_us.clone(), bcast.clone()]);
    assert_eq!(b.nic.info.counters.rcv_ok, 2);
}

/// An IPv4/TCP frame to us with `n` bytes of payload (IP length as given).
fn tcp4(n: usize, ip_len: Option<u16>) -> Vec<u8> {
    let mut f = frame(MAC, 14 + 20 + 20 + n);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let len = ip_len.unwrap_or((40 + n) as u16);
    f[14..24].copy_from_slice(&[0x45, 0, (len >> 8) as u8, len as u8, 0, 1, 0x40, 0, 64, 6]);
    f[24..26].copy_from_slice(&[0, 0]);
    f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f[34 + 12] = 5 << 4;
    f
}

#[test]
fn receive_gso_is_not_offered_but_lso_goes_out_as_gso() {
    // xennet drops frames over the MTU, so it must not ask netback for GSO ones; it
    // sends NDIS LSO v2 packets as netif GSO.
    let mut b = up(BackConfig::default(), |_| {});
    {
        let w = b.world.borrow();
        for k in ["feature-gso-tcpv4", "feature-gso-tcpv6"] {
            assert_eq!(w.xs.get(&format!("{FRONT}/{k}")), None, "{k}");
        }
        assert_eq!(
            w.xs.get(&format!("{FRONT}/feature-sg")).map(String::as_str),
            Some("1")
        );
    }
    let o = b.nic.front().offloads();
    assert!(o.tso4 && o.tso6);
    let caps = b.nic.info.backend.unwrap();
    assert!(caps.tso4 && caps.csum4 && caps.csum6);
    let mut big = tcp4(30000, Some(0));
    let lso = 1448 | lso_bits::TYPE_V2;
    let (st, done) = b.nic.send_frame(&mut b.p, &mut big, 0, lso);
    assert_eq!((st, done), (status::SUCCESS, Some(lso_bits::TYPE_V2)));
    b.be.pump_tx();
    let s = b.be.sent.last().unwrap();
    assert_eq!(s.gso, Some((NetifGsoType::TcpV4, 1448)));
    assert!(s.flags.contains(NetTxFlags::CSUM_BLANK));
    assert_eq!(&s.data[16..18], &(30040u16).to_be_bytes(), "IP length set");
    // A checksum-only frame: left blank for the backend.
    let mut small = tcp4(100, None);
    let (st, done) = b.nic.send_frame(&mut b.p, &mut small, tx_bits::TCP, 0);
    assert_eq!((st, done), (status::SUCCESS, None));
    b.be.pump_tx();
    assert!(b
        .be
        .sent
        .last()
        .unwrap()
        .flags
        .contains(NetTxFlags::CSUM_BLANK));
    // UDP asked for LSO: refused, counted, nothing sent.
    let mut udp = tcp4(3000, None);
    udp[23] = 17;
    let n = b.be.sent.len();
    assert_eq!(
        b.nic.send_frame(&mut b.p, &mut udp, 0, lso).0,
        status::INVALID_PACKET
    );
    b.be.pump_tx();
    assert_eq!(b.be.sent.len(), n);
    assert_eq!(b.nic.info.counters.xmit_error, 1);
}

#[test]
fn a_backend_without_gso_gets_no_lso_and_the_current_config_says_so() {
    let cfg = BackConfig {
        gso: false,
        ..BackConfig::default()
    };
    let mut b = up(cfg, |_| {});
    let caps = b.nic.info.backend.unwrap();
    assert!(!caps.tso4 && !caps.tso6);
    let cur = oid::query(oid::code::TCP_OFFLOAD_CURRENT_CONFIG, &b.nic.info, 112).unwrap();
    assert_eq!(&cur[80..108], &[0u8; 28], "no LSO v2 reported");
    let mut big = tcp4(30000, Some(0));
    let (st, _) = b
        .nic
        .send_frame(&mut b.p, &mut big, 0, 1448 | lso_bits::TYPE_V2);
    assert_eq!(st, status::INVALID_PACKET);
    // Link down: the backend's capabilities are forgotten.
    b.nic
        .backend_changed(&mut b.p, XenbusState::Closing)
        .unwrap();
    assert_eq!(b.nic.info.backend, None);
}

#[test]
fn received_blank_checksums_are_filled_and_marked_for_ndis() {
    let mut b = up(BackConfig::default(), |_| {});
    b.nic.info.filter.set_bits(packet_type::DIRECTED).unwrap();
    let f = tcp4(500, None);
    assert!(b.be.deliver(0, &f, NetRxFlags::CSUM_BLANK, None));
    let (got, _) = b.nic.receive(&mut b.p).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].csum_info, rx_bits::TCP_SUCCEEDED);
    // The checksum is now right: summing the segment with its pseudo-header gives
    // all ones.
    let d = &got[0].data;
    let mut ph = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6];
    ph.extend_from_slice(&(520u16).to_be_bytes());
    assert_eq!(fold(sum(&d[34..], sum(&ph, 0))), 0xffff);
    // Receive checksum offload turned off: no bits.
    b.nic.info.offload.tcp4.1 = false;
    assert!(b.be.deliver(0, &f, NetRxFlags::DATA_VALIDATED, None));
    assert_eq!(b.nic.receive(&mut b.p).unwrap().0[0].csum_info, 0);
}

#[test]
fn frames_of_bad_length_are_refused_and_counted() {
    let mut b = up(BackConfig::default(), |_| {});
    assert_eq!(send(&mut b, &[0u8; 13]), status::INVALID_LENGTH);
    assert_eq!(send(&mut b, &frame(MAC, 1515)), status::INVALID_LENGTH);
    assert_eq!(send(&mut b, &frame(MAC, 1514)), status::SUCCESS);
    assert_eq!(b.nic.info.counters.xmit_error, 2);
    // An oversized received frame (the backend's GSO) is dropped, counted.
    b.nic
        .info
        .filter
        .set_bits(packet_type::PROMISCUOUS)
        .unwrap();
    assert!(b
        .be
        .deliver(0, &frame(MAC, 3000), NetRxFlags::empty(), None));
    assert!(rx(&mut b).is_empty());
    assert_eq!(b.nic.info.counters.rcv_error, 1);
}

#[test]
fn a_full_ring_answers_resources_not_a_hang() {
    let mut b = up(BackConfig::default(), |_| {});
    b.be.misbehave = Misbehaviour::Silent;
    let f = frame(MAC, 60);
    let mut n = 0;
    while send(&mut b, &f) == status::SUCCESS {
        n += 1;
        assert!(n <= 1024, "the ring never fills");
    }
    assert_eq!(send(&mut b, &f), status::RESOURCES);
    assert!(b.nic.info.counters.xmit_error >= 2);
}

#[test]
fn the_backend_mtu_is_bounded() {
    for (node, want) in [("9000", 9000), ("99999999", 1500), ("20", 1500)] {
        let b = up(BackConfig::default(), |w| {
            w.xs.insert(format!("{BACK}/mtu"), node.into());
        });
        assert_eq!(b.nic.info.mtu, want, "mtu node {node}");
    }
    let b = up(
        BackConfig {
            sg: false,
            ..BackConfig::default()
        },
        |w| {
            w.xs.insert(format!("{BACK}/mtu"), "9000".into());
        },
    );
    assert_eq!(b.nic.info.mtu, 1500, "one page without feature-sg");
}

#[test]
fn a_multicast_or_zero_mac_is_refused() {
    for mac in ["01:16:3e:00:00:01", "00:00:00:00:00:00"] {
        let mut b = bed_with(BackConfig::default(), |w| {
            w.xs.insert(format!("{FRONT}/mac"), mac.into());
        });
        assert!(matches!(b.nic.start(&mut b.p), Err(StartError::BadMac(_))));
    }
    let mut b = bed_with(BackConfig::default(), |w| {
        w.xs.insert(format!("{FRONT}/mac"), "garbage".into());
    });
    assert!(matches!(
        b.nic.start(&mut b.p),
        Err(StartError::Negotiation(_))
    ));
}

#[test]
fn a_hostile_backend_takes_the_link_down_not_the_system() {
    for m in [Misbehaviour::RxBogusId, Misbehaviour::RxOverflow] {
        let mut b = up(BackConfig::default(), |_| {});
        b.nic
            .info
            .filter
            .set_bits(packet_type::PROMISCUOUS)
            .unwrap();
        b.be.misbehave = m;
        b.be.deliver(0, &frame(MAC, 100), NetRxFlags::empty(), None);
        assert!(b.nic.receive(&mut b.p).is_err(), "{m:?}");
        assert!(!b.nic.info.link_up);
        assert_eq!(send(&mut b, &frame(MAC, 60)), status::MEDIA_DISCONNECTED);
        assert_eq!(
            b.world.borrow().xs[&format!("{FRONT}/state")],
            XenbusState::Closed.xenstore_value()
        );
    }
}

#[test]
fn a_closing_backend_is_link_down_and_halt_closes() {
    let mut b = up(BackConfig::default(), |_| {});
    let l = b
        .nic
        .backend_changed(&mut b.p, XenbusState::Closing)
        .unwrap();
    assert_eq!(l, Link::Down);
    assert!(!b.nic.info.link_up);
    assert_eq!(send(&mut b, &frame(MAC, 60)), status::MEDIA_DISCONNECTED);
    b.nic.halt(&mut b.p);
    assert_eq!(
        b.world.borrow().xs[&format!("{FRONT}/state")],
        XenbusState::Closed.xenstore_value()
    );
}

#[test]
fn a_held_nic_never_touches_the_vif_while_the_emulated_nic_owns_it() {
    let mut b = bed_with(BackConfig::default(), |_| {});
    assert_eq!(b.nic.hold(&mut b.p).unwrap(), MAC);
    assert!(b.nic.held() && !b.nic.info.link_up);
    let before = b.world.borrow().xs.clone();
    // The backend waits in InitWait: a held NIC does not answer it.
    assert_eq!(
        b.nic
            .backend_changed(&mut b.p, XenbusState::InitWait)
            .unwrap(),
        Link::Unchanged
    );
    assert_eq!(
        send(&mut b, &frame([0xff; 6], 60)),
        status::MEDIA_DISCONNECTED
    );
    assert!(b.nic.receive(&mut b.p).unwrap().0.is_empty());
    b.nic.halt(&mut b.p);
    // No state, no rings, no event channels published: xenstore is untouched.
    assert_eq!(b.world.borrow().xs, before);
    assert!(!before.contains_key(&format!("{FRONT}/state")));
}

#[test]
fn a_backend_reset_takes_the_link_down_then_renegotiates_and_traffic_flows() {
    let mut b = up(BackConfig::default(), |_| {});
    b.nic.info.filter.set_bits(packet_type::DIRECTED).unwrap();
    // sluice-netback restarted: its rings gone, state Closing then Closed.
    b.be.disconnect();
    b.be.set_state(XenbusState::Closing);
    let l = b
        .nic
        .backend_changed(&mut b.p, XenbusState::Closing)
        .unwrap();
    assert_eq!(l, Link::Down);
    assert!(!b.nic.info.link_up);
    assert_eq!(
        send(&mut b, &frame([0xff; 6], 60)),
        status::MEDIA_DISCONNECTED
    );
    assert_eq!(
        b.nic
            .backend_changed(&mut b.p, XenbusState::Closed)
            .unwrap(),
        Link::Unchanged
    );
    // The new backend waits for us: new rings, link up again.
    b.be.set_state(XenbusState::InitWait);
    let l = b
        .nic
        .backend_changed(&mut b.p, XenbusState::InitWait)
        .unwrap();
    assert_eq!(l, Link::Up);
    b.be.connect();
    b.nic
        .backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
    assert!(b.nic.info.link_up && b.nic.info.backend.is_some());
    let out = frame([0xff; 6], 80);
    assert_eq!(send(&mut b, &out), status::SUCCESS);
    b.be.pump_tx();
    assert_eq!(b.be.sent.last().unwrap().data, out);
    assert!(b.be.deliver(0, &frame(MAC, 90), NetRxFlags::empty(), None));
    assert_eq!(rx(&mut b).len(), 1);
    assert_eq!(b.nic.front().stats().connects, 2);
}
