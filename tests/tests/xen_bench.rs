//! Same-boot benchmarks on the real-Xen test bed (docs/bench.md). Run them through
//! `cargo xtask bench NAME` (`cargo xtask bench --list`), which builds what they need;
//! each test here is one benchmark:
//!
//! - `seq_read_kernel_vs_sluice_blkback` (`seq-read`): 1 MiB O_DIRECT reads with `dd`,
//!   A = kernel blkback, B = `sluice-blkback`;
//! - `fio_kernel_vs_sluice_blkback` (`fio-backends`): fio, A = kernel blkback, B =
//!   sluice-blkback, plus the same jobs in dom0 directly on the disk (the ceiling);
//! - `fio_kernel_vs_sluice_blkback_pvh` (`fio-backends-pvh`): the same with PVH guests
//!   of 2 vCPUs (stock blkfront runs 2 queues);
//! - `fio_kernel_vs_sluice_direct_and_buffered` (`fio-direct-buffered`): A = kernel
//!   blkback, B = sluice-blkback (O_DIRECT), C = sluice-blkback `--buffered`;
//! - `fio_kernel_vs_sluice_bounce_and_zero_copy` (`fio-zero-copy`): A = kernel blkback,
//!   B = sluice-blkback as shipped (zero copy), C = sluice-blkback `--bounce`;
//! - `fio_kernel_vs_sluice_and_variant` (`fio-variant`): A = kernel blkback, B =
//!   sluice-blkback as shipped, C = sluice-blkback with `SLUICE_BLKBACK_C_ARGS`;
//! - `fio_sluice_vs_stock_blkfront` (`fio-frontends`): A = xen-blkfront, B =
//!   `sluice-blkfront.ko`, against each backend;
//! - `hypercall_round_trip_on_xen` (`hypercall`, the Xen half; the xtask runs the
//!   Sluice half).
//! - `linux_boot_on_xen` (`linux-boot`, the Xen half; the xtask runs the Sluice half).
//!
//! Guests alternate A B A B ... in one Xen boot (the three-way benches rotate the order
//! of each triple: A B C, B C A, C A B); dom0 swaps the backends between steps.
//! `SLUICE_FIO_SECONDS` and `SLUICE_FIO_PAIRS` size the fio benches; `SLUICE_BLKBACK_ARGS`
//! passes arguments to sluice-blkback. `SLUICE_BENCH_SMOKE=1` runs one pair of seconds
//! (no figure means anything), and `all_benches_smoke_one_boot` runs every benchmark
//! above that way in a single Xen boot (`cargo xtask test`, suite `bench-smoke-xen`):
//! the plans share their guests by name, so a smoke run needs only five fio guests.
//! Asserts only that every job reported, never a speed.

use sluice_testbed::run::{BootReport, FioSample, ReadSample};
use sluice_testbed::{run_boot, BlockBackend, Boot, Dom0Daemon, GuestStep, GuestType, Workload};
use std::path::PathBuf;

/// The fio jobs, in the order they run and the docs' tables list them.
const JOBS: [&str; 4] = ["seqwrite-1m", "randread-4k", "randwrite-4k", "seqread-1m"];

/// How big a run is: a measurement, or a smoke run that only proves the bench starts.
#[derive(Clone, Copy)]
struct Size {
    pairs: usize,
    fio_seconds: u32,
    disk_mib: u64,
    read_mib: u32,
    read_rounds: u32,
    smoke: bool,
}

impl Size {
    /// `SLUICE_BENCH_SMOKE=1`: one pair, 1 s jobs, 64 MiB disks; otherwise `pairs`
    /// (`SLUICE_FIO_PAIRS` overrides) and `seconds` (`SLUICE_FIO_SECONDS` overrides).
    fn from_env(pairs: usize, seconds: u32) -> Size {
        let var = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u32>().ok());
        if var("SLUICE_BENCH_SMOKE").unwrap_or(0) != 0 {
            return Size::smoke();
        }
        Size {
            pairs: var("SLUICE_FIO_PAIRS")
                .filter(|&n| n > 0)
                .map_or(pairs, |n| n as usize),
            fio_seconds: var("SLUICE_FIO_SECONDS").unwrap_or(seconds),
            disk_mib: 256,
            read_mib: 64,
            read_rounds: 3,
            smoke: false,
        }
    }

    fn smoke() -> Size {
        Size {
            pairs: 1,
            fio_seconds: 1,
            disk_mib: 64,
            read_mib: 8,
            read_rounds: 1,
            smoke: true,
        }
    }

    fn banner(&self, what: &str) {
        if self.smoke {
            eprintln!(
                "{what}: SMOKE RUN (one pair, {} s jobs): the figures below mean nothing",
                self.fio_seconds
            );
        }
    }
}

