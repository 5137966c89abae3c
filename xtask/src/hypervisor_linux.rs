//! `hypervisor-linux`: the stock Debian 6.1 kernel (the host's `/boot/vmlinuz-*`, the
//! one the Xen test bed boots, uncompressed to `build/kernel/vmlinux-*`) as a PVH domain
//! of the Sluice hypervisor in QEMU TCG, with a busybox initramfs: the hypervisor gets
//! the kernel as a multiboot module (its arguments are the domain's options and Linux's
//! command line) and the initramfs as the next module (`initrd`), which the loader
//! passes through `hvm_start_info`'s module list.
//!
//! The suite reports every boot milestone the serial log shows, in order, and fails
//! unless the first [`REQUIRED`] of them were reached (raised as the hypervisor learns
//! what Linux needs next). The boot is stopped at the last milestone, a panic, the
//! domain's death, or after [`BOOT_LIMIT`].

use crate::util::root;
use anyhow::{bail, Context, Result};
use sluice_testbed::initramfs::Initramfs;
use sluice_testbed::kernel::HostKernel;
use sluice_testbed::paths::{kernel_cache_dir, run_dir};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest the boot may run (a bound on the suite's time, not an assertion).
const BOOT_LIMIT: Duration = Duration::from_secs(150);

/// Boot milestones, in the order Linux reaches them, with the serial-log text that
/// proves each: on a line of the domain's console (prefix `(d1) `) unless it is the
/// hypervisor's own.
const MILESTONES: &[(&str, &str)] = &[
    (
        "domain built from kernel + initrd modules",
        "domain 1 (linux): initrd, ",
    ),
    (
        "early printk output: the version banner",
        "] Linux version 6.1.",
    ),
    ("kernel command line seen", "] Command line: name=linux"),
    ("Xen detected", "] Hypervisor detected: Xen HVM"),
    ("initrd found in the start info", "] RAMDISK: [mem "),
    (
        "guest ACPI tables from the start info's RSDP",
        "] ACPI: APIC 0x00000000000E0600",
    ),
    (
        "emulated x2APIC taken",
        "] Setting APIC routing to cluster x2apic.",
    ),
    ("PVH boot path", "] Booting kernel on Xen PVH"),
    (
        "timers ticking (past calibration)",
        "] Calibrating delay loop",
    ),
    ("initramfs unpacked, /init run", "] @@LINUX-INIT"),
    ("kernel version from userspace", "] @@UNAME 6.1."),
    ("shell prompt", "] @@SHELL"),
];

/// How many of [`MILESTONES`] must be reached for the suite to pass.
const REQUIRED: usize = 8;

/// Stop reading once one of these appears.
const TERMINAL: &[&str] = &[
    "Kernel panic",
    "): KILLED",
    "HYPERVISOR",
    "sluice hypervisor: all domains ended",
];

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
k() { echo "$*" > /dev/kmsg; }
k "@@LINUX-INIT"
k "@@UNAME $(uname -r)"
k "@@NPROC $(nproc)"
k "@@SHELL"
exec /bin/sh
"#;

fn initramfs() -> Result<std::path::PathBuf> {
    let dir = run_dir("hypervisor-linux");
    let ir = Initramfs::new(&dir.join("staging"))?;
    ir.busybox()?;
    ir.bytes("/init", INIT.as_bytes(), 0o755)?;
    let out = dir.join("initramfs.cpio");
    ir.pack(&out)?;
    Ok(out)
}

pub fn run_suite() -> Result<()> {
    let t0 = Instant::now();
    let (hv, _) = crate::hypervisor::build()?;
    let kernel = HostKernel::discover()?;
    let vmlinux = kernel.vmlinux(&kernel_cache_dir())?;
    let initrd = initramfs()?;
    eprintln!(
        "  kernel {} ({} bytes uncompressed), initramfs {} bytes",
        kernel.version,
        std::fs::metadata(&vmlinux)?.len(),
        std::fs::metadata(&initrd)?.len()
    );
    // The domain's options (name, memory) and Linux's command line share the module's
    // arguments; Linux hands the words it does not know to init.
    let linux_cmdline = "earlyprintk=xen keep_bootcon console=hvc0 loglevel=7";
    let modules = format!(
        "{} name=linux memory=512 {linux_cmdline},{} initrd",
        vmlinux.display(),
        initrd.display()
    );
    let boot_t = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "tcg", "-cpu", "EPYC,+svm,+npt"])
        .args(["-m", "1024", "-smp", "2"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(&hv)
        .args(["-initrd", &modules])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .current_dir(root())
        .spawn()
        .context("cannot run qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line).replace('\r', "");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let last = MILESTONES.last().expect("milestones").1;
    let mut log = String::new();
    let mut stop_reason = "the boot limit";
    loop {
        let left = BOOT_LIMIT.saturating_sub(boot_t.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains(last) {
                    stop_reason = "the last milestone";
                    break;
                }
                if let Some(t) = TERMINAL.iter().find(|t| line.contains(*t)) {
                    stop_reason = t;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                stop_reason = "QEMU's exit";
                break;
            }
        }
    }
    let boot_secs = boot_t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let log_path = run_dir("hypervisor-linux").join("serial.log");
    std::fs::write(&log_path, &log)?;

    let seen = |i: usize, needle: &str| {
        log.lines()
            .any(|l| (i == 0 || l.starts_with("(d1) ")) && l.contains(needle))
    };
    let reached = (0..MILESTONES.len())
        .take_while(|&i| seen(i, MILESTONES[i].1))
        .count();
    for (i, (what, needle)) in MILESTONES.iter().enumerate() {
        let mark = if i < reached { "reached" } else { "not yet" };
        eprintln!("  [{mark}] {what}  ({needle:?})");
    }
    let tail: Vec<&str> = log.lines().rev().take(25).collect();
    eprintln!(
        "  boot stopped at {stop_reason} after {boot_secs:.1} s; last lines of the log ({}):",
        log_path.display()
    );
    for l in tail.iter().rev() {
        eprintln!("    {l}");
    }
    if reached < REQUIRED {
        bail!(
            "Linux reached {reached} of the {REQUIRED} required milestones (next: {})",
            MILESTONES[reached].0
        );
    }
    eprintln!(
        "  Linux on Sluice: {reached}/{} milestones ({}), suite {:.0} s",
        MILESTONES.len(),
        MILESTONES[reached - 1].0,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
