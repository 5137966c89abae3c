//! Port I/O of HVM/PVH guests. No device is emulated; port 0xE9 (Xen's HVM debug port,
//! which Linux's `earlyprintk=xen` writes with `rep outsb` on an HVM/PVH guest) goes to
//! the domain's console, line-buffered with its `(dN)` prefix and within the same output
//! rate as CONSOLEIO_write.

use crate::addr::Gpa;
use crate::arch::phys;
use crate::domain::{Access, Domain};
use crate::hypercall::{console_byte, After};
use crate::virt::VcpuState;
use sluice_abi::hypercall::{VcpuRegisterVcpuInfo, XenErrno};
use zerocopy::IntoBytes;

/// sizeof(struct vcpu_info).
const VCPU_INFO_SIZE: u64 = 64;

/// Xen's HVM debug console port.
pub const DEBUG_PORT: u16 = 0xE9;
/// Bytes of one `rep outsb` copied per exit; the rest on re-execution (the instruction
/// is left in place with RSI/RCX advanced, as the CPU does after an interrupt).
pub const OUTS_CHUNK: u64 = 256;

/// One IOIO exit, decoded.
#[derive(Debug, Clone, Copy)]
pub struct IoExit {
    pub port: u16,
    pub input: bool,
    /// Operand size in bytes (1, 2 or 4).
    pub size: u8,
    pub string: bool,
    pub rep: bool,
    pub next_rip: u64,
}

/// Handles an IOIO exit: 0xE9 output printed; other writes dropped, reads all ones.
pub fn io(d: &mut Domain, e: IoExit) -> After {
    if e.port == DEBUG_PORT && !e.input && e.size == 1 {
        if !e.string {
            let b = d.vcpu().rax() as u8;
            print(d, &[b]);
        } else {
            // OUTSB from DS:RSI (flat: a PVH guest runs with zero segment bases); RCX
            // counts a REP. Read once into a local buffer; a fault ends the string.
            let regs = *d.vcpu().regs();
            let want = if e.rep { regs.rcx } else { 1 };
            let n = want.min(OUTS_CHUNK);
            let mut buf = [0u8; OUTS_CHUNK as usize];
            let bytes = &mut buf[..n as usize];
            if d.copy_from_guest(regs.rsi, bytes).is_err() {
                // As a #PF would: nothing more printed, the string abandoned.
                d.vcpu().set_rip(e.next_rip);
                return After::Continue;
            }
            print(d, bytes);
            let r = d.vcpu().regs();
            r.rsi = r.rsi.wrapping_add(n);
            if e.rep {
                r.rcx -= n;
                if r.rcx != 0 {
                    // More to do: run the instruction again.
                    return After::Continue;
                }
            }
        }
    } else if e.input && !e.string {
        let rax = d.vcpu().rax();
        let ones = match e.size {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => 0xFFFF_FFFF,
        };
        d.vcpu().set_rax(rax | ones);
    }
    d.vcpu().set_rip(e.next_rip);
    After::Continue
}

fn print(d: &mut Domain, bytes: &[u8]) {
    let now = d.clock.now_ns();
    let k = d.console_rate.take(now, bytes.len() as u64) as usize;
    for &b in &bytes[..k] {
        console_byte(d, b);
    }
}

/// Host-physical address of vCPU `k`'s vcpu_info: where it registered it (looked up
/// through the checked guest-memory API at each use: writable RAM of its own, else
/// `None`), or its slot in shared_info.
pub fn vcpu_info_pa(d: &Domain, k: usize) -> Option<u64> {
    match d.vcpu_info_at[k] {
        Some(gpa) => d
            .translate(Gpa(gpa.0 & !0xFFF), Access::Write)
            .map(|hpa| hpa.0 + (gpa.0 & 0xFFF)),
        None => Some(d.shared_info + VCPU_INFO_SIZE * k as u64),
    }
}

/// VCPUOP_register_vcpu_info for vCPU `k`, as Xen's map_vcpu_info: the vcpu_info may not
/// cross its page (EINVAL), is registered once (EINVAL after), must be the domain's own
/// writable RAM (EINVAL); the current contents are copied there and every event marked
/// pending (a spurious upcall, so none is lost).
pub fn register_vcpu_info(d: &mut Domain, k: usize, arg: u64) -> Result<i64, XenErrno> {
    let mut r = VcpuRegisterVcpuInfo::default();
    d.copy_from_guest(arg, r.as_mut_bytes())?;
    let offset = r.offset as u64;
    if offset > 4096 - VCPU_INFO_SIZE || d.vcpu_info_at[k].is_some() {
        return Err(XenErrno::Einval);
    }
    let gpa = r.mfn.checked_mul(4096).ok_or(XenErrno::Einval)?;
    let page = d
        .translate(Gpa(gpa), Access::Write)
        .ok_or(XenErrno::Einval)?;
    let old = vcpu_info_pa(d, k).ok_or(XenErrno::Einval)?;
    let mut info = [0u8; VCPU_INFO_SIZE as usize];
    phys::read(old, &mut info);
    info[0] = 1; // evtchn_upcall_pending
    info[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // evtchn_pending_sel
    phys::write(page.0 + offset, &info);
    d.vcpu_info_at[k] = Some(Gpa(gpa + offset));
    crate::log!("d{}: vCPU {} vcpu_info at gpa {:#x}", d.id, k, gpa + offset);
    Ok(0)
}
