//! A fake virtualisation backend: vCPUs are plain structs (what an exit handler reads
//! and writes), and nothing runs.

use crate::virt::{Exit, GuestRegs, VcpuState, VirtBackend};
use alloc::vec::Vec;

#[derive(Clone)]
pub struct Svm {
    pub asids: u32,
}

impl Svm {
    pub fn new() -> Svm {
        Svm { asids: 16 }
    }
}

impl Default for Svm {
    fn default() -> Svm {
        Svm::new()
    }
}

#[derive(Default)]
pub struct SvmVcpu {
    pub regs: GuestRegs,
    pub rax: u64,
    pub rip: u64,
    pub rsp: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub long_mode: bool,
    /// Long mode, but CS.L clear (compatibility mode).
    pub compat: bool,
    pub cpl: u8,
    pub cr4: u64,
    pub tsc_aux: u32,
    /// #GPs injected, other exceptions injected (vector, error code), exceptions
    /// reflected, TLB flushes asked for.
    pub gp: u32,
    pub injected: Vec<(u8, Option<u32>)>,
    pub reflected: u64,
    pub flushes: u32,
    /// A requested virtual interrupt not yet taken.
    pub virq: Option<u8>,
    /// Started by a STARTUP IPI: real mode, CS base.
    pub real_cs_base: Option<u64>,
    pub rflags: u64,
}

impl VirtBackend for Svm {
    type Vcpu = SvmVcpu;
    fn asids(&self) -> u32 {
        self.asids
    }
    fn create_vcpu(&self, _vmcb: u64, _asid: u32, _npt: u64, entry: u32, ebx: u32) -> SvmVcpu {
        let mut v = SvmVcpu {
            rip: entry as u64,
            ..Default::default()
        };
        v.regs.rbx = ebx as u64;
        v
    }
    fn create_vcpu_real(&self, _vmcb: u64, _asid: u32, _npt: u64, vector: u8) -> SvmVcpu {
        SvmVcpu {
            rip: 0,
            real_cs_base: Some((vector as u64) << 12),
            rflags: 2,
            ..Default::default()
        }
    }
    fn run(&self, _vcpu: &mut SvmVcpu) -> Exit {
        Exit::Hlt
    }
}

impl VcpuState for SvmVcpu {
    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rax(&self) -> u64 {
        self.rax
    }
    fn set_rax(&mut self, v: u64) {
        self.rax = v;
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, v: u64) {
        self.rip = v;
    }
    fn rsp(&self) -> u64 {
        self.rsp
    }
    fn set_rsp(&mut self, v: u64) {
        self.rsp = v;
    }
    fn code64(&self) -> bool {
        self.long_mode && !self.compat
    }
    fn cr0(&self) -> u64 {
        self.cr0
    }
    fn cr3(&self) -> u64 {
        self.cr3
    }
    fn long_mode(&self) -> bool {
        self.long_mode
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn cr4(&self) -> u64 {
        self.cr4
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        if vector == 13 {
            self.gp += 1;
        }
        self.injected.push((vector, error_code));
    }
    fn count_reflected(&mut self) -> u64 {
        self.reflected += 1;
        self.reflected
    }
    fn tsc_aux(&self) -> u32 {
        self.tsc_aux
    }
    fn set_tsc_aux(&mut self, v: u32) {
        self.tsc_aux = v;
    }
    fn flush_tlb(&mut self) {
        self.flushes += 1;
    }
    fn set_virq(&mut self, vector: u8) {
        self.virq = Some(vector);
    }
    fn virq(&self) -> Option<u8> {
        self.virq
    }
}
