//! The domain's console through the hypercall (CONSOLEIO_write): bounded chunks per
//! entry with continuations, a per-domain token-bucket rate ([`ConsoleRate`]) past which
//! bytes are dropped (their pages still checked), and the line buffer that turns a
//! domain's bytes into `(dN)` log lines.

use super::Progress;
use crate::domain::Domain;
use sluice_abi::hypercall::{ConsoleIo, XenErrno};

/// Console bytes copied (and printed, within the rate) per entry.
const CONSOLE_CHUNK: u64 = 1024;
/// Console bytes skipped per entry once over the rate: only their pages are checked.
const CONSOLE_SKIP_CHUNK: u64 = 64 * 4096;
/// Console output rate per domain (token bucket): a burst of 32 KiB, then 8 KiB/s
/// (a 115200-baud serial line carries about 11 KiB/s); the rest is dropped, counted.
const CONSOLE_BURST: u64 = 32 * 1024;
const CONSOLE_RATE: u64 = 8 * 1024;

/// A domain's console output budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleRate {
    tokens: u64,
    last_ns: u64,
    started: bool,
    pub printed: u64,
    pub dropped: u64,
}

impl ConsoleRate {
    /// Adds the budget earned since the last refill (at most the burst).
    fn refill(&mut self, now: u64) {
        if !self.started {
            self.started = true;
            self.tokens = CONSOLE_BURST;
            self.last_ns = now;
            return;
        }
        let dt = now.saturating_sub(self.last_ns);
        let add = (dt as u128 * CONSOLE_RATE as u128 / 1_000_000_000) as u64;
        if add > 0 {
            self.tokens = (self.tokens + add).min(CONSOLE_BURST);
            self.last_ns = now;
        }
    }
    /// True when no byte may print at `now`.
    fn over(&mut self, now: u64) -> bool {
        self.refill(now);
        self.tokens == 0
    }
    /// Takes up to `n` bytes of budget; returns how many may print (the rest dropped).
    pub(crate) fn take(&mut self, now: u64, n: u64) -> u64 {
        self.refill(now);
        let k = n.min(self.tokens);
        self.tokens -= k;
        self.printed += k;
        self.dropped += n - k;
        k
    }
}

/// CONSOLEIO_write, every domain (as Xen debug builds; release builds allow only the
/// hardware/console domain, and the test guests speak only through it): at most
/// [`CONSOLE_CHUNK`] bytes per entry, then a continuation (cmd, count left, buffer
/// advanced: Xen's "iih"); bytes over the domain's rate are dropped (their pages still
/// checked, so a bad buffer is EFAULT at any rate). As Xen, the bytes before a fault
/// are printed.
pub(super) fn console_io(
    d: &mut Domain,
    cmd: u64,
    count: u64,
    buf: u64,
) -> Result<Progress, XenErrno> {
    match u32::try_from(cmd).ok().and_then(ConsoleIo::from_raw) {
        Some(ConsoleIo::Write) => {
            // Like Xen, a negative count is refused.
            let count = i32::try_from(count).map_err(|_| XenErrno::Einval)?;
            if count < 0 {
                return Err(XenErrno::Einval);
            }
            let count = count as u64;
            if count == 0 {
                return Ok(Progress::Done(0));
            }
            let reachable = |d: &Domain, gva: u64| {
                d.gva_to_gpa(gva)
                    .and_then(|gpa| d.gpa_to_hpa(gpa).ok_or(XenErrno::Efault))
                    .is_ok()
            };
            let now = d.clock.now_ns();
            if d.console_rate.over(now) {
                // Over the rate: skip (up to a bounded run of pages), checking each.
                let n = count.min(CONSOLE_SKIP_CHUNK);
                let mut page = buf & !0xFFF;
                while page < buf.wrapping_add(n) {
                    if !reachable(d, page) {
                        return Err(XenErrno::Efault);
                    }
                    page = page.checked_add(4096).ok_or(XenErrno::Efault)?;
                }
                d.console_rate.dropped += n;
                if n < count {
                    return Ok(Progress::Preempted([cmd, count - n, buf.wrapping_add(n)]));
                }
                return Ok(Progress::Done(0));
            }
            // The reachable prefix of this chunk is printed (within the rate); a fault
            // after it ends the write with EFAULT.
            let n = count.min(CONSOLE_CHUNK);
            let mut valid = 0;
            while valid < n && reachable(d, buf.wrapping_add(valid)) {
                valid = (valid + 4096 - (buf.wrapping_add(valid) & 0xFFF)).min(n);
            }
            let mut chunk = [0u8; CONSOLE_CHUNK as usize];
            let bytes = &mut chunk[..valid as usize];
            d.copy_from_guest(buf, bytes)?;
            let print = d.console_rate.take(now, valid);
            for &b in &bytes[..print as usize] {
                console_byte(d, b);
            }
            if valid < n {
                return Err(XenErrno::Efault);
            }
            if n < count {
                return Ok(Progress::Preempted([cmd, count - n, buf.wrapping_add(n)]));
            }
            Ok(Progress::Done(0))
        }
        Some(ConsoleIo::Read) => Err(XenErrno::Eperm),
        None => Err(XenErrno::Enosys),
    }
}

/// Line-buffers a domain's console output into the log, prefixed with its id.
pub(crate) fn console_byte(d: &mut Domain, b: u8) {
    if b == b'\n' || d.console_len == d.console.len() {
        crate::log!(
            "(d{}) {}",
            d.id,
            core::str::from_utf8(&d.console[..d.console_len]).unwrap_or("<non-UTF-8>")
        );
        d.console_len = 0;
        if b == b'\n' {
            return;
        }
    }
    if b == b'\r' {
        return;
    }
    let b = if b.is_ascii_graphic() || b == b' ' {
        b
    } else {
        b'.'
    };
    d.console[d.console_len] = b;
    d.console_len += 1;
}
