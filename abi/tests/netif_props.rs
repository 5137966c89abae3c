//! Property tests of netif TX chain parsing (guest input to a net backend).

use proptest::prelude::*;
use sluice_abi::netif::*;
use zerocopy::{FromBytes, IntoBytes};

fn tx(offset: u16, size: u16, flags: NetTxFlags, id: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref: sluice_abi::types::GrantRef(id as u32 + 100),
        offset,
        flags: flags.bits(),
        id,
        size,
    }
}

fn extra_slot(e: &NetifExtra, more: bool) -> NetifTxRequest {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(NetifExtraInfo::encode(e, more).as_bytes());
    NetifTxRequest::read_from_bytes(&b).unwrap()
}

/// A valid chain: (slots, expected per-slot data lengths, total).
fn valid_chain() -> impl Strategy<Value = (Vec<NetifTxRequest>, Vec<u16>, bool)> {
    (
        prop::collection::vec((0u16..4096, 0u16..=4096), 1..=TX_MAX_SLOTS),
        any::<bool>(),
    )
        .prop_map(|(parts, with_gso)| {
            // Clamp each slot within its page; the first slot must hold >= 14 bytes of
            // the total so the packet is long enough.
            let lens: Vec<(u16, u16)> = parts
                .iter()
                .enumerate()
                .map(|(i, &(off, len))| {
                    let len = len.min(4096 - off);
                    if i == 0 {
                        (
                            off.min(4096 - 14),
                            len.max(14).min(4096 - off.min(4096 - 14)),
                        )
                    } else {
                        (off, len)
                    }
                })
                .collect();
            let rest: u32 = lens[1..].iter().map(|&(_, l)| l as u32).sum();
            // Keep the total within u16.
            let total = (lens[0].1 as u32 + rest).min(u16::MAX as u32);
            let mut lens = lens;
            if total < lens[0].1 as u32 + rest {
                // Too much data: shrink later slots to fit.
                let mut budget = u16::MAX as u32 - lens[0].1 as u32;
                for l in lens[1..].iter_mut() {
                    let take = (l.1 as u32).min(budget);
                    l.1 = take as u16;
                    budget -= take;
                }
            }
            let rest: u32 = lens[1..].iter().map(|&(_, l)| l as u32).sum();
            let total = lens[0].1 as u32 + rest;
            let n = lens.len();
            let mut slots = Vec::new();
            let mut first_flags = if n > 1 {
                NetTxFlags::MORE_DATA
            } else {
                NetTxFlags::empty()
            };
            if with_gso {
                first_flags |= NetTxFlags::EXTRA_INFO;
            }
            slots.push(tx(lens[0].0, total as u16, first_flags, 0));
            if with_gso {
                slots.push(extra_slot(
                    &NetifExtra::Gso {
                        size: 1448,
                        gso_type: NetifGsoType::TcpV4,
                        features: 0,
                    },
                    false,
                ));
            }
            for (i, &(off, len)) in lens.iter().enumerate().skip(1) {
                let f = if i + 1 < n {
                    NetTxFlags::MORE_DATA
                } else {
                    NetTxFlags::empty()
                };
                slots.push(tx(off, len, f, i as u16));
            }
            (slots, lens.iter().map(|&(_, l)| l).collect(), with_gso)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Arbitrary slots: parsing returns; an accepted packet obeys every rule.
    #[test]
    fn arbitrary_slots(raw in prop::collection::vec(prop::collection::vec(any::<u8>(), 12), 0..25),
                       flag_bias in prop::collection::vec(0u16..16, 25)) {
        let slots: Vec<NetifTxRequest> = raw
            .iter()
            .zip(&flag_bias)
            .map(|(b, f)| {
                let mut s = NetifTxRequest::read_from_bytes(b).unwrap();
                // Mostly small flag values so chains and extras actually occur.
                if f % 4 != 0 {
                    s.flags = *f;
                }
                s
            })
            .collect();
        match parse_tx_packet(&slots) {
            Ok(Some(p)) => {
                prop_assert!(p.ring_slots >= 1 && p.ring_slots <= slots.len());
                prop_assert!(p.slots().len() <= TX_MAX_SLOTS);
                prop_assert!(p.len >= TX_MIN_PACKET);
                let mut sum = 0u32;
                for (i, s) in p.slots().iter().enumerate() {
                    prop_assert!(s.offset as usize + p.slot_len(i) as usize <= PAGE_SIZE);
                    sum += p.slot_len(i) as u32;
                }
                prop_assert_eq!(sum, p.len as u32);
            }
            Ok(None) => {}
            Err(e) => {
                prop_assert!(e.ring_slots <= slots.len());
                prop_assert_eq!(e.fatal, e.ring_slots == 0);
            }
        }
    }

    /// Valid chains are accepted whole; every proper prefix asks for more slots.
    #[test]
    fn valid_chains((slots, lens, with_gso) in valid_chain()) {
        let p = parse_tx_packet(&slots).unwrap().unwrap();
        prop_assert_eq!(p.ring_slots, slots.len());
        prop_assert_eq!(p.slots().len(), lens.len());
        for (i, l) in lens.iter().enumerate() {
            prop_assert_eq!(p.slot_len(i), *l);
        }
        prop_assert_eq!(p.gso.is_some(), with_gso);
        for cut in 0..slots.len() {
            prop_assert_eq!(parse_tx_packet(&slots[..cut]), Ok(None));
        }
        // Trailing slots of the next packet are left alone.
        let mut more = slots.clone();
        more.push(tx(0, 60, NetTxFlags::empty(), 99));
        prop_assert_eq!(parse_tx_packet(&more).unwrap().unwrap().ring_slots, slots.len());
    }
}

fn chain(n: usize, slot_size: u16) -> Vec<NetifTxRequest> {
    let total = slot_size as u32 * n as u32;
    (0..n)
        .map(|i| {
            let f = if i + 1 < n {
                NetTxFlags::MORE_DATA
            } else {
                NetTxFlags::empty()
            };
            let size = if i == 0 { total as u16 } else { slot_size };
            tx(0, size, f, i as u16)
        })
        .collect()
}

#[test]
fn slot_count_limits() {
    assert!(parse_tx_packet(&chain(TX_MAX_SLOTS, 100))
        .unwrap()
        .is_some());
    let e = parse_tx_packet(&chain(TX_MAX_SLOTS + 1, 100)).unwrap_err();
    assert!(!e.fatal);
    assert_eq!(e.ring_slots, TX_MAX_SLOTS + 1);
    assert_eq!(
        e.kind,
        TxPacketErrorKind::TooManySlots {
            slots: TX_MAX_SLOTS + 1
        }
    );
    assert!(
        !parse_tx_packet(&chain(TX_FATAL_SLOTS, 100))
            .unwrap_err()
            .fatal
    );
    assert!(
        parse_tx_packet(&chain(TX_FATAL_SLOTS + 1, 100))
            .unwrap_err()
            .fatal
    );
}

#[test]
fn page_and_size_limits() {
    // A later slot ending exactly at the page end is fine; one byte more is fatal.
    let ok = [
        tx(0, 100 + 96, NetTxFlags::MORE_DATA, 0),
        tx(4000, 96, NetTxFlags::empty(), 1),
    ];
    assert!(parse_tx_packet(&ok).unwrap().is_some());
    let bad = [
        tx(0, 100 + 97, NetTxFlags::MORE_DATA, 0),
        tx(4000, 97, NetTxFlags::empty(), 1),
    ];
    let e = parse_tx_packet(&bad).unwrap_err();
    assert!(e.fatal);
    assert_eq!(e.kind, TxPacketErrorKind::SlotCrossesPage { index: 1 });
    // First slot: its own share (size - rest) must fit in its page.
    assert!(
        parse_tx_packet(&[tx(4096 - 14, 14, NetTxFlags::empty(), 0)])
            .unwrap()
            .is_some()
    );
    assert!(parse_tx_packet(&[tx(4096 - 13, 14, NetTxFlags::empty(), 0)]).is_err());
    // Later slots larger than the total: dropped, not fatal.
    let e = parse_tx_packet(&[
        tx(0, 50, NetTxFlags::MORE_DATA, 0),
        tx(0, 51, NetTxFlags::empty(), 1),
    ])
    .unwrap_err();
    assert_eq!(
        e.kind,
        TxPacketErrorKind::SizeMismatch {
            total: 50,
            rest: 51
        }
    );
    assert!(!e.fatal);
    // Shorter than an Ethernet header.
    assert_eq!(
        parse_tx_packet(&[tx(0, 13, NetTxFlags::empty(), 0)])
            .unwrap_err()
            .kind,
        TxPacketErrorKind::TooShort(13)
    );
}

#[test]
fn extra_info_rules() {
    let first = tx(0, 60, NetTxFlags::EXTRA_INFO, 0);
    let none = NetifTxRequest::default();
    let e = parse_tx_packet(&[first, none]).unwrap_err();
    assert!(e.fatal);
    assert_eq!(
        e.kind,
        TxPacketErrorKind::BadExtra(NetifExtraError::BadType(0))
    );
    let gso0 = extra_slot(
        &NetifExtra::Gso {
            size: 0,
            gso_type: NetifGsoType::TcpV4,
            features: 0,
        },
        false,
    );
    assert_eq!(
        parse_tx_packet(&[first, gso0]).unwrap_err().kind,
        TxPacketErrorKind::BadGso
    );
    // Two extras chained with MORE, then the data.
    let gso = extra_slot(
        &NetifExtra::Gso {
            size: 1448,
            gso_type: NetifGsoType::TcpV6,
            features: 0,
        },
        true,
    );
    let hash = extra_slot(
        &NetifExtra::Hash {
            hash_type: 1,
            algorithm: 1,
            value: [1, 2, 3, 4],
        },
        false,
    );
    let p = parse_tx_packet(&[first, gso, hash]).unwrap().unwrap();
    assert_eq!(p.ring_slots, 3);
    assert!(p.gso.is_some() && p.hash.is_some());
    assert_eq!(parse_tx_packet(&[first, gso]), Ok(None));
}
