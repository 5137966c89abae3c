//! A frame device (a tap queue, or a datagram socket in tests) driven through one
//! io_uring, so that a batch of frames costs one `io_uring_enter` instead of one syscall
//! each (in a PV dom0 every syscall is a trip through Xen):
//!
//! * **writes**: [`FrameRing::write_batch`] queues one `writev` per frame and submits them
//!   all with one enter (a non-blocking tap takes them inline), then returns each result;
//!   the frames are borrowed only for the call, which waits for every completion;
//! * **reads**: a set of page-aligned buffers owned by the ring, armed for a read
//!   ([`FrameRing::arm`]); finished reads are taken in completion order
//!   ([`FrameRing::next_read`]), their bytes looked at ([`FrameRing::buf`]) and re-armed.
//!   At most **one** read waits on the device (on an empty non-blocking device the
//!   kernel parks it on the device's wait queue and finishes it when a frame comes):
//!   every parked read is woken by every frame, so 32 parked reads made 32 wakeups per
//!   frame, most of them losing the race, retried on an io-wq thread and failing with
//!   `EAGAIN` (measured on the host: twice the CPU per frame of one parked read, and
//!   ~4% of the reads failed). While frames flow (the last read brought one), armed
//!   buffers get `RWF_NOWAIT` reads instead, and no read is parked: they take the frames
//!   already queued on the device at once, or fail with `EAGAIN` (kept inside the ring:
//!   the buffer stays armed, the flow is over, and the next enter parks one read again);
//!   so a burst of frames costs few enters. How many such
//!   reads a batch queues adapts to what the last batch found (each one that finds
//!   nothing is work in the kernel too: 32 of them per frame cost as much as the herd).
//!   A device that refuses `RWF_NOWAIT` (`EOPNOTSUPP`: a tap on Linux 6.1, whose tun
//!   lacks `FMODE_NOWAIT`, so io_uring hands each of its reads and writes to an io-wq
//!   thread anyway) gets one parked read at a time from then on;
//! * **waits**: [`FrameRing::wait`] submits what is queued and sleeps until a read or
//!   a readiness poll of another descriptor (the event channel) completes, or a timeout.
//!
//! Safety: a buffer with a read in flight is never handed out (it is the kernel's until
//! its completion is reaped), and the ring cancels and reaps every read before its
//! buffers are freed; borrowed write frames are waited for before `write_batch` returns.

use crate::iobuf::IoBuf;
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

const WRITE: u64 = 1 << 62;
const POLL: u64 = 1 << 61;
const CANCEL: u64 = 1 << 60;
const SIDE_WRITE: u64 = 1 << 59;
/// A read that does not wait (`RWF_NOWAIT`): `EAGAIN` when the device has no frame.
const NOWAIT: u64 = 1 << 58;
/// Parked reads in a row whose `EAGAIN` stays inside the ring.
const PARKED_EAGAIN_MAX: u32 = 3;
/// Bytes of one read of the side descriptor ([`FrameRing::with_side_reads`]).
pub const SIDE_READ: usize = 4 * 64;

/// One descriptor's frames through io_uring (see the module's documentation).
pub struct FrameRing<'fd> {
    ring: IoUring,
    fd: BorrowedFd<'fd>,
    poll_fd: Option<BorrowedFd<'fd>>,
    poll_armed: bool,
    polled: bool,
    /// Side reads instead of polls: the buffer (the kernel's while `poll_armed`) and
    /// the bytes the last one read.
    side_buf: Option<IoBuf>,
    side_len: usize,
    side_err: Option<io::Error>,
    /// Side writes in flight (their bytes, ours until the completion).
    side_writes: Vec<Option<IoBuf>>,
    bufs: Vec<IoBuf>,
    /// Not handed out: a read is queued or in flight (or wanted) for it.
    armed: Vec<bool>,
    /// The `user_data` of each buffer's read in flight (the kernel's buffer until reaped).
    in_flight: Vec<Option<u64>>,
    /// Armed buffers whose read is not on the ring yet ([`FrameRing::fill_reads`]).
    queued: VecDeque<usize>,
    /// The buffer whose read waits on the device (at most one).
    parked: Option<usize>,
    /// The last read brought a frame: more may be queued on the device.
    flowing: bool,
    /// `RWF_NOWAIT` reads to queue while frames flow: doubled after a batch that all
    /// brought frames, cut to what the last batch found (plus one) when one failed, so
    /// that a batch costs few reads that find nothing.
    burst: usize,
    /// The last batch's `RWF_NOWAIT` reads that brought a frame, and whether one failed.
    batch_ok: usize,
    batch_short: bool,
    /// Parked reads in a row that failed with `EAGAIN` (kept inside the ring up to
    /// [`PARKED_EAGAIN_MAX`], then handed out so a device that never parks cannot spin
    /// the ring).
    parked_eagain: u32,
    /// Reads that found nothing and stayed inside the ring.
    quiet_reads: u64,
    /// The device takes `RWF_NOWAIT` reads (false after one failed `EOPNOTSUPP`).
    nowait_ok: bool,
    read_at: usize,
    ready: VecDeque<(usize, io::Result<usize>)>,
    writes: Vec<Option<io::Result<usize>>>,
    enters: u64,
    completions: u64,
    /// Completions are posted only while the thread waits in an enter (`DEFER_TASKRUN`).
    deferred: bool,
}

