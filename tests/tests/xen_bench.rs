//! Same-boot block backend comparison: sequential 1 MiB O_DIRECT reads in PV guests,
//! backend A = Linux kernel blkback, backend B = `sluice-blkback` (when it is in the
//! workspace; otherwise kernel blkback again, which measures the test bed's noise).
//! Guests alternate A B A B A B in one Xen boot; dom0 swaps the backends between steps
//! (`rmmod xen-blkback` / daemon start and back). Reports the median of the per-pair
//! ratios B/A; asserts nothing about speed (see docs/bench.md).
//!
//! `fio_kernel_vs_sluice_blkback`: fio in PV guests (4 KiB random read/write at QD32,
//! 1 MiB sequential read/write), the same A B A B alternation, and the same fio jobs in
//! dom0 directly on the disk as the ceiling. `SLUICE_FIO_SECONDS` (15), `SLUICE_FIO_PAIRS`
//! (3) size it; `SLUICE_BLKBACK_ARGS` passes arguments to sluice-blkback (e.g.
//! `--buffered`, `--zero-copy`, `--profile`; any test-bed boot takes it).
//!
//! `cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture [NAME]`

use sluice_testbed::run::{FioSample, ReadSample};
use sluice_testbed::{run_boot, BlockBackend, Boot, GuestStep, GuestType, Workload};

const PAIRS: usize = 3;

/// The median (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

