//! The fake TSC: 1 GHz, advanced only by tests.

use std::cell::Cell;

std::thread_local! {
    static TSC: Cell<u64> = const { Cell::new(0) };
}

pub fn calibrate_tsc_hz() -> u64 {
    1_000_000_000
}

pub fn rdtsc() -> u64 {
    TSC.get()
}

/// Test hook: time passes.
pub fn advance(ticks: u64) {
    TSC.set(TSC.get() + ticks);
}
