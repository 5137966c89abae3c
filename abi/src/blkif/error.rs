//! [`BlkifRequestError`]: why a guest's request was refused, carrying the `id` and
//! operation the backend still answers it with ([`BlkifRequestError::response`]).

use core::fmt;

use super::{BlkifResponse, BlkifRsp, SegmentError};

/// What was wrong with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkifRequestErrorKind {
    /// `operation` is no [`BlkifOp`](super::BlkifOp).
    UnknownOperation(u8),
    /// `BLKIF_OP_RESERVED_1`.
    ReservedOperation,
    /// A read or write without segments.
    NoSegments,
    /// More segments than the variant allows.
    TooManySegments {
        /// Segments claimed.
        nr: u32,
        /// The limit.
        max: u32,
    },
    /// Segment `index` does not lie within its page.
    BadSegment {
        /// Its index.
        index: u8,
        /// The range.
        error: SegmentError,
    },
    /// The request reads or writes past sector `u64::MAX`.
    SectorOverflow,
    /// An indirect request whose `indirect_op` is not read or write.
    BadIndirectOperation(u8),
    /// An indirect request, but the backend offers none.
    IndirectNotSupported,
    /// Discard `flag` bits other than `BLKIF_DISCARD_SECURE`.
    BadDiscardFlags(u8),
}

/// A request that failed [`decode_request`](super::decode_request), with what is needed to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkifRequestError {
    /// The request's id (read from the common header).
    pub id: u64,
    /// The request's raw operation.
    pub operation: u8,
    /// The problem.
    pub kind: BlkifRequestErrorKind,
}

impl BlkifRequestError {
    /// The response a backend should send: `EOPNOTSUPP` for operations it cannot
    /// perform, `ERROR` for malformed ones.
    pub fn response(&self) -> BlkifResponse {
        let status = match self.kind {
            BlkifRequestErrorKind::UnknownOperation(_)
            | BlkifRequestErrorKind::ReservedOperation
            | BlkifRequestErrorKind::IndirectNotSupported => BlkifRsp::EOpNotSupp,
            _ => BlkifRsp::Error,
        };
        BlkifResponse::new(self.id, self.operation, status)
    }
}

impl fmt::Display for BlkifRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blkif request id {:#x} op {}: ", self.id, self.operation)?;
        match self.kind {
            BlkifRequestErrorKind::UnknownOperation(op) => write!(f, "unknown operation {op}"),
            BlkifRequestErrorKind::ReservedOperation => f.write_str("reserved operation"),
            BlkifRequestErrorKind::NoSegments => f.write_str("no segments"),
            BlkifRequestErrorKind::TooManySegments { nr, max } => {
                write!(f, "{nr} segments, at most {max} allowed")
            }
            BlkifRequestErrorKind::BadSegment { index, error } => {
                write!(f, "segment {index}: {error}")
            }
            BlkifRequestErrorKind::SectorOverflow => f.write_str("sector range overflows"),
            BlkifRequestErrorKind::BadIndirectOperation(op) => {
                write!(f, "indirect operation {op} is not read or write")
            }
            BlkifRequestErrorKind::IndirectNotSupported => {
                f.write_str("indirect requests not supported")
            }
            BlkifRequestErrorKind::BadDiscardFlags(fl) => write!(f, "discard flags {fl:#x}"),
        }
    }
}

impl core::error::Error for BlkifRequestError {}
