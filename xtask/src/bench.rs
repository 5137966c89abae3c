//! `cargo xtask bench`: every benchmark of docs/bench.md behind one entry point.
//!
//! `cargo xtask bench --list` names them and what each compares; `cargo xtask bench
//! NAME` installs what is missing (`setup`), builds what the bench needs and runs it,
//! stamped with the date, the commit and the load average before and after. `--smoke`
//! runs it once at the smallest size (seconds, one pair; its figures mean nothing):
//! `cargo xtask test` does that for every bench (suites `bench-smoke-host` and
//! `bench-smoke-xen`, which also runs `msi`), so a bench that no longer starts fails CI; except `linux-boot`
//! and `passthrough` (QEMU boots of a Linux guest: minutes, opt-in only).

use crate::util::{cargo, root, run};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// How big a run is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The measurement docs/bench.md reports.
    Full,
    /// Once, smallest size: proves the bench starts and prints its table.
    Smoke,
}

/// One benchmark of docs/bench.md.
pub struct Bench {
    pub name: &'static str,
    /// Other names `cargo xtask bench` accepts (older spellings, the test's name).
    pub aliases: &'static [&'static str],
    /// What it runs underneath (to run it by hand, without setup and builds).
    pub under: &'static str,
    /// What it compares (ours vs the peer, same run).
    pub compares: &'static str,
    /// Where it runs.
    pub cost: &'static str,
    pub run: fn(Size) -> Result<()>,
}

