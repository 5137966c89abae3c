//! The local APIC timer: a periodic tick at vector 0x20 that ends a vCPU's time slice.
//! The interrupt exits the guest (INTR intercept); the hypervisor then takes it with
//! interrupts briefly enabled, and the stub only acknowledges it.

use super::phys;

const LAPIC: u64 = 0xFEE0_0000;
const ID: u64 = 0x20;
const SVR: u64 = 0xF0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const LVT_TIMER: u64 = 0x320;
const INIT_COUNT: u64 = 0x380;
const CUR_COUNT: u64 = 0x390;
const DIVIDE: u64 = 0x3E0;
pub const TIMER_VECTOR: u8 = 0x20;
pub const SPURIOUS_VECTOR: u8 = 0xFF;

core::arch::global_asm!(
    r#"
    .section .text
    .global hv_lapic_tick
hv_lapic_tick:
    pushq %rax
    movabsq $0xFEE000B0, %rax
    movl $0, (%rax)
    popq %rax
    iretq
    .global hv_spurious
hv_spurious:
    iretq
/* Assigned devices' remapped MSIs: vector DEVICE_VECTOR + n counts in DEVICE_IRQS[n]. */
    .balign 16
    .global hv_device_irq_stubs
hv_device_irq_stubs:
    .set slot, 0
    .rept 24
    .balign 32
    pushq %rax
    lock incl DEVICE_IRQS + 4 * slot(%rip)
    movabsq $0xFEE000B0, %rax
    movl $0, (%rax)
    popq %rax
    iretq
    .set slot, slot + 1
    .endr
"#,
    options(att_syntax)
);

extern "C" {
    static hv_lapic_tick: u8;
    static hv_spurious: u8;
    static hv_device_irq_stubs: u8;
}

/// The host vectors of assigned devices' remapped MSIs: `DEVICE_VECTOR + slot` for the
/// `DEVICE_SLOTS` interrupt slots.
pub const DEVICE_VECTOR: u8 = 0x30;
pub const DEVICE_SLOTS: usize = 24;
/// Interrupts taken per slot since the last [`take_device_irqs`] (written by the stubs).
#[no_mangle]
static DEVICE_IRQS: [core::sync::atomic::AtomicU32; DEVICE_SLOTS] =
    [const { core::sync::atomic::AtomicU32::new(0) }; DEVICE_SLOTS];

/// The stub of device slot `slot` (for the IDT).
pub fn device_irq_handler(slot: usize) -> u64 {
    core::ptr::addr_of!(hv_device_irq_stubs) as u64 + 32 * slot as u64
}

/// The count of interrupts slot `slot` received and not yet taken (left there).
pub fn peek_device_irqs(slot: usize) -> u32 {
    DEVICE_IRQS[slot].load(core::sync::atomic::Ordering::SeqCst)
}

/// Takes the count of interrupts slot `slot` received since the last call.
pub fn take_device_irqs(slot: usize) -> u32 {
    DEVICE_IRQS[slot].swap(0, core::sync::atomic::Ordering::SeqCst)
}

pub fn tick_handler() -> u64 {
    core::ptr::addr_of!(hv_lapic_tick) as u64
}
pub fn spurious_handler() -> u64 {
    core::ptr::addr_of!(hv_spurious) as u64
}

/// Starts a periodic tick of `slice_ns`, calibrated against the TSC (`tsc_hz`).
/// Returns the initial count used.
pub fn start_periodic(tsc_hz: u64, slice_ns: u64) -> u32 {
    phys::mmio_write_u32(LAPIC + SVR, 0x100 | SPURIOUS_VECTOR as u32);
    phys::mmio_write_u32(LAPIC + DIVIDE, 0x3); // divide by 16
    phys::mmio_write_u32(LAPIC + LVT_TIMER, 1 << 16); // masked, one-shot
    phys::mmio_write_u32(LAPIC + INIT_COUNT, u32::MAX);
    let t0 = super::time::rdtsc();
    let wait = tsc_hz / 100; // 10 ms
    while super::time::rdtsc() - t0 < wait {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - phys::mmio_read_u32(LAPIC + CUR_COUNT);
    let count = ((elapsed as u64 * slice_ns) / 10_000_000).clamp(1, u32::MAX as u64) as u32;
    start_periodic_count(count);
    count
}

/// Starts the periodic tick with an initial count another CPU calibrated (every LAPIC
/// timer runs from the same clock).
pub fn start_periodic_count(count: u32) {
    phys::mmio_write_u32(LAPIC + SVR, 0x100 | SPURIOUS_VECTOR as u32);
    phys::mmio_write_u32(LAPIC + DIVIDE, 0x3); // divide by 16
    phys::mmio_write_u32(LAPIC + LVT_TIMER, (1 << 17) | TIMER_VECTOR as u32);
    phys::mmio_write_u32(LAPIC + INIT_COUNT, count);
}

/// Restarts the periodic tick's count (`count` as [`start_periodic_count`] set it), so
/// the next tick comes a whole period from now: at the end of a slice starting now.
pub fn restart_tick(count: u32) {
    phys::mmio_write_u32(LAPIC + INIT_COUNT, count);
}

/// Takes a pending physical interrupt (the tick) that made the guest exit.
pub fn take_pending_interrupt() {
    // SAFETY: the only interrupt sources enabled are the tick, the spurious vector and
    // the remapped MSIs of assigned devices, whose IDT stubs count, acknowledge and
    // return; interrupts are off again after the nop.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    phys::mmio_read_u32(LAPIC + ID) >> 24
}

/// Writes the interrupt command register (destination `apic_id`) and waits until the
/// LAPIC has sent it (delivery status idle).
fn send_icr(apic_id: u32, low: u32) {
    phys::mmio_write_u32(LAPIC + ICR_HIGH, apic_id << 24);
    phys::mmio_write_u32(LAPIC + ICR_LOW, low);
    while phys::mmio_read_u32(LAPIC + ICR_LOW) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

/// INIT (level assert) to `apic_id`.
pub fn send_init(apic_id: u32) {
    send_icr(apic_id, 0x4500);
}

/// STARTUP IPI: the CPU starts in real mode at `vector << 12`.
pub fn send_sipi(apic_id: u32, vector: u8) {
    send_icr(apic_id, 0x4600 | vector as u32);
}

/// A fixed interrupt at the tick vector: makes a CPU running a guest exit it (INTR
/// intercept), or wakes it from HLT; its handler only acknowledges it.
pub fn kick(apic_id: u32) {
    send_icr(apic_id, TIMER_VECTOR as u32);
}

/// Sleeps until the next interrupt (this CPU's tick or a kick), then masks again.
pub fn wait_for_interrupt() {
    // SAFETY: as in `take_pending_interrupt`; STI's shadow covers HLT, so an interrupt
    // already pending wakes it.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
