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

use core::fmt;

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::{xen_enum, UnknownValue};
use crate::types::{RawDomId, RawEvtchnPort};

/// Most payload bytes a message may carry (`XENSTORE_PAYLOAD_MAX`).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path, in bytes without the NUL (`XENSTORE_ABS_PATH_MAX`).
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest relative path, in bytes without the NUL (`XENSTORE_REL_PATH_MAX`).
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// Size of the header in front of every payload.
pub const XSD_SOCKMSG_SIZE: usize = core::mem::size_of::<XsdSockmsg>();
/// Largest whole message: header plus maximum payload.
pub const XS_MESSAGE_MAX: usize = XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX;
/// A type number guaranteed never to be valid (`XS_INVALID`).
pub const XS_INVALID: u32 = 0xffff;
/// Number of type numbers (`XS_TYPE_COUNT`); 20 is unused (was `XS_RESTRICT`).
pub const XS_TYPE_COUNT: u32 = 23;

/// Bytes in each direction of the ring page (`XENSTORE_RING_SIZE`).
pub const XENSTORE_RING_SIZE: usize = 1024;

/// Legacy `XS_WRITE` flags (`XS_WRITE_NONE`, ...), kept for old tools.
pub const XS_WRITE_NONE: &str = "NONE";
/// See [`XS_WRITE_NONE`] (`XS_WRITE_CREATE`).
pub const XS_WRITE_CREATE: &str = "CREATE";
/// See [`XS_WRITE_NONE`] (`XS_WRITE_CREATE_EXCL`).
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

xen_enum! {
    /// Message types (`enum xsd_sockmsg_type`).
    pub enum XsMsgType: u32 as "xenstore message type" {
        /// Daemon control command (`XS_CONTROL`, formerly `XS_DEBUG`).
        Control = 0 => "XS_CONTROL",
        /// List a node's children.
        Directory = 1 => "XS_DIRECTORY",
        /// Read a node's value.
        Read = 2 => "XS_READ",
        /// Read a node's permissions.
        GetPerms = 3 => "XS_GET_PERMS",
        /// Register a watch.
        Watch = 4 => "XS_WATCH",
        /// Remove a watch.
        Unwatch = 5 => "XS_UNWATCH",
        /// Start a transaction.
        TransactionStart = 6 => "XS_TRANSACTION_START",
        /// Commit or abort a transaction.
        TransactionEnd = 7 => "XS_TRANSACTION_END",
        /// Tell the daemon about a new domain's ring (privileged).
        Introduce = 8 => "XS_INTRODUCE",
        /// Forget a domain (privileged).
        Release = 9 => "XS_RELEASE",
        /// Ask for `/local/domain/<domid>`.
        GetDomainPath = 10 => "XS_GET_DOMAIN_PATH",
        /// Write a node's value.
        Write = 11 => "XS_WRITE",
        /// Create a node.
        Mkdir = 12 => "XS_MKDIR",
        /// Remove a node and its children.
        Rm = 13 => "XS_RM",
        /// Set a node's permissions.
        SetPerms = 14 => "XS_SET_PERMS",
        /// Asynchronous watch notification (daemon to client only).
        WatchEvent = 15 => "XS_WATCH_EVENT",
        /// Error reply (daemon to client only).
        Error = 16 => "XS_ERROR",
        /// Ask whether a domain is introduced.
        IsDomainIntroduced = 17 => "XS_IS_DOMAIN_INTRODUCED",
        /// Resume a domain after suspend (privileged).
        Resume = 18 => "XS_RESUME",
        /// Let one domain act on another's behalf (privileged).
        SetTarget = 19 => "XS_SET_TARGET",
        /// Drop all of the caller's watches and transactions.
        ResetWatches = 21 => "XS_RESET_WATCHES",
        /// List a node's children, one part at a time.
        DirectoryPart = 22 => "XS_DIRECTORY_PART",
    }
}

xen_enum! {
    /// Error replies: the errno values of the `xsd_errors` table, sent by name
    /// (`"EINVAL\0"`) as the payload of an `XS_ERROR` message.
    pub enum XsErrno: u32 as "xenstore errno" {
        /// Invalid argument.
        Einval = 22 => "EINVAL",
        /// Permission denied.
        Eacces = 13 => "EACCES",
        /// Node exists.
        Eexist = 17 => "EEXIST",
        /// Is a directory.
        Eisdir = 21 => "EISDIR",
        /// No such node.
        Enoent = 2 => "ENOENT",
        /// Out of memory.
        Enomem = 12 => "ENOMEM",
        /// Quota exceeded.
        Enospc = 28 => "ENOSPC",
        /// I/O error.
        Eio = 5 => "EIO",
        /// Directory not empty.
        Enotempty = 39 => "ENOTEMPTY",
        /// Not implemented.
        Enosys = 38 => "ENOSYS",
        /// Read-only.
        Erofs = 30 => "EROFS",
        /// Busy.
        Ebusy = 16 => "EBUSY",
        /// Try again (transaction conflict).
        Eagain = 11 => "EAGAIN",
        /// Already connected.
        Eisconn = 106 => "EISCONN",
        /// Too big (quota or size limit).
        E2big = 7 => "E2BIG",
        /// Operation not permitted.
        Eperm = 1 => "EPERM",
    }
}

impl XsErrno {
    /// The error's name as sent on the wire (`"EINVAL"`); also its C errno macro name.
    pub const fn name(self) -> &'static str {
        self.c_name()
    }

    /// The error named `name` (without NUL), if the table has it.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        XsErrno::ALL
            .iter()
            .copied()
            .find(|e| e.name().as_bytes() == name)
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

xen_enum! {
    /// Index of the fields of an `XS_WATCH_EVENT` payload (`enum xs_watch_type`).
    pub enum XsWatchField: u32 as "watch event field" {
        /// The path that changed.
        Path = 0 => "XS_WATCH_PATH",
        /// The token given when the watch was registered.
        Token = 1 => "XS_WATCH_TOKEN",
    }
}

