//! vCPU 1 of a multi-vCPU domain: VCPUOP_initialise/up/down, its entry point
//! (`guest_ap_main`) and the `smp` role.

use super::xen::{self, hypercall};
use super::{err, g_ap_stack_top, hostile_cpu, pvh_ap_start32, stale_tlb, Checks};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sluice_abi::hypercall::{Hypercall, XenErrno};

/// What vCPU 1 reports to vCPU 0 (shared memory: the same physmap).
static AP_ID: AtomicU32 = AtomicU32::new(u32::MAX);
static AP_RSP: AtomicU64 = AtomicU64::new(0);
static AP_VERSION: AtomicU64 = AtomicU64::new(0);
/// 1: ran and about to go down; 2: resumed after VCPUOP_up again.
static AP_STAGE: AtomicU32 = AtomicU32::new(0);

pub(super) fn vcpu_op(cmd: u64, vcpu: u64, arg: u64) -> i64 {
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
pub(super) fn wait_until(done: impl Fn() -> bool) -> bool {
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
pub(super) fn smp(c: &mut Checks) {
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
