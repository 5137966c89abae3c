//! The guest's side of the Xen ABI: CPUID, the hypercall page, a few helpers.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sluice_abi::byte_ring::ByteRing;
use sluice_abi::event_channel::{EvtchnOp, EvtchnSend};
use sluice_abi::hypercall::{HvmOp, HvmParam, Hypercall, XenHvmParam};
use sluice_abi::shared::SharedMem;
use sluice_abi::types::DOMID_SELF;

extern "C" {
    static mut g_hypercall_page: [u8; 4096];
}

pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn hypercall_page_addr() -> u64 {
    core::ptr::addr_of!(g_hypercall_page) as u64
}

/// Asks the hypervisor to fill the hypercall page (identity-mapped, so gva == gpa).
pub fn init_hypercall_page(msr: u32) {
    let pa = hypercall_page_addr();
    // SAFETY: WRMSR to Xen's hypercall MSR; the page is ours and 4 KiB aligned.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") pa as u32, in("edx") (pa >> 32) as u32)
    };
}

pub fn hypercall(nr: u64, a: [u64; 5]) -> i64 {
    let entry = hypercall_page_addr() + nr.min(127) * 32;
    let nr_ok = if nr < 128 {
        entry
    } else {
        return vmmcall_direct(nr, a);
    };
    let ret: u64;
    // SAFETY: the stub at `entry` is `mov $nr, %eax; vmmcall; ret`; rax is the result
    // and, as Xen's ABI allows (a continuation rewrites them), the argument registers
    // are clobbered.
    unsafe {
        core::arch::asm!("call {e}", e = in(reg) nr_ok, lateout("rax") ret,
            inout("rdi") a[0] => _, inout("rsi") a[1] => _, inout("rdx") a[2] => _,
            inout("r10") a[3] => _, inout("r8") a[4] => _)
    };
    ret as i64
}

/// VMMCALL without the hypercall page.
pub fn vmmcall_direct(nr: u64, a: [u64; 5]) -> i64 {
    let ret: u64;
    // SAFETY: VMMCALL traps to the hypervisor, which changes rax and (continuations)
    // the argument registers.
    unsafe {
        core::arch::asm!("vmmcall", inlateout("rax") nr => ret,
            inout("rdi") a[0] => _, inout("rsi") a[1] => _, inout("rdx") a[2] => _,
            inout("r10") a[3] => _, inout("r8") a[4] => _)
    };
    ret as i64
}

/// The PV console ring's page and event channel, when the hypervisor offers one (0: no).
static PV_CONSOLE_PFN: AtomicU64 = AtomicU64::new(0);
static PV_CONSOLE_PORT: AtomicU32 = AtomicU32::new(0);

fn hvm_get_param(index: HvmParam) -> Option<u64> {
    let mut p = XenHvmParam {
        domid: DOMID_SELF,
        index: index as u32,
        ..Default::default()
    };
    let r = hypercall(
        Hypercall::HvmOp as u64,
        [
            HvmOp::GetParam as u64,
            &mut p as *mut XenHvmParam as u64,
            0,
            0,
            0,
        ],
    );
    (r == 0).then_some(p.value)
}

/// Uses the PV console (`HVM_PARAM_CONSOLE_PFN` / `_EVTCHN`) for [`Console`] when the
/// hypervisor has one: real Xen refuses `console_io` writes from a domU (release
/// builds), so there this guest speaks through xenconsoled. Sluice's hypervisor has no
/// PV console yet (the parameter read fails): `console_io` it is.
pub fn init_console() {
    if let (Some(pfn), Some(port)) = (
        hvm_get_param(HvmParam::ConsolePfn),
        hvm_get_param(HvmParam::ConsoleEvtchn),
    ) {
        // Inside the 4 GiB identity map built at entry.
        if pfn != 0 && pfn < (1 << 20) && port != 0 {
            PV_CONSOLE_PORT.store(port as u32, Ordering::Relaxed);
            PV_CONSOLE_PFN.store(pfn, Ordering::Relaxed);
        }
    }
}

