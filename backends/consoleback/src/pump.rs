//! One guest's console thread: output ring -> log file and pty, pty -> input ring.
//!
//! Bounded work, whatever the guest does: each turn of the loop first blocks (on the
//! guest's event channel, or a short timeout that also polls the pty), then takes at
//! most one ring's worth of output (2 KiB). Turns that service the ring are rate limited
//! per guest by a [`Throttle`] (as xenconsoled's 30 events per 200 ms): beyond it the
//! event channel stays masked, so the guest's notifications wake nothing, and the thread
//! sleeps until the next turn is due. A guest that writes and notifies without end thus
//! costs a bounded number of wakeups per second and at least its ring's fill per read;
//! every guest has its own thread and budget, so one cannot starve another.

use crate::buffer::DropOldest;
use crate::log::CappedLog;
use crate::pty::Pty;
use crate::ring::ConsoleRing;
use sluice_abi::types::EvtchnPort;
use sluice_dom0::{warn_limited, EventChannels, LogLimiter, Throttle};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for the guest before the pty is polled again.
pub const IDLE_POLL: Duration = Duration::from_millis(20);

/// What one guest's console thread did (tests, statistics).
#[derive(Debug, Default)]
pub struct PumpCounters {
    /// Turns of the loop (each one blocked first).
    pub turns: AtomicU64,
    /// Turns woken by the guest's event channel.
    pub wakeups: AtomicU64,
    /// Turns that serviced the ring (each took a cell of the throttle's budget).
    pub serviced: AtomicU64,
    /// Turns that took output from the ring (at most one ring's worth each).
    pub reads: AtomicU64,
    /// Output bytes taken.
    pub bytes: AtomicU64,
    /// Turns the throttle kept from servicing the ring.
    pub throttled: AtomicU64,
    /// Times the log file was rotated.
    pub rotations: AtomicU64,
    /// Warnings about this guest logged, and suppressed by the log rate limit.
    pub log_lines: AtomicU64,
    /// See `log_lines`.
    pub log_suppressed: AtomicU64,
}

impl PumpCounters {
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One guest's console.
pub(crate) struct Pump<E> {
    /// `domain <d>` or `domain <d> console <n>`, for messages.
    pub(crate) name: String,
    pub(crate) evtchn: E,
    pub(crate) port: EvtchnPort,
    pub(crate) pty: Pty,
    pub(crate) log: Option<CappedLog>,
    pub(crate) pending: DropOldest,
    pub(crate) reported_drops: u64,
    pub(crate) throttle: Throttle,
    pub(crate) log_limit: LogLimiter,
    pub(crate) counters: Arc<PumpCounters>,
}

impl<E: EventChannels> Pump<E> {
    /// Serves the console until `stop` is set, or the guest breaks its ring (Err).
    pub fn run(&mut self, ring: ConsoleRing<'_>, stop: &AtomicBool) -> Result<(), String> {
        let mut out = Vec::new();
        let mut ports = Vec::new();
        // Ports read from the event channel and left masked until the ring is serviced.
        let mut masked: Vec<EvtchnPort> = Vec::new();
        let mut input = [0u8; 1024];
        let mut held_input: Vec<u8> = Vec::new();
        let mut timeout = IDLE_POLL;
        while !stop.load(Ordering::Acquire) {
            // Block first: for the guest, for the pty poll, or until the throttle
            // allows the next turn (the port is masked then, so only time wakes us).
            let signalled = self.evtchn.wait(Some(timeout)).map_err(|e| e.to_string())?;
            PumpCounters::bump(&self.counters.turns, 1);
            if signalled {
                PumpCounters::bump(&self.counters.wakeups, 1);
                ports.clear();
                self.evtchn
                    .read_pending(&mut ports)
                    .map_err(|e| e.to_string())?;
                for &p in &ports {
                    if !masked.contains(&p) {
                        masked.push(p);
                    }
                }
            }
            timeout = IDLE_POLL;
            // Only turns with something to do take a cell of the budget.
            let due = signalled
                || !masked.is_empty()
                || ring.output_pending().map_err(|e| e.to_string())? > 0;
            match if due { self.throttle.admit() } else { Ok(()) } {
                Ok(()) if !due => {}
                Ok(()) => {
                    PumpCounters::bump(&self.counters.serviced, 1);
                    // Output: guest -> log + pty buffer, one ring's worth at most.
                    out.clear();
                    let n = ring.take_output(&mut out).map_err(|e| e.to_string())?;
                    if n > 0 {
                        PumpCounters::bump(&self.counters.reads, 1);
                        PumpCounters::bump(&self.counters.bytes, n as u64);
                        self.write_log(&out);
                        self.pending.push(&out);
                        self.evtchn.notify(self.port).map_err(|e| e.to_string())?;
                    }
                    for p in masked.drain(..) {
                        self.evtchn.unmask(p).map_err(|e| e.to_string())?;
                    }
                }
                Err(wait) => {
                    PumpCounters::bump(&self.counters.throttled, 1);
                    timeout = wait.clamp(Duration::from_millis(1), IDLE_POLL);
                }
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
        }
        self.log_limit.report(&self.name, true);
        Ok(())
    }

    fn write_log(&mut self, out: &[u8]) {
        let Some(log) = &mut self.log else {
            return;
        };
        let before = log.rotations();
        if let Err(e) = log.write(out) {
            tracing::warn!("{}: console log: {e}", self.name);
            self.log = None;
            return;
        }
        PumpCounters::bump(&self.counters.rotations, log.rotations() - before);
    }

    /// Writes buffered output to the pty without blocking.
    fn flush_pty(&mut self) {
        while !self.pending.is_empty() {
            match self.pty.master.write(self.pending.front()) {
                Ok(0) => break,
                Ok(k) => self.pending.consume(k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    warn_limited!(self.log_limit, "pty write", "{}: pty write: {e}", self.name);
                    break;
                }
            }
        }
        if self.pending.dropped() > self.reported_drops {
            warn_limited!(
                self.log_limit,
                "pty stalled",
                "{}: pty reader stalled, {} byte(s) of console output dropped so far",
                self.name,
                self.pending.dropped()
            );
            self.reported_drops = self.pending.dropped();
        }
        let (lines, suppressed) = self.log_limit.counts();
        self.counters.log_lines.store(lines, Ordering::Relaxed);
        self.counters
            .log_suppressed
            .store(suppressed, Ordering::Relaxed);
    }
}
