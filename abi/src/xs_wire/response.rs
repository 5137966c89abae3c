//! [`Response`]: a daemon reply or watch event, decoded, validated and encoded.

use super::payload::Args;
use super::*;

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
}
