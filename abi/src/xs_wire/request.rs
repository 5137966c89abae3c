//! [`Request`]: a client request, decoded, validated and encoded.

use super::payload::Args;
use super::*;

use crate::types::{RawDomId, RawEvtchnPort};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
