//! `sluice doctor`: checks a dom0 for what Sluice's backends need; each problem comes
//! with its fix.

use crate::{Root, BLACKLIST_EXAMPLE, HOTPLUG_SCRIPTS, NET_BLACKLIST_EXAMPLE, NET_UNIT, UNITS};
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;

/// One check's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The check's name (`--only` takes it).
    pub check: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it (problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in the order they run, with what each looks at.
pub const CHECKS: &[(&str, &str)] = &[
    ("xenstored", "xenstored (or oxenstored) is running"),
    ("gntdev", "/dev/xen/gntdev exists (grant mapping)"),
    ("evtchn", "/dev/xen/evtchn exists (event channels)"),
    (
        "kernel-blkback",
        "the kernel's xen_blkback module is not loaded",
    ),
    (
        "kernel-netback",
        "the kernel's xen_netback is not loaded while sluice-netback is enabled, \
         running, or this check is named (--only kernel-netback: the unit's ExecStartPre)",
    ),
    (
        "xenconsoled",
        "xenconsoled is not running next to sluice-consoleback",
    ),
    (
        "hotplug-scripts",
        "libxl's block-userspace and vif-userspace hotplug scripts are installed",
    ),
    (
        "units",
        "the sluice-backends systemd units are installed and enabled",
    ),
];

/// Runs the named checks (all when `only` is empty); unknown names are an error.
pub fn run(root: &Root, only: &[String]) -> Result<Vec<Finding>, String> {
    for name in only {
        if !CHECKS.iter().any(|(c, _)| c == name) {
            let known: Vec<&str> = CHECKS.iter().map(|(c, _)| *c).collect();
            return Err(format!(
                "unknown check {name:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    let mut out = Vec::new();
    for (name, _) in CHECKS {
        if only.is_empty() || only.iter().any(|o| o == name) {
            out.push(check(root, name, !only.is_empty()));
        }
    }
    Ok(out)
}

fn ok(check: &'static str, detail: String) -> Finding {
    Finding {
        check,
        ok: true,
        detail,
        fix: None,
    }
}

/// The kernel's `xen_<kind>` is loaded while sluice-<kind> should serve `backend/<dir>`.
fn kernel_backend_loaded(check: &'static str, kind: &str, dir: &str, blacklist: &str) -> Finding {
    problem(
        check,
        format!(
            "the kernel's xen_{kind} is loaded: it watches backend/{dir} too, \
             so sluice-{kind} must not run next to it"
        ),
        format!(
            "shut down the guests it serves, `rmmod xen_{kind}`; to keep it \
             out at boot: `cp {blacklist} /etc/modprobe.d/`"
        ),
    )
}

fn problem(check: &'static str, detail: String, fix: String) -> Finding {
    Finding {
        check,
        ok: false,
        detail,
        fix: Some(fix),
    }
}

fn check(root: &Root, name: &'static str, named: bool) -> Finding {
    match name {
        "xenstored" => {
            let pids: Vec<u32> = ["xenstored", "oxenstored"]
                .iter()
                .flat_map(|n| root.pids_of(n))
                .collect();
            match pids.first() {
                Some(p) => ok(name, format!("running (pid {p})")),
                None => problem(
                    name,
                    "no xenstored process".into(),
                    "boot Xen with this kernel as dom0 and start the Xen tools: \
                     `systemctl start xen` (Debian's /etc/init.d/xen) or \
                     `systemctl start xenstored` (upstream units); \
                     Debian package: xen-system-amd64"
                        .into(),
                ),
            }
        }
        "gntdev" | "evtchn" => {
            let dev = format!("/dev/xen/{name}");
            if root.path(&dev).exists() {
                ok(name, format!("{dev} present"))
            } else {
                problem(
                    name,
                    format!("{dev} missing"),
                    format!(
                        "`modprobe xen_{name}` (and add `xen_{name}` to /etc/modules); \
                         only a Xen dom0 has it"
                    ),
                )
            }
        }
        "kernel-blkback" => {
            if root.path("/sys/module/xen_blkback").exists() {
                kernel_backend_loaded(name, "blkback", "vbd", BLACKLIST_EXAMPLE)
            } else {
                ok(name, "xen_blkback not loaded".into())
            }
        }
        "kernel-netback" => {
            let ours =
                named || !root.pids_of("sluice-netback").is_empty() || unit_enabled(root, NET_UNIT);
            let loaded = root.path("/sys/module/xen_netback").exists();
            if loaded && !ours {
                ok(
                    name,
                    "xen_netback serves vifs (sluice-netback neither enabled nor running)".into(),
                )
            } else if loaded {
                kernel_backend_loaded(name, "netback", "vif", NET_BLACKLIST_EXAMPLE)
            } else {
                ok(name, "xen_netback not loaded".into())
            }
        }
        "xenconsoled" => {
            let xc = root.pids_of("xenconsoled");
            let ours = !root.pids_of("sluice-consoleback").is_empty()
                || unit_enabled(root, "sluice-consoleback.service");
            match (xc.first(), ours) {
                (Some(p), true) => problem(
                    name,
                    format!("xenconsoled (pid {p}) runs while sluice-consoleback is enabled"),
                    "`systemctl restart sluice-consoleback` (its unit stops xenconsoled \
                     first), or `systemctl disable --now sluice-consoleback` to keep \
                     xenconsoled"
                        .into(),
                ),
                (Some(p), false) => ok(name, format!("xenconsoled serves consoles (pid {p})")),
                (None, _) => ok(name, "xenconsoled not running".into()),
            }
        }
        "hotplug-scripts" => {
            let mut missing = Vec::new();
            for s in HOTPLUG_SCRIPTS {
                let exec = std::fs::metadata(root.path(s))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false);
                if !exec {
                    missing.push(*s);
                }
            }
            if missing.is_empty() {
                ok(name, format!("{} present", HOTPLUG_SCRIPTS.join(", ")))
            } else {
                problem(
                    name,
                    format!("missing or not executable: {}", missing.join(", ")),
                    "install the sluice-backends package (`apt install ./sluice-backends_*.deb`)"
                        .into(),
                )
            }
        }
        "units" => {
            let mut bad = Vec::new();
            let mut fixes = Vec::new();
            for u in UNITS {
                let installed = [
                    "/lib/systemd/system",
                    "/usr/lib/systemd/system",
                    "/etc/systemd/system",
                ]
                .iter()
                .any(|d| root.path(&format!("{d}/{u}")).exists());
                if !installed {
                    bad.push(format!("{u} not installed"));
                    fixes.push("install the sluice-backends package".to_string());
                } else if !unit_enabled(root, u) {
                    bad.push(format!("{u} not enabled"));
                    fixes.push(format!("`systemctl enable --now {u}`"));
                }
            }
            if bad.is_empty() {
                ok(name, format!("{} enabled", UNITS.join(", ")))
            } else {
                fixes.dedup();
                problem(name, bad.join("; "), fixes.join("; "))
            }
        }
        _ => unreachable!("check names come from CHECKS"),
    }
}

/// True when `systemctl enable` linked the unit into a target's `.wants`.
fn unit_enabled(root: &Root, unit: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(root.path("/etc/systemd/system")) else {
        return false;
    };
    dir.flatten().any(|e| {
        e.file_name().to_string_lossy().ends_with(".wants")
            && e.path().join(unit).symlink_metadata().is_ok()
    })
}
