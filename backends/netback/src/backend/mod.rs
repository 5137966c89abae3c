//! The xenbus side: finds `backend/vif/<domid>/<handle>` devices, creates each one's tap
//! (`vif<domid>.<handle>`), negotiates with the frontend as Linux netback 6.1 does, and
//! runs one [`Queue`](crate::queue::Queue) thread per queue. This module holds the
//! [`Backend`] (its settings, the watch loop, reconciling vifs with xenstore); `xenbus`
//! one vif's state machine, `connect` mapping its rings and starting its queue threads.

mod connect;
mod xenbus;

use crate::queue::{Frames, NetStats};
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::{
    EventChannels, EvtchnError, GrantError, GrantMapper, LimitClock, LogLimiter, Rate, XenStore,
    XsError,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Why a vif could not be set up or connected.
#[derive(Debug, thiserror::Error)]
pub enum VifError {
    /// Xenstore failed or holds garbage.
    #[error(transparent)]
    Xs(#[from] XsError),
    /// A node the protocol requires is missing.
    #[error("{0} is missing")]
    Missing(String),
    /// A node holds a value we refuse.
    #[error("{path}: {why}")]
    Bad {
        /// The node.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The tap could not be opened or configured.
    #[error("tap: {0}")]
    Tap(String),
    /// A ring could not be mapped.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// An event channel could not be bound.
    #[error(transparent)]
    Evtchn(#[from] EvtchnError),
    /// The ring pages are not a valid ring.
    #[error("ring: {0}")]
    Ring(#[from] sluice_abi::ring::RingError),
    /// A thread could not be started.
    #[error("spawning a queue thread: {0}")]
    Spawn(std::io::Error),
}

struct QueueThread {
    stop: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

struct Vif<T> {
    name: String,
    fe: String,
    fe_id: u16,
    /// Tap queues; the first is opened at setup (the interface exists from InitWait on,
    /// for the hotplug script) and kept until the device is removed.
    taps: Vec<Arc<T>>,
    queues: Vec<QueueThread>,
    state: XenbusState,
    /// Gave up: waits for the toolstack to remove the device, or for the frontend to
    /// reset (Closed, then Initialising: offered again, as Linux netback does).
    broken: bool,
    stats: Arc<NetStats>,
    log: Arc<LogLimiter>,
}

impl<T> Vif<T> {
    fn connected(&self) -> bool {
        !self.queues.is_empty()
    }

    fn teardown(&mut self) {
        for q in &self.queues {
            q.stop.store(true, Ordering::Release);
        }
        for q in &mut self.queues {
            if let Some(j) = q.join.take() {
                let _ = j.join();
            }
        }
        if !self.queues.is_empty() {
            self.log.report(&self.name, true);
            let s = &self.stats;
            // Frames for the guest the kernel dropped because a tap queue was full
            // (tun drops rather than stopping its queue): not seen by us otherwise.
            let kernel_drops = std::fs::read_to_string(format!(
                "/sys/class/net/{}/statistics/tx_dropped",
                ifname_of(&self.name)
            ))
            .map_or_else(|_| "?".into(), |s| s.trim().to_string());
            tracing::info!(
                "{}: disconnected (tx {} packets, {} dropped; rx {} packets, {} dropped; \
                 the tap dropped {kernel_drops} for the guest since its creation)",
                self.name,
                s.tx_packets.load(Ordering::Relaxed),
                s.tx_dropped.load(Ordering::Relaxed),
                s.rx_packets.load(Ordering::Relaxed),
                s.rx_dropped.load(Ordering::Relaxed)
            );
        }
        self.queues.clear();
        self.taps.truncate(1);
    }

    fn any_dead(&self) -> bool {
        self.queues.iter().any(|q| q.dead.load(Ordering::Acquire))
    }
}

/// The interface name in a vif's log name (`vif 5:0 (vif5.0)` → `vif5.0`).
fn ifname_of(name: &str) -> &str {
    name.rsplit_once('(')
        .map_or("", |(_, n)| n.trim_end_matches(')'))
}

/// Opens one more queue of the tap of this name (creating the interface if needed).
pub type TapOpener<T> = dyn Fn(&str) -> Result<T, String> + Send;

/// The network backend over any xenstore, grant mapper, event channels and taps.
pub struct Backend<S, G, F, T> {
    xs: Arc<S>,
    grants: Arc<G>,
    open_evtchn: F,
    open_tap: Box<TapOpener<T>>,
    root: String,
    max_queues: u32,
    log_rate: (Rate, LimitClock),
    vifs: BTreeMap<String, Vif<T>>,
    /// Run the vif's hotplug script (`online`) when taking over a connected vif.
    hotplug_on_takeover: bool,
    /// TX by mapping the guest's grants (`crate::tx`; default: grant copy).
    tx_map: bool,
    uring: bool,
}

impl<S, G, F, E, T> Backend<S, G, F, T>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
    T: Frames + 'static,
{
    /// A backend for the vifs under `root` (`/local/domain/0/backend/vif`), offering
    /// `max_queues` queues per vif.
    pub fn new(
        xs: Arc<S>,
        grants: Arc<G>,
        open_evtchn: F,
        open_tap: Box<TapOpener<T>>,
        root: &str,
        max_queues: u32,
    ) -> Self {
        Self {
            xs,
            grants,
            open_evtchn,
            open_tap,
            root: root.trim_end_matches('/').to_string(),
            max_queues: max_queues.max(1),
            log_rate: (Rate::LOG, LimitClock::real()),
            vifs: BTreeMap::new(),
            hotplug_on_takeover: false,
            tx_map: false,
            uring: true,
        }
    }

    /// When this daemon takes over a vif that an earlier run left Connected (it was
    /// killed or crashed with the guest running), its new tap is not on the bridge:
    /// run the vif's hotplug script (the backend's `script` node, under
    /// `/etc/xen/scripts/`) with `online`, as libxl did (default off).
    pub fn with_hotplug_on_takeover(mut self, on: bool) -> Self {
        self.hotplug_on_takeover = on;
        self
    }

    /// TX by mapping each batch's grants and writing the tap from the mapped pages
    /// instead of grant copy (`crate::tx`; default off).
    pub fn with_tx_map(mut self, on: bool) -> Self {
        self.tx_map = on;
        self
    }

    /// Tap reads and writes through one io_uring per queue, in batches (default on;
    /// off, or where the kernel refuses io_uring: one syscall per frame).
    pub fn with_uring(mut self, on: bool) -> Self {
        self.uring = on;
        self
    }

    /// The rate limit on log lines a frontend can cause, per vif and message class.
    pub fn with_log_rate(mut self, rate: Rate, clock: LimitClock) -> Self {
        self.log_rate = (rate, clock);
        self
    }

    /// Counters of the vif at `backend_path`.
    pub fn stats(&self, backend_path: &str) -> Option<Arc<NetStats>> {
        self.vifs.get(backend_path).map(|v| v.stats.clone())
    }

    /// Log lines let through and suppressed for the vif at `backend_path`.
    pub fn log_counts(&self, backend_path: &str) -> Option<(u64, u64)> {
        self.vifs.get(backend_path).map(|v| v.log.counts())
    }

    /// Watches `root` and serves vifs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), XsError> {
        self.xs.watch(&self.root, "vif")?;
        let xs = self.xs.clone();
        sluice_dom0::xenstore::watch_loop(&*xs, stop, Duration::from_millis(200), |changed| {
            if changed || self.vifs.values().any(Vif::any_dead) {
                self.reconcile();
            }
        })?;
        for v in self.vifs.values_mut() {
            v.teardown();
        }
        Ok(())
    }

    /// Brings every vif in line with xenstore.
    pub fn reconcile(&mut self) {
        let present = sluice_dom0::xenstore::backend_device_dirs(&*self.xs, &self.root);
        for (be, mut v) in sluice_dom0::xenstore::take_removed(&mut self.vifs, &present) {
            v.teardown();
            let _ = self.xs.unwatch(&format!("{}/state", v.fe), &be);
            tracing::info!("{}: removed", v.name);
        }
        for be in present {
            if let Err(e) = self.step(&be) {
                tracing::warn!("{be}: {e}");
            }
        }
    }
}
