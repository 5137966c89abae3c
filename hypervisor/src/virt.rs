//! The seam between the vendor-neutral domain code and a hardware backend (SVM today; a
//! VMX + EPT backend implements the same trait).

/// General-purpose registers the VMCB/VMCS does not hold. The layout is shared with the
/// backend's VMRUN assembly.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Why a vCPU stopped running.
#[allow(dead_code)] // fields are read through Debug in the log
#[derive(Debug, Clone, Copy)]
pub enum Exit {
    ExternalInterrupt,
    Cpuid,
    Hlt,
    Io {
        port: u16,
        input: bool,
        size: u8,
        string: bool,
        next_rip: u64,
    },
    Msr {
        write: bool,
    },
    /// Triple fault.
    Shutdown,
    /// VMMCALL (AMD) / VMCALL (Intel).
    Hypercall,
    NestedPageFault {
        gpa: u64,
        flags: u64,
    },
    /// The hardware refused the guest state.
    Invalid,
    Other(u64),
}

/// A vCPU's architectural state, as exit handlers need it.
pub trait VcpuState {
    fn regs(&mut self) -> &mut GuestRegs;
    fn rax(&self) -> u64;
    fn set_rax(&mut self, v: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, v: u64);
    fn set_rsp(&mut self, v: u64);
    fn cr0(&self) -> u64;
    fn cr3(&self) -> u64;
    fn long_mode(&self) -> bool;
    fn cpl(&self) -> u8;
    fn inject_gp(&mut self);
    /// Flushes the guest's TLB entries (after a nested page table change).
    fn flush_tlb(&mut self);
}

/// A hardware virtualisation backend.
pub trait VirtBackend {
    type Vcpu: VcpuState;
    /// Address-space ids it offers (domain ids must be below).
    fn asids(&self) -> u32;
    /// A vCPU in the PVH entry state (32-bit protected mode, paging off, `ebx` = start
    /// info) on the nested page table `npt_root`, with its control block in `vmcb`.
    fn create_vcpu(&self, vmcb: u64, asid: u32, npt_root: u64, entry: u32, ebx: u32) -> Self::Vcpu;
    /// Runs the vCPU until its next exit.
    fn run(&self, vcpu: &mut Self::Vcpu) -> Exit;
}
