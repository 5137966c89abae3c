//! Xenstore watches of the bus' children: each registered watch gets a token the bus
//! makes (`sluice:<n>`, never reused), events read by the xenstore client
//! ([`crate::xenstore::XsClient::take_event`]) are routed by that token to the one
//! callback registered with it; an event with a token we did not give out (xenstored
//! is not trusted) is dropped. A child has at most [`MAX_PER_OWNER`] watches and may
//! remove only its own; a child that goes away loses all of them.

use crate::grants::Owner;
use crate::xenstore::WatchEvent;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::xs_wire::XENSTORE_ABS_PATH_MAX;
use sluice_front_seams::SeamError;

/// Watches one child may hold.
pub const MAX_PER_OWNER: usize = 16;
/// `EINVAL`.
const EINVAL: i32 = 22;

/// A registered watch's handle (also its token's number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatchId(pub u64);

impl WatchId {
    /// The token sent with `XS_WATCH`.
    pub fn token(self) -> String {
        format!("sluice:{}", self.0)
    }

    /// The id a token names, if it is one of ours in form.
    pub fn from_token(token: &[u8]) -> Option<WatchId> {
        let digits = token.strip_prefix(b"sluice:")?;
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        core::str::from_utf8(digits).ok()?.parse().ok().map(WatchId)
    }
}

struct Watch<C> {
    owner: Owner,
    path: String,
    callback: C,
}

/// The registered watches, by id.
pub struct Watches<C> {
    next: u64,
    by_id: BTreeMap<u64, Watch<C>>,
}

impl<C> Default for Watches<C> {
    fn default() -> Self {
        Watches {
            next: 1,
            by_id: BTreeMap::new(),
        }
    }
}

/// A routed event: whose callback to call, for which watch and path.
#[derive(Debug, PartialEq, Eq)]
pub struct Routed<C> {
    /// The child that registered the watch.
    pub owner: Owner,
    /// The watch.
    pub id: WatchId,
    /// Its callback.
    pub callback: C,
    /// The path that changed.
    pub path: String,
}

impl<C: Clone> Watches<C> {
    /// Registers `owner`'s watch on `path`; the caller sends `XS_WATCH` with the id's
    /// token (and [`unregister`](Self::unregister)s it again if that fails).
    pub fn register(
        &mut self,
        owner: Owner,
        path: &str,
        callback: C,
    ) -> Result<WatchId, SeamError> {
        if path.is_empty() || path.len() > XENSTORE_ABS_PATH_MAX || path.contains('\0') {
            return Err(SeamError::Xenstore(EINVAL));
        }
        if self.by_id.values().filter(|w| w.owner == owner).count() >= MAX_PER_OWNER {
            return Err(SeamError::NoResources);
        }
        let id = WatchId(self.next);
        self.next += 1;
        self.by_id.insert(
            id.0,
            Watch {
                owner,
                path: String::from(path),
                callback,
            },
        );
        Ok(id)
    }

    /// Removes `owner`'s watch `id`: its path and token, for `XS_UNWATCH`; `None` if
    /// there is no such watch of `owner`'s (another child's is left alone).
    pub fn unregister(&mut self, owner: Owner, id: WatchId) -> Option<(String, String)> {
        if self.by_id.get(&id.0)?.owner != owner {
            return None;
        }
        let w = self.by_id.remove(&id.0)?;
        Some((w.path, id.token()))
    }

    /// Where an event goes; `None` for a token that is not a live watch of ours.
    pub fn route(&self, ev: &WatchEvent) -> Option<Routed<C>> {
        let id = WatchId::from_token(&ev.token)?;
        let w = self.by_id.get(&id.0)?;
        Some(Routed {
            owner: w.owner,
            id,
            callback: w.callback.clone(),
            path: ev.path.clone(),
        })
    }

    /// Drops every watch of `owner`: their paths and tokens, for `XS_UNWATCH`.
    pub fn remove_owner(&mut self, owner: Owner) -> Vec<(String, String)> {
        let ids: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, w)| w.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.unregister(owner, WatchId(id)))
            .collect()
    }

    /// Watches registered now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No watch registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