/// The message header (`struct xsd_sockmsg`), in host byte order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XsdSockmsg {
    /// [`XsMsgType`] (`type` in C).
    pub msg_type: u32,
    /// Chosen by the client, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 for none.
    pub tx_id: u32,
    /// Payload bytes that follow.
    pub len: u32,
}

/// A ring index of the xenstore page (`XENSTORE_RING_IDX`): free-running, masked with
/// [`mask_xenstore_idx`] to address the ring.
pub type XenstoreRingIdx = u32;

/// `MASK_XENSTORE_IDX`: the byte of a 1024-byte ring that free-running index `idx` names.
pub const fn mask_xenstore_idx(idx: XenstoreRingIdx) -> usize {
    (idx as usize) & (XENSTORE_RING_SIZE - 1)
}

/// Validated (`cons`, `prod`) indices of one direction of the xenstore ring: the same
/// free-running byte-ring arithmetic as the console page, with
/// [`XENSTORE_RING_SIZE`] as the size (`RingIndices::check(cons, prod,
/// XENSTORE_RING_SIZE)` refuses indices claiming more than 1024 unread bytes).
pub type XenstoreRingIndices = crate::console::RingIndices;

/// The xenstore ring page shared between a guest and xenstored
/// (`struct xenstore_domain_interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to the daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Daemon's consumer index into `req`.
    pub req_cons: XenstoreRingIdx,
    /// Guest's producer index into `req`.
    pub req_prod: XenstoreRingIdx,
    /// Guest's consumer index into `rsp`.
    pub rsp_cons: XenstoreRingIdx,
    /// Daemon's producer index into `rsp`.
    pub rsp_prod: XenstoreRingIdx,
    /// [`XenstoreServerFeatures`] the daemon offers.
    pub server_features: u32,
    /// [`XenstoreConnection`].
    pub connection: u32,
    /// [`XenstoreRingError`].
    pub error: u32,
}

bitflags! {
    /// `server_features` bits (`XENSTORE_SERVER_FEATURE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct XenstoreServerFeatures: u32 {
        /// The ring can be reset through `connection` (`..._RECONNECTION`).
        const RECONNECTION = 1;
        /// The `error` field is present (`..._ERROR`).
        const ERROR = 2;
    }
}

xen_enum! {
    /// Values of the ring page's `connection` field (`XENSTORE_CONNECTED`, ...).
    pub enum XenstoreConnection: u32 as "xenstore connection state" {
        /// Steady state.
        Connected = 0 => "XENSTORE_CONNECTED",
        /// The guest asked for a reconnect; the daemon resets the ring and sets Connected.
        Reconnect = 1 => "XENSTORE_RECONNECT",
    }
}

xen_enum! {
    /// Values of the ring page's `error` field (`XENSTORE_ERROR_*`).
    pub enum XenstoreRingError: u32 as "xenstore ring error" {
        /// No error.
        None = 0 => "XENSTORE_ERROR_NONE",
        /// Communication problem.
        Comm = 1 => "XENSTORE_ERROR_COMM",
        /// Invalid ring index.
        RingIdx = 2 => "XENSTORE_ERROR_RINGIDX",
        /// Protocol violation (payload too long).
        Proto = 3 => "XENSTORE_ERROR_PROTO",
    }
}

/// What was wrong with a xenstore path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The empty string.
    Empty,
    /// Longer than [`XENSTORE_ABS_PATH_MAX`] (absolute) or [`XENSTORE_REL_PATH_MAX`]
    /// (relative) bytes.
    TooLong {
        /// Bytes in the path.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
    /// A byte other than `A-Z a-z 0-9 - / _ @` at byte offset `at`.
    InvalidChar {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// Contains `//`.
    DoubleSlash,
    /// Ends in `/` (only `/` itself may).
    TrailingSlash,
    /// A special `@...` watch path where only node paths are allowed.
    SpecialNotAllowed,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => f.write_str("empty path"),
            PathError::TooLong { len, max } => write!(f, "path of {len} bytes exceeds {max}"),
            PathError::InvalidChar { byte, at } => {
                write!(f, "invalid byte {byte:#04x} in path at offset {at}")
            }
            PathError::DoubleSlash => f.write_str("path contains //"),
            PathError::TrailingSlash => f.write_str("path ends in /"),
            PathError::SpecialNotAllowed => f.write_str("special @ path not allowed here"),
        }
    }
}

/// The kind of a valid path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Starts with `/`.
    Absolute,
    /// Relative to the connection's home `/local/domain/<domid>`.
    Relative,
    /// A special watch path such as `@introduceDomain` / `@releaseDomain`.
    Special,
}

/// Check a path (without its NUL): length limit for its kind (absolute
/// [`XENSTORE_ABS_PATH_MAX`]; relative, and the part of an absolute path below
/// `/local/domain/<domid>/`, [`XENSTORE_REL_PATH_MAX`]), allowed characters, no `//`,
/// no trailing `/`. `allow_special` admits `@...` watch paths.
pub fn validate_path(path: &[u8], allow_special: bool) -> Result<PathKind, PathError> {
    let kind = match path.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => PathKind::Absolute,
        Some(b'@') => PathKind::Special,
        Some(_) => PathKind::Relative,
    };
    if kind == PathKind::Special && !allow_special {
        return Err(PathError::SpecialNotAllowed);
    }
    let max = match kind {
        PathKind::Relative => XENSTORE_REL_PATH_MAX,
        PathKind::Absolute | PathKind::Special => XENSTORE_ABS_PATH_MAX,
    };
    if path.len() > max {
        return Err(PathError::TooLong {
            len: path.len(),
            max,
        });
    }
    // Under a domain's home the part below `/local/domain/<domid>/` is a relative path
    // and has the relative limit too (as xenstored checks it).
    if kind == PathKind::Absolute {
        let below_home = path
            .strip_prefix(b"/local/domain/")
            .and_then(|rest| {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                (1..=5).contains(&digits).then(|| &rest[digits..])
            })
            .and_then(|rest| rest.strip_prefix(b"/"));
        if let Some(rel) = below_home {
            if rel.len() > XENSTORE_REL_PATH_MAX {
                return Err(PathError::TooLong {
                    len: rel.len(),
                    max: XENSTORE_REL_PATH_MAX,
                });
            }
        }
    }
    if let Some(at) = path
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@')))
    {
        return Err(PathError::InvalidChar { byte: path[at], at });
    }
    if path.windows(2).any(|w| w == b"//") {
        return Err(PathError::DoubleSlash);
    }
    if path.len() > 1 && path.ends_with(b"/") {
        return Err(PathError::TrailingSlash);
    }
    Ok(kind)
}

