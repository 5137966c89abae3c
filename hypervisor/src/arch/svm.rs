//! AMD SVM backend: VMCB set-up for a PVH vCPU, VMRUN with eager FPU switching, and the
//! decoding of #VMEXITs into the vendor-neutral [`Exit`].
//!
//! TCG quirks (platform.md): no NRIP save, so the exit handlers advance RIP themselves;
//! VMEXIT_INVALID overwrites the save area, so the vCPU is rebuilt (here: killed) after it.

use super::phys;
use super::svm_intercepts::*;
use crate::virt::{Exit, GuestRegs, Insn, VcpuState, VirtBackend};
use x86_64::registers::model_specific::Msr;

const MSR_EFER: u32 = 0xC000_0080;
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
const MSR_TSC_AUX: u32 = 0xC000_0103;
const EFER_SVME: u64 = 1 << 12;

// Control area.
const C_INTERCEPT_EXC: usize = 0x08;
const C_INTERCEPT_MISC1: usize = 0x0C;
const C_INTERCEPT_MISC2: usize = 0x10;
const C_IOPM_BASE: usize = 0x40;
const C_MSRPM_BASE: usize = 0x48;
const C_ASID: usize = 0x58;
const C_TLB_CTL: usize = 0x5C;
const C_VINTR: usize = 0x60;
const C_EXITCODE: usize = 0x70;
const C_EXITINFO1: usize = 0x78;
const C_EXITINFO2: usize = 0x80;
const C_EXITINTINFO: usize = 0x88;
const C_NP_ENABLE: usize = 0x90;
const C_EVENTINJ: usize = 0xA8;
const C_NCR3: usize = 0xB0;
const C_CLEAN: usize = 0xC0;
// Save area.
const S_ES: usize = 0x400;
const S_CS: usize = 0x410;
const S_SS: usize = 0x420;
const S_DS: usize = 0x430;
const S_FS: usize = 0x440;
const S_GS: usize = 0x450;
const S_GDTR: usize = 0x460;
const S_LDTR: usize = 0x470;
const S_IDTR: usize = 0x480;
const S_TR: usize = 0x490;
const S_CPL: usize = 0x4CB;
const S_EFER: usize = 0x4D0;
const S_CR4: usize = 0x548;
const S_CR3: usize = 0x550;
const S_CR0: usize = 0x558;
const S_DR7: usize = 0x560;
const S_DR6: usize = 0x568;
const S_RFLAGS: usize = 0x570;
const S_RIP: usize = 0x578;
const S_RSP: usize = 0x5D8;
const S_RAX: usize = 0x5F8;
const S_GPAT: usize = 0x668;

static INTERCEPTS_LOGGED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// One 4 KiB VMCB plus what a vCPU needs around VMRUN.
pub struct SvmVcpu {
    vmcb: u64,
    pub regs: GuestRegs,
    fpu: FxArea,
    /// Its x87/SSE state and DR0-DR3 (VMRUN switches DR6/DR7 only): in the CPU's
    /// registers during a slice (`begin_slice`), here between slices.
    dr: [u64; 4],
    tsc_aux: u32,
    reflected: u64,
}

#[repr(C, align(64))]
struct FxArea([u8; 512]);

