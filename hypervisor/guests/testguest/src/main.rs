//! A PVH test guest for the Sluice hypervisor. Its command line (`name=... role=...`)
//! picks what it checks; results go to the Xen console as `ok ...` / `FAIL ...`
//! lines and a final `GUEST PASS` / `GUEST FAIL`.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod boot;
mod hostile_cpu;
mod hostile_mem;
mod passthrough;
mod pt_bigbar;
mod pt_msibench;
mod pt_msix;
mod stale_tlb;
mod xen;

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sluice_abi::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef, GrantEntryV1,
};
use sluice_abi::hypercall::{Hypercall, SchedPoll, XenAddToPhysmap, XenErrno, XenFeatureInfo};
use sluice_abi::types::DOMID_SELF;
use xen::{cpuid, hypercall, vmmcall_direct, Console};
use zerocopy::IntoBytes;

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: i64) {
        if ok {
            let _ = writeln!(Console, "ok {what}");
        } else {
            self.failed += 1;
            let _ = writeln!(Console, "FAIL {what} (got {detail:#x})");
        }
    }
}

fn err(e: XenErrno) -> i64 {
    e.to_ret()
}

#[no_mangle]
extern "C" fn guest_main(start_info: u64) -> ! {
    // The hypercall page first: everything else talks through it.
    let sig = cpuid(0x4000_0000);
    let mut c = Checks { failed: 0 };
    let sig_ok = sig[1] == u32::from_le_bytes(*b"XenV")
        && sig[2] == u32::from_le_bytes(*b"MMXe")
        && sig[3] == u32::from_le_bytes(*b"nVMM")
        && sig[0] >= 0x4000_0002;
    xen::init_hypercall_page(cpuid(0x4000_0002)[1]);
    xen::init_console();
    c.check("cpuid 0x40000000 XenVMMXenVMM", sig_ok, sig[0] as i64);
    let cmdline = xen::cmdline(start_info);
    let role = cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("role="))
        .unwrap_or("abi");
    let _ = writeln!(Console, "guest: role {role}, start info at {start_info:#x}");
    c.check(
        "start info magic",
        xen::start_info_magic(start_info) == sluice_abi::start_info::XEN_HVM_START_MAGIC_VALUE,
        0,
    );
    match role {
        "abi" => abi_checks(&mut c),
        "rogue" => {
            let _ = writeln!(Console, "rogue: writing to gpa 0x20000000 (not mine)");
            xen::poke(0x2000_0000);
            c.check("rogue was stopped", false, 0);
        }
        "bench" => bench(),
        "ping" => ping(&mut c, peer(cmdline)),
        "timer" => timer(&mut c),
        "spinner" => spinner(),
        "smp" => smp(&mut c),
        "msr" => {
            // With no IDT, the #GP for an intercepted host MSR becomes a triple fault.
            let _ = writeln!(Console, "msr: writing VM_HSAVE_PA (0xC0010117)");
            xen::wrmsr(0xC001_0117, 0x1000);
            c.check("a write to the host's VM_HSAVE_PA was refused", false, 0);
        }
        "lender" => lender(&mut c, peer(cmdline)),
        "rogue-mapper" => rogue_mapper(&mut c, peer(cmdline)),
        "pong" => pong(&mut c, peer(cmdline)),
        "hm-granter" => hostile_mem::granter(&mut c, cmdline),
        "hm-mapper" => hostile_mem::mapper(&mut c, cmdline),
        "hm-regrant" => hostile_mem::regrant_target(&mut c, cmdline),
        "tlb-granter" => stale_tlb::granter(&mut c, cmdline),
        "tlb-reader" => stale_tlb::reader(&mut c, cmdline),
        "flood" => hostile_cpu::flood(&mut c, peer(cmdline)),
        "flood-victim" => hostile_cpu::flood_victim(&mut c, peer(cmdline)),
        "db-loop" => hostile_cpu::db_loop(&mut c),
        "intercepts" => hostile_cpu::intercepts(&mut c, peer(cmdline) as u64 + 1),
        "pt-edu" => passthrough::edu(&mut c, cmdline),
        "pt-snoop" => passthrough::snoop(&mut c, cmdline),
        "pt-dying" => passthrough::dying(&mut c, cmdline),
        "pt-pair" => passthrough::pair(&mut c),
        "pt-msix" => pt_msix::msix(&mut c),
        "pt-msibench" => pt_msibench::msibench(&mut c, cmdline),
        "reboot" => {
            // SCHEDOP_shutdown(SHUTDOWN_reboot) at once: the hypervisor makes the domain
            // again, as often as it allows (a guest in a reboot loop).
            let _ = writeln!(Console, "reboot: asking for a reboot");
            xen::shutdown(1)
        }
        "pt-bigbar" => pt_bigbar::bigbar(&mut c, cmdline),
        "triple" => {
            let _ = writeln!(Console, "triple: loading an empty IDT and faulting");
            xen::triple_fault();
        }
        _ => c.check("known role", false, 0),
    }
    let _ = writeln!(
        Console,
        "{}",
        if c.failed == 0 {
            "GUEST PASS"
        } else {
            "GUEST FAIL"
        }
    );
    xen::shutdown(if c.failed == 0 { 0 } else { 3 })
}

