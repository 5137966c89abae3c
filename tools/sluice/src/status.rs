//! `sluice status`: which backends run, and each device they serve, read from the
//! backend's xenstore nodes (what libxl and the daemon wrote).

use crate::Root;
use serde::Serialize;
use sluice_dom0::xenstore::{backend_device_dirs, XenStore, XBT_NULL};

/// A backend daemon and whether it runs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Daemon {
    pub name: &'static str,
    /// Its pids (empty: not running).
    pub pids: Vec<u32>,
}

/// The daemons `sluice status` reports, with the kernel/C peer each replaces.
pub const DAEMONS: &[&str] = &["sluice-blkback", "sluice-consoleback"];

/// The backend daemons and their pids (from `/proc/<pid>/comm`).
pub fn daemons(root: &Root) -> Vec<Daemon> {
    DAEMONS
        .iter()
        .map(|&name| Daemon {
            name,
            pids: root.pids_of(name),
        })
        .collect()
}

/// One block device a backend serves (a `backend/vbd/<domid>/<devid>` directory).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Device {
    pub domid: u32,
    pub devid: u32,
    /// The guest's name for it (`dev`, e.g. `xvda`).
    pub vdev: String,
    /// The image or block device (`params`).
    pub image: String,
    /// `w` or `r`.
    pub mode: String,
    /// The backend's XenbusState, by name.
    pub state: String,
    /// Features both ends agreed on (or the backend offers and the frontend may use).
    pub features: Vec<String>,
    /// Requests answered and those answered with an error, from sluice-blkback's status
    /// file (`None`: the device is not in it, e.g. served by kernel blkback).
    pub requests: Option<u64>,
    pub errors: Option<u64>,
}

/// The name of a XenbusState number.
pub fn state_name(v: &str) -> String {
    let name = match v.trim() {
        "0" => "Unknown",
        "1" => "Initialising",
        "2" => "InitWait",
        "3" => "Initialised",
        "4" => "Connected",
        "5" => "Closing",
        "6" => "Closed",
        "7" => "Reconfiguring",
        "8" => "Reconfigured",
        _ => return format!("invalid ({})", v.escape_debug()),
    };
    name.to_string()
}

/// Every block device under dom0's `backend/vbd`, sorted by domain and device.
pub fn devices<S: XenStore + ?Sized>(xs: &S, backend_domid: u32) -> Vec<Device> {
    let root = format!("/local/domain/{backend_domid}/backend/vbd");
    let read = |p: &str| xs.read_string(XBT_NULL, p).ok();
    let mut out = Vec::new();
    for dir in backend_device_dirs(xs, &root) {
        let mut parts = dir.rsplit('/');
        let (Some(devid), Some(domid)) = (
            parts.next().and_then(|s| s.parse().ok()),
            parts.next().and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        let be = |k: &str| read(&format!("{dir}/{k}"));
        let fe_dir = be("frontend");
        let fe = |k: &str| fe_dir.as_ref().and_then(|d| read(&format!("{d}/{k}")));
        let on = |v: Option<String>| v.as_deref().map(str::trim) == Some("1");
        let mut features = Vec::new();
        if on(be("feature-persistent")) && on(fe("feature-persistent")) {
            features.push("persistent-grants".to_string());
        }
        if on(be("feature-flush-cache")) {
            features.push("flush-cache".to_string());
        }
        if on(be("feature-discard")) {
            features.push("discard".to_string());
        }
        if let Some(order) = fe("ring-page-order") {
            features.push(format!("ring-page-order={}", order.trim()));
        }
        if let Some(s) = be("sector-size") {
            features.push(format!("sector-size={}", s.trim()));
        }
        if let Some(p) = fe("protocol") {
            features.push(format!("protocol={}", p.trim()));
        }
        out.push(Device {
            domid,
            devid,
            vdev: be("dev").unwrap_or_default(),
            image: be("params").unwrap_or_default(),
            mode: be("mode").unwrap_or_default(),
            state: be("state").map(|s| state_name(&s)).unwrap_or_default(),
            features,
            requests: None,
            errors: None,
        });
    }
    out.sort_by_key(|d| (d.domid, d.devid));
    out
}

/// Where sluice-blkback writes its per-device counts (its `--status-file`).
pub const BLKBACK_STATUS_FILE: &str = "/run/sluice/blkback.json";

/// Fills `requests` (answered, OKAY or not) and `errors` of each device from
/// sluice-blkback's status file text (`{"devices":{"<backend path>":{"ok":N,"failed":M}}}`);
/// devices it does not list keep `None`. A file that does not parse changes nothing.
pub fn apply_counts(devices: &mut [Device], backend_domid: u32, text: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    for d in devices {
        let path = format!(
            "/local/domain/{backend_domid}/backend/vbd/{}/{}",
            d.domid, d.devid
        );
        let e = &v["devices"][&path];
        if let (Some(ok), Some(failed)) = (e["ok"].as_u64(), e["failed"].as_u64()) {
            d.requests = Some(ok.saturating_add(failed));
            d.errors = Some(failed);
        }
    }
}

/// Everything `sluice status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub daemons: Vec<Daemon>,
    pub devices: Vec<Device>,
    /// Why `devices` could not be read (no xenstore), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xenstore_error: Option<String>,
}

impl Status {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut s = String::from("backends:\n");
        for d in &self.daemons {
            let pids: Vec<String> = d.pids.iter().map(u32::to_string).collect();
            let state = if pids.is_empty() {
                "not running".to_string()
            } else {
                format!("running (pid {})", pids.join(", "))
            };
            s += &format!("  {:<20} {state}\n", d.name);
        }
        s += "block devices:\n";
        if let Some(e) = &self.xenstore_error {
            s += &format!("  (xenstore not readable: {e})\n");
        } else if self.devices.is_empty() {
            s += "  none\n";
        }
        for d in &self.devices {
            let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            s += &format!(
                "  dom {} {:<6} {:<12} {} {} [{}] requests {} errors {}\n",
                d.domid,
                d.vdev,
                d.state,
                d.mode,
                d.image,
                d.features.join(" "),
                n(d.requests),
                n(d.errors)
            );
        }
        s
    }
}