impl FxArea {
    /// A new vCPU's x87/SSE state, as Xen's: FCW 0x37F (FNINIT's), MXCSR 0x1F80 (every
    /// exception masked, as at reset), registers 0.
    fn initial() -> FxArea {
        let mut a = FxArea([0; 512]);
        a.0[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
        a.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        a
    }
}

fn w8(vmcb: u64, off: usize, v: u8) {
    phys::write(vmcb + off as u64, &[v]);
}
fn w16(vmcb: u64, off: usize, v: u16) {
    phys::write(vmcb + off as u64, &v.to_le_bytes());
}
fn w32(vmcb: u64, off: usize, v: u32) {
    phys::write(vmcb + off as u64, &v.to_le_bytes());
}
fn w64(vmcb: u64, off: usize, v: u64) {
    phys::write_u64(vmcb + off as u64, v);
}
fn r64(vmcb: u64, off: usize) -> u64 {
    phys::read_u64(vmcb + off as u64)
}

fn seg(vmcb: u64, off: usize, sel: u16, attr: u16, limit: u32, base: u64) {
    w16(vmcb, off, sel);
    w16(vmcb, off + 2, attr);
    w32(vmcb, off + 4, limit);
    w64(vmcb, off + 8, base);
}

/// One per CPU: the permission maps are shared, the host VMSAVE area is the CPU's.
#[derive(Clone)]
pub struct Svm {
    /// ASIDs the CPU offers (CPUID 0x8000000A EBX; 0 is the host's).
    pub asids: u32,
    iopm: u64,
    msrpm: u64,
    /// VMSAVE area for the host's FS/GS/TR/LDTR/syscall MSRs while a guest runs.
    host_area: u64,
    /// The CPU has RDTSCP (and so TSC_AUX, loaded per vCPU at each entry).
    rdtscp: bool,
}

/// MSRs a guest reads and writes directly: those VMRUN (EFER, with NPT the guest PAT)
/// or VMLOAD/VMSAVE switch per guest. Every other MSR exits.
const PASSTHROUGH_MSRS: [u32; 12] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT (G_PAT under nested paging)
    0xC000_0080, // EFER
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0100, // FS_BASE
    0xC000_0101, // GS_BASE
    0xC000_0102, // KERNEL_GS_BASE
];

/// Clears the read and write intercept bits of `msr` in the permission map.
fn msrpm_allow(msrpm: u64, msr: u32) {
    let (base, off) = match msr {
        0..=0x1FFF => (0, msr),
        0xC000_0000..=0xC000_1FFF => (0x800, msr - 0xC000_0000),
        0xC001_0000..=0xC001_1FFF => (0x1000, msr - 0xC001_0000),
        _ => return,
    };
    let byte = msrpm + base + (off as u64 * 2) / 8;
    let mut b = [0u8];
    phys::read(byte, &mut b);
    b[0] &= !(0b11 << ((off * 2) % 8));
    phys::write(byte, &b);
}

extern "C" {
    fn hv_svm_run(vmcb_pa: u64, regs: *mut GuestRegs, host_area_pa: u64);
}

core::arch::global_asm!(
    r#"
    .section .text
    .global hv_svm_run
/* hv_svm_run(vmcb_pa: rdi, regs: rsi, host_area_pa: rdx): VMSAVE/VMLOAD the host and
   guest system registers, load the guest's GPRs (but rax/rsp, which the VMCB holds),
   VMRUN, store them back. */
hv_svm_run:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushq %rdx
    pushq %rsi
    /* Host FS/GS/TR/LDTR/KernelGSBase/STAR.../SYSENTER to the host area, the guest's in. */
    movq %rdx, %rax
    vmsave
    movq %rdi, %rax
    vmload
    movq 0x00(%rsi), %rbx
    movq 0x08(%rsi), %rcx
    movq 0x10(%rsi), %rdx
    movq 0x20(%rsi), %rdi
    movq 0x28(%rsi), %rbp
    movq 0x30(%rsi), %r8
    movq 0x38(%rsi), %r9
    movq 0x40(%rsi), %r10
    movq 0x48(%rsi), %r11
    movq 0x50(%rsi), %r12
    movq 0x58(%rsi), %r13
    movq 0x60(%rsi), %r14
    movq 0x68(%rsi), %r15
    movq 0x18(%rsi), %rsi
    /* GIF=0 holds interrupts; IF=1 lets a physical interrupt (the LAPIC tick) exit the
       guest (V_INTR_MASKING: the host's IF gates physical interrupts in the guest). */
    clgi
    sti
    vmrun
    cli
    /* rax is the VMCB again: save the guest's VMLOAD state, restore the host's. */
    vmsave
    movq 8(%rsp), %rax
    vmload
    stgi
    pushq %rsi
    movq 8(%rsp), %rsi
    movq %rbx, 0x00(%rsi)
    movq %rcx, 0x08(%rsi)
    movq %rdx, 0x10(%rsi)
    movq %rdi, 0x20(%rsi)
    movq %rbp, 0x28(%rsi)
    movq %r8, 0x30(%rsi)
    movq %r9, 0x38(%rsi)
    movq %r10, 0x40(%rsi)
    movq %r11, 0x48(%rsi)
    movq %r12, 0x50(%rsi)
    movq %r13, 0x58(%rsi)
    movq %r14, 0x60(%rsi)
    movq %r15, 0x68(%rsi)
    popq %rax
    movq %rax, 0x18(%rsi)
    popq %rsi
    popq %rdx
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret
"#,
    options(att_syntax)
);

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

