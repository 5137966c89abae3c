//! The event channel of an io_uring queue read through the same ring: a poll linked to
//! a read of the pending ports stays armed, the ports read go back (unmasked) as a write
//! with the next submission, so the frontend's kicks cost no system call of their own;
//! and the idle wait on it, with what it counts for `--profile`.

use crate::ring_server::{Queue, QueueError};
use sluice_abi::blkif::BlkifBackRing;
use sluice_abi::types::EvtchnPort;
use sluice_dom0::{EventChannels, GrantMapper};
use sluice_xen_sys::{Completion, IoBuf, IoQueue};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

/// Tags of the event channel's own operations on the ring (requests count up from 1).
pub(super) const KICK_READ: u64 = u64::MAX;
pub(super) const KICK_UNMASK: u64 = u64::MAX - 1;

/// Bytes read from the event channel at once: 64 ports (each queue has its own open
/// with one port bound, so one is what comes).
const KICK_BYTES: usize = 4 * 64;

/// How long an idle wait (nothing in flight) lasts before the ring is looked at again.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// The event channel on the io_uring: a poll linked to a read of the pending ports stays
/// armed; the ports read go back (unmasked) as a write with the next submission.
pub(super) struct Kick {
    /// A duplicate of the event channel's descriptor (the same open: same bindings).
    file: Arc<File>,
    /// The poll and read are on the ring.
    armed: bool,
    /// Off for good after an error (logged): the queue waits with `poll(2)` then.
    on: bool,
    /// Unmask writes on the ring (each posts a completion a wait must not mistake for
    /// the one it waits for).
    unmasks: usize,
}

impl Kick {
    /// Completions a wait should want beyond what it waits for (the unmasks').
    pub(super) fn extra(kick: &Option<Kick>) -> usize {
        kick.as_ref().map_or(0, |k| k.unmasks)
    }
}