/// A permission letter (`n`, `r`, `w`, `b`) of a xenstore permission string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsPermAccess {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl XsPermAccess {
    /// The letter on the wire.
    pub const fn as_char(self) -> u8 {
        match self {
            XsPermAccess::None => b'n',
            XsPermAccess::Read => b'r',
            XsPermAccess::Write => b'w',
            XsPermAccess::Both => b'b',
        }
    }

    /// The access a letter names.
    pub const fn from_char(c: u8) -> Option<Self> {
        match c {
            b'n' => Some(XsPermAccess::None),
            b'r' => Some(XsPermAccess::Read),
            b'w' => Some(XsPermAccess::Write),
            b'b' => Some(XsPermAccess::Both),
            _ => None,
        }
    }
}

/// One permission of a node: access letter and domain (`"r5"`). The first permission
/// of a node names its owner, and its letter is the access of every domain not listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsPermission {
    /// What `domid` may do.
    pub access: XsPermAccess,
    /// The domain.
    pub domid: RawDomId,
}

impl XsPermission {
    /// Parse `"r5"` (without NUL).
    pub fn parse(s: &[u8]) -> Result<Self, XsWireError> {
        let (&c, digits) = s.split_first().ok_or(XsWireError::BadPermission)?;
        let access = XsPermAccess::from_char(c).ok_or(XsWireError::BadPermission)?;
        let domid = parse_decimal(digits, u16::MAX as u64).ok_or(XsWireError::BadPermission)?;
        Ok(XsPermission {
            access,
            domid: domid as RawDomId,
        })
    }

    /// Format into `buf` (at least 6 bytes), returning the bytes written (no NUL).
    pub fn format<'b>(&self, buf: &'b mut [u8; 6]) -> &'b [u8] {
        buf[0] = self.access.as_char();
        let mut digits = [0u8; 20];
        let d = format_decimal(self.domid as u64, &mut digits);
        buf[1..1 + d.len()].copy_from_slice(d);
        &buf[..1 + d.len()]
    }
}

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

/// One framed message, payload borrowed from the input.
///
/// The type is kept raw: a message of a type this side does not know is still a
/// well-framed message (xenstored answers it with `ENOSYS` and carries on), so framing
/// accepts it and [`RawMessage::msg_type`] / the decoders report
/// [`XsWireError::UnknownType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMessage<'a> {
    /// The message type as sent ([`XsMsgType`] if known).
    pub raw_type: u32,
    /// Request id.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// The payload, at most [`XENSTORE_PAYLOAD_MAX`] bytes.
    pub payload: &'a [u8],
}

impl RawMessage<'_> {
    /// The typed message type.
    pub fn msg_type(&self) -> Result<XsMsgType, XsWireError> {
        XsMsgType::try_from(self.raw_type).map_err(XsWireError::UnknownType)
    }
}

/// The result of [`decode_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message, and the bytes of input it used.
    Complete(RawMessage<'a>, usize),
    /// The input is a valid prefix; this many bytes in total are needed.
    Incomplete {
        /// Total bytes (from the start of the input) needed for the next step.
        needed: usize,
    },
}

/// Check a header: payload within the limit. (The type is checked by the decoders, so
/// that an unknown type can be answered without losing the stream.)
pub fn check_header(h: &XsdSockmsg) -> Result<(), XsWireError> {
    if h.len as usize > XENSTORE_PAYLOAD_MAX {
        return Err(XsWireError::PayloadTooLarge {
            len: h.len as usize,
        });
    }
    Ok(())
}

/// Split the first message off `input`. The header's `len` is checked as soon as its 16
/// bytes are present, so an oversized `len` is refused before any payload arrives.
pub fn decode_frame(input: &[u8]) -> Result<Frame<'_>, XsWireError> {
    let Ok((header, rest)) = XsdSockmsg::read_from_prefix(input) else {
        return Ok(Frame::Incomplete {
            needed: XSD_SOCKMSG_SIZE,
        });
    };
    check_header(&header)?;
    let len = header.len as usize;
    let Some(payload) = rest.get(..len) else {
        return Ok(Frame::Incomplete {
            needed: XSD_SOCKMSG_SIZE + len,
        });
    };
    Ok(Frame::Complete(
        RawMessage {
            raw_type: header.msg_type,
            req_id: header.req_id,
            tx_id: header.tx_id,
            payload,
        },
        XSD_SOCKMSG_SIZE + len,
    ))
}

/// Incremental decoder: feed it bytes in chunks of any size (e.g. whatever the ring
/// holds), take whole messages out. Holds at most one message in a fixed buffer.
///
/// After an error the stream cannot be re-synchronised (a bad header's `len` is not to
/// be trusted): the caller should drop the connection, or [`XsReader::reset`] after a
/// ring reset.
#[derive(Clone)]
pub struct XsReader {
    buf: [u8; XS_MESSAGE_MAX],
    filled: usize,
    delivered: bool,
}

