//! The xenbus side: finds `backend/vbd/<domid>/<devid>` devices, walks the xenbus
//! state machine with each frontend, and runs one
//! [`Queue`](crate::ring_server::Queue) thread per ring. This module holds the
//! [`Backend`] (its settings, the watch loop, reconciling devices with xenstore);
//! `xenbus` one device's state machine, `connect` mapping its rings and starting its
//! queue threads.

mod connect;
mod xenbus;

use crate::disk::Disk;
use crate::persistent::PERSISTENT_GRANTS_PER_QUEUE;
use crate::ring_server::QueueStats;
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

/// Largest `ring-page-order` we accept (16 pages).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// Why a device could not be set up or connected.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
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
    /// The image could not be opened.
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    /// The frontend's ring could not be mapped.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// Its event channel could not be bound.
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

struct Device {
    name: String,
    fe: String,
    fe_id: u16,
    disk: Option<Arc<Disk>>,
    queues: Vec<QueueThread>,
    /// The state we last wrote.
    state: XenbusState,
    /// Setup failed; waits for the toolstack to remove the device.
    broken: bool,
    stats: Arc<QueueStats>,
    /// Rate limit on the lines this device's frontend makes us log (per message class).
    log: Arc<LogLimiter>,
    /// Found Connected by this process (its predecessor died): the next connect takes
    /// the live rings over, with their journals.
    takeover: bool,
}

impl Device {
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
            tracing::info!("{}: disconnected", self.name);
        }
        self.queues.clear();
    }

    fn any_dead(&self) -> bool {
        self.queues.iter().any(|q| q.dead.load(Ordering::Acquire))
    }
}

/// How a queue does its I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEngine {
    /// pread/pwrite, one request at a time.
    Sync,
    /// io_uring, many requests in flight (falls back to `Sync` if io_uring is unavailable).
    Uring,
}

/// The block backend over any xenstore, grant mapper and event-channel source.
pub struct Backend<S, G, F> {
    engine: IoEngine,
    xs: Arc<S>,
    grants: Arc<G>,
    open_evtchn: F,
    root: String,
    max_queues: u32,
    /// Persistent grants kept per queue; 0: `feature-persistent` = 0 (grant copy only).
    persistent_limit: usize,
    /// Open disks with `O_DIRECT` where they take it (default); false: buffered.
    direct_io: bool,
    /// io_uring I/O straight into persistently mapped pages (default); false: bounce
    /// buffers always.
    zero_copy: bool,
    /// Rounds a queue may hold back a notification while I/O is in flight
    /// ([`crate::coalesce`]; 0: none).
    coalesce: u32,
    /// A round's contiguous zero-copy requests as one I/O (default off).
    merge: bool,
    /// Log lines per device and message class, and the clock it goes by.
    log_rate: (Rate, LimitClock),
    devices: BTreeMap<String, Device>,
    /// Where `sluice status` reads the per-device counts.
    status_file: Option<crate::status::StatusFile>,
    /// Where each queue keeps its crash journal ([`crate::journal`]); `None`: none.
    journal_dir: Option<std::path::PathBuf>,
}

impl<S, G, F, E> Backend<S, G, F>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    G::Mapping: 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
{
    /// A backend for devices under `root` (`/local/domain/0/backend/vbd`).
    pub fn new(xs: Arc<S>, grants: Arc<G>, open_evtchn: F, root: &str, max_queues: u32) -> Self {
        Self {
            engine: IoEngine::Uring,
            xs,
            grants,
            open_evtchn,
            root: root.trim_end_matches('/').to_string(),
            max_queues: max_queues.max(1),
            persistent_limit: PERSISTENT_GRANTS_PER_QUEUE,
            direct_io: true,
            zero_copy: true,
            coalesce: crate::coalesce::DEFAULT_ROUNDS,
            merge: false,
            log_rate: (Rate::LOG, LimitClock::real()),
            devices: BTreeMap::new(),
            status_file: None,
            journal_dir: None,
        }
    }