impl Svm {
    /// Checks for SVM with nested paging, sets EFER.SVME and the host save area.
    /// `alloc(n)`: `n` physically contiguous zeroed frames.
    pub fn init(alloc: &mut dyn FnMut(u64) -> Option<u64>) -> Result<Svm, &'static str> {
        if cpuid(0x8000_0000).0 < 0x8000_000A || cpuid(0x8000_0001).2 & (1 << 2) == 0 {
            return Err("CPU has no SVM");
        }
        let features = cpuid(0x8000_000A).3;
        if features & 1 == 0 {
            return Err("SVM has no nested paging");
        }
        crate::log!(
            "svm: revision {}, {} ASIDs, features {:#x} (NRIP save: {})",
            cpuid(0x8000_000A).0 & 0xFF,
            cpuid(0x8000_000A).1,
            features,
            features & (1 << 3) != 0
        );

        let iopm = alloc(3).ok_or("no memory for the I/O permission map")?;
        let msrpm = alloc(2).ok_or("no memory for the MSR permission map")?;
        // Every port and every MSR intercepted but those switched per guest.
        phys::fill(iopm, 3 * 4096, 0xFF);
        phys::fill(msrpm, 2 * 4096, 0xFF);
        for msr in PASSTHROUGH_MSRS {
            msrpm_allow(msrpm, msr);
        }
        Svm {
            asids: cpuid(0x8000_000A).1,
            iopm,
            msrpm,
            host_area: 0,
            rdtscp: cpuid(0x8000_0001).3 & (1 << 27) != 0,
        }
        .for_this_cpu(alloc)
    }

    /// Turns SVM on for the calling CPU (EFER.SVME, its own host save area) and returns
    /// its backend: the shared permission maps with this CPU's host VMSAVE area.
    pub fn for_this_cpu(
        &self,
        alloc: &mut dyn FnMut(u64) -> Option<u64>,
    ) -> Result<Svm, &'static str> {
        if cpuid(0x8000_0001).2 & (1 << 2) == 0 {
            return Err("CPU has no SVM");
        }
        let hsave = alloc(1).ok_or("no memory for the host save area")?;
        let host_area = alloc(1).ok_or("no memory for the host VMSAVE area")?;
        // SAFETY: SVM is present (checked above); setting EFER.SVME and the host save
        // area (an owned, zeroed frame) changes nothing else about the host.
        unsafe {
            let mut efer = Msr::new(MSR_EFER);
            efer.write(efer.read() | EFER_SVME);
            Msr::new(MSR_VM_HSAVE_PA).write(hsave);
        }
        Ok(Svm {
            asids: self.asids,
            iopm: self.iopm,
            msrpm: self.msrpm,
            host_area,
            rdtscp: self.rdtscp,
        })
    }
}

impl Svm {
    /// Loads vCPU `v`'s x87/SSE state and DR0-DR3 into this CPU for a slice: the
    /// hypervisor itself uses neither (its target generates no x87/SSE code, it sets no
    /// breakpoint; `DR7` is switched by VMRUN), so they stay the guest's across its
    /// exits until [`Svm::end_slice`], as Xen switches them only when another vCPU
    /// runs. Each slice loads all of this state a guest can reach, so nothing of the
    /// vCPU that ran before survives into it.
    pub fn begin_slice(&self, v: &SvmVcpu) {
        // SAFETY: the FXSAVE area is the vCPU's own, 64-byte aligned and 512 bytes,
        // written by `end_slice` or set up valid by `create_vcpu`; loading debug
        // address registers arms nothing (DR7 decides, and it is the guest's only while
        // it runs).
        unsafe {
            core::arch::x86_64::_fxrstor64(v.fpu.0.as_ptr());
            core::arch::asm!(
                "mov dr0, {0}", "mov dr1, {1}", "mov dr2, {2}", "mov dr3, {3}",
                in(reg) v.dr[0], in(reg) v.dr[1], in(reg) v.dr[2], in(reg) v.dr[3],
                options(nostack, preserves_flags)
            );
        }
    }