/// `SLUICE_FIO_SECONDS`, else `default`: how long each timed fio job runs.
fn fio_seconds(default: u32) -> u32 {
    std::env::var("SLUICE_FIO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A PV guest (512 MiB) running the fio jobs on one fresh 256 MiB disk served by `backend`.
fn fio_guest(name: &str, backend: &BlockBackend, seconds: u32) -> GuestStep {
    let fio = [Workload::Fio { disk: 0, seconds }];
    let mut s = GuestStep::new(name, GuestType::Pv, std::slice::from_ref(backend), &fio);
    s.disks[0].size_mib = 256;
    s.memory_mib = 512;
    s
}

/// A fio job's figure for a step: IOPS for the 4 KiB jobs, MiB/s for the 1 MiB ones.
fn fio_figure(fio: &[FioSample], step: &str, job: &str) -> f64 {
    fio.iter()
        .find(|f| f.step == step && f.job == job)
        .map(|f| {
            if job.ends_with("4k") {
                f.iops
            } else {
                f.kib_per_s / 1024.0
            }
        })
        .unwrap_or_else(|| panic!("no {job} result for {step}: {fio:?}"))
}

#[test]
#[ignore = "boots Xen in QEMU for minutes: run with --ignored"]
fn seq_read_kernel_vs_sluice_blkback() {
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    let (b_backend, b_label) = if b.block == BlockBackend::Userspace {
        (BlockBackend::Userspace, "sluice-blkback")
    } else {
        (
            BlockBackend::KernelBlkback,
            "kernel blkback (A/A: sluice-blkback not landed)",
        )
    };
    let read = [Workload::SeqRead {
        disk: 0,
        mib: 64,
        rounds: 3,
    }];
    let mut steps = Vec::new();
    for i in 0..PAIRS {
        steps.push(GuestStep::new(
            &format!("a{i}"),
            GuestType::Pv,
            &[BlockBackend::KernelBlkback],
            &read,
        ));
        steps.push(GuestStep::new(
            &format!("b{i}"),
            GuestType::Pv,
            std::slice::from_ref(&b_backend),
            &read,
        ));
    }
    let boot = Boot {
        name: "xen-bench".into(),
        console: sluice_testbed::ConsoleBackend::Xenconsoled,
        daemons: b.daemons.into_iter().filter(|d| d.serves_block).collect(),
        steps,
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    let per_step = |name: &str| -> f64 {
        median(
            report
                .reads
                .iter()
                .filter(|r: &&ReadSample| r.step == name)
                .map(ReadSample::mib_per_s)
                .collect(),
        )
    };
    let mut ratios = Vec::new();
    for i in 0..PAIRS {
        let (a, bb) = (per_step(&format!("a{i}")), per_step(&format!("b{i}")));
        eprintln!(
            "pair {i}: A kernel blkback {a:.1} MiB/s, B {b_label} {bb:.1} MiB/s, B/A {:.2}",
            bb / a
        );
        ratios.push(bb / a);
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "seq read 1 MiB O_DIRECT, B = {b_label}: median B/A {:.2} (pairs {lo:.2}-{hi:.2})",
        median(ratios.clone())
    );
    assert_eq!(report.reads.len(), PAIRS * 2 * 3, "every read reported");
}

#[test]
#[ignore = "boots Xen in QEMU for many minutes: run with --ignored"]
fn fio_kernel_vs_sluice_blkback() {
    // SLUICE_FIO_PAIRS (default 3): fewer pairs for a quick look.
    let fio_pairs: usize = std::env::var("SLUICE_FIO_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    let (b_backend, b_label) = if b.block == BlockBackend::Userspace {
        (BlockBackend::Userspace, "sluice-blkback")
    } else {
        (BlockBackend::KernelBlkback, "kernel blkback (A/A)")
    };
    let seconds = fio_seconds(15);
    let step = |name: String, backend: &BlockBackend| fio_guest(&name, backend, seconds);
    let mut steps = Vec::new();
    for i in 0..fio_pairs {
        steps.push(step(format!("a{i}"), &BlockBackend::KernelBlkback));
        steps.push(step(format!("b{i}"), &b_backend));
    }
    // SLUICE_BLKBACK_ARGS (read by `sluice_backends::select`) passes daemon arguments.
    let daemons: Vec<_> = b.daemons.into_iter().filter(|d| d.serves_block).collect();
    let boot = Boot {
        name: "xen-bench-fio".into(),
        console: sluice_testbed::ConsoleBackend::Xenconsoled,
        daemons,
        steps,
        fio_in_dom0: true,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!("fio, PV guests, B = {b_label}; 4k jobs in IOPS, 1m jobs in MiB/s; {seconds} s each");
    for job in ["seqwrite-1m", "randread-4k", "randwrite-4k", "seqread-1m"] {
        let mut ratios = Vec::new();
        let mut cells = Vec::new();
        for i in 0..fio_pairs {
            let (a, bb) = (get(&format!("a{i}"), job), get(&format!("b{i}"), job));
            ratios.push(bb / a);
            cells.push(format!("A {a:.0} B {bb:.0} ({:.2})", bb / a));
        }
        let ceiling = get("dom0", job);
        eprintln!(
            "| {job} | {} | median B/A {:.2} | dom0 {ceiling:.0} |",
            cells.join(", "),
            median(ratios)
        );
    }
    assert_eq!(
        report.fio.len(),
        (fio_pairs * 2 + 1) * 4,
        "{:?}",
        report.fio
    );
}

/// fio in PV guests, three backends on the same image size in one Xen boot, A B C A B C
/// A B C: A = Linux kernel blkback, B = sluice-blkback as shipped (O_DIRECT), C =
/// sluice-blkback `--buffered` (dom0's page cache). Prints per-triple figures and the
/// median B/A and C/A; asserts only that every job reported.
#[test]
#[ignore = "boots Xen in QEMU for many minutes: run with --ignored"]
fn fio_kernel_vs_sluice_direct_and_buffered() {
    const TRIPLES: usize = 3;
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        b.block,
        BlockBackend::Userspace,
        "sluice-blkback is not built"
    );
    let seconds = fio_seconds(10);
    let mut daemons: Vec<_> = b.daemons.into_iter().filter(|d| d.serves_block).collect();
    let mut buffered = daemons[0].clone();
    buffered.name = "sluice-blkback-buffered".into();
    buffered.args.push("--buffered".into());
    daemons.push(buffered);
    let mut steps = Vec::new();
    for i in 0..TRIPLES {
        for (tag, backend) in [
            ("a", BlockBackend::KernelBlkback),
            ("b", BlockBackend::Userspace),
            ("c", BlockBackend::Userspace),
        ] {
            let mut s = fio_guest(&format!("{tag}{i}"), &backend, seconds);
            if tag == "c" {
                s = s.with_block_daemon("sluice-blkback-buffered");
            }
            steps.push(s);
        }
    }
    let boot = Boot {
        name: "xen-bench-fio3".into(),
        console: sluice_testbed::ConsoleBackend::Xenconsoled,
        daemons,
        steps,
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!("fio, PV guests, A = kernel blkback, B = sluice-blkback (O_DIRECT), C = sluice-blkback --buffered; 4k jobs in IOPS, 1m jobs in MiB/s; {seconds} s each");
    for job in ["seqwrite-1m", "randread-4k", "randwrite-4k", "seqread-1m"] {
        let (mut ba, mut ca, mut cells) = (vec![], vec![], vec![]);
        for i in 0..TRIPLES {
            let a = get(&format!("a{i}"), job);
            let bb = get(&format!("b{i}"), job);
            let c = get(&format!("c{i}"), job);
            ba.push(bb / a);
            ca.push(c / a);
            cells.push(format!("{a:.0} / {bb:.0} / {c:.0}"));
        }
        eprintln!(
            "| {job} | {} | {:.2} | {:.2} |",
            cells.join(" | "),
            median(ba),
            median(ca)
        );
    }
    assert_eq!(report.fio.len(), TRIPLES * 3 * 4, "{:?}", report.fio);
}

/// fio in PV guests with stock `xen-blkfront` (A) and `sluice-blkfront.ko` (B,
/// `SLUICE_BLKFRONT_KO`, built and set by `cargo xtask bench-blkfront`) against the same
/// backend in one Xen boot: A B A B A B against Linux kernel blkback, then the same
/// against sluice-blkback. Prints per-pair and median B/A; asserts only that every job
/// reported (see docs/bench.md).
#[test]
#[ignore = "boots Xen in QEMU for many minutes: run through cargo xtask bench-blkfront"]
fn fio_sluice_vs_stock_blkfront() {
    const FIO_PAIRS: usize = 3;
    let ko = std::env::var_os("SLUICE_BLKFRONT_KO")
        .map(std::path::PathBuf::from)
        .expect("SLUICE_BLKFRONT_KO names sluice-blkfront.ko: run `cargo xtask bench-blkfront`");
    assert!(ko.exists(), "{} does not exist", ko.display());
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        b.block,
        BlockBackend::Userspace,
        "sluice-blkback is not built"
    );
    let seconds = fio_seconds(10);
    let backends = [
        ("kblk", BlockBackend::KernelBlkback, "kernel blkback"),
        ("sblk", BlockBackend::Userspace, "sluice-blkback"),
    ];
    let mut steps = Vec::new();
    for (tag, backend, _) in &backends {
        for i in 0..FIO_PAIRS {
            for frontend in ["a", "b"] {
                let mut s = fio_guest(&format!("{tag}-{frontend}{i}"), backend, seconds);
                if frontend == "b" {
                    s = s.with_blkfront_module(ko.clone());
                }
                steps.push(s);
            }
        }
    }
    let boot = Boot {
        name: "xen-bench-blkfront".into(),
        console: sluice_testbed::ConsoleBackend::Xenconsoled,
        daemons: b.daemons.into_iter().filter(|d| d.serves_block).collect(),
        steps,
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    // Each guest says which frontend module it ran.
    for (check, summary) in &report.passed {
        let step = check.split('/').next().unwrap_or_default();
        let want = if step.contains("-b") {
            "sluice_blkfront"
        } else {
            "xen_blkfront"
        };
        assert!(
            summary.ends_with(&format!("frontend module {want}")),
            "{check}: {summary} (want {want})"
        );
    }
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!(
        "fio, PV guests, A = xen-blkfront, B = sluice-blkfront; 4k jobs in IOPS, 1m jobs in MiB/s; {seconds} s each"
    );
    for (tag, _, label) in &backends {
        for job in ["seqwrite-1m", "randread-4k", "randwrite-4k", "seqread-1m"] {
            let mut ratios = Vec::new();
            let mut cells = Vec::new();
            for i in 0..FIO_PAIRS {
                let a = get(&format!("{tag}-a{i}"), job);
                let bb = get(&format!("{tag}-b{i}"), job);
                ratios.push(bb / a);
                cells.push(format!("{a:.0} / {bb:.0} ({:.2})", bb / a));
            }
            eprintln!(
                "| {label} | {job} | {} | {:.2} |",
                cells.join(" | "),
                median(ratios)
            );
        }
    }
    assert_eq!(
        report.fio.len(),
        backends.len() * FIO_PAIRS * 2 * 4,
        "{:?}",
        report.fio
    );
}

/// The Sluice hypervisor's PVH test guest (`SLUICE_TESTGUEST`, built by `cargo xtask
/// bench-hypercall`) in its `role=bench` on real Xen 4.17: a no-op hypercall and a
/// CPUID exit, in TSC cycles. Prints the guest's console; the xtask compares it with
/// the same guest on Sluice.
#[test]
#[ignore = "boots Xen in QEMU: run through cargo xtask bench-hypercall"]
fn hypercall_round_trip_on_xen() {
    let guest = std::env::var_os("SLUICE_TESTGUEST")
        .map(std::path::PathBuf::from)
        .expect("SLUICE_TESTGUEST names the test guest ELF (cargo xtask bench-hypercall)");
    let boot = Boot {
        name: "xen-bench-hypercall".into(),
        console: sluice_testbed::ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps: vec![GuestStep::custom_kernel(
            "bench",
            guest,
            "name=bench role=bench",
        )],
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    let (_, text) = &report.consoles[0];
    eprintln!("{text}");
    assert!(text.contains("bench: hypercall round trip"), "{text}");
}
