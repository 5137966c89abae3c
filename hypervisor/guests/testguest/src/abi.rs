//! The `abi` role: the Xen guest ABI as a PVH domain sees it (CPUID leaves, the hypercall
//! page and a direct VMMCALL, xen_version, console_io, memory_op, sched_op), hostile
//! arguments included.

use super::xen::{self, cpuid, hypercall, vmmcall_direct, Console};
use super::{err, Checks};
use core::fmt::Write;
use sluice_abi::hypercall::{Hypercall, XenErrno, XenFeatureInfo};

pub(super) fn abi_checks(c: &mut Checks) {
    let v = cpuid(0x4000_0001);
    c.check(
        "cpuid 0x40000001 version 4.17",
        v[0] == 0x4_0011,
        v[0] as i64,
    );
    let v = hypercall(Hypercall::XenVersion as u64, [0, 0, 0, 0, 0]);
    c.check(
        "xen_version(XENVER_version) through the hypercall page",
        v == 0x4_0011,
        v,
    );
    let v = vmmcall_direct(Hypercall::XenVersion as u64, [0, 0, 0, 0, 0]);
    c.check("xen_version through a direct VMMCALL", v == 0x4_0011, v);
    let mut fi = XenFeatureInfo {
        submap_idx: 0,
        submap: 0,
    };
    let r = hypercall(
        Hypercall::XenVersion as u64,
        [6, &mut fi as *mut _ as u64, 0, 0, 0],
    );
    c.check(
        "xen_version(get_features) auto_translated_physmap",
        r == 0 && fi.submap & (1 << 2) != 0,
        r,
    );
    let mut fi = XenFeatureInfo {
        submap_idx: 7,
        submap: 0,
    };
    let r = hypercall(
        Hypercall::XenVersion as u64,
        [6, &mut fi as *mut _ as u64, 0, 0, 0],
    );
    c.check(
        "get_features submap 7 -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let msg = b"console_io write\n";
    let r = hypercall(
        Hypercall::ConsoleIo as u64,
        [0, msg.len() as u64, msg.as_ptr() as u64, 0, 0],
    );
    c.check("console_io write", r == 0, r);

    // XENMEM_memory_map: struct xen_memory_map { nr_entries; buffer } of packed e820 entries.
    let mut e820 = [0u8; 4 * 20];
    let mut m = [4u64, e820.as_mut_ptr() as u64];
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [9, m.as_mut_ptr() as u64, 0, 0, 0],
    );
    let addr1 = u64::from_le_bytes(e820[20..28].try_into().unwrap());
    let size1 = u64::from_le_bytes(e820[28..36].try_into().unwrap());
    c.check(
        "memory_op memory_map: 2 entries, RAM from 1 MiB to 8 MiB",
        r == 0 && m[0] as u32 == 2 && addr1 == 0x10_0000 && size1 == 7 << 20 && e820[36] == 1,
        r,
    );
    let mut m = [4u64, 0xdead_0000_0000];
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [9, m.as_mut_ptr() as u64, 0, 0, 0],
    );
    c.check(
        "memory_map into an unmapped buffer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = hypercall(Hypercall::MemoryOp as u64, [999, 0, 0, 0, 0]);
    c.check(
        "memory_op unknown command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );

    // Hostile arguments.
    let r = hypercall(Hypercall::XenVersion as u64, [6, 0xdead_0000_0000, 0, 0, 0]);
    c.check(
        "get_features, unmapped pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = hypercall(Hypercall::XenVersion as u64, [6, 0x3000_0000, 0, 0, 0]);
    c.check(
        "get_features, mapped but not the domain's memory -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = hypercall(
        Hypercall::ConsoleIo as u64,
        [0, 16, 0xffff_8000_0000_0000, 0, 0],
    );
    c.check(
        "console_io, kernel-half pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    // The last 8 bytes of the domain's RAM, then memory it does not have: as Xen, the
    // reachable part is printed, then EFAULT (the write goes on in 1 KiB continuations).
    let tail = 0x80_0000 - 8;
    xen::write64(tail, u64::from_le_bytes(*b"the end\n"));
    let r = hypercall(Hypercall::ConsoleIo as u64, [0, 0x7fff_ffff, tail, 0, 0]);
    c.check(
        "console_io, count past the domain's memory -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = hypercall(
        Hypercall::ConsoleIo as u64,
        [0, u64::MAX, msg.as_ptr() as u64, 0, 0],
    );
    c.check(
        "console_io, count -1 -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let r = hypercall(
        Hypercall::ConsoleIo as u64,
        [77, 1, msg.as_ptr() as u64, 0, 0],
    );
    c.check(
        "console_io, unknown command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );
    let r = hypercall(
        Hypercall::XenVersion as u64,
        [0xffff_ffff_0000_0000, 0, 0, 0, 0],
    );
    c.check(
        "xen_version, huge command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );
    let r = hypercall(99, [0; 5]);
    c.check("hypercall 99 -> ENOSYS", r == err(XenErrno::Enosys), r);
    let r = vmmcall_direct(u64::MAX, [0; 5]);
    c.check("hypercall 2^64-1 -> ENOSYS", r == err(XenErrno::Enosys), r);
    let r = hypercall(Hypercall::SchedOp as u64, [99, 0, 0, 0, 0]);
    c.check(
        "sched_op unknown command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );
    let r = hypercall(Hypercall::SchedOp as u64, [2, 0xdead_0000_0000, 0, 0, 0]);
    c.check(
        "sched_op shutdown, unmapped pointer -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let bad_reason: u32 = 1000;
    let r = hypercall(
        Hypercall::SchedOp as u64,
        [2, &bad_reason as *const u32 as u64, 0, 0, 0],
    );
    c.check(
        "sched_op shutdown, unknown reason -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );

    // Let the other domains run (and the rogue one die) before finishing.
    for i in 0..3 {
        let r = hypercall(Hypercall::SchedOp as u64, [0, 0, 0, 0, 0]);
        c.check("sched_op yield", r == 0, r);
        let _ = writeln!(Console, "still running after yield {i}");
    }
}
