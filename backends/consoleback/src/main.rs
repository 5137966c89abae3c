//! `sluice-consoleback [--log-max-bytes BYTES] [LOG_DIR]`: serves every guest's PV
//! console (default log directory `/var/log/xen/console`; each guest's log is rotated to
//! `guest-<domid>.log.1` at BYTES, default 4 MiB, 0 for no cap).

#![deny(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use sluice_consoleback::log::DEFAULT_LOG_MAX_BYTES;
use sluice_consoleback::ConsoleBackend;
use sluice_dom0::xenstore::XsClient;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Serves every guest's PV console, each logged to `LOG_DIR/guest-<domid>.log`.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Rotate each guest's log to `guest-<domid>.log.1` at this size (0: no cap)
    #[arg(long, default_value_t = DEFAULT_LOG_MAX_BYTES)]
    log_max_bytes: u64,
    /// Where the guests' console logs go
    #[arg(default_value = "/var/log/xen/console")]
    log_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let Args {
        log_max_bytes,
        log_dir,
    } = Args::parse();
    tracing_subscriber::fmt().with_target(false).init();
    let xs = Arc::new(XsClient::open().context("connecting to xenstore")?);
    let grants = Arc::new(GntdevDevice::open().context("opening the grant device")?);
    tracing::info!(
        "sluice-consoleback: logs in {} (each rotated at {log_max_bytes} bytes)",
        log_dir.display()
    );
    let mut backend = ConsoleBackend::new(
        xs,
        grants,
        || EvtchnDevice::open().map_err(Into::into),
        Some(log_dir),
    )
    .with_log_max_bytes(log_max_bytes);
    backend
        .run(&AtomicBool::new(false))
        .context("xenstore connection lost")?;
    Ok(())
}
