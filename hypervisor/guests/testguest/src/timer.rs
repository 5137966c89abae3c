//! Time: the PV clock, and the `timer` role (VIRQ_TIMER from single-shot and periodic
//! timers).

use super::events::{clear_pending, evtchn, map_shared_info, pending, wait_for, SHARED_INFO_GPA};
use super::smp::vcpu_op;
use super::xen::{self, hypercall, Console};
use super::{err, Checks};
use core::fmt::Write;
use sluice_abi::hypercall::{Hypercall, SchedPoll, XenErrno};
use sluice_abi::types::DOMID_SELF;

/// System time from the PV clock in vcpu_info 0 (struct vcpu_time_info at offset 32).
pub(super) fn pvclock_ns() -> u64 {
    let t = SHARED_INFO_GPA + 32;
    loop {
        let v0 = xen::read64(t) as u32;
        let tsc_ts = xen::read64(t + 8);
        let sys = xen::read64(t + 16);
        let w = xen::read64(t + 24);
        let (mul, shift) = (w as u32, (w >> 32) as u8 as i8);
        let v1 = xen::read64(t) as u32;
        if v0 == v1 && v0 & 1 == 0 {
            let d = (xen::rdtsc().wrapping_sub(tsc_ts) as u128) << shift;
            return sys + ((d * mul as u128) >> 32) as u64;
        }
    }
}

