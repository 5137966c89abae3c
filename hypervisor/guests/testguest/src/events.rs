//! Event channels: the shared_info page, pending bits and waiting on a port, and the
//! `ping` / `pong` roles (an interdomain channel between two guests).

use super::grant_table::grant_pages_to;
use super::grant_use::use_grants_from;
use super::smp::wait_until;
use super::timer::pvclock_ns;
use super::xen::{self, hypercall, Console};
use super::{err, Checks};
use core::fmt::Write;
use sluice_abi::hypercall::{Hypercall, SchedPoll, XenAddToPhysmap, XenErrno};
use sluice_abi::types::DOMID_SELF;

/// Where the event-channel guests map their shared_info page.
pub(super) const SHARED_INFO_GPA: u64 = 0x70_0000;

pub(super) fn map_shared_info(c: &mut Checks) {
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 0,
        idx: 0,
        gpfn: SHARED_INFO_GPA >> 12,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("memory_op add_to_physmap(shared_info)", r == 0, r);
    let mut bad = a;
    bad.gpfn = 0x10_0000; // 4 GiB: outside the domain
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut bad as *mut _ as u64, 0, 0, 0],
    );
    c.check(
        "add_to_physmap outside memory -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    bad.gpfn = a.gpfn;
    bad.domid = 77;
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut bad as *mut _ as u64, 0, 0, 0],
    );
    c.check(
        "add_to_physmap for another domain -> ESRCH",
        r == err(XenErrno::Esrch),
        r,
    );
    // The page now reads as shared_info: all event channels unmasked, none pending.
    c.check(
        "shared_info mapped (mask word 0 is zero)",
        xen::read64(SHARED_INFO_GPA + 2560) == 0,
        0,
    );
}

pub(super) fn evtchn(cmd: u64, arg: &mut [u32]) -> i64 {
    hypercall(
        Hypercall::EventChannelOp as u64,
        [cmd, arg.as_mut_ptr() as u64, 0, 0, 0],
    )
}

pub(super) fn pending(port: u32) -> bool {
    xen::read64(SHARED_INFO_GPA + 2048 + (port as u64 / 64) * 8) & (1 << (port % 64)) != 0
}

pub(super) fn clear_pending(port: u32) {
    let a = SHARED_INFO_GPA + 2048 + (port as u64 / 64) * 8;
    xen::write64(a, xen::read64(a) & !(1 << (port % 64)));
    xen::write64(SHARED_INFO_GPA + 8, 0); // evtchn_pending_sel
    xen::write8(SHARED_INFO_GPA, 0); // evtchn_upcall_pending
}

/// Blocks (SCHEDOP_block) until `port` is pending; false after 1000 wake-ups.
/// Whether `port` becomes pending within 10 s of guest time: yields once, then blocks in
/// SCHEDOP_poll (a count of yields is no measure of time: how long one takes is the
/// scheduler's business).
pub(super) fn wait_for(port: u32) -> bool {
    const LIMIT_NS: u64 = 10_000_000_000;
    let deadline = pvclock_ns() + LIMIT_NS;
    let ports = [port];
    // One yield first: what is due "at once" (a periodic timer's first event) comes at
    // the vCPU's next schedule, as on Xen.
    hypercall(Hypercall::SchedOp as u64, [1, 0, 0, 0, 0]);
    while !pending(port) {
        if pvclock_ns() >= deadline {
            return false;
        }
        let sp = SchedPoll {
            ports: ports.as_ptr() as u64,
            nr_ports: 1,
            _pad0: 0,
            timeout: deadline,
        };
        hypercall(
            Hypercall::SchedOp as u64,
            [3, &sp as *const _ as u64, 0, 0, 0],
        );
    }
    true
}