    /// Saves what [`Svm::begin_slice`] loaded, as the guest left it, into `v`.
    pub fn end_slice(&self, v: &mut SvmVcpu) {
        // SAFETY: reading the debug address registers has no side effect; the FXSAVE
        // area is the vCPU's own, 64-byte aligned and 512 bytes.
        unsafe {
            core::arch::asm!(
                "mov {0}, dr0", "mov {1}, dr1", "mov {2}, dr2", "mov {3}, dr3",
                out(reg) v.dr[0], out(reg) v.dr[1], out(reg) v.dr[2], out(reg) v.dr[3],
                options(nostack, preserves_flags)
            );
            core::arch::x86_64::_fxsave64(v.fpu.0.as_mut_ptr());
        }
    }
}

impl VirtBackend for Svm {
    type Vcpu = SvmVcpu;
    fn asids(&self) -> u32 {
        self.asids
    }

    fn create_vcpu(&self, vmcb: u64, asid: u32, npt_root: u64, entry: u32, ebx: u32) -> SvmVcpu {
        let v = SvmVcpu {
            vmcb,
            regs: GuestRegs {
                rbx: ebx as u64,
                ..GuestRegs::default()
            },
            fpu: FxArea::initial(),
            dr: [0; 4],
            tsc_aux: 0,
            reflected: 0,
        };
        phys::zero(vmcb, 4096);
        w32(vmcb, C_INTERCEPT_EXC, INTERCEPT_EXCEPTIONS);
        w32(vmcb, C_INTERCEPT_MISC1, INTERCEPT_MISC1);
        w32(vmcb, C_INTERCEPT_MISC2, INTERCEPT_MISC2);
        if !INTERCEPTS_LOGGED.swap(true, core::sync::atomic::Ordering::Relaxed) {
            // Read back from the first VMCB, for the suite to check against the APM
            // (TCG does not model every intercept, so not every one can be exercised).
            let w = |off: usize| {
                let mut b = [0u8; 4];
                phys::read(vmcb + off as u64, &mut b);
                u32::from_le_bytes(b)
            };
            let (exc, v3, v4) = (
                w(C_INTERCEPT_EXC),
                w(C_INTERCEPT_MISC1),
                w(C_INTERCEPT_MISC2),
            );
            crate::log!(
                "svm: VMCB intercepts: exceptions {:#010x}, vector 3 {:#010x}, vector 4 {:#010x}",
                exc,
                v3,
                v4
            );
        }
        w64(vmcb, C_IOPM_BASE, self.iopm);
        w64(vmcb, C_MSRPM_BASE, self.msrpm);
        w32(vmcb, C_ASID, asid);
        w8(vmcb, C_TLB_CTL, 1); // flush this ASID on the first VMRUN
        w64(vmcb, C_VINTR, 1 << 24); // V_INTR_MASKING: guest IF masks only virtual IRQs
        w64(vmcb, C_NP_ENABLE, 1);
        w64(vmcb, C_NCR3, npt_root);
        // PVH entry state: 32-bit protected mode, flat segments, paging off.
        let code32 = 0xC9B; // G, D/B, P, S, type 0xB
        let data32 = 0xC93;
        seg(vmcb, S_CS, 0x08, code32, 0xFFFF_FFFF, 0);
        for off in [S_DS, S_ES, S_SS, S_FS, S_GS] {
            seg(vmcb, off, 0x10, data32, 0xFFFF_FFFF, 0);
        }
        seg(vmcb, S_TR, 0x18, 0x8B, 0x67, 0);
        seg(vmcb, S_LDTR, 0, 0x82, 0, 0);
        seg(vmcb, S_GDTR, 0, 0, 0, 0);
        seg(vmcb, S_IDTR, 0, 0, 0, 0);
        w8(vmcb, S_CPL, 0);
        w64(vmcb, S_EFER, EFER_SVME);
        w64(vmcb, S_CR0, 0x11); // PE | ET
        w64(vmcb, S_CR3, 0);
        w64(vmcb, S_CR4, 0);
        w64(vmcb, S_DR6, 0xFFFF_0FF0);
        w64(vmcb, S_DR7, 0x400);
        w64(vmcb, S_RFLAGS, 2);
        w64(vmcb, S_RIP, entry as u64);
        w64(vmcb, S_RSP, 0);
        w64(vmcb, S_RAX, 0);
        w64(vmcb, S_GPAT, 0x0007_0406_0007_0406);
        v
    }

