//! Same-boot network benchmark on the real-Xen test bed (docs/bench.md), run through
//! `cargo xtask bench iperf` (it builds sluice-netback and, for the frontend column,
//! sluice-netfront.ko):
//!
//! - A = stock `xen-netfront` on Linux's `xen-netback`,
//! - B = stock `xen-netfront` on `sluice-netback` (this checkout's, or the binary
//!   `SLUICE_NETBACK` names),
//! - C = `sluice-netfront.ko` on Linux's `xen-netback` (when `SLUICE_NETFRONT_KO` names
//!   the module),
//! - D = another build of `sluice-netfront.ko` (`SLUICE_NETFRONT_KO_B`, e.g. a branch's)
//!   on Linux's `xen-netback`, for a same-boot A/B of two versions of the module,
//! - E = stock `xen-netfront` on another build of `sluice-netback` (`SLUICE_NETBACK_B`, a
//!   binary's path) and/or with other arguments (`SLUICE_NETBACK_B_ARGS`, e.g. `--tx-map`),
//!
//! each a PV guest with 2 vCPUs (2 queues) running `iperf3` against dom0's server
//! ([`Workload::NetPerf`]): guest → dom0 and dom0 → guest, 1 and 4 streams. Guests run
//! A B C, A B C, ... in one Xen boot; dom0 swaps the backends between steps (kernel
//! netback loaded only for A and C, sluice-netback running only for B). The figures are
//! medians of per-round ratios. `SLUICE_NET_PAIRS` (rounds, 3) and `SLUICE_NET_SECONDS`
//! (per iperf3 run, 10) size it; `SLUICE_BENCH_SMOKE=1` runs one round of 2 s runs (no
//! figure means anything); `SLUICE_NETBACK_ARGS` are column B's sluice-netback arguments (e.g.
//! `--profile`: each queue's profile line lands in the daemon's log under
//! `build/testbed-logs/bench-iperf/`). Asserts only that every run reported, never a speed.

use sluice_testbed::cargo_bin::cargo_binary;
use sluice_testbed::net::NetPerfSample;
use sluice_testbed::{
    run_boot, Boot, ConsoleBackend, Dom0Daemon, GuestStep, GuestType, NetBackend, NetFrontend,
    Workload,
};
use std::path::PathBuf;

const CELLS: [(&str, u32); 4] = [
    ("guest-to-dom0", 1),
    ("guest-to-dom0", 4),
    ("dom0-to-guest", 1),
    ("dom0-to-guest", 4),
];

