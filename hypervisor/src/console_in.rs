//! Typed serial input for the domains' PV consoles (hvc0), with Xen's switch key:
//! Ctrl-A three times in a row moves input to the next domain that has a console
//! (in domain order, wrapping; the log says which). Fewer than three Ctrl-As followed
//! by another key reach the domain as typed, as in Xen's serial_rx. Until the first
//! switch, and when the chosen domain is gone, input goes to the first domain with a
//! console. A debug key, as Xen's 'q': Ctrl-] then `q` asks for a dump of the vCPUs'
//! and the assigned devices' interrupt state (crate::sched); Ctrl-] then any other key
//! reaches the domain as typed.

use crate::domain::Domain;
use crate::evtchn::Port;
use crate::hvm::{console_input, CONSOLE_PORT};

/// Ctrl-A.
pub const SWITCH_CODE: u8 = 0x01;
/// Ctrl-]: the next key is a debug key.
pub const DEBUG_CODE: u8 = 0x1D;
/// The debug key that dumps the interrupt state.
pub const DUMP_KEY: u8 = b'q';
/// Bytes taken per call at most (the caller's batch).
pub const BATCH: usize = 64;

/// Where typed input goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleIn {
    /// The domain id chosen by the switch key (None: the first with a console).
    pub target: Option<u16>,
    /// Ctrl-As in a row held back so far (0..=2).
    held: u8,
    /// A Ctrl-] held back: the next key may be a debug key.
    debug: bool,
}

fn has_console(d: &Domain) -> bool {
    d.evtchn[CONSOLE_PORT as usize] == Port::Console && !d.dying
}

impl ConsoleIn {
    /// The index of the domain input goes to now.
    fn current(&self, domains: &[Option<Domain>]) -> Option<usize> {
        let with = |i: &usize| domains[*i].as_ref().is_some_and(has_console);
        let chosen = (0..domains.len())
            .filter(with)
            .find(|&i| domains[i].as_ref().map(|d| d.id) == self.target);
        chosen.or_else(|| (0..domains.len()).find(with))
    }

    /// The switch key: the next domain with a console after the current one.
    fn switch(&mut self, domains: &[Option<Domain>]) {
        let n = domains.len();
        let from = self.current(domains).unwrap_or(n - 1);
        let next = (1..=n)
            .map(|s| (from + s) % n)
            .find(|&i| domains[i].as_ref().is_some_and(has_console));
        if let Some(d) = next.and_then(|i| domains[i].as_ref()) {
            self.target = Some(d.id);
            crate::log!(
                "console: serial input now goes to domain {} ({}) (Ctrl-A three times switches)",
                d.id,
                d.name()
            );
        }
    }

    /// Takes typed `bytes` (at most [`BATCH`]): switch keys act, the rest goes to the
    /// chosen domain's console ring (what does not fit is dropped, as a full UART).
    /// Returns how many dumps the debug key asked for.
    pub fn feed(&mut self, domains: &mut [Option<Domain>], bytes: &[u8]) -> usize {
        let bytes = &bytes[..bytes.len().min(BATCH)];
        // Each byte, plus at most two Ctrl-As or one Ctrl-] held back from before.
        let mut out = [0u8; BATCH + 2];
        let mut n = 0;
        let mut dumps = 0;
        for &b in bytes {
            if core::mem::take(&mut self.debug) {
                if b == DUMP_KEY {
                    dumps += 1;
                    continue;
                }
                out[n] = DEBUG_CODE;
                n += 1;
            }
            if b == DEBUG_CODE {
                for _ in 0..core::mem::take(&mut self.held) {
                    out[n] = SWITCH_CODE;
                    n += 1;
                }
                self.debug = true;
                continue;
            }
            if b == SWITCH_CODE {
                self.held += 1;
                if self.held == 3 {
                    self.held = 0;
                    self.deliver(domains, &out[..n]);
                    n = 0;
                    self.switch(domains);
                }
                continue;
            }
            for _ in 0..core::mem::take(&mut self.held) {
                out[n] = SWITCH_CODE;
                n += 1;
            }
            out[n] = b;
            n += 1;
        }
        self.deliver(domains, &out[..n]);
        dumps
    }

    fn deliver(&self, domains: &mut [Option<Domain>], bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(d) = self.current(domains).and_then(|i| domains[i].as_mut()) {
            console_input(d, bytes);
        }
    }
}
