//! MTU 9000 on the fake Xen world: a 9014-byte frame (a 9000-byte IP packet and its
//! Ethernet header, no GSO) crosses sluice-netback whole both ways: a TX chain of 3
//! slots (`feature-sg`, as netfront sends a linear skb that starts mid-page) becomes one
//! tap frame; a tap frame fills 3 posted RX requests (`NETRXF_more_data` on all but the
//! last), waiting for the third when only 2 are posted; a frontend without `feature-sg`
//! never gets one (dropped, counted; the next frame still arrives).

mod common;
use common::*;

const VIF: &str = "vif5.0";
const JUMBO: usize = 9014;

fn connected(w: &World, edit: impl FnOnce(&mut Vec<(String, String)>)) -> Front {
    let (be, fe) = w.add_vif(5, 0);
    Front::connect(w, w.guest(5), &be, &fe, edit, "4")
}

/// `frame` with the vnet header a tap gives a plain frame (no offload).
fn plain(frame: &[u8]) -> Vec<u8> {
    let mut msg = VnetHdr::default().as_bytes().to_vec();
    msg.extend_from_slice(frame);
    msg
}

/// `rsp_prod` of the RX ring: how many responses the backend published.
fn rx_published(f: &Front) -> u32 {
    f.guest
        .page(RX_PAGE)
        .load_u32_acquire(sluice_abi::ring::RSP_PROD_OFFSET)
        .unwrap()
}

#[test]
fn tx_jumbo_frame_in_three_slots_reaches_the_tap_whole() {
    let w = World::new(1);
    let f = connected(&w, |_| {});
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(JUMBO);
    // The skb's data starts at 3000 in its first page: 1096 + 4096 + 3822 bytes.
    let g1 = f.fill(DATA, 3000, &frame[..1096]);
    let g2 = f.fill(DATA + 1, 0, &frame[1096..5192]);
    let g3 = f.fill(DATA + 2, 0, &frame[5192..]);
    let rsp = f.send(&[
        tx(g1, 3000, NetTxFlags::MORE_DATA, 1, JUMBO as u16),
        tx(g2, 0, NetTxFlags::MORE_DATA, 2, 4096),
        tx(g3, 0, NetTxFlags::empty(), 3, 3822),
    ]);
    assert_eq!(
        rsp.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, 0), (2, 0), (3, 0)]
    );
    let mut buf = vec![0u8; 70000];
    let n = tap.recv(&mut buf).expect("the frame on the tap");
    let (h, data) = buf[..n].split_at(10);
    let h = VnetHdr::read_from_bytes(h).unwrap();
    assert_eq!((h.flags, h.gso_type), (0, vnet::GSO_NONE));
    assert_eq!(data.len(), JUMBO, "one frame, not three");
    assert_eq!(data, frame.as_slice());
}

#[test]
fn rx_jumbo_frame_fills_three_posted_requests() {
    let w = World::new(1);
    let f = connected(&w, |_| {});
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(JUMBO);
    f.post_rx(DATA, 3);
    tap.send(&plain(&frame)).unwrap();
    let r = f.rx_responses(0, 3);
    let more = NetRxFlags::MORE_DATA.bits();
    assert_eq!(
        r.iter()
            .map(|r| (r.id, r.offset, r.status, r.flags & more))
            .collect::<Vec<_>>(),
        [
            (DATA as u16, 0, 4096, more),
            ((DATA + 1) as u16, 0, 4096, more),
            ((DATA + 2) as u16, 0, 822, 0)
        ]
    );
    let mut got = f.page_bytes(DATA, 4096);
    got.extend(f.page_bytes(DATA + 1, 4096));
    got.extend(f.page_bytes(DATA + 2, 822));
    assert_eq!(got, frame);
}

#[test]
fn rx_jumbo_frame_waits_for_its_third_request() {
    let w = World::new(1);
    let f = connected(&w, |_| {});
    let tap = w.tap(VIF, 0);
    let frame = udp_frame(JUMBO);
    // Two requests for a frame of three pages: nothing may be answered (a part of the
    // frame, or the frame cut short), whatever the backend's timing.
    f.post_rx(DATA, 2);
    tap.send(&plain(&frame)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rx_published(&f), 0, "answered before the frame had room");
    f.post_rx(DATA + 2, 1);
    let r = f.rx_responses(0, 3);
    assert_eq!(
        r.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [
            (DATA as u16, 4096),
            ((DATA + 1) as u16, 4096),
            ((DATA + 2) as u16, 822)
        ]
    );
    let mut got = f.page_bytes(DATA, 4096);
    got.extend(f.page_bytes(DATA + 1, 4096));
    got.extend(f.page_bytes(DATA + 2, 822));
    assert_eq!(got, frame);
    assert_eq!(rx_published(&f), 3);
}

#[test]
fn frontend_without_sg_never_gets_a_jumbo_frame() {
    let w = World::new(1);
    let f = connected(&w, |nodes| {
        nodes.retain(|(k, _)| !k.starts_with("feature-sg") && !k.starts_with("feature-gso"));
    });
    let tap = w.tap(VIF, 0);
    let small = udp_frame(600);
    f.post_rx(DATA, 3);
    tap.send(&plain(&udp_frame(JUMBO))).unwrap();
    tap.send(&plain(&small)).unwrap();
    // The jumbo frame cannot be placed in one slot: dropped; the next one arrives in
    // the first request, alone.
    let r = f.rx_responses(0, 1);
    assert_eq!(
        (
            r[0].id,
            r[0].status,
            r[0].flags & NetRxFlags::MORE_DATA.bits()
        ),
        (DATA as u16, 600, 0)
    );
    assert_eq!(f.page_bytes(DATA, 600), small);
    assert_eq!(rx_published(&f), 1);
}
