//! `sluice-console-add DOMID N [--name NAME]`: gives a running guest secondary console
//! `N` (1..=255) served by `sluice-consoleback` (the xenstore nodes of
//! `sluice_consoleback::secondary::add_console`). xl's `channel=[...]` cannot: it makes
//! the console QEMU's (`type` `ioemu`) and starts a device model for it.

#![deny(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use sluice_consoleback::secondary::add_console;
use sluice_dom0::xenstore::XsClient;

/// Adds secondary console N to domain DOMID (served by sluice-consoleback).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The guest's domain id
    domid: u16,
    /// The console number (1..=255); the guest sees device/console/N
    n: u32,
    /// The console's name (xenstore `name`)
    #[arg(long, default_value = "sluice")]
    name: String,
}

fn main() -> anyhow::Result<()> {
    let Args { domid, n, name } = Args::parse();
    let xs = XsClient::open().context("connecting to xenstore")?;
    add_console(&xs, domid, n, &name)
        .with_context(|| format!("adding console {n} to domain {domid}"))?;
    println!("/local/domain/{domid}/device/console/{n}");
    Ok(())
}
