//! Property tests of blkif request validation: any slot decodes or fails with the
//! request's id, never panics; whatever decodes satisfies every protocol limit; valid
//! requests are accepted; each limit holds at the limit and fails one past it.

use proptest::prelude::*;
use sluice_abi::blkif::*;
use zerocopy::{FromBytes, IntoBytes};

fn slot_from(bytes: &[u8]) -> BlkifRequest {
    let mut b = [0u8; 112];
    b[..bytes.len()].copy_from_slice(bytes);
    BlkifRequest::read_from_bytes(&b).unwrap()
}

fn valid_segment() -> impl Strategy<Value = BlkifRequestSegment> {
    (any::<u32>(), 0u8..8)
        .prop_flat_map(|(g, first)| (Just(g), Just(first), first..8))
        .prop_map(|(g, first, last)| {
            BlkifRequestSegment::new(sluice_abi::types::GrantRef(g), first, last)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Hostile slots: decode returns, and an error carries the slot's id and operation.
    /// Whatever is accepted obeys every limit.
    #[test]
    fn arbitrary_slots(bytes in prop::collection::vec(any::<u8>(), 112),
                       op in 0u8..9, max_ind in any::<u16>()) {
        let mut slot = slot_from(&bytes);
        // Bias the operation towards the defined ones so every variant is exercised.
        slot.operation = if op < 8 { op } else { slot.operation };
        let limits = BlkifLimits { max_indirect_segments: max_ind };
        match decode_request(&slot, &limits) {
            Err(e) => {
                prop_assert_eq!(e.id, slot.id);
                prop_assert_eq!(e.operation, slot.operation);
                prop_assert_eq!(e.response().id, slot.id);
            }
            Ok(BlkRequest::ReadWrite { op, id, sector_number, segments, .. }) => {
                prop_assert_eq!(id, slot.id);
                let segs = segments.as_slice();
                prop_assert!(segs.len() <= BLKIF_MAX_SEGMENTS_PER_REQUEST);
                if matches!(op, BlkifOp::Read | BlkifOp::Write) {
                    prop_assert!(!segs.is_empty());
                }
                for s in segs {
                    prop_assert!(s.first_sect <= s.last_sect && s.last_sect < SECTORS_PER_PAGE);
                    prop_assert!(s.byte_offset() + s.byte_len() <= PAGE_SIZE);
                }
                prop_assert!(sector_number.checked_add(segments.sectors()).is_some());
            }
            Ok(BlkRequest::Discard { sector_number, nr_sectors, .. }) => {
                prop_assert!(sector_number.checked_add(nr_sectors).is_some());
            }
            Ok(r @ BlkRequest::Indirect { op, nr_segments, .. }) => {
                prop_assert!(matches!(op, BlkifOp::Read | BlkifOp::Write));
                prop_assert!(nr_segments >= 1);
                prop_assert!(nr_segments as usize <= BLKIF_MAX_INDIRECT_SEGMENTS);
                prop_assert!(nr_segments <= max_ind);
                prop_assert!(r.indirect_grefs().len() <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
                prop_assert_eq!(r.indirect_grefs().len(), indirect_pages(nr_segments as u32) as usize);
            }
        }
    }

    /// Well-formed read/write requests are accepted with their segments intact.
    #[test]
    fn valid_rw_accepted(write in any::<bool>(), id in any::<u64>(), handle in any::<u16>(),
                         sector in 0u64..(1 << 60),
                         segs in prop::collection::vec(valid_segment(), 1..=BLKIF_MAX_SEGMENTS_PER_REQUEST)) {
        let op = if write { BlkifOp::Write } else { BlkifOp::Read };
        let mut slot = BlkifRequest {
            operation: op.raw(),
            nr_segments: segs.len() as u8,
            handle,
            id,
            sector_number: sector,
            ..Default::default()
        };
        slot.seg[..segs.len()].copy_from_slice(&segs);
        let r = decode_request(&slot, &BlkifLimits { max_indirect_segments: 0 }).unwrap();
        match r {
            BlkRequest::ReadWrite { op: o, id: i, handle: h, sector_number, segments } => {
                prop_assert_eq!(o, op);
                prop_assert_eq!(i, id);
                prop_assert_eq!(h, handle);
                prop_assert_eq!(sector_number, sector);
                prop_assert_eq!(segments.as_slice(), &segs[..]);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    /// One bad segment anywhere makes the whole request fail, naming that segment.
    #[test]
    fn one_bad_segment_rejects(segs in prop::collection::vec(valid_segment(), 1..=BLKIF_MAX_SEGMENTS_PER_REQUEST),
                               bad_at in any::<prop::sample::Index>(),
                               first in any::<u8>(), last in 8u8..=255) {
        let i = bad_at.index(segs.len());
        let mut slot = BlkifRequest {
            operation: BlkifOp::Read.raw(),
            nr_segments: segs.len() as u8,
            ..Default::default()
        };
        slot.seg[..segs.len()].copy_from_slice(&segs);
        slot.seg[i].first_sect = first;
        slot.seg[i].last_sect = last;
        let e = decode_request(&slot, &BlkifLimits { max_indirect_segments: 0 }).unwrap_err();
        prop_assert_eq!(e.kind, BlkifRequestErrorKind::BadSegment {
            index: i as u8,
            error: SegmentError { first_sect: first, last_sect: last },
        });
        prop_assert_eq!(e.response().status, BlkifRsp::Error.raw());
    }

    /// Indirect requests: `max_indirect_segments` is accepted, one more is not.
    #[test]
    fn indirect_limit_exact(max in 1u16..=(BLKIF_MAX_INDIRECT_SEGMENTS as u16), write in any::<bool>()) {
        let ind = |nr: u16| {
            let r = BlkifRequestIndirect {
                operation: BlkifOp::Indirect.raw(),
                indirect_op: if write { BlkifOp::Write.raw() } else { BlkifOp::Read.raw() },
                nr_segments: nr,
                id: 7,
                ..Default::default()
            };
            slot_from(r.as_bytes())
        };
        let limits = BlkifLimits { max_indirect_segments: max };
        let ok = decode_request(&ind(max), &limits).unwrap();
        prop_assert_eq!(ok.indirect_grefs().len(), (max as usize).div_ceil(SEGMENTS_PER_INDIRECT_PAGE));
        let e = decode_request(&ind(max + 1), &limits).unwrap_err();
        prop_assert_eq!(e.kind, BlkifRequestErrorKind::TooManySegments {
            nr: max as u32 + 1,
            max: max as u32,
        });
    }
}

#[test]
fn segment_rule_exhaustive() {
    for first in 0..=255u8 {
        for last in 0..=255u8 {
            let s = BlkifRequestSegment::new(sluice_abi::types::GrantRef(1), first, last);
            assert_eq!(s.validate().is_ok(), first <= last && last <= 7);
        }
    }
}

#[test]
fn direct_segment_count_limit() {
    for (nr, ok) in [(11u8, true), (12, false), (255, false)] {
        let mut slot = BlkifRequest {
            operation: BlkifOp::Write.raw(),
            nr_segments: nr,
            ..Default::default()
        };
        for s in slot.seg.iter_mut() {
            *s = BlkifRequestSegment::new(sluice_abi::types::GrantRef(1), 0, 7);
        }
        let r = decode_request(
            &slot,
            &BlkifLimits {
                max_indirect_segments: 0,
            },
        );
        assert_eq!(r.is_ok(), ok, "nr_segments {nr}");
        if !ok {
            assert_eq!(
                r.unwrap_err().kind,
                BlkifRequestErrorKind::TooManySegments {
                    nr: nr as u32,
                    max: 11
                }
            );
        }
    }
    // Read/write need a segment; flush and barrier do not.
    for (op, ok) in [
        (BlkifOp::Read, false),
        (BlkifOp::Write, false),
        (BlkifOp::FlushDiskcache, true),
        (BlkifOp::WriteBarrier, true),
    ] {
        let slot = BlkifRequest {
            operation: op.raw(),
            ..Default::default()
        };
        let limits = BlkifLimits {
            max_indirect_segments: 0,
        };
        assert_eq!(decode_request(&slot, &limits).is_ok(), ok, "{op:?}");
    }
}

#[test]
fn sector_overflow_at_and_past() {
    let limits = BlkifLimits {
        max_indirect_segments: 0,
    };
    let mut slot = BlkifRequest {
        operation: BlkifOp::Read.raw(),
        nr_segments: 1,
        ..Default::default()
    };
    slot.seg[0] = BlkifRequestSegment::new(sluice_abi::types::GrantRef(1), 0, 7);
    slot.sector_number = u64::MAX - 8;
    assert!(decode_request(&slot, &limits).is_ok());
    slot.sector_number = u64::MAX - 7;
    assert_eq!(
        decode_request(&slot, &limits).unwrap_err().kind,
        BlkifRequestErrorKind::SectorOverflow
    );
    let discard = |sector: u64, n: u64, flag: u8| {
        slot_from(
            BlkifRequestDiscard {
                operation: BlkifOp::Discard.raw(),
                flag,
                sector_number: sector,
                nr_sectors: n,
                ..Default::default()
            }
            .as_bytes(),
        )
    };
    assert!(decode_request(&discard(u64::MAX - 5, 5, 0), &limits).is_ok());
    assert!(decode_request(&discard(u64::MAX - 5, 6, 0), &limits).is_err());
    assert_eq!(
        decode_request(&discard(0, 1, 2), &limits).unwrap_err().kind,
        BlkifRequestErrorKind::BadDiscardFlags(2)
    );
    assert_eq!(
        decode_request(&discard(0, 1, BLKIF_DISCARD_SECURE), &limits),
        Ok(BlkRequest::Discard {
            id: 0,
            handle: 0,
            sector_number: 0,
            nr_sectors: 1,
            secure: true
        })
    );
}

#[test]
fn indirect_refused_without_feature_and_reserved_op() {
    let r = BlkifRequestIndirect {
        operation: BlkifOp::Indirect.raw(),
        indirect_op: BlkifOp::Read.raw(),
        nr_segments: 1,
        id: 3,
        ..Default::default()
    };
    let e = decode_request(
        &slot_from(r.as_bytes()),
        &BlkifLimits {
            max_indirect_segments: 0,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, BlkifRequestErrorKind::IndirectNotSupported);
    assert_eq!(e.response().status, BlkifRsp::EOpNotSupp.raw());
    let reserved = BlkifRequest {
        operation: BlkifOp::Reserved1.raw(),
        id: 4,
        ..Default::default()
    };
    let e = decode_request(
        &reserved,
        &BlkifLimits {
            max_indirect_segments: 8,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, BlkifRequestErrorKind::ReservedOperation);
    assert_eq!(e.response().id, 4);
}