impl<G: GrantMapper, E: EventChannels> Queue<'_, G, E> {
    /// The event channel on the io_uring, where it has a descriptor (the fakes have none).
    pub(super) fn uring_kick(&self) -> Option<Kick> {
        let fd = self.evtchn.poll_fd()?.try_clone_to_owned().ok()?;
        Some(Kick {
            file: Arc::new(File::from(fd)),
            armed: false,
            on: true,
            unmasks: 0,
        })
    }

    /// After an idle wait that timed out: counts (and with `--profile` logs the first
    /// few of) the times requests were on the ring all the same, i.e. came without a
    /// kick. The shared header is read for this diagnosis only.
    pub(super) fn requests_without_kick(
        &self,
        ring: &mut BlkifBackRing<'_>,
    ) -> Result<(), QueueError> {
        if ring.unconsumed_requests()? == 0 {
            return Ok(());
        }
        let missed = &self.profile.idle_missed;
        crate::profile::bump(missed, 1);
        if crate::profile::timing() && missed.get() <= 5 {
            let h = ring.header()?;
            tracing::info!(
                "{}: requests on the ring after an idle wait with no kick: req_prod {} \
                 req_event {} req_cons {}",
                self.name,
                h.req_prod,
                h.req_event,
                ring.req_cons()
            );
        }
        Ok(())
    }

    /// Nothing in flight, nothing on the ring: wait for the frontend (or [`IDLE_WAIT`]);
    /// true if the wait timed out with no kick.
    pub(super) fn idle(
        &self,
        io: &mut IoQueue,
        kick: &mut Option<Kick>,
        ports: &mut Vec<EvtchnPort>,
    ) -> Result<bool, QueueError> {
        if let Some(k) = kick.as_mut().filter(|k| k.on) {
            if !k.armed {
                match io.poll_read(&k.file, IoBuf::new(KICK_BYTES), KICK_READ) {
                    Ok(()) => k.armed = true,
                    Err(e) => self.kick_off(k, &e),
                }
            }
            if k.armed {
                // Submits the unmask and the poll queued by the last kick, then waits
                // for the poll and its read (two completions) after the unmasks.
                let want = 2 + k.unmasks;
                let kicked = self
                    .profile
                    .idle
                    .time(|| self.count_wait(io, |io| io.wait_for(want, IDLE_WAIT)))?;
                if !kicked {
                    crate::profile::bump(&self.profile.idle_empty, 1);
                }
                return Ok(!kicked);
            }
        }
        // Without a descriptor on the ring: hand over what is queued, then poll(2),
        // read the pending ports and unmask them (three system calls).
        self.profile
            .submit
            .time(|| self.count_wait(io, |io| io.submit()))?;
        crate::profile::bump(&self.profile.evtchn_calls, 1);
        if self
            .profile
            .idle
            .time(|| self.evtchn.wait(Some(IDLE_WAIT)))?
        {
            ports.clear();
            crate::profile::bump(&self.profile.evtchn_calls, 1);
            self.evtchn.read_pending(ports)?;
            for &p in ports.iter() {
                crate::profile::bump(&self.profile.evtchn_calls, 1);
                self.evtchn.unmask(p)?;
            }
            return Ok(false);
        }
        crate::profile::bump(&self.profile.idle_empty, 1);
        Ok(true)
    }

    /// The event channel's own completions: pending ports read (queue their unmask and
    /// arm the poll again) or the unmask written.
    pub(super) fn kicked(
        &self,
        c: Completion,
        kick: &mut Option<Kick>,
        io: &mut IoQueue,
    ) -> Result<(), QueueError> {
        let Some(k) = kick.as_mut() else {
            return Ok(());
        };
        if c.tag == KICK_READ {
            k.armed = false;
        } else {
            k.unmasks = k.unmasks.saturating_sub(1);
        }
        match (c.tag, c.result, c.buf) {
            (KICK_READ, Ok(n), Some(mut buf)) => {
                let n = n - n % 4;
                if n == 0 {
                    return Ok(());
                }
                crate::profile::bump(&self.profile.kicks, 1);
                buf.set_len(n);
                if !k.on {
                    return self.unmask_all(&buf);
                }
                // The ports read go back as they are: writing them unmasks them.
                if let Err(e) = io.write_aux(&k.file, buf, KICK_UNMASK) {
                    self.kick_off(k, &e);
                    // The buffer went with the failed entry: unmask the only port.
                    crate::profile::bump(&self.profile.evtchn_calls, 1);
                    self.evtchn.unmask(self.port)?;
                    return Ok(());
                }
                k.unmasks += 1;
                // Armed again now, submitted with the unmask (next enter).
                match io.poll_read(&k.file, IoBuf::new(KICK_BYTES), KICK_READ) {
                    Ok(()) => k.armed = true,
                    Err(e) => self.kick_off(k, &e),
                }
                Ok(())
            }
            (KICK_READ, Err(e), _) => {
                // EAGAIN: someone read it first; anything else: poll(2) from now on.
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    self.kick_off(k, &e);
                }
                Ok(())
            }
            (KICK_UNMASK, Err(e), Some(buf)) => {
                self.kick_off(k, &e);
                self.unmask_all(&buf)
            }
            _ => Ok(()),
        }
    }

    /// Unmasks the ports in `buf` (as the event channel device reads them) with one
    /// system call each.
    fn unmask_all(&self, buf: &[u8]) -> Result<(), QueueError> {
        for c in buf.chunks_exact(4) {
            crate::profile::bump(&self.profile.evtchn_calls, 1);
            self.evtchn
                .unmask(EvtchnPort(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))?;
        }
        Ok(())
    }

    fn kick_off(&self, k: &mut Kick, e: &std::io::Error) {
        if k.on {
            tracing::warn!(
                "{}: event channel through io_uring failed ({e}); poll(2) from now on",
                self.name
            );
        }
        k.on = false;
    }
}