fn pv_console_write(pfn: u64, mut data: &[u8]) -> fmt::Result {
    // SAFETY: the hypervisor named this frame as our console page; it is identity-mapped
    // (below 4 GiB, checked in `init_console`) and only ever accessed through SharedMem.
    let mem = unsafe {
        SharedMem::new(
            core::ptr::NonNull::new((pfn << 12) as *mut u8).ok_or(fmt::Error)?,
            4096,
        )
    };
    let mut send = EvtchnSend {
        port: PV_CONSOLE_PORT.load(Ordering::Relaxed),
    };
    while !data.is_empty() {
        let n = ByteRing::CONSOLE_OUT
            .write(&mem, data)
            .map_err(|_| fmt::Error)?;
        data = &data[n..];
        hypercall(
            Hypercall::EventChannelOp as u64,
            [
                EvtchnOp::Send as u64,
                &mut send as *mut EvtchnSend as u64,
                0,
                0,
                0,
            ],
        );
        if n == 0 {
            // Full: let the console daemon drain it.
            hypercall(Hypercall::SchedOp as u64, [0, 0, 0, 0, 0]);
        }
    }
    Ok(())
}

pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let pfn = PV_CONSOLE_PFN.load(Ordering::Relaxed);
        if pfn != 0 {
            return pv_console_write(pfn, s.as_bytes());
        }
        let r = hypercall(
            Hypercall::ConsoleIo as u64,
            [0, s.len() as u64, s.as_ptr() as u64, 0, 0],
        );
        if r == 0 {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

pub fn shutdown(reason: u32) -> ! {
    loop {
        hypercall(
            Hypercall::SchedOp as u64,
            [2, &reason as *const u32 as u64, 0, 0, 0],
        );
    }
}

pub fn start_info_magic(pa: u64) -> u32 {
    // SAFETY: the start info page is identity-mapped guest memory.
    unsafe { core::ptr::read_volatile(pa as *const u32) }
}

/// The command line from the PVH start info (at most 256 bytes).
pub fn cmdline(start_info: u64) -> &'static str {
    // SAFETY: the hypervisor put the start info and its command line in our memory.
    unsafe {
        let p = core::ptr::read_volatile((start_info + 24) as *const u64) as *const u8;
        if p.is_null() {
            return "";
        }
        let mut n = 0;
        while n < 256 && *p.add(n) != 0 {
            n += 1;
        }
        core::str::from_utf8(core::slice::from_raw_parts(p, n)).unwrap_or("")
    }
}

/// Writes to guest-physical memory the domain does not own.
pub fn poke(addr: u64) {
    // SAFETY: deliberately hostile: identity-mapped in our page tables, not backed by
    // the hypervisor. The hypervisor kills us here.
    unsafe { core::ptr::write_volatile(addr as *mut u64, 0x5a5a) };
}

pub fn triple_fault() -> ! {
    let idt = [0u16; 5];
    // SAFETY: deliberately hostile: an empty IDT makes the next exception a triple fault.
    unsafe {
        core::arch::asm!("lidt [{0}]", "int3", in(reg) idt.as_ptr());
    }
    shutdown(3)
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn read64(pa: u64) -> u64 {
    // SAFETY: identity-mapped guest memory (shared_info or RAM), 8-byte aligned.
    unsafe { core::ptr::read_volatile(pa as *const u64) }
}

pub fn write64(pa: u64, v: u64) {
    // SAFETY: as in `read64`.
    unsafe { core::ptr::write_volatile(pa as *mut u64, v) }
}

pub fn write8(pa: u64, v: u8) {
    // SAFETY: as in `read64`.
    unsafe { core::ptr::write_volatile(pa as *mut u8, v) }
}

#[repr(C, align(4096))]
pub struct Page([u8; 4096]);

static mut PAGES: [Page; 3] = [const { Page([0; 4096]) }; 3];

pub fn page_addr(i: usize) -> u64 {
    (core::ptr::addr_of!(PAGES) as u64) + i as u64 * 4096
}

pub fn page(i: usize) -> &'static [u8; 4096] {
    // SAFETY: single vCPU; the pages are only changed through `page_mut` or by the
    // hypervisor between hypercalls (read afresh here).
    unsafe { &(*core::ptr::addr_of!(PAGES))[i].0 }
}

pub fn page_mut(i: usize) -> &'static mut [u8; 4096] {
    // SAFETY: single vCPU, and callers hold no other reference across this call.
    unsafe { &mut (*core::ptr::addr_of_mut!(PAGES))[i].0 }
}

pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: deliberately hostile: the hypervisor must refuse host MSRs.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32)
    };
}
