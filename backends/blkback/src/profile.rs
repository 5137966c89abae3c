//! Cheap per-queue accounting of where a queue's time goes (counts and wall time per
//! phase), logged when the queue stops. One per queue thread (plain `Cell`s, no atomics).
//!
//! The phases and clocks are `sluice_dom0::profile`'s (timing only with
//! `sluice-blkback --profile`: why is written there).

pub use sluice_dom0::profile::{bump, enable_timing, timing, Phase};
use sluice_dom0::profile::{ms, write_phases, ClockCosts, IntervalStart};
use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// A queue's counters.
pub struct Profile {
    started: Instant,
    /// What the clocks cost here, measured at creation.
    costs: ClockCosts,
    /// Indirect descriptor pages fetched and validated (per request).
    pub indirect: Phase,
    /// Data buffers taken (from the pool, or allocated).
    pub buffer: Phase,
    /// Guest -> buffer (writes), through mappings or grant copy.
    pub copy_in: Phase,
    /// Buffer -> guest (reads).
    pub copy_out: Phase,
    /// Requests queued on io_uring (preparing the submission entry).
    pub queue: Phase,
    /// `io_uring_enter` without waiting (buffered I/O may run inline here).
    pub submit: Phase,
    /// Waiting for a completion with I/O in flight.
    pub io_wait: Phase,
    /// Waits that ended with nothing completed (the timeout).
    pub io_wait_empty: Cell<u64>,
    /// Idle: waiting on the event channel with nothing in flight.
    pub idle: Phase,
    /// Idle waits that ended with no kick (the `IDLE_WAIT` timeout; counted as a wait
    /// that returned with fewer completions than it asked for, so an interrupted one
    /// counts too): with a frontend that is busy, a notification lost on the way would
    /// show here.
    pub idle_empty: Cell<u64>,
    /// Of those, the ones after which requests were on the ring: they came without a
    /// kick (the frontend did not send one, or it was lost on the way).
    pub idle_missed: Cell<u64>,
    /// Inline (synchronous) reads and writes, flushes, discards.
    pub inline: Phase,
    /// Read requests and their bytes.
    pub reads: Cell<u64>,
    /// Bytes read.
    pub read_bytes: Cell<u64>,
    /// Write requests.
    pub writes: Cell<u64>,
    /// Bytes written.
    pub write_bytes: Cell<u64>,
    /// Segments over all reads and writes.
    pub segments: Cell<u64>,
    /// Most segments in one request.
    pub max_segments: Cell<u64>,
    /// Sum over submissions of the requests in flight then (mean depth = / submits).
    pub depth_sum: Cell<u64>,
    /// Most requests in flight at once.
    pub max_depth: Cell<u64>,
    /// io_uring_enter calls (submits and waits).
    pub enters: Cell<u64>,
    /// Event channel notifications sent (one ioctl each).
    pub notifies: Cell<u64>,
    /// Requests merged into the I/O of the one before them (`--merge`).
    pub merged: Cell<u64>,
    /// Event-channel system calls other than notifications: `poll(2)`, reads of the
    /// pending ports, unmask writes (the path without the event channel on io_uring).
    pub evtchn_calls: Cell<u64>,
    /// Frontend kicks read through io_uring (no system call of their own).
    pub kicks: Cell<u64>,
    /// Rounds that waited with I/O in flight.
    pub rounds: Cell<u64>,
    /// Where the last [`Profile::interval`] line left off.
    mark: Cell<Mark>,
}

/// The counters an interval line is the difference of.
#[derive(Clone, Copy, Default)]
struct Mark {
    start: IntervalStart,
    requests: u64,
    bytes: u64,
    idle: (u64, Duration),
    idle_empty: u64,
    io_wait: (u64, Duration),
    depth_sum: u64,
    notifies: u64,
}

impl Default for Profile {
    fn default() -> Self {
        let costs = ClockCosts::measure();
        Self {
            costs,
            started: Instant::now(),
            indirect: Phase::default(),
            buffer: Phase::default(),
            copy_in: Phase::default(),
            copy_out: Phase::default(),
            queue: Phase::default(),
            submit: Phase::default(),
            io_wait: Phase::default(),
            io_wait_empty: Cell::new(0),
            idle: Phase::default(),
            idle_empty: Cell::new(0),
            idle_missed: Cell::new(0),
            inline: Phase::default(),
            reads: Cell::new(0),
            read_bytes: Cell::new(0),
            writes: Cell::new(0),
            write_bytes: Cell::new(0),
            segments: Cell::new(0),
            max_segments: Cell::new(0),
            depth_sum: Cell::new(0),
            max_depth: Cell::new(0),
            enters: Cell::new(0),
            notifies: Cell::new(0),
            merged: Cell::new(0),
            evtchn_calls: Cell::new(0),
            kicks: Cell::new(0),
            rounds: Cell::new(0),
            mark: Cell::new(Mark {
                start: IntervalStart::now(),
                ..Mark::default()
            }),
        }
    }
}

