//! Xenstore: the [`XenStore`] seam, a client over xenstored's socket or
//! `/dev/xen/xenbus` ([`XsClient`]), and an in-process store ([`FakeXenStore`]).

use sluice_abi::xs_wire::{
    Request, Response, StringList, XsErrno, XsMsgType, XsPermission, XsReader, XsWireError,
    XS_MESSAGE_MAX,
};

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// xenstored's socket.
pub const XENSTORED_SOCKET: &str = "/run/xenstored/socket";
/// The kernel's xenbus device (used when the socket is absent).
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

/// A transaction id; [`XBT_NULL`] is "no transaction".
pub type TxId = u32;
/// No transaction.
pub const XBT_NULL: TxId = 0;

/// Failures of xenstore operations.
#[derive(Debug, thiserror::Error)]
pub enum XsError {
    /// The daemon answered with an error (`ENOENT`, `EACCES`, `EAGAIN`...).
    #[error("xenstore: {0}")]
    Errno(XsErrno),
    /// A message could not be encoded or the daemon's reply is malformed.
    #[error("xenstore wire: {0}")]
    Wire(#[from] XsWireError),
    /// The connection failed.
    #[error("xenstore connection: {0}")]
    Io(#[from] io::Error),
    /// The connection is closed.
    #[error("xenstore connection closed")]
    Disconnected,
    /// The reply is not of the kind the request expects.
    #[error("xenstore: unexpected reply to {0:?}")]
    UnexpectedReply(XsMsgType),
    /// A value that should be text is not UTF-8.
    #[error("xenstore: {path}: value is not UTF-8")]
    NotUtf8 {
        /// The node.
        path: String,
    },
    /// A value that should be a number is not.
    #[error("xenstore: {path}: {value:?} is not a number")]
    NotANumber {
        /// The node.
        path: String,
        /// Its value.
        value: String,
    },
}

impl XsError {
    /// Whether this is `ENOENT`.
    pub fn is_enoent(&self) -> bool {
        matches!(self, XsError::Errno(XsErrno::Enoent))
    }
    /// Whether this is `EAGAIN` (retry the transaction).
    pub fn is_eagain(&self) -> bool {
        matches!(self, XsError::Errno(XsErrno::Eagain))
    }
}

/// A watch firing: the path that changed (or the watched path, on registration) and
/// the watch's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node.
    pub path: String,
    /// The token given to [`XenStore::watch`].
    pub token: String,
}

/// Xenstore operations, as a client sees them.
pub trait XenStore: Send + Sync {
    /// Reads a node's value.
    fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError>;
    /// Writes a node (creating it and missing parents).
    fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError>;
    /// Lists a node's children.
    fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>, XsError>;
    /// Creates a node (no error if it exists).
    fn mkdir(&self, tx: TxId, path: &str) -> Result<(), XsError>;
    /// Removes a node and its children.
    fn rm(&self, tx: TxId, path: &str) -> Result<(), XsError>;
    /// A node's permissions (the first names the owner).
    fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<XsPermission>, XsError>;
    /// Sets a node's permissions.
    fn set_perms(&self, tx: TxId, path: &str, perms: &[XsPermission]) -> Result<(), XsError>;
    /// Watches a path and its descendants; fires once at registration.
    fn watch(&self, path: &str, token: &str) -> Result<(), XsError>;
    /// Removes a watch.
    fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError>;
    /// Starts a transaction.
    fn transaction_start(&self) -> Result<TxId, XsError>;
    /// Commits or aborts it; a commit may fail with `EAGAIN` (conflict: retry).
    fn transaction_end(&self, tx: TxId, commit: bool) -> Result<(), XsError>;
    /// The next watch event, waiting at most `timeout`.
    fn next_watch_event(&self, timeout: Duration) -> Result<Option<WatchEvent>, XsError>;

