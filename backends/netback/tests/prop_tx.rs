//! Random TX rings against the real backend on the fake world: whatever the frontend
//! publishes, the backend answers every slot or closes the vif; it never panics or
//! hangs, and a good packet after the garbage still goes through when the vif stayed up.

mod common;
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Slot {
    granted: bool,
    offset: u16,
    flags: u16,
    size: u16,
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        any::<bool>(),
        0u16..4200,
        0u16..16,
        prop_oneof![0u16..200, any::<u16>()],
    )
        .prop_map(|(granted, offset, flags, size)| Slot {
            granted,
            offset,
            flags,
            size,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn any_tx_ring_is_answered_or_the_vif_closed(slots in proptest::collection::vec(slot(), 1..40)) {
        let w = World::new(1);
        let (be, fe) = w.add_vif(5, 0);
        let f = Front::connect(&w, w.guest(5), &be, &fe, |_| {}, "4");
        let tap = w.tap("vif5.0", 0);
        let good = f.fill(DATA, 0, &udp_frame(4096));
        let mut reqs: Vec<NetifTxRequest> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| tx(if s.granted { good } else { GrantRef(7777) }, s.offset,
                NetTxFlags::from_bits_retain(s.flags), i as u16, s.size))
            .collect();
        // Ends any open chain (data: no MORE_DATA; extras: a bad GSO, fatal), then one
        // good packet.
        reqs.push(tx(GrantRef(1), 0, NetTxFlags::empty(), 900, 64));
        reqs.push(tx(good, 0, NetTxFlags::empty(), 901, 64));
        let mut ring = f.tx_ring();
        for r in &reqs {
            ring.push_request(r).unwrap();
        }
        ring.push_requests().unwrap();
        f.ev.notify(EvtchnPort(f.tx_port)).unwrap();
        let mem = f.guest.page(TX_PAGE);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answered = mem.load_u32_acquire(sluice_abi::ring::RSP_PROD_OFFSET).unwrap();
            let state = f.xs.read_opt(XBT_NULL, &format!("{be}/state")).unwrap();
            if state.as_deref() == Some("5") {
                break;
            }
            if answered as usize == reqs.len() {
                // The last packet was good: its frame reaches the tap (answers come
                // before the tap writes, so it may still be on its way; the tap's read
                // timeout is the hang guard). Frames of earlier good packets before it.
                let want = udp_frame(4096)[..64].to_vec();
                let mut buf = vec![0u8; 70000];
                loop {
                    let n = tap.recv(&mut buf).expect("the good packet's frame");
                    if buf[10..n] == want[..] {
                        break;
                    }
                }
                break;
            }
            prop_assert!(Instant::now() < deadline, "neither answered ({answered}) nor closed");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
