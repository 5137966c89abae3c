//! Roles that only take time: `spinner` (TSC time without a hypercall) and `bench`
//! (hypercall and CPUID-exit round trips).

use super::xen::{self, cpuid, hypercall, Console};
use core::fmt::Write;
use sluice_abi::hypercall::Hypercall;

/// Spins for 100 ms of TSC time without a hypercall: only preemption lets others run.
pub(super) fn spinner() {
    let _ = writeln!(Console, "spinner: start");
    let hz = 1_000_000_000u64; // a lower bound for the TSC rate under TCG here
    let t0 = xen::rdtsc();
    // 250 ms at 1 GHz (about 80 ms at this host's 3 GHz): several 10 ms ticks.
    while xen::rdtsc() - t0 < hz / 4 {
        core::hint::spin_loop();
    }
    let _ = writeln!(Console, "spinner: done");
}

/// Round trip of a no-op hypercall (xen_version(XENVER_version)) and, for scale, of a
/// CPUID exit, in TSC cycles: the median of 21 batches of 1000.
pub(super) fn bench() {
    fn batch(f: &dyn Fn()) -> u64 {
        let mut per_call = [0u64; 21];
        for slot in per_call.iter_mut() {
            let t0 = xen::rdtsc();
            for _ in 0..1000 {
                f();
            }
            *slot = (xen::rdtsc() - t0) / 1000;
        }
        per_call.sort_unstable();
        per_call[10]
    }
    let hc = batch(&|| {
        hypercall(Hypercall::XenVersion as u64, [0; 5]);
    });
    let id = batch(&|| {
        cpuid(0x4000_0001);
    });
    let _ = writeln!(
        Console,
        "bench: hypercall round trip {hc} TSC cycles (median of 21 x 1000)"
    );
    let _ = writeln!(
        Console,
        "bench: cpuid exit round trip {id} TSC cycles (median of 21 x 1000)"
    );
}
