//! The machine, for the test kernel: the HAL implementation (identity-mapped physical
//! memory and MMIO), serial output, PCI configuration space, the local APIC and
//! isa-debug-exit. Every `unsafe` of the test kernel is in this file.
#![allow(unsafe_code)]

use core::cell::RefCell;
use core::fmt::{self, Write};
use core::ptr::NonNull;
use sluice_iommu::hal::{Hal, PhysAddr, PAGE_SIZE};
use volatile::VolatilePtr;
use x86_64::instructions::port::Port;

/// Frames handed to the IOMMU driver come from here (16 MiB .. 96 MiB).
const POOL_START: u64 = 16 << 20;
const POOL_END: u64 = 96 << 20;

pub struct KernelHal {
    state: RefCell<(u64, alloc::vec::Vec<u64>)>,
}

// SAFETY: the test kernel runs on one CPU without interrupt handlers touching the HAL.
unsafe impl Sync for KernelHal {}

pub static HAL: KernelHal = KernelHal {
    state: RefCell::new((POOL_START, alloc::vec::Vec::new())),
};

fn vol<T: Copy>(pa: PhysAddr) -> VolatilePtr<'static, T> {
    // SAFETY: physical memory below 4 GiB is identity mapped by the boot code, and the
    // callers only pass RAM frames they own or MMIO register addresses.
    unsafe { VolatilePtr::new(NonNull::new(pa as *mut T).expect("non-null physical address")) }
}

impl Hal for KernelHal {
    fn alloc_frames(&self, pages: usize, align: u64) -> Option<PhysAddr> {
        let mut s = self.state.borrow_mut();
        let pa = if pages == 1 && align <= PAGE_SIZE && !s.1.is_empty() {
            s.1.pop()?
        } else {
            let start = s.0.next_multiple_of(align.max(PAGE_SIZE));
            let end = start + pages as u64 * PAGE_SIZE;
            if end > POOL_END {
                return None;
            }
            s.0 = end;
            start
        };
        fill(pa, pages as u64 * PAGE_SIZE, 0);
        Some(pa)
    }

    fn free_frames(&self, pa: PhysAddr, pages: usize) {
        let mut s = self.state.borrow_mut();
        for i in 0..pages as u64 {
            s.1.push(pa + i * PAGE_SIZE);
        }
    }

    fn read_phys_u64(&self, pa: PhysAddr) -> u64 {
        vol::<u64>(pa).read()
    }

    fn write_phys_u64(&self, pa: PhysAddr, value: u64) {
        vol::<u64>(pa).write(value)
    }

    fn mmio_read32(&self, pa: PhysAddr) -> u32 {
        vol::<u32>(pa).read()
    }

    fn mmio_write32(&self, pa: PhysAddr, value: u32) {
        vol::<u32>(pa).write(value)
    }

    fn mmio_read64(&self, pa: PhysAddr) -> u64 {
        vol::<u64>(pa).read()
    }

    fn mmio_write64(&self, pa: PhysAddr, value: u64) {
        vol::<u64>(pa).write(value)
    }

    fn barrier(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }

    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// Fills physical memory with a byte.
pub fn fill(pa: PhysAddr, len: u64, byte: u8) {
    let word = u64::from_ne_bytes([byte; 8]);
    for off in (0..len).step_by(8) {
        vol::<u64>(pa + off).write(word);
    }
}

/// Reads a byte of physical memory.
pub fn peek(pa: PhysAddr) -> u8 {
    vol::<u8>(pa).read()
}

/// Writes a byte of physical memory.
pub fn poke(pa: PhysAddr, v: u8) {
    vol::<u8>(pa).write(v)
}

/// A byte slice of physical memory (ACPI tables).
pub fn phys_slice(pa: PhysAddr, len: usize) -> &'static [u8] {
    // SAFETY: ACPI tables are in identity-mapped RAM that nothing writes while we run.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: COM1 ports; waiting for THR empty then writing a byte.
            unsafe {
                let mut lsr = Port::<u8>::new(0x3fd);
                while lsr.read() & 0x20 == 0 {}
                Port::<u8>::new(0x3f8).write(b);
            }
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write;
        let _ = writeln!($crate::hw::Serial, $($arg)*);
    }};
}

/// Ends the run with `code` through isa-debug-exit (QEMU exits with `code << 1 | 1`).
pub fn exit(code: u32) -> ! {
    // SAFETY: isa-debug-exit at 0xf4 is part of every test machine.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        x86_64::instructions::hlt();
    }
}

/// PCI configuration space through ports 0xcf8/0xcfc.
pub fn pci_read32(bus: u8, dev: u8, func: u8, off: u8) -> u32 {
    let addr = 0x8000_0000u32
        | (u32::from(bus) << 16)
        | (u32::from(dev) << 11)
        | (u32::from(func) << 8)
        | u32::from(off & 0xfc);
    // SAFETY: configuration mechanism #1, single-threaded.
    unsafe {
        Port::<u32>::new(0xcf8).write(addr);
        Port::<u32>::new(0xcfc).read()
    }
}