impl Default for XsReader {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for XsReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XsReader")
            .field("filled", &self.filled)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl XsReader {
    /// An empty reader.
    pub const fn new() -> Self {
        XsReader {
            buf: [0; XS_MESSAGE_MAX],
            filled: 0,
            delivered: false,
        }
    }

    /// Forget any partial message.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.delivered = false;
    }

    /// Bytes of the current message buffered so far.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// Take bytes from `data`, never past the end of the current message. Returns how
    /// many were used; call again with the rest after taking the message out with
    /// [`XsReader::message`]. Returns 0 while a complete message is waiting.
    pub fn push(&mut self, data: &[u8]) -> Result<usize, XsWireError> {
        if self.delivered {
            self.reset();
        }
        let mut used = 0;
        loop {
            let needed = match decode_frame(&self.buf[..self.filled])? {
                Frame::Complete(..) => return Ok(used),
                Frame::Incomplete { needed } => needed,
            };
            let take = (needed - self.filled).min(data.len() - used);
            if take == 0 {
                return Ok(used);
            }
            self.buf[self.filled..self.filled + take].copy_from_slice(&data[used..used + take]);
            self.filled += take;
            used += take;
        }
    }

    /// The complete message, if one is buffered. The next [`XsReader::push`] discards it.
    pub fn message(&mut self) -> Option<RawMessage<'_>> {
        match decode_frame(&self.buf[..self.filled]) {
            Ok(Frame::Complete(m, _)) => {
                self.delivered = true;
                Some(m)
            }
            _ => None,
        }
    }
}

/// Parse an unsigned decimal number (no sign, no spaces, at least one digit) `<= max`.
fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    (v <= max).then_some(v)
}

/// Format `v` in decimal into `buf`, returning the digits.
fn format_decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Walks the NUL-terminated arguments of a payload.
struct Args<'a> {
    rest: &'a [u8],
    msg_type: XsMsgType,
}

impl<'a> Args<'a> {
    fn new(msg: &RawMessage<'a>, msg_type: XsMsgType) -> Self {
        Args {
            rest: msg.payload,
            msg_type,
        }
    }

    /// Next NUL-terminated string, without the NUL.
    fn string(&mut self, field: &'static str) -> Result<&'a [u8], XsWireError> {
        if self.rest.is_empty() {
            return Err(XsWireError::MissingField { field });
        }
        let nul = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(XsWireError::MissingNul { field })?;
        let s = &self.rest[..nul];
        self.rest = &self.rest[nul + 1..];
        Ok(s)
    }

    fn path(&mut self, field: &'static str, allow_special: bool) -> Result<&'a str, XsWireError> {
        let p = self.string(field)?;
        validate_path(p, allow_special)?;
        // Valid paths are ASCII.
        core::str::from_utf8(p).map_err(|_| XsWireError::BadNumber { field })
    }

    fn number(&mut self, field: &'static str, max: u64) -> Result<u64, XsWireError> {
        let s = self.string(field)?;
        parse_decimal(s, max).ok_or(XsWireError::BadNumber { field })
    }

    fn boolean(&mut self) -> Result<bool, XsWireError> {
        match self.string("T/F")? {
            b"T" => Ok(true),
            b"F" => Ok(false),
            _ => Err(XsWireError::BadBool),
        }
    }

    /// All remaining bytes (a raw value).
    fn remainder(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    fn end(self) -> Result<(), XsWireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(XsWireError::TrailingData {
                msg_type: self.msg_type,
            })
        }
    }

    /// A no-argument request: empty, or one empty string.
    fn no_args(self) -> Result<(), XsWireError> {
        match self.rest {
            b"" | b"\0" => Ok(()),
            _ => Err(XsWireError::TrailingData {
                msg_type: self.msg_type,
            }),
        }
    }
}

/// A validated sequence of NUL-terminated strings (directory listings, permission
/// lists, control arguments), borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StringList<'a> {
    bytes: &'a [u8],
}

impl<'a> StringList<'a> {
    /// Wrap `bytes`, which must be empty or end in NUL.
    pub fn new(bytes: &'a [u8]) -> Result<Self, XsWireError> {
        if bytes.last().is_some_and(|&b| b != 0) {
            return Err(XsWireError::MissingNul { field: "list" });
        }
        Ok(StringList { bytes })
    }

    /// Wrap `bytes` as a permission list: every element must parse as [`XsPermission`],
    /// and there must be at least one.
    pub fn new_perms(bytes: &'a [u8]) -> Result<Self, XsWireError> {
        let list = Self::new(bytes)?;
        if list.is_empty() {
            return Err(XsWireError::MissingField {
                field: "permission",
            });
        }
        for p in list.iter() {
            XsPermission::parse(p)?;
        }
        Ok(list)
    }

    /// The raw bytes, every element NUL-terminated.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The elements, without their NULs.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let b = self.bytes;
        let body = b.strip_suffix(&[0]).unwrap_or(b);
        let mut split = body.split(|&c| c == 0);
        if b.is_empty() {
            // `split` of an empty slice yields one empty element; a list of none has none.
            split.next();
        }
        split
    }

    /// The elements read as permissions (for a list built with
    /// [`StringList::new_perms`] every item is `Ok`).
    pub fn permissions(&self) -> impl Iterator<Item = Result<XsPermission, XsWireError>> + 'a {
        self.iter().map(XsPermission::parse)
    }
}

