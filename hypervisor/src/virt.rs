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
        rep: bool,
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
        /// An event (interrupt, exception) was being delivered: the fault is not the
        /// instruction at RIP's.
        delivering: bool,
    },
    /// An intercepted exception (#DB, #AC), to reflect into the guest.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// An intercepted instruction the guest may not run natively.
    Insn(Insn),
    /// The hardware refused the guest state.
    Invalid,
    Other(u64),
}

/// Intercepted instructions (each with its own intercept bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    Rdpmc,
    Invd,
    Wbinvd,
    Invlpga,
    /// VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT (no nested SVM is offered).
    Svm,
    Monitor,
    Mwait,
    Xsetbv,
}

/// A vCPU's architectural state, as exit handlers need it.
pub trait VcpuState {
    fn regs(&mut self) -> &mut GuestRegs;
    fn rax(&self) -> u64;
    fn set_rax(&mut self, v: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, v: u64);
    fn rsp(&self) -> u64;
    fn set_rsp(&mut self, v: u64);
    /// Whether it runs 64-bit code (EFER.LMA and CS.L), the only mode whose
    /// instructions the MMIO emulation decodes.
    fn code64(&self) -> bool;
    fn cr0(&self) -> u64;
    fn cr3(&self) -> u64;
    fn long_mode(&self) -> bool;
    fn cpl(&self) -> u8;
    fn cr4(&self) -> u64;
    /// RFLAGS (IF is bit 9).
    fn rflags(&self) -> u64;
    fn inject_gp(&mut self) {
        self.inject_exception(13, Some(0));
    }
    /// Raises exception `vector` in the guest at its next entry.
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>);
    /// Counts an exception reflected into the guest; returns the count so far.
    fn count_reflected(&mut self) -> u64;
    /// The vCPU's TSC_AUX (what RDTSCP returns in ECX), loaded at each entry.
    fn tsc_aux(&self) -> u32;
    fn set_tsc_aux(&mut self, v: u32);

    /// Flushes the guest's TLB entries (after a nested page table change).
    fn flush_tlb(&mut self);
    /// Requests a virtual interrupt at `vector`, taken when the guest's IF allows.
    fn set_virq(&mut self, vector: u8);
    /// The vector of a requested virtual interrupt not taken yet.
    fn virq(&self) -> Option<u8>;
    /// Whether a requested virtual interrupt has not been taken yet.
    fn virq_pending(&self) -> bool {
        self.virq().is_some()
    }
}

/// A hardware virtualisation backend.
pub trait VirtBackend {
    type Vcpu: VcpuState;
    /// Address-space ids it offers (domain ids must be below).
    fn asids(&self) -> u32;
    /// A vCPU in the PVH entry state (32-bit protected mode, paging off, `ebx` = start
    /// info) on the nested page table `npt_root`, with its control block in `vmcb`.
    fn create_vcpu(&self, vmcb: u64, asid: u32, npt_root: u64, entry: u32, ebx: u32) -> Self::Vcpu;
    /// A vCPU as a STARTUP IPI leaves it: real mode, CS `vector << 8` (base
    /// `vector << 12`), IP 0, paging and protection off.
    fn create_vcpu_real(&self, vmcb: u64, asid: u32, npt_root: u64, vector: u8) -> Self::Vcpu;
    /// Runs the vCPU until its next exit.
    fn run(&self, vcpu: &mut Self::Vcpu) -> Exit;
}
