//! `cargo xtask bench msi`: MSI delivery latency of QEMU's `edu` through the IOMMU's
//! interrupt remapping, natively vs in a Sluice domain with edu assigned, in TSC cycles.
//!
//! Both run in the same QEMU configuration: `-M q35 -accel tcg -cpu EPYC,+svm,+npt
//! -m 256 -smp 1`, two edu functions (00:04.0, 00:05.0), and `-device
//! intel-iommu,intremap=on` or `-device amd-iommu,intremap=on`.
//! - native: the IOMMU test kernel (iommu/testkernel, `msibench=N`) programs edu's MSI
//!   through a remapping entry of its own (sluice-iommu) to its vector;
//! - Sluice: the hypervisor with one test-guest domain (`role=pt-msibench
//!   assign=00:04.0`): the hypervisor's remapping entry sends the MSI to its host
//!   vector, the guest's vCPU exits (INTR), the hypervisor injects the guest's vector.
//!
//! Each raises the MSI (edu register 0x60) 200 times to warm up, then N times, each time
//! timing raise -> the handler's first instruction and the handler's EOI (xAPIC MMIO
//! natively, an x2APIC MSR write under Sluice: an exit); prints min, median, p90, p99,
//! max. Rounds alternate native, Sluice for each IOMMU; the summary is the median of the
//! rounds' medians and the median of the rounds' Sluice / native ratios.

use crate::hypervisor::{self, PASS_STATUS};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

const IOMMUS: [(&str, &str); 2] = [
    ("intel-iommu,intremap=on", "VT-d"),
    ("amd-iommu,intremap=on", "AMD-Vi"),
];
const EDU: &str = "edu,dma_mask=0xffffffffffffffff";
/// Raises before the measured ones (the guest's and the kernel's `WARMUP`).
const WARMUP: u64 = 200;

/// One `msibench: WHAT cycles: n .. min .. median .. p90 .. p99 .. max ..` line.
#[derive(Clone, Copy, Debug)]
struct Summary {
    n: u64,
    min: u64,
    median: u64,
    p90: u64,
    p99: u64,
}

