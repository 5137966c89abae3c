//! Validating guest requests: [`decode_request`] reads the variant a slot's `operation`
//! selects and checks it against the backend's [`BlkifLimits`], giving a [`BlkRequest`];
//! [`check_indirect_segments`] checks the segments read from indirect pages.

use zerocopy::{FromBytes, IntoBytes};

use super::{
    BlkifOp, BlkifRequest, BlkifRequestDiscard, BlkifRequestError, BlkifRequestErrorKind,
    BlkifRequestIndirect, BlkifRequestSegment, BLKIF_DISCARD_SECURE,
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_INDIRECT_SEGMENTS,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, SECTORS_PER_PAGE, SEGMENTS_PER_INDIRECT_PAGE,
};
use crate::types::GrantRef;

/// Backend limits a request is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkifLimits {
    /// The backend's `feature-max-indirect-segments` (0: indirect requests are not
    /// supported). At most [`BLKIF_MAX_INDIRECT_SEGMENTS`].
    pub max_indirect_segments: u16,
}

/// The direct segments of a validated request, stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    len: u8,
}

impl Segments {
    /// The segments (each one validated).
    pub fn as_slice(&self) -> &[BlkifRequestSegment] {
        &self.seg[..self.len as usize]
    }

    /// Total 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.as_slice().iter().map(|s| s.sectors()).sum()
    }
}

/// A request that passed [`decode_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkRequest {
    /// Read, write, barrier or flush with its direct segments.
    ReadWrite {
        /// `Read`, `Write`, `WriteBarrier` or `FlushDiskcache`.
        op: BlkifOp,
        /// Echo in the response.
        id: u64,
        /// Virtual device handle.
        handle: u16,
        /// First 512-byte sector.
        sector_number: u64,
        /// 1..=11 segments for read/write, 0..=11 for barrier/flush.
        segments: Segments,
    },
    /// Discard.
    Discard {
        /// Echo in the response.
        id: u64,
        /// Virtual device handle.
        handle: u16,
        /// First 512-byte sector.
        sector_number: u64,
        /// 512-byte sectors.
        nr_sectors: u64,
        /// `BLKIF_DISCARD_SECURE` was set.
        secure: bool,
    },
    /// Indirect read or write; the segments must be read from the indirect pages and
    /// checked with [`BlkifRequestSegment::validate`].
    Indirect {
        /// `Read` or `Write`.
        op: BlkifOp,
        /// Echo in the response.
        id: u64,
        /// Virtual device handle.
        handle: u16,
        /// First 512-byte sector.
        sector_number: u64,
        /// 1..=`max_indirect_segments`.
        nr_segments: u16,
        /// `indirect_grefs[..pages]`, pages = `ceil(nr_segments / 512)`.
        indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        /// Number of indirect pages used.
        pages: u8,
    },
}

impl BlkRequest {
    /// The request id.
    pub fn id(&self) -> u64 {
        match *self {
            BlkRequest::ReadWrite { id, .. }
            | BlkRequest::Discard { id, .. }
            | BlkRequest::Indirect { id, .. } => id,
        }
    }

    /// The grants of the indirect pages in use (empty for direct requests).
    pub fn indirect_grefs(&self) -> &[GrantRef] {
        match self {
            BlkRequest::Indirect {
                indirect_grefs,
                pages,
                ..
            } => &indirect_grefs[..*pages as usize],
            _ => &[],
        }
    }
}

/// Number of indirect pages `nr_segments` segments occupy.
pub const fn indirect_pages(nr_segments: u32) -> u32 {
    nr_segments.div_ceil(SEGMENTS_PER_INDIRECT_PAGE as u32)
}

