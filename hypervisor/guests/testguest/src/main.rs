//! A PVH test guest for the Sluice hypervisor. Its command line (`name=... role=...`)
//! picks what it checks; results go to the Xen console as `ok ...` / `FAIL ...`
//! lines and a final `GUEST PASS` / `GUEST FAIL`.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod abi;
mod bench;
mod boot;
mod events;
mod grant_table;
mod grant_use;
mod hostile_cpu;
mod hostile_mem;
mod passthrough;
mod pt_bigbar;
mod pt_msibench;
mod pt_msix;
mod smp;
mod stale_tlb;
mod timer;
mod xen;

use abi::abi_checks;
use bench::{bench, spinner};
use core::fmt::Write;
use events::{clear_pending, evtchn, map_shared_info, pending, ping, pong};
use grant_table::setup_table;
use grant_use::{gnttab_copy, gnttab_map, gnttab_unmap, lender, rogue_mapper};
use sluice_abi::hypercall::XenErrno;
use smp::{smp, vcpu_op, wait_until};
use timer::{pvclock_ns, timer};
use xen::{cpuid, hypercall, Console};

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

fn peer(cmdline: &str) -> u16 {
    cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("peer="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
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
