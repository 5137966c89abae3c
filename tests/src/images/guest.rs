//! The guests' initramfs (one for every step of a boot): busybox, the guest kernel's
//! modules, the step scripts that run each workload's check, its data files, and the
//! host checks each workload registers.

use super::guest_sh::{FIO_JOBS, GUEST_CHECKS, GUEST_INIT};
use super::staging::which;
use super::{guest_ip, seed, HostCheck, StepHostChecks};
use crate::initramfs::Initramfs;
use crate::kernel::HostKernel;
use crate::pattern::{pattern, pattern_sectors, sha256_hex, PATTERN_LEN};
use crate::scenario::{vdev, Boot, Workload};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Guest kernel modules.
/// Guest kernel modules. `xen-evtchn` and `xen-gntalloc` give a userspace frontend
/// (`sluice-hostile-blkfront`) `/dev/xen/evtchn` and `/dev/xen/gntalloc`.
pub(super) const GUEST_MODULES: &[&str] = &[
    "xen-blkfront",
    "xen-netfront",
    "crc32c_generic",
    "ext4",
    "xen-evtchn",
    "xen-gntalloc",
];

/// Where the hostile frontend lives in the guest.
pub const HOSTILE_BIN: &str = "/sbin/sluice-hostile-blkfront";

/// `sluice-consfront.ko` as `cargo xtask test --suite linux-modules` builds it for the
/// host's kernel (the guests' kernel).
pub fn secondary_console_module() -> PathBuf {
    crate::paths::build_dir().join("linux-modules/sluice-consfront/sluice-consfront.ko")
}

