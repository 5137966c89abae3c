//! The xenstore wire protocol (`xen/io/xs_wire.h`, `docs/misc/xenstore.txt`) and the
//! xenstore ring page.
//!
//! A message is a 16-byte [`XsdSockmsg`] header followed by `len` payload bytes
//! (`len <= XENSTORE_PAYLOAD_MAX`), the payload being NUL-terminated strings except where
//! a value is raw bytes (the value of `XS_WRITE`, the reply to `XS_READ`). The same
//! framing runs over the shared ring of a [`XenstoreDomainInterface`] (guests) and over
//! xenstored's Unix socket (dom0 tools).
//!
//! * [`decode_frame`] splits one message off a byte buffer, borrowing its payload;
//!   [`XsReader`] does the same incrementally from chunks (ring reads), with a fixed
//!   buffer and no allocation. Both check the header's `len` limit as soon as the 16
//!   header bytes are there (an oversized `len` is fatal: the stream cannot be trusted).
//!   An unknown message type still frames, so a daemon can answer it (`ENOSYS`, see
//!   [`XsWireError::errno`]) and carry on, as xenstored does.
//! * [`Request::decode`] / [`Response::decode`] check a payload against its message type:
//!   NUL termination, field counts, path length limits and characters, numbers,
//!   permission strings, error names. Every violation is an [`XsWireError`]; nothing here
//!   panics on any input.
//! * [`MessageWriter`], [`Request::encode`] and [`Response::encode`] build messages into a
//!   caller buffer, enforcing the same limits.

mod error;
mod frame;
mod header;
mod path;
mod payload;
mod perm;
mod request;
mod response;
mod ring;
mod writer;

pub use self::error::XsWireError;
pub use self::frame::{check_header, decode_frame, Frame, RawMessage, XsReader};
pub use self::header::{
    XsErrno, XsMsgType, XsWatchField, XsdSockmsg, XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX,
    XENSTORE_REL_PATH_MAX, XSD_SOCKMSG_SIZE, XS_INVALID, XS_MESSAGE_MAX, XS_TYPE_COUNT,
    XS_WRITE_CREATE, XS_WRITE_CREATE_EXCL, XS_WRITE_NONE,
};
pub use self::path::{validate_path, PathError, PathKind};
pub use self::payload::StringList;
pub use self::perm::{XsPermAccess, XsPermission};
pub use self::request::Request;
pub use self::response::Response;
pub use self::ring::{
    mask_xenstore_idx, XenstoreConnection, XenstoreDomainInterface, XenstoreRingError,
    XenstoreRingIdx, XenstoreRingIndices, XenstoreServerFeatures, XENSTORE_RING_SIZE,
};
pub use self::writer::{encode_strings, MessageWriter};