impl std::fmt::Debug for FrameRing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRing")
            .field("bufs", &self.bufs.len())
            .field("enters", &self.enters)
            .finish_non_exhaustive()
    }
}

impl<'fd> FrameRing<'fd> {
    /// A ring over `fd` (non-blocking) with `nbufs` read buffers of `buf_len` bytes each,
    /// reads landing at byte `read_at` of their buffer (so that where the frame's data
    /// starts can be page-aligned); `poll_fd` (if any) is waited on beside the reads.
    /// Nothing is armed yet.
    pub fn new(
        fd: BorrowedFd<'fd>,
        poll_fd: Option<BorrowedFd<'fd>>,
        nbufs: usize,
        buf_len: usize,
        read_at: usize,
    ) -> io::Result<Self> {
        let entries = (2 * nbufs + 64 + 2).next_power_of_two() as u32;
        // As `IoQueue::new`: a frame arriving on the tap while the thread works is
        // posted when the thread next enters to wait, instead of interrupting it (in a
        // PV dom0 an interruption is a trip through Xen, per frame). The ring is used by
        // the thread that made it only (a queue thread), which single-issuer requires.
        let (ring, deferred) = crate::uring::deferred_ring(entries)?;
        Ok(Self {
            ring,
            deferred,
            fd,
            poll_fd,
            poll_armed: false,
            polled: false,
            side_buf: None,
            side_len: 0,
            side_err: None,
            side_writes: Vec::new(),
            bufs: (0..nbufs).map(|_| IoBuf::new(read_at + buf_len)).collect(),
            armed: vec![false; nbufs],
            in_flight: vec![None; nbufs],
            queued: VecDeque::new(),
            parked: None,
            flowing: false,
            burst: 1,
            batch_ok: 0,
            batch_short: false,
            parked_eagain: 0,
            quiet_reads: 0,
            nowait_ok: true,
            read_at,
            ready: VecDeque::new(),
            writes: Vec::new(),
            enters: 0,
            completions: 0,
        })
    }

    /// Keeps a read of up to [`SIDE_READ`] bytes of the side descriptor in flight
    /// instead of a readiness poll (an event-channel file: the read gives the ports
    /// that fired, with no `read` syscall of its own); [`FrameRing::side_bytes`] gives
    /// what it read once [`FrameRing::wait`] says it fired.
    pub fn with_side_reads(mut self) -> Self {
        if self.poll_fd.is_some() {
            self.side_buf = Some(IoBuf::new(SIDE_READ));
        }
        self
    }

    /// What the last side read gave (empty before one finished, or in poll mode), or
    /// its error.
    pub fn side_bytes(&mut self) -> io::Result<&[u8]> {
        if let Some(e) = self.side_err.take() {
            return Err(e);
        }
        if self.poll_armed {
            return Ok(&[]);
        }
        Ok(match &self.side_buf {
            Some(b) => &b[..self.side_len.min(b.len())],
            None => &[],
        })
    }

