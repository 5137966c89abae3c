//! The xenstore client of the Windows xenbus driver: requests over the xenstore ring
//! page (`HVM_PARAM_STORE_PFN`), replies matched by request id. The ring indices and
//! message headers come from xenstored, so they are checked (`sluice_abi::byte_ring`,
//! `xs_wire`): a bad index or an oversized header fails the request and the client
//! (reset needed), never reads outside the page. Waiting is the driver's
//! ([`XsTransport::wait`], an event with a timeout), so no request waits forever.
//! Watch events read on the way (or by [`XsClient::poll`]) are queued, bounded, for
//! the bus to route ([`crate::watches`]).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::byte_ring::ByteRing;
use sluice_abi::shared::SharedMem;
use sluice_abi::xs_wire::{Request, Response, XsErrno, XsMsgType, XsReader, XS_MESSAGE_MAX};
use sluice_front_seams::SeamError;

/// `ETIMEDOUT`: xenstored did not answer in the transport's wait.
pub const ETIMEDOUT: i32 = 110;
/// `EIO`: the ring or a message broke the protocol.
pub const EIO: i32 = 5;
/// `EAGAIN`.
const EAGAIN: i32 = 11;
/// Waits one request may take (each one the transport's timeout long).
pub const MAX_WAITS: usize = 64;
/// Messages (our reply, stale replies, watch events) read per request or poll at most.
pub const MAX_MESSAGES: usize = 1024;
/// Watch events queued for the bus at most; more are dropped (and counted).
pub const MAX_QUEUED_EVENTS: usize = 256;
/// Transaction retries on `EAGAIN`.
pub const MAX_TX_RETRIES: usize = 8;

/// The ring page and its event channel, as the driver gives them.
pub trait XsTransport {
    /// The xenstore interface page.
    fn ring(&self) -> SharedMem<'_>;
    /// Signals xenstored (the xenstore event channel).
    fn notify(&mut self);
    /// Waits for an event on the xenstore channel; `false` when the wait timed out.
    fn wait(&mut self) -> bool;
}

/// A watch event read from the ring, for the bus to route by its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed.
    pub path: String,
    /// The token the watch was registered with.
    pub token: Vec<u8>,
}

enum Reply {
    Ok(XsMsgType, Vec<u8>),
    Err(XsErrno),
}

/// A xenstore connection's state.
pub struct XsClient {
    next_id: u32,
    reader: Box<XsReader>,
    broken: bool,
    events: VecDeque<WatchEvent>,
    dropped: u64,
}

impl Default for XsClient {
    fn default() -> Self {
        Self::new()
    }
}

/// Any ring or wire error: the protocol is broken.
fn io<E>(_: E) -> SeamError {
    SeamError::Xenstore(EIO)
}

fn errno(e: XsErrno) -> SeamError {
    SeamError::Xenstore(e as i32)
}