/// A benchmark's part of a boot: its daemons and guests. Guests are named by their
/// configuration and pair (`kblk-0`: kernel blkback + xen-blkfront, pair 0), so plans
/// that want the same guest share it when merged into one boot ([`merge`]).
struct Plan {
    daemons: Vec<Dom0Daemon>,
    steps: Vec<GuestStep>,
    fio_in_dom0: bool,
}

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

/// The block daemons (sluice-blkback) or a panic naming what is missing.
fn sluice_blkback() -> Vec<Dom0Daemon> {
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        b.block,
        BlockBackend::Userspace,
        "sluice-blkback is not built"
    );
    b.daemons.into_iter().filter(|d| d.serves_block).collect()
}

/// A PV guest (512 MiB, 1 vCPU) on one fresh disk served by `backend`, running
/// `workloads`; with `SLUICE_FIO_GUEST=pvh` a PVH guest of 2 vCPUs (the three-way and
/// frontend benches on multi-queue guests).
fn guest(name: &str, backend: &BlockBackend, size: Size, w: &[Workload]) -> GuestStep {
    GuestKind::from_env().step(name, backend, size, w)
}

/// What `guest` boots, for the reports.
fn guests_label() -> &'static str {
    GuestKind::from_env().label()
}

/// Which guests a fio bench boots.
#[derive(Clone, Copy, PartialEq)]
enum GuestKind {
    /// PV, 1 vCPU (stock blkfront: one queue).
    Pv1,
    /// PVH, 2 vCPUs (stock blkfront: two queues, one per vCPU, when the backend offers
    /// `multi-queue-max-queues`).
    Pvh2,
}

impl GuestKind {
    /// `SLUICE_FIO_GUEST`: `pvh` for [`GuestKind::Pvh2`], else [`GuestKind::Pv1`].
    fn from_env() -> Self {
        match std::env::var("SLUICE_FIO_GUEST").as_deref() {
            Ok("pvh") => GuestKind::Pvh2,
            _ => GuestKind::Pv1,
        }
    }

    /// The kind, for the reports.
    fn label(self) -> &'static str {
        match self {
            GuestKind::Pv1 => "PV (1 vCPU)",
            GuestKind::Pvh2 => "PVH (2 vCPUs)",
        }
    }

    /// A guest of this kind (512 MiB) on one fresh disk served by `backend`.
    fn step(self, name: &str, backend: &BlockBackend, size: Size, w: &[Workload]) -> GuestStep {
        let ty = match self {
            GuestKind::Pv1 => GuestType::Pv,
            GuestKind::Pvh2 => GuestType::Pvh,
        };
        let mut s = GuestStep::new(name, ty, std::slice::from_ref(backend), w);
        s.disks[0].size_mib = size.disk_mib;
        s.memory_mib = 512;
        if self == GuestKind::Pvh2 {
            s.vcpus = 2;
        }
        s
    }

    /// Step names of pair `i`: (kernel blkback, sluice-blkback).
    fn names(self, i: usize) -> (String, String) {
        match self {
            GuestKind::Pv1 => (format!("kblk-{i}"), format!("sblk-{i}")),
            GuestKind::Pvh2 => (format!("kpvh-{i}"), format!("spvh-{i}")),
        }
    }
}

fn fio(size: Size) -> [Workload; 1] {
    [Workload::Fio {
        disk: 0,
        seconds: size.fio_seconds,
    }]
}

