//! Application-processor bring-up: the real-mode trampoline (boot.rs) copied to a low
//! frame, INIT-SIPI-SIPI through the LAPIC, and the table mapping APIC ids to CPU
//! indices (the per-CPU state is indexed by CPU: 0 is the boot CPU).

use super::{lapic, phys, time};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const MAX_CPUS: usize = 8;
/// Where the trampoline runs: the SIPI vector is its page number.
pub const TRAMPOLINE: u64 = 0x8000;
/// How long an AP gets to reach `hv_ap_main` after its second SIPI (TCG is slow).
const ANSWER_MS: u64 = 2000;

/// Read by the AP's long-mode entry: its stack and CPU index (one AP starts at a time).
#[no_mangle]
static HV_AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static HV_AP_CPU: AtomicU32 = AtomicU32::new(0);
/// The index of the last AP that reached `hv_ap_main`.
static AP_ALIVE: AtomicU32 = AtomicU32::new(u32::MAX);
/// APIC id of each CPU index (`u32::MAX`: none).
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

extern "C" {
    static hv_ap_trampoline: u8;
    static hv_ap_trampoline_end: u8;
}

/// Records the boot CPU as CPU 0.
pub fn init_bsp() {
    APIC_IDS[0].store(lapic::id(), Ordering::Relaxed);
}

/// This CPU's index (its APIC id looked up; 0 if unknown).
pub fn this_cpu() -> usize {
    let id = lapic::id();
    APIC_IDS
        .iter()
        .position(|a| a.load(Ordering::Relaxed) == id)
        .unwrap_or(0)
}

/// Copies the trampoline to [`TRAMPOLINE`]; returns its length. The caller has checked
/// that the frame is usable RAM that nothing else uses.
pub fn install_trampoline() -> usize {
    let start = core::ptr::addr_of!(hv_ap_trampoline);
    let len = core::ptr::addr_of!(hv_ap_trampoline_end) as usize - start as usize;
    assert!(len <= 4096);
    // SAFETY: both symbols delimit the trampoline's bytes in the image's .rodata.
    let bytes = unsafe { core::slice::from_raw_parts(start, len) };
    phys::write(TRAMPOLINE, bytes);
    len
}

fn delay_us(tsc_hz: u64, us: u64) {
    let t0 = time::rdtsc();
    let wait = tsc_hz / 1_000_000 * us;
    while time::rdtsc().wrapping_sub(t0) < wait {
        core::hint::spin_loop();
    }
}

/// Starts the AP with `apic_id` as CPU `cpu` on the stack ending at `stack_top`
/// (INIT, 10 ms, SIPI, 200 us, SIPI unless it already answered). Returns how many
/// microseconds it took to answer, or `None` if it never did.
pub fn start_ap(cpu: usize, apic_id: u32, stack_top: u64, tsc_hz: u64) -> Option<u64> {
    assert!(cpu > 0 && cpu < MAX_CPUS);
    APIC_IDS[cpu].store(apic_id, Ordering::Relaxed);
    HV_AP_STACK_TOP.store(stack_top, Ordering::Relaxed);
    HV_AP_CPU.store(cpu as u32, Ordering::Relaxed);
    AP_ALIVE.store(u32::MAX, Ordering::SeqCst);
    let answered = || AP_ALIVE.load(Ordering::Acquire) == cpu as u32;
    let t0 = time::rdtsc();
    lapic::send_init(apic_id);
    delay_us(tsc_hz, 10_000);
    let vector = (TRAMPOLINE >> 12) as u8;
    lapic::send_sipi(apic_id, vector);
    delay_us(tsc_hz, 200);
    if !answered() {
        lapic::send_sipi(apic_id, vector);
    }
    let deadline = tsc_hz / 1000 * ANSWER_MS;
    while !answered() {
        if time::rdtsc().wrapping_sub(t0) > deadline {
            APIC_IDS[cpu].store(u32::MAX, Ordering::Relaxed);
            return None;
        }
        core::hint::spin_loop();
    }
    Some(time::rdtsc().wrapping_sub(t0) / (tsc_hz / 1_000_000).max(1))
}

/// The AP's first Rust code, on its own stack in long mode with the BSP's page tables.
#[no_mangle]
extern "C" fn hv_ap_main(cpu: u32) -> ! {
    let cpu = cpu as usize;
    super::cpu::init(cpu);
    AP_ALIVE.store(cpu as u32, Ordering::Release);
    crate::ap_main(cpu)
}
