//! `sluice`: what a Xen administrator asks of a dom0 running Sluice's backends.
//!
//! Every path is read under a [`Root`] (`/` on a host, a fake directory in tests), so the
//! checks are host-testable without Xen.

pub mod doctor;
pub mod status;

use std::path::{Path, PathBuf};

/// The filesystem root the checks read (`/proc`, `/sys`, `/dev`, `/etc`, `/run` under it).
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    /// A root directory (`/` for the running host).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// True for the running host's own `/`.
    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// `abs` (an absolute path such as `/proc/1/comm`) under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    /// Running processes as (pid, command name from `/proc/<pid>/comm`), by pid.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.path("/proc")) else {
            return out;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                out.push((pid, comm.trim_end_matches('\n').to_string()));
            }
        }
        out.sort();
        out
    }

    /// The pids of processes with this command name (`comm` is cut at 15 bytes by Linux).
    pub fn pids_of(&self, name: &str) -> Vec<u32> {
        let short = &name[..name.len().min(15)];
        self.processes()
            .into_iter()
            .filter(|(_, c)| c == short)
            .map(|(p, _)| p)
            .collect()
    }
}

/// The systemd units the sluice-backends package installs.
/// (`sluice doctor` wants these enabled; sluice-netback's, [`NET_UNIT`], is optional.)
pub const UNITS: &[&str] = &["sluice-blkback.service", "sluice-consoleback.service"];

/// sluice-netback's unit, also installed by the package; enabled only on dom0s whose
/// vifs it serves (the kernel's xen-netback is the other choice).
pub const NET_UNIT: &str = "sluice-netback.service";

/// The hotplug scripts libxl runs for disks served by sluice-blkback and vifs served by
/// sluice-netback.
pub const HOTPLUG_SCRIPTS: &[&str] = &[
    "/etc/xen/scripts/block-userspace",
    "/etc/xen/scripts/vif-userspace",
];

/// The opt-in modprobe snippet that keeps the kernel's netback unloaded.
pub const NET_BLACKLIST_EXAMPLE: &str =
    "/usr/share/doc/sluice-backends/examples/sluice-blacklist-xen-netback.conf";

/// The opt-in modprobe snippet that keeps the kernel's blkback unloaded.
pub const BLACKLIST_EXAMPLE: &str =
    "/usr/share/doc/sluice-backends/examples/sluice-blacklist-xen-blkback.conf";
