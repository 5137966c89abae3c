//! `sluice-pci list [--json] [--sysfs DIR]`: the host's PCI functions, their IOMMU
//! groups, whether each can be assigned to a guest (and why not), and their resets.
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sluice-pci",
    about = "PCI functions and whether Sluice can assign them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List PCI functions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The sysfs PCI devices directory.
        #[arg(long, default_value = "/sys/bus/pci/devices")]
        sysfs: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let Cli {
        cmd: Cmd::List { json, sysfs },
    } = Cli::parse();
    match sluice_pciback::host::list(&sysfs) {
        Ok(rows) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&sluice_pciback::host::json(&rows)).expect("JSON")
            );
            std::process::ExitCode::SUCCESS
        }
        Ok(rows) => {
            print!("{}", sluice_pciback::host::table(&rows));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-pci: {}: {e}", sysfs.display());
            std::process::ExitCode::FAILURE
        }
    }
}