/// One boot out of several plans: daemons by name, guests by name (a guest two plans
/// name gets both plans' workloads; its configuration must agree).
fn merge(name: &str, plans: Vec<Plan>) -> Boot {
    let mut boot = Boot {
        name: name.into(),
        console: sluice_testbed::ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps: vec![],
        fio_in_dom0: false,
    };
    for p in plans {
        boot.fio_in_dom0 |= p.fio_in_dom0;
        for d in p.daemons {
            if !boot.daemons.iter().any(|o| o.name == d.name) {
                boot.daemons.push(d);
            }
        }
        for s in p.steps {
            match boot.steps.iter_mut().find(|o| o.name == s.name) {
                Some(o) => {
                    assert_eq!(o.block_backend(), s.block_backend(), "{}", s.name);
                    assert_eq!(o.block_daemon, s.block_daemon, "{}", s.name);
                    assert_eq!(o.blkfront_module, s.blkfront_module, "{}", s.name);
                    o.workloads.extend(s.workloads);
                    // Reads before fio (fio rewrites the whole disk); a stable sort
                    // keeps each kind's order and puts equal workloads side by side.
                    o.workloads
                        .sort_by_key(|w| matches!(w, Workload::Fio { .. }));
                    o.workloads.dedup();
                }
                None => boot.steps.push(s),
            }
        }
    }
    boot
}

