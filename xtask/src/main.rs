//! `cargo xtask`: the one entry point for building, demonstrating and testing Sluice.
//!
//! `setup` installs what is missing (Debian packages, rustup parts), idempotently.
//! `demo`, `test` and `bench` call `setup` first, so a fresh Debian 12 machine with
//! rustup needs nothing else.

mod abi_suites;
mod bench;
mod bench_hypercall;
mod bench_linux;
mod bench_msi;
mod bench_passthrough;
mod fuzz;
mod hv_hostile;
mod hypervisor;
mod hypervisor_linux;
mod hypervisor_mem;
mod iommu;
mod linux_modules;
mod package;
mod passthrough;
mod passthrough_linux;
mod setup;
mod soak;
mod suites;
mod util;
mod windows;
mod xen;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Sluice build driver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install missing Debian packages and rustup parts (idempotent).
    Setup,
    /// Run the whole stack in QEMU and show it working.
    Demo,
    /// Build the Debian packages (sluice-backends, sluice-frontends-modules-<kernel ABI>)
    /// into target/debian/.
    Package,
    /// Build, sign and package the Windows drivers into target/windows/ (.sys, .inf,
    /// .cat, test certificate, MSI).
    Windows,
    /// Run every test: fmt, clippy, unit tests, then each QEMU end-to-end suite.
    Test {
        /// Run only the suites whose name contains this text (the static checks and
        /// unit tests still run unless `--no-static` is given).
        #[arg(long)]
        suite: Option<String>,
        /// Skip fmt, clippy and unit tests; run only the end-to-end suites.
        #[arg(long)]
        no_static: bool,
        /// List the suites and exit.
        #[arg(long)]
        list: bool,
    },
    /// Run one benchmark of docs/bench.md (`--list` names them); prints its table with
    /// the date, commit and load average. `SLUICE_FIO_SECONDS` / `SLUICE_FIO_PAIRS`
    /// size the fio benches.
    Bench {
        /// The benchmark (or one of its older spellings).
        name: Option<String>,
        /// List the benchmarks and what each compares, and exit.
        #[arg(long)]
        list: bool,
        /// Once, smallest size (seconds, one pair): proves it starts, measures nothing.
        #[arg(long)]
        smoke: bool,
    },
    /// Run every fuzz target (fuzz/) for an equal share of `--minutes`, seeded from the
    /// corpus in fuzz/seeds/; prints executions and crashes per target (docs/fuzz.md).
    Fuzz {
        /// Minutes in all, shared equally by the targets.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
        /// Targets run at once (one core each); each gets minutes x jobs / targets.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Then fold the inputs that add coverage into fuzz/seeds/ (`-merge=1`).
        #[arg(long)]
        merge: bool,
    },
    /// Opt-in soak (not in `test`): N domUs at once on the Xen test bed running mixed
    /// fio jobs with crc32c verification against sluice-blkback for M minutes; prints
    /// per-guest figures and the daemon's RSS and fds (docs/bench.md).
    Soak {
        /// Minutes of fio in each guest.
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Guests at once (PV and PVH alternating).
        #[arg(long, default_value_t = 4)]
        guests: u32,
    },
    /// Alias of `cargo xtask bench hypercall`.
    BenchHypercall,
    /// Alias of `cargo xtask bench fio-frontends`.
    BenchBlkfront,
}

/// Errors are printed as their chain of causes, without a backtrace (`RUST_BACKTRACE`
/// set in CI would otherwise push `cargo xtask test`'s suite summary out of the tail
/// that CI shows).
fn main() -> std::process::ExitCode {
    match run_command(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Setup => setup::run(),
        Command::Package => {
            setup::run()?;
            package::build().map(|_| ())
        }
        Command::Windows => {
            setup::run()?;
            windows::build().map(|_| ())
        }
        Command::Demo => {
            setup::run()?;
            suites::demo()
        }
        Command::Test {
            suite,
            no_static,
            list,
        } => {
            if list {
                for s in suites::SUITES {
                    let only = suites::OPT_IN
                        .iter()
                        .find(|(n, _)| *n == s.name)
                        .map(|(_, why)| format!(" (opt-in, only as --suite {}: {why})", s.name))
                        .unwrap_or_default();
                    println!("{:<24} {}{only}", s.name, s.about);
                }
                return Ok(());
            }
            setup::run()?;
            suites::test(suite.as_deref(), !no_static)
        }
        Command::Bench { name, list, smoke } => {
            let Some(name) = name.filter(|_| !list) else {
                bench::list();
                return Ok(());
            };
            bench::find(&name)?;
            setup::run()?;
            let size = if smoke {
                bench::Size::Smoke
            } else {
                bench::Size::Full
            };
            bench::run_one(&name, size)
        }
        Command::Fuzz {
            minutes,
            jobs,
            merge,
        } => {
            setup::run()?;
            fuzz::run(minutes, jobs, merge)
        }
        Command::Soak { minutes, guests } => {
            setup::run()?;
            soak::run_soak(minutes, guests)
        }
        Command::BenchHypercall => {
            setup::run()?;
            bench::run_one("hypercall", bench::Size::Full)
        }
        Command::BenchBlkfront => {
            setup::run()?;
            bench::run_one("fio-frontends", bench::Size::Full)
        }
    }
}