pub fn pci_write32(bus: u8, dev: u8, func: u8, off: u8, value: u32) {
    let addr = 0x8000_0000u32
        | (u32::from(bus) << 16)
        | (u32::from(dev) << 11)
        | (u32::from(func) << 8)
        | u32::from(off & 0xfc);
    // SAFETY: configuration mechanism #1, single-threaded.
    unsafe {
        Port::<u32>::new(0xcf8).write(addr);
        Port::<u32>::new(0xcfc).write(value);
    }
}

/// Masks the legacy PICs so that only MSIs reach the local APIC.
pub fn mask_pic() {
    // SAFETY: 8259 data ports.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Hands the heap range to the allocator.
pub fn init_heap(heap: &linked_list_allocator::LockedHeap, start: usize, size: usize) {
    // SAFETY: [start, start + size) is identity-mapped RAM used by nothing else (below the
    // driver's frame pool, above the kernel image), and this runs once.
    unsafe { heap.lock().init(start as *mut u8, size) };
}

// Interrupt entry: 256 stubs 16 bytes apart that push their vector and join a common path
// which saves the caller-saved registers, calls `interrupt_entry(vector)` and returns with
// iretq. Exceptions (vectors below 32) are fatal and reported.
core::arch::global_asm!(
    r#"
    .section .text
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq 72(%rsp), %rdi
    subq $8, %rsp
    call interrupt_entry
    addq $8, %rsp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp
    iretq
"#,
    options(att_syntax)
);

// The MSI bench's handler (crate::msibench, vector `BENCH_VECTOR`): the TSC on entry
// into BENCH_HANDLER, an EOI (xAPIC register write), the TSC after it into BENCH_EOI.
// The test guest's (hypervisor/guests/testguest/src/pt_msibench.rs) is the same but
// for its EOI (an x2APIC MSR write).
core::arch::global_asm!(
    r#"
    .section .text
    .balign 16
    .global bench_msi_stub
bench_msi_stub:
    pushq %rax
    pushq %rcx
    pushq %rdx
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, {handler}(%rip)
    movabsq $0xFEE000B0, %rcx
    movl $0, (%rcx)
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, {eoi}(%rip)
    popq %rdx
    popq %rcx
    popq %rax
    iretq
"#,
    handler = sym BENCH_HANDLER,
    eoi = sym BENCH_EOI,
    options(att_syntax)
);

/// The bench's vector and its handler's two time stamps (0: not yet).
pub const BENCH_VECTOR: u8 = 0x41;
pub static BENCH_HANDLER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
pub static BENCH_EOI: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The time stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

unsafe extern "C" {
    static isr_stubs: u8;
    static bench_msi_stub: u8;
}

/// Interrupts delivered so far, per vector.
pub static INTERRUPTS: [core::sync::atomic::AtomicU32; 256] =
    [const { core::sync::atomic::AtomicU32::new(0) }; 256];

#[unsafe(no_mangle)]
extern "C" fn interrupt_entry(vector: u64) {
    if vector < 32 {
        crate::println!("exception {vector}");
        crate::println!("VERDICT FAIL");
        exit(1);
    }
    INTERRUPTS[vector as usize & 0xff].fetch_add(1, core::sync::atomic::Ordering::SeqCst);
    // End of interrupt (xAPIC EOI register).
    vol::<u32>(0xfee0_00b0).write(0);
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// Installs the IDT (every vector to its stub) and enables interrupts.
pub fn init_interrupts() {
    // The stub table's address (taking it needs no unsafe).
    let stubs = core::ptr::addr_of!(isr_stubs) as u64;
    // SAFETY: runs once, before interrupts are enabled; nothing else touches IDT.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    let bench = core::ptr::addr_of!(bench_msi_stub) as u64;
    for v in 0..256 {
        let handler = if v == usize::from(BENCH_VECTOR) {
            bench
        } else {
            stubs + v as u64 * 16
        };
        // 64-bit interrupt gate: selector 0x08, present, DPL 0, type 0xe.
        idt.0[v * 2] = (handler & 0xffff)
            | (0x08 << 16)
            | (0x8e00u64 << 32)
            | ((handler >> 16) & 0xffff) << 48;
        idt.0[v * 2 + 1] = handler >> 32;
    }
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (256 * 16 - 1) as u16,
        base: x86_64::VirtAddr::new(idt.0.as_ptr() as u64),
    };
    // SAFETY: the table above is static and complete; its handlers are valid code.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
    x86_64::instructions::interrupts::enable();
}

/// Interrupts delivered on `vector` so far.
pub fn interrupts(vector: u8) -> u32 {
    INTERRUPTS[usize::from(vector)].load(core::sync::atomic::Ordering::SeqCst)
}

/// Total interrupts delivered on any vector.
pub fn all_interrupts() -> u32 {
    INTERRUPTS
        .iter()
        .map(|c| c.load(core::sync::atomic::Ordering::SeqCst))
        .sum()
}