/// Every benchmark, in docs/bench.md's order. A new one is one entry here.
pub const BENCHES: &[Bench] = &[
    Bench {
        name: "ring",
        aliases: &[],
        under: "cargo bench -p sluice-abi --bench ring",
        compares: "sluice_abi::ring (Xen layout) vs two rtrb SPSC queues: request/response round trips, one and two threads",
        cost: "host, criterion",
        run: |s| host_bench("sluice-abi", "ring", s),
    },
    Bench {
        name: "iommu",
        aliases: &["map_unmap"],
        under: "cargo bench -p sluice-iommu --bench map_unmap",
        compares: "VT-d and AMD-Vi map/unmap on the mock HAL: range invalidation vs one invalidation per page",
        cost: "host, criterion",
        run: |s| host_bench("sluice-iommu", "map_unmap", s),
    },
    Bench {
        name: "engines",
        aliases: &[],
        under: "cargo bench -p sluice-blkback --bench engines",
        compares: "sluice-blkback on a fake frontend: io_uring vs synchronous engine; persistent grants vs grant copy",
        cost: "host",
        run: |s| host_bench("sluice-blkback", "engines", s),
    },
    Bench {
        name: "seq-read",
        aliases: &["seq_read_kernel_vs_sluice_blkback"],
        under: "cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact seq_read_kernel_vs_sluice_blkback",
        compares: "real Xen, PV guests, dd 1 MiB O_DIRECT reads: kernel blkback vs sluice-blkback, A B A B A B",
        cost: "Xen 4.17 test bed in QEMU, one boot",
        run: |s| xen_bench("seq_read_kernel_vs_sluice_blkback", s),
    },
    Bench {
        name: "fio-backends",
        aliases: &["fio_kernel_vs_sluice_blkback"],
        under: "cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_kernel_vs_sluice_blkback",
        compares: "real Xen, fio in PV guests: kernel blkback vs sluice-blkback, dom0 on the disk as the ceiling",
        cost: "Xen 4.17 test bed in QEMU, one boot; 15 s per job",
        run: |s| xen_bench("fio_kernel_vs_sluice_blkback", s),
    },
    Bench {
        name: "fio-backends-pvh",
        aliases: &["fio_kernel_vs_sluice_blkback_pvh"],
        under: "cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_kernel_vs_sluice_blkback_pvh",
        compares: "real Xen, fio in PVH guests of 2 vCPUs (2 blkfront queues): kernel blkback vs sluice-blkback",
        cost: "Xen 4.17 test bed in QEMU, one boot; 15 s per job (not in `cargo xtask test`)",
        run: |s| xen_bench("fio_kernel_vs_sluice_blkback_pvh", s),
    },
    Bench {
        name: "fio-zero-copy",
        aliases: &["fio_kernel_vs_sluice_bounce_and_zero_copy"],
        under: "cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_kernel_vs_sluice_bounce_and_zero_copy",
        compares: "real Xen, fio: kernel blkback vs sluice-blkback (zero copy) vs sluice-blkback --bounce, A B C x3",
        cost: "Xen 4.17 test bed in QEMU, one boot; 10 s per job (not in `cargo xtask test`)",
        run: |s| xen_bench("fio_kernel_vs_sluice_bounce_and_zero_copy", s),
    },
    Bench {
        name: "fio-variant",
        aliases: &["fio_kernel_vs_sluice_and_variant"],
        under: "SLUICE_BLKBACK_C_ARGS='...' cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_kernel_vs_sluice_and_variant",
        compares: "real Xen, fio: kernel blkback vs sluice-blkback vs sluice-blkback with SLUICE_BLKBACK_C_ARGS (an experiment), A B C x3",
        cost: "Xen 4.17 test bed in QEMU, one boot; 10 s per job (not in `cargo xtask test`)",
        run: |s| xen_bench("fio_kernel_vs_sluice_and_variant", s),
    },
    Bench {
        name: "fio-direct-buffered",
        aliases: &["fio_kernel_vs_sluice_direct_and_buffered"],
        under: "cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_kernel_vs_sluice_direct_and_buffered",
        compares: "real Xen, fio: kernel blkback vs sluice-blkback O_DIRECT vs sluice-blkback --buffered, A B C x3",
        cost: "Xen 4.17 test bed in QEMU, one boot; 10 s per job",
        run: |s| xen_bench("fio_kernel_vs_sluice_direct_and_buffered", s),
    },
    Bench {
        name: "fio-frontends",
        aliases: &["bench-blkfront", "fio_sluice_vs_stock_blkfront"],
        under: "SLUICE_BLKFRONT_KO=build/linux-modules/sluice-blkfront/sluice-blkfront.ko cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_sluice_vs_stock_blkfront",
        compares: "real Xen, fio: sluice-blkfront.ko vs stock xen-blkfront, against kernel blkback and sluice-blkback",
        cost: "Xen 4.17 test bed in QEMU, one boot; 10 s per job",
        run: |s| {
            let ko = crate::linux_modules::blkfront_ko()?;
            xen_bench_env(
                "fio_sluice_vs_stock_blkfront",
                s,
                &[("SLUICE_BLKFRONT_KO", ko.as_os_str())],
            )
        },
    },
    Bench {
        name: "fio-frontend-variant",
        aliases: &["fio_blkfront_variant"],
        under: "SLUICE_BLKFRONT_KO=build/linux-modules/sluice-blkfront/sluice-blkfront.ko SLUICE_BLKFRONT_C_ARGS='ARGS' cargo test -p sluice-testbed --test xen_bench -- --ignored --nocapture --exact fio_blkfront_variant",
        compares: "real Xen, fio: xen-blkfront vs sluice-blkfront.ko vs sluice-blkfront.ko with the module arguments in SLUICE_BLKFRONT_C_ARGS, against the backends in SLUICE_FRONTEND_BACKENDS (kblk, sblk; default both), triples rotated",
        cost: "Xen 4.17 test bed in QEMU, one boot; 10 s per job, about 15 minutes per backend",
        run: |s| {
            let ko = crate::linux_modules::blkfront_ko()?;
            xen_bench_env(
                "fio_blkfront_variant",
                s,
                &[("SLUICE_BLKFRONT_KO", ko.as_os_str())],
            )
        },
    },
    Bench {
        name: "iperf",
        aliases: &["iperf_kernel_vs_sluice_netback", "bench-net"],
        under: "SLUICE_NETFRONT_KO=build/linux-modules/sluice-netfront/sluice-netfront.ko cargo test -p sluice-testbed --test net_bench -- --ignored --nocapture --exact iperf_kernel_vs_sluice_netback",
        compares: "real Xen, iperf3 TCP in PV guests (2 vCPUs, 2 queues), both ways, 1 and 4 streams: kernel netback vs sluice-netback (stock xen-netfront), and sluice-netfront.ko vs xen-netfront (kernel netback), A B C x3",
        cost: "Xen 4.17 test bed in QEMU, one boot, 9 guests; 10 s per iperf3 run, about 15 minutes (not in cargo xtask test)",
        run: |s| {
            let ko = crate::linux_modules::netfront_ko()?;
            testbed_bench(
                "net_bench",
                "iperf_kernel_vs_sluice_netback",
                s,
                &[("SLUICE_NETFRONT_KO", ko.as_os_str())],
            )
        },
    },
    Bench {
        name: "hypercall",
        aliases: &["bench-hypercall"],
        under: "xtask/src/bench_hypercall.rs: QEMU boots of the hypervisor, and the test hypercall_round_trip_on_xen with SLUICE_TESTGUEST",
        compares: "no-op hypercall and CPUID exit round trips: Sluice's hypervisor vs Xen 4.17, same PVH guest, same QEMU",
        cost: "QEMU: 5 rounds, each a Sluice boot and a Xen test-bed boot",
        run: |s| crate::bench_hypercall::run(if s == Size::Smoke { 1 } else { 5 }, None),
    },
    Bench {
        name: "linux-boot",
        aliases: &["bench-linux"],
        under: "xtask/src/bench_linux.rs: QEMU boots of the hypervisor with Debian's kernel + an initramfs, and the test linux_boot_on_xen with SLUICE_LINUX_BENCH_INITRD",
        compares: "stock Debian 6.1 PVH guest, 1 vCPU: boot to /init (guest uptime), getppid, pipe round trip, fork: Sluice vs Xen 4.17, A B A B A B",
        cost: "QEMU: 3 rounds, each a Sluice boot and a Xen test-bed boot (not in cargo xtask test)",
        run: |s| {
            if s == Size::Smoke {
                crate::bench_linux::run_bench(1, 1)
            } else {
                // SLUICE_LINUX_BENCH_ROUNDS: more rounds on a noisy host.
                let rounds = std::env::var("SLUICE_LINUX_BENCH_ROUNDS")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .filter(|&r| r > 0)
                    .unwrap_or(3);
                crate::bench_linux::run_bench(rounds, 3)
            }
        },
    },
    Bench {
        name: "passthrough",
        aliases: &["bench-passthrough"],
        under: "xtask/src/bench_passthrough.rs: QEMU boots of the hypervisor with Debian's kernel, QEMU's nvme assigned, and of the same kernel directly",
        compares: "stock Debian 6.1, O_DIRECT reads of QEMU's nvme (4 KiB random IOPS, 1 MiB sequential MB/s): PVH domain of Sluice with the nvme assigned vs the kernel booted by QEMU itself, without and with QEMU's vIOMMU, A B C x3",
        cost: "QEMU: 3 rounds, each a Sluice boot and two bare boots, 4 jobs of 10 s each; about 8 minutes (not in cargo xtask test)",
        run: |s| {
            if s == Size::Smoke {
                crate::bench_passthrough::run_bench(1, 1.0)
            } else {
                // SLUICE_PT_BENCH_ROUNDS, SLUICE_PT_BENCH_SECONDS: rounds, seconds per job.
                let env = |k: &str, d: f64| {
                    std::env::var(k)
                        .ok()
                        .and_then(|r| r.parse::<f64>().ok())
                        .filter(|&r| r > 0.0)
                        .unwrap_or(d)
                };
                let rounds = env("SLUICE_PT_BENCH_ROUNDS", 3.0) as usize;
                crate::bench_passthrough::run_bench(rounds.max(1), env("SLUICE_PT_BENCH_SECONDS", 10.0))
            }
        },
    },
    Bench {
        name: "msi",
        aliases: &["bench-msi"],
        under: "xtask/src/bench_msi.rs: QEMU boots of the IOMMU test kernel (msibench=N) and of the hypervisor with one pt-msibench domain",
        compares: "edu MSI through QEMU's interrupt remapping, raise -> handler and handler -> EOI in TSC cycles: a Sluice domain with edu assigned vs a native kernel, same QEMU, VT-d and AMD-Vi, native/Sluice x3",
        cost: "QEMU: 3 rounds x 2 IOMMUs, each a native and a Sluice boot of about 1 s; under a minute with the builds done",
        run: |s| {
            if s == Size::Smoke {
                crate::bench_msi::run_bench(1, 50, 1)
            } else {
                // SLUICE_MSI_BENCH_ROUNDS, SLUICE_MSI_BENCH_N: rounds, measured raises.
                let env = |k: &str, d: usize| {
                    std::env::var(k)
                        .ok()
                        .and_then(|r| r.parse::<usize>().ok())
                        .filter(|&r| r > 0)
                        .unwrap_or(d)
                };
                crate::bench_msi::run_bench(
                    env("SLUICE_MSI_BENCH_ROUNDS", 3),
                    env("SLUICE_MSI_BENCH_N", 2000).min(4096),
                    2,
                )
            }
        },
    },
];

