//! `cargo xtask bench passthrough`: NVMe reads of the stock Debian 6.1 kernel with
//! QEMU's `nvme` assigned to it as a PVH domain of Sluice's hypervisor (as the suite
//! `passthrough-linux` boots it: `-device intel-iommu,intremap=on`, `assign=00:07.0,00:08.0`
//! (the e1000e too, see [`device_args`]), 2 vCPUs, 128 MiB), against the same kernel booted directly by QEMU (`-kernel
//! vmlinuz`, no hypervisor, no IOMMU, 128 MiB) on the same QEMU machine (`-M q35 -accel
//! tcg -cpu EPYC,+svm,+npt -smp 2`) with the same `nvme` (and `e1000e`) devices and disk image,
//! and a third time like that with A's vIOMMU translating the kernel's DMA (C), in
//! interleaved rounds (A B C A B C ...), each a QEMU boot of its own.
//!
//! Both boot the same initramfs: busybox, the host kernel's nvme modules and a static
//! program built here from `passthrough_bench.c` that reads `/dev/nvme0n1` with
//! O_DIRECT for a number of seconds per job by the guest's CLOCK_MONOTONIC (4 KiB random
//! at queue depth 1 and 32, 1 MiB sequential at 1 and 8) and checks every block it
//! reads against the index the host wrote at its start. The host notes when each job's
//! begin and end lines reach the serial port (a check on the guest's clock, printed).

use crate::util::{root, run};
use anyhow::{bail, Context, Result};
use sluice_testbed::initramfs::Initramfs;
use sluice_testbed::kernel::HostKernel;
use sluice_testbed::paths::{kernel_cache_dir, run_dir};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The jobs of `passthrough_bench.c`, in its order, with the figure each reports.
const JOBS: [(&str, Figure); 4] = [
    ("randread-4k-qd1", Figure::Iops),
    ("randread-4k-qd32", Figure::Iops),
    ("seqread-1m-qd1", Figure::Mbs),
    ("seqread-1m-qd8", Figure::Mbs),
];

#[derive(Clone, Copy)]
enum Figure {
    Iops,
    Mbs,
}

/// The disk image (the same size for both; the nvme namespace).
const DISK_BYTES: usize = 64 << 20;
/// The guest's memory on both (the domain's in A: the VT-d unit's table pool maps up to
/// ~200 MiB of domain RAM; QEMU's `-m` in B).
const GUEST_MIB: u32 = 128;
/// The longest one boot may run (a bound on the bench's time, not an assertion).
fn boot_limit(seconds: f64) -> Duration {
    Duration::from_secs(400) + Duration::from_secs_f64(seconds * 6.0)
}

const QEMU_MACHINE: [&str; 8] = [
    "-M",
    "q35",
    "-accel",
    "tcg",
    "-cpu",
    "EPYC,+svm,+npt",
    "-smp",
    "2",
];