fn run(name: &str, plans: Vec<Plan>) -> BootReport {
    run_boot(&merge(name, plans)).unwrap_or_else(|e| panic!("{e:#}"))
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

fn header(cols: &[String]) {
    eprintln!("| {} |", cols.join(" | "));
    eprintln!("|{}", "---|".repeat(cols.len()));
}

// ---- seq-read: dd, kernel blkback vs sluice-blkback --------------------------------

/// Pair `i` of a backend A/B: guest `kblk-i` on kernel blkback, `sblk-i` on sluice-blkback.
fn kernel_and_sluice_pair(i: usize, size: Size, w: &[Workload]) -> [GuestStep; 2] {
    [
        guest(&format!("kblk-{i}"), &BlockBackend::KernelBlkback, size, w),
        guest(&format!("sblk-{i}"), &BlockBackend::Userspace, size, w),
    ]
}

fn seq_read_plan(size: Size) -> Plan {
    let read = [Workload::SeqRead {
        disk: 0,
        mib: size.read_mib,
        rounds: size.read_rounds,
    }];
    let mut steps = Vec::new();
    for i in 0..size.pairs {
        steps.extend(kernel_and_sluice_pair(i, size, &read));
    }
    Plan {
        daemons: sluice_blkback(),
        steps,
        fio_in_dom0: false,
    }
}

fn seq_read_report(report: &BootReport, size: Size) {
    size.banner("seq-read");
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
    for i in 0..size.pairs {
        let (a, b) = (
            per_step(&format!("kblk-{i}")),
            per_step(&format!("sblk-{i}")),
        );
        eprintln!("pair {i}: A kernel blkback {a:.1} MiB/s, B sluice-blkback {b:.1} MiB/s");
        ratios.push(b / a);
    }
    let cells: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    header(&["B".into(), "per-pair B/A".into(), "median B/A".into()]);
    eprintln!(
        "| sluice-blkback | {} | {:.2} |",
        cells.join(", "),
        median(ratios)
    );
    let want = size.pairs * 2 * size.read_rounds as usize;
    let got = report
        .reads
        .iter()
        .filter(|r| r.step.starts_with("kblk-") || r.step.starts_with("sblk-"))
        .count();
    assert_eq!(got, want, "every read reported");
}

#[test]
#[ignore = "boots Xen in QEMU for minutes: cargo xtask bench seq-read"]
fn seq_read_kernel_vs_sluice_blkback() {
    let size = Size::from_env(3, 0);
    let report = run("xen-bench", vec![seq_read_plan(size)]);
    seq_read_report(&report, size);
}

// ---- fio-backends: kernel blkback vs sluice-blkback, dom0 ceiling ------------------

fn fio_backends_plan(size: Size) -> Plan {
    fio_backends_plan_of(size, GuestKind::Pv1)
}

fn fio_backends_plan_of(size: Size, kind: GuestKind) -> Plan {
    let mut steps = Vec::new();
    for i in 0..size.pairs {
        let (k, s) = kind.names(i);
        let mut pair = [
            kind.step(&k, &BlockBackend::KernelBlkback, size, &fio(size)),
            kind.step(&s, &BlockBackend::Userspace, size, &fio(size)),
        ];
        // Each backend goes first in every other pair (A B, B A, ...): a place in the
        // order can favour a column (2026-12-07: the three-way benches, rotated since).
        pair.rotate_left(i % 2);
        steps.extend(pair);
    }
    Plan {
        daemons: sluice_blkback(),
        steps,
        fio_in_dom0: true,
    }
}

fn fio_backends_report(report: &BootReport, size: Size) {
    fio_backends_report_of(report, size, GuestKind::Pv1)
}

fn fio_backends_report_of(report: &BootReport, size: Size, kind: GuestKind) {
    size.banner("fio-backends");
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!(
        "fio, {} guests, A = kernel blkback, B = sluice-blkback; 4k jobs in IOPS, 1m jobs in MiB/s; {} s each",
        kind.label(),
        size.fio_seconds
    );
    let mut cols = vec!["job".to_string()];
    cols.extend((1..=size.pairs).map(|i| format!("pair {i} A / B (B/A)")));
    cols.extend(["median B/A".into(), "dom0 ceiling".into()]);
    header(&cols);
    for job in JOBS {
        let (mut ratios, mut cells) = (vec![], vec![]);
        for i in 0..size.pairs {
            let (k, sl) = kind.names(i);
            let (a, b) = (get(&k, job), get(&sl, job));
            ratios.push(b / a);
            cells.push(format!("{a:.0} / {b:.0} ({:.2})", b / a));
        }
        eprintln!(
            "| {job} | {} | {:.2} | {:.0} |",
            cells.join(" | "),
            median(ratios),
            get("dom0", job)
        );
    }
}

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-backends"]
fn fio_kernel_vs_sluice_blkback() {
    let size = Size::from_env(3, 15);
    let report = run("xen-bench-fio", vec![fio_backends_plan(size)]);
    fio_backends_report(&report, size);
    assert_eq!(
        report.fio.len(),
        (size.pairs * 2 + 1) * 4,
        "{:?}",
        report.fio
    );
}

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-backends-pvh"]
fn fio_kernel_vs_sluice_blkback_pvh() {
    let size = Size::from_env(3, 15);
    let report = run(
        "xen-bench-fio-pvh",
        vec![fio_backends_plan_of(size, GuestKind::Pvh2)],
    );
    fio_backends_report_of(&report, size, GuestKind::Pvh2);
    assert_eq!(
        report.fio.len(),
        (size.pairs * 2 + 1) * 4,
        "{:?}",
        report.fio
    );
}

// ---- fio-direct-buffered, fio-zero-copy, fio-variant: three-way (xen_bench/three_way.rs)

#[path = "xen_bench/three_way.rs"]
mod three_way;
use three_way::{
    direct_buffered_plan, direct_buffered_report, env_variant, three_way_plan, three_way_report,
    zero_copy_variant,
};

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-direct-buffered"]
fn fio_kernel_vs_sluice_direct_and_buffered() {
    let size = Size::from_env(3, 10);
    let report = run("xen-bench-fio3", vec![direct_buffered_plan(size)]);
    direct_buffered_report(&report, size);
    assert_eq!(report.fio.len(), size.pairs * 3 * 4, "{:?}", report.fio);
}

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-zero-copy"]
fn fio_kernel_vs_sluice_bounce_and_zero_copy() {
    let size = Size::from_env(3, 10);
    let v = zero_copy_variant();
    let report = run("xen-bench-fio-zc", vec![three_way_plan(size, &v)]);
    three_way_report(&report, size, &v);
    assert_eq!(report.fio.len(), size.pairs * 3 * 4, "{:?}", report.fio);
}

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-variant"]
fn fio_kernel_vs_sluice_and_variant() {
    let size = Size::from_env(3, 10);
    let v = env_variant();
    let report = run("xen-bench-fio-var", vec![three_way_plan(size, &v)]);
    three_way_report(&report, size, &v);
    assert_eq!(report.fio.len(), size.pairs * 3 * 4, "{:?}", report.fio);
}

// ---- fio-frontends: xen-blkfront vs sluice-blkfront.ko, against each backend -------

/// (step tag, backend, label) of the frontend bench; `-sbf` marks sluice-blkfront.
const FRONTEND_BACKENDS: [(&str, BlockBackend, &str); 2] = [
    ("kblk", BlockBackend::KernelBlkback, "kernel blkback"),
    ("sblk", BlockBackend::Userspace, "sluice-blkback"),
];

fn blkfront_ko() -> PathBuf {
    let ko = std::env::var_os("SLUICE_BLKFRONT_KO")
        .map(PathBuf::from)
        .expect(
            "SLUICE_BLKFRONT_KO names sluice-blkfront.ko: run `cargo xtask bench fio-frontends`",
        );
    assert!(ko.exists(), "{} does not exist", ko.display());
    ko
}

fn frontends_plan(size: Size) -> Plan {
    let ko = blkfront_ko();
    let mut steps = Vec::new();
    for (tag, backend, _) in &FRONTEND_BACKENDS {
        for i in 0..size.pairs {
            steps.push(guest(&format!("{tag}-{i}"), backend, size, &fio(size)));
            steps.push(
                guest(&format!("{tag}-sbf-{i}"), backend, size, &fio(size))
                    .with_blkfront_module(ko.clone()),
            );
        }
    }
    Plan {
        daemons: sluice_blkback(),
        steps,
        fio_in_dom0: false,
    }
}

/// Each guest of a frontend bench says which frontend module it ran: steps with `-sbf`
/// in their name sluice-blkfront, the others xen-blkfront.
fn check_frontend_modules(report: &BootReport) {
    for (check, summary) in report.passed.iter().filter(|(c, _)| c.contains("/fio-")) {
        let step = check.split('/').next().unwrap_or_default();
        let want = if step.contains("-sbf") {
            "sluice_blkfront"
        } else {
            "xen_blkfront"
        };
        assert!(
            summary.ends_with(&format!("frontend module {want}")),
            "{check}: {summary} (want {want})"
        );
    }
}

fn frontends_report(report: &BootReport, size: Size) {
    size.banner("fio-frontends");
    check_frontend_modules(report);
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!(
        "fio, PV guests, A = xen-blkfront, B = sluice-blkfront; 4k jobs in IOPS, 1m jobs in MiB/s; {} s each",
        size.fio_seconds
    );
    let mut cols = vec!["backend".to_string(), "job".into()];
    cols.extend((1..=size.pairs).map(|i| format!("pair {i}")));
    cols.push("median B/A".into());
    header(&cols);
    for (tag, _, label) in &FRONTEND_BACKENDS {
        for job in JOBS {
            let (mut ratios, mut cells) = (vec![], vec![]);
            for i in 0..size.pairs {
                let a = get(&format!("{tag}-{i}"), job);
                let b = get(&format!("{tag}-sbf-{i}"), job);
                ratios.push(b / a);
                cells.push(format!("{a:.0} / {b:.0} ({:.2})", b / a));
            }
            eprintln!(
                "| {label} | {job} | {} | {:.2} |",
                cells.join(" | "),
                median(ratios)
            );
        }
    }
}

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-frontends"]
fn fio_sluice_vs_stock_blkfront() {
    let size = Size::from_env(3, 10);
    let report = run("xen-bench-blkfront", vec![frontends_plan(size)]);
    frontends_report(&report, size);
    assert_eq!(report.fio.len(), 2 * size.pairs * 2 * 4, "{:?}", report.fio);
}

#[path = "xen_bench/frontend_variant.rs"]
mod frontend_variant;
use frontend_variant::{frontend_variant_plan, frontend_variant_report};

#[test]
#[ignore = "boots Xen in QEMU for many minutes: cargo xtask bench fio-frontend-variant"]
fn fio_blkfront_variant() {
    let size = Size::from_env(3, 10);
    let report = run("xen-bench-blkfront-var", vec![frontend_variant_plan(size)]);
    let backends = frontend_variant_report(&report, size);
    assert_eq!(
        report.fio.len(),
        backends * size.pairs * 3 * 4,
        "{:?}",
        report.fio
    );
}

// ---- hypercall: the Xen half -------------------------------------------------------

fn hypercall_plan() -> Plan {
    let guest = std::env::var_os("SLUICE_TESTGUEST")
        .map(PathBuf::from)
        .expect("SLUICE_TESTGUEST names the test guest ELF (cargo xtask bench hypercall)");
    Plan {
        daemons: vec![],
        steps: vec![GuestStep::custom_kernel(
            "bench",
            guest,
            "name=bench role=bench",
        )],
        fio_in_dom0: false,
    }
}

/// Prints the guest's console (the xtask reads the `bench:` lines from it) and, with
/// `SLUICE_BENCH_HYPERCALL_OUT`, writes it to that file too.
fn hypercall_report(report: &BootReport) {
    let (_, text) = report
        .consoles
        .iter()
        .find(|(s, _)| s == "bench")
        .expect("the bench guest's console");
    eprintln!("{text}");
    if let Some(path) = std::env::var_os("SLUICE_BENCH_HYPERCALL_OUT") {
        std::fs::write(path, text).expect("writing SLUICE_BENCH_HYPERCALL_OUT");
    }
    assert!(text.contains("bench: hypercall round trip"), "{text}");
}

/// The Sluice hypervisor's PVH test guest (`SLUICE_TESTGUEST`) in its `role=bench` on
/// real Xen 4.17: a no-op hypercall and a CPUID exit, in TSC cycles.
#[test]
#[ignore = "boots Xen in QEMU: cargo xtask bench hypercall"]
fn hypercall_round_trip_on_xen() {
    let report = run("xen-bench-hypercall", vec![hypercall_plan()]);
    hypercall_report(&report);
}

// ---- linux-boot: the Xen half -----------------------------------------------------

/// Debian's Linux (the test bed's own kernel) as a PVH domU with the initramfs
/// `SLUICE_LINUX_BENCH_INITRD` and command line `SLUICE_LINUX_BENCH_CMDLINE`, 256 MiB, one
/// vCPU: its console goes to stderr and, with `SLUICE_LINUX_BENCH_OUT`, to that file
/// (`cargo xtask bench linux-boot` reads the markers from it and runs the Sluice half).
#[test]
#[ignore = "boots Xen in QEMU: cargo xtask bench linux-boot"]
fn linux_boot_on_xen() {
    let initrd = std::env::var_os("SLUICE_LINUX_BENCH_INITRD")
        .map(PathBuf::from)
        .expect(
            "SLUICE_LINUX_BENCH_INITRD names the bench initramfs (cargo xtask bench linux-boot)",
        );
    let cmdline =
        std::env::var("SLUICE_LINUX_BENCH_CMDLINE").unwrap_or_else(|_| "console=hvc0 quiet".into());
    let kernel = sluice_testbed::kernel::HostKernel::discover()
        .and_then(|k| k.vmlinux(&sluice_testbed::paths::kernel_cache_dir()))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let plan = Plan {
        daemons: vec![],
        steps: vec![GuestStep::custom_kernel("lbench", kernel, &cmdline).with_ramdisk(initrd, 256)],
        fio_in_dom0: false,
    };
    let report = run("xen-bench-linux-boot", vec![plan]);
    let (_, text) = report
        .consoles
        .iter()
        .find(|(s, _)| s == "lbench")
        .expect("the Linux guest's console");
    eprintln!("{text}");
    if let Some(path) = std::env::var_os("SLUICE_LINUX_BENCH_OUT") {
        std::fs::write(path, text).expect("writing SLUICE_LINUX_BENCH_OUT");
    }
    assert!(text.contains("@@LB-DONE"), "{text}");
}

// ---- every bench above, smoke-sized, one boot ---------------------------------------

/// Each benchmark's plan with one pair of 1 s jobs, all in one Xen boot, then each
/// benchmark's report: a bench that no longer starts, or no longer produces its table,
/// fails here (`cargo xtask test`, suite `bench-smoke-xen`). Figures mean nothing.
#[test]
#[ignore = "boots Xen in QEMU for minutes: cargo xtask test --suite bench-smoke-xen"]
fn all_benches_smoke_one_boot() {
    let size = Size::smoke();
    let plans = vec![
        seq_read_plan(size),
        fio_backends_plan(size),
        direct_buffered_plan(size),
        frontends_plan(size),
        hypercall_plan(),
    ];
    let report = run("xen-bench-smoke", plans);
    seq_read_report(&report, size);
    fio_backends_report(&report, size);
    direct_buffered_report(&report, size);
    frontends_report(&report, size);
    hypercall_report(&report);
    // kblk, sblk, sbuf, kblk-sbf, sblk-sbf: four jobs each, plus dom0's.
    assert_eq!(report.fio.len(), 6 * 4, "{:?}", report.fio);
}
