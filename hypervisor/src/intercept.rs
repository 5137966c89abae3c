//! Exits for intercepted exceptions and instructions: what a guest may not run natively
//! gets Xen's answer (a reflected exception, an emulation, #UD or #GP), never a dead
//! CPU or a host state change. The intercept bits themselves: `arch/svm_intercepts.rs`.

use crate::domain::Domain;
use crate::hypercall::After;
use crate::virt::{Insn, VcpuState};

const UD: u8 = 6;
const GP: u8 = 13;
/// CR4.OSXSAVE: without it XSETBV is #UD.
const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 bits a guest may set: x87 only, as CPUID offers no XSAVE (leaf 1 ECX.XSAVE and
/// leaf 0xD are hidden: only the FXSAVE state is switched between vCPUs).
pub const XCR0_ALLOWED: u64 = 1;

/// An intercepted #DB or #AC: delivered to the guest through its own IDT, one exit per
/// delivery, so a guest whose handler raises the same exception again (XSA-156) loops
/// in its own slices, preemptible by the tick, instead of hanging the CPU.
pub fn exception(d: &mut Domain, vector: u8, error_code: Option<u32>) -> After {
    let rip = d.vcpu().rip();
    let n = d.vcpu().count_reflected();
    if n == 1 {
        crate::log!(
            "d{}: exception {} intercepted and reflected into the guest (rip {:#x})",
            d.id,
            vector,
            rip
        );
    }
    d.vcpu().inject_exception(vector, error_code);
    After::Continue
}

/// An intercepted instruction.
pub fn insn(d: &mut Domain, insn: Insn) -> After {
    let v = d.vcpu();
    let rip = v.rip();
    match insn {
        // No virtual PMU: as a CPU without the counters, #GP(0).
        Insn::Rdpmc => v.inject_gp(),
        // Guest memory is ordinary write-back RAM and no device is assigned: nothing to
        // write back, and a real WBINVD/INVD would stall the physical CPU (or drop
        // other domains' dirty lines) at the guest's asking. Both complete as no-ops
        // (Xen emulates INVD as WBINVD, and WBINVD as a no-op without passthrough).
        Insn::Invd | Insn::Wbinvd => v.set_rip(rip + 2),
        // No nested SVM (hidden in CPUID) and no MONITOR/MWAIT (hidden): #UD, as Xen.
        Insn::Invlpga | Insn::Svm | Insn::Monitor | Insn::Mwait => v.inject_exception(UD, None),
        Insn::Xsetbv => xsetbv(d),
    }
    After::Continue
}

/// XSETBV: #UD without CR4.OSXSAVE; #GP(0) for an XCR other than 0 or a value CPUID
/// does not offer (x87 must be set). XSAVE is hidden, so the only valid value is x87,
/// which every vCPU and the host have from reset: the hardware XCR0 is never written,
/// so there is no per-vCPU XCR0 to switch (offering XSAVE must add that, with the
/// XSAVE area).
fn xsetbv(d: &mut Domain) {
    let v = d.vcpu();
    let regs = *v.regs();
    let value = (regs.rdx << 32) | (v.rax() & 0xFFFF_FFFF);
    if v.cr4() & CR4_OSXSAVE == 0 {
        v.inject_exception(UD, None);
    } else if regs.rcx as u32 != 0 || value & 1 == 0 || value & !XCR0_ALLOWED != 0 {
        v.inject_exception(GP, Some(0));
    } else {
        let rip = v.rip();
        v.set_rip(rip + 3);
    }
}
