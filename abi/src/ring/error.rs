//! [`RingError`]: why a ring operation failed, from a too-small or misaligned area to a
//! hostile peer's impossible producer index.

use crate::shared::SharedMemError;
use core::fmt;

/// Why a ring operation failed. The view's state is unchanged by a failed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The area cannot hold the header and one entry.
    AreaTooSmall { len: usize, needed: usize },
    /// The area holds more than `u32::MAX` entries.
    AreaTooLarge { len: usize },
    /// The area does not start on a 4-byte boundary (the indices are atomic `u32`s).
    Misaligned { addr: usize },
    /// The front has `size` requests outstanding: wait for responses.
    Full,
    /// The back tried to push a response with no consumed request left to answer.
    NoRequestToAnswer,
    /// The front's `req_prod` claims requests that cannot exist: more than the free
    /// slots ahead of our consumer, or behind it (`RING_REQUEST_PROD_OVERFLOW`).
    RequestOverflow {
        req_prod: u32,
        req_cons: u32,
        rsp_prod_pvt: u32,
        size: u32,
    },
    /// The back's `rsp_prod` claims responses to requests we never published, or moved
    /// behind our consumer (`RING_RESPONSE_PROD_OVERFLOW`, made exact).
    ResponseOverflow {
        rsp_prod: u32,
        rsp_cons: u32,
        req_prod: u32,
    },
    /// An access fell outside the shared area (cannot happen for a validated ring; kept
    /// as an error rather than a panic).
    Shared(SharedMemError),
}

impl From<SharedMemError> for RingError {
    fn from(e: SharedMemError) -> Self {
        Self::Shared(e)
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AreaTooSmall { len, needed } => write!(
                f,
                "ring area of {len} bytes is too small (needs at least {needed})"
            ),
            Self::AreaTooLarge { len } => {
                write!(f, "ring area of {len} bytes holds more than 2^32 entries")
            }
            Self::Misaligned { addr } => {
                write!(f, "ring area at {addr:#x} is not 4-byte aligned")
            }
            Self::Full => write!(f, "ring is full"),
            Self::NoRequestToAnswer => {
                write!(f, "no consumed request is waiting for a response")
            }
            Self::RequestOverflow {
                req_prod,
                req_cons,
                rsp_prod_pvt,
                size,
            } => write!(
                f,
                "peer's req_prod {req_prod} is impossible (req_cons {req_cons}, rsp_prod_pvt {rsp_prod_pvt}, ring size {size})"
            ),
            Self::ResponseOverflow {
                rsp_prod,
                rsp_cons,
                req_prod,
            } => write!(
                f,
                "peer's rsp_prod {rsp_prod} is impossible (rsp_cons {rsp_cons}, published req_prod {req_prod})"
            ),
            Self::Shared(e) => write!(f, "ring access: {e}"),
        }
    }
}

impl core::error::Error for RingError {}