/// A client request, decoded and validated. Paths are `&str` (valid paths are ASCII);
/// values and tokens are bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `XS_READ <path>|`
    Read {
        /// Node path.
        path: &'a str,
    },
    /// `XS_GET_PERMS <path>|`
    GetPerms {
        /// Node path.
        path: &'a str,
    },
    /// `XS_MKDIR <path>|`
    Mkdir {
        /// Node path.
        path: &'a str,
    },
    /// `XS_RM <path>|`
    Rm {
        /// Node path.
        path: &'a str,
    },
    /// `XS_DIRECTORY <path>|`
    Directory {
        /// Node path.
        path: &'a str,
    },
    /// `XS_DIRECTORY_PART <path>|<offset>|`
    DirectoryPart {
        /// Node path.
        path: &'a str,
        /// Byte offset into the children list to continue from.
        offset: u64,
    },
    /// `XS_WRITE <path>|<value>` (the value is not NUL-terminated).
    Write {
        /// Node path.
        path: &'a str,
        /// New value (raw bytes).
        value: &'a [u8],
    },
    /// `XS_SET_PERMS <path>|<perm>|+`
    SetPerms {
        /// Node path.
        path: &'a str,
        /// At least one permission; the first names the owner.
        perms: StringList<'a>,
    },
    /// `XS_WATCH <wpath>|<token>|`
    Watch {
        /// Watched path (may be special `@...`).
        path: &'a str,
        /// Client token echoed in events.
        token: &'a [u8],
    },
    /// `XS_UNWATCH <wpath>|<token>|`
    Unwatch {
        /// Watched path.
        path: &'a str,
        /// Token of the watch.
        token: &'a [u8],
    },
    /// `XS_RESET_WATCHES |`
    ResetWatches,
    /// `XS_TRANSACTION_START |`
    TransactionStart,
    /// `XS_TRANSACTION_END T|` (commit) or `F|` (abort); the transaction is the header's
    /// `tx_id`.
    TransactionEnd {
        /// Commit (`T`) or abort (`F`).
        commit: bool,
    },
    /// `XS_INTRODUCE <domid>|<gfn>|<evtchn>|`
    Introduce {
        /// The new domain.
        domid: RawDomId,
        /// Frame of its xenstore ring page.
        gfn: u64,
        /// Its xenstore event channel port.
        port: RawEvtchnPort,
    },
    /// `XS_RELEASE <domid>|`
    Release {
        /// The domain.
        domid: RawDomId,
    },
    /// `XS_GET_DOMAIN_PATH <domid>|`
    GetDomainPath {
        /// The domain.
        domid: RawDomId,
    },
    /// `XS_IS_DOMAIN_INTRODUCED <domid>|`
    IsDomainIntroduced {
        /// The domain.
        domid: RawDomId,
    },
    /// `XS_RESUME <domid>|`
    Resume {
        /// The domain.
        domid: RawDomId,
    },
    /// `XS_SET_TARGET <domid>|<target>|`
    SetTarget {
        /// The domain given power.
        domid: RawDomId,
        /// The domain it may act on.
        target: RawDomId,
    },
    /// `XS_CONTROL <command>|[<parameter>|]*`
    Control {
        /// Command and parameters (at least the command).
        args: StringList<'a>,
    },
}

const DOMID_MAX: u64 = u16::MAX as u64;

impl<'a> Request<'a> {
    /// Decode and validate the payload of a request.
    pub fn decode(msg: &RawMessage<'a>) -> Result<Self, XsWireError> {
        let msg_type = msg.msg_type()?;
        let mut a = Args::new(msg, msg_type);
        let req = match msg_type {
            XsMsgType::Read => Request::Read {
                path: a.path("path", false)?,
            },
            XsMsgType::GetPerms => Request::GetPerms {
                path: a.path("path", false)?,
            },
            XsMsgType::Mkdir => Request::Mkdir {
                path: a.path("path", false)?,
            },
            XsMsgType::Rm => Request::Rm {
                path: a.path("path", false)?,
            },
            XsMsgType::Directory => Request::Directory {
                path: a.path("path", false)?,
            },
            XsMsgType::DirectoryPart => Request::DirectoryPart {
                path: a.path("path", false)?,
                offset: a.number("offset", u64::MAX)?,
            },
            XsMsgType::Write => {
                let path = a.path("path", false)?;
                let value = a.remainder();
                Request::Write { path, value }
            }
            XsMsgType::SetPerms => {
                let path = a.path("path", false)?;
                let perms = StringList::new_perms(a.remainder())?;
                Request::SetPerms { path, perms }
            }
            XsMsgType::Watch => Request::Watch {
                path: a.path("path", true)?,
                token: a.string("token")?,
            },
            XsMsgType::Unwatch => Request::Unwatch {
                path: a.path("path", true)?,
                token: a.string("token")?,
            },
            XsMsgType::ResetWatches => {
                a.no_args()?;
                return Ok(Request::ResetWatches);
            }
            XsMsgType::TransactionStart => {
                a.no_args()?;
                return Ok(Request::TransactionStart);
            }
            XsMsgType::TransactionEnd => Request::TransactionEnd {
                commit: a.boolean()?,
            },
            XsMsgType::Introduce => Request::Introduce {
                domid: a.number("domid", DOMID_MAX)? as RawDomId,
                gfn: a.number("gfn", u64::MAX)?,
                port: a.number("port", u32::MAX as u64)? as RawEvtchnPort,
            },
            XsMsgType::Release => Request::Release {
                domid: a.number("domid", DOMID_MAX)? as RawDomId,
            },
            XsMsgType::GetDomainPath => Request::GetDomainPath {
                domid: a.number("domid", DOMID_MAX)? as RawDomId,
            },
            XsMsgType::IsDomainIntroduced => Request::IsDomainIntroduced {
                domid: a.number("domid", DOMID_MAX)? as RawDomId,
            },
            XsMsgType::Resume => Request::Resume {
                domid: a.number("domid", DOMID_MAX)? as RawDomId,
            },
            XsMsgType::SetTarget => Request::SetTarget {
                domid: a.number("domid", DOMID_MAX)? as RawDomId,
                target: a.number("target", DOMID_MAX)? as RawDomId,
            },
            XsMsgType::Control => {
                let args = StringList::new(a.remainder())?;
                if args.is_empty() {
                    return Err(XsWireError::MissingField { field: "command" });
                }
                Request::Control { args }
            }
            t @ (XsMsgType::WatchEvent | XsMsgType::Error) => {
                return Err(XsWireError::NotARequest(t))
            }
        };
        a.end()?;
        Ok(req)
    }

