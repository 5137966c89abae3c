//! Turns a [`Boot`] into what QEMU needs: the dom0 initramfs (Xen toolstack, kernel
//! modules, daemons, one script and one `xl` config per guest step, the guest kernel
//! and initramfs) and one raw image per guest disk.

use crate::initramfs::{Initramfs, LIB_DIR};
use crate::kernel::HostKernel;
use crate::paths::{kernel_cache_dir, run_dir};
use crate::pattern::{pattern, pattern_sectors, sha256_hex, PATTERN_LEN};
use crate::scenario::{
    vdev, BlockBackend, Boot, ConsoleBackend, Disk, GuestStep, GuestType, NetBackend, Workload,
};
use crate::serial::VirtioDisk;
use crate::xenpkgs::XenTree;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Xen tools dom0 needs, from the tools dir of the package tree.
const XEN_TOOLS: &[&str] = &[
    "xl",
    "xenstored",
    "xenconsoled",
    "xenconsole",
    "xen-init-dom0",
    "libxl-save-helper",
    "lsevtchn",
];

/// xenstore-utils programs (one binary under several names).
const XENSTORE_TOOLS: &[&str] = &[
    "xenstore",
    "xenstore-read",
    "xenstore-write",
    "xenstore-list",
    "xenstore-ls",
    "xenstore-rm",
    "xenstore-exists",
    "xenstore-chmod",
    "xenstore-watch",
];

/// dom0 kernel modules, in load order (dependencies are added from modules.dep).
const DOM0_MODULES: &[&str] = &[
    "xen-privcmd",
    "xenfs",
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "loop",
    "virtio_pci",
    "virtio_blk",
];

/// Guest kernel modules.
/// Guest kernel modules. `xen-evtchn` and `xen-gntalloc` give a userspace frontend
/// (`sluice-hostile-blkfront`) `/dev/xen/evtchn` and `/dev/xen/gntalloc`.
const GUEST_MODULES: &[&str] = &[
    "xen-blkfront",
    "xen-netfront",
    "crc32c_generic",
    "ext4",
    "xen-evtchn",
    "xen-gntalloc",
];

/// Where the hostile frontend lives in the guest.
pub const HOSTILE_BIN: &str = "/sbin/sluice-hostile-blkfront";

/// dom0 modules for guests' vifs: the taps sluice-netback makes and the bridge.
const DOM0_NET_MODULES: &[&str] = &["tun", "bridge"];

/// The hotplug script for vifs served by a userspace backend.
pub const USERSPACE_VIF_SCRIPT: &str = "vif-userspace";

/// The guest address of step `step_idx` on dom0's bridge.
pub fn guest_ip(step_idx: usize) -> String {
    format!("10.99.0.{}", 10 + step_idx)
}

/// The no-op hotplug script for disks served by a userspace backend.
pub const USERSPACE_BLOCK_SCRIPT: &str = "block-userspace";

/// What the host verifies in a disk image after the run.
#[derive(Debug, Clone)]
pub enum HostCheck {
    Pattern {
        image: PathBuf,
        data: Vec<u8>,
        sectors: Vec<u64>,
    },
    Ext4 {
        image: PathBuf,
        data: Vec<u8>,
    },
    /// `count` sectors at `sector` were discarded: a hole reading as zeroes.
    Hole {
        image: PathBuf,
        sector: u64,
        count: u64,
    },
    /// The image is `size` bytes, holds `data` at `sector` and zeroes everywhere else.
    OnlyWritten {
        image: PathBuf,
        size: u64,
        sector: u64,
        data: Vec<u8>,
    },
}

/// Everything built for one boot.
#[derive(Debug)]
pub struct Prepared {
    pub xen: PathBuf,
    pub kernel: HostKernel,
    pub dom0_initrd: PathBuf,
    /// Raw images as dom0's virtio disks, in QEMU order.
    pub disks: Vec<VirtioDisk>,
    /// Per step: the checks the guest must report and the host checks to run after.
    pub host_checks: Vec<(String, Vec<(String, HostCheck)>)>,
}

/// The seed of a disk's test data.
fn seed(boot: &Boot, step: &GuestStep, disk: usize) -> String {
    format!("{}/{}/{}", boot.name, step.name, disk)
}

/// The virtio serial (and `/dev/NAME` link in dom0) of disk `disk` of step `step`.
pub fn disk_serial(step_idx: usize, disk: usize) -> String {
    format!("sluice-s{step_idx}d{disk}")
}

/// Builds everything; `progress` gets one line per finished part.
pub fn prepare(boot: &Boot, xen: &XenTree, kernel: &HostKernel) -> Result<Prepared> {
    validate(boot)?;
    let dir = run_dir(&boot.name);
    fs::create_dir_all(&dir)?;
    let xen_bin = xen.hypervisor()?;

    // Guest initramfs (one for all steps: /init picks the step from the command line).
    let guest_initrd = dir.join("domu.cpio");
    let mut host_checks = Vec::new();
    {
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
            let bin = crate::cargo_bin::cargo_binary(
                "sluice-hostile-blkfront",
                "sluice-hostile-blkfront",
            )?;
            g.elf(&bin, HOSTILE_BIN, &[])?;
        }
        if boot.steps.iter().any(crate::hostile_net::has) {
            let bin = crate::cargo_bin::cargo_binary(
                "sluice-hostile-netfront",
                "sluice-hostile-netfront",
            )?;
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
                                data: data[..crate::scenario::HOSTILE_WRITE_BYTES as usize]
                                    .to_vec(),
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
        g.pack(&guest_initrd)?;
    }

    // Disk images: sparse, all zero.
    let mut disks = Vec::new();
    for (si, step) in boot.steps.iter().enumerate() {
        for (di, d) in step.disks.iter().enumerate() {
            if d.of.is_some() {
                // An earlier step's device.
                continue;
            }
            let img = dir.join(format!("{}-{}.img", step.name, vdev(di)));
            let f = fs::File::create(&img)?;
            f.set_len(d.size_mib << 20)?;
            disks.push(VirtioDisk {
                image: img,
                serial: disk_serial(si, di),
                sector_size: d.sector_size,
            });
        }
    }

    // dom0 initramfs.
    let dom0_initrd = dir.join("dom0.cpio");
    {
        let r = Initramfs::new(&dir.join("dom0-root"))?;
        r.busybox()?;
        let libs = [xen.lib_dir()];
        let tools = xen.tools_dir()?;
        let tools_in = xen.tools_dir_in_guest()?;
        for t in XEN_TOOLS {
            r.elf(&tools.join(t), &format!("{tools_in}/{t}"), &libs)?;
        }
        for t in XENSTORE_TOOLS {
            r.elf(
                &xen.root.join("usr/bin").join(t),
                &format!("/usr/bin/{t}"),
                &libs,
            )?;
        }
        // The hotplug scripts are bash and take a lock with flock.
        r.elf(Path::new("/bin/bash"), "/bin/bash", &[])?;
        r.elf(&which("flock")?, "/usr/bin/flock", &[])?;
        if boot.fio_in_dom0 {
            r.elf(&which("fio")?, "/usr/bin/fio", &[])?;
            r.bytes("/sluice/fio.sh", FIO_JOBS.as_bytes(), 0o644)?;
        }
        // glibc dlopens libgcc_s for pthread_cancel; without it `xl create` aborts.
        r.file(&find_libgcc_s()?, &format!("{LIB_DIR}/libgcc_s.so.1"))?;
        r.tree(&xen.root.join("etc/xen"), "/etc/xen")?;
        r.bytes(
            &format!("/etc/xen/scripts/{USERSPACE_BLOCK_SCRIPT}"),
            USERSPACE_BLOCK_SCRIPT_TEXT.as_bytes(),
            0o755,
        )?;
        r.bytes(
            &format!("/etc/xen/scripts/{USERSPACE_VIF_SCRIPT}"),
            USERSPACE_VIF_SCRIPT_TEXT.as_bytes(),
            0o755,
        )?;
        for d in [
            "/var/lib/xen",
            "/var/lib/xenstored",
            "/var/log/xen/console",
            "/var/log/sluice",
            "/var/lock",
            "/sluice/bin",
            "/sluice/steps",
            "/sluice/guest",
        ] {
            r.dir(d)?;
        }
        r.symlink("/run", "/var/run")?;
        let mut mods = DOM0_MODULES.to_vec();
        if boot.has_vifs() {
            mods.extend_from_slice(DOM0_NET_MODULES);
        }
        if boot.passed_nic().is_some() {
            mods.push("xen-pciback");
        }
        stage_modules(&r, kernel, &mods, "/sluice/modules.list")?;
        // xen-blkback and xen-netback are loaded by the steps that use them (DOM0_LIB's
        // use_kernel_blkback, use_kernel_netback).
        let blkback: &[&str] = if boot.needs_kernel_blkback() {
            &["xen-blkback"]
        } else {
            &[]
        };
        stage_modules(&r, kernel, blkback, "/sluice/blkback.list")?;
        let netback: &[&str] = if boot.needs_kernel_netback() {
            &["xen-netback"]
        } else {
            &[]
        };
        stage_modules(&r, kernel, netback, "/sluice/netback.list")?;
        if boot.has_net_perf() {
            r.elf(&which("iperf3")?, "/usr/bin/iperf3", &[])?;
        }
        r.bytes(
            "/sluice/lib.sh",
            format!(
                "{DOM0_LIB}{}{}",
                crate::net::DOM0_NET_MTU,
                crate::together::DOM0_GROUP_LIB
            )
            .as_bytes(),
            0o644,
        )?;
        for d in &boot.daemons {
            r.elf(&d.binary, &format!("/sluice/bin/{}", d.name), &[])?;
        }
        if boot.has_secondary_console() {
            let tool = crate::cargo_bin::cargo_binary("sluice-consoleback", "sluice-console-add")?;
            r.elf(&tool, "/sluice/bin/sluice-console-add", &[])?;
        }
        r.file(
            &kernel.vmlinux(&kernel_cache_dir())?,
            "/sluice/guest/vmlinux",
        )?;
        r.file(&guest_initrd, "/sluice/guest/initrd.cpio")?;
        for step in &boot.steps {
            if let Some(k) = &step.kernel {
                r.file(&k.image, &format!("/sluice/guest/{}.elf", step.name))?;
                if let Some(rd) = &k.ramdisk {
                    r.file(rd, &format!("/sluice/guest/{}.ramdisk", step.name))?;
                }
            }
        }
        let serials: Vec<&str> = disks.iter().map(|d| d.serial.as_str()).collect();
        r.bytes(
            "/init",
            dom0_init(boot, &tools_in, &serials).as_bytes(),
            0o755,
        )?;
        for (si, step) in boot.steps.iter().enumerate() {
            r.bytes(
                &format!("/sluice/steps/{}.cfg", step.name),
                guest_cfg(si, step).as_bytes(),
                0o644,
            )?;
            r.bytes(
                &format!("/sluice/steps/{}.sh", step.name),
                dom0_step(boot, step).as_bytes(),
                0o644,
            )?;
        }
        for (g, range) in crate::together::groups(boot) {
            r.bytes(
                &format!("/sluice/steps/{g}.sh"),
                crate::together::dom0_script(boot, &g, &boot.steps[range]).as_bytes(),
                0o644,
            )?;
        }
        r.bytes("/sluice/finish.sh", DOM0_FINISH.as_bytes(), 0o644)?;
        r.bytes("/sluice/diag.sh", DOM0_DIAG.as_bytes(), 0o644)?;
        r.pack(&dom0_initrd)?;
    }
    Ok(Prepared {
        xen: xen_bin,
        kernel: kernel.clone(),
        dom0_initrd,
        disks,
        host_checks,
    })
}

