//! [`Boot`]: one Xen boot with its dom0 daemons ([`Dom0Daemon`]) and guest steps, what
//! it needs in dom0; the standard steps the suites share ([`standard_steps`]).

use super::{BlockBackend, ConsoleBackend, GuestStep, GuestType, NetBackend, Workload};
use std::path::PathBuf;

/// A program started in dom0 after xenstored and before any guest.
#[derive(Debug, Clone)]
pub struct Dom0Daemon {
    /// Short name: the binary is `/sluice/bin/NAME` in dom0, its output goes to
    /// `/var/log/sluice/NAME.log` (dumped to the serial console at the end).
    pub name: String,
    /// The host binary (copied with its ldd libraries).
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// A userspace block backend: it runs only during steps whose disks are
    /// [`BlockBackend::Userspace`]; for kernel-blkback steps it is stopped and
    /// `xen-blkback.ko` is loaded (and unloaded again after), so both kinds of backend
    /// can take turns in one boot (same-boot A/B comparisons).
    pub serves_block: bool,
    /// A userspace net backend (`sluice-netback`): it runs only during steps whose vif
    /// is [`NetBackend::Userspace`]; for kernel-vif steps it is stopped and
    /// `xen-netback.ko` is loaded (and unloaded again after), as for block.
    pub serves_net: bool,
}

/// One Xen boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Names the run and log folders: `build/testbed-logs/NAME/`.
    pub name: String,
    pub console: ConsoleBackend,
    pub daemons: Vec<Dom0Daemon>,
    pub steps: Vec<GuestStep>,
    /// After the guest steps, dom0 runs the first [`Workload::Fio`]'s jobs directly on
    /// that disk's device: the ceiling the guests' numbers compare with (step `dom0`).
    pub fio_in_dom0: bool,
}

impl Boot {
    /// Checks a passing run reports (guest and host), see [`Workload::checks`].
    pub fn checks(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.workloads)
            .map(Workload::checks)
            .sum::<usize>()
            + self.group_checks()
    }

    /// Checks a passing run reports beyond its workloads' (one per group of steps run
    /// together: dom0's check of the block daemon, [`crate::together`]).
    pub fn group_checks(&self) -> usize {
        crate::together::groups(self).len()
    }

    /// Whether a guest runs fio ([`Workload::Fio`], [`Workload::Soak`], the crash
    /// workloads): the guests' initramfs then carries it.
    pub fn guests_run_fio(&self) -> bool {
        self.steps.iter().flat_map(|s| &s.workloads).any(|w| {
            matches!(
                w,
                Workload::Fio { .. }
                    | Workload::Soak { .. }
                    | Workload::CrashKill { .. }
                    | Workload::CrashDestroy { .. }
            )
        })
    }

    /// Whether a step runs [`Workload::SecondaryConsole`] (the guests then get
    /// `sluice-consfront.ko`, dom0 `sluice-console-add`).
    pub fn has_secondary_console(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.workloads.contains(&Workload::SecondaryConsole))
    }

    /// The first fio workload: (step index, disk, seconds).
    pub fn first_fio(&self) -> Option<(usize, usize, u32)> {
        self.steps.iter().enumerate().find_map(|(i, s)| {
            s.workloads.iter().find_map(|w| match w {
                Workload::Fio { disk, seconds } => Some((i, *disk, *seconds)),
                _ => None,
            })
        })
    }

    /// The block daemons that serve `step`'s userspace disks: the one it names
    /// ([`GuestStep::with_block_daemon`]), or else every [`Dom0Daemon::serves_block`]
    /// daemon that no step names.
    pub fn block_daemons(&self, step: &GuestStep) -> Vec<&Dom0Daemon> {
        let named = |d: &Dom0Daemon| {
            self.steps
                .iter()
                .any(|s| s.block_daemon.as_deref() == Some(&d.name))
        };
        self.daemons
            .iter()
            .filter(|d| d.serves_block)
            .filter(|d| match &step.block_daemon {
                Some(n) => &d.name == n,
                None => !named(d),
            })
            .collect()
    }

    /// The net daemons that serve `step`'s userspace vif: the one it names
    /// ([`GuestStep::with_net_daemon`]), or else every [`Dom0Daemon::serves_net`] daemon
    /// that no step names.
    pub fn net_daemons(&self, step: &GuestStep) -> Vec<&Dom0Daemon> {
        let named = |d: &Dom0Daemon| {
            self.steps
                .iter()
                .any(|s| s.net_daemon.as_deref() == Some(&d.name))
        };
        self.daemons
            .iter()
            .filter(|d| d.serves_net)
            .filter(|d| match &step.net_daemon {
                Some(n) => &d.name == n,
                None => !named(d),
            })
            .collect()
    }

    /// True when some disk is served by the kernel's blkback (so it gets loaded).
    /// Whether any step has a vif (dom0 then loads `tun` and `bridge` and makes
    /// [`NET_BRIDGE`]).
    pub fn has_vifs(&self) -> bool {
        self.steps.iter().any(|s| s.vif.is_some())
    }

    /// Whether a step measures its vif with iperf3 (guests and dom0 then get `iperf3`,
    /// dom0 runs `iperf3 -s`).
    pub fn has_net_perf(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.workloads)
            .any(|w| matches!(w, Workload::NetPerf { .. }))
    }

    /// Whether any step's vif is served by Linux's netback.
    pub fn needs_kernel_netback(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.vif.as_ref().map(|v| v.backend) == Some(NetBackend::Kernel))
    }

    pub fn needs_kernel_blkback(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.disks)
            .any(|d| d.backend == BlockBackend::KernelBlkback)
    }
}