/// Arguments from the variable `k` (split at spaces), e.g. `--profile`.
fn args_of(k: &str) -> Vec<String> {
    std::env::var(k)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn var(k: &str) -> Option<u32> {
    std::env::var(k).ok().and_then(|s| s.parse().ok())
}

/// One column of the table: a prefix for its steps' names and how its vif is made.
struct Column {
    prefix: &'static str,
    what: &'static str,
    backend: NetBackend,
    frontend: NetFrontend,
    /// The net daemon serving a userspace vif (its [`Dom0Daemon`] name).
    daemon: &'static str,
}

fn step(c: &Column, round: usize, seconds: u32) -> GuestStep {
    let mut s = GuestStep::new(
        &format!("{}-{round}", c.prefix),
        GuestType::Pv,
        &[],
        &[Workload::NetPerf { seconds }],
    )
    .with_vif_frontend(c.backend, c.frontend.clone())
    .with_net_daemon(c.daemon);
    s.memory_mib = 384;
    s.vcpus = 2;
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn rate(samples: &[NetPerfSample], step: &str, dir: &str, streams: u32) -> f64 {
    samples
        .iter()
        .find(|s| s.step == step && s.direction == dir && s.streams == streams)
        .map(|s| s.mbit_per_s)
        .unwrap_or_else(|| panic!("no {dir} x{streams} result for {step}: {samples:?}"))
}

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask bench iperf)"]
fn iperf_kernel_vs_sluice_netback() {
    let smoke = var("SLUICE_BENCH_SMOKE").unwrap_or(0) != 0;
    let (rounds, seconds) = if smoke {
        (1, 2)
    } else {
        (
            var("SLUICE_NET_PAIRS").filter(|&n| n > 0).unwrap_or(3) as usize,
            var("SLUICE_NET_SECONDS").filter(|&n| n > 0).unwrap_or(10),
        )
    };
    let mut columns = vec![
        Column {
            prefix: "knet",
            what: "xen-netfront / kernel netback",
            backend: NetBackend::Kernel,
            frontend: NetFrontend::Stock,
            daemon: "netback",
        },
        Column {
            prefix: "snet",
            what: "xen-netfront / sluice-netback",
            backend: NetBackend::Userspace,
            frontend: NetFrontend::Stock,
            daemon: "netback",
        },
    ];
    if let Ok(ko) = std::env::var("SLUICE_NETFRONT_KO") {
        columns.push(Column {
            prefix: "mnet",
            what: "sluice-netfront / kernel netback",
            backend: NetBackend::Kernel,
            frontend: NetFrontend::Module(PathBuf::from(ko)),
            daemon: "netback",
        });
    }
    // A second build of the module (e.g. another branch's), same file name: column D.
    if let Ok(ko) = std::env::var("SLUICE_NETFRONT_KO_B") {
        columns.push(Column {
            prefix: "nnet",
            what: "sluice-netfront (SLUICE_NETFRONT_KO_B) / kernel netback",
            backend: NetBackend::Kernel,
            frontend: NetFrontend::Module(PathBuf::from(ko)),
            daemon: "netback",
        });
    }
    // Another build of sluice-netback (e.g. another branch's) or the same with other
    // arguments: column E, served by a second daemon while the other one is stopped.
    // Column B's binary: `SLUICE_NETBACK` names one (e.g. main's, for an A/A run against
    // the same file as E), else this checkout's, built here.
    let netback = std::env::var_os("SLUICE_NETBACK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cargo_binary("sluice-netback", "sluice-netback").unwrap_or_else(|e| panic!("{e:#}"))
        });
    let netback_b = std::env::var("SLUICE_NETBACK_B")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var("SLUICE_NETBACK_B_ARGS")
                .is_ok()
                .then(|| netback.clone())
        });
    if netback_b.is_some() {
        columns.push(Column {
            prefix: "bnet",
            what: "xen-netfront / sluice-netback (SLUICE_NETBACK_B, _B_ARGS)",
            backend: NetBackend::Userspace,
            frontend: NetFrontend::Stock,
            daemon: "netback-b",
        });
    }
    let steps = (1..=rounds)
        .flat_map(|r| columns.iter().map(move |c| (c, r)))
        .map(|(c, r)| step(c, r, seconds))
        .collect();
    let mut daemons = vec![Dom0Daemon {
        name: "netback".into(),
        binary: netback,
        args: args_of("SLUICE_NETBACK_ARGS"),
        serves_block: false,
        serves_net: true,
    }];
    if let Some(binary) = netback_b {
        daemons.push(Dom0Daemon {
            name: "netback-b".into(),
            binary,
            args: args_of("SLUICE_NETBACK_B_ARGS"),
            serves_block: false,
            serves_net: true,
        });
    }
    let boot = Boot {
        name: "bench-iperf".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons,
        steps,
        fio_in_dom0: false,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "iperf3 TCP, {rounds} round(s) of {}, {seconds} s per run; host load at start: {}",
        columns
            .iter()
            .map(|c| c.what)
            .collect::<Vec<_>>()
            .join(" | "),
        load.trim()
    );
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
    assert_eq!(
        report.net_perf.len(),
        boot.steps.len() * CELLS.len(),
        "{:?}",
        report.net_perf
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("host load at the end: {}", load.trim());
    let mut cols = vec!["run".to_string()];
    for c in &columns {
        cols.push(format!("{} Mbit/s (median)", c.what));
    }
    for c in &columns[1..] {
        cols.push(format!(
            "{} / {} (median of rounds)",
            c.prefix, columns[0].prefix
        ));
    }
    eprintln!("| {} |", cols.join(" | "));
    eprintln!("|{}", "---|".repeat(cols.len()));
    for (dir, streams) in CELLS {
        let per = |c: &Column| -> Vec<f64> {
            (1..=rounds)
                .map(|r| rate(&report.net_perf, &format!("{}-{r}", c.prefix), dir, streams))
                .collect()
        };
        let base = per(&columns[0]);
        let mut row = vec![format!("{dir}, {streams} stream(s)")];
        for c in &columns {
            row.push(format!("{:.0}", median(per(c))));
        }
        for c in &columns[1..] {
            let ratios = per(c)
                .iter()
                .zip(&base)
                .map(|(x, a)| x / a.max(0.001))
                .collect();
            row.push(format!("{:.2}", median(ratios)));
        }
        eprintln!("| {} |", row.join(" | "));
    }
}
