//! The xenbus side: finds `backend/vbd/<domid>/<devid>` devices, walks the xenbus
//! state machine with each frontend, and runs one [`Queue`] thread per ring.

use crate::disk::Disk;
use crate::persistent::{PersistentGrants, PERSISTENT_GRANTS_PER_QUEUE};
use crate::ring_server::{Queue, QueueStats, MAX_INDIRECT_SEGMENTS};
use sluice_abi::blkif::{BlkifBackRing, VdiskInfo};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::{transaction, XBT_NULL};
use sluice_dom0::{
    EventChannels, EvtchnError, GrantError, GrantMap, GrantMapper, LimitClock, LogLimiter, Rate,
    XenStore, XsError,
};
use std::collections::BTreeMap;
use std::path::Path;
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

    fn write_state(&self, be: &str, dev: &mut Device, state: XenbusState) -> Result<(), XsError> {
        if dev.state != state {
            self.xs.write(
                XBT_NULL,
                &format!("{be}/state"),
                state.xenstore_value().as_bytes(),
            )?;
            tracing::info!("{}: backend state {}", dev.name, state.name());
            dev.state = state;
        }
        Ok(())
    }

    fn fail(&self, be: &str, dev: &mut Device, e: &DeviceError) {
        tracing::error!("{}: {e}; closing the device", dev.name);
        dev.teardown();
        let _ = self
            .xs
            .write(XBT_NULL, &format!("{be}/error"), e.to_string().as_bytes());
        let _ = self.write_state(be, dev, XenbusState::Closing);
    }

    fn step(&mut self, be: &str) -> Result<(), DeviceError> {
        // A device we gave up on whose directory the toolstack wrote anew (state 1:
        // `xl block-attach` after a detach, both seen in one batch of watch events).
        if self.devices.get(be).is_some_and(|d| d.broken)
            && self.state_of(&format!("{be}/state")) == XenbusState::Initialising
        {
            if let Some(mut d) = self.devices.remove(be) {
                d.teardown();
                let _ = self.xs.unwatch(&format!("{}/state", d.fe), be);
            }
        }
        if !self.devices.contains_key(be) {
            // Wait for the toolstack's initial state node before touching the device.
            if self
                .xs
                .read_opt(XBT_NULL, &format!("{be}/state"))?
                .is_none()
            {
                return Ok(());
            }
            let mut dev = self.setup(be)?;
            match self.init_wait(be, &mut dev) {
                Ok(()) => {}
                Err(e) => {
                    self.fail(be, &mut dev, &e);
                    dev.broken = true;
                }
            }
            self.devices.insert(be.to_string(), dev);
        }
        let Some(mut dev) = self.devices.remove(be) else {
            return Ok(());
        };
        let r = self.advance(be, &mut dev);
        if let Err(e) = &r {
            self.fail(be, &mut dev, e);
        }
        self.devices.insert(be.to_string(), dev);
        Ok(())
    }

    /// Reads the toolstack's nodes; returns a device not yet in InitWait.
    fn setup(&self, be: &str) -> Result<Device, DeviceError> {
        let name = be
            .strip_prefix(&self.root)
            .unwrap_or(be)
            .trim_start_matches('/')
            .replace('/', ":");
        let name = format!("vbd {name}");
        let fe = self.need(&format!("{be}/frontend"))?;
        let fe_id = self.number(&format!("{be}/frontend-id"), u16::MAX.into())? as u16;
        if !fe.starts_with(&format!("/local/domain/{fe_id}/")) {
            return Err(DeviceError::Bad {
                path: format!("{be}/frontend"),
                why: format!("{fe:?} is not under domain {fe_id}"),
            });
        }
        self.xs.watch(&format!("{fe}/state"), be)?;
        Ok(Device {
            name,
            fe,
            fe_id,
            disk: None,
            queues: vec![],
            state: XenbusState::Initialising,
            broken: false,
            stats: Arc::default(),
            log: Arc::new(LogLimiter::new(self.log_rate.0, self.log_rate.1.clone())),
            takeover: false,
        })
    }

    fn need(&self, path: &str) -> Result<String, DeviceError> {
        self.xs
            .read_opt(XBT_NULL, path)?
            .ok_or_else(|| DeviceError::Missing(path.into()))
    }

    fn number(&self, path: &str, max: u64) -> Result<u64, DeviceError> {
        let v = self
            .xs
            .read_u64(XBT_NULL, path)?
            .ok_or_else(|| DeviceError::Missing(path.into()))?;
        if v > max {
            return Err(DeviceError::Bad {
                path: path.into(),
                why: format!("{v} exceeds {max}"),
            });
        }
        Ok(v)
    }

    /// Opens the image and publishes it and our features; state InitWait.
    fn init_wait(&self, be: &str, dev: &mut Device) -> Result<(), DeviceError> {
        let params = self.need(&format!("{be}/params"))?;
        let mode = self
            .xs
            .read_opt(XBT_NULL, &format!("{be}/mode"))?
            .unwrap_or_else(|| "w".into());
        let readonly = match mode.as_str() {
            "r" | "ro" => true,
            "w" | "rw" | "w!" => false,
            other => {
                return Err(DeviceError::Bad {
                    path: format!("{be}/mode"),
                    why: format!("unknown mode {other:?}"),
                })
            }
        };
        let disk = Arc::new(Disk::open_with(
            Path::new(params.trim_end_matches('\0')),
            readonly,
            self.direct_io,
        )?);
        let info = if readonly {
            VdiskInfo::READONLY.bits()
        } else {
            0
        };
        let sectors = disk.sectors();
        let max_queues = self.max_queues;
        transaction(&*self.xs, 16, |tx| {
            let w = |k: &str, v: String| self.xs.write(tx, &format!("{be}/{k}"), v.as_bytes());
            w("feature-flush-cache", "1".into())?;
            w("feature-barrier", "1".into())?;
            w(
                "feature-persistent",
                if self.persistent_limit > 0 { "1" } else { "0" }.into(),
            )?;
            w(
                "feature-max-indirect-segments",
                MAX_INDIRECT_SEGMENTS.to_string(),
            )?;
            w("max-ring-page-order", MAX_RING_PAGE_ORDER.to_string())?;
            w("multi-queue-max-queues", max_queues.to_string())?;
            w("feature-discard", if readonly { "0" } else { "1" }.into())?;
            w(
                "discard-granularity",
                disk.physical_sector_size().max(4096).to_string(),
            )?;
            w("discard-alignment", "0".into())?;
            w("discard-secure", "0".into())?;
            w("sectors", sectors.to_string())?;
            // `sectors` stays in 512-byte units whatever the sector size (Linux's
            // blkfront and blkback agree on this; Xen 4.17's blkif.h comment says otherwise).
            w("sector-size", disk.sector_size().to_string())?;
            w(
                "physical-sector-size",
                disk.physical_sector_size().to_string(),
            )?;
            w("info", info.to_string())?;
            Ok(())
        })?;
        tracing::info!(
            "{}: {params} ({sectors} sectors, {}-byte sectors, {}, {}), frontend {} (domain {})",
            dev.name,
            disk.sector_size(),
            if readonly { "read-only" } else { "read-write" },
            if disk.direct() {
                "O_DIRECT"
            } else {
                "buffered"
            },
            dev.fe,
            dev.fe_id
        );
        dev.disk = Some(disk);
        if self.state_of(&format!("{be}/state")) == XenbusState::Connected {
            // Our own earlier run connected this device and died (or was restarted):
            // keep the state the frontend sees and reconnect to its live rings.
            tracing::info!("{}: taking over a connected device", dev.name);
            dev.state = XenbusState::Connected;
            dev.takeover = true;
        } else {
            self.write_state(be, dev, XenbusState::InitWait)?;
        }
        Ok(())
    }

    fn advance(&self, be: &str, dev: &mut Device) -> Result<(), DeviceError> {
        if dev.any_dead() {
            dev.teardown();
            dev.broken = true;
            return Err(DeviceError::Bad {
                path: dev.fe.clone(),
                why: "the frontend broke the ring protocol".into(),
            });
        }
        let online = self
            .xs
            .read_u64(XBT_NULL, &format!("{be}/online"))
            .ok()
            .flatten()
            .unwrap_or(1);
        let be_state = self.state_of(&format!("{be}/state"));
        if be_state == XenbusState::Closing && online == 0 {
            // The toolstack detaches the device (xl block-detach).
            dev.teardown();
            dev.state = XenbusState::Closing;
            self.write_state(be, dev, XenbusState::Closed)?;
            // Detached for good: the toolstack removes the directory next.
            dev.broken = true;
            return Ok(());
        }
        if dev.broken {
            return Ok(());
        }
        match self.state_of(&format!("{}/state", dev.fe)) {
            XenbusState::Initialising | XenbusState::InitWait
                if dev.connected()
                    || matches!(dev.state, XenbusState::Closed | XenbusState::Closing) =>
            {
                // The frontend restarted: offer the device again.
                dev.teardown();
                self.write_state(be, dev, XenbusState::InitWait)?;
            }
            XenbusState::Initialised | XenbusState::Connected
                if !dev.connected()
                    && matches!(dev.state, XenbusState::InitWait | XenbusState::Connected) =>
            {
                self.connect(be, dev)?;
            }
            XenbusState::Closing => {
                dev.teardown();
                self.write_state(be, dev, XenbusState::Closing)?;
            }
            XenbusState::Closed => {
                dev.teardown();
                self.write_state(be, dev, XenbusState::Closed)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn state_of(&self, path: &str) -> XenbusState {
        match self.xs.read_opt(XBT_NULL, path) {
            Ok(Some(s)) => s
                .trim_end_matches('\0')
                .parse()
                .unwrap_or(XenbusState::Unknown),
            _ => XenbusState::Unknown,
        }
    }

    fn connect(&self, be: &str, dev: &mut Device) -> Result<(), DeviceError> {
        let fe = dev.fe.clone();
        let order = self
            .xs
            .read_u64(XBT_NULL, &format!("{fe}/ring-page-order"))?
            .unwrap_or(0);
        if order > MAX_RING_PAGE_ORDER.into() {
            return Err(DeviceError::Bad {
                path: format!("{fe}/ring-page-order"),
                why: format!("{order} exceeds {MAX_RING_PAGE_ORDER}"),
            });
        }
        let nq = self
            .xs
            .read_u64(XBT_NULL, &format!("{fe}/multi-queue-num-queues"))?
            .unwrap_or(1);
        if nq == 0 || nq > self.max_queues.into() {
            return Err(DeviceError::Bad {
                path: format!("{fe}/multi-queue-num-queues"),
                why: format!("{nq} queues (1..={} offered)", self.max_queues),
            });
        }
        if let Some(p) = self.xs.read_opt(XBT_NULL, &format!("{fe}/protocol"))? {
            let p = p.trim_end_matches('\0');
            if p != "x86_64-abi" {
                return Err(DeviceError::Bad {
                    path: format!("{fe}/protocol"),
                    why: format!("ring protocol {p:?} is not supported (x86_64-abi only)"),
                });
            }
        }
        // Both ends must agree (the frontend writes its own node before Initialised);
        // anything but "1" (garbage included) means grant copy.
        let persistent = self.persistent_limit > 0
            && self
                .xs
                .read_opt(XBT_NULL, &format!("{fe}/feature-persistent"))?
                .is_some_and(|v| v.trim_end_matches('\0') == "1");
        let disk = dev
            .disk
            .clone()
            .ok_or_else(|| DeviceError::Missing(format!("{be}/params")))?;
        let mut started = Vec::new();
        for q in 0..nq {
            let dir = if nq == 1 {
                fe.clone()
            } else {
                format!("{fe}/queue-{q}")
            };
            let refs: Vec<GrantRef> = if order == 0 {
                vec![GrantRef(
                    self.number(&format!("{dir}/ring-ref"), u32::MAX.into())? as u32,
                )]
            } else {
                (0..1u32 << order)
                    .map(|i| {
                        self.number(&format!("{dir}/ring-ref{i}"), u32::MAX.into())
                            .map(|v| GrantRef(v as u32))
                    })
                    .collect::<Result<_, _>>()?
            };
            let remote_port =
                EvtchnPort(self.number(&format!("{dir}/event-channel"), u32::MAX.into())? as u32);
            let ring_id = [
                dev.fe_id.into(),
                refs[0].0,
                refs.len() as u32,
                remote_port.0,
            ];
            let journal = self.journal_dir.as_ref().map(|d| {
                let leaf = be.strip_prefix(&self.root).unwrap_or(be).trim_matches('/');
                d.join(format!("vbd-{}-q{q}", leaf.replace('/', "-")))
            });
            let takeover = dev.takeover;
            let mapping = match self.grants.map(DomId(dev.fe_id), &refs, true) {
                Ok(m) => m,
                Err(e) => {
                    stop_all(&mut started);
                    return Err(e.into());
                }
            };
            // Check the ring geometry before spawning.
            if let Err(e) = BlkifBackRing::resume(mapping.mem()) {
                stop_all(&mut started);
                return Err(e.into());
            }
            let bound = (self.open_evtchn)().and_then(|ev| {
                let port = ev.bind_interdomain(DomId(dev.fe_id), remote_port)?;
                Ok((ev, port))
            });
            let (evtchn, port) = match bound {
                Ok(b) => b,
                Err(e) => {
                    stop_all(&mut started);
                    return Err(e.into());
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            let dead = Arc::new(AtomicBool::new(false));
            let name = format!("{} queue {q}", dev.name);
            let engine = self.engine;
            let cache_limit = self.persistent_limit;
            let (zero_copy, coalesce) = (self.zero_copy, self.coalesce);
            let log = dev.log.clone();
            let (grants, stats, stop2, dead2, disk2, domid) = (
                self.grants.clone(),
                dev.stats.clone(),
                stop.clone(),
                dead.clone(),
                disk.clone(),
                dev.fe_id,
            );
            let join = std::thread::Builder::new()
                .name(format!("blkback-q{q}"))
                .spawn(move || {
                    let file = journal.as_deref().and_then(|path| {
                        let slots = BlkifBackRing::resume(mapping.mem()).ok()?.size();
                        crate::journal::open_file(path, slots, takeover, &name)
                    });
                    let Ok((ring, mut ledger)) = crate::journal::attach(
                        mapping.mem(),
                        file.as_ref(),
                        takeover,
                        ring_id,
                        &name,
                    ) else {
                        dead2.store(true, Ordering::Release);
                        return;
                    };
                    let queue = Queue {
                        domid,
                        disk: &disk2,
                        grants: &*grants,
                        evtchn,
                        port,
                        stop: &stop2,
                        name: &name,
                        persistent: persistent.then(|| PersistentGrants::new(domid, cache_limit)),
                        profile: Default::default(),
                        buffers: Default::default(),
                        zero_copy: std::cell::Cell::new(zero_copy),
                        coalesce,
                        log: &log,
                    };
                    let uring = match engine {
                        IoEngine::Uring => match sluice_xen_sys::IoQueue::new(256) {
                            Ok(q) => Some(q),
                            Err(e) => {
                                tracing::warn!(
                                    "{name}: io_uring unavailable ({e}); synchronous I/O"
                                );
                                None
                            }
                        },
                        IoEngine::Sync => None,
                    };
                    let served = match uring {
                        Some(mut io) => queue.serve_async(ring, &stats, &mut io, &mut ledger),
                        None => queue.serve(ring, &stats, &mut ledger),
                    };
                    if let Err(e) = served {
                        tracing::error!("{name}: {e}; disconnecting this device");
                        dead2.store(true, Ordering::Release);
                    }
                    let (allocated, reused) = queue.buffers.counts();
                    tracing::info!(
                        "{name}: profile: {}; buffers: {allocated} allocated, {reused} reused",
                        queue.profile
                    );
                    if let Some(c) = &queue.persistent {
                        let s = c.stats();
                        tracing::info!(
                            "{name}: persistent grants: {} mapped, {} reused, {} purged, \
                             {} copied (cache full), {} fell back to grant copy; unmapping {}",
                            s.mapped,
                            s.hits,
                            s.purged,
                            s.full,
                            s.failed,
                            c.len()
                        );
                    }
                    // Unmaps the persistent grants, then the ring.
                    drop(queue);
                    drop(mapping);
                });
            match join {
                Ok(j) => started.push(QueueThread {
                    stop,
                    dead,
                    join: Some(j),
                }),
                Err(e) => {
                    stop_all(&mut started);
                    return Err(DeviceError::Spawn(e));
                }
            }
        }
        dev.queues = started;
        dev.takeover = false;
        tracing::info!(
            "{}: connected ({nq} queue(s), ring order {order}, {})",
            dev.name,
            if persistent {
                "persistent grants"
            } else {
                "grant copy"
            }
        );
        self.write_state(be, dev, XenbusState::Connected)?;
        Ok(())
    }
}

fn stop_all(started: &mut Vec<QueueThread>) {
    for q in started.iter() {
        q.stop.store(true, Ordering::Release);
    }
    for q in started.iter_mut() {
        if let Some(j) = q.join.take() {
            let _ = j.join();
        }
    }
    started.clear();
}
