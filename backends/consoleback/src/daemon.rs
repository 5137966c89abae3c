//! Finds guests with a console in xenstore, maps each console page, binds its event
//! channel, and copies output to a pty and a log file and pty input back. One thread
//! per guest; nothing a guest or a pty reader does can block another guest.

use crate::buffer::DropOldest;
use crate::pty::Pty;
use crate::ring::ConsoleRing;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_dom0::xenstore::XBT_NULL;
use sluice_dom0::{EventChannels, EvtchnError, GrantMap, GrantMapper, XenStore, XsError};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Grant reference the toolstack reserves for the console page (`GNTTAB_RESERVED_CONSOLE`).
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Bytes of unread output kept per guest for a stalled pty reader.
pub const PTY_BUFFER: usize = 64 * 1024;

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

struct Guest {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

/// The console backend.
pub struct ConsoleBackend<S, G, F> {
    xs: Arc<S>,
    grants: Arc<G>,
    open_evtchn: F,
    log_dir: Option<PathBuf>,
    guests: BTreeMap<u16, Guest>,
    /// Domains whose console failed; not retried until they go away.
    failed: Vec<u16>,
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
        }
    }

    /// Serves consoles until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), XsError> {
        self.xs.watch("@introduceDomain", "introduce")?;
        self.xs.watch("@releaseDomain", "release")?;
        self.xs.watch("/local/domain", "domains")?;
        let mut tick = 0u32;
        while !stop.load(Ordering::Acquire) {
            let mut changed = false;
            while self
                .xs
                .next_watch_event(if changed {
                    Duration::ZERO
                } else {
                    Duration::from_millis(250)
                })?
                .is_some()
            {
                changed = true;
            }
            tick += 1;
            if changed || tick.is_multiple_of(8) {
                self.reconcile();
            }
        }
        for g in self.guests.values_mut() {
            g.stop.store(true, Ordering::Release);
            if let Some(j) = g.join.take() {
                let _ = j.join();
            }
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
        for d in doms {
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
        let mapping = self
            .grants
            .map(DomId(domid), &[GrantRef(GNTTAB_RESERVED_CONSOLE)], true)?;
        let evtchn = (self.open_evtchn)()?;
        let local = evtchn.bind_interdomain(DomId(domid), EvtchnPort(port))?;
        let pty = Pty::open().map_err(|e| ConsoleError::Io("opening a pty", e))?;
        let log = match &self.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| ConsoleError::Io("log directory", e))?;
                Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join(format!("guest-{domid}.log")))
                        .map_err(|e| ConsoleError::Io("log file", e))?,
                )
            }
            None => None,
        };
        self.xs
            .write(XBT_NULL, &format!("{base}/tty"), pty.path.as_bytes())?;
        tracing::info!("domain {domid}: console on {}", pty.path);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let join = std::thread::Builder::new()
            .name(format!("console-{domid}"))
            .spawn(move || {
                let mut pump = Pump {
                    domid,
                    evtchn,
                    port: local,
                    pty,
                    log,
                    pending: DropOldest::new(PTY_BUFFER),
                    reported_drops: 0,
                };
                if let Err(e) = pump.run(ConsoleRing::new(mapping.mem()), &stop2) {
                    tracing::error!("domain {domid}: console stopped: {e}");
                }
                drop(mapping);
            })
            .map_err(|e| ConsoleError::Io("spawning a thread", e))?;
        Ok(Some(Guest {
            stop,
            join: Some(join),
        }))
    }
}

struct Pump<E> {
    domid: u16,
    evtchn: E,
    port: EvtchnPort,
    pty: Pty,
    log: Option<File>,
    pending: DropOldest,
    reported_drops: u64,
}

impl<E: EventChannels> Pump<E> {
    fn run(&mut self, ring: ConsoleRing<'_>, stop: &AtomicBool) -> Result<(), String> {
        let mut out = Vec::new();
        let mut ports = Vec::new();
        let mut input = [0u8; 1024];
        let mut held_input: Vec<u8> = Vec::new();
        while !stop.load(Ordering::Acquire) {
            // Output: guest -> log + pty buffer.
            out.clear();
            let n = ring.take_output(&mut out).map_err(|e| e.to_string())?;
            if n > 0 {
                if let Some(log) = &mut self.log {
                    if let Err(e) = log.write_all(&out) {
                        tracing::warn!("domain {}: console log: {e}", self.domid);
                        self.log = None;
                    }
                }
                self.pending.push(&out);
                self.evtchn.notify(self.port).map_err(|e| e.to_string())?;
            }
            self.flush_pty();
            // Input: pty -> guest (what does not fit waits for the guest to read).
            if held_input.is_empty() {
                match self.pty.master.read(&mut input) {
                    Ok(k) => held_input.extend_from_slice(&input[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {}
                    Err(e) => return Err(format!("pty read: {e}")),
                }
            }
            if !held_input.is_empty() {
                let k = ring.give_input(&held_input).map_err(|e| e.to_string())?;
                if k > 0 {
                    held_input.drain(..k);
                    self.evtchn.notify(self.port).map_err(|e| e.to_string())?;
                }
            }
            // Sleep until the guest signals, briefly (the pty is polled on each turn).
            if n == 0
                && self
                    .evtchn
                    .wait(Some(Duration::from_millis(20)))
                    .map_err(|e| e.to_string())?
            {
                ports.clear();
                self.evtchn
                    .read_pending(&mut ports)
                    .map_err(|e| e.to_string())?;
                for &p in &ports {
                    self.evtchn.unmask(p).map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Writes buffered output to the pty without blocking.
    fn flush_pty(&mut self) {
        while !self.pending.is_empty() {
            match self.pty.master.write(self.pending.front()) {
                Ok(0) => break,
                Ok(k) => self.pending.consume(k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("domain {}: pty write: {e}", self.domid);
                    break;
                }
            }
        }
        if self.pending.dropped() > self.reported_drops {
            tracing::warn!(
                "domain {}: pty reader stalled, {} byte(s) of console output dropped so far",
                self.domid,
                self.pending.dropped()
            );
            self.reported_drops = self.pending.dropped();
        }
    }
}