    /// Reads a node as UTF-8 text.
    fn read_string(&self, tx: TxId, path: &str) -> Result<String, XsError> {
        let v = self.read(tx, path)?;
        String::from_utf8(v).map_err(|_| XsError::NotUtf8 { path: path.into() })
    }

    /// Reads a node as text, `None` if it does not exist.
    fn read_opt(&self, tx: TxId, path: &str) -> Result<Option<String>, XsError> {
        match self.read_string(tx, path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a node as a decimal number, `None` if it does not exist.
    fn read_u64(&self, tx: TxId, path: &str) -> Result<Option<u64>, XsError> {
        let Some(s) = self.read_opt(tx, path)? else {
            return Ok(None);
        };
        s.trim_end_matches('\0')
            .parse()
            .map(Some)
            .map_err(|_| XsError::NotANumber {
                path: path.into(),
                value: s,
            })
    }
}

/// Runs `f` in a transaction, retrying from the start while the commit answers
/// `EAGAIN` (at most `attempts` times). `f`'s own error aborts the transaction.
pub fn transaction<S: XenStore + ?Sized, T>(
    xs: &S,
    attempts: usize,
    mut f: impl FnMut(TxId) -> Result<T, XsError>,
) -> Result<T, XsError> {
    let mut last = XsError::Errno(XsErrno::Eagain);
    for _ in 0..attempts.max(1) {
        let tx = xs.transaction_start()?;
        let value = match f(tx) {
            Ok(v) => v,
            Err(e) => {
                let _ = xs.transaction_end(tx, false);
                if e.is_eagain() {
                    last = e;
                    continue;
                }
                return Err(e);
            }
        };
        match xs.transaction_end(tx, true) {
            Ok(()) => return Ok(value),
            Err(e) if e.is_eagain() => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The daemons' main loop: waits up to `idle` for a watch event, drains every event
/// already queued (without waiting), then calls `turn(changed)`, `changed` telling
/// whether any event came; until `stop` is set. The caller registers its watches first
/// and reconciles its devices with xenstore in `turn` (also on idle turns where it has
/// other reasons: dead queues, periodic checks). Watch tokens and paths are not passed
/// on: every daemon re-reads the tree it serves, so a lost or coalesced event costs
/// nothing.
pub fn watch_loop<S: XenStore + ?Sized>(
    xs: &S,
    stop: &std::sync::atomic::AtomicBool,
    idle: Duration,
    mut turn: impl FnMut(bool),
) -> Result<(), XsError> {
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let mut changed = false;
        while xs
            .next_watch_event(if changed { Duration::ZERO } else { idle })?
            .is_some()
        {
            changed = true;
        }
        turn(changed);
    }
    Ok(())
}

/// The device directories `<root>/<domid>/<devid>` under a backend root such as
/// `/local/domain/0/backend/vbd` (what a backend daemon serves); unreadable levels are
/// skipped (a domain's directory may vanish while it is listed).
pub fn backend_device_dirs<S: XenStore + ?Sized>(xs: &S, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(domids) = xs.directory(XBT_NULL, root) {
        for dom in domids {
            let dir = format!("{root}/{dom}");
            if let Ok(devs) = xs.directory(XBT_NULL, &dir) {
                out.extend(devs.into_iter().map(|d| format!("{dir}/{d}")));
            }
        }
    }
    out
}

/// Takes out of `devices` (keyed by backend directory) every device whose directory is
/// no longer in `present` ([`backend_device_dirs`]): the toolstack removed it.
pub fn take_removed<V>(
    devices: &mut std::collections::BTreeMap<String, V>,
    present: &[String],
) -> Vec<(String, V)> {
    let gone: Vec<String> = devices
        .keys()
        .filter(|k| !present.contains(k))
        .cloned()
        .collect();
    gone.into_iter()
        .filter_map(|be| devices.remove(&be).map(|d| (be, d)))
        .collect()
}

// ---------------------------------------------------------------------------------
// The real client.

/// A reply as read by the reader thread.
#[derive(Debug)]
struct OwnedMessage {
    raw_type: u32,
    req_id: u32,
    tx_id: u32,
    payload: Vec<u8>,
}

struct Channel {
    writer: Box<dyn Write + Send>,
    replies: Receiver<Result<OwnedMessage, XsWireError>>,
    next_req_id: u32,
}

/// A xenstore client over a byte stream (xenstored's unix socket or the kernel's
/// `/dev/xen/xenbus`). One request is in flight at a time; a reader thread routes
/// replies to the caller and watch events to [`XenStore::next_watch_event`].
pub struct XsClient {
    channel: Mutex<Channel>,
    events: Mutex<Receiver<WatchEvent>>,
}

impl std::fmt::Debug for XsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XsClient").finish_non_exhaustive()
    }
}

impl XsClient {
    /// Connects to xenstored's socket, or opens `/dev/xen/xenbus` when there is none.
    pub fn open() -> Result<Self, XsError> {
        match UnixStream::connect(XENSTORED_SOCKET) {
            Ok(s) => Self::from_stream(s.try_clone()?, s),
            Err(_) => Self::open_xenbus(Path::new(XENBUS_DEVICE)),
        }
    }

    /// Connects to a xenstored unix socket.
    pub fn connect_socket(path: &Path) -> Result<Self, XsError> {
        let s = UnixStream::connect(path)?;
        Self::from_stream(s.try_clone()?, s)
    }

    /// Opens the kernel's xenbus device.
    pub fn open_xenbus(path: &Path) -> Result<Self, XsError> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Self::from_stream(f.try_clone()?, f)
    }

    /// A client over any stream pair (tests use a socketpair).
    pub fn from_stream(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
    ) -> Result<Self, XsError> {
        let (reply_tx, replies) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        std::thread::Builder::new()
            .name("xenstore-reader".into())
            .spawn(move || reader_loop(reader, reply_tx, event_tx))?;
        Ok(Self {
            channel: Mutex::new(Channel {
                writer: Box::new(writer),
                replies,
                next_req_id: 1,
            }),
            events: Mutex::new(events),
        })
    }

    fn call(&self, req: &Request<'_>, tx: TxId) -> Result<OwnedMessage, XsError> {
        let mut ch = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        let req_id = ch.next_req_id;
        ch.next_req_id = ch.next_req_id.wrapping_add(1).max(1);
        let mut buf = vec![0u8; XS_MESSAGE_MAX];
        let n = req.encode(req_id, tx, &mut buf)?;
        ch.writer.write_all(&buf[..n])?;
        ch.writer.flush()?;
        loop {
            let msg = ch.replies.recv().map_err(|_| XsError::Disconnected)??;
            if msg.req_id == req_id {
                return Ok(msg);
            }
            tracing::warn!(
                req_id = msg.req_id,
                "xenstore: dropping a reply to no pending request"
            );
        }
    }

    /// Sends `req` and decodes the reply with `f`; `XS_ERROR` becomes [`XsError::Errno`].
    fn request<T>(
        &self,
        req: Request<'_>,
        tx: TxId,
        f: impl FnOnce(Response<'_>) -> Option<T>,
    ) -> Result<T, XsError> {
        let msg = self.call(&req, tx)?;
        let raw = sluice_abi::xs_wire::RawMessage {
            raw_type: msg.raw_type,
            req_id: msg.req_id,
            tx_id: msg.tx_id,
            payload: &msg.payload,
        };
        match Response::decode(&raw)? {
            Response::Error(e) => Err(XsError::Errno(e)),
            r => f(r).ok_or(XsError::UnexpectedReply(req.msg_type())),
        }
    }

    fn ok(&self, req: Request<'_>, tx: TxId) -> Result<(), XsError> {
        self.request(req, tx, |r| matches!(r, Response::Ok).then_some(()))
    }
}

fn reader_loop(
    mut reader: impl Read,
    replies: Sender<Result<OwnedMessage, XsWireError>>,
    events: Sender<WatchEvent>,
) {
    let mut decoder = XsReader::new();
    let mut buf = vec![0u8; XS_MESSAGE_MAX];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("xenstore: read failed: {e}");
                return;
            }
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let used = match decoder.push(data) {
                Ok(u) => u,
                Err(e) => {
                    // The stream cannot be re-synchronised: fail the caller and stop.
                    let _ = replies.send(Err(e));
                    return;
                }
            };
            data = &data[used..];
            if let Some(m) = decoder.message() {
                if m.raw_type == XsMsgType::WatchEvent as u32 {
                    match Response::decode(&m) {
                        Ok(Response::WatchEvent { path, token }) => {
                            let _ = events.send(WatchEvent {
                                path: path.into(),
                                token: String::from_utf8_lossy(token).into_owned(),
                            });
                        }
                        _ => tracing::warn!("xenstore: malformed watch event dropped"),
                    }
                } else {
                    let owned = OwnedMessage {
                        raw_type: m.raw_type,
                        req_id: m.req_id,
                        tx_id: m.tx_id,
                        payload: m.payload.to_vec(),
                    };
                    if replies.send(Ok(owned)).is_err() {
                        return;
                    }
                }
            } else if used == 0 {
                break;
            }
        }
    }
}