/// Read the variant `operation` selects out of a ring slot and validate it: known
/// operation, segment count within the variant's limit (and `limits`), every direct
/// segment within its page, sector range not overflowing, discard flags, indirect
/// operation. Never panics; any failure carries the request's `id`.
pub fn decode_request(
    slot: &BlkifRequest,
    limits: &BlkifLimits,
) -> Result<BlkRequest, BlkifRequestError> {
    let bytes = slot.as_bytes();
    let err = |kind| BlkifRequestError {
        id: slot.id,
        operation: slot.operation,
        kind,
    };
    let op = BlkifOp::try_from(slot.operation)
        .map_err(|u| err(BlkifRequestErrorKind::UnknownOperation(u.value)))?;
    match op {
        BlkifOp::Reserved1 => Err(err(BlkifRequestErrorKind::ReservedOperation)),
        BlkifOp::Read | BlkifOp::Write | BlkifOp::WriteBarrier | BlkifOp::FlushDiskcache => {
            let nr = slot.nr_segments as usize;
            if nr > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(err(BlkifRequestErrorKind::TooManySegments {
                    nr: nr as u32,
                    max: BLKIF_MAX_SEGMENTS_PER_REQUEST as u32,
                }));
            }
            if nr == 0 && matches!(op, BlkifOp::Read | BlkifOp::Write) {
                return Err(err(BlkifRequestErrorKind::NoSegments));
            }
            let mut total: u64 = 0;
            for (i, s) in slot.seg[..nr].iter().enumerate() {
                s.validate().map_err(|error| {
                    err(BlkifRequestErrorKind::BadSegment {
                        index: i as u8,
                        error,
                    })
                })?;
                total += s.sectors();
            }
            if slot.sector_number.checked_add(total).is_none() {
                return Err(err(BlkifRequestErrorKind::SectorOverflow));
            }
            let mut seg = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            seg[..nr].copy_from_slice(&slot.seg[..nr]);
            Ok(BlkRequest::ReadWrite {
                op,
                id: slot.id,
                handle: slot.handle,
                sector_number: slot.sector_number,
                segments: Segments { seg, len: nr as u8 },
            })
        }
        BlkifOp::Discard => {
            // A slot is 112 bytes, every variant fits: the read cannot fail.
            let d = BlkifRequestDiscard::read_from_prefix(bytes)
                .map(|(d, _)| d)
                .unwrap_or_default();
            if d.flag & !BLKIF_DISCARD_SECURE != 0 {
                return Err(err(BlkifRequestErrorKind::BadDiscardFlags(d.flag)));
            }
            if d.sector_number.checked_add(d.nr_sectors).is_none() {
                return Err(err(BlkifRequestErrorKind::SectorOverflow));
            }
            Ok(BlkRequest::Discard {
                id: d.id,
                handle: d.handle,
                sector_number: d.sector_number,
                nr_sectors: d.nr_sectors,
                secure: d.flag & BLKIF_DISCARD_SECURE != 0,
            })
        }
        BlkifOp::Indirect => {
            let r = BlkifRequestIndirect::read_from_prefix(bytes)
                .map(|(r, _)| r)
                .unwrap_or_default();
            if limits.max_indirect_segments == 0 {
                return Err(err(BlkifRequestErrorKind::IndirectNotSupported));
            }
            let inner = match BlkifOp::try_from(r.indirect_op) {
                Ok(o @ (BlkifOp::Read | BlkifOp::Write)) => o,
                _ => {
                    return Err(err(BlkifRequestErrorKind::BadIndirectOperation(
                        r.indirect_op,
                    )))
                }
            };
            let max = (limits.max_indirect_segments as usize).min(BLKIF_MAX_INDIRECT_SEGMENTS);
            if r.nr_segments == 0 {
                return Err(err(BlkifRequestErrorKind::NoSegments));
            }
            if r.nr_segments as usize > max {
                return Err(err(BlkifRequestErrorKind::TooManySegments {
                    nr: r.nr_segments as u32,
                    max: max as u32,
                }));
            }
            // Each segment covers at most 8 sectors.
            let max_sectors = r.nr_segments as u64 * SECTORS_PER_PAGE as u64;
            if r.sector_number.checked_add(max_sectors).is_none() {
                return Err(err(BlkifRequestErrorKind::SectorOverflow));
            }
            Ok(BlkRequest::Indirect {
                op: inner,
                id: r.id,
                handle: r.handle,
                sector_number: r.sector_number,
                nr_segments: r.nr_segments,
                indirect_grefs: r.indirect_grefs,
                pages: indirect_pages(r.nr_segments as u32) as u8,
            })
        }
    }
}