impl Profile {
    /// Counts one read or write of `bytes` over `segments`.
    pub fn request(&self, write: bool, bytes: usize, segments: usize) {
        if write {
            bump(&self.writes, 1);
            bump(&self.write_bytes, bytes as u64);
        } else {
            bump(&self.reads, 1);
            bump(&self.read_bytes, bytes as u64);
        }
        bump(&self.segments, segments as u64);
        self.max_segments
            .set(self.max_segments.get().max(segments as u64));
    }

    /// With timing on (`--profile`), once `every` has passed since the last one: what
    /// this queue did since then (requests, MiB/s, waits for the frontend and for I/O,
    /// the thread's CPU), as one line (how the queues of a disk share the load over
    /// time, and where a queue waits); `None` otherwise.
    pub fn interval(&self, every: Duration) -> Option<String> {
        let last = self.mark.get();
        let (start, passed) = last.start.due(every)?;
        let span = passed.span;
        let m = Mark {
            start,
            requests: self.reads.get() + self.writes.get(),
            bytes: self.read_bytes.get() + self.write_bytes.get(),
            idle: (self.idle.count(), self.idle.total()),
            idle_empty: self.idle_empty.get(),
            io_wait: (self.io_wait.count(), self.io_wait.total()),
            depth_sum: self.depth_sum.get(),
            notifies: self.notifies.get(),
        };
        self.mark.set(m);
        let idle = (m.idle.0 - last.idle.0, m.idle.1.saturating_sub(last.idle.1));
        let io_wait = (
            m.io_wait.0 - last.io_wait.0,
            m.io_wait.1.saturating_sub(last.io_wait.1),
        );
        let bytes = m.bytes - last.bytes;
        Some(format!(
            "last {:.0} ms: {} requests ({:.1} MiB/s), idle {}x {:.0} ms ({} timed out), \
             I/O waits {}x {:.0} ms (depth {:.1}), {} notifications, thread cpu {:.0} ms",
            ms(span),
            m.requests - last.requests,
            bytes as f64 / span.as_secs_f64().max(1e-3) / f64::from(1 << 20),
            idle.0,
            ms(idle.1),
            m.idle_empty - last.idle_empty,
            io_wait.0,
            ms(io_wait.1),
            (m.depth_sum - last.depth_sum) as f64 / io_wait.0.max(1) as f64,
            m.notifies - last.notifies,
            ms(passed.cpu),
        ))
    }

    /// Counts the depth at one round's wait.
    pub fn depth(&self, in_flight: usize) {
        bump(&self.rounds, 1);
        bump(&self.depth_sum, in_flight as u64);
        self.max_depth
            .set(self.max_depth.get().max(in_flight as u64));
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.started.elapsed();
        let rq = self.reads.get() + self.writes.get();
        write!(
            f,
            "{:.0} ms: {} reads ({} MiB), {} writes ({} MiB), {:.1} segments/request (max {}), \
             depth mean {:.1} max {};",
            ms(wall),
            self.reads.get(),
            self.read_bytes.get() >> 20,
            self.writes.get(),
            self.write_bytes.get() >> 20,
            self.segments.get() as f64 / rq.max(1) as f64,
            self.max_segments.get(),
            self.depth_sum.get() as f64 / self.rounds.get().max(1) as f64,
            self.max_depth.get(),
        )?;
        write_phases(
            f,
            &[
                ("indirect", &self.indirect),
                ("buffer", &self.buffer),
                ("copy-in", &self.copy_in),
                ("copy-out", &self.copy_out),
                ("queue", &self.queue),
                ("submit", &self.submit),
                ("io-wait", &self.io_wait),
                ("idle", &self.idle),
                ("inline", &self.inline),
            ],
        )?;
        let calls = self.enters.get() + self.notifies.get() + self.evtchn_calls.get();
        write!(
            f,
            " ({} I/O waits and {} idle waits timed out, {} of these with requests waiting; \
             {} io_uring_enter, {} notifications, {} other event-channel \
             calls, {} kicks through io_uring, {} requests merged into the one before: {:.2} \
             system calls per request; {})",
            self.io_wait_empty.get(),
            self.idle_empty.get(),
            self.idle_missed.get(),
            self.enters.get(),
            self.notifies.get(),
            self.evtchn_calls.get(),
            self.kicks.get(),
            self.merged.get(),
            calls as f64 / rq.max(1) as f64,
            self.costs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{bump, enable_timing, Profile};
    use std::time::Duration;

    #[test]
    fn an_interval_line_counts_only_what_happened_since_the_last_one() {
        let p = Profile::default();
        enable_timing(false);
        assert_eq!(p.interval(Duration::ZERO), None, "only with --profile");
        enable_timing(true);
        assert_eq!(p.interval(Duration::from_secs(3600)), None, "not due yet");
        p.request(false, 4096, 1);
        p.request(true, 8192, 2);
        bump(&p.idle_empty, 1);
        p.idle.add(Duration::from_millis(200));
        let first = p.interval(Duration::ZERO).expect("due");
        assert!(first.contains(": 2 requests"), "{first}");
        assert!(first.contains("idle 1x 200 ms (1 timed out)"), "{first}");
        p.request(false, 4096, 1);
        let second = p.interval(Duration::ZERO).expect("due");
        enable_timing(false);
        assert!(second.contains(": 1 requests"), "{second}");
        assert!(second.contains("idle 0x 0 ms (0 timed out)"), "{second}");
    }
}