    fn create_vcpu_real(&self, vmcb: u64, asid: u32, npt_root: u64, vector: u8) -> SvmVcpu {
        let v = self.create_vcpu(vmcb, asid, npt_root, 0, 0);
        // As Xen's hvm_vcpu_reset_state after a SIPI: real-mode segments (64 KiB
        // limits, present, accessed), CR0 ET only (NPT lets SVM run real mode), IP 0.
        let sel = (vector as u16) << 8;
        seg(vmcb, S_CS, sel, 0x9B, 0xFFFF, (vector as u64) << 12);
        for off in [S_DS, S_ES, S_SS, S_FS, S_GS] {
            seg(vmcb, off, 0, 0x93, 0xFFFF, 0);
        }
        seg(vmcb, S_TR, 0, 0x8B, 0xFFFF, 0);
        seg(vmcb, S_LDTR, 0, 0x82, 0xFFFF, 0);
        seg(vmcb, S_GDTR, 0, 0, 0xFFFF, 0);
        seg(vmcb, S_IDTR, 0, 0, 0xFFFF, 0);
        w64(vmcb, S_CR0, 0x10);
        w64(vmcb, S_RIP, 0);
        v
    }

    fn run(&self, v: &mut SvmVcpu) -> Exit {
        w32(v.vmcb, C_CLEAN, 0);
        // SAFETY: the VMCB and the host VMSAVE area are owned frames (the VMCB set up by
        // `create_vcpu`, so VMLOAD loads sane TR/LDTR/FS/GS state); `regs` is the
        // vCPU's own. The guest's TSC_AUX goes in (the host does not use it; it may
        // have changed at the last exit). Its FPU state and DR0-DR3 are in the
        // registers already: `begin_slice`.
        unsafe {
            if self.rdtscp {
                Msr::new(MSR_TSC_AUX).write(v.tsc_aux as u64);
            }
            hv_svm_run(v.vmcb, &mut v.regs, self.host_area);
        }
        w8(v.vmcb, C_TLB_CTL, 0);
        let code = r64(v.vmcb, C_EXITCODE);
        let info1 = r64(v.vmcb, C_EXITINFO1);
        let info2 = r64(v.vmcb, C_EXITINFO2);
        let intinfo = r64(v.vmcb, C_EXITINTINFO);
        let exception = (EXIT_EXCP_BASE..EXIT_EXCP_BASE + 32).contains(&code);
        if intinfo & (1 << 31) != 0 && !exception {
            // An event was being delivered when the exit came (e.g. an injected #GP
            // whose delivery was intercepted): deliver it again at the next entry.
            w64(v.vmcb, C_EVENTINJ, intinfo);
        }
        match code {
            EXIT_INTR | EXIT_NMI => Exit::ExternalInterrupt,
            c if exception => {
                let vector = (c - EXIT_EXCP_BASE) as u8;
                Exit::Exception {
                    vector,
                    // #AC pushes an error code (always 0); #DB none.
                    error_code: (vector == EXC_AC as u8).then_some(info1 as u32),
                }
            }
            EXIT_RDPMC => Exit::Insn(Insn::Rdpmc),
            EXIT_CPUID => Exit::Cpuid,
            EXIT_INVD => Exit::Insn(Insn::Invd),
            EXIT_HLT => Exit::Hlt,
            EXIT_INVLPGA => Exit::Insn(Insn::Invlpga),
            EXIT_VMRUN | EXIT_VMLOAD | EXIT_VMSAVE | EXIT_STGI | EXIT_CLGI | EXIT_SKINIT => {
                Exit::Insn(Insn::Svm)
            }
            EXIT_WBINVD => Exit::Insn(Insn::Wbinvd),
            EXIT_MONITOR => Exit::Insn(Insn::Monitor),
            EXIT_MWAIT | EXIT_MWAIT_ARMED => Exit::Insn(Insn::Mwait),
            EXIT_XSETBV => Exit::Insn(Insn::Xsetbv),
            EXIT_IOIO => Exit::Io {
                port: (info1 >> 16) as u16,
                input: info1 & 1 != 0,
                size: ((info1 >> 4) & 7) as u8,
                string: info1 & 4 != 0,
                rep: info1 & 8 != 0,
                next_rip: info2,
            },
            EXIT_MSR => Exit::Msr {
                write: info1 & 1 != 0,
            },
            EXIT_SHUTDOWN => Exit::Shutdown,
            EXIT_VMMCALL => Exit::Hypercall,
            EXIT_NPF => Exit::NestedPageFault {
                gpa: info2,
                flags: info1,
                delivering: intinfo & (1 << 31) != 0,
            },
            0xFFFF_FFFF | 0xFFFF_FFFF_FFFF_FFFF => Exit::Invalid,
            c => Exit::Other(c),
        }
    }
}