fn init(seconds: f64) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in /lib/modules/*.ko; do insmod $m; done
i=0
while [ ! -b /dev/nvme0n1 ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
[ -b /dev/nvme0n1 ] || {{ echo "@@PT-ERROR no /dev/nvme0n1"; poweroff -f; }}
echo "@@PT-CLOCKSOURCE $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "@@PT-NVME $(cat /sys/block/nvme0n1/size) sectors"
/bin/ptbench {seconds}
echo "@@PT-IRQ $(grep nvme /proc/interrupts | tr -s ' ' | tr '\n' ';')"
echo "@@PT-DONE"
poweroff -f
"#
    )
}

/// Builds the static reader and the initramfs (the same for both boots).
fn initramfs(kernel: &HostKernel, seconds: f64) -> Result<PathBuf> {
    let dir = run_dir("bench-passthrough");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("ptbench");
    run(Command::new("cc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&bin)
        .arg(root().join("xtask/src/passthrough_bench.c")))?;
    let ir = Initramfs::new(&dir.join("staging"))?;
    ir.busybox()?;
    ir.bytes("/bin/ptbench", &std::fs::read(&bin)?, 0o755)?;
    ir.bytes("/init", init(seconds).as_bytes(), 0o755)?;
    for (i, m) in kernel.modules_in_load_order(&["nvme"])?.iter().enumerate() {
        let name = m.file_name().context("module name")?.to_string_lossy();
        ir.file(m, &format!("/lib/modules/{i:02}-{name}"))?;
    }
    let out = dir.join("initramfs.cpio");
    ir.pack(&out)?;
    Ok(out)
}

/// The disk image: each 4 KiB block starts with its index (u64, little-endian), the
/// rest xorshift bytes, so that every read hits written data the guest can check.
fn disk_image() -> Result<PathBuf> {
    let path = run_dir("bench-passthrough").join("nvme.img");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut data = Vec::with_capacity(DISK_BYTES);
    for block in 0..(DISK_BYTES / 4096) as u64 {
        data.extend_from_slice(&block.to_le_bytes());
        for _ in 1..512 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(&path, &data)?;
    Ok(path)
}

/// One job's result: the guest's figure and seconds, and the host's seconds between the
/// job's begin and result lines.
#[derive(Clone, Debug)]
struct JobResult {
    figure: f64,
    guest_s: f64,
    host_s: f64,
}

/// One boot's results (in `JOBS` order), its clocksource and nvme interrupt counts.
struct Boot {
    jobs: Vec<JobResult>,
    clocksource: String,
    irq: String,
}

/// Runs QEMU with `args`, reads its serial port (stdio) line by line with the host's
/// arrival times, and parses the `@@PT` lines. `tag` names the serial log.
fn boot(args: &[std::ffi::OsString], tag: &str, seconds: f64) -> Result<Boot> {
    let t0 = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .current_dir(root())
        .spawn()
        .context("cannot run qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line).replace('\r', "");
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<(Instant, String)> = Vec::new();
    // Until QEMU ends (the domain's poweroff ends the hypervisor; B's ends QEMU), the
    // boot limit passes, or 30 s after the guest's last word.
    let mut deadline = t0 + boot_limit(seconds);
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if ["@@PT-DONE", "@@PT-ERROR", "Kernel panic"]
            .iter()
            .any(|m| l.1.contains(m))
        {
            deadline = deadline.min(Instant::now() + Duration::from_secs(30));
        }
        lines.push(l);
    }
    if child.try_wait()?.is_none() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let log: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let path = run_dir("bench-passthrough").join(format!("serial-{tag}.log"));
    std::fs::write(&path, &log)?;
    let fail = |why: String| -> anyhow::Error {
        anyhow::anyhow!(
            "{tag} boot: {why} (QEMU exit {:?}, {:.0} s; serial log {})",
            status.code(),
            t0.elapsed().as_secs_f64(),
            path.display()
        )
    };
    // The marker's text after "@@PT..." wherever it is on the line (Sluice prefixes the
    // domain's console lines with "(d1) ").
    let after = |marker: &str| -> Vec<(Instant, String)> {
        lines
            .iter()
            .filter_map(|(t, l)| {
                l.split_once(marker)
                    .map(|(_, r)| (*t, r.trim().to_string()))
            })
            .collect()
    };
    if let Some((_, e)) = after("@@PT-ERROR ").first() {
        return Err(fail(format!("the guest says: {e}")));
    }
    if after("@@PT-DONE").is_empty() {
        return Err(fail("no @@PT-DONE".into()));
    }
    let results = after("@@PT ");
    let begins = after("@@PT-BEGIN ");
    for (_, r) in &results {
        if !r.ends_with(" bad=0") {
            return Err(fail(format!("blocks read with the wrong content: {r}")));
        }
    }
    let field = |r: &str, key: &str| -> Option<f64> {
        r.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    let mut jobs = Vec::new();
    for (name, fig) in JOBS {
        let (t_end, r) = results
            .iter()
            .find(|(_, r)| r.split_whitespace().next() == Some(name))
            .ok_or_else(|| fail(format!("no result for {name}")))?;
        let (t_begin, _) = begins
            .iter()
            .find(|(_, b)| b == name)
            .ok_or_else(|| fail(format!("no begin line for {name}")))?;
        let key = match fig {
            Figure::Iops => "iops=",
            Figure::Mbs => "mbs=",
        };
        jobs.push(JobResult {
            figure: field(r, key).ok_or_else(|| fail(format!("no {key} in {r}")))?,
            guest_s: field(r, "seconds=").ok_or_else(|| fail(format!("no seconds in {r}")))?,
            host_s: t_end.duration_since(*t_begin).as_secs_f64(),
        });
    }
    let one = |m: &str| after(m).first().map(|(_, r)| r.clone()).unwrap_or_default();
    Ok(Boot {
        jobs,
        clocksource: one("@@PT-CLOCKSOURCE "),
        irq: one("@@PT-IRQ "),
    })
}

/// The devices of both machines: the nvme on the image, and the suite's e1000e (on a
/// `restrict=on` user netdev, no driver loaded in the guest). In A the domain gets both
/// (`assign=00:07.0,00:08.0`, as `passthrough-linux`): with only the nvme (vendor 1b36,
/// a mass-storage class) on its bus 0, the stock kernel finds no PCI config access at all
/// (no DMI, so its type-1 sanity check wants a host bridge, VGA or an Intel device on bus
/// 0; without type 1 it does not check the MCFG window against the E820), see
/// docs/bench.md.
fn device_args(disk: &Path) -> Vec<std::ffi::OsString> {
    let drive = format!("file={},if=none,id=nv0,format=raw", disk.display());
    [
        "-netdev",
        "user,id=n0,restrict=on",
        "-device",
        "e1000e,netdev=n0,addr=7",
        "-drive",
        &drive,
        "-device",
        "nvme,serial=sluice-nvme,drive=nv0,addr=8",
    ]
    .iter()
    .map(Into::into)
    .collect()
}

/// A: Sluice's hypervisor, the kernel as its PVH domain with the nvme assigned.
fn sluice_args(hv: &Path, vmlinux: &Path, initrd: &Path, disk: &Path) -> Vec<std::ffi::OsString> {
    let args =
        format!("name=linux memory={GUEST_MIB} vcpus=2 assign=00:07.0,00:08.0 console=hvc0 quiet");
    // QEMU's -initrd list separates modules with commas: a comma inside one is doubled.
    let modules = format!(
        "{} {},{} initrd",
        vmlinux.display(),
        args.replace(',', ",,"),
        initrd.display()
    );
    let mut a: Vec<std::ffi::OsString> = QEMU_MACHINE.iter().map(Into::into).collect();
    for s in [
        "-m",
        "1024",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device",
        "intel-iommu,intremap=on",
    ] {
        a.push(s.into());
    }
    a.extend(device_args(disk));
    a.push("-kernel".into());
    a.push(hv.into());
    a.push("-initrd".into());
    a.push(modules.into());
    a
}

/// B: the same kernel (its bzImage) booted by QEMU itself, the same memory as A's domain.
/// C (`iommu`): the same with A's `-device intel-iommu,intremap=on` and `intel_iommu=on`,
/// so that QEMU translates the device's DMA through the VT-d tables as in A (the kernel's
/// own DMA mappings instead of Sluice's IOVA = GPA domain).
fn bare_args(vmlinuz: &Path, initrd: &Path, disk: &Path, iommu: bool) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = QEMU_MACHINE.iter().map(Into::into).collect();
    if iommu {
        a.push("-device".into());
        a.push("intel-iommu,intremap=on".into());
    }
    let mem = GUEST_MIB.to_string();
    for s in [
        "-m",
        &mem,
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ] {
        a.push(s.into());
    }
    a.extend(device_args(disk));
    a.push("-kernel".into());
    a.push(vmlinuz.into());
    a.push("-initrd".into());
    a.push(initrd.into());
    a.push("-append".into());
    a.push(if iommu {
        "console=ttyS0 quiet intel_iommu=on".into()
    } else {
        "console=ttyS0 quiet".into()
    });
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn unit(i: usize) -> String {
    let (name, fig) = JOBS[i];
    match fig {
        Figure::Iops => format!("{name} (IOPS)"),
        Figure::Mbs => format!("{name} (MB/s)"),
    }
}

/// `rounds` rounds of (Sluice, bare, bare + vIOMMU), each job `seconds` long.
pub fn run_bench(rounds: usize, seconds: f64) -> Result<()> {
    let (hv, _) = crate::hypervisor::build()?;
    let kernel = HostKernel::discover()?;
    let vmlinux = kernel.vmlinux(&kernel_cache_dir())?;
    let initrd = initramfs(&kernel, seconds)?;
    let disk = disk_image()?;
    eprintln!(
        "kernel {}, {GUEST_MIB} MiB, 2 vCPUs, nvme {} MiB image, {seconds} s per job",
        kernel.version,
        DISK_BYTES >> 20
    );
    let variants = [
        ("sluice", sluice_args(&hv, &vmlinux, &initrd, &disk)),
        ("bare", bare_args(&kernel.vmlinuz, &initrd, &disk, false)),
        (
            "bare-viommu",
            bare_args(&kernel.vmlinuz, &initrd, &disk, true),
        ),
    ];
    for (tag, args) in &variants {
        let line: Vec<_> = args.iter().map(|s| s.to_string_lossy()).collect();
        eprintln!("{tag}: qemu-system-x86_64 {}", line.join(" "));
    }
    // rows[round][variant][job]
    let mut rows: Vec<Vec<Vec<JobResult>>> = Vec::new();
    for round in 1..=rounds {
        let mut row = Vec::new();
        for (tag, args) in &variants {
            let t = Instant::now();
            let b = boot(args, tag, seconds)?;
            eprintln!(
                "round {round}: {tag}: QEMU ran {:.0} s, clocksource {}, nvme interrupts {}",
                t.elapsed().as_secs_f64(),
                b.clocksource,
                b.irq
            );
            for (i, j) in b.jobs.iter().enumerate() {
                eprintln!(
                    "  {:<28} {:>10.1}   guest {:.2} s, host {:.2} s between its lines",
                    unit(i),
                    j.figure,
                    j.guest_s,
                    j.host_s
                );
            }
            row.push(b.jobs);
        }
        rows.push(row);
    }
    if rounds == 1 {
        eprintln!("passthrough: ONE ROUND: the figures below are no measurement");
    }
    let fig = |r: &Vec<Vec<JobResult>>, v: usize, i: usize| r[v][i].figure;
    eprintln!("| round | job | Sluice | bare QEMU | bare QEMU + vIOMMU | Sluice / bare | Sluice / bare + vIOMMU |");
    eprintln!("|---|---|---|---|---|---|---|");
    for (n, r) in rows.iter().enumerate() {
        for i in 0..JOBS.len() {
            eprintln!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                n + 1,
                unit(i),
                fig(r, 0, i),
                fig(r, 1, i),
                fig(r, 2, i),
                fig(r, 0, i) / fig(r, 1, i),
                fig(r, 0, i) / fig(r, 2, i)
            );
        }
    }
    eprintln!("medians over {rounds} rounds (ratios: median of the rounds' ratios):");
    eprintln!("| job | Sluice | bare QEMU | bare QEMU + vIOMMU | Sluice / bare | Sluice / bare + vIOMMU |");
    eprintln!("|---|---|---|---|---|---|");
    for i in 0..JOBS.len() {
        let m = |f: &dyn Fn(&Vec<Vec<JobResult>>) -> f64| median(rows.iter().map(f).collect());
        eprintln!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            unit(i),
            m(&|r| fig(r, 0, i)),
            m(&|r| fig(r, 1, i)),
            m(&|r| fig(r, 2, i)),
            m(&|r| fig(r, 0, i) / fig(r, 1, i)),
            m(&|r| fig(r, 0, i) / fig(r, 2, i))
        );
    }
    if rows.is_empty() {
        bail!("no rounds");
    }
    Ok(())
}
