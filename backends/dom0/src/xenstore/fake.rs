//! [`FakeXenStore`]: an in-process xenstore with watches and transactions (feature
//! `fake`).

use super::{TxId, WatchEvent, XenStore, XsError, XBT_NULL};
use sluice_abi::xs_wire::{XsErrno, XsPermission, XsWireError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Node {
    value: Vec<u8>,
    perms: Vec<XsPermission>,
}

type Tree = BTreeMap<String, Node>;

#[derive(Debug, Default)]
struct StoreState {
    tree: Tree,
    generation: u64,
    next_conn: u64,
    next_tx: u32,
    /// Open transactions: (connection, snapshot, generation at start, touched paths).
    txs: HashMap<TxId, (u64, Tree, u64, HashSet<String>)>,
    watches: Vec<(u64, String, String)>,
    queues: HashMap<u64, Sender<WatchEvent>>,
    fail_commits: usize,
}

/// An in-process xenstore with watches and transactions. Cloning shares the store;
/// [`FakeXenStore::connect`] opens a client connection with its own watches.
#[derive(Debug, Clone, Default)]
pub struct FakeXenStore {
    state: Arc<Mutex<StoreState>>,
}

/// One client connection to a [`FakeXenStore`].
#[derive(Debug)]
pub struct FakeXsConn {
    store: FakeXenStore,
    id: u64,
    events: Mutex<Receiver<WatchEvent>>,
}

fn is_under(path: &str, watched: &str) -> bool {
    path == watched
        || (path.starts_with(watched) && path.as_bytes().get(watched.len()) == Some(&b'/'))
}

fn parent(path: &str) -> Option<&str> {
    path.rfind('/')
        .map(|i| if i == 0 { "/" } else { &path[..i] })
}

fn tree_write(tree: &mut Tree, path: &str, value: &[u8]) {
    let mut p = parent(path);
    while let Some(pp) = p {
        if pp == "/" || tree.contains_key(pp) {
            break;
        }
        tree.insert(
            pp.to_string(),
            Node {
                value: vec![],
                perms: default_perms(),
            },
        );
        p = parent(pp);
    }
    match tree.get_mut(path) {
        Some(n) => n.value = value.to_vec(),
        None => {
            tree.insert(
                path.to_string(),
                Node {
                    value: value.to_vec(),
                    perms: default_perms(),
                },
            );
        }
    }
}

fn default_perms() -> Vec<XsPermission> {
    vec![XsPermission {
        access: sluice_abi::xs_wire::XsPermAccess::None,
        domid: 0,
    }]
}

impl FakeXenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new client connection.
    pub fn connect(&self) -> FakeXsConn {
        let mut s = self.lock();
        s.next_conn += 1;
        let id = s.next_conn;
        let (tx, rx) = mpsc::channel();
        s.queues.insert(id, tx);
        FakeXsConn {
            store: self.clone(),
            id,
            events: Mutex::new(rx),
        }
    }

    /// Makes the next `n` commits fail with `EAGAIN` (to test retries).
    pub fn fail_next_commits(&self, n: usize) {
        self.lock().fail_commits = n;
    }

    /// Every path and value (for test assertions).
    pub fn dump(&self) -> Vec<(String, String)> {
        self.lock()
            .tree
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.value).into_owned()))
            .collect()
    }
}

fn fire(s: &StoreState, path: &str) {
    for (conn, wpath, token) in &s.watches {
        if is_under(path, wpath) {
            if let Some(q) = s.queues.get(conn) {
                let _ = q.send(WatchEvent {
                    path: path.into(),
                    token: token.clone(),
                });
            }
        }
    }
}

impl FakeXsConn {
    /// Applies `op` to the live tree (firing watches on `changed`) or to the
    /// transaction's snapshot.
    fn modify<T>(
        &self,
        tx: TxId,
        path: &str,
        op: impl FnOnce(&mut Tree) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        check_path(path)?;
        let mut s = self.store.lock();
        if tx == XBT_NULL {
            let r = op(&mut s.tree)?;
            s.generation += 1;
            fire(&s, path);
            Ok(r)
        } else {
            let (conn, snap, _, touched) =
                s.txs.get_mut(&tx).ok_or(XsError::Errno(XsErrno::Einval))?;
            if *conn != self.id {
                return Err(XsError::Errno(XsErrno::Einval));
            }
            let r = op(snap)?;
            touched.insert(path.to_string());
            Ok(r)
        }
    }

