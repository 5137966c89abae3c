//! `cargo xtask bench linux-boot`: the same stock Debian 6.1 kernel (`build/kernel/vmlinux-*`)
//! and the same small initramfs (busybox, a static microbenchmark built here from
//! `linux_bench.c`, an `/init` that prints markers) as a PVH domain with one vCPU and
//! 256 MiB, on Sluice's hypervisor and as a PVH domU on real Xen 4.17 (the test bed,
//! `xl create`), in interleaved rounds (Sluice, Xen, Sluice, Xen, ...), each a QEMU boot
//! of its own.
//!
//! What it measures, all by the guest's own clock:
//! - boot: `/proc/uptime` read first thing in `/init`, i.e. the kernel's time from its
//!   clock's start (the PV clock read early in `setup_arch`) to userspace. It leaves out
//!   the domain build (Sluice's loader, or libxl) and the kernel's first instructions.
//! - getppid / pipe round trip / fork: ns per operation, medians of 5 batches
//!   (`linux_bench.c`), and the smallest step of the guest's CLOCK_MONOTONIC seen
//!   (clock-step: what those can resolve). The guest's clocksource is printed per round.

use crate::util::{cargo, root, run};
use anyhow::{bail, Context, Result};
use sluice_testbed::initramfs::Initramfs;
use sluice_testbed::kernel::HostKernel;
use sluice_testbed::paths::{kernel_cache_dir, run_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Linux's command line on both hypervisors.
const CMDLINE: &str = "console=hvc0 quiet";

/// The figures, in the order of the table's columns.
const FIGURES: [&str; 5] = ["boot", "clock-step", "getppid", "pipe-rtt", "fork"];

fn init(scale: u32) -> String {
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         read up idle < /proc/uptime\n\
         echo \"@@LB boot $up\"\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         echo \"@@LB-CLOCKSOURCE $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\"\n\
         /bin/lbench {scale}\n\
         echo \"@@LB-DONE\"\n\
         poweroff -f\n"
    )
}