    /// Queues a write of `bytes` to the side descriptor (e.g. ports to unmask),
    /// submitted with the next enter, in order with what is queued after it.
    pub fn side_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(p) = self.poll_fd else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let mut b = IoBuf::new(bytes.len());
        b.copy_from_slice(bytes);
        let slot = match self.side_writes.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.side_writes.push(None);
                self.side_writes.len() - 1
            }
        };
        let e = opcode::Write::new(types::Fd(p.as_raw_fd()), b.as_ptr(), bytes.len() as u32)
            .offset(0)
            .build()
            .user_data(SIDE_WRITE | slot as u64);
        // SAFETY: the bytes are in `b`, kept in `side_writes` (its heap allocation does
        // not move) until this write's completion is reaped; `drop` waits for it.
        unsafe { self.push(&e)? };
        self.side_writes[slot] = Some(b);
        Ok(())
    }

    /// Read buffers.
    pub fn buffers(&self) -> usize {
        self.bufs.len()
    }

    /// Whether completions are posted only while the thread waits (`DEFER_TASKRUN`).
    pub fn deferred(&self) -> bool {
        self.deferred
    }

    /// `io_uring_enter` calls so far (each one syscall).
    pub fn enters(&self) -> u64 {
        self.enters
    }

    /// Completions reaped so far (a wait that adds none timed out).
    pub fn completions(&self) -> u64 {
        self.completions
    }

    /// Buffer `i`'s bytes from `read_at` on; `None` while a read into it is in flight.
    pub fn buf(&self, i: usize) -> Option<&[u8]> {
        match self.armed.get(i) {
            Some(false) => Some(&self.bufs[i][self.read_at..]),
            _ => None,
        }
    }

    /// Arms buffer `i` for a read (put on the ring with the next enter); no-op if it is
    /// armed already or `i` is out of range.
    pub fn arm(&mut self, i: usize) -> io::Result<()> {
        if self.armed.get(i) != Some(&false) {
            return Ok(());
        }
        self.armed[i] = true;
        self.queued.push_back(i);
        Ok(())
    }

    /// Whether the device takes `RWF_NOWAIT` reads (false once one failed
    /// `EOPNOTSUPP`: then only one parked read at a time).
    pub fn nowait_reads(&self) -> bool {
        self.nowait_ok
    }

    /// Reads in flight (parked or not yet reaped).
    pub fn reads_in_flight(&self) -> usize {
        self.in_flight.iter().filter(|k| k.is_some()).count()
    }

    /// Puts the queued reads on the ring before an enter: while frames flow, a
    /// `RWF_NOWAIT` read for each queued buffer and, last, the parked read if there is
    /// none; otherwise only the parked read (see the module's documentation).
    fn fill_reads(&mut self) -> io::Result<()> {
        let mut nowait = 0;
        if self.flowing && self.nowait_ok && !self.queued.is_empty() {
            if self.batch_ok > 0 && !self.batch_short {
                self.burst = (self.burst * 2).min(self.bufs.len());
            }
            (self.batch_ok, self.batch_short) = (0, false);
            nowait = self.burst;
        }
        // Never a parked read beside `RWF_NOWAIT` ones: a frame that wakes the parked
        // read may be taken by a read submitted before the wakeup is handled, and the
        // parked read then fails with `EAGAIN` (measured on Xen: the buffers so failed
        // sat out until a quiet tick, and the path crawled at 3-11 Mbit/s).
        while let Some(&i) = self.queued.front() {
            let park = nowait == 0 && (!self.flowing || !self.nowait_ok) && self.parked.is_none();
            if !park && nowait == 0 {
                break;
            }
            if !park {
                nowait -= 1;
            }
            self.queued.pop_front();
            let key = if park { i as u64 } else { NOWAIT | i as u64 };
            let at = self.read_at;
            let buf = &mut self.bufs[i];
            let len = u32::try_from(buf.len() - at).unwrap_or(u32::MAX);
            // SAFETY: `at` < the buffer's length (new() sized it read_at + buf_len), so
            // the pointer and `len` stay inside the buffer's heap allocation.
            let ptr = unsafe { buf.as_mut_ptr().add(at) };
            let mut e = opcode::Read::new(types::Fd(self.fd.as_raw_fd()), ptr, len).offset(0);
            if !park {
                e = e.rw_flags(libc::RWF_NOWAIT);
            }
            let e = e.build().user_data(key);
            // SAFETY: the buffer is owned by `self` and its allocation never moves; it
            // stays armed (never handed out) until this read's completion is reaped,
            // and `drop` cancels and reaps every read in flight before the buffers are
            // freed. The fd is borrowed for 'fd, which outlives `self`.
            if let Err(err) = unsafe { self.push(&e) } {
                self.queued.push_front(i);
                return Err(err);
            }
            self.in_flight[i] = Some(key);
            if park {
                self.parked = Some(i);
            }
        }
        Ok(())
    }

    /// # Safety
    /// Whatever memory `e` points at must stay valid until its completion is reaped.
    unsafe fn push(&mut self, e: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        if unsafe { self.ring.submission().push(e) }.is_ok() {
            return Ok(());
        }
        self.raw_enter(0)?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(e) }
            .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "io_uring queue full"))
    }

    /// Puts the queued reads on the ring, then enters.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        self.fill_reads()?;
        self.raw_enter(want)
    }

    fn raw_enter(&mut self, want: usize) -> io::Result<()> {
        self.enters += 1;
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) =>
                {
                    if want == 0 {
                        return Ok(());
                    }
                    self.reap();
                    if !self.ring.completion().is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves finished operations out of the completion queue (no syscall).
    pub fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            self.completions += 1;
            let key = cqe.user_data();
            let r = cqe.result();
            let result = if r < 0 {
                Err(io::Error::from_raw_os_error(-r))
            } else {
                Ok(r as usize)
            };
            if key & CANCEL != 0 {
                continue;
            } else if key & SIDE_WRITE != 0 {
                if let Some(w) = self.side_writes.get_mut((key & !SIDE_WRITE) as usize) {
                    *w = None;
                }
            } else if key & POLL != 0 {
                self.poll_armed = false;
                self.polled = true;
                if self.side_buf.is_some() {
                    match result {
                        Ok(n) => self.side_len = n,
                        Err(e) => {
                            self.side_len = 0;
                            self.side_err = Some(e);
                        }
                    }
                }
            } else if key & WRITE != 0 {
                if let Some(w) = self.writes.get_mut((key & !WRITE) as usize) {
                    *w = Some(result);
                }
            } else if let Some(slot) = self.in_flight.get_mut((key & !NOWAIT) as usize) {
                let i = (key & !NOWAIT) as usize;
                *slot = None;
                if self.parked == Some(i) {
                    self.parked = None;
                }
                let parked_again = key & NOWAIT == 0 && self.parked_eagain < PARKED_EAGAIN_MAX;
                match result {
                    // A device without `RWF_NOWAIT` (a tap before Linux took
                    // IOCB_NOWAIT for tun: dom0's 6.1): parked reads only from now on.
                    Err(e) if key & NOWAIT != 0 && e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                        self.nowait_ok = false;
                        self.flowing = false;
                        self.completions -= 1;
                        self.quiet_reads += 1;
                        self.queued.push_back(i);
                    }
                    // The device had no frame for a read that does not wait (or, a few
                    // times in a row at most, for the parked one): the buffer stays
                    // armed, and the flow is over.
                    Err(e)
                        if (key & NOWAIT != 0 || parked_again)
                            && e.kind() == io::ErrorKind::WouldBlock =>
                    {
                        if key & NOWAIT == 0 {
                            self.parked_eagain += 1;
                        }
                        // Not news to the caller: not counted as a completion.
                        self.completions -= 1;
                        self.quiet_reads += 1;
                        self.flowing = false;
                        self.queued.push_back(i);
                        if !self.batch_short {
                            self.batch_short = true;
                            self.burst = self.batch_ok + 1;
                        }
                    }
                    r => {
                        if key & NOWAIT != 0 && r.is_ok() {
                            self.batch_ok += 1;
                        }
                        if r.is_ok() {
                            self.parked_eagain = 0;
                        }
                        self.flowing = r.is_ok();
                        self.armed[i] = false;
                        self.ready.push_back((i, r));
                    }
                }
            }
        }
    }

    /// The oldest finished read not yet taken: its buffer and the bytes read (or the
    /// error). The buffer stays unarmed until [`FrameRing::arm`].
    pub fn next_read(&mut self) -> Option<(usize, io::Result<usize>)> {
        self.ready.pop_front()
    }

    /// The oldest finished read, left in place.
    pub fn peek_read(&self) -> Option<(usize, Result<usize, io::ErrorKind>)> {
        self.ready
            .front()
            .map(|(i, r)| (*i, r.as_ref().map(|n| *n).map_err(|e| e.kind())))
    }

    /// Writes each of `frames` (one `writev` each) with one enter; the results in order.
    pub fn write_batch(&mut self, frames: &[&[IoSlice<'_>]]) -> Vec<io::Result<usize>> {
        self.writes.clear();
        self.writes.resize_with(frames.len(), || None);
        let mut queued = 0;
        for (k, f) in frames.iter().enumerate() {
            let Ok(n) = u32::try_from(f.len()) else {
                self.writes[k] = Some(Err(io::ErrorKind::InvalidInput.into()));
                continue;
            };
            // `IoSlice` is ABI-compatible with `struct iovec` on Unix (std guarantees it).
            let e = opcode::Writev::new(
                types::Fd(self.fd.as_raw_fd()),
                f.as_ptr().cast::<libc::iovec>(),
                n,
            )
            .offset(0)
            .build()
            .user_data(WRITE | k as u64);
            // SAFETY: the iovecs and the bytes they name are borrowed for this call, and
            // this call does not return before every queued write's completion is reaped
            // (below; the process aborts rather than return if the ring fails).
            match unsafe { self.push(&e) } {
                Ok(()) => queued += 1,
                Err(err) => self.writes[k] = Some(Err(err)),
            }
        }
        let mut waits = 0u32;
        while queued > 0 && self.writes.iter().any(Option::is_none) {
            if let Err(e) = self.enter(1) {
                waits += 1;
                if waits > 1000 {
                    // The kernel may still read the borrowed frames: returning would
                    // free memory in use.
                    eprintln!("io_uring failed with writes in flight ({e}); aborting");
                    std::process::abort();
                }
            }
            self.reap();
        }
        self.writes
            .drain(..)
            .map(|w| w.unwrap_or_else(|| Err(io::ErrorKind::Other.into())))
            .collect()
    }

    /// Submits what is queued (re-armed reads) without waiting; no syscall if nothing is.
    pub fn submit(&mut self) -> io::Result<()> {
        self.fill_reads()?;
        if !self.ring.submission().is_empty() {
            self.raw_enter(0)?;
        }
        self.reap();
        Ok(())
    }

    /// Submits what is queued and sleeps until a read finishes, the poll descriptor
    /// becomes readable or `timeout` passes (at once if a completion is waiting that
    /// has not been reaped; reads already in the [`FrameRing::next_read`] line do not
    /// stop it sleeping).
    /// True if the poll descriptor fired (since the last call): the caller drains it.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if let (Some(p), false) = (self.poll_fd, self.poll_armed) {
            let fd = types::Fd(p.as_raw_fd());
            let e = match self.side_buf.as_mut() {
                Some(b) => opcode::Read::new(fd, b.as_mut_ptr(), SIDE_READ as u32)
                    .offset(0)
                    .build(),
                None => opcode::PollAdd::new(fd, libc::POLLIN as u32).build(),
            };
            // SAFETY: a poll points at no memory; a side read writes into `side_buf`,
            // which stays allocated (and is not handed out: `side_bytes` gives nothing
            // while `poll_armed`) until its completion is reaped, `drop` cancelling and
            // waiting for it. The fd is borrowed for 'fd.
            unsafe { self.push(&e.user_data(POLL))? };
            self.poll_armed = true;
        }
        // Sleep unless something finished that the caller has not seen: a completion
        // still in the queue, or a side completion already reaped. Reads already taken
        // into the line (`next_read`) do not count: the caller waits because it cannot
        // use them yet (a frame waiting for the guest's RX requests), and returning at
        // once for them would spin.
        if !self.polled && self.ring.completion().is_empty() {
            let ts = types::Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            // At most twice: an enter whose only completions were `RWF_NOWAIT` reads
            // that found nothing (the flow's end, kept inside the ring) sleeps again,
            // now with a read parked.
            for _ in 0..2 {
                let seen = self.completions;
                let quiet = self.quiet_reads;
                self.fill_reads()?;
                self.enters += 1;
                match self.ring.submitter().submit_with_args(1, &args) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                        ) => {}
                    Err(e) => return Err(e),
                }
                self.reap();
                if self.completions != seen || self.quiet_reads == quiet {
                    break;
                }
            }
        } else {
            self.submit()?;
        }
        Ok(std::mem::take(&mut self.polled))
    }
}

impl Drop for FrameRing<'_> {
    fn drop(&mut self) {
        // The kernel may still write into armed buffers: cancel every read (and the
        // poll), then wait for their completions.
        self.ready.clear();
        let mut keys: Vec<u64> = self.in_flight.iter().flatten().copied().collect();
        if self.poll_armed {
            keys.push(POLL);
        }
        for k in keys {
            let e = opcode::AsyncCancel::new(k).build().user_data(CANCEL);
            // SAFETY: a cancel points at no memory.
            let _ = unsafe { self.push(&e) };
        }
        let mut tries = 0;
        while self.in_flight.iter().any(Option::is_some)
            || self.poll_armed
            || self.side_writes.iter().any(Option::is_some)
        {
            tries += 1;
            if tries > 1000 || self.raw_enter(1).is_err() {
                // Cannot wait: leak the buffers rather than free memory in use.
                std::mem::forget(std::mem::take(&mut self.bufs));
                std::mem::forget(self.side_buf.take());
                std::mem::forget(std::mem::take(&mut self.side_writes));
                return;
            }
            self.reap();
        }
    }
}

#[cfg(test)]
mod tests;
