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
