//! Typed errors of the block-frontend core.

use crate::platform::SeamError;
use alloc::string::String;
use core::fmt;
use sluice_abi::ring::RingError;

/// Connecting to the backend failed; the device is failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NegotiationError {
    /// A node the protocol requires is absent.
    MissingNode {
        /// The key in the backend directory.
        key: &'static str,
    },
    /// A node holds no valid value.
    BadNode {
        /// The key.
        key: &'static str,
        /// What it held (cut to 32 bytes).
        value: String,
    },
    /// The frontend's node name does not end in a device number.
    BadNodename,
    /// The ring cannot be laid out in the pages (cannot happen for 1..=16 pages).
    Ring(RingError),
    /// The platform failed (memory, grants, event channels, xenstore).
    Platform(SeamError),
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::MissingNode { key } => write!(f, "backend node '{key}' is missing"),
            NegotiationError::BadNode { key, value } => {
                write!(f, "backend node '{key}' holds an invalid value '{value}'")
            }
            NegotiationError::BadNodename => f.write_str("frontend node name has no device number"),
            NegotiationError::Ring(e) => write!(f, "ring setup: {e}"),
            NegotiationError::Platform(e) => write!(f, "{e}"),
        }
    }
}

/// The backend broke the ring protocol; the device is failed and every outstanding I/O
/// completed with [`IoError::DeviceFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A response id that names no ring slot.
    ResponseIdOutOfRange {
        /// Queue.
        queue: usize,
        /// The id.
        id: u64,
    },
    /// A response for a slot with no request in flight (never sent, or answered twice).
    ResponseForUnsentRequest {
        /// Queue.
        queue: usize,
        /// The id.
        id: u64,
    },
    /// A response whose operation is not the request's.
    OperationMismatch {
        /// Queue.
        queue: usize,
        /// The id.
        id: u64,
        /// The request's operation.
        sent: u8,
        /// The response's.
        answered: u8,
    },
    /// The backend's ring indices are impossible.
    Ring {
        /// Queue.
        queue: usize,
        /// What the ring saw.
        error: RingError,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::ResponseIdOutOfRange { queue, id } => {
                write!(f, "queue {queue}: response id {id:#x} is out of range")
            }
            ProtocolError::ResponseForUnsentRequest { queue, id } => {
                write!(
                    f,
                    "queue {queue}: response id {id:#x} answers no request in flight"
                )
            }
            ProtocolError::OperationMismatch {
                queue,
                id,
                sent,
                answered,
            } => write!(
                f,
                "queue {queue}: response id {id:#x} has operation {answered}, the request {sent}"
            ),
            ProtocolError::Ring { queue, error } => write!(f, "queue {queue}: {error}"),
        }
    }
}

/// Why an I/O was refused at submission (nothing was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The device failed (protocol error, vanished backend, or shut down).
    DeviceFailed,
    /// The queue's ring is full: retry after completions.
    RingFull,
    /// The I/O's pages would take its ring past its budget of pages in flight
    /// ([`Frontend::page_budget`](crate::Frontend::page_budget)): retry after
    /// completions. Nothing was granted, copied or sent.
    PageBudget {
        /// Pages the I/O needs (data + indirect).
        pages: usize,
        /// Pages the ring has in flight.
        in_flight: usize,
        /// The ring's budget.
        budget: usize,
    },
    /// No such queue.
    NoSuchQueue(usize),
    /// Out of memory or grants.
    NoResources(SeamError),
    /// A read or write with no segments, or more than the device takes.
    BadSegmentCount {
        /// Segments given.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// A segment's sectors do not lie within its page.
    BadSegment(usize),
    /// The I/O reaches past the end of the disk.
    OutOfRange,
    /// A write, flush or discard on a read-only disk.
    ReadOnly,
    /// The backend does not offer the operation (flush, discard, secure discard).
    Unsupported,
    /// Copying the data into a bounce page, or writing an indirect page, failed.
    Copy(SeamError),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SubmitError::DeviceFailed => f.write_str("device failed"),
            SubmitError::RingFull => f.write_str("ring full"),
            SubmitError::PageBudget {
                pages,
                in_flight,
                budget,
            } => write!(
                f,
                "{pages} pages would exceed the ring's budget ({in_flight} of {budget} in flight)"
            ),
            SubmitError::NoSuchQueue(q) => write!(f, "no queue {q}"),
            SubmitError::NoResources(e) => write!(f, "no resources: {e}"),
            SubmitError::BadSegmentCount { given, max } => {
                write!(f, "{given} segments (1..={max} allowed)")
            }
            SubmitError::BadSegment(i) => write!(f, "segment {i} is not within its page"),
            SubmitError::OutOfRange => f.write_str("I/O past the end of the disk"),
            SubmitError::ReadOnly => f.write_str("disk is read-only"),
            SubmitError::Unsupported => f.write_str("operation not offered by the backend"),
            SubmitError::Copy(e) => write!(f, "copying the data failed: {e}"),
        }
    }
}

/// How a sent I/O ended, when not successfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The backend answered `BLKIF_RSP_ERROR` (or an unknown status).
    Backend(i16),
    /// The backend answered `BLKIF_RSP_EOPNOTSUPP`; the feature is now off.
    NotSupported,
    /// The device failed with the I/O outstanding (protocol error, vanished backend,
    /// shutdown); its outcome on the disk is unknown.
    DeviceFailed,
    /// The backend answered OK but the read data could not be copied out.
    Copy(SeamError),
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IoError::Backend(s) => write!(f, "backend I/O error (status {s})"),
            IoError::NotSupported => f.write_str("operation not supported by the backend"),
            IoError::DeviceFailed => f.write_str("device failed"),
            IoError::Copy(e) => write!(f, "copying the read data failed: {e}"),
        }
    }
}

impl core::error::Error for NegotiationError {}
impl core::error::Error for ProtocolError {}
impl core::error::Error for SubmitError {}
impl core::error::Error for IoError {}
