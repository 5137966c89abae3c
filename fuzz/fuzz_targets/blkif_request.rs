//! blkif requests as `sluice-blkback` sees them: one ring slot (112 bytes) copied out of
//! the shared ring and decoded with the backend's limits, then, for an indirect
//! request, the segments of its indirect pages (more hostile bytes), each validated.
//!
//! Checks: nothing panics; a decoded request keeps the variant's rules (read/write 1-11
//! direct segments, barrier/flush 0-11, every direct segment within its page, the
//! sector range not overflowing, indirect 1..=limit segments in exactly the pages
//! they need, discard flags); a refused one carries the slot's id and operation and
//! answers ERROR or EOPNOTSUPP; decoding is a function of the copy (same answer twice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_abi::blkif::*;
use zerocopy::FromBytes;

fuzz_target!(|data: &[u8]| {
    let Some((limit, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Ok((slot, pages)) = BlkifRequest::read_from_prefix(rest) else {
        return;
    };
    let limits = BlkifLimits {
        max_indirect_segments: u16::from_le_bytes(*limit)
            % (BLKIF_MAX_INDIRECT_SEGMENTS as u16 + 1),
    };
    let decoded = decode_request(&slot, &limits);
    assert_eq!(decoded, decode_request(&slot, &limits));
    match decoded {
        Ok(BlkRequest::ReadWrite {
            op,
            id,
            sector_number,
            segments,
            ..
        }) => {
            assert_eq!(id, slot.id);
            let segs = segments.as_slice();
            assert!(segs.len() <= BLKIF_MAX_SEGMENTS_PER_REQUEST);
            match op {
                BlkifOp::Read | BlkifOp::Write => assert!(!segs.is_empty()),
                BlkifOp::WriteBarrier | BlkifOp::FlushDiskcache => {}
                other => panic!("read/write variant with {other:?}"),
            }
            for s in segs {
                assert!(s.validate().is_ok());
                assert!(s.byte_offset() + s.byte_len() <= PAGE_SIZE);
            }
            assert!(sector_number.checked_add(segments.sectors()).is_some());
        }
        Ok(BlkRequest::Indirect {
            op,
            id,
            nr_segments,
            pages: used,
            ..
        }) => {
            assert_eq!(id, slot.id);
            assert!(matches!(op, BlkifOp::Read | BlkifOp::Write));
            assert!(nr_segments >= 1 && nr_segments <= limits.max_indirect_segments);
            assert_eq!(u32::from(used), indirect_pages(nr_segments.into()));
            let req = decoded.unwrap();
            assert_eq!(req.indirect_grefs().len(), used as usize);
            // The indirect pages' segments, as the backend validates them.
            if let Ok((segs, _)) =
                <[BlkifRequestSegment]>::ref_from_prefix_with_elems(pages, nr_segments.into())
            {
                let mut bytes = 0usize;
                for s in segs {
                    if s.validate().is_ok() {
                        assert!(s.byte_offset() + s.byte_len() <= PAGE_SIZE);
                        bytes += s.byte_len();
                    }
                }
                assert!(bytes <= nr_segments as usize * PAGE_SIZE);
            }
        }
        Ok(BlkRequest::Discard { id, .. }) => assert_eq!(id, slot.id),
        Err(e) => {
            assert_eq!((e.id, e.operation), (slot.id, slot.operation));
            let rsp = e.response();
            assert_eq!(rsp.id, slot.id);
            assert!(
                rsp.status == BlkifRsp::Error as i16 || rsp.status == BlkifRsp::EOpNotSupp as i16
            );
        }
    }
});
