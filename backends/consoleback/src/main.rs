//! `sluice-consoleback [LOG_DIR]`: serves every guest's PV console (default log
//! directory `/var/log/xen/console`).

#![deny(unsafe_code)]

use anyhow::Context;
use sluice_consoleback::ConsoleBackend;
use sluice_dom0::xenstore::XsClient;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let log_dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("/var/log/xen/console"), PathBuf::from);
    let xs = Arc::new(XsClient::open().context("connecting to xenstore")?);
    let grants = Arc::new(GntdevDevice::open().context("opening the grant device")?);
    tracing::info!("sluice-consoleback: logs in {}", log_dir.display());
    let mut backend = ConsoleBackend::new(
        xs,
        grants,
        || EvtchnDevice::open().map_err(Into::into),
        Some(log_dir),
    );
    backend
        .run(&AtomicBool::new(false))
        .context("xenstore connection lost")?;
    Ok(())
}
