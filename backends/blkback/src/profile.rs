//! Cheap per-queue accounting of where a queue's time goes (counts and wall time per
//! phase), logged when the queue stops. One per queue thread (plain `Cell`s, no atomics).
//!
//! Counts are always kept; phase times only after [`enable_timing`] (`sluice-blkback
//! --profile`), because every clock read is a syscall in a PV dom0 (see below).
//! Phases are timed with `CLOCK_MONOTONIC_COARSE` (read from the vDSO without a syscall
//! or a TSC read; a few ms resolution, so a phase's total is a statistical estimate
//! that sharpens with its count). A precise clock is no option in a PV dom0 under
//! QEMU TCG: one `Instant::now()` measured 50-270 us there (a syscall and an emulated
//! TSC read), which timing every phase of every request turned into most of the
//! daemon's time.

use rustix::time::{clock_gettime, ClockId};
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static TIMING: AtomicBool = AtomicBool::new(false);

/// Turns phase timing on or off for every queue (off by default).
pub fn enable_timing(on: bool) {
    TIMING.store(on, Ordering::Relaxed);
}

fn timing() -> bool {
    TIMING.load(Ordering::Relaxed)
}

/// The coarse monotonic clock.
fn coarse() -> Duration {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// One phase: how often it ran and for how long in total.
#[derive(Default)]
pub struct Phase {
    count: Cell<u64>,
    nanos: Cell<u64>,
}

impl Phase {
    /// Runs `f`, counting it and its duration.
    pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        if !timing() {
            self.count.set(self.count.get() + 1);
            return f();
        }
        let t = coarse();
        let r = f();
        self.add(coarse().saturating_sub(t));
        r
    }

    /// Adds one run of `d`.
    pub fn add(&self, d: Duration) {
        self.count.set(self.count.get() + 1);
        self.nanos
            .set(self.nanos.get() + u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Runs so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// Total time so far.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.get())
    }
}

/// A queue's counters.
pub struct Profile {
    started: Instant,
    /// What one `Instant::now()`, one coarse clock read and one trivial syscall
    /// (`getpid`) cost here, measured at creation.
    costs: [Duration; 3],
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
    /// Event channel notifications sent.
    pub notifies: Cell<u64>,
}

impl Default for Profile {
    fn default() -> Self {
        let costs = if !timing() {
            [Duration::ZERO; 3]
        } else {
            [
                cost(|| {
                    std::hint::black_box(Instant::now());
                }),
                cost(|| {
                    std::hint::black_box(coarse());
                }),
                cost(|| {
                    std::hint::black_box(std::process::id());
                }),
            ]
        };
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
        }
    }
}

/// Mean time of `f` over 32 runs.
fn cost(f: impl Fn()) -> Duration {
    let t = Instant::now();
    for _ in 0..32 {
        f();
    }
    t.elapsed() / 32
}

/// Adds `by` to a counter.
pub fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
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

    /// Counts the depth at one submission.
    pub fn depth(&self, in_flight: usize) {
        bump(&self.depth_sum, in_flight as u64);
        self.max_depth
            .set(self.max_depth.get().max(in_flight as u64));
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.started.elapsed();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
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
            self.depth_sum.get() as f64 / self.submit.count().max(1) as f64,
            self.max_depth.get(),
        )?;
        for (name, p) in [
            ("indirect", &self.indirect),
            ("buffer", &self.buffer),
            ("copy-in", &self.copy_in),
            ("copy-out", &self.copy_out),
            ("queue", &self.queue),
            ("submit", &self.submit),
            ("io-wait", &self.io_wait),
            ("idle", &self.idle),
            ("inline", &self.inline),
        ] {
            if timing() {
                write!(f, " {name} {}x {:.0} ms", p.count(), ms(p.total()))?;
            } else {
                write!(f, " {name} {}x", p.count())?;
            }
        }
        if !timing() {
            return write!(
                f,
                " ({} waits timed out; {} io_uring_enter, {} notifications; phase times \
                 with --profile)",
                self.io_wait_empty.get(),
                self.enters.get(),
                self.notifies.get()
            );
        }
        write!(
            f,
            " ({} waits timed out; {} io_uring_enter, {} notifications; costs here: \
             Instant::now {} ns, coarse clock {} ns, getpid {} ns)",
            self.io_wait_empty.get(),
            self.enters.get(),
            self.notifies.get(),
            self.costs[0].as_nanos(),
            self.costs[1].as_nanos(),
            self.costs[2].as_nanos(),
        )
    }
}