/// Offers an unbound port to `peer`, waits for its event, answers, closes.
pub(super) fn ping(c: &mut Checks, peer: u16) {
    map_shared_info(c);
    grant_pages_to(c, peer);
    // struct evtchn_alloc_unbound { domid_t dom, remote_dom; evtchn_port_t port; }
    let mut a = [(DOMID_SELF as u32) | ((peer as u32) << 16), 0];
    let r = evtchn(6, &mut a);
    let port = a[1];
    c.check("evtchn alloc_unbound", r == 0 && port == 1, r);
    let mut st = [DOMID_SELF as u32, port, 0, 0, 0, 0];
    let r = evtchn(5, &mut st);
    // On another CPU the peer may have bound to it already.
    c.check(
        "evtchn status: unbound to the peer (or bound by it already)",
        r == 0 && (st[2] == 1 || st[2] == 2) && st[4] == peer as u32,
        r,
    );
    let mut bad = [(peer as u32) | ((peer as u32) << 16), 0];
    let r = evtchn(6, &mut bad);
    c.check(
        "alloc_unbound for another domain -> EPERM",
        r == err(XenErrno::Eperm),
        r,
    );
    let _ = writeln!(Console, "ping: port {port} offered to d{peer}, blocking");
    c.check("event from the peer arrives", wait_for(port), 0);
    clear_pending(port);
    let mut st = [DOMID_SELF as u32, port, 0, 0, 0, 0];
    let r = evtchn(5, &mut st);
    c.check(
        "evtchn status: interdomain to the peer",
        r == 0 && st[2] == 2 && st[4] == peer as u32,
        r,
    );
    c.check(
        "the peer wrote its reply into the page granted to it",
        xen::page(0)[..15] == *b"reply from pong",
        0,
    );
    c.check(
        "the peer wrote into the page through its grant mapping",
        xen::page(0)[100..112] == *b"mapped write",
        0,
    );
    c.check(
        "the read-only granted page is unchanged",
        xen::page(1)[..9] == *b"read-only",
        0,
    );
    c.check(
        "the peer wrote into the page through grant 1000 (second table frame)",
        xen::page(0)[200..212] == *b"second frame",
        0,
    );
    let r = evtchn(4, &mut [port]);
    c.check("evtchn send to the peer", r == 0, r);
    // Unmask of a masked port with an event pending raises the upcall.
    let mask = SHARED_INFO_GPA + 2560;
    let pend = SHARED_INFO_GPA + 2048;
    xen::write64(mask, xen::read64(mask) | (1 << port));
    xen::write64(pend, xen::read64(pend) | (1 << port));
    xen::write8(SHARED_INFO_GPA, 0);
    let r = evtchn(9, &mut [port]);
    c.check(
        "evtchn unmask: mask cleared, pending event raises the upcall",
        r == 0 && xen::read64(mask) & (1 << port) == 0 && xen::read64(SHARED_INFO_GPA) & 0xFF == 1,
        r,
    );
    clear_pending(port);
    let r = evtchn(9, &mut [77]);
    c.check(
        "unmask of an unbound port -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let r = evtchn(3, &mut [port]);
    c.check("evtchn close", r == 0, r);
    let r = evtchn(4, &mut [port]);
    c.check(
        "send on a closed port -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let r = evtchn(4, &mut [5000]);
    c.check("send on port 5000 -> EINVAL", r == err(XenErrno::Einval), r);
    let r = evtchn(3, &mut [0]);
    c.check("close port 0 -> EINVAL", r == err(XenErrno::Einval), r);
    let r = hypercall(
        Hypercall::EventChannelOp as u64,
        [4, 0xdead_0000_0000, 0, 0, 0],
    );
    c.check(
        "evtchn send, unmapped pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = evtchn(99, &mut [0]);
    c.check(
        "evtchn unknown command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );
}

/// Binds to the peer's port 1, signals it, waits for the answer.
pub(super) fn pong(c: &mut Checks, peer: u16) {
    map_shared_info(c);
    // struct evtchn_bind_interdomain { domid_t remote_dom; evtchn_port_t remote_port, local_port; }
    let mut bad = [99, 1, 0];
    let r = evtchn(0, &mut bad);
    c.check(
        "bind_interdomain to domain 99 -> ESRCH",
        r == err(XenErrno::Esrch),
        r,
    );
    let mut bad = [peer as u32, 7, 0];
    let r = evtchn(0, &mut bad);
    c.check(
        "bind_interdomain to a port not offered -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    // (Bounded by time, not by yields: the peer may run on another CPU, or late.)
    let b = core::cell::Cell::new([peer as u32, 1, 0]);
    let r = core::cell::Cell::new(-1);
    wait_until(|| {
        let mut a = b.get();
        r.set(evtchn(0, &mut a));
        b.set(a);
        r.get() == 0
    });
    let (b, r) = (b.get(), r.get());
    let local = b[2];
    c.check("evtchn bind_interdomain", r == 0 && local != 0, r);
    c.check("a new interdomain port starts pending", pending(local), 0);
    clear_pending(local);
    use_grants_from(c, peer);
    let r = evtchn(4, &mut [local]);
    c.check("evtchn send to the peer", r == 0, r);
    c.check("answer from the peer arrives", wait_for(local), 0);
    clear_pending(local);
    let r = evtchn(3, &mut [local]);
    c.check("evtchn close (peer already closed its end)", r == 0, r);
    let mut st = [DOMID_SELF as u32, local, 0, 0, 0, 0];
    let r = evtchn(5, &mut st);
    c.check("evtchn status: closed", r == 0 && st[2] == 0, r);
    let mut st = [DOMID_SELF as u32, 4096, 0, 0, 0, 0];
    let r = evtchn(5, &mut st);
    c.check(
        "evtchn status of port 4096 -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
}