    /// The message type of this request.
    pub fn msg_type(&self) -> XsMsgType {
        match self {
            Request::Read { .. } => XsMsgType::Read,
            Request::GetPerms { .. } => XsMsgType::GetPerms,
            Request::Mkdir { .. } => XsMsgType::Mkdir,
            Request::Rm { .. } => XsMsgType::Rm,
            Request::Directory { .. } => XsMsgType::Directory,
            Request::DirectoryPart { .. } => XsMsgType::DirectoryPart,
            Request::Write { .. } => XsMsgType::Write,
            Request::SetPerms { .. } => XsMsgType::SetPerms,
            Request::Watch { .. } => XsMsgType::Watch,
            Request::Unwatch { .. } => XsMsgType::Unwatch,
            Request::ResetWatches => XsMsgType::ResetWatches,
            Request::TransactionStart => XsMsgType::TransactionStart,
            Request::TransactionEnd { .. } => XsMsgType::TransactionEnd,
            Request::Introduce { .. } => XsMsgType::Introduce,
            Request::Release { .. } => XsMsgType::Release,
            Request::GetDomainPath { .. } => XsMsgType::GetDomainPath,
            Request::IsDomainIntroduced { .. } => XsMsgType::IsDomainIntroduced,
            Request::Resume { .. } => XsMsgType::Resume,
            Request::SetTarget { .. } => XsMsgType::SetTarget,
            Request::Control { .. } => XsMsgType::Control,
        }
    }

    /// Encode into `out`, validating paths and lengths; returns the message length.
    pub fn encode(&self, req_id: u32, tx_id: u32, out: &mut [u8]) -> Result<usize, XsWireError> {
        let mut w = MessageWriter::new(out, self.msg_type(), req_id, tx_id)?;
        match *self {
            Request::Read { path }
            | Request::GetPerms { path }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path } => {
                w.path(path, false)?;
            }
            Request::DirectoryPart { path, offset } => {
                w.path(path, false)?;
                w.number(offset)?;
            }
            Request::Write { path, value } => {
                w.path(path, false)?;
                w.bytes(value)?;
            }
            Request::SetPerms { path, perms } => {
                w.path(path, false)?;
                StringList::new_perms(perms.as_bytes())?;
                w.bytes(perms.as_bytes())?;
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                w.path(path, true)?;
                w.string(token)?;
            }
            Request::ResetWatches | Request::TransactionStart => {
                w.string(b"")?;
            }
            Request::TransactionEnd { commit } => {
                w.string(if commit { b"T" } else { b"F" })?;
            }
            Request::Introduce { domid, gfn, port } => {
                w.number(domid as u64)?;
                w.number(gfn)?;
                w.number(port as u64)?;
            }
            Request::Release { domid }
            | Request::GetDomainPath { domid }
            | Request::IsDomainIntroduced { domid }
            | Request::Resume { domid } => {
                w.number(domid as u64)?;
            }
            Request::SetTarget { domid, target } => {
                w.number(domid as u64)?;
                w.number(target as u64)?;
            }
            Request::Control { args } => {
                if args.is_empty() {
                    return Err(XsWireError::MissingField { field: "command" });
                }
                w.bytes(args.as_bytes())?;
            }
        }
        Ok(w.finish())
    }
}