/// The guests' initramfs at `guest_initrd` (one for all steps: /init picks the step from
/// the command line); returns each step's host checks.
pub(super) fn guest_initramfs(
    boot: &Boot,
    kernel: &HostKernel,
    dir: &Path,
    guest_initrd: &Path,
) -> Result<StepHostChecks> {
    let mut host_checks = Vec::new();
    let g = Initramfs::new(&dir.join("domu-root"))?;
    g.busybox()?;
    for prog in ["mke2fs", "e2fsck"] {
        let p = which(prog)?;
        g.elf(&p, &format!("/sbin/{prog}"), &[])?;
    }
    g.symlink("/sbin/mke2fs", "/sbin/mkfs.ext4")?;
    if boot.guests_run_fio() {
        g.elf(&which("fio")?, "/usr/bin/fio", &[])?;
    }
    if boot.has_net_perf() {
        g.elf(&which("iperf3")?, "/usr/bin/iperf3", &[])?;
    }
    if boot.has_secondary_console() {
        let ko = secondary_console_module();
        g.file(&ko, "/lib/modules/sluice-consfront.ko")
            .with_context(|| {
                format!(
                    "{}: build it with `cargo xtask test --suite linux-modules`",
                    ko.display()
                )
            })?;
    }
    if Path::new("/etc/mke2fs.conf").exists() {
        g.file(Path::new("/etc/mke2fs.conf"), "/etc/mke2fs.conf")?;
    }
    let mut list = String::new();
    for ko in kernel.modules_in_load_order(GUEST_MODULES)? {
        let name = ko.file_name().unwrap().to_string_lossy().to_string();
        g.file(&ko, &format!("/lib/modules/{name}"))?;
        writeln!(list, "/lib/modules/{name}")?;
    }
    g.bytes("/modules.list", list.as_bytes(), 0o644)?;
    if boot
        .steps
        .iter()
        .flat_map(|s| &s.workloads)
        .any(|w| matches!(w, Workload::HostileFrontend { .. }))
    {
        let bin =
            crate::cargo_bin::cargo_binary("sluice-hostile-blkfront", "sluice-hostile-blkfront")?;
        g.elf(&bin, HOSTILE_BIN, &[])?;
    }
    if boot.steps.iter().any(crate::hostile_net::has) {
        let bin =
            crate::cargo_bin::cargo_binary("sluice-hostile-netfront", "sluice-hostile-netfront")?;
        g.elf(&bin, crate::hostile_net::HOSTILE_NET_BIN, &[])?;
    }
    g.bytes("/init", GUEST_INIT.as_bytes(), 0o755)?;
    g.bytes(
        "/lib/sluice-checks.sh",
        format!(
            "{GUEST_CHECKS}{}{}{}{}{}{}{}",
            crate::soak::GUEST_CHECK_SOAK,
            crate::net::GUEST_CHECK_NET_RELOAD,
            crate::net::GUEST_CHECK_NET_PERF,
            crate::net::GUEST_CHECK_NET_REATTACH,
            crate::net::GUEST_CHECK_NET_JUMBO,
            crate::net::GUEST_CHECK_NET_MISBEHAVING,
            crate::hostile_net::GUEST_CHECK_HOSTILE_NET
        )
        .as_bytes(),
        0o644,
    )?;
    g.bytes("/lib/sluice-fio.sh", FIO_JOBS.as_bytes(), 0o644)?;
    for step in &boot.steps {
        let mut script = String::new();
        let mut checks = Vec::new();
        // The step's index: its guest address on dom0's bridge.
        let idx = boot
            .steps
            .iter()
            .position(|s| s.name == step.name)
            .unwrap_or(0);
        for w in &step.workloads {
            let id = w.id();
            // The disk the workload uses (console round trip: none, 0 is unused).
            let disk = w.disk().unwrap_or(0);
            let image = dir.join(format!("{}-{}.img", step.name, vdev(disk)));
            let dev = format!("/dev/{}", vdev(disk));
            // A 1 MiB data file in the guest (distinct per workload), its sha256.
            let data_file = |tag: &str| -> Result<(String, String, Vec<u8>)> {
                let data = pattern(
                    &format!("{}/{id}{tag}", seed(boot, step, disk)),
                    PATTERN_LEN,
                );
                let file = format!("/data/{}-{id}{tag}.bin", step.name);
                g.bytes(&file, &data, 0o644)?;
                Ok((file, sha256_hex(&data), data))
            };
            // The first sector of the workload's (first) region.
            let region_start = || -> u64 {
                w.regions(step.disks[disk].size_mib << 11)
                    .expect("a writing workload has regions")[0]
                    .0
            };
            let pattern_check = |data: Vec<u8>, sectors: Vec<u64>| HostCheck::Pattern {
                image: image.clone(),
                data,
                sectors,
            };
            write!(script, "id={id}; ")?;
            match w {
                Workload::ConsoleRoundTrip => {
                    writeln!(script, "(check_roundtrip); report $id $?")?;
                }
                Workload::SecondaryConsole => {
                    writeln!(script, "(check_secondary_console); report $id $?")?;
                }
                Workload::SeqRead { mib, rounds, .. } => {
                    writeln!(script, "(check_read {dev} {mib} {rounds}); report $id $?")?;
                }
                Workload::Pattern { disk } => {
                    let (file, sha, data) = data_file("")?;
                    let sectors = pattern_sectors(step.disks[*disk].size_mib);
                    writeln!(
                        script,
                        "(check_pattern {dev} {file} {sha} {} {} {}); report $id $?",
                        sectors[0], sectors[1], sectors[2]
                    )?;
                    checks.push((id, pattern_check(data, sectors.to_vec())));
                }
                Workload::Ext4 { .. } => {
                    let (file, sha, data) = data_file("")?;
                    writeln!(script, "(check_ext4 {dev} {file} {sha}); report $id $?")?;
                    checks.push((id, HostCheck::Ext4 { image, data }));
                }
                Workload::Discard { .. } => {
                    let (file, sha, data) = data_file("")?;
                    let s = region_start();
                    writeln!(
                        script,
                        "(check_discard {dev} {file} {sha} {s}); report $id $?"
                    )?;
                    checks.push((
                        format!("{id}/hole"),
                        HostCheck::Hole {
                            image: image.clone(),
                            sector: s,
                            count: 4 << 11,
                        },
                    ));
                    checks.push((
                        format!("{id}/kept"),
                        pattern_check(data, vec![s + (4 << 11)]),
                    ));
                }
                Workload::DetachAttach { .. } => {
                    let (file, sha, data) = data_file("")?;
                    let s = region_start();
                    writeln!(
                        script,
                        "(check_reattach {dev} {file} {sha} {s}); report $id $?"
                    )?;
                    checks.push((id, pattern_check(data, vec![s])));
                }
                Workload::RestartBackend { .. } => {
                    let (f1, sha1, d1) = data_file("-before")?;
                    let (f2, sha2, d2) = data_file("-after")?;
                    let s = region_start();
                    let (s1, s2) = (s, s + (2 << 11));
                    writeln!(
                        script,
                        "(check_backend_restart {dev} {f1} {sha1} {s1} {f2} {sha2} {s2}); report $id $?"
                    )?;
                    checks.push((format!("{id}/before"), pattern_check(d1, vec![s1])));
                    checks.push((format!("{id}/after"), pattern_check(d2, vec![s2])));
                }
                Workload::ReloadFrontend { .. } => {
                    let (file, sha, data) = data_file("")?;
                    let s = region_start();
                    writeln!(
                        script,
                        "(check_frontend_reload {dev} {file} {sha} {s}); report $id $?"
                    )?;
                    checks.push((id, pattern_check(data, vec![s])));
                }
                Workload::Fio { seconds, .. } => {
                    writeln!(script, "(check_fio {dev} {seconds}); report $id $?")?;
                }
                Workload::Soak { seconds, .. } => {
                    let slack = crate::run::limit(crate::soak::SOAK_SLACK_SECS).as_secs();
                    writeln!(
                        script,
                        "(check_soak {dev} {seconds} {slack}); report $id $?"
                    )?;
                }
                Workload::CrashKill { .. } => {
                    writeln!(script, "(check_crash_kill {dev}); report $id $?")?;
                }
                Workload::CrashDestroy { .. } => {
                    writeln!(script, "(check_crash_destroy {dev}); report $id $?")?;
                }
                Workload::CrashVerify { .. } => {
                    writeln!(script, "(check_crash_verify {dev}); report $id $?")?;
                }
                Workload::ReadOnly { .. } => {
                    writeln!(script, "(check_read_only {dev}); report $id $?")?;
                    checks.push((
                        id,
                        HostCheck::Hole {
                            image,
                            sector: 0,
                            count: step.disks[disk].size_mib << 11,
                        },
                    ));
                }
                Workload::SectorSize { disk } => {
                    writeln!(
                        script,
                        "(check_sector_size {dev} {}); report $id $?",
                        step.disks[*disk].sector_size
                    )?;
                }
                Workload::MisbehavingBackend { mode, .. } => {
                    // Bound on the failing write: the step's io_timeout plus slack.
                    let bound = crate::run::limit(60).as_secs();
                    writeln!(
                        script,
                        "(check_misbehaving {dev} {} '{}' {bound}); report $id $?",
                        mode.name(),
                        mode.log_line()
                    )?;
                }
                Workload::Net => {
                    writeln!(
                        script,
                        "(check_net {} {} {}); report $id $?",
                        guest_ip(idx),
                        crate::scenario::NET_DOM0_IP,
                        step.vcpus
                    )?;
                }
                Workload::NetReloadFrontend => {
                    let (ko, module) = step
                        .vif
                        .as_ref()
                        .and_then(|v| v.module().map(|(_, m)| m))
                        .and_then(|m| Some((crate::net::guest_module_path(step)?, m)))
                        .context("validated: a reload step's vif has a module")?;
                    writeln!(
                        script,
                        "(check_net_reload {} {} {ko} {module} {}); report $id $?",
                        guest_ip(idx),
                        crate::scenario::NET_DOM0_IP,
                        step.vcpus
                    )?;
                }
                Workload::NetRestartBackend => {
                    writeln!(
                        script,
                        "(check_net_restart {} {}); report $id $?",
                        guest_ip(idx),
                        crate::scenario::NET_DOM0_IP
                    )?;
                }
                Workload::HostileNetfront => {
                    writeln!(
                        script,
                        "{}",
                        crate::hostile_net::guest_line(idx, &guest_ip(idx))
                    )?;
                }
                Workload::NetDetachAttach => {
                    writeln!(
                        script,
                        "(check_net_reattach {} {} {}); report $id $?",
                        guest_ip(idx),
                        crate::scenario::NET_DOM0_IP,
                        step.vcpus
                    )?;
                }
                Workload::NetJumbo => {
                    writeln!(
                        script,
                        "(check_net_jumbo {} {} {}); report $id $?",
                        guest_ip(idx),
                        crate::scenario::NET_DOM0_IP,
                        step.vcpus
                    )?;
                }
                Workload::NetPerf { seconds } => {
                    writeln!(
                        script,
                        "(check_net_perf {} {} {} {seconds}); report $id $?",
                        guest_ip(idx),
                        crate::scenario::NET_DOM0_IP,
                        step.vcpus
                    )?;
                }
                Workload::NetMisbehavingBackend { mode } => {
                    writeln!(
                        script,
                        "{}",
                        crate::net::misbehaving_line(idx, step, *mode)?
                    )?;
                }
                Workload::UnloadFrontend => {
                    let bound = crate::run::limit(60).as_secs();
                    writeln!(script, "(check_unload {bound}); report $id $?")?;
                }
                Workload::HostileFrontend { disk } => {
                    let (file, _, data) = data_file("")?;
                    let s = region_start();
                    // xvd* device ids: 202 << 8 | disk << 4.
                    let devid = (202 << 8) | (disk << 4);
                    let scale = crate::run::limit(1).as_secs_f64();
                    // Another disk kept busy during the attack, at the same region.
                    let steady = match step.hostile_steady_disk(*disk) {
                        Some(o) => format!(
                            "{} {}",
                            (202 << 8) | (o << 4),
                            w.regions(step.disks[o].size_mib << 11)
                                .and_then(|r| r.first().copied())
                                .map_or(0, |(s, _)| s)
                        ),
                        None => String::new(),
                    };
                    writeln!(
                        script,
                        "(check_hostile {dev} {devid} {file} {s} {scale} {steady}); report $id $?"
                    )?;
                    checks.push((
                        format!("{id}/image"),
                        HostCheck::OnlyWritten {
                            image: image.clone(),
                            size: step.disks[*disk].size_mib << 20,
                            sector: s,
                            data: data[..crate::scenario::HOSTILE_WRITE_BYTES as usize].to_vec(),
                        },
                    ));
                }
            }
        }
        // Each hostile frontend adds one check dom0 makes (its log lines).
        let dom0_checks = step
            .workloads
            .iter()
            .filter(|w| {
                matches!(
                    w,
                    Workload::HostileFrontend { .. } | Workload::HostileNetfront
                )
            })
            .count();
        debug_assert_eq!(
            checks.len() + step.workloads.len() + dom0_checks,
            step.workloads.iter().map(Workload::checks).sum::<usize>(),
            "Workload::checks disagrees with the host checks registered here"
        );
        g.bytes(
            &format!("/steps/{}.sh", step.name),
            script.as_bytes(),
            0o644,
        )?;
        if !step.blkfront_at_boot {
            g.bytes(&format!("/steps/{}.noblkfront", step.name), b"", 0o644)?;
        }
        if let Some(ko) = &step.blkfront_module {
            // /init and the checks load this one instead of the kernel's blkfront.
            let Some(name) = ko.file_name() else {
                bail!(
                    "step {}: blkfront module {} is no file",
                    step.name,
                    ko.display()
                );
            };
            let at = format!("/lib/modules/step-{}-{}", step.name, name.to_string_lossy());
            g.file(ko, &at)
                .with_context(|| format!("blkfront module {}", ko.display()))?;
            g.bytes(
                &format!("/steps/{}.blkfront", step.name),
                at.as_bytes(),
                0o644,
            )?;
        }
        if let (Some((ko, _)), Some(at)) = (
            step.vif.as_ref().and_then(|v| v.module()),
            crate::net::guest_module_path(step),
        ) {
            // /init loads this one instead of the kernel's xen-netfront.
            g.file(ko, &at)
                .with_context(|| format!("netfront module {}", ko.display()))?;
            g.bytes(
                &format!("/steps/{}.netfront", step.name),
                at.as_bytes(),
                0o644,
            )?;
        }
        if !step.blkfront_args.is_empty() {
            g.bytes(
                &format!("/steps/{}.blkfront-args", step.name),
                step.blkfront_args.join(" ").as_bytes(),
                0o644,
            )?;
        }
        host_checks.push((step.name.clone(), checks));
    }
    g.pack(guest_initrd)?;
    Ok(host_checks)
}
