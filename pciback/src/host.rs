//! `sluice pci list`: each PCI function of a Linux host (or dom0) from sysfs
//! (`/sys/bus/pci/devices/*/{config,iommu_group,reset_method,driver}`), with names
//! from the `pci-ids` database, its IOMMU group, whether it can be assigned (and
//! why not), and the resets available. The config file is only read: capability
//! walks run over a snapshot through the same bounded code the hypervisor uses.
use crate::config::*;
use crate::inventory::{capabilities, ext_capabilities, Defect};
use serde_json::{json, Value};
use sluice_iommu::Bdf;
use std::fs;
use std::io;
use std::path::Path;

/// Whether a function can be given to a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    /// Only together with the other functions of its IOMMU group.
    WithGroup(Vec<String>),
    No(String),
}

/// One line of `sluice pci list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub address: String,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub vendor_name: String,
    pub device_name: String,
    pub class_name: String,
    pub iommu_group: Option<u32>,
    pub driver: Option<String>,
    pub resets: Vec<String>,
    pub verdict: Verdict,
}

fn names(vendor: u16, device: u16, class: u32) -> (String, String, String) {
    let d = pci_ids::Device::from_vid_pid(vendor, device);
    let v = d.map(|d| d.vendor().name().to_string()).or_else(|| {
        pci_ids::Vendors::iter()
            .find(|v| v.id() == vendor)
            .map(|v| v.name().to_string())
    });
    let c = pci_ids::Subclass::from_cid_sid((class >> 16) as u8, (class >> 8) as u8)
        .map(|s| s.name().to_string());
    (
        v.unwrap_or_default(),
        d.map(|d| d.name().to_string()).unwrap_or_default(),
        c.unwrap_or_default(),
    )
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Resets from config space, for kernels without `reset_method` (before 5.15).
fn resets_from_config(
    cfg: &mut Snapshot,
    bdf: Bdf,
    behind_bridge: bool,
) -> Result<Vec<String>, Defect> {
    let mut out = Vec::new();
    let caps = capabilities(cfg, bdf)?;
    let at = |id| caps.iter().find(|c| c.id == id).map(|c| c.off);
    if let Some(exp) = at(CAP_PCIE) {
        if cfg.read32(bdf, exp + EXP_DEVCAP) & EXP_DEVCAP_FLR != 0 {
            out.push("flr".into());
        }
        ext_capabilities(cfg, bdf)?;
    }
    if let Some(af) = at(CAP_AF) {
        if cfg.read8(bdf, af + AF_CAP) & (AF_CAP_TP | AF_CAP_FLR) == AF_CAP_TP | AF_CAP_FLR {
            out.push("af_flr".into());
        }
    }
    if let Some(pm) = at(CAP_PM) {
        if cfg.read16(bdf, pm + PM_CTRL) & PM_CTRL_NO_SOFT_RESET == 0 {
            out.push("pm".into());
        }
    }
    if behind_bridge {
        out.push("bus".into());
    }
    Ok(out)
}

/// Lists the functions under `root` (normally `/sys/bus/pci/devices`), sorted.
pub fn list(root: &Path) -> io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(root)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let dir = e.path();
        let address = e.file_name().to_string_lossy().into_owned();
        let Ok(bytes) = fs::read(dir.join("config")) else {
            continue;
        };
        let mut cfg = Snapshot(bytes);
        let bdf = Bdf::new(0, 0, 0);
        let vendor = cfg.read16(bdf, VENDOR_ID);
        if vendor == 0xffff {
            continue;
        }
        let device = cfg.read16(bdf, DEVICE_ID);
        let class = cfg.read32(bdf, REVISION) >> 8;
        let header = cfg.read8(bdf, HEADER_TYPE) & 0x7f;
        let (vendor_name, device_name, class_name) = names(vendor, device, class);
        let group_link = dir.join("iommu_group");
        let iommu_group = link_name(&group_link).and_then(|n| n.parse().ok());
        let mut peers: Vec<String> = fs::read_dir(group_link.join("devices"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        peers.retain(|p| *p != address);
        peers.sort();
        let driver = link_name(&dir.join("driver"));
        // A function behind a bridge: its parent directory in the real device tree is a PCI function.
        let behind_bridge = fs::canonicalize(&dir)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|q| q.file_name())
                    .map(|n| n.to_string_lossy().contains(':') && n.to_string_lossy().contains('.'))
            })
            .unwrap_or(false);
        let from_cfg = resets_from_config(&mut cfg, bdf, behind_bridge);
        let resets = match fs::read_to_string(dir.join("reset_method")) {
            Ok(s) => s.split_whitespace().map(String::from).collect(),
            Err(_) => from_cfg.clone().unwrap_or_default(),
        };
        let verdict = if class >> 8 == 0x0600 {
            Verdict::No("host bridge".into())
        } else if class >> 8 == 0x0806 {
            Verdict::No("IOMMU".into())
        } else if header != 0 {
            Verdict::No("bridge or port, not an endpoint".into())
        } else if let Err(d) = from_cfg {
            Verdict::No(format!("config space defective: {d:?}"))
        } else if iommu_group.is_none() {
            Verdict::No("no IOMMU group (IOMMU off or the function not covered)".into())
        } else if peers.is_empty() {
            Verdict::Yes
        } else {
            Verdict::WithGroup(peers)
        };
        rows.push(Row {
            address,
            vendor,
            device,
            class,
            vendor_name,
            device_name,
            class_name,
            iommu_group,
            driver,
            resets,
            verdict,
        });
    }
    Ok(rows)
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Yes => "yes".into(),
        Verdict::WithGroup(p) => format!("with group: {}", p.join(" ")),
        Verdict::No(why) => format!("no: {why}"),
    }
}

/// A fixed-width table, one function a line.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<13} {:<9} {:<40} {:<6} {:<16} {}\n",
        "ADDRESS", "ID", "NAME", "GROUP", "RESETS", "ASSIGNABLE"
    );
    for r in rows {
        let mut name = format!("{} {}", r.vendor_name, r.device_name)
            .trim()
            .to_string();
        if name.is_empty() {
            name = r.class_name.clone();
        }
        if name.is_empty() {
            name = format!("class {:06x}", r.class);
        }
        let name: String = name.chars().take(40).collect();
        let group = r.iommu_group.map_or("-".into(), |g| g.to_string());
        let resets = if r.resets.is_empty() {
            "-".into()
        } else {
            r.resets.join(",")
        };
        out += &format!(
            "{:<13} {:04x}:{:04x} {:<40} {:<6} {:<16} {}\n",
            r.address,
            r.vendor,
            r.device,
            name,
            group,
            resets,
            verdict_text(&r.verdict)
        );
    }
    out
}

/// The rows as a JSON array.
pub fn json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let (assignable, why, with) = match &r.verdict {
                    Verdict::Yes => (true, None, vec![]),
                    Verdict::WithGroup(p) => (true, None, p.clone()),
                    Verdict::No(w) => (false, Some(w.clone()), vec![]),
                };
                json!({
                    "address": r.address,
                    "vendor": format!("{:04x}", r.vendor),
                    "device": format!("{:04x}", r.device),
                    "class": format!("{:06x}", r.class),
                    "vendor_name": r.vendor_name,
                    "device_name": r.device_name,
                    "class_name": r.class_name,
                    "iommu_group": r.iommu_group,
                    "driver": r.driver,
                    "resets": r.resets,
                    "assignable": assignable,
                    "assign_with": with,
                    "why_not": why,
                })
            })
            .collect(),
    )
}