fn perms_bytes(perms: &[XsPermission]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in perms {
        let mut b = [0u8; 6];
        out.extend_from_slice(p.format(&mut b));
        out.push(0);
    }
    out
}

fn parse_perms(list: StringList<'_>) -> Result<Vec<XsPermission>, XsError> {
    list.permissions()
        .collect::<Result<Vec<_>, _>>()
        .map_err(XsError::Wire)
}

impl XenStore for XsClient {
    fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        self.request(Request::Read { path }, tx, |r| match r {
            Response::Value(v) => Some(v.to_vec()),
            _ => None,
        })
    }
    fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        self.ok(Request::Write { path, value }, tx)
    }
    fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        self.request(Request::Directory { path }, tx, |r| match r {
            Response::Directory(l) => Some(
                l.iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect(),
            ),
            _ => None,
        })
    }
    fn mkdir(&self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.ok(Request::Mkdir { path }, tx)
    }
    fn rm(&self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.ok(Request::Rm { path }, tx)
    }
    fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<XsPermission>, XsError> {
        let msg = self.request(Request::GetPerms { path }, tx, |r| match r {
            Response::Perms(l) => Some(l.as_bytes().to_vec()),
            _ => None,
        })?;
        parse_perms(StringList::new_perms(&msg)?)
    }
    fn set_perms(&self, tx: TxId, path: &str, perms: &[XsPermission]) -> Result<(), XsError> {
        let bytes = perms_bytes(perms);
        let perms = StringList::new_perms(&bytes)?;
        self.ok(Request::SetPerms { path, perms }, tx)
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), XsError> {
        self.ok(
            Request::Watch {
                path,
                token: token.as_bytes(),
            },
            XBT_NULL,
        )
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        self.ok(
            Request::Unwatch {
                path,
                token: token.as_bytes(),
            },
            XBT_NULL,
        )
    }
    fn transaction_start(&self) -> Result<TxId, XsError> {
        self.request(Request::TransactionStart, XBT_NULL, |r| match r {
            Response::TransactionStarted(id) => Some(id),
            _ => None,
        })
    }
    fn transaction_end(&self, tx: TxId, commit: bool) -> Result<(), XsError> {
        self.ok(Request::TransactionEnd { commit }, tx)
    }
    fn next_watch_event(&self, timeout: Duration) -> Result<Option<WatchEvent>, XsError> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match events.recv_timeout(timeout) {
            Ok(e) => Ok(Some(e)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(XsError::Disconnected),
        }
    }
}

#[cfg(any(test, feature = "fake"))]
mod fake;
#[cfg(any(test, feature = "fake"))]
pub use fake::{FakeXenStore, FakeXsConn};

#[cfg(test)]
mod tests;