/// `cargo xtask bench --list`.
pub fn list() {
    for b in BENCHES {
        println!("{:<20} {}", b.name, b.compares);
        let aliases = if b.aliases.is_empty() {
            String::new()
        } else {
            format!("; also named {}", b.aliases.join(", "))
        };
        println!("{:<20} ({}{aliases})", "", b.cost);
        println!("{:<20} runs: {}", "", b.under);
    }
    println!(
        "\nRun one: cargo xtask bench NAME [--smoke]; results and their reading: docs/bench.md"
    );
}

/// Finds a bench by name or alias.
pub fn find(name: &str) -> Result<&'static Bench> {
    BENCHES
        .iter()
        .find(|b| b.name == name || b.aliases.contains(&name))
        .with_context(|| {
            let names: Vec<_> = BENCHES.iter().map(|b| b.name).collect();
            format!(
                "no benchmark {name:?}; there are: {} (cargo xtask bench --list)",
                names.join(", ")
            )
        })
}

/// `cargo xtask bench NAME`: setup (by the caller), then the bench between two stamps.
pub fn run_one(name: &str, size: Size) -> Result<()> {
    let b = find(name)?;
    let what = if size == Size::Smoke {
        " (SMOKE RUN: proves it starts; the figures mean nothing)"
    } else {
        ""
    };
    eprintln!("bench {}: {}{what}", b.name, b.compares);
    eprintln!("start: {}", stamp());
    let r = (b.run)(size);
    eprintln!("end:   {}", stamp());
    r
}