fn validate(boot: &Boot) -> Result<()> {
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

/// Copies kernel modules `names` with their dependencies into `r`'s `/lib/modules/` and
/// lists them, in load order, in `list` (an empty list for no names).
fn stage_modules(r: &Initramfs, kernel: &HostKernel, names: &[&str], list: &str) -> Result<()> {
    let mut text = String::new();
    if !names.is_empty() {
        for ko in kernel.modules_in_load_order(names)? {
            let name = ko.file_name().unwrap().to_string_lossy().to_string();
            r.file(&ko, &format!("/lib/modules/{name}"))?;
            writeln!(text, "/lib/modules/{name}")?;
        }
    }
    r.bytes(list, text.as_bytes(), 0o644)
}

fn which(prog: &str) -> Result<PathBuf> {
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(d).join(prog);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{prog} not found on the host: run `cargo xtask setup` (it installs it)")
}

fn find_libgcc_s() -> Result<PathBuf> {
    for d in ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"] {
        let p = Path::new(d).join("libgcc_s.so.1");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("libgcc_s.so.1 not found")
}

/// dom0's /init: mounts, modules, xenstored, dom0 registration, daemons, console
/// daemon, disk links, then an interactive shell on the console the harness drives.
fn dom0_init(boot: &Boot, tools: &str, serials: &[&str]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"#!/bin/sh
export PATH={tools}:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH={LIB_DIR}
fail() {{ echo "@@DOM0-FAIL $*"; exec sh; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
# devtmpfs has no fd links; the hotplug lock (stat -L /dev/stdin) spins without them.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /run/xen /run/xenstored
echo "@@DOM0-INIT"
while read -r ko; do insmod "$ko" || fail "insmod $ko"; done < /sluice/modules.list
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
xenstored --pid-file /run/xenstored.pid || fail "xenstored"
i=0
until xenstore-read -s / >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 300 ] && fail "xenstored does not answer"; sleep 0.2
done
xen-init-dom0 >/dev/null || fail "xen-init-dom0"
. /sluice/lib.sh
"#
    );
    if let Some((_, nic)) = boot.passed_nic() {
        s.push_str(&nic.dom0_setup());
    }
    if boot.has_vifs() {
        let _ = write!(
            s,
            r#"ip link set lo up
ip link add name {br} type bridge 2>/dev/null || brctl addbr {br} || fail "bridge {br}"
ip addr add {ip}/24 dev {br} || fail "address of {br}"
ip link set {br} up || fail "{br} up"
"#,
            br = crate::scenario::NET_BRIDGE,
            ip = crate::scenario::NET_DOM0_IP
        );
    }
    if boot.has_net_perf() {
        let _ = writeln!(
            s,
            "iperf3 -s -D --logfile /var/log/sluice/iperf3.log || fail iperf3"
        );
    }
    for d in boot
        .daemons
        .iter()
        .filter(|d| !d.serves_block && !d.serves_net)
    {
        let _ = writeln!(s, "start_daemon {} {}", d.name, daemon_args(d));
    }
    if boot.console == ConsoleBackend::Xenconsoled {
        let _ = writeln!(
            s,
            "xenconsoled --log=guest --log-dir=/var/log/xen/console || fail xenconsoled"
        );
    }
    let _ = write!(
        s,
        r#"for want in {serials}; do
  i=0
  until [ -e /dev/$want ]; do
    for d in /sys/block/vd*; do
      [ -e "$d/serial" ] && [ "$(cat $d/serial)" = "$want" ] && ln -sf /dev/${{d##*/}} /dev/$want
    done
    [ -e /dev/$want ] && break
    i=$((i+1)); [ $i -gt 100 ] && fail "no virtio disk with serial $want"; sleep 0.1
  done
done
echo "@@DOM0-TOOLSTACK-READY"
# A session with the console as controlling tty, so the harness can interrupt a hung
# command with Ctrl-C (init is not a process-group leader, so setsid does not fork).
PS1='dom0# ' setsid cttyhack sh
poweroff -f
"#,
        serials = serials.join(" ")
    );
    s
}

pub fn daemon_args(d: &crate::scenario::Dom0Daemon) -> String {
    d.args
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', r"'\''"))
}

/// The `xl` config of one guest step.
fn guest_cfg(step_idx: usize, step: &GuestStep) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "name = \"{}\"", step.name);
    let _ = writeln!(s, "type = \"{}\"", step.guest_type.xl_type());
    if let Some(k) = &step.kernel {
        let _ = writeln!(s, "kernel = \"/sluice/guest/{}.elf\"", step.name);
        let _ = writeln!(s, "cmdline = \"{}\"", k.cmdline);
        if k.ramdisk.is_some() {
            let _ = writeln!(s, "ramdisk = \"/sluice/guest/{}.ramdisk\"", step.name);
        }
    } else {
        let _ = writeln!(s, "kernel = \"/sluice/guest/vmlinux\"");
        let _ = writeln!(s, "ramdisk = \"/sluice/guest/initrd.cpio\"");
        // Guests run together on a loaded 2-core TCG host starve each other's vCPUs for
        // tens of seconds (a PV guest's boot: "BUG: soft lockup - CPU#1 stuck for 21s",
        // 2026-12-07, load 10): not a fault of the disk path, so their soft-lockup
        // detector is off; hung tasks (I/O stuck 120 s) are still reported.
        let quiet = if step.together.is_some() {
            "quiet nosoftlockup"
        } else {
            "quiet"
        };
        let _ = writeln!(
            s,
            "extra = \"console=hvc0 {quiet} sluice.step={}\"",
            step.name
        );
    }
    let _ = writeln!(s, "memory = {}", step.memory_mib);
    let _ = writeln!(s, "vcpus = {}", step.vcpus);
    for ev in ["on_poweroff", "on_reboot", "on_crash"] {
        let _ = writeln!(s, "{ev} = \"destroy\"");
    }
    if step.guest_type == GuestType::Pvh {
        // TCG's SVM lacks nrip-save, so Xen cannot emulate RDTSCP for PVH guests.
        let _ = writeln!(s, "tsc_mode = \"native\"");
    }
    let disks: Vec<String> = step
        .disks
        .iter()
        .enumerate()
        .map(|(di, d)| format!("'{}'", disk_spec(step_idx, di, d)))
        .collect();
    if !disks.is_empty() {
        let _ = writeln!(s, "disk = [ {} ]", disks.join(", "));
    }
    if let Some(v) = &step.vif {
        if crate::hostile_net::has(step) {
            // A second vif for the hostile netfront (`crate::hostile_net`).
            let second = vif_spec(step_idx, v.backend).replace(
                &vif_mac(step_idx),
                &crate::hostile_net::hostile_mac(step_idx),
            );
            let _ = writeln!(
                s,
                "vif = [ '{}', '{second}' ]",
                vif_spec(step_idx, v.backend)
            );
        } else {
            let _ = writeln!(s, "vif = [ '{}' ]", vif_spec(step_idx, v.backend));
        }
    }
    if let Some(nic) = &step.passed_nic {
        let _ = writeln!(s, "{}", nic.xl_pci_line());
    }
    s
}

/// The MAC address of step `step_idx`'s vif.
pub fn vif_mac(step_idx: usize) -> String {
    format!("00:16:3e:00:99:{step_idx:02x}")
}

/// The `xl` vif specification of step `step_idx` (in the guest config and for `xl
/// network-attach`).
pub fn vif_spec(step_idx: usize, backend: NetBackend) -> String {
    let (mac, br) = (vif_mac(step_idx), crate::scenario::NET_BRIDGE);
    match backend {
        NetBackend::Userspace => format!("mac={mac},bridge={br},script={USERSPACE_VIF_SCRIPT}"),
        NetBackend::Kernel => format!("mac={mac},bridge={br}"),
    }
}

/// The `xl` disk specification of disk `di` of step `step_idx` (in the guest config and
/// for `xl block-attach`).
pub fn disk_spec(step_idx: usize, di: usize, d: &Disk) -> String {
    let extra = match d.backend {
        BlockBackend::KernelBlkback => String::new(),
        BlockBackend::Userspace => format!("backendtype=phy,script={USERSPACE_BLOCK_SCRIPT},"),
    };
    format!(
        "format=raw,vdev={},access={},{extra}target=/dev/{}",
        vdev(di),
        if d.readonly { "ro" } else { "rw" },
        match d.of {
            Some((s, k)) => disk_serial(s, k),
            None => disk_serial(step_idx, di),
        }
    )
}

/// `sluice-consfront.ko` as `cargo xtask test --suite linux-modules` builds it for the
/// host's kernel (the guests' kernel).
pub fn secondary_console_module() -> PathBuf {
    crate::paths::build_dir().join("linux-modules/sluice-consfront/sluice-consfront.ko")
}

/// dom0's script for one step: create the guest with its console attached (the guest's
/// output streams to the serial console; the harness can type into it), then check
/// that every dom0 daemon survived.
///
/// When the guest asks for a dom0 action (`@@ACTION`, [`Workload::DetachAttach`]...), the
/// harness leaves the console with Ctrl-]; the script then reads one command line from
/// the console, runs it, reports its status and attaches the console again, until the
/// domain is gone.
fn dom0_step(boot: &Boot, step: &GuestStep) -> String {
    // A watchdog prints dom0's diagnostics to the console before the harness gives up
    // (a hung `xl create` holds the shell, so the harness cannot ask afterwards).
    let watchdog = crate::run::limit(crate::run::STEP_LIMIT_SECS).as_secs() * 4 / 5;
    let n = &step.name;
    let mut s = format!(
        ". /sluice/lib.sh\necho \"@@STEP-BEGIN {n}\"\nwait_guests_gone\n{}",
        step_daemons(boot, step)
    );
    let _ = write!(
        s,
        "(sleep {watchdog}; echo \"@@STEP-WATCHDOG {n}\"; sh /sluice/diag.sh) &\nwd=$!\n\
         xl create -c /sluice/steps/{n}.cfg\nrc=$?\n\
         while xl domid {n} >/dev/null 2>&1; do\n\
         \x20 echo \"@@DOM0-ACTION-READY {n}\"\n\
         \x20 action_or_gone {n} || break\n\
         \x20 echo \"@@DOM0-CONSOLE-AGAIN {n}\"\n\
         \x20 xl console {n}\n\
         done\n\
         [ -n \"$destroyer\" ] && wait $destroyer\n\
         kill $wd 2>/dev/null\n\
         check_daemons\n"
    );
    dom0_step_end(boot, step, s)
}

/// dom0's lines that stop and start the block and net daemons (and load or unload the
/// kernel's backends) so that `step`'s disks and vif are served by the right ones.
pub fn step_daemons(boot: &Boot, step: &GuestStep) -> String {
    let mut s = String::new();
    let block_daemons = boot.daemons.iter().filter(|d| d.serves_block);
    match step.block_backend() {
        Some(BlockBackend::KernelBlkback) => {
            for d in block_daemons {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            let _ = writeln!(s, "use_kernel_blkback");
        }
        Some(BlockBackend::Userspace) => {
            let _ = writeln!(s, "drop_kernel_blkback");
            let serving = boot.block_daemons(step);
            // Only this step's daemons watch backend/vbd.
            for d in block_daemons.filter(|d| !serving.iter().any(|x| x.name == d.name)) {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            // The misbehaviours go to the daemon the step names.
            let modes: Vec<String> = step
                .workloads
                .iter()
                .filter_map(|w| match w {
                    Workload::MisbehavingBackend { disk, mode } => {
                        Some(shell_quote(&format!("{}={}", vdev(*disk), mode.name())))
                    }
                    _ => None,
                })
                .collect();
            for d in serving {
                let mut args = daemon_args(d);
                if step.block_daemon.is_some() && !modes.is_empty() {
                    args = format!("{args} {}", modes.join(" "));
                }
                // A daemon another step started with other arguments starts afresh.
                if step.block_daemon.is_some() {
                    let _ = writeln!(s, "stop_daemon {}", d.name);
                }
                let _ = writeln!(s, "start_daemon {} {args}", d.name);
            }
        }
        None => {}
    }
    let net_daemons = boot.daemons.iter().filter(|d| d.serves_net);
    match step.vif.as_ref().map(|v| v.backend) {
        Some(NetBackend::Kernel) => {
            for d in net_daemons {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            let _ = writeln!(s, "use_kernel_netback");
        }
        Some(NetBackend::Userspace) => {
            let _ = writeln!(s, "drop_kernel_netback");
            let serving = boot.net_daemons(step);
            // Only this step's daemons watch backend/vif.
            for d in net_daemons.filter(|d| !serving.iter().any(|x| x.name == d.name)) {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            for d in serving {
                let _ = writeln!(s, "start_daemon {} {}", d.name, daemon_args(d));
            }
        }
        None => {}
    }
    s
}

/// The end of [`dom0_step`]'s script: dom0's checks after the guest.
fn dom0_step_end(boot: &Boot, step: &GuestStep, mut s: String) -> String {
    let n = &step.name;
    if step
        .workloads
        .iter()
        .any(|w| matches!(w, Workload::HostileFrontend { .. }))
    {
        // The block backend must have logged each kind of refusal.
        for d in boot.block_daemons(step) {
            for l in crate::scenario::HOSTILE_LOG_LINES {
                let _ = writeln!(
                    s,
                    "if grep -q '{l}' /var/log/sluice/{n}.log; then echo \"@@DOM0-LOG-HAS {n}: {l}\"; else echo \"@@DOM0-LOG-LACKS {n}: {l}\"; fi",
                    n = d.name
                );
            }
            let _ = writeln!(
                s,
                "echo \"@@DOM0-LOG-SIZE {n}: $(wc -l < /var/log/sluice/{n}.log) lines\"",
                n = d.name
            );
        }
    }
    crate::hostile_net::dom0_script(boot, step, &mut s);
    let _ = writeln!(s, "echo \"@@STEP-END {n} rc=$rc\"");
    s
}

/// Shell helpers for dom0's init and step scripts.
const DOM0_LIB: &str = r#"
start_daemon() {
  n=$1; shift
  if [ -e /run/sluice-$n.pid ] && kill -0 "$(cat /run/sluice-$n.pid)" 2>/dev/null; then return 0; fi
: >/run/sluice-$n.args
  for a in "$@"; do printf '%s\n' "$a" >>/run/sluice-$n.args; done
  /sluice/bin/$n "$@" >>/var/log/sluice/$n.log 2>&1 &
  echo $! >/run/sluice-$n.pid
}
# restart_daemon NAME: SIGKILL (kill_daemon), then start it with the arguments of its
# last start.
restart_daemon() {
  kill_daemon "$1"
  set -- "$1"
  [ -e /run/sluice-$1.args ] && while IFS= read -r a; do set -- "$@" "$a"; done < /run/sluice-$1.args
  start_daemon "$@"
}
# SIGKILL, no clean-up: what a crash looks like to the guests.
kill_daemon() {
  [ -e /run/sluice-$1.pid ] || return 0
  p=$(cat /run/sluice-$1.pid); rm -f /run/sluice-$1.pid
  kill -9 "$p" 2>/dev/null
  i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  echo "killed $1 (pid $p)" >> /var/log/sluice/$1.log
}
stop_daemon() {
  [ -e /run/sluice-$1.pid ] || return 0
  p=$(cat /run/sluice-$1.pid); rm -f /run/sluice-$1.pid
  kill "$p" 2>/dev/null
  i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -9 "$p" 2>/dev/null; true
}
# backend_idle NAME: the daemon uses under a quarter of a CPU over 4 s (no thread
# spins, e.g. on a ring it gave up on).
backend_idle() {
  p=$(cat /run/sluice-$1.pid 2>/dev/null) && kill -0 "$p" 2>/dev/null || { echo "$1 is not running"; return 1; }
  t0=$(awk '{print $14 + $15}' /proc/$p/stat)
  sleep 4
  t1=$(awk '{print $14 + $15}' /proc/$p/stat)
  echo "$1 (pid $p): $((t1 - t0)) CPU ticks in 4 s ($(ls /proc/$p/task | wc -l) threads)"
  [ $((t1 - t0)) -lt 100 ]
}
# destroy_after_writes DOMAIN DEV: in the background, once dom0's disk DEV (a link to
# the virtio disk) completed 200 more writes, `xl destroy DOMAIN` (mid-write).
writes_of() { d=$(readlink -f /dev/$1); awk '{print $5}' /sys/block/${d##*/}/stat; }
destroy_after_writes() {
  n0=$(writes_of $2) || return 1
  ( until [ "$(writes_of $2)" -ge $((n0 + 200)) ]; do sleep 0.1; done
    xl destroy $1 && echo "@@DOM0-DESTROYED $1 after $(($(writes_of $2) - n0)) writes to $2" ) </dev/null >/dev/console 2>&1 &
  # The step script waits for it before it ends (the console closes first).
  destroyer=$!
}
# journal_pending: requests taken and not answered in sluice-blkback's crash journals
# (the state word of each 128-byte entry after the 64-byte header: 1 or 2).
journal_pending() {
  for f in /run/sluice/blkback/vbd-*; do
    [ -e "$f" ] && od -An -v -tu4 -w128 -j64 "$f"
  done | awk '$1 == 1 || $1 == 2 { n++ } END { print n + 0 }'
}
# restart_midwrite NAME ARGS...: SIGKILLs block daemon NAME while its journal shows a
# request in flight and starts it again, until the new daemon reports having served
# unanswered requests again (60 tries at most). The kill comes at once after the
# journal was read (pid and log count taken before): on a quiet host the requests seen
# in flight were often answered before a slower kill landed (20 tries missed in a CI
# run of 2026-12-06).
restart_midwrite() {
  n=$1; shift; try=0
  while [ $try -lt 60 ]; do
    try=$((try+1)); i=0
    before=$(grep -c 'unanswered served again' /var/log/sluice/$n.log)
    p=$(cat /run/sluice-$n.pid 2>/dev/null)
    until [ "$(journal_pending)" -gt 0 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "no request in flight for 60 s"; return 1; }; sleep 0.1; done
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    kill_daemon $n && start_daemon $n "$@" || return 1
    i=0
    until [ "$(grep -c 'unanswered served again' /var/log/sluice/$n.log)" -gt "$before" ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "$n did not take the device over"; return 1; }; sleep 0.1; done
    got=$(grep 'unanswered served again' /var/log/sluice/$n.log | tail -n 1 | sed 's/.*taken up to [0-9]*, \([0-9]*\) unanswered.*/\1/')
    echo "@@DOM0-RESTART try $try: $got unanswered request(s) served again"
    [ "$got" -gt 0 ] && { echo "@@DOM0-KILLED-MIDWRITE $got after $try kill(s)"; return 0; }
  done
  return 1
}
# action_or_gone DOMAIN: after `xl create -c` or `xl console` returned, runs the one
# command the harness types (a dom0 action) and returns 0; returns 1 as soon as the
# domain is gone (a guest that powered off: no waiting out the 30 s), 0 after 30 s.
# The harness types `COMMAND @@SUM <first 16 hex digits of its sha256>`: a line that
# Xen's serial input garbled (seen under TCG: a letter replaced) is refused with
# @@DOM0-ACTION-GARBLED and typed again, never run.
action_or_gone() {
  i=0
  while [ $i -lt 30 ]; do
    if read -t 1 -r line; then
      cmd=${line% @@SUM *}
      h=$(printf '%s' "$cmd" | sha256sum)
      case "$h" in
        "${line##* @@SUM }"*) [ "$cmd" != "$line" ] && [ ${#line} -eq $((${#cmd} + 23)) ] ;;
        *) false ;;
      esac || { echo "@@DOM0-ACTION-GARBLED $1"; continue; }
      echo "@@DOM0-ACTION-RUN $1"
      eval "$cmd"; echo "@@DOM0-ACTION-DONE $1 rc=$?"; return 0
    fi
    xl domid "$1" >/dev/null 2>&1 || return 1
    i=$((i+1))
  done
  return 0
}
# console_rt DOMAIN N: types a line into secondary console N's pty (sluice-consoleback's)
# and checks the guest's answer: `SHA <sha256 of the line>`.
console_rt() {
  d=$(xl domid $1) || return 1
  i=0; until [ "$(xenstore-read /local/domain/0/backend/console/$d/$2/state 2>/dev/null)" = 4 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "console $2 never connected"; return 1; }; sleep 0.1; done
  tty=$(xenstore-read /local/domain/$d/device/console/$2/tty) || return 1
  line="sluice-consfront-$d-$2-$(cut -d' ' -f1 /proc/uptime)"
  want=$(printf '%s\n' "$line" | sha256sum); want=${want%% *}
  exec 6<>"$tty"
  printf '%s\n' "$line" >&6
  ans=; read -t 120 -r ans <&6
  exec 6>&-
  ans=$(printf '%s' "$ans" | tr -d '\r')
  echo "@@DOM0-CONSOLE-RT typed $line on $tty; guest answered: $ans"
  [ "$ans" = "SHA $want" ]
}
# Every daemon with a pid file must still run.
check_daemons() {
  for f in /run/sluice-*.pid; do
    [ -e "$f" ] || continue
    kill -0 "$(cat $f)" 2>/dev/null || { n=${f#/run/sluice-}; echo "@@DAEMON-DEAD ${n%.pid}"; }
  done
}
# The previous guest's teardown (hotplug detach) finishes after its console closed.
wait_guests_gone() {
  i=0
  while [ "$(xenstore-list /local/domain 2>/dev/null | wc -l)" -gt 1 ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
}
use_kernel_blkback() {
  grep -q '^xen_blkback ' /proc/modules && return 0
  while read -r ko; do insmod "$ko" || echo "@@DOM0-WARN insmod $ko failed"; done < /sluice/blkback.list
}
# Guests' network (Workload::Net): dom0's ends of the transfers.
net_listen() {
  # A listener left by a step's first run (its guest died before connecting) holds the
  # port; no other nc runs in dom0 while a listener is set up.
  killall nc 2> /dev/null
  rm -f /tmp/net-rx.bin /tmp/net-rx.done /tmp/net-fifo; mkfifo /tmp/net-fifo || return 1
  (nc -l -p "$1" < /tmp/net-fifo > /tmp/net-rx.bin; echo $? > /tmp/net-rx.done) &
  exec 4>/tmp/net-fifo
  sleep 1
}
# gone DOMAIN: true once the step's guest no longer exists (it crashed or powered off):
# a transfer with it then ends at once instead of waiting out TCP's timeouts.
gone() { ! xl domid "$1" > /dev/null 2>&1; }
net_received() {
  i=0
  until [ -e /tmp/net-rx.done ]; do
    i=$((i+1)); [ $i -gt 1200 ] && { echo "nothing received"; return 1; }
    [ $((i % 10)) = 0 ] && gone "$2" && { echo "the guest is gone"; return 1; }
    sleep 0.5
  done
  exec 4>&-
  s=$(sha256sum < /tmp/net-rx.bin); s=${s%% *}
  echo "dom0 received $(wc -c < /tmp/net-rx.bin) bytes (nc rc $(cat /tmp/net-rx.done)), sha256 $s"
  # net_send answers with as many MiB as the guest sent (check_net's MIB).
  echo $(( $(wc -c < /tmp/net-rx.bin) / 1048576 )) > /tmp/net-mib
  rm -f /tmp/net-rx.bin
  [ "$s" = "$1" ]
}
net_send() {
  mib=$(cat /tmp/net-mib 2>/dev/null); [ "${mib:-0}" -gt 0 ] 2>/dev/null || mib=64
  dd if=/dev/urandom of=/tmp/net-tx.bin bs=1M count=$mib 2>/dev/null || return 1
  t0=$(cut -d' ' -f1 /proc/uptime)
  i=0
  while :; do
    nc "$1" 5002 < /tmp/net-tx.bin & p=$!
    while kill -0 $p 2> /dev/null; do
      gone "$2" && { kill $p; echo "the guest is gone"; return 1; }
      sleep 1
    done
    wait $p && break
    i=$((i+1)); [ $i -gt 10 ] && return 1; sleep 1
  done
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "@@NET dom0-to-guest $mib MiB in $(awk "BEGIN{print $t1 - $t0}") s"
}
net_sent() {
  s=$(sha256sum < /tmp/net-tx.bin); s=${s%% *}
  echo "dom0 sent sha256 $s"
  rm -f /tmp/net-tx.bin
  [ "$s" = "$1" ]
}
use_kernel_netback() {
  grep -q '^xen_netback ' /proc/modules && return 0
  while read -r ko; do insmod "$ko" || echo "@@DOM0-WARN insmod $ko failed"; done < /sluice/netback.list
}
drop_kernel_netback() {
  grep -q '^xen_netback ' /proc/modules || return 0
  i=0; until rmmod xen_netback 2>/dev/null; do
    i=$((i+1)); [ $i -gt 40 ] && { echo "@@DOM0-WARN xen_netback stays loaded"; return 1; }; sleep 0.5
  done
}
drop_kernel_blkback() {
  grep -q '^xen_blkback ' /proc/modules || return 0
  i=0; until rmmod xen_blkback 2>/dev/null; do
    i=$((i+1)); [ $i -gt 40 ] && { echo "@@DOM0-WARN xen_blkback stays loaded"; return 1; }; sleep 0.5
  done
}
"#;

const DOM0_FINISH: &str = r#"for f in /var/log/sluice/*.log; do
  [ -e "$f" ] || continue
  echo "@@DAEMON-LOG-BEGIN ${f##*/}"; cat "$f"; echo "@@DAEMON-LOG-END ${f##*/}"
done
sync
echo "@@DOM0-POWEROFF"
poweroff -f
"#;

const DOM0_DIAG: &str = r#"echo "@@DIAG-BEGIN"
xl list
for f in /var/log/xen/*.log; do [ -e "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
echo "== xl dmesg"; xl dmesg | tail -n 30
echo "== dmesg"; dmesg | tail -n 30
for f in /var/log/sluice/*.log; do [ -e "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
echo "@@DIAG-END"
"#;

/// The libxl hotplug script for userspace-served vifs: the one `sluice-backends` ships.
const USERSPACE_VIF_SCRIPT_TEXT: &str = include_str!("../../../packaging/backends/vif-userspace");

/// The libxl hotplug script for userspace-served disks: the one `sluice-backends` ships.
const USERSPACE_BLOCK_SCRIPT_TEXT: &str = include_str!("../../../packaging/backends/block-userspace");

/// The guest's /init: modules (blkfront only if the step loads it at boot), then the
/// step named on the kernel command line.
const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -sf /proc/mounts /etc/mtab
step=$(sed -n 's/.*sluice\.step=\([a-z0-9-]*\).*/\1/p' /proc/cmdline)
# The step's blkfront: its own module (GuestStep::with_blkfront_module) or the kernel's.
blkfront_ko() {
  if [ -e "/steps/$step.blkfront" ]; then cat "/steps/$step.blkfront"; else grep blkfront /modules.list | head -n 1; fi
}
while read -r ko; do
  # A step without blkfront at boot leaves its disks to a userspace frontend.
  args=
  case "$ko" in *blkfront*)
    [ -e "/steps/$step.noblkfront" ] && continue
    ko=$(blkfront_ko)
    [ -e "/steps/$step.blkfront-args" ] && args=$(cat "/steps/$step.blkfront-args") ;;
  *xen-netfront*)
    # The step's vif frontend: a module of ours (GuestStep::with_vif_frontend) or the kernel's.
    [ -e "/steps/$step.netfront" ] && ko=$(cat "/steps/$step.netfront") ;;
  esac
  insmod "$ko" $args || echo "@@GUEST-WARN insmod $ko $args failed"
done < /modules.list
echo "@@GUEST-BEGIN $step"
. /lib/sluice-checks.sh
. "/steps/$step.sh"
sync
echo "@@GUEST-END $step"
poweroff -f
"#;

/// `fio_jobs DEV SECONDS`: the fio benchmark of [`Workload::Fio`], the same in a guest
/// and in dom0. One `@@FIO` line per job: IOPS and KiB/s from fio's terse output (v3:
/// fields 7-8 read bandwidth and IOPS, 48-49 write).
const FIO_JOBS: &str = r#"
fio_jobs() {
  dev=$1; t=$2
  common="--filename=$dev --ioengine=libaio --direct=1 --norandommap --randrepeat=0 --output-format=terse --terse-version=3"
  for job in "seqwrite-1m --rw=write --bs=1M --iodepth=8" \
             "randread-4k --rw=randread --bs=4k --iodepth=32 --time_based --runtime=$t" \
             "randwrite-4k --rw=randwrite --bs=4k --iodepth=32 --time_based --runtime=$t" \
             "seqread-1m --rw=read --bs=1M --iodepth=8 --time_based --runtime=$t"; do
    name=${job%% *}
    s0=$(fio_counts "$dev")
    out=$(fio --name=$name $common ${job#* } 2>&1) || { echo "fio $name failed: $out"; return 1; }
    s1=$(fio_counts "$dev")
    echo "$out" | awk -F';' -v n=$name '$1 == "3" { printf "@@FIO %s read_kibs=%s read_iops=%s write_kibs=%s write_iops=%s\n", n, $7, $8, $48, $49 }'
    # Load-independent counts (a log line only): requests the driver completed, sectors,
    # and block-frontend interrupts (xen-blkfront's "blkif", sluice-blkfront's own).
    [ -n "$s0" ] && echo "$s0 $s1" | awk -v n=$name '{ h = NF / 2; printf "@@FIOSTAT %s reads=%d read_sectors=%d writes=%d write_sectors=%d irqs=%d\n", n, $(h+1)-$1, $(h+3)-$3, $(h+5)-$5, $(h+7)-$7, $NF-$h }'
  done
}
# fio_counts DEV: its /sys/block stat fields and the block frontends' interrupt count
# (nothing when DEV has no stat file, e.g. a file in dom0).
fio_counts() {
  f=/sys/block/${1##*/}/stat
  [ -r "$f" ] || return 0
  i=$(awk '/blkif|sluice-blkfront/ { for (k = 2; k <= NF && $k ~ /^[0-9]+$/; k++) t += $k } END { print t + 0 }' /proc/interrupts)
  echo "$(cat "$f") $i"
}
"#;

/// The guest's check functions. Each runs in a subshell; `report` turns its status into
/// a PASS/FAIL/CRASH line (a status above 128 is a signal).
const GUEST_CHECKS: &str = r#"
report() {
  if [ "$2" -eq 0 ]; then echo "@@CHECK $1 PASS"
  elif [ "$2" -gt 128 ]; then echo "@@CHECK $1 CRASH rc=$2"
  else echo "@@CHECK $1 FAIL rc=$2"; fi
}
# Runs a command; a death by signal ends the check with that status.
x() { "$@"; r=$?; [ $r -gt 128 ] && { echo "killed by signal: $*"; exit $r; }; return $r; }
# wait_dev DEV [SECONDS]: until the block device exists (20 s by default).
wait_dev() {
  i=0; n=$((${2:-20} * 5))
  while [ ! -b "$1" ]; do i=$((i+1)); [ $i -gt $n ] && { echo "no $1 after ${2:-20} s"; return 1; }; sleep 0.2; done
}
# wait_gone DEV: until the block device is gone (120 s).
wait_gone() {
  i=0
  while [ -b "$1" ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "$1 still there after 120 s"; return 1; }; sleep 0.2; done
}
# put DEV FILE SECTOR: writes the 1 MiB FILE at 512-byte SECTOR, synced to the disk.
put() {
  x dd if="$2" of="$1" bs=64k seek=$(($3 * 512)) oflag=seek_bytes conv=fsync 2>/dev/null || { echo "write at sector $3 failed"; return 1; }
}
# same DEV SECTOR SHA [SECTORS]: the SECTORS (2048) at SECTOR, read uncached, hash to SHA.
same() {
  x blockdev --flushbufs "$1" || return 1
  echo 3 > /proc/sys/vm/drop_caches
  x dd if="$1" of=/tmp/readback bs=64k skip=$(($2 * 512)) count=$((${4:-2048} * 512)) iflag=skip_bytes,count_bytes 2>/dev/null || { echo "read at sector $2 failed"; return 1; }
  got=$(sha /tmp/readback) || return 1
  rm -f /tmp/readback
  [ "$got" = "$3" ] || { echo "sector $2: read back $got, expected $3"; return 1; }
}
# dom0 VERB DISK: asks the harness to have dom0 do VERB (detach, attach, restart-backend)
# for DISK while it is idle, and waits for the answer typed on the console.
dom0() {
  tok="$1-$2-$(cut -d' ' -f1 /proc/uptime)"
  echo "@@ACTION $tok $1 $2"
  while read -t 600 -r l; do
    case "$l" in
      "@@GO $tok rc=0") echo "@@ACTION-ACK $tok"; return 0 ;;
      "@@GO $tok "*) echo "@@ACTION-ACK $tok"; echo "dom0 could not $1 $2 (${l#@@GO $tok })"; return 1 ;;
    esac
  done
  echo "no answer from dom0 to $1 $2"; return 1
}
sha() { s=$(x sha256sum "$@") || return 1; echo "${s%% *}"; }
# check_secondary_console: dom0 adds device/console/1 (sluice-console-add, served by
# sluice-consoleback); the kernel's hvc_xen binds it first, so it is unbound from that
# driver and bound to sluice-consfront through sysfs; dom0 then types a line into the
# console's pty and the guest answers on /dev/sluicecons1 with the line's sha256.
check_secondary_console() {
  d=/sys/bus/xen/devices/console-1
  dom0 console-add 1 || return 1
  i=0; until [ -e $d/driver ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "device/console/1 never bound"; return 1; }; sleep 0.1; done
  first=$(basename "$(readlink $d/driver)")
  echo "console-1 first bound by $first"
  insmod /lib/modules/sluice-consfront.ko || { echo "insmod sluice-consfront failed"; return 1; }
  echo console-1 > /sys/bus/xen/drivers/$first/unbind || { echo "unbind from $first failed"; return 1; }
  echo console-1 > /sys/bus/xen/drivers/sluice-consfront/bind || { echo "bind to sluice-consfront failed"; return 1; }
  now=$(basename "$(readlink $d/driver)")
  [ "$now" = sluice-consfront ] || { echo "console-1 bound to $now"; return 1; }
  i=0; until dmesg | grep -q 'sluicecons1: connected'; do i=$((i+1)); [ $i -gt 600 ] && { echo "sluicecons1 never connected"; dmesg | grep sluice-consfront; return 1; }; sleep 0.1; done
  [ -c /dev/sluicecons1 ] || { echo "no /dev/sluicecons1"; return 1; }
  exec 5<>/dev/sluicecons1
  stty -F /dev/sluicecons1 raw -echo || return 1
  ( read -r l <&5; h=$(printf '%s\n' "$l" | sha256sum); printf 'SHA %s\n' "${h%% *}" >&5 ) &
  reader=$!
  dom0 console-rt 1 || { kill $reader 2>/dev/null; return 1; }
  wait $reader
  exec 5>&-
  # Unbind and unload: the line goes, nothing is left behind.
  echo console-1 > /sys/bus/xen/drivers/sluice-consfront/unbind || { echo "unbind from sluice-consfront failed"; return 1; }
  [ ! -e /dev/sluicecons1 ] || { echo "/dev/sluicecons1 still there after unbind"; return 1; }
  rmmod sluice_consfront || { echo "rmmod sluice-consfront failed"; return 1; }
  echo "@@SUMMARY $id: device/console/1 added by dom0 (sluice-console-add), moved from $first to sluice-consfront.ko (sysfs unbind/bind); a line dom0 typed into sluice-consoleback's pty reached /dev/sluicecons1 and its sha256 came back; unbound and rmmod'ed"
}
check_roundtrip() {
  echo "@@RT-READY"
  read -t 300 -r line || { echo "no line typed"; return 1; }
  h=$(printf %s "$line" | sha256sum)
  echo "@@RT-ECHO ${h%% *}"
}
check_read() {
  dev=$1; mib=$2; rounds=$3
  wait_dev "$dev" || return 1
  round=0
  while [ $round -lt "$rounds" ]; do
    t0=$(cut -d' ' -f1 /proc/uptime)
    x dd if="$dev" of=/dev/null bs=1M count="$mib" iflag=direct 2>/dev/null || { echo "read failed"; return 1; }
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "@@READ $(basename $dev) mib=$mib t0=$t0 t1=$t1"
    round=$((round+1))
  done
}
check_pattern() {
  dev=$1; file=$2; want=$3; shift 3
  wait_dev "$dev" || return 1
  for s in "$@"; do
    x dd if="$file" of="$dev" bs=64k seek=$((s * 512)) oflag=seek_bytes conv=fsync 2>/dev/null || { echo "write at $s failed"; return 1; }
  done
  x blockdev --flushbufs "$dev" || return 1
  echo 3 > /proc/sys/vm/drop_caches
  for s in "$@"; do
    x dd if="$dev" of=/tmp/readback bs=64k skip=$((s * 512)) count=1048576 iflag=skip_bytes,count_bytes 2>/dev/null || { echo "read at $s failed"; return 1; }
    got=$(sha /tmp/readback) || return 1
    [ "$got" = "$want" ] || { echo "sector $s: read back $got, wrote $want"; return 1; }
  done
  rm -f /tmp/readback
  echo "@@SUMMARY $id: 3 x 1 MiB written at sectors $*, read back uncached, sha256 match"
}
check_discard() {
  dev=$1; file=$2; want=$3; s=$4
  wait_dev "$dev" || return 1
  max=$(cat /sys/block/${dev##*/}/queue/discard_max_bytes)
  [ "$max" -gt 0 ] || { echo "${dev##*/} offers no discard (discard_max_bytes 0)"; return 1; }
  for i in 0 1 2 3 4; do put "$dev" "$file" $((s + i * 2048)) || return 1; done
  same "$dev" "$s" "$want" || return 1
  x blkdiscard -o $((s * 512)) -l 4194304 "$dev" || { echo "blkdiscard failed"; return 1; }
  zero=$(dd if=/dev/zero bs=1M count=4 2>/dev/null | sha256sum); zero=${zero%% *}
  same "$dev" "$s" "$zero" 8192 || { echo "the discarded 4 MiB do not read as zeroes"; return 1; }
  same "$dev" $((s + 4 * 2048)) "$want" || { echo "the MiB after the discarded range changed"; return 1; }
  echo "@@SUMMARY $id: 5 MiB written at sector $s, first 4 MiB discarded (blkdiscard; discard_max_bytes $max), read back as zeroes, 5th MiB intact"
}
check_reattach() {
  dev=$1; file=$2; want=$3; s=$4
  wait_dev "$dev" || return 1
  put "$dev" "$file" "$s" && same "$dev" "$s" "$want" || return 1
  dom0 detach "${dev##*/}" || return 1
  wait_gone "$dev" || return 1
  dom0 attach "${dev##*/}" || return 1
  wait_dev "$dev" 120 || return 1
  same "$dev" "$s" "$want" || return 1
  echo "@@SUMMARY $id: 1 MiB written, disk detached (xl block-detach) and re-attached (xl block-attach) while idle, read back"
}
check_backend_restart() {
  dev=$1; f1=$2; sha1=$3; s1=$4; f2=$5; sha2=$6; s2=$7
  wait_dev "$dev" || return 1
  put "$dev" "$f1" "$s1" && same "$dev" "$s1" "$sha1" || return 1
  dom0 restart-backend "${dev##*/}" || return 1
  same "$dev" "$s1" "$sha1" || { echo "after the backend restart"; return 1; }
  put "$dev" "$f2" "$s2" && same "$dev" "$s2" "$sha2" || { echo "after the backend restart"; return 1; }
  echo "@@SUMMARY $id: backend killed (SIGKILL) and restarted with the disk idle; earlier data read back, new 1 MiB written and read back"
}
check_frontend_reload() {
  dev=$1; file=$2; want=$3; s=$4
  wait_dev "$dev" || return 1
  mod=$(sed -n 's/^\([a-z_]*blkfront\) .*/\1/p' /proc/modules | head -n 1)
  ko=$(blkfront_ko)
  [ -n "$mod" ] && [ -n "$ko" ] || { echo "no blkfront module loaded"; return 1; }
  put "$dev" "$file" "$s" && same "$dev" "$s" "$want" || return 1
  # xenbus holds a reference on a frontend driver's module for each device bound to
  # it: unbind them first (what unloading a xenbus frontend takes).
  for d in /sys/bus/xen/devices/vbd-*; do
    [ -e "$d/driver" ] || continue
    echo "${d##*/}" > "$d/driver/unbind" || { echo "unbinding ${d##*/} failed"; return 1; }
  done
  wait_gone "$dev" || return 1
  x rmmod "$mod" || { echo "rmmod $mod failed (module users: $(cat /sys/module/$mod/refcnt))"; return 1; }
  x insmod "$ko" || { echo "insmod $ko failed"; return 1; }
  wait_dev "$dev" 120 || return 1
  same "$dev" "$s" "$want" || return 1
  echo "@@SUMMARY $id: $mod unloaded with the disk idle (devices unbound, rmmod) and loaded again; the disk came back and the data read back"
}
check_fio() {
  wait_dev "$1" || return 1
  . /lib/sluice-fio.sh
  fio_jobs "$1" "$2" || return 1
  echo "@@SUMMARY $id: fio ran; frontend module $(sed -n 's/^\([a-z_]*blkfront\) .*/\1/p' /proc/modules | head -n 1)"
}
# Crash consistency (Workload::CrashKill / CrashDestroy / CrashVerify). Writer W's
# record R: 256 KiB at byte (W * 96 + R) * 256 KiB, each 512-byte sector a line naming
# writer, record and sector (any lost, stale or misplaced sector shows).
CRASH_RECORDS=96
crash_rec() { awk -v w=$1 -v r=$2 'BEGIN { for (s = 0; s < 512; s++) printf "%-511s\n", "sluice-crash writer=" w " record=" r " sector=" s }'; }
# crash_writer DEV W [print]: writes records with O_DIRECT, each followed by fsync (a
# flush request); once both completed the record is acknowledged: counted in
# /tmp/crash-acked-W (and printed as @@ACK W R with `print`).
crash_writer() {
  i=0
  while [ ! -e /tmp/crash-stop ] && [ $i -lt $CRASH_RECORDS ]; do
    crash_rec $2 $i > /tmp/crash-rec-$2
    dd if=/tmp/crash-rec-$2 of=$1 bs=256k count=1 seek=$((($2 * CRASH_RECORDS + i) * 262144)) oflag=seek_bytes,direct conv=fsync 2>/tmp/crash-dd-$2 \
      || { echo "writer $2: record $i: $(cat /tmp/crash-dd-$2)" >> /tmp/crash-fail; return 1; }
    i=$((i+1)); echo $i > /tmp/crash-acked-$2
    [ "$3" = print ] && echo "@@ACK $2 $((i-1))"
  done
  return 0
}
crash_acked() { cat /tmp/crash-acked-$1 2>/dev/null || echo 0; }
# crash_load DEV: fio random writes at depth 8 on the last 32 MiB (answers complete
# out of order; rate-limited to leave the slow TCG guest time for the writers), until
# killed.
crash_load() {
  fio --name=load --filename=$1 --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=8 --rate_iops=200 \
    --offset=96M --size=32M --time_based --runtime=3600 --norandommap --randrepeat=0 \
    --output=/tmp/crash-fio.log </dev/null >/dev/null 2>&1 &
  echo $! > /tmp/crash-fio.pid
}
crash_start() {
  rm -f /tmp/crash-*
  crash_load $1
  for w in 0 1 2 3; do crash_writer $1 $w $2 </dev/null & done
}
# crash_wait_acked N: until every writer acknowledged at least N records (each writer
# its own N when given four numbers); 600 s at most.
crash_wait_acked() {
  t=0
  for w in 0 1 2 3; do
    eval n=\${$((w + 1)):-$1}
    while [ "$(crash_acked $w)" -lt "$n" ]; do
      [ -e /tmp/crash-fail ] && { cat /tmp/crash-fail; return 1; }
      t=$((t+1)); [ $t -gt 3000 ] && { echo "writer $w: $(crash_acked $w) records acknowledged, waited for $n"; return 1; }
      sleep 0.2
    done
  done
}
crash_stop() {
  touch /tmp/crash-stop
  p=$(cat /tmp/crash-fio.pid)
  kill -0 "$p" 2>/dev/null || echo "fio stopped early (an I/O error?): $(tr '\n' ' ' < /tmp/crash-fio.log | head -c 600)" >> /tmp/crash-fail
  kill "$p" 2>/dev/null
  wait
  [ ! -e /tmp/crash-fail ] || { cat /tmp/crash-fail; return 1; }
}
# crash_verify DEV N0 N1 N2 N3: records 0..Nw-1 of writer w read back (O_DIRECT) as written.
crash_verify() {
  dev=$1; shift; total=0
  for w in 0 1 2 3; do
    n=$1; shift; i=0
    while [ $i -lt "$n" ]; do
      crash_rec $w $i > /tmp/crash-want
      x dd if=$dev of=/tmp/crash-got bs=256k count=1 skip=$((($w * CRASH_RECORDS + i) * 262144)) iflag=skip_bytes,direct 2>/dev/null || { echo "reading writer $w record $i failed"; return 1; }
      cmp -s /tmp/crash-want /tmp/crash-got || { echo "writer $w record $i (acknowledged) reads back wrong: $(head -c 80 /tmp/crash-got | tr -c '[:print:]' .)"; return 1; }
      i=$((i+1)); total=$((total+1))
    done
  done
  echo "$total acknowledged records read back intact"
}
check_crash_kill() {
  dev=$1
  wait_dev "$dev" || return 1
  crash_start "$dev"
  crash_wait_acked 1 || return 1
  dom0 restart-backend-midwrite "${dev##*/}" || return 1
  a0=$(crash_acked 0); a1=$(crash_acked 1); a2=$(crash_acked 2); a3=$(crash_acked 3)
  # The guest carries on: every writer acknowledges two more records.
  crash_wait_acked $((a0 + 2)) $((a1 + 2)) $((a2 + 2)) $((a3 + 2)) || { echo "after the backend restart"; return 1; }
  crash_stop || return 1
  n="$(crash_acked 0) $(crash_acked 1) $(crash_acked 2) $(crash_acked 3)"
  out=$(crash_verify "$dev" $n) || { echo "$out"; return 1; }
  fio=$(grep -o 'issued rwts: total=[0-9,]*' /tmp/crash-fio.log | head -n 1)
  echo "@@SUMMARY $id: sluice-blkback SIGKILLed (with requests in flight) and restarted under 4 record writers (O_DIRECT + fsync) and fio randwrite at depth 8 (${fio:-fio printed no totals}); no I/O error; records acknowledged per writer: $n ($a0 $a1 $a2 $a3 when the restart returned); $out"
}
check_crash_destroy() {
  dev=$1
  wait_dev "$dev" || return 1
  dom0 destroy-after-writes "${dev##*/}" || return 1
  echo "@@CRASH-WRITING $id"
  crash_start "$dev" print
  wait
  echo "the writers stopped before the guest was destroyed: $(cat /tmp/crash-fail 2>/dev/null)"
  return 1
}
check_crash_verify() {
  dev=$1
  wait_dev "$dev" || return 1
  echo "@@ACKS-READY"
  read -t 300 -r line || { echo "no acknowledged counts typed"; return 1; }
  set -- $line
  [ "$1" = acked ] && [ $# -eq 5 ] || { echo "bad line typed: $line"; return 1; }
  shift
  out=$(crash_verify "$dev" "$@") || { echo "$out"; return 1; }
  echo "@@SUMMARY $id: a fresh guest on the disk of a guest destroyed (xl destroy) mid-write: acknowledged records per writer $*; $out"
}
check_read_only() {
  dev=$1
  wait_dev "$dev" || return 1
  ro=$(blockdev --getro "$dev") || return 1
  [ "$ro" = 1 ] || { echo "${dev##*/} is not read-only in the guest (getro $ro)"; return 1; }
  x dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null || { echo "reading ${dev##*/} failed"; return 1; }
  if dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct 2>/dev/null; then
    echo "a write to read-only ${dev##*/} succeeded"; return 1
  fi
  echo "@@SUMMARY $id: ${dev##*/} is read-only in the guest, reads work, an O_DIRECT write is refused"
}
check_sector_size() {
  dev=$1; want=$2
  wait_dev "$dev" || return 1
  got=$(cat /sys/block/${dev##*/}/queue/logical_block_size)
  [ "$got" = "$want" ] || { echo "${dev##*/}: logical block size $got, expected $want"; return 1; }
  echo "@@SUMMARY $id: ${dev##*/} has $got-byte logical sectors"
}
# bounded SECS CMD...: runs CMD; its status, or 124 if it still runs after SECS (left
# running: a task stuck in the kernel cannot be killed).
bounded() {
  t=$1; shift
  "$@" & p=$!
  i=0
  while kill -0 $p 2>/dev/null; do
    i=$((i+1)); [ $i -gt $((t * 5)) ] && return 124; sleep 0.2
  done
  wait $p
}
# check_misbehaving DEV MODE LINE SECS: DEV's backend misbehaves in MODE at the first
# write: a read before works (wrong-ring: nothing is ever answered), the write fails
# within SECS, the kernel log has blkfront's LINE for DEV, and a read fails afterwards.
check_misbehaving() {
  dev=$1; mode=$2; line=$3; t=$4; d=${dev##*/}
  wait_dev "$dev" 60 || return 1
  if [ "$mode" != wrong-ring ]; then
    bounded "$t" dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null
    rc=$?; [ $rc -eq 0 ] || { echo "$d: the read before the misbehaviour failed (rc=$rc)"; return 1; }
  fi
  t0=$(cut -d. -f1 /proc/uptime)
  bounded "$t" dd if=/dev/zero of="$dev" bs=4k count=1 seek=64 oflag=direct 2>/dev/null
  rc=$?; t1=$(cut -d. -f1 /proc/uptime)
  [ $rc -eq 124 ] && { echo "$d: the write still waits after $t s (a hang)"; return 1; }
  [ $rc -eq 0 ] && { echo "$d: the write to a $mode backend succeeded"; return 1; }
  dmesg | grep -q "sluice-blkfront: $d: .*$line" || {
    echo "$d: no 'sluice-blkfront: $d: ... $line' in the kernel log:"; dmesg | grep -i "$d\|blkfront" | tail -n 8; return 1; }
  bounded "$t" dd if="$dev" of=/dev/null bs=4k count=1 skip=128 iflag=direct 2>/dev/null
  rc=$?; [ $rc -eq 0 ] && { echo "$d: a read after the failure succeeded"; return 1; }
  [ $rc -eq 124 ] && { echo "$d: a read after the failure still waits after $t s"; return 1; }
  echo "@@SUMMARY $id: $mode backend: the write failed after $((t1 - t0)) s with the driver's line ($(dmesg | grep "sluice-blkfront: $d: .*$line" | head -n 1 | sed 's/^\[[^]]*\] //')); the device stays failed"
}
# net_up ME [QUEUES]: the netfront's eth0 (QUEUES tx and rx queues when given) up with
# the static address ME/24 (once: a later check finds it up).
net_up() {
  me=$1; q=$2
  i=0; until [ -e /sys/class/net/eth0 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "no eth0"; return 1; }; sleep 0.1; done
  if ! ip -4 addr show dev eth0 | grep -q " $me/24 "; then
    x ip addr add "$me/24" dev eth0 || return 1
  fi
  x ip link set eth0 up || return 1
  i=0; until [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "eth0 has no carrier"; return 1; }; sleep 0.1; done
  tq=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l); rq=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)
  echo "eth0 $(cat /sys/class/net/eth0/address) mtu $(cat /sys/class/net/eth0/mtu) up, $tq tx / $rq rx queues"
  if [ -n "$q" ]; then
    [ "$tq" = "$q" ] && [ "$rq" = "$q" ] || { echo "eth0 has $tq tx / $rq rx queues, not $q"; return 1; }
  fi
}
# check_net ME PEER [QUEUES] [MIB]: net_up, ping both ways, then MIB (64) MiB of random
# data over TCP each way (busybox nc; a fifo keeps each listener's stdin open so it never
# half-closes first); dom0 compares the sha256 (net-* actions) and sends back as many
# MiB as it received.
check_net() {
  me=$1; peer=$2; q=$3; mib=${4:-64}
  net_up "$me" "$q" || return 1
  x ping -c 3 -W 10 "$peer" || { echo "the guest cannot ping dom0"; return 1; }
  dom0 net-ping "$me" || { echo "dom0 cannot ping the guest"; return 1; }
  x dd if=/dev/urandom of=/tmp/net.bin bs=1M count=$mib 2>/dev/null || return 1
  s=$(sha /tmp/net.bin) || return 1
  dom0 net-listen 5001 || return 1
  t0=$(cut -d' ' -f1 /proc/uptime)
  n=0; until x nc "$peer" 5001 < /tmp/net.bin; do n=$((n+1)); [ $n -gt 10 ] && { echo "sending to dom0 failed"; return 1; }; sleep 1; done
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "@@NET guest-to-dom0 $mib MiB in $(awk "BEGIN{print $t1 - $t0}") s"
  rm -f /tmp/net.bin
  dom0 net-received "$s" || { echo "dom0 did not receive the guest's $mib MiB (sha256 $s)"; return 1; }
  rm -f /tmp/net-fifo /tmp/net-rx.bin; mkfifo /tmp/net-fifo || return 1
  nc -l -p 5002 < /tmp/net-fifo > /tmp/net-rx.bin &
  pid=$!
  exec 3>/tmp/net-fifo
  dom0 net-send "$me" || { exec 3>&-; kill $pid 2>/dev/null; echo "dom0 could not send"; return 1; }
  wait $pid; rc=$?
  exec 3>&-
  [ $rc -eq 0 ] || { echo "nc -l exited $rc"; return 1; }
  echo "received $(wc -c < /tmp/net-rx.bin) bytes from dom0"
  s=$(sha /tmp/net-rx.bin) || return 1
  rm -f /tmp/net-rx.bin
  dom0 net-sent "$s" || { echo "the guest received other bytes than dom0 sent (sha256 $s)"; return 1; }
}
# check_net_restart ME PEER: dom0 kills sluice-netback (SIGKILL) and starts it again;
# the vif comes back without the guest doing anything: ping both ways.
check_net_restart() {
  me=$1; peer=$2
  dom0 net-restart netback || { echo "dom0 could not restart the net backend"; return 1; }
  n=0; until ping -c 1 -W 3 "$peer" >/dev/null 2>&1; do
    n=$((n+1)); [ $n -gt 40 ] && { echo "no ping answer after the backend restart"; return 1; }
  done
  x ping -c 3 -W 10 "$peer" || { echo "the guest cannot ping dom0 after the restart"; return 1; }
  dom0 net-ping "$me" || { echo "dom0 cannot ping the guest after the restart"; return 1; }
}
# check_unload SECS: the kernel log is clean (no WARNING splat, BUG, Oops, call trace or
# hung task),
# then every vbd is unbound and blkfront unloaded, each within SECS; no disk is left.
check_unload() {
  t=$1
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than"; then
    echo "the kernel complained (above)"; return 1
  fi
  mod=$(sed -n 's/^\([a-z_]*blkfront\) .*/\1/p' /proc/modules | head -n 1)
  [ -n "$mod" ] || { echo "no blkfront module loaded"; return 1; }
  for d in /sys/bus/xen/devices/vbd-*; do
    [ -e "$d/driver" ] || continue
    bounded "$t" sh -c "echo ${d##*/} > $d/driver/unbind"
    rc=$?; [ $rc -eq 0 ] || { echo "unbinding ${d##*/} failed or hung (rc=$rc)"; return 1; }
  done
  bounded "$t" rmmod "$mod"
  rc=$?; [ $rc -eq 0 ] || { echo "rmmod $mod failed or hung (rc=$rc)"; return 1; }
  grep -q "^$mod " /proc/modules && { echo "$mod still loaded"; return 1; }
  left=$(ls /sys/block | grep '^xvd')
  [ -z "$left" ] || { echo "disks left after rmmod: $left"; return 1; }
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than"; then
    echo "the kernel complained while unloading (above)"; return 1
  fi
  # Grants a backend kept mapped stay granted (their pages quarantined): the driver
  # ends them without the grant table's "still in use" warnings.
  if dmesg | grep "still in use"; then echo "a grant was ended while in use (above)"; return 1; fi
  echo "@@SUMMARY $id: kernel log clean; every vbd unbound (failed devices included) and $mod unloaded"
}
# check_hostile DEV DEVID FILE SECTOR SCALE: sluice-hostile-blkfront attacks the backend of
# device DEVID (no blkfront is loaded), writing the start of FILE at SECTOR once
# validly; dom0 then checks that the backend idles and detaches the device; then
# blkfront is loaded for the guest's other disks.
check_hostile() {
  dev=$1; devid=$2; file=$3; s=$4; scale=$5; steady_devid=$6; steady_s=$7
  for n in gntalloc evtchn xenbus; do [ -e /dev/xen/$n ] || { echo "no /dev/xen/$n"; return 1; }; done
  grep -q blkfront /proc/modules && { echo "a blkfront is loaded: the device is not free"; return 1; }
  steady=""
  [ -n "$steady_devid" ] && steady="--steady-devid $steady_devid --steady-sector $steady_s"
  x /sbin/sluice-hostile-blkfront --devid "$devid" --data "$file" --sector "$s" --timeout-scale "$scale" $steady
  rc=$?
  idle=0; dom0 backend-idle "${dev##*/}" || idle=1
  # The toolstack removes the device the backend gave up on, so that blkfront (stock,
  # or sluice-blkfront, which would wait for it) finds only the other disks.
  dom0 detach "${dev##*/}" || return 1
  i=0
  while [ -e /sys/bus/xen/devices/vbd-$devid ]; do
    i=$((i+1)); [ $i -gt 300 ] && { echo "vbd-$devid still there 60 s after the detach"; return 1; }; sleep 0.2
  done
  ko=$(blkfront_ko)
  x insmod "$ko" || { echo "insmod $ko failed"; return 1; }
  [ $rc -eq 0 ] || { echo "hostile frontend: $rc failed check(s)"; return 1; }
  [ $idle -eq 0 ] || { echo "the backend does not idle after the attack"; return 1; }
  echo "@@SUMMARY $id: every hostile-frontend check passed (bad rings and xenstore garbage refused, hostile requests answered with errors, valid I/O read back, runaway ring disconnected); backend idle afterwards; device detached by the toolstack; blkfront loaded for the other disks${steady:+; meanwhile device $steady_devid kept serving a well-behaved frontend}"
}
check_ext4() {
  dev=$1; file=$2; want=$3
  wait_dev "$dev" || return 1
  x mkfs.ext4 -q -F "$dev" || { echo "mkfs.ext4 failed"; return 1; }
  mkdir -p /mnt/t
  x mount -t ext4 "$dev" /mnt/t || { echo "mount failed"; return 1; }
  x cp "$file" /mnt/t/pattern.bin || return 1
  mkdir -p /mnt/t/dir
  n=0
  while [ $n -lt 16 ]; do echo "sluice file $n" > /mnt/t/dir/file-$n.txt || return 1; n=$((n+1)); done
  x dd if="$file" of=/mnt/t/dir/big.bin bs=4096 count=128 2>/dev/null || return 1
  x sync
  (cd /mnt/t && find . -type f | sort | xargs sha256sum) > /tmp/sums || return 1
  files=$(wc -l < /tmp/sums)
  bytes=$(cat $(cd /mnt/t && find . -type f | sed 's|^\.|/mnt/t|') | wc -c)
  x umount /mnt/t || { echo "umount failed"; return 1; }
  x e2fsck -fn "$dev" > /tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; echo "e2fsck found problems"; return 1; }
  echo 3 > /proc/sys/vm/drop_caches
  x mount -t ext4 "$dev" /mnt/t || { echo "remount failed"; return 1; }
  (cd /mnt/t && sha256sum -c /tmp/sums > /tmp/check.log 2>&1) || { cat /tmp/check.log; echo "checksums differ after remount"; return 1; }
  got=$(sha /mnt/t/pattern.bin) || return 1
  [ "$got" = "$want" ] || { echo "pattern.bin: $got, expected $want"; return 1; }
  # fstrim: 16 MiB of random data reach the disk, the file is deleted, fstrim discards
  # the free space; the host then finds the image holding no more data than the file
  # system uses (run.rs, host_ext4).
  x dd if=/dev/urandom of=/mnt/t/trim.bin bs=65536 count=256 2>/dev/null || return 1
  x sync
  rm /mnt/t/trim.bin && x sync || return 1
  out=$(fstrim -v /mnt/t 2>&1) || { echo "fstrim failed: $out"; return 1; }
  trimmed=$(echo "$out" | sed -n 's/.*[ (]\([0-9][0-9]*\) bytes.*/\1/p')
  [ "${trimmed:-0}" -ge 16777216 ] || { echo "fstrim trimmed ${trimmed:-?} bytes, want >= 16 MiB: $out"; return 1; }
  x umount /mnt/t || return 1
  echo "@@SUMMARY $id: mkfs.ext4, $files files ($bytes bytes) written and synced, e2fsck clean, remounted, $files/$files sha256 match; 16 MiB file deleted, fstrim trimmed $trimmed bytes"
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Disk, NetFrontend};

    fn step(t: GuestType, backends: &[BlockBackend]) -> GuestStep {
        GuestStep::new("g-1", t, backends, &[Workload::Pattern { disk: 0 }])
    }

    #[test]
    fn guest_cfg_per_type_and_backend() {
        let pv = guest_cfg(2, &step(GuestType::Pv, &[BlockBackend::KernelBlkback]));
        assert!(pv.contains("type = \"pv\""));
        assert!(!pv.contains("tsc_mode"));
        assert!(pv.contains("'format=raw,vdev=xvda,access=rw,target=/dev/sluice-s2d0'"));
        let pvh = guest_cfg(
            0,
            &step(
                GuestType::Pvh,
                &[BlockBackend::KernelBlkback, BlockBackend::Userspace],
            ),
        );
        assert!(pvh.contains("type = \"pvh\""));
        assert!(pvh.contains("tsc_mode = \"native\""));
        assert!(pvh.contains(
            "'format=raw,vdev=xvdb,access=rw,backendtype=phy,script=block-userspace,target=/dev/sluice-s0d1'"
        ));
        assert!(pvh.contains("extra = \"console=hvc0 quiet sluice.step=g-1\""));
    }

    fn boot(steps: Vec<GuestStep>) -> Boot {
        Boot {
            name: "b".into(),
            console: ConsoleBackend::Xenconsoled,
            daemons: vec![],
            steps,
            fio_in_dom0: false,
        }
    }

    #[test]
    fn misbehaving_backend_steps_pick_their_daemon() {
        use crate::scenario::{BackendMisbehaviour, Dom0Daemon};
        let u = BlockBackend::Userspace;
        let daemon = |n: &str| Dom0Daemon {
            name: n.into(),
            binary: "/bin/true".into(),
            args: vec!["--x".into()],
            serves_block: true,
            serves_net: false,
        };
        let bad = GuestStep::new(
            "bad",
            GuestType::Pv,
            &[u.clone(), u.clone()],
            &[
                Workload::MisbehavingBackend {
                    disk: 1,
                    mode: BackendMisbehaviour::Vanish,
                },
                Workload::Pattern { disk: 0 },
                Workload::UnloadFrontend,
            ],
        )
        .with_block_daemon("hostile")
        .with_blkfront_args(&["io_timeout=10"]);
        let good = GuestStep::new(
            "good",
            GuestType::Pv,
            std::slice::from_ref(&u),
            &[Workload::Pattern { disk: 0 }],
        );
        let mut b = boot(vec![bad.clone(), good.clone()]);
        b.daemons = vec![daemon("blkback"), daemon("hostile")];
        validate(&b).unwrap();
        let names = |s: &GuestStep| -> Vec<String> {
            b.block_daemons(s).iter().map(|d| d.name.clone()).collect()
        };
        assert_eq!(names(&bad), ["hostile"]);
        assert_eq!(
            names(&good),
            ["blkback"],
            "a named daemon runs only for its steps"
        );
        let script = dom0_step(&b, &bad);
        assert!(script.contains("stop_daemon blkback\n"), "{script}");
        assert!(
            script.contains("start_daemon hostile '--x' 'xvdb=vanish'\n"),
            "{script}"
        );
        let script = dom0_step(&b, &good);
        assert!(script.contains("stop_daemon hostile\n"), "{script}");
        assert!(script.contains("start_daemon blkback '--x'\n"), "{script}");
        // A misbehaving disk needs the daemon; unload comes last; the daemon must exist;
        // module arguments stay plain.
        let mut no_daemon = bad.clone();
        no_daemon.block_daemon = None;
        let mut unload_first = bad.clone();
        unload_first.workloads.rotate_right(1);
        let mut unknown = bad.clone();
        unknown.block_daemon = Some("nobody".into());
        let quoted = bad.clone().with_blkfront_args(&["x=$(reboot)"]);
        for s in [no_daemon, unload_first, unknown, quoted] {
            let mut b2 = boot(vec![s]);
            b2.daemons = vec![daemon("blkback"), daemon("hostile")];
            assert!(validate(&b2).is_err());
        }
    }

    #[test]
    fn validation_rejects_bad_configs() {
        let ok = step(GuestType::Pv, &[BlockBackend::KernelBlkback]);
        validate(&boot(vec![ok.clone()])).unwrap();
        // Duplicate step names, bad characters, a workload on a missing disk, tiny disks.
        assert!(validate(&boot(vec![ok.clone(), ok.clone()])).is_err());
        let mut bad = ok.clone();
        bad.name = "Bad_Name".into();
        assert!(validate(&boot(vec![bad])).is_err());
        let mut nodisk = ok.clone();
        nodisk.workloads = vec![Workload::Ext4 { disk: 1 }];
        assert!(validate(&boot(vec![nodisk])).is_err());
        let mut tiny = ok.clone();
        tiny.disks = vec![Disk {
            of: None,
            size_mib: 1,
            backend: BlockBackend::KernelBlkback,
            sector_size: 512,
            readonly: false,
        }];
        assert!(validate(&boot(vec![tiny])).is_err());
        // A disk of an earlier step's: only an earlier step's own disk of the same size;
        // a guest destroyed mid-write is alone in its step, on a userspace disk.
        let u = BlockBackend::Userspace;
        let step =
            |n: &str, w: Workload| GuestStep::new(n, GuestType::Pv, std::slice::from_ref(&u), &[w]);
        let destroy = step("d", Workload::CrashDestroy { disk: 0 });
        let verify = step("v", Workload::CrashVerify { disk: 0 }).with_disk_of(0, 0, 0);
        assert!(validate(&boot(vec![destroy.clone(), verify.clone()])).is_ok());
        assert!(validate(&boot(vec![verify.clone(), destroy.clone()])).is_err());
        let mut bigger = verify.clone();
        bigger.disks[0].size_mib *= 2;
        assert!(validate(&boot(vec![destroy.clone(), bigger])).is_err());
        let mut crowded = destroy.clone();
        crowded.workloads.push(Workload::ConsoleRoundTrip);
        assert!(validate(&boot(vec![crowded])).is_err());
        let kernel = GuestStep::new(
            "k",
            GuestType::Pv,
            &[BlockBackend::KernelBlkback],
            &[Workload::CrashKill { disk: 0 }],
        );
        assert!(validate(&boot(vec![kernel])).is_err());
        let mut b = boot(vec![ok]);
        b.console = ConsoleBackend::Userspace;
        assert!(validate(&b).is_err(), "userspace console without a daemon");
    }

    #[test]
    fn validation_keeps_workloads_apart() {
        let two = |w: &[Workload]| {
            GuestStep::new(
                "g-1",
                GuestType::Pv,
                &[BlockBackend::Userspace, BlockBackend::Userspace],
                w,
            )
        };
        let all_on_a = [
            Workload::Pattern { disk: 0 },
            Workload::Discard { disk: 0 },
            Workload::DetachAttach { disk: 0 },
            Workload::RestartBackend { disk: 0 },
            Workload::ReloadFrontend { disk: 0 },
            Workload::SectorSize { disk: 0 },
            Workload::Ext4 { disk: 1 },
        ];
        validate(&boot(vec![two(&all_on_a)])).unwrap();
        // Two writers of one region, ext4 sharing its disk, a restart of kernel blkback,
        // an odd sector size, a small disk for the 64 MiB layouts.
        let twice = [Workload::Discard { disk: 0 }, Workload::Discard { disk: 0 }];
        assert!(validate(&boot(vec![two(&twice)])).is_err());
        let shared = [
            Workload::Ext4 { disk: 1 },
            Workload::DetachAttach { disk: 1 },
        ];
        assert!(validate(&boot(vec![two(&shared)])).is_err());
        let kernel = GuestStep::new(
            "g-1",
            GuestType::Pv,
            &[BlockBackend::KernelBlkback],
            &[Workload::RestartBackend { disk: 0 }],
        );
        assert!(validate(&boot(vec![kernel])).is_err());
        assert!(validate(&boot(vec![two(&[]).with_sector_size(1, 1024)])).is_err());
        validate(&boot(vec![two(&[]).with_sector_size(1, 4096)])).unwrap();
        // Read-only disks: only non-writing workloads, and ReadOnly only on them.
        validate(&boot(vec![
            two(&[Workload::ReadOnly { disk: 1 }]).with_readonly(1)
        ]))
        .unwrap();
        assert!(validate(&boot(vec![two(&[Workload::ReadOnly { disk: 1 }])])).is_err());
        assert!(validate(&boot(vec![
            two(&[Workload::Pattern { disk: 1 }]).with_readonly(1)
        ]))
        .is_err());
        let mut small = two(&[Workload::Discard { disk: 0 }]);
        small.disks[0].size_mib = 32;
        assert!(validate(&boot(vec![small])).is_err());
    }

    #[test]
    fn hostile_frontend_needs_a_free_userspace_disk() {
        let u = BlockBackend::Userspace;
        let hostile = |w: &[Workload]| {
            GuestStep::new("g-1", GuestType::Pv, &[u.clone(), u.clone()], w)
                .without_blkfront_at_boot()
        };
        let ok = [
            Workload::ConsoleRoundTrip,
            Workload::HostileFrontend { disk: 0 },
            Workload::Pattern { disk: 1 },
        ];
        validate(&boot(vec![hostile(&ok)])).unwrap();
        // blkfront at boot would own the disk.
        let mut loaded = hostile(&ok);
        loaded.blkfront_at_boot = true;
        assert!(validate(&boot(vec![loaded])).is_err());
        // Another workload on its disk, or a disk workload before it.
        let shared = [
            Workload::HostileFrontend { disk: 0 },
            Workload::Pattern { disk: 0 },
        ];
        assert!(validate(&boot(vec![hostile(&shared)])).is_err());
        let late = [
            Workload::Pattern { disk: 1 },
            Workload::HostileFrontend { disk: 0 },
        ];
        assert!(validate(&boot(vec![hostile(&late)])).is_err());
        let kernel = GuestStep::new(
            "g-1",
            GuestType::Pv,
            &[BlockBackend::KernelBlkback],
            &[Workload::HostileFrontend { disk: 0 }],
        )
        .without_blkfront_at_boot();
        assert!(validate(&boot(vec![kernel])).is_err());
    }

    #[test]
    fn regions_fit_a_64_mib_disk_and_stay_apart() {
        let total = 64 << 11;
        let ws = [
            Workload::Pattern { disk: 0 },
            Workload::Discard { disk: 0 },
            Workload::DetachAttach { disk: 0 },
            Workload::RestartBackend { disk: 0 },
            Workload::ReloadFrontend { disk: 0 },
            Workload::HostileFrontend { disk: 0 },
        ];
        let mut all: Vec<(u64, u64)> = ws.iter().flat_map(|w| w.regions(total).unwrap()).collect();
        all.sort();
        for pair in all.windows(2) {
            assert!(pair[0].0 + pair[0].1 < pair[1].0, "{all:?}");
        }
        assert!(all.iter().all(|&(s, l)| s + l <= total), "{all:?}");
    }

    #[test]
    fn vif_lines_and_net_validation() {
        let net = |n: &str, b: NetBackend| {
            GuestStep::new(n, GuestType::Pv, &[], &[Workload::Net]).with_vif(b)
        };
        let u = guest_cfg(3, &net("u", NetBackend::Userspace));
        assert!(u.contains("vif = [ 'mac=00:16:3e:00:99:03,bridge=xenbr0,script=vif-userspace' ]"));
        assert!(!u.contains("\ndisk ="), "{u}");
        let k = guest_cfg(1, &net("k", NetBackend::Kernel));
        assert!(
            k.contains("vif = [ 'mac=00:16:3e:00:99:01,bridge=xenbr0' ]"),
            "{k}"
        );
        assert!(validate(&boot(vec![net("u", NetBackend::Userspace)])).is_ok());
        let b = boot(vec![
            net("u", NetBackend::Userspace),
            net("k", NetBackend::Kernel),
        ]);
        assert!(
            validate(&b).is_ok(),
            "kernel and userspace netback take turns in one boot"
        );
        let perf = |w: &[Workload]| {
            GuestStep::new("p", GuestType::Pv, &[], w).with_vif(NetBackend::Kernel)
        };
        let p = Workload::NetPerf { seconds: 1 };
        assert!(validate(&boot(vec![perf(&[Workload::Net, p.clone()])])).is_ok());
        assert!(validate(&boot(vec![perf(std::slice::from_ref(&p))])).is_ok());
        let mut novif = perf(&[p]);
        novif.vif = None;
        assert!(
            validate(&boot(vec![novif])).is_err(),
            "iperf3 without a vif"
        );
        let mut novif = net("n", NetBackend::Userspace);
        novif.vif = None;
        assert!(
            validate(&boot(vec![novif])).is_err(),
            "net workload without a vif"
        );
        assert!(b.has_vifs() && b.needs_kernel_netback());
        // A vif driven by a module of ours, 2 vCPUs: reload allowed, module staged.
        let ko = std::path::PathBuf::from("/x/sluice-netfront.ko");
        let mut m = GuestStep::new(
            "m",
            GuestType::Pvh,
            &[],
            &[Workload::Net, Workload::NetReloadFrontend],
        )
        .with_vif_frontend(NetBackend::Kernel, NetFrontend::Module(ko.clone()));
        m.vcpus = 2;
        assert!(validate(&boot(vec![m.clone()])).is_ok());
        assert!(guest_cfg(0, &m).contains("vcpus = 2"));
        assert_eq!(
            m.vif.as_ref().unwrap().module(),
            Some((&ko, "sluice_netfront".to_string()))
        );
        assert_eq!(
            crate::net::guest_module_path(&m).as_deref(),
            Some("/lib/modules/step-m-sluice-netfront.ko")
        );
        m.vcpus = 3;
        assert!(validate(&boot(vec![m])).is_err(), "3 vCPUs on 2 CPUs");
        let stock = GuestStep::new("s", GuestType::Pv, &[], &[Workload::NetReloadFrontend])
            .with_vif(NetBackend::Kernel);
        assert!(
            validate(&boot(vec![stock])).is_err(),
            "reloading stock xen-netfront"
        );
    }

    #[test]
    fn blkback_loaded_only_when_a_disk_needs_it() {
        let u = boot(vec![step(GuestType::Pv, &[BlockBackend::Userspace])]);
        assert!(!u.needs_kernel_blkback());
        let k = boot(vec![
            step(GuestType::Pv, &[BlockBackend::Userspace]),
            GuestStep::new("g-2", GuestType::Pv, &[BlockBackend::KernelBlkback], &[]),
        ]);
        assert!(k.needs_kernel_blkback());
    }

    #[test]
    fn host_kernel_modules_resolve_dependencies_first() {
        let Ok(k) = HostKernel::discover() else {
            eprintln!("no host kernel installed; nothing to resolve");
            return;
        };
        let mods = k.modules_in_load_order(GUEST_MODULES).unwrap();
        let pos = |name: &str| {
            mods.iter()
                .position(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
                .unwrap_or_else(|| panic!("{name} missing from {mods:?}"))
        };
        assert!(pos("jbd2") < pos("ext4"));
        assert!(pos("mbcache") < pos("ext4"));
        assert!(k.modules_in_load_order(&["no-such-module"]).is_err());
    }
}
