//! The child devices xenbus reports to Windows' PnP manager: one per `device/vbd/<id>`
//! and `device/vif/<id>` node of our xenstore home. Ids come from the toolstack, so
//! they are checked (decimal, fits in u32) and their number is bounded.

use crate::xenstore::{XsClient, XsTransport};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sluice_front_seams::SeamError;

/// Children per kind at most (a toolstack gives a guest far fewer).
pub const MAX_PER_KIND: usize = 64;

/// What a child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A virtual block device (xenvbd binds it).
    Vbd,
    /// A virtual network interface (xennet binds it).
    Vif,
}

impl Kind {
    /// The xenstore directory under `device/`.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Vbd => "vbd",
            Kind::Vif => "vif",
        }
    }

    /// The hardware ID the child's PDO reports (IRP_MN_QUERY_ID BusQueryHardwareIDs);
    /// the child driver's INF binds it.
    pub fn hardware_id(self) -> &'static str {
        match self {
            Kind::Vbd => "SLUICEXEN\\VBD",
            Kind::Vif => "SLUICEXEN\\VIF",
        }
    }
}

/// One child device.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Child {
    /// vbd or vif.
    pub kind: Kind,
    /// Its id (`device/vbd/<id>`); also the PDO's instance ID.
    pub id: u32,
}

impl Child {
    /// `device/<kind>/<id>`.
    pub fn nodename(&self) -> String {
        format!("device/{}/{}", self.kind.dir(), self.id)
    }
}

/// Parses a child id: 1 to 10 decimal digits, fits in u32.
pub fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Lists the children (sorted, bad ids skipped, at most [`MAX_PER_KIND`] of each kind).
pub fn enumerate(
    xs: &mut XsClient,
    t: &mut (impl XsTransport + ?Sized),
) -> Result<Vec<Child>, SeamError> {
    let mut out = Vec::new();
    for kind in [Kind::Vbd, Kind::Vif] {
        let mut ids: Vec<u32> = xs
            .directory(t, &format!("device/{}", kind.dir()))?
            .iter()
            .filter_map(|s| parse_id(s))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_PER_KIND);
        out.extend(ids.into_iter().map(|id| Child { kind, id }));
    }
    Ok(out)
}

/// The PDOs of a bus across relation queries (the WDM bus driver's rules): a child
/// the bus no longer has is left out of the next `BusRelations` answer (reported
/// missing) and its PDO kept until its own `IRP_MN_REMOVE_DEVICE`, which deletes it;
/// a child whose old PDO awaits that REMOVE gets no new PDO yet (two devices with one
/// instance ID), but does at the first query after it.
#[derive(Debug)]
pub struct Relations<K, H> {
    present: Vec<(K, H)>,
    leaving: Vec<(K, H)>,
}

impl<K, H> Default for Relations<K, H> {
    fn default() -> Self {
        Relations {
            present: Vec::new(),
            leaving: Vec::new(),
        }
    }
}

impl<K: PartialEq, H> Relations<K, H> {
    /// A `BusRelations` query: `want` is what the bus has now. Leaving handles whose
    /// PDO was deleted (`deleted`) are forgotten; present ones not wanted move to
    /// leaving (`gone` is called on each: mark its PDO missing); wanted keys with no
    /// handle get one from `make` (none if it returns `None`: tried again next time).
    /// Afterwards [`present`](Self::present) is the answer.
    pub fn query(
        &mut self,
        want: Vec<K>,
        mut make: impl FnMut(&K) -> Option<H>,
        deleted: impl Fn(&H) -> bool,
        mut gone: impl FnMut(&H),
    ) {
        self.leaving.retain(|(_, h)| !deleted(h));
        let mut i = 0;
        while i < self.present.len() {
            if want.contains(&self.present[i].0) {
                i += 1;
            } else {
                let e = self.present.remove(i);
                gone(&e.1);
                self.leaving.push(e);
            }
        }
        for k in want {
            let known = self
                .present
                .iter()
                .chain(&self.leaving)
                .any(|(p, _)| *p == k);
            if !known {
                if let Some(h) = make(&k) {
                    self.present.push((k, h));
                }
            }
        }
    }

    /// The children to report, in order.
    pub fn present(&self) -> impl Iterator<Item = &(K, H)> {
        self.present.iter()
    }

    /// The bus goes away (its FDO's REMOVE): every handle not yet deleted, to delete.
    pub fn drain(&mut self, deleted: impl Fn(&H) -> bool) -> Vec<H> {
        let leaving = self.leaving.drain(..).filter(|(_, h)| !deleted(h));
        let all: Vec<(K, H)> = self.present.drain(..).chain(leaving).collect();
        all.into_iter().map(|(_, h)| h).collect()
    }
}

#[cfg(test)]
mod relations_tests {
    use super::*;
    use alloc::rc::Rc;
    use alloc::vec;
    use core::cell::Cell;

    /// A fake PDO: missing (marked by the bus), deleted (its REMOVE came).
    #[derive(Default)]
    struct Pdo {
        id: u32,
        missing: Cell<bool>,
        deleted: Cell<bool>,
    }

    fn query(r: &mut Relations<u32, Rc<Pdo>>, want: &[u32]) -> Vec<u32> {
        r.query(
            want.to_vec(),
            |&id| {
                Some(Rc::new(Pdo {
                    id,
                    ..Pdo::default()
                }))
            },
            |p| p.deleted.get(),
            |p| p.missing.set(true),
        );
        r.present().map(|(k, _)| *k).collect()
    }

    /// The PnP manager's REMOVE of a PDO: a missing one is deleted.
    fn remove(p: &Pdo) {
        if p.missing.get() {
            p.deleted.set(true);
        }
    }

    #[test]
    fn a_removed_node_is_reported_missing_and_deleted_at_its_remove() {
        let mut r = Relations::default();
        assert_eq!(query(&mut r, &[768, 832]), [768, 832]);
        let old = r.present().next().unwrap().1.clone();
        // xl block-detach: device/vbd/768 goes.
        assert_eq!(query(&mut r, &[832]), [832]);
        assert!(old.missing.get() && !old.deleted.get());
        // Re-attached before the old PDO's REMOVE: no second PDO with its instance ID.
        assert_eq!(query(&mut r, &[768, 832]), [832]);
        remove(&old);
        assert!(old.deleted.get());
        let now = query(&mut r, &[768, 832]);
        assert_eq!(now, [832, 768]);
        let new = r.present().find(|(k, _)| *k == 768).unwrap().1.clone();
        assert!(!Rc::ptr_eq(&old, &new) && !new.missing.get());
        // A present child's REMOVE (a disable) deletes nothing.
        remove(&new);
        assert!(!new.deleted.get());
    }

    #[test]
    fn the_bus_going_away_deletes_what_is_left_once() {
        let mut r = Relations::default();
        query(&mut r, &[1, 2, 3]);
        query(&mut r, &[1]);
        let two = r.leaving.iter().find(|(k, _)| *k == 2).unwrap().1.clone();
        remove(&two);
        let left: Vec<u32> = r.drain(|p| p.deleted.get()).iter().map(|p| p.id).collect();
        assert_eq!(left, vec![1, 3]);
        assert_eq!(r.present().count(), 0);
    }
}