/// Builds the microbenchmark (static) and the initramfs.
fn initramfs(scale: u32) -> Result<PathBuf> {
    let dir = run_dir("bench-linux-boot");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("lbench");
    run(Command::new("cc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&bin)
        .arg(root().join("xtask/src/linux_bench.c")))?;
    let ir = Initramfs::new(&dir.join("staging"))?;
    ir.busybox()?;
    ir.bytes("/bin/lbench", &std::fs::read(&bin)?, 0o755)?;
    ir.bytes("/init", init(scale).as_bytes(), 0o755)?;
    let out = dir.join("initramfs.cpio");
    ir.pack(&out)?;
    Ok(out)
}

/// The `@@LB name value` figures of a console (boot in seconds, the rest in ns).
fn figures(console: &str) -> Option<Vec<f64>> {
    if !console.contains("@@LB-DONE") {
        return None;
    }
    FIGURES
        .iter()
        .map(|f| {
            console.lines().find_map(|l| {
                let (_, rest) = l.split_once(&format!("@@LB {f} "))?;
                rest.split_whitespace().next()?.parse::<f64>().ok()
            })
        })
        .collect()
}

/// One Sluice boot: the hypervisor with the kernel and initramfs modules; the domain
/// powers off at the end of `/init`, the hypervisor then exits.
fn sluice_round(hv: &Path, vmlinux: &Path, initrd: &Path) -> Result<(Vec<f64>, String)> {
    let modules = format!(
        "{} name=lbench memory=256 vcpus=1 {CMDLINE},{} initrd",
        vmlinux.display(),
        initrd.display()
    );
    let out = Command::new("timeout")
        .args(["400", "qemu-system-x86_64", "-M", "q35", "-accel", "tcg"])
        // The same CPU as the Xen rounds' QEMU (no SMAP, SMEP, MONITOR: the guest's
        // kernel then takes the same paths on both).
        .args(["-cpu", sluice_testbed::serial::QEMU_CPU])
        .args(["-m", "1024", "-smp", "2"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(hv)
        .args(["-initrd", &modules])
        .current_dir(root())
        .output()
        .context("cannot run qemu-system-x86_64")?;
    let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let path = run_dir("bench-linux-boot").join("sluice-serial.log");
    std::fs::write(&path, &log)?;
    let console: String = log
        .lines()
        .filter_map(|l| l.strip_prefix("(d1) "))
        .map(|l| format!("{l}\n"))
        .collect();
    let f = figures(&console).with_context(|| {
        format!(
            "no figures from the Sluice boot (exit {:?}; log {})",
            out.status.code(),
            path.display()
        )
    })?;
    Ok((f, clocksource(&console)))
}

/// The clocksource the guest's init read from sysfs.
fn clocksource(console: &str) -> String {
    console
        .lines()
        .find_map(|l| {
            l.split_once("@@LB-CLOCKSOURCE ")
                .map(|(_, r)| r.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One Xen test-bed boot (`linux_boot_on_xen`).
fn xen_round(initrd: &Path) -> Result<(Vec<f64>, String)> {
    let out_file = run_dir("bench-linux-boot").join("xen-console.txt");
    let _ = std::fs::remove_file(&out_file);
    let out = cargo()
        .env("SLUICE_LINUX_BENCH_INITRD", initrd)
        .env("SLUICE_LINUX_BENCH_CMDLINE", CMDLINE)
        .env("SLUICE_LINUX_BENCH_OUT", &out_file)
        .args(["test", "-p", "sluice-testbed", "--test", "xen_bench", "--"])
        .args(["--ignored", "--nocapture", "--exact", "linux_boot_on_xen"])
        .output()
        .context("running the test bed")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("the Xen run failed:\n{text}");
    }
    let console = std::fs::read_to_string(&out_file)
        .with_context(|| format!("the Xen run left no {}", out_file.display()))?;
    let f =
        figures(&console).with_context(|| format!("no figures from the Xen guest:\n{console}"))?;
    Ok((f, clocksource(&console)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `rounds` rounds of (Sluice, Xen); `scale` sizes the microbenchmark's loops.
pub fn run_bench(rounds: usize, scale: u32) -> Result<()> {
    let (hv, _) = crate::hypervisor::build()?;
    let kernel = HostKernel::discover()?;
    let vmlinux = kernel.vmlinux(&kernel_cache_dir())?;
    let initrd = initramfs(scale)?;
    eprintln!("kernel {}, cmdline {CMDLINE:?}", kernel.version);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let (s, cs) = sluice_round(&hv, &vmlinux, &initrd)?;
        eprintln!("round {round}: Sluice {FIGURES:?} {s:?}, clocksource {cs}");
        let (x, cx) = xen_round(&initrd)?;
        eprintln!("round {round}: Xen 4.17 {FIGURES:?} {x:?}, clocksource {cx}");
        rows.push((s, x));
    }
    if rounds == 1 {
        eprintln!("linux-boot: SMOKE RUN (one round): the figures below mean nothing");
    }
    eprintln!("| round | what | Sluice | Xen 4.17 | Sluice / Xen |");
    eprintln!("|---|---|---|---|---|");
    for (i, (s, x)) in rows.iter().enumerate() {
        for (f, name) in FIGURES.iter().enumerate() {
            eprintln!(
                "| {} | {} | {} | {} | {:.2} |",
                i + 1,
                unit(name),
                s[f],
                x[f],
                s[f] / x[f]
            );
        }
    }
    eprintln!("medians over {rounds} rounds:");
    eprintln!("| what | Sluice | Xen 4.17 | Sluice / Xen (median of the rounds' ratios) |");
    eprintln!("|---|---|---|---|");
    for (f, name) in FIGURES.iter().enumerate() {
        let s = median(rows.iter().map(|r| r.0[f]).collect());
        let x = median(rows.iter().map(|r| r.1[f]).collect());
        let r = median(rows.iter().map(|r| r.0[f] / r.1[f]).collect());
        eprintln!("| {} | {s} | {x} | {r:.2} |", unit(name));
    }
    Ok(())
}

fn unit(name: &str) -> String {
    if name == "boot" {
        "boot to /init (s, guest uptime)".into()
    } else if name == "clock-step" {
        "CLOCK_MONOTONIC smallest step (ns)".into()
    } else {
        format!("{name} (ns/op)")
    }
}