fn abi_checks(c: &mut Checks) {
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

fn peer(cmdline: &str) -> u16 {
    cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("peer="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Where the event-channel guests map their shared_info page.
const SHARED_INFO_GPA: u64 = 0x70_0000;

fn map_shared_info(c: &mut Checks) {
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

fn evtchn(cmd: u64, arg: &mut [u32]) -> i64 {
    hypercall(
        Hypercall::EventChannelOp as u64,
        [cmd, arg.as_mut_ptr() as u64, 0, 0, 0],
    )
}

fn pending(port: u32) -> bool {
    xen::read64(SHARED_INFO_GPA + 2048 + (port as u64 / 64) * 8) & (1 << (port % 64)) != 0
}

fn clear_pending(port: u32) {
    let a = SHARED_INFO_GPA + 2048 + (port as u64 / 64) * 8;
    xen::write64(a, xen::read64(a) & !(1 << (port % 64)));
    xen::write64(SHARED_INFO_GPA + 8, 0); // evtchn_pending_sel
    xen::write8(SHARED_INFO_GPA, 0); // evtchn_upcall_pending
}

/// Blocks (SCHEDOP_block) until `port` is pending; false after 1000 wake-ups.
/// Whether `port` becomes pending within 10 s of guest time: yields once, then blocks in
/// SCHEDOP_poll (a count of yields is no measure of time: how long one takes is the
/// scheduler's business).
fn wait_for(port: u32) -> bool {
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

const GRANT_TABLE_GPA: u64 = 0x70_1000;
const REF_RW: u32 = 8;
const REF_RO: u32 = 9;
const REF_OTHER: u32 = 10;
/// Grants in the table's second frame (entries 512..1024): page 1 read-only, page 0
/// read-write.
const REF2_RO: u32 = 515;
const REF2_RW: u32 = 1000;
/// Grant table frames the hypervisor allows (its max_grant_frames).
const MAX_GRANT_FRAMES: u32 = 32;

/// GNTTABOP_setup_table for `dom`, `nr` frames into `list`, with `count` ops.
fn setup_table(dom: u16, nr: u32, list: u64, count: u64) -> (i64, i16) {
    let mut op = GnttabSetupTable {
        dom,
        nr_frames: nr,
        status: 99,
        frame_list: list,
        ..Default::default()
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [2, &mut op as *mut _ as u64, count, 0, 0],
    );
    (r, op.status)
}

/// GNTTABOP_query_size for `dom`: (return value, status, nr_frames, max_nr_frames).
fn query_size(dom: u16, count: u64) -> (i64, i16, u32, u32) {
    let mut q = GnttabQuerySize {
        dom,
        status: 99,
        ..Default::default()
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [6, &mut q as *mut _ as u64, count, 0, 0],
    );
    (r, q.status, q.nr_frames, q.max_nr_frames)
}

/// Grows our grant table to two frames (setup_table, add_to_physmap of frame 1) and
/// checks what setup_table and query_size report, and their hostile cases.
fn grant_table_frames(c: &mut Checks, peer: u16) {
    let (r, st, nr, max) = query_size(DOMID_SELF, 1);
    c.check(
        "gnttab query_size: one frame of 32 at first",
        r == 0 && st == 0 && nr == 1 && max == MAX_GRANT_FRAMES,
        (nr as i64) << 32 | max as i64,
    );
    let mut list = [0u64; 4];
    let (r, st) = setup_table(DOMID_SELF, 2, list.as_mut_ptr() as u64, 1);
    c.check(
        "gnttab setup_table(2): frame 0's GFN, frame 1 not mapped (INVALID_M2P_ENTRY)",
        r == 0 && st == 0 && list[0] == GRANT_TABLE_GPA >> 12 && list[1] == !0 && list[2] == 0,
        list[1] as i64,
    );
    let (_, _, nr, _) = query_size(DOMID_SELF, 1);
    c.check(
        "query_size after setup_table(2): 2 frames",
        nr == 2,
        nr as i64,
    );
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 1,
        idx: 1,
        gpfn: (GRANT_TABLE_GPA >> 12) + 1,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("add_to_physmap(grant table frame 1)", r == 0, r);
    let (r, st) = setup_table(DOMID_SELF, 2, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table(2) again: both frames' GFNs, no growth",
        r == 0
            && st == 0
            && list[1] == (GRANT_TABLE_GPA >> 12) + 1
            && query_size(DOMID_SELF, 1).2 == 2,
        list[1] as i64,
    );
    a.idx = MAX_GRANT_FRAMES as u64;
    a.gpfn = (GRANT_TABLE_GPA >> 12) + 2;
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check(
        "add_to_physmap(grant frame 32, the maximum) -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let (r, st) = setup_table(
        DOMID_SELF,
        MAX_GRANT_FRAMES + 1,
        list.as_mut_ptr() as u64,
        1,
    );
    c.check(
        "setup_table(33 frames) -> GNTST_general_error",
        r == 0 && st == -1,
        st as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, u32::MAX, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table(0xffffffff frames) -> GNTST_general_error",
        r == 0 && st == -1,
        st as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, 1, 0xdead_0000_0000, 1);
    c.check(
        "setup_table, unmapped frame_list -> GNTST_bad_virt_addr",
        r == 0 && st == -5,
        st as i64,
    );
    let (r, st) = setup_table(peer, 1, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table for the peer -> GNTST_permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let (r, st) = setup_table(99, 1, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table for domain 99 -> GNTST_bad_domain",
        r == 0 && st == -2,
        st as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, 1, list.as_mut_ptr() as u64, 2);
    c.check(
        "setup_table with count 2 -> EINVAL (untouched)",
        r == err(XenErrno::Einval) && st == 99,
        r,
    );
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [2, 0xdead_0000_0000, 1, 0, 0],
    );
    c.check(
        "setup_table, unmapped op -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let (_, _, nr, max) = query_size(DOMID_SELF, 1);
    c.check(
        "hostile setup_tables left the table at 2 frames of 32",
        nr == 2 && max == MAX_GRANT_FRAMES,
        nr as i64,
    );
    // add_to_physmap of frame 3 grows the table to 4 frames (frame 2 allocated but
    // not mapped).
    a.idx = 3;
    a.gpfn = (GRANT_TABLE_GPA >> 12) + 3;
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    let (_, _, nr, _) = query_size(DOMID_SELF, 1);
    c.check(
        "add_to_physmap(grant table frame 3) grows the table to 4 frames",
        r == 0 && nr == 4,
        (r << 8) | nr as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, 4, list.as_mut_ptr() as u64, 1);
    let base = GRANT_TABLE_GPA >> 12;
    c.check(
        "setup_table(4): frames 0, 1, 3 at their GFNs, frame 2 INVALID_M2P_ENTRY",
        r == 0 && st == 0 && list == [base, base + 1, !0, base + 3],
        list[2] as i64,
    );
    let (r, st, _, _) = query_size(peer, 1);
    c.check(
        "query_size of the peer -> GNTST_permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let (r, st, _, _) = query_size(99, 1);
    c.check(
        "query_size of domain 99 -> GNTST_bad_domain",
        r == 0 && st == -2,
        st as i64,
    );
    let (r, _, _, _) = query_size(DOMID_SELF, 3);
    c.check(
        "query_size with count 3 -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
}

/// Maps the grant table and grants `peer` page 0 read-write and page 1 read-only, and
/// page 2 to a domain that is not `peer`.
fn grant_pages_to(c: &mut Checks, peer: u16) {
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 1,
        idx: 0,
        gpfn: GRANT_TABLE_GPA >> 12,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("memory_op add_to_physmap(grant table frame 0)", r == 0, r);
    grant_table_frames(c, peer);
    xen::page_mut(0)[..15].copy_from_slice(b"hello from ping");
    xen::page_mut(1)[..9].copy_from_slice(b"read-only");
    let entries = [
        (
            REF_RW,
            GrantEntryV1::permit_access(peer, (xen::page_addr(0) >> 12) as u32, false),
        ),
        (
            REF_RO,
            GrantEntryV1::permit_access(peer, (xen::page_addr(1) >> 12) as u32, true),
        ),
        (
            REF_OTHER,
            GrantEntryV1::permit_access(peer + 40, (xen::page_addr(2) >> 12) as u32, false),
        ),
        (
            REF2_RO,
            GrantEntryV1::permit_access(peer, (xen::page_addr(1) >> 12) as u32, true),
        ),
        (
            REF2_RW,
            GrantEntryV1::permit_access(peer, (xen::page_addr(0) >> 12) as u32, false),
        ),
    ];
    for (r, e) in entries {
        let raw = u64::from_le_bytes(e.as_bytes().try_into().unwrap());
        xen::write64(GRANT_TABLE_GPA + r as u64 * 8, raw);
    }
}

fn gnttab_copy(op: &mut GnttabCopy) -> (i64, i16) {
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [5, op as *mut _ as u64, 1, 0, 0],
    );
    (r, op.status)
}

/// Reads and writes the peer's granted pages with GNTTABOP_copy; is refused the rest.
fn use_grants_from(c: &mut Checks, peer: u16) {
    let (r, st, nr, max) = query_size(DOMID_SELF, 1);
    c.check(
        "gnttab query_size",
        r == 0 && st == 0 && nr == 1 && max == MAX_GRANT_FRAMES,
        r,
    );
    let mine = xen::page_addr(0) >> 12;
    let copy = |src: GnttabCopyPtr, dst: GnttabCopyPtr, len: u16, flags: u16| GnttabCopy {
        source: src,
        dest: dst,
        len,
        flags,
        status: 99,
        _pad0: 0,
    };
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, peer, 0),
        GnttabCopyPtr::with_gmfn(mine, DOMID_SELF, 0),
        15,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy from a granted page",
        r == 0 && st == 0 && xen::page(0)[..15] == *b"hello from ping",
        st as i64,
    );
    xen::page_mut(1)[..15].copy_from_slice(b"reply from pong");
    let mut op = copy(
        GnttabCopyPtr::with_gmfn(mine + 1, DOMID_SELF, 0),
        GnttabCopyPtr::with_gref(REF_RW, peer, 0),
        15,
        2,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy into a page granted read-write",
        r == 0 && st == 0,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gmfn(mine + 1, DOMID_SELF, 0),
        GnttabCopyPtr::with_gref(REF_RO, peer, 0),
        15,
        2,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy into a read-only grant -> GNTST_permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_OTHER, peer, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from a page granted to another domain -> permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gmfn(mine, peer, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        0,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from the peer's frame by number -> permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(2048, peer, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from grant ref 2048 (past the peer's 4 frames) -> GNTST_bad_gntref",
        r == 0 && st == -3,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, peer, 0),
        GnttabCopyPtr::with_gref(u32::MAX, DOMID_SELF, 0),
        16,
        3,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy into our own grant ref 0xffffffff -> GNTST_bad_gntref",
        r == 0 && st == -3,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, peer, 4000),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        200,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy crossing the page end -> GNTST_bad_copy_arg",
        r == 0 && st == -10,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, 99, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from domain 99 -> GNTST_bad_domain",
        r == 0 && st == -2,
        st as i64,
    );
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [5, 0xdead_0000_0000, 1, 0, 0],
    );
    c.check(
        "gnttab copy, unmapped op array -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    grant_map_checks(c, peer);
    second_frame_checks(c, peer);
    let r = hypercall(Hypercall::GrantTableOp as u64, [99, 0, 0, 0, 0]);
    c.check(
        "gnttab unknown command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );
}

/// Copies from and into the peer's grants in its table's second frame, and maps one.
fn second_frame_checks(c: &mut Checks, peer: u16) {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    let mine = xen::page_addr(0) >> 12;
    xen::page_mut(2)[300..309].fill(0);
    let mut op = GnttabCopy {
        source: GnttabCopyPtr::with_gref(REF2_RO, peer, 0),
        dest: GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 300),
        len: 9,
        flags: 1,
        status: 99,
        _pad0: 0,
    };
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy from grant 515 (the peer's second table frame)",
        r == 0 && st == 0 && xen::page(2)[300..309] == *b"read-only",
        st as i64,
    );
    xen::page_mut(1)[500..512].copy_from_slice(b"second frame");
    let mut op = GnttabCopy {
        source: GnttabCopyPtr::with_gmfn(mine + 1, DOMID_SELF, 500),
        dest: GnttabCopyPtr::with_gref(REF2_RW, peer, 200),
        len: 12,
        flags: 2,
        status: 99,
        _pad0: 0,
    };
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy into grant 1000 (second frame, read-write)",
        r == 0 && st == 0,
        st as i64,
    );
    let at = xen::page_addr(2);
    let (st, h) = gnttab_map(REF2_RO, peer, at, HOST_MAP | READONLY);
    c.check(
        "map_grant_ref of grant 515: the peer's read-only page appears",
        st == 0 && xen::page(2)[..9] == *b"read-only",
        st as i64,
    );
    let (st2, _) = gnttab_map(REF2_RO, peer, xen::page_addr(0), HOST_MAP);
    c.check(
        "map grant 515 (read-only) writable -> permission_denied",
        st2 == -8,
        st2 as i64,
    );
    let st = if st == 0 { gnttab_unmap(at, h) } else { st };
    c.check(
        "unmap grant 515: our own page is back",
        st == 0 && xen::page(2)[300..309] == *b"read-only",
        st as i64,
    );
}

fn gnttab_map(gref: u32, dom: u16, host_addr: u64, flags: u32) -> (i16, u32) {
    let mut op = GnttabMapGrantRef {
        host_addr,
        flags,
        gref,
        dom,
        status: 99,
        handle: 0,
        dev_bus_addr: 0,
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [0, &mut op as *mut _ as u64, 1, 0, 0],
    );
    if r != 0 {
        return (r as i16, 0);
    }
    (op.status, op.handle)
}

fn gnttab_unmap(host_addr: u64, handle: u32) -> i16 {
    let mut op = GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 99,
        _pad0: 0,
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [1, &mut op as *mut _ as u64, 1, 0, 0],
    );
    if r != 0 {
        return r as i16;
    }
    op.status
}

/// Maps the peer's granted pages into our physmap, writes through the read-write one.
fn grant_map_checks(c: &mut Checks, peer: u16) {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    let (rw_at, ro_at) = (xen::page_addr(2), xen::page_addr(1));
    let (st, h_rw) = gnttab_map(REF_RW, peer, rw_at, HOST_MAP);
    c.check(
        "gnttab map_grant_ref read-write: the peer's page appears",
        st == 0 && xen::page(2)[..15] == *b"reply from pong",
        st as i64,
    );
    xen::page_mut(2)[100..112].copy_from_slice(b"mapped write");
    let (st, h_ro) = gnttab_map(REF_RO, peer, ro_at, HOST_MAP | READONLY);
    c.check(
        "gnttab map_grant_ref read-only",
        st == 0 && xen::page(1)[..9] == *b"read-only",
        st as i64,
    );
    let spare = xen::page_addr(0);
    let (st, _) = gnttab_map(REF_RO, peer, spare, HOST_MAP);
    c.check(
        "map a read-only grant writable -> permission_denied",
        st == -8,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_OTHER, peer, spare, HOST_MAP);
    c.check(
        "map a page granted to another domain -> permission_denied",
        st == -8,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, peer, spare, 0);
    c.check(
        "map without GNTMAP_host_map -> general_error",
        st == -1,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, peer, spare + 8, HOST_MAP);
    c.check(
        "map at a misaligned address -> bad_virt_addr",
        st == -5,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, peer, 0x3000_0000, HOST_MAP);
    c.check(
        "map outside our memory -> bad_virt_addr",
        st == -5,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, 99, spare, HOST_MAP);
    c.check("map from domain 99 -> bad_domain", st == -2, st as i64);
    let st = gnttab_unmap(spare, h_rw);
    c.check(
        "unmap with the wrong address -> bad_handle",
        st == -4,
        st as i64,
    );
    let st = gnttab_unmap(rw_at, 77);
    c.check("unmap handle 77 -> bad_handle", st == -4, st as i64);
    let st = gnttab_unmap(rw_at, h_rw);
    c.check(
        "gnttab unmap_grant_ref: our own page is back",
        st == 0 && xen::page(2)[100..112] != *b"mapped write",
        st as i64,
    );
    let st = gnttab_unmap(ro_at, h_ro);
    c.check(
        "unmap the read-only mapping",
        st == 0 && xen::page(1)[..15] == *b"reply from pong",
        st as i64,
    );
}

/// Grants `peer` page 0 read-write and page 1 read-only, lets it run (it maps both and
/// is killed for writing to the read-only one), then checks its write arrived.
fn lender(c: &mut Checks, peer: u16) {
    grant_pages_to(c, peer);
    // The mapper may run on another CPU, before or after us: wait (yielding) for its
    // write through the read-write mapping, then for that grant to be released (its
    // GTF_reading cleared), which happens only when the mapper is killed.
    let arrived = wait_until(|| xen::page(0)[..12] == *b"mapper wrote");
    c.check(
        "the mapper's write through its read-write mapping arrived",
        arrived,
        0,
    );
    let rw_flags = || xen::read64(GRANT_TABLE_GPA + REF_RW as u64 * 8) & 0xFFFF;
    const GTF_READING: u64 = 1 << 3;
    let released = wait_until(|| rw_flags() & GTF_READING == 0);
    c.check(
        "the mapper's mappings were released (it was killed)",
        arrived && released,
        rw_flags() as i64,
    );
    c.check(
        "the read-only page survived the mapper's write attempt",
        xen::page(1)[..9] == *b"read-only",
        0,
    );
}

fn rogue_mapper(c: &mut Checks, peer: u16) {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    // The lender may not have written its grant entries yet: retry after yielding.
    // (Bounded by time, not by yields: the lender may run on another CPU, or late.)
    let st = core::cell::Cell::new(-1);
    wait_until(|| {
        st.set(gnttab_map(REF_RW, peer, xen::page_addr(2), HOST_MAP).0);
        st.get() == 0
    });
    let st = st.get();
    c.check("map the lender's read-write grant", st == 0, st as i64);
    xen::page_mut(2)[..12].copy_from_slice(b"mapper wrote");
    let (st, _) = gnttab_map(REF_RO, peer, xen::page_addr(1), HOST_MAP | READONLY);
    c.check(
        "map the lender's read-only grant",
        st == 0 && xen::page(1)[..9] == *b"read-only",
        st as i64,
    );
    let _ = writeln!(Console, "rogue-mapper: writing to the read-only mapping");
    xen::page_mut(1)[0] = b'X';
    c.check("a write to a read-only grant mapping was stopped", false, 0);
}

/// Offers an unbound port to `peer`, waits for its event, answers, closes.
fn ping(c: &mut Checks, peer: u16) {
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
fn pong(c: &mut Checks, peer: u16) {
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

/// System time from the PV clock in vcpu_info 0 (struct vcpu_time_info at offset 32).
fn pvclock_ns() -> u64 {
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
fn timer(c: &mut Checks) {
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
fn periodic(c: &mut Checks, port: u32) {
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

/// Spins for 100 ms of TSC time without a hypercall: only preemption lets others run.
fn spinner() {
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
fn bench() {
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

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Console, "GUEST FAIL: panic: {info}");
    xen::shutdown(3)
}

extern "C" {
    fn pvh_ap_start32();
    static g_ap_stack_top: u8;
}

/// What vCPU 1 reports to vCPU 0 (shared memory: the same physmap).
static AP_ID: AtomicU32 = AtomicU32::new(u32::MAX);
static AP_RSP: AtomicU64 = AtomicU64::new(0);
static AP_VERSION: AtomicU64 = AtomicU64::new(0);
/// 1: ran and about to go down; 2: resumed after VCPUOP_up again.
static AP_STAGE: AtomicU32 = AtomicU32::new(0);

fn vcpu_op(cmd: u64, vcpu: u64, arg: u64) -> i64 {
    hypercall(Hypercall::VcpuOp as u64, [cmd, vcpu, arg, 0, 0])
}
const VCPUOP_INITIALISE: u64 = 0;
const VCPUOP_UP: u64 = 1;
const VCPUOP_DOWN: u64 = 2;
const VCPUOP_IS_UP: u64 = 3;

/// vCPU 1, in long mode on vCPU 0's page tables, on the stack it was given.
#[no_mangle]
extern "C" fn guest_ap_main(id: u32, rsp: u64) -> ! {
    match hostile_cpu::AP_ROLE.load(Ordering::SeqCst) {
        1 => hostile_cpu::flood_ap(id),
        2 => hostile_cpu::db_loop_ap(),
        3 => stale_tlb::reader_ap(),
        _ => {}
    }
    AP_RSP.store(rsp, Ordering::SeqCst);
    AP_VERSION.store(
        hypercall(Hypercall::XenVersion as u64, [0, 0, 0, 0, 0]) as u64,
        Ordering::SeqCst,
    );
    AP_ID.store(id, Ordering::SeqCst);
    AP_STAGE.store(1, Ordering::SeqCst);
    let r = vcpu_op(VCPUOP_DOWN, id as u64, 0);
    // Up again: VCPUOP_down returned.
    AP_STAGE.store(if r == 0 { 2 } else { 99 }, Ordering::SeqCst);
    vcpu_op(VCPUOP_DOWN, id as u64, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Waits (yielding) up to ~2 s of TSC time for `done`.
fn wait_until(done: impl Fn() -> bool) -> bool {
    let t0 = xen::rdtsc();
    while !done() {
        if xen::rdtsc() - t0 > 6_000_000_000 {
            return false;
        }
        hypercall(Hypercall::SchedOp as u64, [0, 0, 0, 0, 0]);
    }
    true
}

/// A domain with `vcpus=2`: vCPU 0 starts vCPU 1 (VCPUOP_initialise + up), which
/// reports through shared memory and takes itself down.
fn smp(c: &mut Checks) {
    let r = vcpu_op(VCPUOP_IS_UP, 1, 0);
    c.check("vcpu 1 starts down", r == 0, r);
    // As Linux at boot, for every vCPU (it BUG()s if this fails).
    let r0 = vcpu_op(7, 0, 0);
    let r1 = vcpu_op(7, 1, 0);
    c.check(
        "stop_periodic_timer on vcpus 0 and 1",
        r0 == 0 && r1 == 0,
        r0 | r1,
    );
    let r = vcpu_op(7, 2, 0);
    c.check(
        "stop_periodic_timer on vcpu 2 (of 2) -> ENOENT",
        r == err(XenErrno::Enoent),
        r,
    );
    let r = vcpu_op(VCPUOP_UP, 1, 0);
    c.check(
        "up before initialise -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let stack = core::ptr::addr_of!(g_ap_stack_top) as u64;
    // struct vcpu_hvm_context: mode (0: 32-bit), pad, then eax, ecx, edx, ebx, esp,
    // ebp, esi, edi, eip, eflags, cr0, cr3, cr4, ...
    let mut ctx = [0u32; 32];
    ctx[2 + 3] = 1; // ebx: its id
    ctx[2 + 4] = stack as u32;
    ctx[2 + 8] = pvh_ap_start32 as *const () as usize as u32;
    ctx[2 + 10] = 0x11; // cr0: PE | ET
    let p = ctx.as_mut_ptr() as u64;
    let r = vcpu_op(VCPUOP_INITIALISE, 2, p);
    c.check(
        "initialise vcpu 2 of 2 -> ENOENT",
        r == err(XenErrno::Enoent),
        r,
    );
    let r = vcpu_op(VCPUOP_INITIALISE, 0, p);
    c.check("initialise vcpu 0 -> EEXIST", r == err(XenErrno::Eexist), r);
    ctx[0] = 1;
    let r = vcpu_op(VCPUOP_INITIALISE, 1, ctx.as_mut_ptr() as u64);
    c.check(
        "initialise in 64-bit mode -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    ctx[0] = 0;
    let r = vcpu_op(VCPUOP_INITIALISE, 1, 0xdead_0000_0000);
    c.check(
        "initialise, unmapped context -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let r = vcpu_op(VCPUOP_INITIALISE, 1, ctx.as_mut_ptr() as u64);
    c.check("vcpu_op initialise vcpu 1", r == 0, r);
    let r = vcpu_op(VCPUOP_INITIALISE, 1, ctx.as_mut_ptr() as u64);
    c.check(
        "initialise vcpu 1 again -> EEXIST",
        r == err(XenErrno::Eexist),
        r,
    );
    let r = vcpu_op(VCPUOP_DOWN, 1, 0);
    c.check(
        "down of another vcpu -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let r = vcpu_op(VCPUOP_UP, 1, 0);
    c.check("vcpu_op up vcpu 1", r == 0, r);
    let ran = wait_until(|| AP_STAGE.load(Ordering::SeqCst) >= 1);
    c.check("vcpu 1 runs", ran, 0);
    c.check(
        "vcpu 1 got its ebx (id 1)",
        AP_ID.load(Ordering::SeqCst) == 1,
        AP_ID.load(Ordering::SeqCst) as i64,
    );
    c.check(
        "vcpu 1 runs on the stack it was given",
        AP_RSP.load(Ordering::SeqCst) <= stack && AP_RSP.load(Ordering::SeqCst) > stack - 64,
        AP_RSP.load(Ordering::SeqCst) as i64,
    );
    let v = hypercall(Hypercall::XenVersion as u64, [0, 0, 0, 0, 0]);
    c.check(
        "vcpu 1 makes hypercalls (xen_version)",
        AP_VERSION.load(Ordering::SeqCst) == v as u64,
        AP_VERSION.load(Ordering::SeqCst) as i64,
    );
    let down = wait_until(|| vcpu_op(VCPUOP_IS_UP, 1, 0) == 0);
    c.check("vcpu 1 took itself down (is_up 0)", down, 0);
    let r = vcpu_op(VCPUOP_UP, 1, 0);
    let resumed = r == 0 && wait_until(|| AP_STAGE.load(Ordering::SeqCst) == 2);
    c.check("up again: vcpu 1 resumes after its VCPUOP_down", resumed, r);
    let down = wait_until(|| vcpu_op(VCPUOP_IS_UP, 1, 0) == 0);
    c.check("vcpu 1 down again", down, 0);
}