fn summary(log: &str, what: &str) -> Option<Summary> {
    let head = format!("msibench: {what} cycles: ");
    let rest = log
        .lines()
        .find_map(|l| l.split_once(&head).map(|(_, r)| r))?;
    let w: Vec<&str> = rest.split_whitespace().collect();
    let get = |k: &str| {
        w.iter()
            .position(|x| *x == k)
            .and_then(|i| w.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Summary {
        n: get("n")?,
        min: get("min")?,
        median: get("median")?,
        p90: get("p90")?,
        p99: get("p99")?,
    })
}

/// One boot's figures: raise -> handler, handler -> EOI; under Sluice also the domain's
/// EOI and interrupt exits.
#[derive(Clone, Copy, Debug)]
struct Run {
    handler: Summary,
    eoi: Summary,
    exits: Option<(u64, u64)>,
    /// Sluice only: a CPUID exit round trip, timed the same way in the same guest.
    cpuid: Option<Summary>,
}

fn figures(log: &str, who: &str) -> Result<Run> {
    let lost = log
        .lines()
        .find_map(|l| l.split_once("msibench: lost ").map(|(_, r)| r.trim()));
    if lost != Some("0") {
        bail!("{who}: lost raises: {lost:?}\n{log}");
    }
    let handler = summary(log, "raise->handler");
    let eoi = summary(log, "handler->EOI");
    let (Some(handler), Some(eoi)) = (handler, eoi) else {
        bail!("{who}: no msibench figures\n{log}");
    };
    // "domain 1 (msibench): exits: 76 hypercall, 2 cpuid, 2200 EOI, ..., 2225 interrupt, 0 other"
    let exits = log
        .lines()
        .find_map(|l| l.split_once("(msibench): exits: ").map(|(_, r)| r))
        .and_then(|r| {
            let count = |what: &str| {
                r.split(", ").find_map(|p| {
                    p.strip_suffix(what)
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            };
            Some((count(" EOI")?, count(" interrupt")?))
        });
    Ok(Run {
        handler,
        eoi,
        exits,
        cpuid: summary(log, "cpuid-exit"),
    })
}

fn common_args(iommu: &str) -> Vec<String> {
    let mut a: Vec<String> = ["-device", iommu].iter().map(|s| s.to_string()).collect();
    for addr in ["4", "5"] {
        a.push("-device".into());
        a.push(format!("{EDU},addr={addr}"));
    }
    a.extend(["-smp".into(), "1".into()]);
    a
}

fn native(kernel: &Path, iommu: &str, n: usize) -> Result<Run> {
    let out = Command::new("timeout")
        .args(["300", "qemu-system-x86_64", "-M", "q35", "-accel", "tcg"])
        .args(["-cpu", "EPYC,+svm,+npt", "-m", "256"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(common_args(iommu))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", &format!("msibench={n}")])
        .output()
        .context("cannot run qemu-system-x86_64")?;
    let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let status = out.status.code().unwrap_or(-1);
    if status != PASS_STATUS || !log.contains("VERDICT PASS") {
        bail!("native, {iommu}: exit status {status}\n{log}");
    }
    figures(&log, &format!("native, {iommu}"))
}

fn sluice(hv: &Path, guest: &Path, iommu: &str, n: usize) -> Result<Run> {
    let modules = format!(
        "{} name=msibench role=pt-msibench assign=00:04.0 msibench={n}",
        guest.display()
    );
    let args = common_args(iommu);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = hypervisor::boot(hv, &modules, &args, "")?;
    if status != PASS_STATUS || !log.contains("(d1) GUEST PASS") {
        bail!("Sluice, {iommu}: exit status {status}\n{log}");
    }
    figures(&log, &format!("Sluice, {iommu}"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median_u(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `rounds` rounds of N = `n` measured raises; `iommus`: how many of VT-d, AMD-Vi.
pub fn run_bench(rounds: usize, n: usize, iommus: usize) -> Result<()> {
    let kernel = crate::iommu::build()?;
    let (hv, guest) = hypervisor::build()?;
    let iommus = &IOMMUS[..iommus.clamp(1, IOMMUS.len())];
    // rows[iommu]: (native, Sluice) per round.
    let mut rows: Vec<Vec<(Run, Run)>> = vec![Vec::new(); iommus.len()];
    for round in 1..=rounds {
        for (j, (iommu, vendor)) in iommus.iter().enumerate() {
            let load = loadavg();
            let a = native(&kernel, iommu, n)?;
            let b = sluice(&hv, &guest, iommu, n)?;
            eprintln!(
                "round {round}, {vendor} (load {load}): native raise->handler median {} (p99 {}), handler->EOI {}; Sluice raise->handler median {} (p99 {}), handler->EOI {}, CPUID exit {:?}; exits (EOI, interrupt) {:?} for {} raises",
                a.handler.median,
                a.handler.p99,
                a.eoi.median,
                b.handler.median,
                b.handler.p99,
                b.eoi.median,
                b.cpuid.map(|c| c.median),
                b.exits,
                WARMUP + b.handler.n
            );
            rows[j].push((a, b));
        }
    }
    eprintln!("\nPer round (TSC cycles, N = {n} raises after {WARMUP} warm-up):\n");
    eprintln!("| round | IOMMU | what | native min / median / p90 / p99 | Sluice min / median / p90 / p99 | Sluice / native (medians) |");
    eprintln!("|---|---|---|---|---|---|");
    let q = |s: &Summary| format!("{} / {} / {} / {}", s.min, s.median, s.p90, s.p99);
    for (j, (_, vendor)) in iommus.iter().enumerate() {
        for (r, (a, b)) in rows[j].iter().enumerate() {
            for (what, x, y) in [
                ("raise->handler", &a.handler, &b.handler),
                ("handler->EOI", &a.eoi, &b.eoi),
            ] {
                eprintln!(
                    "| {} | {vendor} | {what} | {} | {} | {:.1} |",
                    r + 1,
                    q(x),
                    q(y),
                    y.median as f64 / x.median as f64
                );
            }
        }
    }
    eprintln!(
        "\nSummary: medians of the {rounds} rounds' medians; ratio: median of the rounds' Sluice / native\n"
    );
    eprintln!("| IOMMU | what | native | Sluice | Sluice / native | Sluice exits per raise (EOI, interrupt) |");
    eprintln!("|---|---|---|---|---|---|");
    for (j, (_, vendor)) in iommus.iter().enumerate() {
        let r = &rows[j];
        // Over all rounds: the domain's EOI and INTR exits (its whole life: the LAPIC
        // tick's exits are in the second) per raise.
        let (mut eoi, mut intr, mut raises) = (0, 0, 0);
        for (_, b) in r {
            if let Some((e, i)) = b.exits {
                (eoi, intr, raises) = (eoi + e, intr + i, raises + WARMUP + b.handler.n);
            }
        }
        let exits = if raises == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.2}, {:.2}",
                eoi as f64 / raises as f64,
                intr as f64 / raises as f64
            )
        };
        for (what, pick) in [
            (
                "raise->handler",
                (|r: &Run| r.handler) as fn(&Run) -> Summary,
            ),
            ("handler->EOI", |r: &Run| r.eoi),
        ] {
            let na = median_u(r.iter().map(|(a, _)| pick(a).median).collect());
            let sl = median_u(r.iter().map(|(_, b)| pick(b).median).collect());
            let ratio = median_f(
                r.iter()
                    .map(|(a, b)| pick(b).median as f64 / pick(a).median as f64)
                    .collect(),
            );
            eprintln!("| {vendor} | {what} | {na} | {sl} | {ratio:.1} | {exits} |");
        }
        let cpuid: Vec<u64> = r
            .iter()
            .filter_map(|(_, b)| b.cpuid.map(|c| c.median))
            .collect();
        if !cpuid.is_empty() {
            eprintln!(
                "| {vendor} | CPUID exit round trip (scale) | - | {} | - | - |",
                median_u(cpuid)
            );
        }
    }
    eprintln!(
        "\nCycles are the TSC as both read it: QEMU TCG's TSC is the host's (plus an offset), and the Sluice guest's is that with no VMCB TSC offset or scaling: host cycles, i.e. wall time under emulation, not an emulated CPU's cycles (docs/bench.md)."
    );
    Ok(())
}