    /// Keeps each queue's crash journal in `dir` (on tmpfs: `/run/sluice/blkback`), so
    /// that a daemon started after this one is killed serves exactly the requests left
    /// unanswered ([`crate::journal`]). Default: none.
    pub fn with_journal_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.journal_dir = Some(dir.into());
        self
    }

    /// Writes per-device request counts to `path` when they change ([`crate::status`]).
    pub fn with_status_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.status_file = Some(crate::status::StatusFile::new(path.into()));
        self
    }

    fn write_status(&mut self) {
        if let Some(f) = &mut self.status_file {
            let now = crate::status::render(self.devices.iter().map(|(p, d)| {
                let s = &d.stats;
                (
                    p.as_str(),
                    s.ok.load(Ordering::Relaxed),
                    s.failed.load(Ordering::Relaxed),
                )
            }));
            if !f.update(now) {
                self.status_file = None;
            }
        }
    }

    /// Whether disks are opened with `O_DIRECT` where the file system or device takes
    /// it (default true; buffered I/O through dom0's page cache otherwise).
    pub fn with_direct_io(mut self, direct: bool) -> Self {
        self.direct_io = direct;
        self
    }

    /// Whether the io_uring engine does I/O straight into persistently mapped guest
    /// pages (default true; false: pooled bounce buffers always).
    pub fn with_zero_copy(mut self, on: bool) -> Self {
        self.zero_copy = on;
        self
    }

    /// Whether the io_uring engine sends a round's contiguous zero-copy reads (or
    /// writes) as one I/O (default false; `src/uring_merge.rs`).
    pub fn with_merge(mut self, on: bool) -> Self {
        self.merge = on;
        self
    }

    /// Notification coalescing of the io_uring engine: an event the frontend asked for
    /// waits for at most `rounds` more completions while other I/O is in flight
    /// ([`crate::coalesce`]; default [`crate::coalesce::DEFAULT_ROUNDS`]; 0: sent at once).
    pub fn with_coalesce(mut self, rounds: u32) -> Self {
        self.coalesce = rounds;
        self
    }

    /// Persistent grants: at most `per_queue` mappings per queue (default
    /// [`PERSISTENT_GRANTS_PER_QUEUE`]); 0 turns the feature off (advertises
    /// `feature-persistent` = 0, grant copy for everything).
    pub fn with_persistent_grants(mut self, per_queue: usize) -> Self {
        self.persistent_limit = per_queue;
        self
    }

    /// The rate limit on log lines a frontend can cause, per device and message class
    /// (default [`Rate::LOG`] on the real clock); what it suppresses is counted and
    /// logged later ("N similar message(s) suppressed").
    pub fn with_log_rate(mut self, rate: Rate, clock: LimitClock) -> Self {
        self.log_rate = (rate, clock);
        self
    }

    /// Statistics of the log rate limit of the device at `backend_path`: lines let
    /// through and lines suppressed (tests).
    pub fn log_counts(&self, backend_path: &str) -> Option<(u64, u64)> {
        self.devices.get(backend_path).map(|d| d.log.counts())
    }

    /// Chooses the I/O engine (default io_uring).
    pub fn with_engine(mut self, engine: IoEngine) -> Self {
        self.engine = engine;
        self
    }

    /// Watches `root` and serves devices until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), XsError> {
        self.xs.watch(&self.root, "vbd")?;
        let xs = self.xs.clone();
        sluice_dom0::xenstore::watch_loop(&*xs, stop, Duration::from_millis(200), |changed| {
            if changed || self.devices.values().any(Device::any_dead) {
                self.reconcile();
            }
            self.write_status();
        })?;
        for d in self.devices.values_mut() {
            d.teardown();
        }
        Ok(())
    }

    /// Statistics of the device at `backend_path` (tests).
    pub fn stats(&self, backend_path: &str) -> Option<Arc<QueueStats>> {
        self.devices.get(backend_path).map(|d| d.stats.clone())
    }

    /// Brings every device in line with xenstore.
    pub fn reconcile(&mut self) {
        let present = sluice_dom0::xenstore::backend_device_dirs(&*self.xs, &self.root);
        for (be, mut d) in sluice_dom0::xenstore::take_removed(&mut self.devices, &present) {
            d.teardown();
            let _ = self.xs.unwatch(&format!("{}/state", d.fe), &be);
            tracing::info!("{}: removed", d.name);
        }
        // New devices first: libxl gives a backend 10 s (`LIBXL_INIT_TIMEOUT`) to reach
        // InitWait, and on a loaded dom0 every xenstore round trip for the devices
        // already served counts against it.
        let (new, known): (Vec<String>, Vec<String>) = present
            .into_iter()
            .partition(|be| !self.devices.contains_key(be));
        for be in new.into_iter().chain(known) {
            if let Err(e) = self.step(&be) {
                tracing::warn!("{be}: {e}");
            }
        }
    }
}
