//! Refuses a [`Boot`] the test bed cannot run as described, before anything is built.

use crate::scenario::{vdev, BlockBackend, Boot, ConsoleBackend, NetBackend, Workload};
use anyhow::{bail, Result};

pub(super) fn validate(boot: &Boot) -> Result<()> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    };
    if !ok(&boot.name) {
        bail!("boot name {:?}: use [a-z0-9-]", boot.name);
    }
    crate::together::validate(boot)?;
    let mut names = std::collections::HashSet::new();
    for s in &boot.steps {
        if !ok(&s.name) || !names.insert(&s.name) {
            bail!("step name {:?}: use unique [a-z0-9-] names", s.name);
        }
        if s.workloads.contains(&Workload::NetRestartBackend)
            && s.vif.as_ref().map(|v| v.backend) != Some(NetBackend::Userspace)
        {
            bail!(
                "step {}: restarting the net backend needs a userspace vif",
                s.name
            );
        }
        if s.workloads.contains(&Workload::NetReloadFrontend)
            && s.vif.as_ref().and_then(|v| v.module()).is_none()
        {
            bail!(
                "step {}: reloading the netfront needs a vif driven by a module of ours",
                s.name
            );
        }
        crate::net::validate_misbehaving(s)?;
        if s.vcpus == 0 || s.vcpus > 2 {
            bail!("step {}: 1 or 2 vCPUs (QEMU gives Xen 2 CPUs)", s.name);
        }
        let perf = s
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::NetPerf { .. }));
        let needs_vif = perf
            || s.workloads.iter().any(|w| {
                matches!(
                    w,
                    Workload::Net | Workload::NetDetachAttach | Workload::NetJumbo
                )
            });
        if crate::hostile_net::has(s)
            && s.vif.as_ref().map(|v| (v.backend, v.module().is_none()))
                != Some((NetBackend::Userspace, true))
        {
            bail!(
                "step {}: the hostile netfront needs a userspace vif with xen-netfront",
                s.name
            );
        }
        if needs_vif && s.vif.is_none() {
            bail!(
                "step {}: the net workload needs a vif (GuestStep::with_vif)",
                s.name
            );
        }
        if s.disks.len() > 8 {
            bail!("step {}: at most 8 disks", s.name);
        }
        if s.disks
            .iter()
            .any(|d| Some(&d.backend) != s.block_backend().as_ref())
        {
            bail!(
                "step {}: kernel blkback and a userspace backend cannot serve disks of one guest",
                s.name
            );
        }

        for (di, d) in s.disks.iter().enumerate() {
            if d.size_mib < 16 {
                bail!("step {}: disks need at least 16 MiB", s.name);
            }
            if ![512, 4096].contains(&d.sector_size) {
                bail!(
                    "step {}: disk {di}: sector size {} (512 or 4096)",
                    s.name,
                    d.sector_size
                );
            }
        }
        for (di, d) in s.disks.iter().enumerate() {
            if let Some((os, od)) = d.of {
                let earlier = boot.steps.iter().position(|o| o.name == s.name);
                let src = boot.steps.get(os).and_then(|o| o.disks.get(od));
                if earlier.is_none_or(|me| os >= me)
                    || src.is_none_or(|src| src.of.is_some() || src.size_mib != d.size_mib)
                {
                    bail!(
                        "step {}: {} must be an earlier step's own disk of the same size",
                        s.name,
                        vdev(di)
                    );
                }
            }
        }
        let mut written: Vec<(usize, u64, u64)> = Vec::new();
        let mut ext4_disks = Vec::new();
        if s.kernel.is_some() && !(s.workloads.is_empty() && s.disks.is_empty()) {
            bail!(
                "step {}: a custom kernel runs no workloads and has no disks",
                s.name
            );
        }
        for w in &s.workloads {
            let Some(disk) = w.disk() else { continue };
            let Some(d) = s.disks.get(disk) else {
                bail!("step {}: workload on disk {disk} it does not have", s.name);
            };
            if d.readonly != matches!(w, Workload::ReadOnly { .. })
                && !matches!(w, Workload::SectorSize { .. } | Workload::SeqRead { .. })
            {
                bail!(
                    "step {}: {} on {} (read-only disks take ReadOnly, SectorSize, SeqRead; ReadOnly needs one)",
                    s.name,
                    w.id(),
                    vdev(disk)
                );
            }
            if matches!(w, Workload::RestartBackend { .. }) && d.backend != BlockBackend::Userspace
            {
                bail!("step {}: {} needs a userspace backend", s.name, w.id());
            }
            if matches!(
                w,
                Workload::Ext4 { .. }
                    | Workload::Fio { .. }
                    | Workload::CrashKill { .. }
                    | Workload::CrashDestroy { .. }
                    | Workload::CrashVerify { .. }
            ) {
                ext4_disks.push(disk);
            }
            if matches!(
                w,
                Workload::CrashKill { .. } | Workload::CrashDestroy { .. }
            ) && d.backend != BlockBackend::Userspace
            {
                bail!("step {}: {} needs a userspace backend", s.name, w.id());
            }
            if matches!(w, Workload::CrashDestroy { .. }) && s.workloads.len() != 1 {
                bail!(
                    "step {}: {} must be its step's only workload",
                    s.name,
                    w.id()
                );
            }
            if let Workload::MisbehavingBackend { .. } = w {
                if d.backend != BlockBackend::Userspace || s.block_daemon.is_none() {
                    bail!(
                        "step {}: {} needs a userspace disk and the misbehaving daemon (GuestStep::with_block_daemon)",
                        s.name,
                        w.id()
                    );
                }
                if s.workloads
                    .iter()
                    .filter(|o| o.disk() == Some(disk))
                    .count()
                    != 1
                {
                    bail!("step {}: {} must be alone on its disk", s.name, w.id());
                }
            }
            if let Workload::HostileFrontend { .. } = w {
                if d.backend != BlockBackend::Userspace {
                    bail!("step {}: {} needs a userspace backend", s.name, w.id());
                }
                if s.blkfront_at_boot {
                    bail!(
                        "step {}: {} needs a step without blkfront at boot (GuestStep::without_blkfront_at_boot)",
                        s.name,
                        w.id()
                    );
                }
                // Its steady device's writes on another disk.
                if let Some(o) = s.hostile_steady_disk(disk) {
                    let start = w
                        .regions(s.disks[o].size_mib << 11)
                        .and_then(|r| r.first().copied())
                        .map_or(0, |(a, _)| a);
                    written.push((o, start, crate::scenario::HOSTILE_STEADY_SECTORS));
                }
                // It loads blkfront: the workloads on other disks come after it.
                if s.workloads.iter().find_map(Workload::disk) != Some(disk)
                    || s.workloads
                        .iter()
                        .filter(|o| o.disk() == Some(disk))
                        .count()
                        != 1
                {
                    bail!(
                        "step {}: {} must be the first disk workload, and alone on its disk",
                        s.name,
                        w.id()
                    );
                }
            }
            for (start, len) in w.regions(d.size_mib << 11).unwrap_or_default() {
                if d.size_mib < 64 && !matches!(w, Workload::Pattern { .. }) {
                    bail!(
                        "step {}: {} needs a disk of at least 64 MiB",
                        s.name,
                        w.id()
                    );
                }
                if written
                    .iter()
                    .any(|&(k, a, l)| k == disk && start < a + l && a < start + len)
                {
                    bail!(
                        "step {}: {} overlaps another workload's sectors",
                        s.name,
                        w.id()
                    );
                }
                written.push((disk, start, len));
            }
        }
        if let Some(&(disk, ..)) = written.iter().find(|(k, ..)| ext4_disks.contains(k)) {
            bail!(
                "step {}: ext4 or fio takes all of {}; other writers need another disk",
                s.name,
                vdev(disk)
            );
        }
    }
    for s in &boot.steps {
        if matches!(s.workloads.iter().position(|w| *w == Workload::UnloadFrontend), Some(i) if i + 1 != s.workloads.len())
        {
            bail!("step {}: blkfront-unload must be its last workload", s.name);
        }
        if let Some(n) = &s.block_daemon {
            if !boot.daemons.iter().any(|d| d.serves_block && &d.name == n) {
                bail!(
                    "step {}: block daemon {n:?} is not a serves_block daemon of the boot",
                    s.name
                );
            }
        }
        if let Some(n) = &s.net_daemon {
            if !boot.daemons.iter().any(|d| d.serves_net && &d.name == n) {
                bail!(
                    "step {}: net daemon {n:?} is not a serves_net daemon of the boot",
                    s.name
                );
            }
        }
        for a in &s.blkfront_args {
            if !a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_=,.-".contains(c))
            {
                bail!(
                    "step {}: blkfront argument {a:?}: use [A-Za-z0-9_=,.-]",
                    s.name
                );
            }
        }
    }
    for d in &boot.daemons {
        if !ok(&d.name) {
            bail!("daemon name {:?}: use [a-z0-9-]", d.name);
        }
    }
    if boot.console == ConsoleBackend::Userspace && boot.daemons.is_empty() {
        bail!("a userspace console backend needs its daemon in Boot::daemons");
    }
    Ok(())
}