/// A daemon reply or watch event, decoded and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// `OK` (write, mkdir, rm, set-perms, watch, unwatch, transaction end, introduce,
    /// release, resume, set-target, reset-watches).
    Ok,
    /// `XS_ERROR`.
    Error(XsErrno),
    /// Reply to `XS_READ` or `XS_CONTROL`: raw bytes.
    Value(&'a [u8]),
    /// Reply to `XS_DIRECTORY`: child names.
    Directory(StringList<'a>),
    /// Reply to `XS_DIRECTORY_PART`.
    DirectoryPart {
        /// The node's generation count; a change means restart from offset 0.
        generation: u64,
        /// Child names in this part.
        names: StringList<'a>,
        /// Whether this part ends the list (an empty name terminates it on the wire).
        complete: bool,
    },
    /// Reply to `XS_GET_PERMS`: at least one permission.
    Perms(StringList<'a>),
    /// Reply to `XS_TRANSACTION_START`: the transaction id.
    TransactionStarted(u32),
    /// Reply to `XS_GET_DOMAIN_PATH`.
    DomainPath(&'a str),
    /// Reply to `XS_IS_DOMAIN_INTRODUCED`.
    IsIntroduced(bool),
    /// `XS_WATCH_EVENT <path>|<token>|`
    WatchEvent {
        /// The path that changed.
        path: &'a str,
        /// The watch's token.
        token: &'a [u8],
    },
}

impl<'a> Response<'a> {
    /// Decode and validate a message from the daemon.
    pub fn decode(msg: &RawMessage<'a>) -> Result<Self, XsWireError> {
        let msg_type = msg.msg_type()?;
        let mut a = Args::new(msg, msg_type);
        let rsp = match msg_type {
            XsMsgType::Error => Response::Error(
                XsErrno::from_name(a.string("error name")?).ok_or(XsWireError::UnknownErrorName)?,
            ),
            XsMsgType::WatchEvent => Response::WatchEvent {
                path: a.path("path", true)?,
                token: a.string("token")?,
            },
            XsMsgType::Read | XsMsgType::Control => Response::Value(a.remainder()),
            XsMsgType::Directory => Response::Directory(StringList::new(a.remainder())?),
            XsMsgType::DirectoryPart => {
                let generation = a.number("generation", u64::MAX)?;
                let rest = a.remainder();
                let (names, complete) = match rest.strip_suffix(b"\0\0") {
                    Some(body) => (&rest[..body.len() + 1], true),
                    None if rest == b"\0" => (&rest[..0], true),
                    None => (rest, false),
                };
                Response::DirectoryPart {
                    generation,
                    names: StringList::new(names)?,
                    complete,
                }
            }
            XsMsgType::GetPerms => Response::Perms(StringList::new_perms(a.remainder())?),
            XsMsgType::TransactionStart => {
                Response::TransactionStarted(a.number("transaction id", u32::MAX as u64)? as u32)
            }
            XsMsgType::GetDomainPath => Response::DomainPath(a.path("path", false)?),
            XsMsgType::IsDomainIntroduced => Response::IsIntroduced(a.boolean()?),
            XsMsgType::Write
            | XsMsgType::Mkdir
            | XsMsgType::Rm
            | XsMsgType::SetPerms
            | XsMsgType::Watch
            | XsMsgType::Unwatch
            | XsMsgType::TransactionEnd
            | XsMsgType::Introduce
            | XsMsgType::Release
            | XsMsgType::Resume
            | XsMsgType::SetTarget
            | XsMsgType::ResetWatches => {
                if a.string("OK")? != b"OK" {
                    return Err(XsWireError::ExpectedOk);
                }
                Response::Ok
            }
        };
        a.end()?;
        Ok(rsp)
    }

    /// Encode as the reply to a request of type `request_type` (errors become
    /// `XS_ERROR`, watch events `XS_WATCH_EVENT`); returns the message length.
    pub fn encode(
        &self,
        request_type: XsMsgType,
        req_id: u32,
        tx_id: u32,
        out: &mut [u8],
    ) -> Result<usize, XsWireError> {
        let msg_type = match self {
            Response::Error(_) => XsMsgType::Error,
            Response::WatchEvent { .. } => XsMsgType::WatchEvent,
            _ => request_type,
        };
        let mut w = MessageWriter::new(out, msg_type, req_id, tx_id)?;
        match *self {
            Response::Ok => w.string(b"OK")?,
            Response::Error(e) => w.string(e.name().as_bytes())?,
            Response::Value(v) => w.bytes(v)?,
            Response::Directory(names) => w.bytes(names.as_bytes())?,
            Response::DirectoryPart {
                generation,
                names,
                complete,
            } => {
                w.number(generation)?;
                w.bytes(names.as_bytes())?;
                if complete {
                    w.string(b"")?;
                }
                &mut w
            }
            Response::Perms(perms) => {
                StringList::new_perms(perms.as_bytes())?;
                w.bytes(perms.as_bytes())?
            }
            Response::TransactionStarted(id) => w.number(id as u64)?,
            Response::DomainPath(p) => w.path(p, false)?,
            Response::IsIntroduced(b) => w.string(if b { b"T" } else { b"F" })?,
            Response::WatchEvent { path, token } => {
                w.path(path, true)?;
                w.string(token)?
            }
        };
        Ok(w.finish())
    }
}

/// Encode a message whose payload is `fields`, each NUL-terminated (`"a\0b\0"`), into
/// `out`; returns the message length. For payloads with a raw tail (`XS_WRITE`'s value)
/// use [`MessageWriter`] or [`Request::encode`].
pub fn encode_strings(
    out: &mut [u8],
    msg_type: XsMsgType,
    req_id: u32,
    tx_id: u32,
    fields: &[&[u8]],
) -> Result<usize, XsWireError> {
    let mut w = MessageWriter::new(out, msg_type, req_id, tx_id)?;
    for f in fields {
        w.string(f)?;
    }
    Ok(w.finish())
}

/// Builds one message in a caller buffer: header first, then arguments; `finish`
/// writes the payload length. Every append checks [`XENSTORE_PAYLOAD_MAX`] and the
/// buffer's size.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl<'b> MessageWriter<'b> {
    /// Start a message of `msg_type` in `out`.
    pub fn new(
        out: &'b mut [u8],
        msg_type: XsMsgType,
        req_id: u32,
        tx_id: u32,
    ) -> Result<Self, XsWireError> {
        let header = XsdSockmsg {
            msg_type: msg_type.raw(),
            req_id,
            tx_id,
            len: 0,
        };
        header
            .write_to_prefix(out)
            .map_err(|_| XsWireError::BufferTooSmall {
                needed: XSD_SOCKMSG_SIZE,
                available: out.len(),
            })?;
        Ok(MessageWriter {
            out,
            len: XSD_SOCKMSG_SIZE,
        })
    }

    /// Append raw bytes (no terminator).
    pub fn bytes(&mut self, b: &[u8]) -> Result<&mut Self, XsWireError> {
        let payload = self.len - XSD_SOCKMSG_SIZE + b.len();
        if payload > XENSTORE_PAYLOAD_MAX {
            return Err(XsWireError::PayloadTooLarge { len: payload });
        }
        let end = self.len + b.len();
        let available = self.out.len();
        let dst = self
            .out
            .get_mut(self.len..end)
            .ok_or(XsWireError::BufferTooSmall {
                needed: end,
                available,
            })?;
        dst.copy_from_slice(b);
        self.len = end;
        Ok(self)
    }

    /// Append a string and its NUL terminator; the string may not contain NUL.
    pub fn string(&mut self, s: &[u8]) -> Result<&mut Self, XsWireError> {
        if s.contains(&0) {
            return Err(XsWireError::FieldContainsNul);
        }
        let payload = self.len - XSD_SOCKMSG_SIZE + s.len() + 1;
        if payload > XENSTORE_PAYLOAD_MAX {
            return Err(XsWireError::PayloadTooLarge { len: payload });
        }
        let end = self.len + s.len() + 1;
        if end > self.out.len() {
            return Err(XsWireError::BufferTooSmall {
                needed: end,
                available: self.out.len(),
            });
        }
        self.bytes(s)?;
        self.bytes(&[0])
    }

    /// Append a validated path and its NUL.
    pub fn path(&mut self, p: &str, allow_special: bool) -> Result<&mut Self, XsWireError> {
        validate_path(p.as_bytes(), allow_special)?;
        self.string(p.as_bytes())
    }

    /// Append a decimal number and its NUL.
    pub fn number(&mut self, n: u64) -> Result<&mut Self, XsWireError> {
        let mut digits = [0u8; 20];
        let d = format_decimal(n, &mut digits);
        self.string(d)
    }

    /// Write the payload length into the header; returns the whole message's length.
    pub fn finish(self) -> usize {
        let payload_len = (self.len - XSD_SOCKMSG_SIZE) as u32;
        // The header is at the front of `out` (checked in `new`); `len` is its last field.
        let len_at = core::mem::offset_of!(XsdSockmsg, len);
        self.out[len_at..len_at + 4].copy_from_slice(&payload_len.to_ne_bytes());
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(buf: &[u8]) -> RawMessage<'_> {
        match decode_frame(buf).unwrap() {
            Frame::Complete(m, n) => {
                assert_eq!(n, buf.len());
                m
            }
            Frame::Incomplete { .. } => panic!("incomplete"),
        }
    }

    #[test]
    fn write_request_wire_bytes() {
        let mut out = [0u8; 64];
        let n = Request::Write {
            path: "device/vbd/768/state",
            value: b"4",
        }
        .encode(7, 0, &mut out)
        .unwrap();
        let mut want = [0u8; 16];
        want[0..4].copy_from_slice(&11u32.to_ne_bytes());
        want[4..8].copy_from_slice(&7u32.to_ne_bytes());
        want[12..16].copy_from_slice(&22u32.to_ne_bytes());
        assert_eq!(&out[..16], &want);
        assert_eq!(&out[16..n], b"device/vbd/768/state\x004");
    }

    #[test]
    fn watch_event_and_error_replies() {
        let mut out = [0u8; 64];
        let n = Response::WatchEvent {
            path: "/local/domain/1/device",
            token: b"tok",
        }
        .encode(XsMsgType::Watch, 0, 0, &mut out)
        .unwrap();
        let m = frame(&out[..n]);
        assert_eq!(m.msg_type(), Ok(XsMsgType::WatchEvent));
        assert_eq!(m.payload, b"/local/domain/1/device\0tok\0");
        let n = Response::Error(XsErrno::Enoent)
            .encode(XsMsgType::Read, 3, 0, &mut out)
            .unwrap();
        let m = frame(&out[..n]);
        assert_eq!(m.payload, b"ENOENT\0");
        assert_eq!(Response::decode(&m), Ok(Response::Error(XsErrno::Enoent)));
    }

    #[test]
    fn reader_in_tiny_chunks() {
        let mut out = [0u8; 128];
        let n1 = Request::Read { path: "/a" }.encode(1, 0, &mut out).unwrap();
        let n2 = Request::TransactionStart
            .encode(2, 0, &mut out[n1..])
            .unwrap();
        let stream = &out[..n1 + n2];
        let mut r = XsReader::new();
        let mut ids = [0u32; 2];
        let mut got = 0;
        for chunk in stream.chunks(3) {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let used = r.push(chunk).unwrap();
                chunk = &chunk[used..];
                if let Some(m) = r.message() {
                    ids[got] = m.req_id;
                    got += 1;
                }
            }
        }
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn oversized_header_refused_before_payload() {
        let h = XsdSockmsg {
            msg_type: 2,
            req_id: 0,
            tx_id: 0,
            len: 4097,
        };
        assert_eq!(
            decode_frame(h.as_bytes()),
            Err(XsWireError::PayloadTooLarge { len: 4097 })
        );
    }

    #[test]
    fn directory_part_terminator() {
        let m = RawMessage {
            raw_type: XsMsgType::DirectoryPart.raw(),
            req_id: 0,
            tx_id: 0,
            payload: b"5\0a\0b\0\0",
        };
        match Response::decode(&m).unwrap() {
            Response::DirectoryPart {
                generation,
                names,
                complete,
            } => {
                assert_eq!(generation, 5);
                assert!(complete);
                let mut it = names.iter();
                assert_eq!(it.next(), Some(&b"a"[..]));
                assert_eq!(it.next(), Some(&b"b"[..]));
                assert_eq!(it.next(), None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encode_strings_matches_typed_encoder() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let n = encode_strings(&mut a, XsMsgType::Watch, 5, 0, &[b"/x", b"tok"]).unwrap();
        let m = Request::Watch {
            path: "/x",
            token: b"tok",
        }
        .encode(5, 0, &mut b)
        .unwrap();
        assert_eq!(&a[..n], &b[..m]);
        let ring = XenstoreRingIndices::check(10, 10 + 1024, XENSTORE_RING_SIZE).unwrap();
        assert_eq!(ring.free(), 0);
        assert!(XenstoreRingIndices::check(10, 10 + 1025, XENSTORE_RING_SIZE).is_err());
    }

    #[test]
    fn perms() {
        let p = XsPermission::parse(b"b65535").unwrap();
        assert_eq!(p.access, XsPermAccess::Both);
        assert_eq!(p.domid, 65535);
        assert_eq!(
            XsPermission::parse(b"r65536"),
            Err(XsWireError::BadPermission)
        );
        assert_eq!(XsPermission::parse(b"x1"), Err(XsWireError::BadPermission));
        assert_eq!(XsPermission::parse(b"r"), Err(XsWireError::BadPermission));
        let mut buf = [0; 6];
        assert_eq!(p.format(&mut buf), b"b65535");
    }
}
