//! `sluice-consoleback [--log-max-bytes BYTES] [LOG_DIR]`: serves every guest's PV
//! console (default log directory `/var/log/xen/console`; each guest's log is rotated to
//! `guest-<domid>.log.1` at BYTES, default 4 MiB, 0 for no cap).

#![deny(unsafe_code)]

use anyhow::Context;
use sluice_consoleback::log::DEFAULT_LOG_MAX_BYTES;
use sluice_consoleback::ConsoleBackend;
use sluice_dom0::xenstore::XsClient;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let mut log_dir = PathBuf::from("/var/log/xen/console");
    let mut log_max_bytes = DEFAULT_LOG_MAX_BYTES;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--log-max-bytes" {
            log_max_bytes = args
                .next()
                .and_then(|v| v.to_str()?.parse().ok())
                .context("--log-max-bytes needs a number of bytes (0: no cap)")?;
        } else {
            log_dir = PathBuf::from(a);
        }
    }
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
