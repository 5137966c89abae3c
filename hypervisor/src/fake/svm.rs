//! A fake virtualisation backend: vCPUs are plain structs (what an exit handler reads
//! and writes), and nothing runs.

use crate::virt::{Exit, GuestRegs, VcpuState, VirtBackend};

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
    pub cpl: u8,
    /// #GPs injected, TLB flushes asked for.
    pub gp: u32,
    pub flushes: u32,
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
    fn set_rsp(&mut self, v: u64) {
        self.rsp = v;
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
    fn inject_gp(&mut self) {
        self.gp += 1;
    }
    fn flush_tlb(&mut self) {
        self.flushes += 1;
    }
}
