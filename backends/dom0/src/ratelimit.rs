//! Rate limits on what a guest can make a dom0 daemon do, over `governor`'s GCRA (a
//! token bucket): [`Throttle`] bounds how often a daemon services one guest (the console
//! backend's wakeups), [`LogLimiter`] bounds the log lines one device can cause, per
//! message class, counting what it suppresses so that the count is logged later
//! ("N similar message(s) suppressed"), with [`warn_limited!`](crate::warn_limited).
//!
//! Both take a [`LimitClock`]: the real monotonic clock, or `governor`'s fake clock that
//! host tests move by hand (no test depends on how fast it runs).

use governor::clock::Clock;
pub use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: `burst` at once, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Cells available at once (at least 1).
    pub burst: u32,
    /// One cell comes back per `every` (at least 1 ns).
    pub every: Duration,
}

impl Rate {
    /// Log lines per device and message class: 10 at once, then one every 5 s (Linux's
    /// `printk_ratelimit` allows 10 per 5 s; this is stricter once the burst is spent).
    pub const LOG: Rate = Rate {
        burst: 10,
        every: Duration::from_secs(5),
    };

    fn quota(self) -> Quota {
        let every = self.every.max(Duration::from_nanos(1));
        Quota::with_period(every)
            .expect("non-zero period")
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN))
    }
}

/// The time a limiter goes by: real, or a fake one moved by hand (tests).
#[derive(Debug, Clone)]
pub enum LimitClock {
    /// Monotonic time since this instant.
    Real(Instant),
    /// `governor`'s fake clock (clones share one time).
    Fake(FakeRelativeClock),
}

impl LimitClock {
    /// The real clock.
    pub fn real() -> Self {
        LimitClock::Real(Instant::now())
    }
}

impl Default for LimitClock {
    fn default() -> Self {
        LimitClock::real()
    }
}

impl Clock for LimitClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        match self {
            LimitClock::Real(start) => start.elapsed().into(),
            LimitClock::Fake(c) => c.now(),
        }
    }
}

/// One token bucket: whether to do something now, or how long to wait.
#[derive(Debug)]
pub struct Throttle {
    limiter: RateLimiter<NotKeyed, InMemoryState, LimitClock, NoOpMiddleware<Nanos>>,
    clock: LimitClock,
}

impl Throttle {
    /// A full bucket of `rate`.
    pub fn new(rate: Rate, clock: LimitClock) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(rate.quota(), clock.clone()),
            clock,
        }
    }

    /// Takes a cell (Ok), or says how long until one is back (Err).
    pub fn admit(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not| not.wait_time_from(self.clock.now()))
    }
}

/// Per message class: log lines let through, and those suppressed since the last one.
#[derive(Debug)]
pub struct LogLimiter {
    limiter: RateLimiter<
        &'static str,
        HashMapStateStore<&'static str>,
        LimitClock,
        NoOpMiddleware<Nanos>,
    >,
    suppressed: Mutex<BTreeMap<&'static str, u64>>,
    logged: AtomicU64,
    dropped: AtomicU64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(Rate::LOG, LimitClock::real())
    }
}

impl LogLimiter {
    /// Every class starts with a full bucket of `rate`.
    pub fn new(rate: Rate, clock: LimitClock) -> Self {
        Self {
            limiter: RateLimiter::hashmap_with_clock(rate.quota(), clock),
            suppressed: Mutex::new(BTreeMap::new()),
            logged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether a line of `class` may be logged now: `Some(n)` with the number of lines
    /// of that class suppressed since the last one logged, `None` (counted) if not.
    pub fn admit(&self, class: &'static str) -> Option<u64> {
        let mut sup = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        if self.limiter.check_key(&class).is_ok() {
            self.logged.fetch_add(1, Ordering::Relaxed);
            Some(sup.remove(class).unwrap_or(0))
        } else {
            *sup.entry(class).or_insert(0) += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Suppressed counts to report now: each class with lines suppressed whose bucket
    /// admits one more line (the report is that line, so it is rate limited too).
    pub fn flush(&self) -> Vec<(&'static str, u64)> {
        let mut sup = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        let ready: Vec<&'static str> = sup
            .keys()
            .copied()
            .filter(|c| self.limiter.check_key(c).is_ok())
            .collect();
        ready
            .into_iter()
            .filter_map(|c| sup.remove(c).map(|n| (c, n)))
            .collect()
    }

    /// Every suppressed count, whatever the buckets say (when the device goes away).
    pub fn drain(&self) -> Vec<(&'static str, u64)> {
        let mut sup = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *sup).into_iter().collect()
    }

    /// Logs what [`LogLimiter::flush`] (or, with `all`, [`LogLimiter::drain`]) returns,
    /// one warning per class, prefixed with `who`.
    pub fn report(&self, who: &str, all: bool) {
        let list = if all { self.drain() } else { self.flush() };
        for (class, n) in list {
            tracing::warn!("{who}: {n} similar message(s) suppressed ({class})");
        }
    }

    /// Lines admitted and lines suppressed so far (tests, statistics).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.logged.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// `warn_limited!(limiter, "class", "format", args...)`: a `tracing::warn!` that the
/// [`LogLimiter`] may suppress; the first line let through after suppressed ones says
/// how many there were.
#[macro_export]
macro_rules! warn_limited {
    ($lim:expr, $class:expr, $($arg:tt)+) => {
        match $lim.admit($class) {
            Some(0) => $crate::__tracing::warn!($($arg)+),
            Some(n) => $crate::__tracing::warn!(
                "{} ({} similar message(s) suppressed)",
                format_args!($($arg)+),
                n
            ),
            None => {}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> (FakeRelativeClock, LimitClock) {
        let c = FakeRelativeClock::default();
        (c.clone(), LimitClock::Fake(c))
    }

    #[test]
    fn throttle_gives_burst_then_waits() {
        let (c, clock) = fake();
        let t = Throttle::new(
            Rate {
                burst: 3,
                every: Duration::from_millis(10),
            },
            clock,
        );
        for _ in 0..3 {
            assert_eq!(t.admit(), Ok(()));
        }
        assert_eq!(t.admit(), Err(Duration::from_millis(10)));
        c.advance(Duration::from_millis(4));
        assert_eq!(t.admit(), Err(Duration::from_millis(6)));
        c.advance(Duration::from_millis(6));
        assert_eq!(t.admit(), Ok(()));
        assert!(t.admit().is_err());
    }

    #[test]
    fn log_limiter_bounds_each_class_and_counts_the_rest() {
        let (c, clock) = fake();
        let l = LogLimiter::new(
            Rate {
                burst: 2,
                every: Duration::from_secs(5),
            },
            clock,
        );
        let mut let_through = 0;
        for _ in 0..100_000 {
            if l.admit("bad op").is_some() {
                let_through += 1;
            }
        }
        assert_eq!(let_through, 2);
        // Another class has its own bucket.
        assert_eq!(l.admit("bad gref"), Some(0));
        assert_eq!(l.counts(), (3, 99_998));
        // Nothing to report until a line is allowed again.
        assert!(l.flush().is_empty());
        c.advance(Duration::from_secs(5));
        assert_eq!(l.flush(), vec![("bad op", 99_998)]);
        assert!(l.flush().is_empty(), "reported once");
        // Or reported with the next line let through.
        assert_eq!(l.admit("bad op"), None);
        c.advance(Duration::from_secs(5));
        assert_eq!(l.admit("bad op"), Some(1));
        assert_eq!(l.admit("bad op"), None);
        assert_eq!(l.drain(), vec![("bad op", 1)]);
        assert!(l.drain().is_empty());
    }
}
