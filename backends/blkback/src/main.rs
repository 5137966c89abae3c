//! `sluice-blkback`: serves `backend/vbd` devices of dom0 (run it instead of the
//! kernel's xen-blkback; libxl disk line `backendtype=phy,script=block-userspace,...`
//! in Sluice's test bed).

#![deny(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use sluice_blkback::{Backend, IoEngine};
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Serves dom0's `backend/vbd` devices. Each option also has an environment variable
/// (for the test bed and benches), used when the option is not given.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// I/O engine: `uring` (io_uring, the default) or `sync` (one request at a time,
    /// pread/pwrite) [env SLUICE_BLKBACK_IO]
    #[arg(long)]
    io: Option<String>,
    /// Advertise feature-persistent = 0: grant copy for every request
    /// [env SLUICE_BLKBACK_PERSISTENT=0]
    #[arg(long)]
    no_persistent_grants: bool,
    /// No O_DIRECT: I/O through dom0's page cache [env SLUICE_BLKBACK_DIRECT=0]
    #[arg(long)]
    buffered: bool,
    /// Pooled bounce buffers for every request instead of io_uring I/O straight into
    /// the persistently mapped guest pages (zero copy, the default: ahead of bounce
    /// buffers in every job of the same-boot bench, docs/bench.md)
    /// [env SLUICE_BLKBACK_ZERO_COPY=0]
    #[arg(long, conflicts_with = "zero_copy")]
    bounce: bool,
    /// Zero copy, the default (kept so that configurations naming it still start)
    #[arg(long)]
    zero_copy: bool,
    /// Notification coalescing (io_uring engine): an event the frontend asked for waits
    /// for at most N more completions while other I/O is in flight, or one 2 ms wait;
    /// 0 sends it at once. Default 2: ahead of 0 in every job of the same-boot bench
    /// (docs/bench.md) [env SLUICE_BLKBACK_COALESCE]
    #[arg(long)]
    coalesce: Option<u32>,
    /// The io_uring engine sends a round's contiguous zero-copy reads (or writes) as
    /// one I/O, each request still answered alone (an experiment, off by default)
    /// [env SLUICE_BLKBACK_MERGE=1]
    #[arg(long)]
    merge: bool,
    /// Most queues (rings) a device may use: `multi-queue-max-queues` (Linux blkback's
    /// `max_queues`); default the CPUs, at most 4 [env SLUICE_BLKBACK_MAX_QUEUES]
    #[arg(long)]
    max_queues: Option<u32>,
    /// Time each phase of each request (the per-queue log line at disconnect); costs a
    /// clock syscall per phase in a PV dom0 [env SLUICE_BLKBACK_PROFILE=1]
    #[arg(long)]
    profile: bool,
    /// Per-device request counts for `sluice status`
    #[arg(long, default_value = "/run/sluice/blkback.json")]
    status_file: String,
    /// Each queue's crash journal, so that the daemon started after this one is killed
    /// serves exactly the requests left unanswered (src/journal.rs); `none`: no journal
    #[arg(long, default_value = "/run/sluice/blkback")]
    state_dir: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .init();
    let choice = match args.io {
        Some(io) => io,
        None => std::env::var("SLUICE_BLKBACK_IO").unwrap_or_else(|_| "uring".into()),
    };
    let engine = match choice.as_str() {
        "sync" => IoEngine::Sync,
        "uring" => IoEngine::Uring,
        other => anyhow::bail!("unknown I/O engine {other:?} (sync or uring)"),
    };
    let xs = Arc::new(XsClient::open().context("connecting to xenstore")?);
    let domid = xs.read_u64(XBT_NULL, "domid").ok().flatten().unwrap_or(0);
    let grants = Arc::new(GntdevDevice::open().context("opening the grant device")?);
    let queues = match args.max_queues.or_else(|| {
        std::env::var("SLUICE_BLKBACK_MAX_QUEUES")
            .ok()
            .and_then(|v| v.parse().ok())
    }) {
        Some(n) => n.clamp(1, 4),
        None => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u32,
    };
    let root = format!("/local/domain/{domid}/backend/vbd");
    tracing::info!("sluice-blkback: serving {root} (up to {queues} queue(s) per device)");
    let backend = Backend::new(
        xs,
        grants,
        || EvtchnDevice::open().map_err(Into::into),
        &root,
        queues,
    );
    let persistent = !args.no_persistent_grants
        && std::env::var("SLUICE_BLKBACK_PERSISTENT").map_or(true, |v| v != "0");
    let per_queue = if persistent {
        sluice_blkback::persistent::PERSISTENT_GRANTS_PER_QUEUE
    } else {
        0
    };
    if per_queue > 0 {
        tracing::info!("I/O engine: {engine:?}; persistent grants: up to {per_queue} per queue");
    } else {
        tracing::info!("I/O engine: {engine:?}; persistent grants off (grant copy only)");
    }
    let direct =
        !args.buffered && std::env::var("SLUICE_BLKBACK_DIRECT").map_or(true, |v| v != "0");
    let zero_copy = args.zero_copy
        || (!args.bounce && std::env::var("SLUICE_BLKBACK_ZERO_COPY").map_or(true, |v| v != "0"));
    let profile = args.profile || std::env::var("SLUICE_BLKBACK_PROFILE").is_ok_and(|v| v == "1");
    sluice_blkback::profile::enable_timing(profile);
    tracing::info!(
        "O_DIRECT: {direct}; zero copy into mapped pages: {zero_copy}; phase timing: {profile}"
    );
    let coalesce = args.coalesce.unwrap_or_else(|| {
        std::env::var("SLUICE_BLKBACK_COALESCE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(sluice_blkback::coalesce::DEFAULT_ROUNDS)
    });
    let merge = args.merge || std::env::var("SLUICE_BLKBACK_MERGE").is_ok_and(|v| v == "1");
    tracing::info!("notification coalescing: {coalesce} round(s); merged I/O: {merge}");
    let (status_file, state_dir) = (args.status_file, args.state_dir);
    let backend = if state_dir == "none" {
        tracing::warn!("no crash journal: a restart after a crash may lose requests in flight");
        backend
    } else {
        match std::fs::create_dir_all(&state_dir) {
            Ok(()) => backend.with_journal_dir(&state_dir),
            Err(e) => {
                tracing::warn!("{state_dir}: {e}; no crash journal");
                backend
            }
        }
    };
    let mut backend = backend
        .with_status_file(status_file)
        .with_engine(engine)
        .with_persistent_grants(per_queue)
        .with_direct_io(direct)
        .with_zero_copy(zero_copy)
        .with_coalesce(coalesce)
        .with_merge(merge);
    let stop = AtomicBool::new(false);
    backend.run(&stop).context("xenstore connection lost")?;
    Ok(())
}
