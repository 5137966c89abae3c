//! Each CPU's descriptor tables: its own GDT with its own TSS, whose IST stacks serve the
//! double fault, NMI and machine check; one IDT shared by all CPUs, whose exception stubs
//! report and stop (a fault in the hypervisor itself is fatal and must be visible).

use core::ptr::addr_of;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

const IST_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStacks([[u8; IST_SIZE]; 3]);

use super::smp::MAX_CPUS;

static mut IST: [IstStacks; MAX_CPUS] = [const { IstStacks([[0; IST_SIZE]; 3]) }; MAX_CPUS];
static mut TSS: [TaskStateSegment; MAX_CPUS] = [const { TaskStateSegment::new() }; MAX_CPUS];
static mut GDT: [GlobalDescriptorTable; MAX_CPUS] =
    [const { GlobalDescriptorTable::new() }; MAX_CPUS];
static mut IDT: [u64; 512] = [0; 512];

extern "C" {
    static hv_exception_stubs: [u8; 32 * 16];
}

core::arch::global_asm!(
    r#"
    .section .text
    .balign 16
    .global hv_exception_stubs
hv_exception_stubs:
    .set vec, 0
    .rept 32
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp hv_exception_common
    .set vec, vec + 1
    .endr

hv_exception_common:
    movq %rsp, %rdi
    andq $-16, %rsp
    call hv_exception
1:  hlt
    jmp 1b
"#,
    options(att_syntax)
);

/// What the exception stubs leave on the stack.
#[repr(C)]
pub struct ExceptionFrame {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[no_mangle]
extern "C" fn hv_exception(frame: *const ExceptionFrame) -> ! {
    // SAFETY: the stub passes its own stack pointer, which holds a complete frame.
    let f = unsafe { &*frame };
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::log!(
        "HYPERVISOR FAULT on CPU {}: vector {} error {:#x} rip {:#x} rsp {:#x} cr2 {:#x}",
        super::smp::this_cpu(),
        f.vector,
        f.error_code,
        f.rip,
        f.rsp,
        cr2
    );
    crate::arch::serial::qemu_exit(0x7f)
}

/// Loads CPU `cpu`'s GDT (code, data, its TSS) and TSS with its IST stacks, and the
/// IDT (built by CPU 0, which must come first).
pub fn init(cpu: usize) {
    assert!(cpu < MAX_CPUS);
    // SAFETY: each CPU calls this once with its own index, before anything else uses
    // its slots of these statics (CPU 0 alone writes the IDT, before any AP starts); the
    // references handed to the CPU stay valid forever.
    unsafe {
        let tss = &mut *core::ptr::addr_of_mut!(TSS[cpu]);
        let ist = &*addr_of!(IST[cpu]);
        for (i, stack) in ist.0.iter().enumerate() {
            let top = stack.as_ptr() as u64 + IST_SIZE as u64;
            tss.interrupt_stack_table[i] = VirtAddr::new(top);
        }
        let gdt = &mut *core::ptr::addr_of_mut!(GDT[cpu]);
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(&*addr_of!(TSS[cpu])));
        (*addr_of!(GDT[cpu])).load();
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
        if cpu != 0 {
            load_idt();
            return;
        }

        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        let stubs = addr_of!(hv_exception_stubs) as u64;
        for vec in 0..32u64 {
            let handler = stubs + vec * 16;
            // IST 1 for NMI, 2 for double fault, 3 for machine check.
            let ist = match vec {
                2 => 1,
                8 => 2,
                18 => 3,
                _ => 0,
            };
            let low = (handler & 0xFFFF)
                | ((code.0 as u64) << 16)
                | (ist << 32)
                | (0x8E << 40)
                | ((handler >> 16) & 0xFFFF) << 48;
            idt[(vec * 2) as usize] = low;
            idt[(vec * 2 + 1) as usize] = handler >> 32;
        }
        let devices = (0..super::lapic::DEVICE_SLOTS).map(|n| {
            (
                super::lapic::DEVICE_VECTOR + n as u8,
                super::lapic::device_irq_handler(n),
            )
        });
        for (vec, handler) in [
            (super::lapic::TIMER_VECTOR, super::lapic::tick_handler()),
            (
                super::lapic::SPURIOUS_VECTOR,
                super::lapic::spurious_handler(),
            ),
        ]
        .into_iter()
        .chain(devices)
        {
            let low = (handler & 0xFFFF)
                | ((code.0 as u64) << 16)
                | (0x8E << 40)
                | ((handler >> 16) & 0xFFFF) << 48;
            idt[vec as usize * 2] = low;
            idt[vec as usize * 2 + 1] = handler >> 32;
        }
        load_idt();
    }
}

/// Loads the shared IDT.
fn load_idt() {
    // SAFETY: the IDT is a static filled by CPU 0 before any other CPU loads it.
    unsafe {
        lidt(&DescriptorTablePointer {
            limit: (core::mem::size_of::<[u64; 512]>() - 1) as u16,
            base: VirtAddr::new(addr_of!(IDT) as u64),
        });
    }
}
