//! Finds guests with a console in xenstore, maps each console page, binds its event
//! channel, and copies output to a pty and a log file and pty input back. One thread
//! per guest; nothing a guest or a pty reader does can block another guest.

use crate::buffer::DropOldest;
use crate::log::{CappedLog, DEFAULT_LOG_MAX_BYTES};
use crate::pty::Pty;
use crate::pump::{Pump, PumpCounters};
use crate::ring::ConsoleRing;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_dom0::xenstore::XBT_NULL;
use sluice_dom0::{
    EventChannels, EvtchnError, GrantMap, GrantMapper, LimitClock, LogLimiter, Rate, Throttle,
    XenStore, XsError,
};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Grant reference the toolstack reserves for the console page (`GNTTAB_RESERVED_CONSOLE`).
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Bytes of unread output kept per guest for a stalled pty reader.
pub const PTY_BUFFER: usize = 64 * 1024;
/// Turns that service a guest's ring: 30 at once, then one per 200/30 ms (xenconsoled's
/// `RATE_LIMIT_ALLOWANCE` of 30 events per 200 ms `RATE_LIMIT_PERIOD`); with at most
/// one ring (2 KiB) per turn, up to about 300 KiB/s of console output per guest.
pub const WAKE_RATE: Rate = Rate {
    burst: 30,
    every: Duration::from_nanos(200_000_000 / 30),
};

/// Each guest's console counters, by domain (tests, statistics).
pub type CounterBoard = Mutex<BTreeMap<u16, Arc<PumpCounters>>>;
/// Each secondary console's counters, by (domain, console number).
pub type SecondaryBoard = Mutex<BTreeMap<(u16, u32), Arc<PumpCounters>>>;

