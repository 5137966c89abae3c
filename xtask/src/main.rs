//! `cargo xtask`: the one entry point for building, demonstrating and testing Sluice.
//!
//! `setup` installs what is missing (Debian packages, rustup parts), idempotently.
//! `demo` and `test` call `setup` first, so a fresh Debian 12 machine with rustup needs
//! nothing else.

mod abi_suites;
mod hv_hostile;
mod hypervisor;
mod hypervisor_linux;
mod hypervisor_mem;
mod iommu;
mod linux_modules;
mod setup;
mod suites;
mod util;
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
    /// Benchmark: a no-op hypercall's round trip on Sluice's hypervisor and on real Xen
    /// 4.17, the same PVH test guest in the same QEMU (results for docs/bench.md).
    BenchHypercall,
    /// Benchmark: fio in Xen domUs with sluice-blkfront.ko vs stock xen-blkfront against
    /// the same backend in one run (results for docs/bench.md).
    BenchBlkfront,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup => setup::run(),
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
                    println!("{:<24} {}", s.name, s.about);
                }
                return Ok(());
            }
            setup::run()?;
            suites::test(suite.as_deref(), !no_static)
        }
        Command::BenchHypercall => {
            setup::run()?;
            hypervisor::bench_vs_xen()
        }
        Command::BenchBlkfront => {
            setup::run()?;
            linux_modules::bench_blkfront()
        }
    }
}
