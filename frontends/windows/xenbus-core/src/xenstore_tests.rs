//! The xenstore client and child enumeration against a fake xenstored on a real ring
//! page (`SharedPages`), well-behaved and hostile.

use crate::children::{enumerate, Child, Kind, MAX_PER_KIND};
use crate::xenstore::{XsClient, XsTransport, EIO, ETIMEDOUT};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use sluice_abi::byte_ring::ByteRing;
use sluice_abi::shared::{SharedMem, SharedPages};
use sluice_abi::xs_wire::{
    Request, Response, StringList, XsErrno, XsMsgType, XsReader, XS_MESSAGE_MAX,
};
use sluice_front_seams::SeamError;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Good,
    /// Never answers.
    Silent,
    /// Answers with a wrong request id, forever.
    WrongIds,
    /// Corrupts the response ring's producer index.
    BadIndex,
    /// The first transaction end fails with EAGAIN.
    AgainOnce,
}

pub(crate) struct FakeXs {
    pub(crate) page: SharedPages,
    pub(crate) store: BTreeMap<String, String>,
    reader: XsReader,
    mode: Mode,
    again_sent: bool,
    tx_writes: Vec<(String, String)>,
    waits: usize,
    /// Registered watches (path, token).
    pub(crate) watches: Vec<(String, Vec<u8>)>,
    /// Events to send after the current reply.
    pub(crate) events: Vec<(String, Vec<u8>)>,
}

