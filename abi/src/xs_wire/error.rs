//! [`XsWireError`]: every way a message can be malformed, and the errno a daemon
//! answers it with.

use super::*;
use core::fmt;

use crate::enums::UnknownValue;

/// Every way a message can be malformed, on decode or encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsWireError {
    /// The header's `len` exceeds [`XENSTORE_PAYLOAD_MAX`].
    PayloadTooLarge {
        /// The payload length claimed or attempted.
        len: usize,
    },
    /// The header's type is not an [`XsMsgType`].
    UnknownType(UnknownValue<u32>),
    /// A string argument is not NUL-terminated.
    MissingNul {
        /// Which argument.
        field: &'static str,
    },
    /// A required argument is absent.
    MissingField {
        /// Which argument.
        field: &'static str,
    },
    /// Bytes follow the last argument this message type has.
    TrailingData {
        /// The message type.
        msg_type: XsMsgType,
    },
    /// A path argument is invalid.
    Path(PathError),
    /// A numeric argument is not a decimal number in range.
    BadNumber {
        /// Which argument.
        field: &'static str,
    },
    /// `XS_TRANSACTION_END` argument other than `T` / `F`, or a reply to
    /// `XS_IS_DOMAIN_INTRODUCED` other than `T` / `F`.
    BadBool,
    /// A permission string is not `[nrwb]<domid>`.
    BadPermission,
    /// An `XS_ERROR` payload names no error in the table.
    UnknownErrorName,
    /// A reply that should be `OK` is something else.
    ExpectedOk,
    /// A type that only the daemon sends (`XS_ERROR`, `XS_WATCH_EVENT`) sent as a request.
    NotARequest(XsMsgType),
    /// A string argument given to an encoder contains a NUL byte.
    FieldContainsNul,
    /// The output buffer cannot hold the message.
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for XsWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsWireError::PayloadTooLarge { len } => {
                write!(f, "payload of {len} bytes exceeds {XENSTORE_PAYLOAD_MAX}")
            }
            XsWireError::UnknownType(u) => u.fmt(f),
            XsWireError::MissingNul { field } => write!(f, "{field} is not NUL-terminated"),
            XsWireError::MissingField { field } => write!(f, "missing {field}"),
            XsWireError::TrailingData { msg_type } => {
                write!(
                    f,
                    "trailing bytes after the arguments of {}",
                    msg_type.c_name()
                )
            }
            XsWireError::Path(p) => p.fmt(f),
            XsWireError::BadNumber { field } => write!(f, "{field} is not a valid number"),
            XsWireError::BadBool => f.write_str("expected T or F"),
            XsWireError::BadPermission => f.write_str("invalid permission string"),
            XsWireError::UnknownErrorName => f.write_str("unknown error name"),
            XsWireError::ExpectedOk => f.write_str("expected OK reply"),
            XsWireError::NotARequest(t) => write!(f, "{} is not a request", t.c_name()),
            XsWireError::FieldContainsNul => f.write_str("argument contains a NUL byte"),
            XsWireError::BufferTooSmall { needed, available } => {
                write!(f, "message needs {needed} bytes, buffer has {available}")
            }
        }
    }
}

impl core::error::Error for XsWireError {}

impl XsWireError {
    /// Whether the byte stream can no longer be trusted (a header's length is over the
    /// limit): the daemon drops such a connection instead of answering.
    pub fn is_fatal(&self) -> bool {
        matches!(self, XsWireError::PayloadTooLarge { .. })
    }

    /// The error a daemon answers a malformed request with: `ENOSYS` for an unknown
    /// type (as xenstored does), `EINVAL` otherwise.
    pub fn errno(&self) -> XsErrno {
        match self {
            XsWireError::UnknownType(_) => XsErrno::Enosys,
            XsWireError::PayloadTooLarge { .. } => XsErrno::E2big,
            _ => XsErrno::Einval,
        }
    }
}

impl From<PathError> for XsWireError {
    fn from(e: PathError) -> Self {
        XsWireError::Path(e)
    }
}
