//! The xenstore client of the Windows xenbus driver: requests over the xenstore ring
//! page (`HVM_PARAM_STORE_PFN`), replies matched by request id. The ring indices and
//! message headers come from xenstored, so they are checked (`sluice_abi::byte_ring`,
//! `xs_wire`): a bad index or an oversized header fails the request and the client
//! (reset needed), never reads outside the page. Waiting is the driver's
//! ([`XsTransport::wait`], an event with a timeout), so no request waits forever.

use alloc::boxed::Box;
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
/// Unrelated messages (stale replies, watch events) skipped per request.
pub const MAX_SKIPPED: usize = 64;
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

/// A xenstore connection's state.
pub struct XsClient {
    next_id: u32,
    reader: Box<XsReader>,
    broken: bool,
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
        let mut skipped = 0;
        let mut chunk = [0u8; 256];
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
            // Drain replies.
            loop {
                let n = ByteRing::XENSTORE_RSP
                    .read(&t.ring(), &mut chunk)
                    .map_err(io)?;
                if n == 0 {
                    break;
                }
                t.notify();
                let mut used = 0;
                while used < n {
                    used += self.reader.push(&chunk[used..n]).map_err(io)?;
                    if let Some(m) = self.reader.message() {
                        if m.req_id != id || m.raw_type == XsMsgType::WatchEvent as u32 {
                            skipped += 1;
                            if skipped > MAX_SKIPPED {
                                return Err(SeamError::Xenstore(EIO));
                            }
                            continue;
                        }
                        if used < n {
                            // xenstored sends nothing unasked between our requests.
                            return Err(SeamError::Xenstore(EIO));
                        }
                        let ty = m.msg_type().map_err(io)?;
                        return match Response::decode(&m).map_err(io)? {
                            Response::Error(e) => Err(errno(e)),
                            _ => Ok((ty, m.payload.to_vec())),
                        };
                    }
                }
            }
            if waits == MAX_WAITS || !t.wait() {
                return Err(SeamError::Xenstore(ETIMEDOUT));
            }
            waits += 1;
        }
    }

    /// Reads a node; `None` if it does not exist.
    pub fn read(
        &mut self,
        t: &mut (impl XsTransport + ?Sized),
        path: &str,
    ) -> Result<Option<String>, SeamError> {
        match self.call(t, &Request::Read { path }, 0) {
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
            let (_, v) = self.call(t, &Request::TransactionStart, 0)?;
            let tx = core::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim_end_matches('\0').parse::<u32>().ok())
                .ok_or(SeamError::Xenstore(EIO))?;
            let mut failed = None;
            for (path, value) in writes {
                let req = Request::Write {
                    path,
                    value: value.as_bytes(),
                };
                if let Err(e) = self.call(t, &req, tx) {
                    failed = Some(e);
                    break;
                }
            }
            let commit = failed.is_none();
            let end = self.call(t, &Request::TransactionEnd { commit }, tx);
            if let Some(e) = failed {
                return Err(e);
            }
            match end {
                Ok(_) => return Ok(()),
                Err(SeamError::Xenstore(EAGAIN)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SeamError::Xenstore(EAGAIN))
    }
}