impl FakeXs {
    pub(crate) fn new(mode: Mode) -> Self {
        FakeXs {
            page: SharedPages::new(1),
            store: BTreeMap::new(),
            reader: XsReader::new(),
            mode,
            again_sent: false,
            tx_writes: Vec::new(),
            waits: 0,
            watches: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Sets a node as another domain would, firing the watches on it or above it.
    pub(crate) fn set(&mut self, path: &str, value: &str) {
        self.store.insert(path.into(), value.into());
        self.changed(path);
        self.flush_events();
    }

    fn changed(&mut self, path: &str) {
        for (w, tok) in &self.watches {
            if path == w || path.starts_with(&format!("{w}/")) {
                self.events.push((path.to_string(), tok.clone()));
            }
        }
    }

    /// Writes the queued watch events to the response ring.
    pub(crate) fn flush_events(&mut self) {
        for (path, token) in core::mem::take(&mut self.events) {
            let mut out = [0u8; XS_MESSAGE_MAX];
            let len = Response::WatchEvent {
                path: &path,
                token: &token,
            }
            .encode(XsMsgType::Watch, 0, 0, &mut out)
            .unwrap();
            ByteRing::XENSTORE_RSP
                .write(&self.page.mem(), &out[..len])
                .unwrap();
        }
    }

    fn serve(&mut self) {
        let mut chunk = [0u8; 128];
        loop {
            let n = ByteRing::XENSTORE_REQ
                .read(&self.page.mem(), &mut chunk)
                .unwrap();
            if n == 0 {
                return;
            }
            let mut used = 0;
            while used < n {
                used += self.reader.push(&chunk[used..n]).unwrap();
                let Some(m) = self.reader.message() else {
                    continue;
                };
                let (id, tx) = (m.req_id, m.tx_id);
                let req = Request::decode(&m).unwrap();
                let ty = req.msg_type();
                let mut names = Vec::new();
                let mut touched: Vec<String> = Vec::new();
                let value;
                let resp = match req {
                    Request::Read { path } => match self.store.get(path) {
                        Some(v) => {
                            value = v.clone();
                            Response::Value(value.as_bytes())
                        }
                        None => Response::Error(XsErrno::Enoent),
                    },
                    Request::Directory { path } => {
                        let prefix = format!("{path}/");
                        let mut kids: Vec<&str> = self
                            .store
                            .keys()
                            .filter_map(|k| k.strip_prefix(&prefix))
                            .map(|rest| rest.split('/').next().unwrap())
                            .collect();
                        kids.dedup();
                        if kids.is_empty() {
                            Response::Error(XsErrno::Enoent)
                        } else {
                            for k in kids {
                                names.extend_from_slice(k.as_bytes());
                                names.push(0);
                            }
                            Response::Directory(StringList::new(&names).unwrap())
                        }
                    }
                    Request::TransactionStart => Response::TransactionStarted(7),
                    Request::Write { path, value } => {
                        let v = String::from_utf8(value.to_vec()).unwrap();
                        if tx == 0 {
                            self.store.insert(path.to_string(), v);
                            touched.push(path.to_string());
                        } else {
                            assert_eq!(tx, 7, "writes go in the transaction");
                            self.tx_writes.push((path.to_string(), v));
                        }
                        Response::Ok
                    }
                    Request::Watch { path, token } => {
                        self.watches.push((path.to_string(), token.to_vec()));
                        self.events.push((path.to_string(), token.to_vec()));
                        Response::Ok
                    }
                    Request::Unwatch { path, token } => {
                        let before = self.watches.len();
                        self.watches.retain(|(p, t)| !(p == path && t == token));
                        if self.watches.len() == before {
                            Response::Error(XsErrno::Enoent)
                        } else {
                            Response::Ok
                        }
                    }
                    Request::TransactionEnd { commit } => {
                        if self.mode == Mode::AgainOnce && !self.again_sent {
                            self.again_sent = true;
                            self.tx_writes.clear();
                            Response::Error(XsErrno::Eagain)
                        } else {
                            if commit {
                                for (p, v) in core::mem::take(&mut self.tx_writes) {
                                    touched.push(p.clone());
                                    self.store.insert(p, v);
                                }
                            }
                            Response::Ok
                        }
                    }
                    _ => Response::Error(XsErrno::Enosys),
                };
                let rid = if self.mode == Mode::WrongIds {
                    id + 1000
                } else {
                    id
                };
                let mut out = [0u8; XS_MESSAGE_MAX];
                let len = resp.encode(ty, rid, tx, &mut out).unwrap();
                let w = ByteRing::XENSTORE_RSP
                    .write(&self.page.mem(), &out[..len])
                    .unwrap();
                assert_eq!(w, len, "the client drains replies");
                for p in touched {
                    self.changed(&p);
                }
                self.flush_events();
                if self.mode == Mode::BadIndex {
                    // rsp_prod far past rsp_cons: more than a ring's worth "unread".
                    let prod = self.page.mem().load_u32_acquire(2048 + 12).unwrap();
                    self.page
                        .mem()
                        .store_u32_release(2048 + 12, prod + 5000)
                        .unwrap();
                }
            }
        }
    }
}

impl XsTransport for FakeXs {
    fn ring(&self) -> SharedMem<'_> {
        self.page.mem()
    }
    fn notify(&mut self) {}
    fn wait(&mut self) -> bool {
        self.waits += 1;
        if self.mode != Mode::Silent {
            self.serve();
        }
        self.mode != Mode::Silent
    }
}

#[test]
fn read_directory_and_transactional_writes() {
    let mut xs = FakeXs::new(Mode::Good);
    xs.store
        .insert("device/vbd/768/backend-id".into(), "0".into());
    let mut c = XsClient::new();
    assert_eq!(
        c.read(&mut xs, "device/vbd/768/backend-id")
            .unwrap()
            .as_deref(),
        Some("0")
    );
    assert_eq!(c.read(&mut xs, "device/vbd/1/x").unwrap(), None);
    assert_eq!(c.directory(&mut xs, "device/vbd").unwrap(), ["768"]);
    c.write_all(
        &mut xs,
        &[("device/vbd/768/state", "1"), ("device/vbd/768/x", "y")],
    )
    .unwrap();
    assert_eq!(
        xs.store.get("device/vbd/768/state").map(String::as_str),
        Some("1")
    );
}

#[test]
fn eagain_retries_the_transaction() {
    let mut xs = FakeXs::new(Mode::AgainOnce);
    let mut c = XsClient::new();
    c.write_all(&mut xs, &[("a/b", "c")]).unwrap();
    assert!(xs.again_sent);
    assert_eq!(xs.store.get("a/b").map(String::as_str), Some("c"));
}

#[test]
fn a_silent_xenstored_times_out() {
    let mut xs = FakeXs::new(Mode::Silent);
    let mut c = XsClient::new();
    assert_eq!(c.read(&mut xs, "a"), Err(SeamError::Xenstore(ETIMEDOUT)));
    assert_eq!(
        xs.waits, 1,
        "one wait, then the transport's timeout ends it"
    );
}

#[test]
fn wrong_reply_ids_are_bounded_and_break_the_client() {
    let mut xs = FakeXs::new(Mode::WrongIds);
    let mut c = XsClient::new();
    let r = c.read(&mut xs, "a");
    assert!(
        matches!(r, Err(SeamError::Xenstore(ETIMEDOUT | EIO))),
        "{r:?}"
    );
}

#[test]
fn a_bad_ring_index_breaks_the_client_for_good() {
    let mut xs = FakeXs::new(Mode::BadIndex);
    xs.store.insert("a".into(), "b".into());
    let mut c = XsClient::new();
    assert_eq!(c.read(&mut xs, "a"), Err(SeamError::Xenstore(EIO)));
    xs.mode = Mode::Good;
    assert_eq!(
        c.read(&mut xs, "a"),
        Err(SeamError::Xenstore(EIO)),
        "stays broken"
    );
}

#[test]
fn children_are_enumerated_checked_and_bounded() {
    let mut xs = FakeXs::new(Mode::Good);
    for id in ["768", "5632", "abc", "99999999999", "0768"] {
        xs.store
            .insert(format!("device/vbd/{id}/state"), "1".into());
    }
    xs.store.insert("device/vif/0/state".into(), "1".into());
    let mut c = XsClient::new();
    let kids = enumerate(&mut c, &mut xs).unwrap();
    assert_eq!(
        kids,
        [
            Child {
                kind: Kind::Vbd,
                id: 768
            },
            Child {
                kind: Kind::Vbd,
                id: 5632
            },
            Child {
                kind: Kind::Vif,
                id: 0
            },
        ],
        "non-numeric and oversized ids skipped, 0768 and 768 are one device"
    );
    assert_eq!(kids[0].nodename(), "device/vbd/768");

    let mut xs = FakeXs::new(Mode::Good);
    for id in 0..200 {
        xs.store
            .insert(format!("device/vif/{id}/state"), "1".into());
    }
    let mut c = XsClient::new();
    assert_eq!(enumerate(&mut c, &mut xs).unwrap().len(), MAX_PER_KIND);
}

#[test]
fn watch_events_are_queued_bounded_and_dropped_past_the_bound() {
    use crate::xenstore::MAX_QUEUED_EVENTS;
    let mut xs = FakeXs::new(Mode::Good);
    let mut c = XsClient::new();
    let mut sent = 0;
    while sent < MAX_QUEUED_EVENTS + 44 {
        for _ in 0..10 {
            xs.events
                .push(("device/vbd/768/state".into(), b"sluice:1".to_vec()));
            sent += 1;
        }
        xs.flush_events();
        c.poll(&mut xs).unwrap();
    }
    assert_eq!(c.pending_events(), MAX_QUEUED_EVENTS);
    assert_eq!(c.dropped_events(), 44);
    let ev = c.take_event().unwrap();
    assert_eq!(
        (ev.path.as_str(), &ev.token[..]),
        ("device/vbd/768/state", &b"sluice:1"[..])
    );
}

#[test]
fn a_malformed_watch_event_breaks_the_client() {
    let mut xs = FakeXs::new(Mode::Good);
    let mut c = XsClient::new();
    // XS_WATCH_EVENT with one field (no token): xsd_sockmsg header, then "path\0".
    let mut m = Vec::new();
    for v in [XsMsgType::WatchEvent as u32, 0, 0, 5] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    m.extend_from_slice(b"path\0");
    ByteRing::XENSTORE_RSP.write(&xs.page.mem(), &m).unwrap();
    assert_eq!(c.poll(&mut xs), Err(SeamError::Xenstore(EIO)));
    xs.store.insert("a".into(), "b".into());
    assert_eq!(
        c.read(&mut xs, "a"),
        Err(SeamError::Xenstore(EIO)),
        "stays broken"
    );
}
