//! netif TX chains as a network backend parses them: the unconsumed request slots a
//! frontend published (arbitrary bytes, up to 64 slots) given to `parse_tx_packet`, and
//! each slot read as extra info.
//!
//! Checks: nothing panics; a packet uses no more ring slots than were published, has at
//! most `TX_MAX_SLOTS` data slots, each within its page, is at least an Ethernet header,
//! and its slot lengths add up to its length; a non-fatal error consumes between 1 and
//! the published slots, a fatal one none; an extra info that decodes re-encodes to a
//! value that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_abi::netif::*;
use zerocopy::FromBytes;

fuzz_target!(|data: &[u8]| {
    let n = (data.len() / size_of::<NetifTxRequest>()).min(64);
    let Ok((slots, _)) = <[NetifTxRequest]>::ref_from_prefix_with_elems(data, n) else {
        return;
    };
    match parse_tx_packet(slots) {
        Ok(None) => {}
        Ok(Some(p)) => {
            assert!(p.ring_slots >= 1 && p.ring_slots <= slots.len());
            assert!(!p.slots().is_empty() && p.slots().len() <= TX_MAX_SLOTS);
            assert!(p.len >= TX_MIN_PACKET);
            let mut total = 0u32;
            for (i, s) in p.slots().iter().enumerate() {
                assert!(usize::from(s.offset) + usize::from(p.slot_len(i)) <= PAGE_SIZE);
                total += u32::from(p.slot_len(i));
            }
            assert_eq!(total, u32::from(p.len));
        }
        Err(e) if e.fatal => assert_eq!(e.ring_slots, 0),
        Err(e) => assert!(e.ring_slots >= 1 && e.ring_slots <= slots.len()),
    }
    let n = (data.len() / size_of::<NetifExtraInfo>()).min(64);
    if let Ok((extras, _)) = <[NetifExtraInfo]>::ref_from_prefix_with_elems(data, n) {
        for x in extras {
            if let Ok(e) = x.decode() {
                let again = NetifExtraInfo::encode(&e, x.more());
                assert_eq!(again.decode(), Ok(e));
                assert_eq!(again.more(), x.more());
            }
        }
    }
});