impl VcpuState for SvmVcpu {
    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rax(&self) -> u64 {
        r64(self.vmcb, S_RAX)
    }
    fn set_rax(&mut self, v: u64) {
        w64(self.vmcb, S_RAX, v)
    }
    fn rip(&self) -> u64 {
        r64(self.vmcb, S_RIP)
    }
    fn set_rip(&mut self, v: u64) {
        w64(self.vmcb, S_RIP, v)
    }
    fn rsp(&self) -> u64 {
        r64(self.vmcb, S_RSP)
    }
    fn set_rsp(&mut self, v: u64) {
        w64(self.vmcb, S_RSP, v)
    }
    fn code64(&self) -> bool {
        // EFER.LMA (bit 10) and CS.L (bit 9 of the VMCB's packed attributes).
        let mut attr = [0u8; 2];
        phys::read(self.vmcb + S_CS as u64 + 2, &mut attr);
        r64(self.vmcb, S_EFER) & (1 << 10) != 0 && u16::from_le_bytes(attr) & (1 << 9) != 0
    }
    fn cr0(&self) -> u64 {
        r64(self.vmcb, S_CR0)
    }
    fn cr3(&self) -> u64 {
        r64(self.vmcb, S_CR3)
    }
    fn long_mode(&self) -> bool {
        r64(self.vmcb, S_EFER) & (1 << 10) != 0
    }
    fn cpl(&self) -> u8 {
        let mut b = [0u8];
        phys::read(self.vmcb + S_CPL as u64, &mut b);
        b[0]
    }
    fn flush_tlb(&mut self) {
        w8(self.vmcb, C_TLB_CTL, 1);
    }
    fn set_virq(&mut self, vector: u8) {
        // V_INTR (int_ctl, int_vector): V_INTR_MASKING (24) kept, V_IRQ (8), priority
        // 15 (19:16), V_IGN_TPR (20); the vector in the upper half.
        let ctl = r64(self.vmcb, C_VINTR) & 0xFF00_0000;
        w64(
            self.vmcb,
            C_VINTR,
            (vector as u64) << 32 | ctl | 1 << 8 | 0xF << 16 | 1 << 20,
        );
    }
    fn virq(&self) -> Option<u8> {
        let ctl = r64(self.vmcb, C_VINTR);
        (ctl & 1 << 8 != 0).then_some((ctl >> 32) as u8)
    }
    fn cr4(&self) -> u64 {
        r64(self.vmcb, S_CR4)
    }
    fn rflags(&self) -> u64 {
        r64(self.vmcb, S_RFLAGS)
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        // EVENTINJ: vector, type 3 (exception), error code valid, valid; the error
        // code in bits 63:32.
        let ev = vector as u64
            | (3 << 8)
            | (error_code.is_some() as u64) << 11
            | (1 << 31)
            | (error_code.unwrap_or(0) as u64) << 32;
        w64(self.vmcb, C_EVENTINJ, ev);
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
}