/// Whether the guests' block frontend can be unloaded and loaded again with its disks
/// attached ([`Workload::ReloadFrontend`]): `SLUICE_TESTBED_BLKFRONT=sluice` (set by
/// `cargo xtask` when the guests run `sluice-blkfront.ko`). Stock `xen-blkfront` cannot:
/// xenbus pins its module while a device is bound, and after an unbind its device
/// stays Closed (its probe does not announce Initialising again), so the backend never
/// offers the disk anew without the toolstack.
pub fn guest_blkfront_reloads() -> bool {
    std::env::var("SLUICE_TESTBED_BLKFRONT").is_ok_and(|v| v == "sluice")
}

/// PV: console, raw pattern, discard, detach/re-attach (and a blkfront reload, see
/// [`guest_blkfront_reloads`]) on disk 0, ext4 on disk 1, a read-only disk 2. PVH: console, raw pattern on disk 0, ext4 on a disk with 4096-byte
/// sectors.
pub fn standard_steps(suffix: &str, backend: BlockBackend, restart: bool) -> Vec<GuestStep> {
    let disks = [backend.clone(), backend.clone()];
    let mut pv = vec![
        Workload::ReadOnly { disk: 2 },
        Workload::ConsoleRoundTrip,
        Workload::Pattern { disk: 0 },
        Workload::Discard { disk: 0 },
        Workload::DetachAttach { disk: 0 },
        Workload::Ext4 { disk: 1 },
    ];
    if restart {
        pv.push(Workload::RestartBackend { disk: 0 });
    }
    if guest_blkfront_reloads() {
        // Last: it takes every disk away for a moment.
        pv.push(Workload::ReloadFrontend { disk: 0 });
    }
    let pvh = [
        Workload::ConsoleRoundTrip,
        Workload::Pattern { disk: 0 },
        Workload::SectorSize { disk: 1 },
        Workload::Ext4 { disk: 1 },
    ];
    vec![
        GuestStep::new(
            &format!("pv-{suffix}"),
            GuestType::Pv,
            &[backend.clone(), backend.clone(), backend],
            &pv,
        )
        .with_readonly(2),
        GuestStep::new(&format!("pvh-{suffix}"), GuestType::Pvh, &disks, &pvh)
            .with_sector_size(1, 4096),
    ]
}
