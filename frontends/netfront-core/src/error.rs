//! Why negotiation, a transmit or the backend failed.

use core::fmt;
use sluice_abi::ring::RingError;
use sluice_front_seams::SeamError;

/// Setting up or connecting the device failed; the device is failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NegotiationError {
    /// The nodename does not end in a device number (`device/vif/<n>`).
    BadNodename,
    /// A xenstore node holds something that is not what the protocol says.
    BadNode {
        /// The node's path.
        path: alloc::string::String,
        /// What it held (cut to 32 bytes).
        value: alloc::string::String,
    },
    /// A node the protocol requires is missing.
    MissingNode(alloc::string::String),
    /// The backend does not offer `feature-rx-copy` (the only receive mode, as in Linux).
    NoRxCopy,
    /// A ring could not be set up.
    Ring(RingError),
    /// The kernel refused memory, a grant, an event channel or a xenstore write.
    Platform(SeamError),
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::BadNodename => f.write_str("nodename has no device number"),
            NegotiationError::BadNode { path, value } => write!(f, "bad value {value:?} in {path}"),
            NegotiationError::MissingNode(p) => write!(f, "missing {p}"),
            NegotiationError::NoRxCopy => f.write_str("backend does not offer feature-rx-copy"),
            NegotiationError::Ring(e) => write!(f, "ring: {e}"),
            NegotiationError::Platform(e) => write!(f, "{e}"),
        }
    }
}

/// The backend broke the protocol; the device is failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// Impossible ring indices (more responses than requests, or a bad header).
    Ring {
        /// Queue.
        queue: usize,
        /// The ring's complaint.
        error: RingError,
    },
    /// A TX response with an id outside the ring.
    TxIdOutOfRange {
        /// Queue.
        queue: usize,
        /// The id.
        id: u16,
    },
    /// A TX response for an id with nothing in flight (never sent or answered twice).
    TxIdNotInFlight {
        /// Queue.
        queue: usize,
        /// The id.
        id: u16,
    },
    /// An RX response whose id is not the one of the request in its ring slot.
    RxIdMismatch {
        /// Queue.
        queue: usize,
        /// The id answered.
        id: u16,
        /// The id posted in that slot.
        expected: u16,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Ring { queue, error } => write!(f, "queue {queue}: ring: {error}"),
            ProtocolError::TxIdOutOfRange { queue, id } => {
                write!(f, "queue {queue}: tx response id {id} out of range")
            }
            ProtocolError::TxIdNotInFlight { queue, id } => {
                write!(
                    f,
                    "queue {queue}: tx response id {id} has nothing in flight"
                )
            }
            ProtocolError::RxIdMismatch {
                queue,
                id,
                expected,
            } => write!(
                f,
                "queue {queue}: rx response id {id} where {expected} was posted"
            ),
        }
    }
}

/// Why a packet was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Not connected (or failed): drop the packet.
    NotConnected,
    /// No such queue.
    BadQueue(usize),
    /// Not enough free ring slots: stop the queue until completions free some.
    Busy,
    /// Longer than a packet can be (65535 bytes, or one page without `feature-sg`), or
    /// shorter than an Ethernet header: drop it.
    BadLength(usize),
    /// GSO the backend did not offer, or a segment size of 0: drop it.
    BadGso,
    /// Copying into the granted pages failed (never cut short): drop it.
    Copy(SeamError),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::NotConnected => f.write_str("not connected"),
            TxError::BadQueue(q) => write!(f, "no queue {q}"),
            TxError::Busy => f.write_str("tx ring full"),
            TxError::BadLength(n) => write!(f, "packet of {n} bytes"),
            TxError::BadGso => f.write_str("segmentation offload not offered"),
            TxError::Copy(e) => write!(f, "copy: {e}"),
        }
    }
}
