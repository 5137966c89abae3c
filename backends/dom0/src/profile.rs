//! Cheap per-queue accounting of where a daemon's queue thread spends its time: counts
//! and wall time per phase, logged when the queue stops. One set per queue thread (plain
//! `Cell`s, no atomics). The block and net daemons build their own profiles from these.
//!
//! Counts are always kept; phase times only after [`enable_timing`] (a daemon's
//! `--profile`), because a clock read can be a syscall in a PV dom0. Phases are timed
//! with `CLOCK_MONOTONIC_COARSE` (read from the vDSO without a syscall or a TSC read; a
//! few ms resolution, so a phase's total is a statistical estimate that sharpens with
//! its count). A precise clock is no option in a PV dom0 under QEMU TCG: one
//! `Instant::now()` measured 50-270 us there (a syscall and an emulated TSC read), which
//! timing every phase of every request turned into most of the daemon's time.

use rustix::time::{clock_gettime, ClockId};
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static TIMING: AtomicBool = AtomicBool::new(false);

/// Turns phase timing on or off for every queue of the process (off by default).
pub fn enable_timing(on: bool) {
    TIMING.store(on, Ordering::Relaxed);
}

/// Whether phases are timed.
pub fn timing() -> bool {
    TIMING.load(Ordering::Relaxed)
}

/// The coarse monotonic clock (from the vDSO: no syscall; a few ms resolution).
pub fn coarse() -> Duration {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Where a queue's last interval line (`--profile`) left off: when (on the [`coarse`]
/// clock) and the thread's CPU time then.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntervalStart {
    at: Duration,
    cpu: Duration,
}

/// What passed since an [`IntervalStart`]: wall time and the thread's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    pub span: Duration,
    pub cpu: Duration,
}

impl IntervalStart {
    /// Now, for the calling thread.
    pub fn now() -> Self {
        Self {
            at: coarse(),
            cpu: thread_cpu(),
        }
    }

    /// With timing on and at least `every` passed since `self`: the next start (now)
    /// and what passed; `None` otherwise.
    pub fn due(self, every: Duration) -> Option<(Self, Interval)> {
        if !timing() {
            return None;
        }
        let at = coarse();
        let span = at.saturating_sub(self.at);
        if span < every {
            return None;
        }
        let cpu = thread_cpu();
        let next = Self { at, cpu };
        Some((
            next,
            Interval {
                span,
                cpu: cpu.saturating_sub(self.cpu),
            },
        ))
    }
}

/// One phase: how often it ran and for how long in total.
#[derive(Default)]
pub struct Phase {
    count: Cell<u64>,
    nanos: Cell<u64>,
}

impl Phase {
    /// Runs `f`, counting it and (with timing on) its duration.
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

/// Adds `by` to a counter.
pub fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

/// Raises a high-water mark to `v`.
pub fn raise(c: &Cell<u64>, v: u64) {
    c.set(c.get().max(v));
}

/// Milliseconds, for profile lines.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes ` NAME COUNTx` (and ` T ms` with timing on) for each phase.
pub fn write_phases(f: &mut fmt::Formatter<'_>, phases: &[(&str, &Phase)]) -> fmt::Result {
    for (name, p) in phases {
        if timing() {
            write!(f, " {name} {}x {:.0} ms", p.count(), ms(p.total()))?;
        } else {
            write!(f, " {name} {}x", p.count())?;
        }
    }
    Ok(())
}

/// What the clocks cost on this machine, measured once per queue when timing is on:
/// one `Instant::now()`, one coarse clock read, one trivial syscall (`getpid`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockCosts([Duration; 3]);

impl ClockCosts {
    /// Measures (zeroes with timing off: nothing to explain then).
    pub fn measure() -> Self {
        if !timing() {
            return Self::default();
        }
        Self([
            mean_cost(|| {
                std::hint::black_box(Instant::now());
            }),
            mean_cost(|| {
                std::hint::black_box(coarse());
            }),
            mean_cost(|| {
                std::hint::black_box(rustix::process::getpid());
            }),
        ])
    }
}

impl fmt::Display for ClockCosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !timing() {
            return write!(f, "phase times with --profile");
        }
        write!(
            f,
            "costs here: Instant::now {} ns, coarse clock {} ns, getpid {} ns",
            self.0[0].as_nanos(),
            self.0[1].as_nanos(),
            self.0[2].as_nanos(),
        )
    }
}

/// Mean time of `f` over 32 runs.
fn mean_cost(f: impl Fn()) -> Duration {
    let t = Instant::now();
    for _ in 0..32 {
        f();
    }
    t.elapsed() / 32
}

/// The calling thread's CPU time so far (user and system).
pub fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_count_without_timing_and_add_with_it() {
        let p = Phase::default();
        assert_eq!(p.time(|| 7), 7);
        p.add(Duration::from_millis(3));
        assert_eq!(p.count(), 2);
        assert_eq!(p.total(), Duration::from_millis(3));
        let c = Cell::new(1);
        bump(&c, 2);
        raise(&c, 2);
        assert_eq!(c.get(), 3);
        raise(&c, 9);
        assert_eq!(c.get(), 9);
    }
}
