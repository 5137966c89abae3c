//! `sluice-netback`: serves `backend/vif` devices of dom0 (run it instead of the kernel's
//! xen-netback; libxl vif line `script=vif-userspace,bridge=BRIDGE,...`).

#![deny(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_netback::Backend;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice, TapDevice};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Serves dom0's `backend/vif` devices, one tap `vif<domid>.<handle>` per vif.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// multi-queue-max-queues offered to frontends (default: dom0's CPUs, at most 8)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_queues: Option<u32>,
    /// time each queue's phases (tap reads/writes, grant copies, waits) for the profile
    /// line logged when a queue stops (also SLUICE_NETBACK_PROFILE=1); counts are always kept
    #[arg(long)]
    profile: bool,
    /// TX by mapping the guest's grants (one mapping per batch, the tap written from
    /// the mapped pages) instead of grant copy
    #[arg(long)]
    tx_map: bool,
    /// tap reads and writes and event-channel waits in batches through one io_uring per
    /// queue (also SLUICE_NETBACK_URING=1); off by default: measured slower (IO.md)
    #[arg(long)]
    uring: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .init();
    let max_queues = args.max_queues.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u32
    });
    let uring = args.uring || std::env::var("SLUICE_NETBACK_URING").is_ok_and(|v| v == "1");
    let profile = args.profile || std::env::var("SLUICE_NETBACK_PROFILE").is_ok_and(|v| v == "1");
    sluice_dom0::profile::enable_timing(profile);
    let xs = Arc::new(XsClient::open().context("connecting to xenstore")?);
    let domid = xs.read_u64(XBT_NULL, "domid").ok().flatten().unwrap_or(0);
    let grants = Arc::new(GntdevDevice::open().context("opening the grant device")?);
    let root = format!("/local/domain/{domid}/backend/vif");
    tracing::info!("sluice-netback: serving {root} (up to {max_queues} queue(s) per vif; phase timing: {profile}; tx by {}; tap through {})",
        if args.tx_map { "mapping" } else { "grant copy" },
        if uring { "io_uring" } else { "a syscall per frame" }
    );
    let mut backend = Backend::new(
        xs,
        grants,
        || EvtchnDevice::open().map_err(Into::into),
        Box::new(|name: &str| TapDevice::open_queue(name).map_err(|e| e.to_string())),
        &root,
        max_queues,
    )
    .with_hotplug_on_takeover(true)
    .with_tx_map(args.tx_map)
    .with_uring(uring);
    let stop = AtomicBool::new(false);
    backend.run(&stop).context("xenstore connection lost")?;
    Ok(())
}