/// "2026-12-06 05:40 UTC, commit abc1234 (+ uncommitted changes), load average 1.2 1.5 1.7".
pub fn stamp() -> String {
    let out = |cmd: &mut Command| {
        cmd.current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let date = out(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S UTC"]))
        .unwrap_or_else(|| "date unknown".into());
    let commit = out(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown (not a git checkout)".into());
    let dirty = out(Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]))
        .is_some_and(|s| !s.is_empty());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{date}, commit {commit}{}, load average {load} (1/5/15 min), {} CPUs",
        if dirty { " + uncommitted changes" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// A host bench: `cargo bench` for the figures; for a smoke run `cargo test --bench`
/// (a debug build; criterion then runs each benchmark once) with `SLUICE_BENCH_SMOKE=1`
/// (the benches' own loops shrink to one round).
fn host_bench(package: &str, bench: &str, size: Size) -> Result<()> {
    let mut c = cargo();
    match size {
        Size::Full => c.args(["bench", "-p", package, "--bench", bench]),
        Size::Smoke => c
            .env("SLUICE_BENCH_SMOKE", "1")
            .args(["test", "-p", package, "--bench", bench]),
    };
    run(&mut c)
}

/// A test-bed bench (`tests/tests/xen_bench.rs`).
fn xen_bench(test: &str, size: Size) -> Result<()> {
    xen_bench_env(test, size, &[])
}

fn xen_bench_env(test: &str, size: Size, env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    testbed_bench("xen_bench", test, size, env)
}

/// Test `test` of the test bed's `tests/tests/FILE.rs`, ignored tests included.
fn testbed_bench(
    file: &str,
    test: &str,
    size: Size,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<()> {
    let mut c = cargo();
    if size == Size::Smoke {
        c.env("SLUICE_BENCH_SMOKE", "1");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    run(c
        .args(["test", "-p", "sluice-testbed", "--test", file, "--"])
        .args(["--ignored", "--nocapture", "--exact", test]))
}

/// Suite `bench-smoke-host`: the host benches once each, in one cargo invocation.
pub fn smoke_host() -> Result<()> {
    run(cargo().env("SLUICE_BENCH_SMOKE", "1").args([
        "test",
        "-p",
        "sluice-abi",
        "--bench",
        "ring",
        "-p",
        "sluice-iommu",
        "--bench",
        "map_unmap",
        "-p",
        "sluice-blkback",
        "--bench",
        "engines",
    ]))
}

/// Suite `bench-smoke-xen`: every test-bed bench once, smoke-sized, in one Xen boot
/// (`all_benches_smoke_one_boot`), then the Sluice half of `hypercall` once with the
/// Xen figures from that boot, then `msi` smoke-sized (no Xen: two short QEMU boots).
pub fn smoke_xen() -> Result<()> {
    let ko = crate::linux_modules::blkfront_ko()?;
    let (hv, guest) = crate::hypervisor::build()?;
    let xen_console = root().join("build/bench-smoke-hypercall.txt");
    let _ = std::fs::remove_file(&xen_console);
    run(cargo()
        .env("SLUICE_BLKFRONT_KO", &ko)
        .env("SLUICE_TESTGUEST", &guest)
        .env("SLUICE_BENCH_HYPERCALL_OUT", &xen_console)
        .args(["test", "-p", "sluice-testbed", "--test", "xen_bench", "--"])
        .args(["--ignored", "--nocapture", "--exact"])
        .arg("all_benches_smoke_one_boot"))?;
    let text = std::fs::read_to_string(&xen_console)
        .with_context(|| format!("the smoke boot left no {}", xen_console.display()))?;
    if text.is_empty() {
        bail!("{} is empty", xen_console.display());
    }
    crate::bench_hypercall::run(1, Some((&hv, &guest, &text)))?;
    // `msi` once, VT-d only, 50 raises: two boots of about a second (no Xen).
    crate::bench_msi::run_bench(1, 50, 1)
}
