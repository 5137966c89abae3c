//! Limits, message types, error names and the message header (`struct xsd_sockmsg`).

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;

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