impl XsClient {
    /// A client with nothing in flight.
    pub fn new() -> Self {
        XsClient {
            next_id: 1,
            reader: Box::new(XsReader::new()),
            broken: false,
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Sends `req` and returns the reply's type and payload (an `XS_ERROR` reply is
    /// `SeamError::Xenstore(errno)`).
    pub fn call(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        req: &Request<'_>,
        tx: u32,
    ) -> Result<(XsMsgType, Vec<u8>), SeamError> {
        if self.broken {
            return Err(SeamError::Xenstore(EIO));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut buf = alloc::vec![0u8; XS_MESSAGE_MAX];
        let len = req
            .encode(id, tx, &mut buf)
            .map_err(|_| SeamError::Xenstore(XsErrno::Einval as i32))?;
        let r = self.exchange(t, &buf[..len], id);
        if matches!(r, Err(SeamError::Xenstore(EIO))) {
            self.broken = true;
        }
        r
    }

    fn exchange(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        msg: &[u8],
        id: u32,
    ) -> Result<(XsMsgType, Vec<u8>), SeamError> {
        let mut sent = 0;
        let mut waits = 0;
        let mut seen = 0;
        loop {
            if sent < msg.len() {
                let n = ByteRing::XENSTORE_REQ
                    .write(&t.ring(), &msg[sent..])
                    .map_err(io)?;
                sent += n;
                if n > 0 {
                    t.notify();
                }
            }
            if let Some(reply) = self.drain(t, Some(id), &mut seen)? {
                return match reply {
                    Reply::Ok(ty, v) => Ok((ty, v)),
                    Reply::Err(e) => Err(errno(e)),
                };
            }
            if waits == MAX_WAITS || !t.wait() {
                return Err(SeamError::Xenstore(ETIMEDOUT));
            }
            waits += 1;
        }
    }

    /// Reads what the response ring holds: watch events are queued, the reply to `id`
    /// (if any) returned once the chunk it came in is consumed, other replies (late
    /// answers to timed-out requests) skipped. At most [`MAX_MESSAGES`] messages per
    /// request or poll (`seen` counts them), else the protocol is broken.
    fn drain(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        id: Option<u32>,
        seen: &mut usize,
    ) -> Result<Option<Reply>, SeamError> {
        let mut chunk = [0u8; 256];
        let mut reply = None;
        loop {
            let n = ByteRing::XENSTORE_RSP
                .read(&t.ring(), &mut chunk)
                .map_err(io)?;
            if n == 0 {
                return Ok(reply);
            }
            t.notify();
            let mut used = 0;
            while used < n {
                used += self.reader.push(&chunk[used..n]).map_err(io)?;
                let Some(m) = self.reader.message() else {
                    continue;
                };
                *seen += 1;
                if *seen > MAX_MESSAGES {
                    return Err(SeamError::Xenstore(EIO));
                }
                if m.raw_type == XsMsgType::WatchEvent as u32 {
                    let Response::WatchEvent { path, token } = Response::decode(&m).map_err(io)?
                    else {
                        return Err(SeamError::Xenstore(EIO));
                    };
                    if self.events.len() < MAX_QUEUED_EVENTS {
                        self.events.push_back(WatchEvent {
                            path: String::from(path),
                            token: token.to_vec(),
                        });
                    } else {
                        self.dropped += 1;
                    }
                    continue;
                }
                if Some(m.req_id) != id || reply.is_some() {
                    continue;
                }
                let ty = m.msg_type().map_err(io)?;
                reply = Some(match Response::decode(&m).map_err(io)? {
                    Response::Error(e) => Reply::Err(e),
                    _ => Reply::Ok(ty, m.payload.to_vec()),
                });
            }
            if reply.is_some() {
                return Ok(reply);
            }
        }
    }

    /// Reads the response ring without sending anything (the bus does it when the
    /// xenstore channel fires with no request in flight): queues the watch events
    /// found, skips stale replies. Returns how many events are queued.
    pub fn poll(&mut self, t: &mut (impl XsTransport + ?Sized)) -> Result<usize, SeamError> {
        if self.broken {
            return Err(SeamError::Xenstore(EIO));
        }
        let mut seen = 0;
        if let Err(e) = self.drain(t, None, &mut seen) {
            self.broken = true;
            return Err(e);
        }
        Ok(self.events.len())
    }

    /// The oldest queued watch event.
    pub fn take_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// Watch events queued (for the bus to poll and route).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Watch events dropped because [`MAX_QUEUED_EVENTS`] were queued.
    pub fn dropped_events(&self) -> u64 {
        self.dropped
    }

    /// `XS_WATCH path token`: xenstored sends an event at once, then on each change.
    pub fn watch(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        path: &str,
        token: &[u8],
    ) -> Result<(), SeamError> {
        self.call(t, &Request::Watch { path, token }, 0).map(drop)
    }

    /// `XS_UNWATCH path token`.
    pub fn unwatch(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        path: &str,
        token: &[u8],
    ) -> Result<(), SeamError> {
        self.call(t, &Request::Unwatch { path, token }, 0).map(drop)
    }

    /// `XS_TRANSACTION_START`: a transaction id.
    pub fn transaction_start(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
    ) -> Result<u32, SeamError> {
        let (_, v) = self.call(t, &Request::TransactionStart, 0)?;
        core::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim_end_matches('\0').parse::<u32>().ok())
            .ok_or(SeamError::Xenstore(EIO))
    }

    /// `XS_TRANSACTION_END`; `EAGAIN` means retry the whole transaction.
    pub fn transaction_end(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        tx: u32,
        commit: bool,
    ) -> Result<(), SeamError> {
        self.call(t, &Request::TransactionEnd { commit }, tx)
            .map(drop)
    }

    /// Writes one node (in transaction `tx`, 0 for none).
    pub fn write(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        tx: u32,
        path: &str,
        value: &[u8],
    ) -> Result<(), SeamError> {
        self.call(t, &Request::Write { path, value }, tx).map(drop)
    }

    /// Reads a node; `None` if it does not exist.
    pub fn read(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        path: &str,
    ) -> Result<Option<String>, SeamError> {
        self.read_in(t, 0, path)
    }

    /// Reads a node in transaction `tx` (0: none); `None` if it does not exist.
    pub fn read_in(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        tx: u32,
        path: &str,
    ) -> Result<Option<String>, SeamError> {
        match self.call(t, &Request::Read { path }, tx) {
            Ok((_, v)) => Ok(Some(
                String::from_utf8(v).map_err(|_| SeamError::Xenstore(EIO))?,
            )),
            Err(SeamError::Xenstore(e)) if e == XsErrno::Enoent as i32 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A node's children; empty if it does not exist.
    pub fn directory(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        path: &str,
    ) -> Result<Vec<String>, SeamError> {
        match self.call(t, &Request::Directory { path }, 0) {
            Ok((_, v)) => Ok(v
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()),
            Err(SeamError::Xenstore(e)) if e == XsErrno::Enoent as i32 => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Writes every pair in one transaction, retried on `EAGAIN` (bounded).
    pub fn write_all(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        writes: &[(&str, &str)],
    ) -> Result<(), SeamError> {
        for _ in 0..MAX_TX_RETRIES {
            let tx = self.transaction_start(t)?;
            let mut failed = None;
            for (path, value) in writes {
                if let Err(e) = self.write(t, tx, path, value.as_bytes()) {
                    failed = Some(e);
                    break;
                }
            }
            let end = self.transaction_end(t, tx, failed.is_none());
            if let Some(e) = failed {
                return Err(e);
            }
            match end {
                Ok(()) => return Ok(()),
                Err(SeamError::Xenstore(EAGAIN)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SeamError::Xenstore(EAGAIN))
    }
}