/// Check the segments read from a request's indirect pages (segment `i` is entry
/// `i % 512` of page `i / 512`): every one within its page, the whole range not past
/// sector `u64::MAX`. Returns the total 512-byte sectors. `request` is the decoded
/// [`BlkRequest::Indirect`] the segments belong to; `segments` must be exactly its
/// `nr_segments` entries.
pub fn check_indirect_segments(
    request: &BlkRequest,
    segments: &[BlkifRequestSegment],
) -> Result<u64, BlkifRequestError> {
    let (id, sector_number, nr) = match *request {
        BlkRequest::Indirect {
            id,
            sector_number,
            nr_segments,
            ..
        } => (id, sector_number, nr_segments as usize),
        BlkRequest::ReadWrite { id, .. } | BlkRequest::Discard { id, .. } => (id, 0, 0),
    };
    let err = |kind| BlkifRequestError {
        id,
        operation: BlkifOp::Indirect.raw(),
        kind,
    };
    if segments.len() != nr {
        return Err(err(BlkifRequestErrorKind::TooManySegments {
            nr: segments.len() as u32,
            max: nr as u32,
        }));
    }
    let mut total: u64 = 0;
    for (i, s) in segments.iter().enumerate() {
        s.validate().map_err(|error| {
            err(BlkifRequestErrorKind::BadSegment {
                // Indirect requests have up to 4096 segments; the index saturates.
                index: i.min(u8::MAX as usize) as u8,
                error,
            })
        })?;
        total += s.sectors();
    }
    if sector_number.checked_add(total).is_none() {
        return Err(err(BlkifRequestErrorKind::SectorOverflow));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blkif::{BlkifRsp, GrantRef};

    const LIMITS: BlkifLimits = BlkifLimits {
        max_indirect_segments: 256,
    };

    fn rw(op: BlkifOp, segs: &[BlkifRequestSegment]) -> BlkifRequest {
        let mut r = BlkifRequest {
            operation: op.raw(),
            nr_segments: segs.len() as u8,
            id: 0xabc,
            sector_number: 8,
            ..Default::default()
        };
        r.seg[..segs.len()].copy_from_slice(segs);
        r
    }

    #[test]
    fn valid_write() {
        let r = rw(
            BlkifOp::Write,
            &[BlkifRequestSegment::new(GrantRef(5), 0, 7)],
        );
        match decode_request(&r, &LIMITS).unwrap() {
            BlkRequest::ReadWrite { op, segments, .. } => {
                assert_eq!(op, BlkifOp::Write);
                assert_eq!(segments.sectors(), 8);
                assert_eq!(segments.as_slice()[0].byte_len(), 4096);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn segment_outside_page() {
        let r = rw(
            BlkifOp::Read,
            &[BlkifRequestSegment::new(GrantRef(5), 0, 8)],
        );
        let e = decode_request(&r, &LIMITS).unwrap_err();
        assert_eq!(e.id, 0xabc);
        assert!(matches!(
            e.kind,
            BlkifRequestErrorKind::BadSegment { index: 0, .. }
        ));
        assert_eq!(e.response().status, BlkifRsp::Error.raw());
        let r = rw(
            BlkifOp::Read,
            &[BlkifRequestSegment::new(GrantRef(5), 3, 2)],
        );
        assert!(decode_request(&r, &LIMITS).is_err());
    }

    #[test]
    fn discard_variant() {
        let d = BlkifRequestDiscard {
            operation: BlkifOp::Discard.raw(),
            flag: BLKIF_DISCARD_SECURE,
            id: 9,
            sector_number: 100,
            nr_sectors: 50,
            ..Default::default()
        };
        let mut slot = BlkifRequest::default();
        slot.as_mut_bytes()[..32].copy_from_slice(d.as_bytes());
        assert_eq!(
            decode_request(&slot, &LIMITS),
            Ok(BlkRequest::Discard {
                id: 9,
                handle: 0,
                sector_number: 100,
                nr_sectors: 50,
                secure: true
            })
        );
    }

    #[test]
    fn indirect_limits() {
        let mut ind = BlkifRequestIndirect {
            operation: BlkifOp::Indirect.raw(),
            indirect_op: BlkifOp::Write.raw(),
            nr_segments: 513,
            id: 1,
            ..Default::default()
        };
        let big = BlkifLimits {
            max_indirect_segments: 4096,
        };
        let mut slot = BlkifRequest::default();
        slot.as_mut_bytes()[..64].copy_from_slice(ind.as_bytes());
        let req = decode_request(&slot, &big).unwrap();
        assert_eq!(req.indirect_grefs().len(), 2);
        assert!(matches!(
            decode_request(&slot, &LIMITS).unwrap_err().kind,
            BlkifRequestErrorKind::TooManySegments { nr: 513, max: 256 }
        ));
        ind.indirect_op = BlkifOp::Discard.raw();
        slot.as_mut_bytes()[..64].copy_from_slice(ind.as_bytes());
        assert!(matches!(
            decode_request(&slot, &big).unwrap_err().kind,
            BlkifRequestErrorKind::BadIndirectOperation(5)
        ));
    }

    #[test]
    fn indirect_segments_checked() {
        let ind = BlkifRequestIndirect {
            operation: BlkifOp::Indirect.raw(),
            indirect_op: BlkifOp::Read.raw(),
            nr_segments: 2,
            id: 5,
            sector_number: u64::MAX - 16,
            ..Default::default()
        };
        let mut slot = BlkifRequest::default();
        slot.as_mut_bytes()[..64].copy_from_slice(ind.as_bytes());
        let req = decode_request(&slot, &LIMITS).unwrap();
        let good = [BlkifRequestSegment::new(GrantRef(1), 0, 7); 2];
        assert_eq!(check_indirect_segments(&req, &good), Ok(16));
        let bad = [good[0], BlkifRequestSegment::new(GrantRef(1), 0, 9)];
        let e = check_indirect_segments(&req, &bad).unwrap_err();
        assert_eq!(e.id, 5);
        assert!(matches!(
            e.kind,
            BlkifRequestErrorKind::BadSegment { index: 1, .. }
        ));
        assert!(check_indirect_segments(&req, &good[..1]).is_err());
        let over = [good[0], good[0], good[0]];
        assert!(check_indirect_segments(&req, &over).is_err());
    }

    #[test]
    fn unknown_op_is_eopnotsupp() {
        let mut r = rw(BlkifOp::Read, &[]);
        r.operation = 42;
        let e = decode_request(&r, &LIMITS).unwrap_err();
        assert_eq!(e.response().status, BlkifRsp::EOpNotSupp.raw());
        assert_eq!(e.response().id, 0xabc);
    }
}