    fn view<T>(
        &self,
        tx: TxId,
        path: &str,
        op: impl FnOnce(&Tree) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        check_path(path)?;
        let s = self.store.lock();
        if tx == XBT_NULL {
            op(&s.tree)
        } else {
            match s.txs.get(&tx) {
                Some((conn, snap, _, _)) if *conn == self.id => op(snap),
                _ => Err(XsError::Errno(XsErrno::Einval)),
            }
        }
    }
}

fn check_path(path: &str) -> Result<(), XsError> {
    sluice_abi::xs_wire::validate_path(path.as_bytes(), false).map_err(XsWireError::from)?;
    Ok(())
}

impl XenStore for FakeXsConn {
    fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        self.view(tx, path, |t| {
            t.get(path)
                .map(|n| n.value.clone())
                .ok_or(XsError::Errno(XsErrno::Enoent))
        })
    }
    fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        self.modify(tx, path, |t| {
            tree_write(t, path, value);
            Ok(())
        })
    }
    fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        self.view(tx, path, |t| {
            if path != "/" && !t.contains_key(path) {
                return Err(XsError::Errno(XsErrno::Enoent));
            }
            let prefix = if path == "/" {
                "/".to_string()
            } else {
                format!("{path}/")
            };
            Ok(t.range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, _)| {
                    let rest = &k[prefix.len()..];
                    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
                })
                .collect())
        })
    }
    fn mkdir(&self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.modify(tx, path, |t| {
            if !t.contains_key(path) {
                tree_write(t, path, b"");
            }
            Ok(())
        })
    }
    fn rm(&self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.modify(tx, path, |t| {
            if !t.contains_key(path) {
                return Err(XsError::Errno(XsErrno::Enoent));
            }
            let sub = format!("{path}/");
            t.retain(|k, _| k != path && !k.starts_with(&sub));
            Ok(())
        })
    }
    fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<XsPermission>, XsError> {
        self.view(tx, path, |t| {
            t.get(path)
                .map(|n| n.perms.clone())
                .ok_or(XsError::Errno(XsErrno::Enoent))
        })
    }
    fn set_perms(&self, tx: TxId, path: &str, perms: &[XsPermission]) -> Result<(), XsError> {
        if perms.is_empty() {
            return Err(XsError::Errno(XsErrno::Einval));
        }
        self.modify(tx, path, |t| {
            let n = t.get_mut(path).ok_or(XsError::Errno(XsErrno::Enoent))?;
            n.perms = perms.to_vec();
            Ok(())
        })
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), XsError> {
        if !path.starts_with('@') {
            check_path(path)?;
        }
        let mut s = self.store.lock();
        if s.watches
            .iter()
            .any(|(c, p, t)| *c == self.id && p == path && t == token)
        {
            return Err(XsError::Errno(XsErrno::Eexist));
        }
        s.watches.push((self.id, path.into(), token.into()));
        if let Some(q) = s.queues.get(&self.id) {
            let _ = q.send(WatchEvent {
                path: path.into(),
                token: token.into(),
            });
        }
        Ok(())
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        let mut s = self.store.lock();
        let before = s.watches.len();
        s.watches
            .retain(|(c, p, t)| !(*c == self.id && p == path && t == token));
        if s.watches.len() == before {
            return Err(XsError::Errno(XsErrno::Enoent));
        }
        Ok(())
    }
    fn transaction_start(&self) -> Result<TxId, XsError> {
        let mut s = self.store.lock();
        s.next_tx += 1;
        let id = s.next_tx;
        let snap = s.tree.clone();
        let generation = s.generation;
        s.txs
            .insert(id, (self.id, snap, generation, HashSet::new()));
        Ok(id)
    }
    fn transaction_end(&self, tx: TxId, commit: bool) -> Result<(), XsError> {
        let mut s = self.store.lock();
        let (conn, snap, generation, touched) = match s.txs.remove(&tx) {
            Some(t) if t.0 == self.id => t,
            Some(t) => {
                s.txs.insert(tx, t);
                return Err(XsError::Errno(XsErrno::Einval));
            }
            None => return Err(XsError::Errno(XsErrno::Einval)),
        };
        let _ = conn;
        if !commit {
            return Ok(());
        }
        if s.fail_commits > 0 {
            s.fail_commits -= 1;
            return Err(XsError::Errno(XsErrno::Eagain));
        }
        if generation != s.generation {
            return Err(XsError::Errno(XsErrno::Eagain));
        }
        s.tree = snap;
        s.generation += 1;
        for p in &touched {
            fire(&s, p);
        }
        Ok(())
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

impl Drop for FakeXsConn {
    fn drop(&mut self) {
        let mut s = self.store.lock();
        let id = self.id;
        s.watches.retain(|(c, _, _)| *c != id);
        s.queues.remove(&id);
        s.txs.retain(|_, t| t.0 != id);
    }
}
