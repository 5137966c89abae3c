//! role=pt-msibench (`assign=00:04.0 msibench=N`): the Sluice half of `cargo xtask
//! bench msi`. The assigned edu's MSI at vector `MSI_VECTOR` (through the hypervisor's
//! remapping entry, its host vector, the INTR exit and V_IRQ), raised N times after a
//! warm-up: raise -> handler and handler -> EOI done, in TSC cycles (the guest's TSC is
//! the host's: no TSC offset, no scaling, RDTSC not intercepted). The handler stamps the
//! TSC, EOIs through the x2APIC (an MSR write: an exit) and stamps it again; the
//! native bench (iommu/testkernel/src/msibench.rs) does the same with an xAPIC EOI and
//! prints the same lines. Then, for scale, N CPUID exits (leaf 0x40000001) timed one by
//! one. Figures only: no check here depends on a time.

use super::passthrough::{
    bring_up, cfg_read16, cfg_write16, cfg_write32, edu_bdf, find_cap, install_gate, mmio_write32,
    MSI_VECTOR,
};
use super::xen::{cpuid, rdtsc, Console};
use super::Checks;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

const WARMUP: usize = 200;
/// At most this many measured raises (the samples are static).
const MAX: usize = 4096;
/// A raise whose MSI has not arrived after this many cycles is counted lost (a hang
/// guard: no figure depends on it).
const LOST_AFTER: u64 = 2_000_000_000;

static HANDLER: AtomicU64 = AtomicU64::new(0);
static EOI: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .section .text
    .global tg_msibench_isr
tg_msibench_isr:
    pushq %rax
    pushq %rcx
    pushq %rdx
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, {handler}(%rip)
    movl $0x80b, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, {eoi}(%rip)
    popq %rdx
    popq %rcx
    popq %rax
    iretq
"#,
    handler = sym HANDLER,
    eoi = sym EOI,
    options(att_syntax)
);

extern "C" {
    fn tg_msibench_isr();
}

static mut SAMPLES: [[u64; MAX]; 2] = [[0; MAX]; 2];

/// Min, median, p90, p99 and max of `v` (sorted here), as the line the xtask parses.
fn summary(what: &str, v: &mut [u64]) {
    v.sort_unstable();
    let at = |p: usize| v[(v.len() - 1) * p / 100];
    let _ = writeln!(
        Console,
        "msibench: {what} cycles: n {} min {} median {} p90 {} p99 {} max {}",
        v.len(),
        at(0),
        at(50),
        at(90),
        at(99),
        at(100)
    );
}

pub fn msibench(c: &mut Checks, cmdline: &str) {
    let n = cmdline
        .split(' ')
        .find_map(|w| w.strip_prefix("msibench="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .clamp(1, MAX);
    let bdf = edu_bdf(cmdline);
    let Some(bar) = bring_up(c, bdf) else { return };
    let Some(m) = find_cap(bdf, 5) else {
        c.check("pt-msibench: MSI capability visible", false, 0);
        return;
    };
    install_gate(MSI_VECTOR, tg_msibench_isr as *const () as u64);
    let ctl = cfg_read16(bdf, m + 2);
    cfg_write32(bdf, m + 4, 0xFEE0_0000);
    let data_off = if ctl & 0x80 != 0 {
        cfg_write32(bdf, m + 8, 0);
        m + 12
    } else {
        m + 8
    };
    cfg_write16(bdf, data_off, u16::from(MSI_VECTOR));
    cfg_write16(bdf, m + 2, ctl | 1);
    let _ = writeln!(
        Console,
        "msibench: vector {MSI_VECTOR:#x}, {WARMUP} warm-up + {n} measured raises"
    );
    // SAFETY: one vCPU, and this is the only reference to the samples.
    let [to_handler, to_eoi] = unsafe { &mut *core::ptr::addr_of_mut!(SAMPLES) };
    let (mut got, mut lost) = (0usize, 0u32);
    // SAFETY: the IDT has the bench's gate for the only vector that can come.
    unsafe { core::arch::asm!("sti") };
    for i in 0..WARMUP + n {
        HANDLER.store(0, Ordering::SeqCst);
        EOI.store(0, Ordering::SeqCst);
        let t0 = rdtsc();
        mmio_write32(bar + 0x60, 1);
        let h = loop {
            let h = HANDLER.load(Ordering::SeqCst);
            if h != 0 || rdtsc().wrapping_sub(t0) > LOST_AFTER {
                break h;
            }
            core::hint::spin_loop();
        };
        // The handler stamps both before it returns: seen one, the other is there.
        let e = EOI.load(Ordering::SeqCst);
        mmio_write32(bar + 0x64, 1);
        if h == 0 {
            lost += 1;
            if lost == 3 {
                // Not arriving at all: stop (each lost raise waited LOST_AFTER).
                break;
            }
        } else if i >= WARMUP {
            to_handler[got] = h.wrapping_sub(t0);
            to_eoi[got] = e.wrapping_sub(h);
            got += 1;
        }
    }
    // SAFETY: back to no interrupts.
    unsafe { core::arch::asm!("cli") };
    cfg_write16(bdf, m + 2, ctl & !1);
    if got > 0 {
        summary("raise->handler", &mut to_handler[..got]);
        summary("handler->EOI", &mut to_eoi[..got]);
    }
    // For scale, in the same run: a bare exit round trip (CPUID, leaf 0x40000001), the
    // same number of times, into the first samples' place.
    for x in to_handler[..n].iter_mut() {
        let t0 = rdtsc();
        let _ = cpuid(0x4000_0001);
        *x = rdtsc().wrapping_sub(t0);
    }
    summary("cpuid-exit", &mut to_handler[..n]);
    let _ = writeln!(Console, "msibench: lost {lost}");
    c.check(
        "pt-msibench: every raise arrived",
        lost == 0,
        i64::from(lost),
    );
}