/// Why a guest's console could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Xenstore failed or holds garbage.
    #[error(transparent)]
    Xs(#[from] XsError),
    /// The console page could not be mapped.
    #[error(transparent)]
    Grant(#[from] sluice_dom0::GrantError),
    /// The event channel could not be bound.
    #[error(transparent)]
    Evtchn(#[from] EvtchnError),
    /// The pty or log file failed.
    #[error("{0}: {1}")]
    Io(&'static str, io::Error),
}

/// What [`ConsoleBackend::serve`] needs to know of one console.
pub(crate) struct Console {
    pub(crate) domid: u16,
    pub(crate) gref: GrantRef,
    pub(crate) port: u32,
    pub(crate) name: String,
    pub(crate) log_file: String,
    pub(crate) tty_node: String,
}

/// A served console: its thread and the flag that stops it.
pub(crate) struct Guest {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl Guest {
    /// Stops the thread and waits for it (the page is unmapped when it returns).
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// The console backend.
pub struct ConsoleBackend<S, G, F> {
    pub(crate) xs: Arc<S>,
    grants: Arc<G>,
    open_evtchn: F,
    log_dir: Option<PathBuf>,
    guests: BTreeMap<u16, Guest>,
    /// Secondary consoles served, by (domain, console number).
    pub(crate) secondary: BTreeMap<(u16, u32), Guest>,
    /// Secondary consoles that failed; retried once their frontend starts again.
    pub(crate) failed_secondary: Vec<(u16, u32)>,
    pub(crate) secondary_counters: Arc<SecondaryBoard>,
    /// Domains whose console failed; not retried until they go away.
    failed: Vec<u16>,
    /// Cap of each log file (0: none).
    log_max_bytes: u64,
    /// Per-guest budget of turns that service the ring.
    wake_rate: (Rate, LimitClock),
    /// Per-guest log line rate limit.
    log_rate: (Rate, LimitClock),
    counters: Arc<CounterBoard>,
}

impl<S, G, F, E> ConsoleBackend<S, G, F>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    G::Mapping: 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
{
    /// A backend writing logs to `log_dir/guest-<domid>.log` (if given).
    pub fn new(xs: Arc<S>, grants: Arc<G>, open_evtchn: F, log_dir: Option<PathBuf>) -> Self {
        Self {
            xs,
            grants,
            open_evtchn,
            log_dir,
            guests: BTreeMap::new(),
            failed: vec![],
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            wake_rate: (WAKE_RATE, LimitClock::real()),
            log_rate: (Rate::LOG, LimitClock::real()),
            counters: Arc::default(),
            secondary: BTreeMap::new(),
            failed_secondary: vec![],
            secondary_counters: Arc::default(),
        }
    }

    /// Caps each guest's log file at `bytes` (rotated to `guest-<domid>.log.1` beyond
    /// it; default [`DEFAULT_LOG_MAX_BYTES`]; 0: no cap).
    pub fn with_log_max_bytes(mut self, bytes: u64) -> Self {
        self.log_max_bytes = bytes;
        self
    }

    /// The per-guest budget of turns that service its ring (default [`WAKE_RATE`]).
    pub fn with_wake_rate(mut self, rate: Rate, clock: LimitClock) -> Self {
        self.wake_rate = (rate, clock);
        self
    }

    /// The per-guest rate limit on log lines (default [`Rate::LOG`]).
    pub fn with_log_rate(mut self, rate: Rate, clock: LimitClock) -> Self {
        self.log_rate = (rate, clock);
        self
    }

    /// Each guest's counters (shared: valid while the backend runs elsewhere).
    pub fn counters(&self) -> Arc<CounterBoard> {
        self.counters.clone()
    }

    /// Each secondary console's counters.
    pub fn secondary_counters(&self) -> Arc<SecondaryBoard> {
        self.secondary_counters.clone()
    }

    /// Serves consoles until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), XsError> {
        self.xs.watch("@introduceDomain", "introduce")?;
        self.xs.watch("@releaseDomain", "release")?;
        self.xs.watch("/local/domain", "domains")?;
        let mut tick = 0u32;
        let xs = self.xs.clone();
        sluice_dom0::xenstore::watch_loop(&*xs, stop, Duration::from_millis(250), |changed| {
            tick += 1;
            if changed || tick.is_multiple_of(8) {
                self.reconcile();
            }
        })?;
        for g in self.guests.values_mut() {
            g.stop.store(true, Ordering::Release);
            if let Some(j) = g.join.take() {
                let _ = j.join();
            }
        }
        for (_, g) in std::mem::take(&mut self.secondary) {
            g.stop();
        }
        Ok(())
    }

    /// Starts consoles of new domains, stops those of domains that are gone.
    pub fn reconcile(&mut self) {
        let doms: Vec<u16> = match self.xs.directory(XBT_NULL, "/local/domain") {
            Ok(d) => d
                .iter()
                .filter_map(|s| s.parse().ok())
                .filter(|&d| d != 0)
                .collect(),
            Err(_) => return,
        };
        let gone: Vec<u16> = self
            .guests
            .keys()
            .filter(|d| !doms.contains(d))
            .copied()
            .collect();
        for d in gone {
            if let Some(mut g) = self.guests.remove(&d) {
                g.stop.store(true, Ordering::Release);
                if let Some(j) = g.join.take() {
                    let _ = j.join();
                }
                tracing::info!("domain {d}: console closed");
            }
        }
        self.failed.retain(|d| doms.contains(d));
        for &d in &doms {
            if self.guests.contains_key(&d) || self.failed.contains(&d) {
                continue;
            }
            match self.start(d) {
                Ok(Some(g)) => {
                    self.guests.insert(d, g);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("domain {d}: console not served: {e}");
                    self.failed.push(d);
                }
            }
        }
        self.reconcile_secondary(&doms);
    }

    fn start(&self, domid: u16) -> Result<Option<Guest>, ConsoleError> {
        let base = format!("/local/domain/{domid}/console");
        let (Some(_ring_ref), Some(port)) = (
            self.xs.read_u64(XBT_NULL, &format!("{base}/ring-ref"))?,
            self.xs.read_u64(XBT_NULL, &format!("{base}/port"))?,
        ) else {
            return Ok(None); // not built yet
        };
        let port = u32::try_from(port).map_err(|_| XsError::NotANumber {
            path: format!("{base}/port"),
            value: port.to_string(),
        })?;
        let (guest, counters) = self.serve(Console {
            domid,
            gref: GrantRef(GNTTAB_RESERVED_CONSOLE),
            port,
            name: format!("domain {domid}"),
            log_file: format!("guest-{domid}.log"),
            tty_node: format!("{base}/tty"),
        })?;
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domid, counters);
        Ok(Some(guest))
    }

    /// Maps a console page, binds its channel, opens its pty and log, publishes the
    /// pty in `tty_node` and starts its thread: the same for console 0 and the
    /// secondary consoles (same budgets, same rate-limited warnings).
    pub(crate) fn serve(&self, c: Console) -> Result<(Guest, Arc<PumpCounters>), ConsoleError> {
        let domid = c.domid;
        let mapping = self.grants.map(DomId(domid), &[c.gref], true)?;
        let evtchn = (self.open_evtchn)()?;
        let local = evtchn.bind_interdomain(DomId(domid), EvtchnPort(c.port))?;
        let pty = Pty::open().map_err(|e| ConsoleError::Io("opening a pty", e))?;
        let log = match &self.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| ConsoleError::Io("log directory", e))?;
                Some(
                    CappedLog::open(dir.join(&c.log_file), self.log_max_bytes)
                        .map_err(|e| ConsoleError::Io("log file", e))?,
                )
            }
            None => None,
        };
        self.xs.write(XBT_NULL, &c.tty_node, pty.path.as_bytes())?;
        tracing::info!("{}: console on {}", c.name, pty.path);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let counters = Arc::new(PumpCounters::default());
        let throttle = Throttle::new(self.wake_rate.0, self.wake_rate.1.clone());
        let log_limit = LogLimiter::new(self.log_rate.0, self.log_rate.1.clone());
        let counters2 = counters.clone();
        let name = c.name;
        let join = std::thread::Builder::new()
            .name(format!("console-{domid}"))
            .spawn(move || {
                let mut pump = Pump {
                    name,
                    evtchn,
                    port: local,
                    pty,
                    log,
                    pending: DropOldest::new(PTY_BUFFER),
                    reported_drops: 0,
                    throttle,
                    log_limit,
                    counters: counters2,
                };
                if let Err(e) = pump.run(ConsoleRing::new(mapping.mem()), &stop2) {
                    tracing::error!("{}: console stopped: {e}", pump.name);
                }
                drop(mapping);
            })
            .map_err(|e| ConsoleError::Io("spawning a thread", e))?;
        Ok((
            Guest {
                stop,
                join: Some(join),
            },
            counters,
        ))
    }
}
