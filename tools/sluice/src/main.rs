//! `sluice`: status and health of a Xen dom0 running Sluice's backends.

use anyhow::Result;
use clap::{Parser, Subcommand};
use sluice::{doctor, status, Root};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Status and health checks of Sluice's Xen backends in dom0; PCI functions for passthrough"
)]
struct Cli {
    /// Read /proc, /sys, /dev, /etc and /run under this directory (tests; default /).
    #[arg(long, global = true, default_value = "/", hide = true)]
    root: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Backends running and each block device they serve (domain, vdev, image, state,
    /// features negotiated), from /proc and the backends' xenstore nodes.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check this dom0 for what Sluice needs; prints each problem with its fix and exits
    /// 1 when there is one.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Run only these checks (repeatable); `--list` names them.
        #[arg(long)]
        only: Vec<String>,
        /// List the checks and exit.
        #[arg(long)]
        list: bool,
    },
    /// PCI functions for passthrough.
    Pci {
        #[command(subcommand)]
        command: PciCommand,
    },
}

#[derive(Subcommand)]
enum PciCommand {
    /// Each PCI function (from /sys/bus/pci/devices): vendor and device names (pci-ids),
    /// its IOMMU group, whether it can be assigned to a guest (or why not) and the resets
    /// it offers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let root = Root::new(&cli.root);
    match cli.command {
        Command::Status { json } => {
            let (devices, xenstore_error) = match open_xenstore(&root) {
                Ok(xs) => {
                    let mut d = status::devices(&xs, 0);
                    if let Ok(t) = std::fs::read_to_string(root.path(status::BLKBACK_STATUS_FILE)) {
                        status::apply_counts(&mut d, 0, &t);
                    }
                    (d, None)
                }
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            let st = status::Status {
                daemons: status::daemons(&root),
                devices,
                xenstore_error,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", st.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { json, only, list } => {
            if list {
                for (c, what) in doctor::CHECKS {
                    println!("{c:<16} {what}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let findings = doctor::run(&root, &only).map_err(anyhow::Error::msg)?;
            let problems = findings.iter().filter(|f| !f.ok).count();
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                for f in &findings {
                    let mark = if f.ok { "ok     " } else { "PROBLEM" };
                    println!("{mark} {:<16} {}", f.check, f.detail);
                    if let Some(fix) = &f.fix {
                        println!("        fix: {fix}");
                    }
                }
                println!("{problems} problem{}", if problems == 1 { "" } else { "s" });
            }
            Ok(if problems == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Pci {
            command: PciCommand::List { json },
        } => {
            use sluice_pciback::host;
            let dir = root.path("/sys/bus/pci/devices");
            let rows =
                host::list(&dir).map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&host::json(&rows))?);
            } else {
                print!("{}", host::table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// xenstored's socket under the root, else the kernel's xenbus device.
fn open_xenstore(root: &Root) -> Result<sluice_dom0::xenstore::XsClient> {
    use sluice_dom0::xenstore::XsClient;
    let sock = root.path("/run/xenstored/socket");
    if sock.exists() {
        return Ok(XsClient::connect_socket(&sock)?);
    }
    let bus = root.path("/dev/xen/xenbus");
    if bus.exists() {
        return Ok(XsClient::open_xenbus(&bus)?);
    }
    anyhow::bail!("neither {} nor {} exists", sock.display(), bus.display())
}