/// VIRQ_TIMER + VCPUOP_set_singleshot_timer: the event arrives, and not early.
pub(super) fn timer(c: &mut Checks) {
    map_shared_info(c);
    // struct evtchn_bind_virq { uint32_t virq, vcpu; evtchn_port_t port; }
    let mut b = [0, 0, 0];
    let r = evtchn(1, &mut b);
    let port = b[2];
    c.check("evtchn bind_virq(VIRQ_TIMER)", r == 0 && port != 0, r);
    let r = evtchn(1, &mut [0, 0, 0]);
    c.check(
        "bind_virq(VIRQ_TIMER) again -> EEXIST",
        r == err(XenErrno::Eexist),
        r,
    );
    let r = evtchn(1, &mut [99, 0, 0]);
    c.check("bind_virq(99) -> EINVAL", r == err(XenErrno::Einval), r);
    let mut st = [DOMID_SELF as u32, port, 0, 0, 0, 0];
    let r = evtchn(5, &mut st);
    c.check("evtchn status: virq", r == 0 && st[2] == 4 && st[4] == 0, r);
    let t0 = pvclock_ns();
    c.check("PV clock runs", pvclock_ns() >= t0 && t0 > 0, t0 as i64);
    for (i, delay_ms) in [5u64, 20, 50].into_iter().enumerate() {
        let deadline = pvclock_ns() + delay_ms * 1_000_000;
        let mut t = [deadline, 0];
        let r = hypercall(
            Hypercall::VcpuOp as u64,
            [8, 0, t.as_mut_ptr() as u64, 0, 0],
        );
        c.check("vcpu_op set_singleshot_timer", r == 0, r);
        let arrived = wait_for(port);
        let now = pvclock_ns();
        clear_pending(port);
        c.check("VIRQ_TIMER arrives", arrived, i as i64);
        c.check(
            "VIRQ_TIMER not before its deadline",
            now >= deadline,
            (deadline - now) as i64,
        );
        let _ = writeln!(
            Console,
            "timer: {delay_ms} ms timer fired {} us after its deadline",
            now.saturating_sub(deadline) / 1000
        );
    }
    let mut t = [1u64, 1]; // long past, VCPU_SSHOTTMR_future
    let r = hypercall(
        Hypercall::VcpuOp as u64,
        [8, 0, t.as_mut_ptr() as u64, 0, 0],
    );
    c.check(
        "singleshot in the past with FUTURE -> ETIME",
        r == err(XenErrno::Etime),
        r,
    );
    let r = hypercall(
        Hypercall::VcpuOp as u64,
        [8, 3, t.as_mut_ptr() as u64, 0, 0],
    );
    c.check(
        "singleshot on vcpu 3 -> ENOENT",
        r == err(XenErrno::Enoent),
        r,
    );
    let r = hypercall(Hypercall::VcpuOp as u64, [8, 0, 0xdead_0000_0000, 0, 0]);
    c.check(
        "singleshot, unmapped pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = hypercall(Hypercall::VcpuOp as u64, [9, 0, 0, 0, 0]);
    c.check("vcpu_op stop_singleshot_timer", r == 0, r);
    periodic(c, port);
    // SCHEDOP_poll: timeout with nothing pending; a masked port woken by its timer.
    let poll = |ports: &[u32], timeout: u64| {
        let p = SchedPoll {
            ports: ports.as_ptr() as u64,
            nr_ports: ports.len() as u32,
            _pad0: 0,
            timeout,
        };
        hypercall(
            Hypercall::SchedOp as u64,
            [3, &p as *const _ as u64, 0, 0, 0],
        )
    };
    let deadline = pvclock_ns() + 10_000_000;
    let r = poll(&[port], deadline);
    let now = pvclock_ns();
    c.check(
        "sched_op poll times out, not early",
        r == 0 && now >= deadline && !pending(port),
        r,
    );
    let mask = SHARED_INFO_GPA + 2560;
    xen::write64(mask, xen::read64(mask) | (1 << port));
    let deadline = pvclock_ns() + 5_000_000;
    let mut t = [deadline, 0];
    hypercall(
        Hypercall::VcpuOp as u64,
        [8, 0, t.as_mut_ptr() as u64, 0, 0],
    );
    let r = poll(&[port], 0);
    c.check(
        "sched_op poll wakes on a masked port's event",
        r == 0 && pending(port),
        r,
    );
    let r = poll(&[port], 0);
    c.check(
        "sched_op poll returns at once when a port is pending",
        r == 0,
        r,
    );
    clear_pending(port);
    xen::write64(mask, 0);
    let r = poll(&[port; 9], 0);
    c.check(
        "sched_op poll of 9 ports -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let r = poll(&[4096], 0);
    c.check(
        "sched_op poll of port 4096 -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let r = evtchn(3, &mut [port]);
    c.check("close the VIRQ port", r == 0, r);
}

/// VCPUOP_set/stop_periodic_timer on the VIRQ_TIMER `port`: hostile arguments, a 10 ms
/// timer's events (none earlier than its period allows), none after stop, and a
/// single-shot timer delivered while a periodic one is armed.
pub(super) fn periodic(c: &mut Checks, port: u32) {
    const SET: u64 = 6;
    const STOP: u64 = 7;
    let r = vcpu_op(STOP, 0, 0);
    c.check("vcpu_op stop_periodic_timer (not running)", r == 0, r);
    let r = vcpu_op(STOP, 3, 0);
    c.check(
        "stop_periodic_timer on vcpu 3 -> ENOENT",
        r == err(XenErrno::Enoent),
        r,
    );
    for (period, what) in [
        (999_999u64, "periodic 999999 ns -> EINVAL"),
        (0, "periodic 0 ns -> EINVAL"),
        (1 << 62, "periodic 2^62 ns (over STIME_DELTA_MAX) -> EINVAL"),
    ] {
        let p = [period];
        let r = vcpu_op(SET, 0, p.as_ptr() as u64);
        c.check(what, r == err(XenErrno::Einval), r);
    }
    let r = vcpu_op(SET, 0, 0xdead_0000_0000);
    c.check(
        "periodic, unmapped pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = vcpu_op(SET, 0, 0xffff_8000_0000_0000);
    c.check(
        "periodic, kernel-half pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let p = [10_000_000u64];
    let r = vcpu_op(SET, 3, p.as_ptr() as u64);
    c.check(
        "periodic on vcpu 3 -> ENOENT",
        r == err(XenErrno::Enoent),
        r,
    );
    // The minimum is accepted.
    let p = [1_000_000u64];
    let r = vcpu_op(SET, 0, p.as_ptr() as u64);
    let r2 = vcpu_op(STOP, 0, 0);
    c.check("periodic 1 ms accepted, stopped", r == 0 && r2 == 0, r | r2);
    // A 10 ms timer for 400 ms: the n-th event (from 0) never before n periods after
    // the set (each fires no sooner than a period after the last).
    const PERIOD: u64 = 10_000_000;
    const WINDOW: u64 = 400_000_000;
    clear_pending(port);
    let p = [PERIOD];
    let t_set = pvclock_ns();
    let r = vcpu_op(SET, 0, p.as_ptr() as u64);
    c.check("vcpu_op set_periodic_timer 10 ms", r == 0, r);
    let (mut n, mut early, mut worst_late, mut min_gap) = (0u64, 0u64, 0u64, u64::MAX);
    let mut last = 0u64;
    while pvclock_ns() < t_set + WINDOW {
        if !wait_for(port) {
            break;
        }
        let now = pvclock_ns();
        clear_pending(port);
        let earliest = t_set + n * PERIOD;
        if now < earliest {
            early += 1;
        }
        // Lateness against the schedule of an undelayed timer.
        worst_late = worst_late.max(now.saturating_sub(earliest));
        if n > 0 {
            min_gap = min_gap.min(now - last);
        }
        last = now;
        n += 1;
    }
    let r = vcpu_op(STOP, 0, 0);
    c.check("vcpu_op stop_periodic_timer", r == 0, r);
    let _ = writeln!(
        Console,
        "timer: periodic 10 ms: {n} events in 400 ms, worst {} us after schedule, \
         shortest gap seen {} us",
        worst_late / 1000,
        if n > 1 { min_gap / 1000 } else { 0 }
    );
    c.check(
        "periodic VIRQ_TIMER: at least 5 events in 400 ms",
        n >= 5,
        n as i64,
    );
    c.check(
        "periodic VIRQ_TIMER: none earlier than its period allows",
        early == 0,
        early as i64,
    );
    // Stopped: nothing in the next 50 ms (a poll on the port times out).
    clear_pending(port);
    let deadline = pvclock_ns() + 50_000_000;
    let ports = [port];
    let sp = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: 1,
        _pad0: 0,
        timeout: deadline,
    };
    let r = hypercall(
        Hypercall::SchedOp as u64,
        [3, &sp as *const _ as u64, 0, 0, 0],
    );
    let now = pvclock_ns();
    c.check(
        "periodic stopped: no VIRQ_TIMER in the next 50 ms",
        r == 0 && now >= deadline && !pending(port),
        r,
    );
    // Both timers: a 20 s periodic one (its first event at once), then a 5 ms
    // single-shot one, which arrives long before the periodic one's next.
    let p = [20_000_000_000u64];
    let t_set = pvclock_ns();
    let r = vcpu_op(SET, 0, p.as_ptr() as u64);
    let first = wait_for(port);
    clear_pending(port);
    c.check("periodic 20 s: first event at once", r == 0 && first, r);
    let deadline = pvclock_ns() + 5_000_000;
    let t = [deadline, 0];
    let r = vcpu_op(8, 0, t.as_ptr() as u64);
    let arrived = wait_for(port);
    let now = pvclock_ns();
    clear_pending(port);
    c.check(
        "single-shot VIRQ_TIMER while periodic runs: not early, before the periodic one",
        r == 0 && arrived && now >= deadline && now < t_set + 20_000_000_000,
        r,
    );
    let r = vcpu_op(STOP, 0, 0);
    c.check("vcpu_op stop_periodic_timer again", r == 0, r);
    clear_pending(port);
}
