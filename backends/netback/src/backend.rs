//! The xenbus side: finds `backend/vif/<domid>/<handle>` devices, creates each one's tap
//! (`vif<domid>.<handle>`), negotiates with the frontend as Linux netback 6.1 does, and
//! runs one [`Queue`] thread per queue.

use crate::profile::NetProfile;
use crate::queue::{Features, Frames, NetStats, Queue};
use sluice_abi::netif::{keys, NetifRxBackRing, NetifTxBackRing};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::{transaction, XBT_NULL};
use sluice_dom0::{
    warn_limited, EventChannels, EvtchnError, GrantError, GrantMap, GrantMapper, LimitClock,
    LogLimiter, Rate, XenStore, XsError,
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

    fn write_state(&self, be: &str, v: &mut Vif<T>, state: XenbusState) -> Result<(), XsError> {
        if v.state != state {
            self.xs.write(
                XBT_NULL,
                &format!("{be}/state"),
                state.xenstore_value().as_bytes(),
            )?;
            if v.log.admit("state").is_some() {
                tracing::info!("{}: backend state {}", v.name, state.name());
            }
            v.state = state;
        }
        Ok(())
    }

    fn fail(&self, be: &str, v: &mut Vif<T>, e: &VifError) {
        // Rate limited: a frontend that resets and fails again in a loop must not grow
        // the log without bound.
        warn_limited!(v.log, "closing", "{}: {e}; closing the vif", v.name);
        v.teardown();
        v.broken = true;
        let _ = self
            .xs
            .write(XBT_NULL, &format!("{be}/error"), e.to_string().as_bytes());
        let _ = self.write_state(be, v, XenbusState::Closing);
    }

    fn step(&mut self, be: &str) -> Result<(), VifError> {
        if self.vifs.get(be).is_some_and(|v| v.broken)
            && self.state_of(&format!("{be}/state")) == XenbusState::Initialising
        {
            // Given up on, then written anew by the toolstack (network-attach).
            if let Some(mut v) = self.vifs.remove(be) {
                v.teardown();
                let _ = self.xs.unwatch(&format!("{}/state", v.fe), be);
            }
        }
        if !self.vifs.contains_key(be) {
            if self
                .xs
                .read_opt(XBT_NULL, &format!("{be}/state"))?
                .is_none()
            {
                return Ok(());
            }
            let mut v = self.setup(be)?;
            if let Err(e) = self.init_wait(be, &mut v) {
                self.fail(be, &mut v, &e);
            }
            self.vifs.insert(be.to_string(), v);
        }
        let Some(mut v) = self.vifs.remove(be) else {
            return Ok(());
        };
        if let Err(e) = self.advance(be, &mut v) {
            self.fail(be, &mut v, &e);
        }
        self.vifs.insert(be.to_string(), v);
        Ok(())
    }

    fn need(&self, path: &str) -> Result<String, VifError> {
        self.xs
            .read_opt(XBT_NULL, path)?
            .map(|s| s.trim_end_matches('\0').to_string())
            .ok_or_else(|| VifError::Missing(path.into()))
    }

    fn number(&self, path: &str, max: u64) -> Result<u64, VifError> {
        let v = self
            .xs
            .read_u64(XBT_NULL, path)?
            .ok_or_else(|| VifError::Missing(path.into()))?;
        if v > max {
            return Err(VifError::Bad {
                path: path.into(),
                why: format!("{v} exceeds {max}"),
            });
        }
        Ok(v)
    }

    /// A frontend feature flag: "1" on, anything else (absent, garbage) off, as Linux's
    /// `xenbus_read_unsigned` with default 0.
    fn flag(&self, path: &str) -> bool {
        matches!(self.xs.read_opt(XBT_NULL, path), Ok(Some(s)) if s.trim_end_matches('\0') == "1")
    }

    fn setup(&self, be: &str) -> Result<Vif<T>, VifError> {
        let rel = be
            .strip_prefix(&self.root)
            .unwrap_or(be)
            .trim_start_matches('/');
        let fe = self.need(&format!("{be}/frontend"))?;
        let fe_id = self.number(&format!("{be}/frontend-id"), u16::MAX.into())? as u16;
        let handle = self.number(&format!("{be}/handle"), 0xffff)?;
        if !fe.starts_with(&format!("/local/domain/{fe_id}/")) {
            return Err(VifError::Bad {
                path: format!("{be}/frontend"),
                why: format!("{fe:?} is not under domain {fe_id}"),
            });
        }
        let ifname = format!("vif{fe_id}.{handle}");
        let name = format!("vif {} ({ifname})", rel.replace('/', ":"));
        self.xs.watch(&format!("{fe}/state"), be)?;
        Ok(Vif {
            name,
            fe,
            fe_id,
            taps: Vec::new(),
            queues: vec![],
            state: XenbusState::Initialising,
            broken: false,
            stats: Arc::default(),
            log: Arc::new(LogLimiter::new(self.log_rate.0, self.log_rate.1.clone())),
        })
    }

    fn ifname(v: &Vif<T>) -> &str {
        ifname_of(&v.name)
    }

    /// Creates the tap, publishes our features; state InitWait.
    fn init_wait(&self, be: &str, v: &mut Vif<T>) -> Result<(), VifError> {
        let tap = (self.open_tap)(Self::ifname(v)).map_err(VifError::Tap)?;
        tap.set_offloads(false, false, false)
            .map_err(|e| VifError::Tap(e.to_string()))?;
        v.taps = vec![Arc::new(tap)];
        let max_queues = self.max_queues;
        transaction(&*self.xs, 16, |tx| {
            let w = |k: &str, val: &str| self.xs.write(tx, &format!("{be}/{k}"), val.as_bytes());
            w(keys::FEATURE_SG, "1")?;
            w(keys::FEATURE_GSO_TCPV4, "1")?;
            w(keys::FEATURE_GSO_TCPV6, "1")?;
            w(keys::FEATURE_IPV6_CSUM_OFFLOAD, "1")?;
            w(keys::FEATURE_RX_COPY, "1")?;
            w("feature-rx-flip", "0")?;
            w(keys::FEATURE_SPLIT_EVENT_CHANNELS, "1")?;
            w(keys::MULTI_QUEUE_MAX_QUEUES, &max_queues.to_string())?;
            w(keys::FEATURE_CTRL_RING, "0")?;
            Ok(())
        })?;
        tracing::info!(
            "{}: tap created, frontend {} (domain {})",
            v.name,
            v.fe,
            v.fe_id
        );
        if self.state_of(&format!("{be}/state")) == XenbusState::Connected {
            // An earlier run of ours connected this vif and went away: keep the state
            // the frontend sees and attach to its live rings at the shared rsp_prod.
            tracing::info!("{}: taking over a connected vif", v.name);
            v.state = XenbusState::Connected;
            if self.hotplug_on_takeover {
                self.run_hotplug(be, v);
            }
        } else {
            self.write_state(be, v, XenbusState::InitWait)?;
        }
        Ok(())
    }

    /// Runs the vif's hotplug script with `online` (its environment as libxl sets it).
    fn run_hotplug(&self, be: &str, v: &Vif<T>) {
        let script = match self.xs.read_opt(XBT_NULL, &format!("{be}/script")) {
            Ok(Some(s)) => s.trim_end_matches('\0').to_string(),
            _ => return,
        };
        if !script.starts_with("/etc/xen/scripts/") || script.contains("..") {
            tracing::warn!("{}: not running hotplug script {script:?}", v.name);
            return;
        }
        let r = std::process::Command::new(&script)
            .arg("online")
            .env("script", &script)
            .env("vif", Self::ifname(v))
            .env("XENBUS_PATH", be)
            .status();
        match r {
            Ok(st) if st.success() => tracing::info!("{}: {script} online: done", v.name),
            Ok(st) => tracing::warn!("{}: {script} online: {st}", v.name),
            Err(e) => tracing::warn!("{}: {script}: {e}", v.name),
        }
    }

    fn advance(&self, be: &str, v: &mut Vif<T>) -> Result<(), VifError> {
        if v.any_dead() {
            return Err(VifError::Bad {
                path: v.fe.clone(),
                why: "the frontend broke the netif protocol".into(),
            });
        }
        let online = self
            .xs
            .read_u64(XBT_NULL, &format!("{be}/online"))
            .ok()
            .flatten()
            .unwrap_or(1);
        if self.state_of(&format!("{be}/state")) == XenbusState::Closing && online == 0 {
            // xl network-detach / domain destruction.
            v.teardown();
            v.state = XenbusState::Closing;
            self.write_state(be, v, XenbusState::Closed)?;
            v.broken = true;
            return Ok(());
        }
        if v.broken {
            // As Linux netback after xenbus_dev_fatal: the frontend's Closed is
            // followed, and from Closed its Initialising gets the vif offered again.
            match self.state_of(&format!("{}/state", v.fe)) {
                XenbusState::Closed => self.write_state(be, v, XenbusState::Closed)?,
                XenbusState::Initialising
                    if v.state == XenbusState::Closed && online == 1 && !v.taps.is_empty() =>
                {
                    let _ = self.xs.rm(XBT_NULL, &format!("{be}/error"));
                    v.broken = false;
                    self.write_state(be, v, XenbusState::InitWait)?;
                }
                _ => {}
            }
            return Ok(());
        }
        match self.state_of(&format!("{}/state", v.fe)) {
            XenbusState::Initialising | XenbusState::InitWait
                if v.connected()
                    || matches!(v.state, XenbusState::Closed | XenbusState::Closing) =>
            {
                v.teardown();
                self.write_state(be, v, XenbusState::InitWait)?;
            }
            XenbusState::Connected
                if !v.connected()
                    && matches!(v.state, XenbusState::InitWait | XenbusState::Connected) =>
            {
                // As Linux netback: connect once the hotplug script put the tap in place.
                let hp = self
                    .xs
                    .read_opt(XBT_NULL, &format!("{be}/hotplug-status"))?;
                if hp.as_deref().map(|s| s.trim_end_matches('\0')) == Some("connected") {
                    self.connect(be, v)?;
                }
            }
            XenbusState::Closing => {
                v.teardown();
                self.write_state(be, v, XenbusState::Closing)?;
            }
            XenbusState::Closed => {
                v.teardown();
                self.write_state(be, v, XenbusState::Closed)?;
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

    fn connect(&self, be: &str, v: &mut Vif<T>) -> Result<(), VifError> {
        let fe = v.fe.clone();
        if !self.flag(&format!("{fe}/{}", keys::REQUEST_RX_COPY)) {
            return Err(VifError::Bad {
                path: format!("{fe}/{}", keys::REQUEST_RX_COPY),
                why: "receive-side flipping is not supported (request-rx-copy must be 1)".into(),
            });
        }
        if !self.flag(&format!("{fe}/{}", keys::FEATURE_RX_NOTIFY)) {
            return Err(VifError::Bad {
                path: format!("{fe}/{}", keys::FEATURE_RX_NOTIFY),
                why: "feature-rx-notify is mandatory".into(),
            });
        }
        let sg = self.flag(&format!("{fe}/{}", keys::FEATURE_SG));
        let features = Features {
            sg,
            gso4: sg && self.flag(&format!("{fe}/{}", keys::FEATURE_GSO_TCPV4)),
            gso6: sg && self.flag(&format!("{fe}/{}", keys::FEATURE_GSO_TCPV6)),
            csum4: !self.flag(&format!("{fe}/{}", keys::FEATURE_NO_CSUM_OFFLOAD)),
            csum6: self.flag(&format!("{fe}/{}", keys::FEATURE_IPV6_CSUM_OFFLOAD)),
        };
        let nq = self
            .xs
            .read_u64(XBT_NULL, &format!("{fe}/{}", keys::MULTI_QUEUE_NUM_QUEUES))?
            .unwrap_or(1);
        if nq == 0 || nq > self.max_queues.into() {
            return Err(VifError::Bad {
                path: format!("{fe}/{}", keys::MULTI_QUEUE_NUM_QUEUES),
                why: format!("{nq} queues (1..={} offered)", self.max_queues),
            });
        }
        // The kernel may give us partial checksums only if the frontend takes both
        // families' (the tap has one switch); TSO needs them.
        let csum = features.csum4 && features.csum6;
        let offloads = (csum, csum && features.gso4, csum && features.gso6);
        let ifname = Self::ifname(v).to_string();
        v.taps.truncate(1);
        for q in 1..nq {
            let t =
                (self.open_tap)(&ifname).map_err(|e| VifError::Tap(format!("queue {q}: {e}")))?;
            v.taps.push(Arc::new(t));
        }
        let first = v
            .taps
            .first()
            .ok_or_else(|| VifError::Tap("no tap".into()))?;
        first
            .set_offloads(offloads.0, offloads.1, offloads.2)
            .map_err(|e| VifError::Tap(e.to_string()))?;
        let mut started = Vec::new();
        for q in 0..nq as usize {
            match self.start_queue(v, q, nq, features) {
                Ok(t) => started.push(t),
                Err(e) => {
                    for t in &started {
                        t.stop.store(true, Ordering::Release);
                    }
                    for mut t in started {
                        if let Some(j) = t.join.take() {
                            let _ = j.join();
                        }
                    }
                    return Err(e);
                }
            }
        }
        v.queues = started;
        tracing::info!(
            "{}: connected ({nq} queue(s), {features:?}, tap offloads csum/tso4/tso6 {offloads:?})",
            v.name
        );
        self.write_state(be, v, XenbusState::Connected)?;
        Ok(())
    }

    fn start_queue(
        &self,
        v: &Vif<T>,
        q: usize,
        nq: u64,
        features: Features,
    ) -> Result<QueueThread, VifError> {
        let dir = if nq == 1 {
            v.fe.clone()
        } else {
            format!("{}/queue-{q}", v.fe)
        };
        let gref = |k: &str| -> Result<GrantRef, VifError> {
            Ok(GrantRef(
                self.number(&format!("{dir}/{k}"), u32::MAX.into())? as u32,
            ))
        };
        let port = |k: &str| -> Result<Option<EvtchnPort>, VifError> {
            let p = format!("{dir}/{k}");
            match self.xs.read_opt(XBT_NULL, &p)? {
                None => Ok(None),
                Some(_) => Ok(Some(EvtchnPort(self.number(&p, u32::MAX.into())? as u32))),
            }
        };
        let tx_ref = gref(keys::TX_RING_REF)?;
        let rx_ref = gref(keys::RX_RING_REF)?;
        let (tx_remote, rx_remote) =
            match (port(keys::EVENT_CHANNEL_TX)?, port(keys::EVENT_CHANNEL_RX)?) {
                (Some(t), Some(r)) => (t, Some(r)),
                (None, None) => (
                    port(keys::EVENT_CHANNEL)?.ok_or_else(|| {
                        VifError::Missing(format!("{dir}/{}", keys::EVENT_CHANNEL))
                    })?,
                    None,
                ),
                _ => {
                    return Err(VifError::Bad {
                        path: dir.clone(),
                        why: "only one of event-channel-tx / event-channel-rx".into(),
                    })
                }
            };
        let domid = DomId(v.fe_id);
        let tx_map = self.grants.map(domid, &[tx_ref], true)?;
        let rx_map = self.grants.map(domid, &[rx_ref], true)?;
        // Attach at the shared rsp_prod (a fresh ring: 0): a restarted daemon serves what
        // the frontend published while none ran, and answers nothing twice.
        NetifTxBackRing::resume(tx_map.mem())?;
        NetifRxBackRing::resume(rx_map.mem())?;
        let evtchn = (self.open_evtchn)()?;
        let tx_port = evtchn.bind_interdomain(domid, tx_remote)?;
        let rx_port = match rx_remote {
            Some(r) => evtchn.bind_interdomain(domid, r)?,
            None => tx_port,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let name = format!("{} queue {q}", v.name);
        let tx_by_map = self.tx_map;
        let uring = self.uring;
        let (grants, stats, log, tap, stop2, dead2) = (
            self.grants.clone(),
            v.stats.clone(),
            v.log.clone(),
            v.taps[q].clone(),
            stop.clone(),
            dead.clone(),
        );
        let join = std::thread::Builder::new()
            .name(format!("netback-q{q}"))
            .spawn(move || {
                let (Ok(tx), Ok(rx)) = (
                    NetifTxBackRing::resume(tx_map.mem()),
                    NetifRxBackRing::resume(rx_map.mem()),
                ) else {
                    dead2.store(true, Ordering::Release);
                    return;
                };
                let profile = NetProfile::default();
                let queue = Queue {
                    name: &name,
                    domid,
                    grants: &*grants,
                    evtchn,
                    tx_port,
                    rx_port,
                    tap: &*tap,
                    features,
                    stop: &stop2,
                    log: &log,
                    stats: &stats,
                    profile: &profile,
                    tx_map: tx_by_map,
                    uring,
                };
                if let Err(e) = queue.serve(tx, rx) {
                    warn_limited!(log, "disconnect", "{name}: {e}; disconnecting this vif");
                    dead2.store(true, Ordering::Release);
                }
                if log.admit("profile").is_some() {
                    tracing::info!("{name}: profile: {profile}");
                }
                drop(queue);
                drop((tx_map, rx_map));
            })
            .map_err(VifError::Spawn)?;
        Ok(QueueThread {
            stop,
            dead,
            join: Some(join),
        })
    }
}
