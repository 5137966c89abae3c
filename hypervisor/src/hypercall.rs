//! The Xen guest ABI: CPUID leaves 0x40000000+, the hypercall MSR and page, and the
//! hypercalls. Every argument is untrusted: bad pointers, sizes and commands give Xen's
//! error codes.

use crate::addr::{Gfn, Gpa, Hpa};
use crate::domain::{Access, Domain, RunState};
use crate::mm::{FrameAllocator, Owner};
use crate::virt::VcpuState;
use sluice_abi::hypercall::{
    Hypercall, SchedOp, SchedShutdown, ShutdownReason, XenErrno, XenFeatureInfo, XenVer,
    XENFEAT_NR_SUBMAPS,
};
use sluice_abi::hypercall::{
    SchedPoll, VcpuOp, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, XenAddToPhysmap, XenMapSpace,
    XenMemOp, XenMemoryMap, VCPU_SSHOTTMR_FUTURE,
};
use sluice_abi::types::DOMID_SELF;
use zerocopy::{FromBytes, IntoBytes};

mod console;

pub(crate) use console::console_byte;
use console::console_io;
pub use console::ConsoleRate;

/// The Xen version this hypervisor's ABI follows.
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;
/// The hypercall-page MSR announced in CPUID 0x40000002.
pub const HYPERCALL_MSR: u32 = 0x4000_0000;

/// What RDTSCP returns in ECX: per vCPU (Xen's `msrs->tsc_aux`).
const MSR_TSC_AUX: u32 = 0xC000_0103;

/// Xen's MILLISECS(1): the shortest periodic timer.
const PERIODIC_MIN_NS: u64 = 1_000_000;
/// Xen's STIME_DELTA_MAX: the longest.
const STIME_DELTA_MAX: u64 = u64::MAX >> 2;

/// What the scheduler does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    Yield,
    Block,
    /// VCPUOP_down on itself: the vCPU stops until VCPUOP_up.
    Down,
    Shutdown(u32),
    Kill,
}

/// XENFEAT_* bits this hypervisor provides: writable_page_tables (0),
/// auto_translated_physmap (2), supervisor_mode_kernel (3), hvm_callback_vector (8:
/// HVM_PARAM_CALLBACK_IRQ of the vector type, crate::hvm), hvm_safe_pvclock (9).
const FEATURES_SUBMAP0: u32 = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 8) | (1 << 9);

pub fn cpuid(d: &mut Domain) {
    let leaf = d.vcpu().rax() as u32;
    let sub = d.vcpu().regs().rcx as u32;
    let r = match leaf {
        0x4000_0000 => [
            0x4000_0005,
            u32::from_le_bytes(*b"XenV"),
            u32::from_le_bytes(*b"MMXe"),
            u32::from_le_bytes(*b"nVMM"),
        ],
        0x4000_0001 => [(XEN_MAJOR << 16) | XEN_MINOR, 0, 0, 0],
        0x4000_0002 => [1, HYPERCALL_MSR, 0, 0],
        0x4000_0003 => [0; 4],
        // The HVM leaf, as Xen 4.17's: the vCPU id (EBX, VCPU_ID_PRESENT), the domain
        // id (ECX, DOMID_PRESENT), per-vCPU upcall vectors.
        0x4000_0004 => [
            1 << 3 | 1 << 4 | crate::vsmp::CPUID_UPCALL_VECTOR,
            d.cur as u32,
            d.id as u32,
            0,
        ],
        0x4000_0005 => [0; 4],
        0x4000_0006..=0x4FFF_FFFF => [0; 4],
        _ => {
            let mut r = crate::arch::cpuid(leaf, sub);
            match leaf {
                // Running under a hypervisor; no XSAVE/AVX: only the FXSAVE state (x87,
                // SSE) is switched between vCPUs, so wider state must not be offered.
                // MONITOR/MWAIT (ECX bit 3) hidden too: their exits give #UD.
                // The LAPIC is the emulated x2APIC (crate::vlapic): ECX 21 set, EDX 9
                // (APIC) kept; its APIC id in EBX 31:24. No MTRRs (EDX 12: no MTRR MSRs
                // are emulated; Linux then takes "MTRRs disabled"), no MCE/MCA (EDX 7,
                // 14: no machine-check MSRs; Xen's vMCE is not modelled).
                1 => {
                    r[2] = (r[2] | 1 << 31 | 1 << 21) & !(1 << 3 | 1 << 26 | 1 << 27 | 1 << 28);
                    r[3] = (r[3] | 1 << 9) & !(1 << 12 | 1 << 7 | 1 << 14);
                    r[1] = (r[1] & 0x00FF_FFFF) | crate::vlapic::apic_id(d.cur) << 24;
                }
                5 => r = [0; 4],
                // The x2APIC id of the topology leaves is the vCPU's.
                0xB | 0x1F => r[3] = crate::vlapic::apic_id(d.cur),
                7 => r[1] &= !(1 << 5 | 0xDC23_0000),
                0xD => r = [0; 4],
                // No nested SVM (2), no core performance counters (23: RDPMC is #GP),
                // no MONITORX/MWAITX (29). RDTSCP (EDX 27) stays: it runs natively
                // with the vCPU's own TSC_AUX.
                0x8000_0001 => r[2] &= !(1 << 2 | 1 << 23 | 1 << 29),
                0x8000_000A => r = [0; 4],
                _ => {}
            }
            r
        }
    };
    d.vcpu().set_rax(r[0] as u64);
    let regs = d.vcpu().regs();
    regs.rbx = r[1] as u64;
    regs.rcx = r[2] as u64;
    regs.rdx = r[3] as u64;
    let rip = d.vcpu().rip();
    d.vcpu().set_rip(rip + 2);
}

/// RDMSR / WRMSR of an MSR the permission map intercepts.
pub fn msr(d: &mut Domain, write: bool) -> After {
    let regs = *d.vcpu().regs();
    let index = regs.rcx as u32;
    let value = (regs.rdx << 32) | (d.vcpu().rax() & 0xFFFF_FFFF);
    if write && index == HYPERCALL_MSR {
        let gpa = Gpa(value & !0xFFF);
        if value & 0xFFF != 0 || write_hypercall_page(d, gpa).is_err() {
            d.vcpu().inject_gp();
            return After::Continue;
        }
        crate::log!("d{}: hypercall page at gpa {:#x}", d.id, gpa);
    } else if !write && index == HYPERCALL_MSR {
        d.vcpu().set_rax(0);
        d.vcpu().regs().rdx = 0;
    } else if index == MSR_TSC_AUX && write {
        // Per vCPU, loaded at each entry; the upper half is reserved (#GP).
        if value >> 32 != 0 {
            d.vcpu().inject_gp();
            return After::Continue;
        }
        d.vcpu().set_tsc_aux(value as u32);
    } else if index == MSR_TSC_AUX {
        let aux = d.vcpu().tsc_aux();
        d.vcpu().set_rax(aux as u64);
        d.vcpu().regs().rdx = 0;
    } else if let Some(r) =
        crate::vlapic::msr(d, index, write, value).or_else(|| crate::hvm::msr(index))
    {
        let Ok(v) = r else {
            d.vcpu().inject_gp();
            return After::Continue;
        };
        if !write {
            d.vcpu().set_rax(v & 0xFFFF_FFFF);
            d.vcpu().regs().rdx = v >> 32;
        }
    } else {
        // Not emulated: #GP, the first few logged per domain.
        if d.msr_refused < 16 {
            crate::log!(
                "d{}: {} of MSR {:#x} refused (#GP)",
                d.id,
                if write { "WRMSR" } else { "RDMSR" },
                index
            );
        }
        d.msr_refused += 1;
        d.vcpu().inject_gp();
        return After::Continue;
    }
    let rip = d.vcpu().rip();
    d.vcpu().set_rip(rip + 2);
    After::Continue
}

/// Fills a page with 32-byte stubs: `mov $nr, %eax; vmmcall; ret`.
fn write_hypercall_page(d: &Domain, gpa: Gpa) -> Result<(), XenErrno> {
    let mut page = [0xCCu8; 4096];
    for (nr, stub) in page.chunks_exact_mut(32).enumerate() {
        let n = (nr as u32).to_le_bytes();
        stub[..9].copy_from_slice(&[0xB8, n[0], n[1], n[2], n[3], 0x0F, 0x01, 0xD9, 0xC3]);
    }
    d.write_gpa(gpa, &page)
}

fn ret(r: Result<i64, XenErrno>) -> u64 {
    match r {
        Ok(v) => v as u64,
        Err(e) => e.to_ret() as u64,
    }
}

/// VMMCALL: number in rax, arguments in rdi, rsi, rdx, r10, r8 (64-bit guests) or ebx,
/// ecx, edx, esi, edi (32-bit guests).
pub fn hypercall(doms: &mut [Option<Domain>], cur: usize, fa: &mut FrameAllocator) -> After {
    let Some(d) = doms[cur].as_mut() else {
        return After::Kill;
    };
    let rip = d.vcpu().rip();
    d.vcpu().set_rip(rip + 3);
    let nr = d.vcpu().rax();
    let r = *d.vcpu().regs();
    let a = if d.vcpu().long_mode() {
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8]
    } else {
        [r.rbx, r.rcx, r.rdx, r.rsi, r.rdi].map(|x| x & 0xFFFF_FFFF)
    };
    if d.vcpu().cpl() != 0 {
        // Xen refuses hypercalls from guest user mode.
        d.vcpu().set_rax(XenErrno::Eperm.to_ret() as u64);
        return After::Continue;
    }
    let (result, after) = match Hypercall::from_raw(nr) {
        Some(Hypercall::ConsoleIo) => (console_io(d, a[0], a[1], a[2]), After::Continue),
        Some(Hypercall::XenVersion) => (done(xen_version(d, a[0], a[1])), After::Continue),
        Some(Hypercall::SchedOp) => {
            let (r, after) = sched_op(d, a[0], a[1]);
            (done(r), after)
        }
        Some(Hypercall::MemoryOp) => (done(memory_op(d, fa, a[0], a[1])), After::Continue),
        Some(Hypercall::VcpuOp) => {
            let (r, after) = vcpu_op(d, a[0], a[1], a[2]);
            (done(r), after)
        }
        Some(Hypercall::GrantTableOp) => (
            crate::grant::grant_table_op(doms, cur, fa, a[0], a[1], a[2]),
            After::Continue,
        ),
        Some(Hypercall::EventChannelOp) => (
            done(crate::evtchn::event_channel_op(doms, cur, a[0], a[1])),
            After::Continue,
        ),
        Some(Hypercall::HvmOp) => (
            done(crate::hvm::hvm_op(doms, cur, a[0], a[1])),
            After::Continue,
        ),
        _ => (Err(XenErrno::Enosys), After::Continue),
    };
    let Some(d) = doms[cur].as_mut() else {
        return After::Kill;
    };
    match result {
        Ok(Progress::Preempted(args)) => {
            // Xen's hypercall_create_continuation: the guest re-executes VMMCALL (RIP
            // not advanced, rax the hypercall number again) with the remaining work in
            // its argument registers; meanwhile the lock is released and a pending tick
            // preempts it at the next VMRUN. Guests treat the argument registers as
            // clobbered by a hypercall (Linux: "+D", "+S", "+d").
            d.vcpu().set_rip(rip);
            d.vcpu().set_rax(nr);
            let long = d.vcpu().long_mode();
            let regs = d.vcpu().regs();
            if long {
                [regs.rdi, regs.rsi, regs.rdx] = args;
            } else {
                [regs.rbx, regs.rcx, regs.rdx] = args;
            }
        }
        Ok(Progress::Done(v)) => d.vcpu().set_rax(v as u64),
        Err(e) => d.vcpu().set_rax(ret(Err(e))),
    }
    after
}

/// How far a hypercall got: done (its return value), or stopped at a preemption point
/// with the first three arguments of its continuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Done(i64),
    Preempted([u64; 3]),
}

fn done(r: Result<i64, XenErrno>) -> Result<Progress, XenErrno> {
    r.map(Progress::Done)
}

/// Operations of a batched hypercall (a grant op, a console chunk) done per entry before
/// a continuation: each is bounded (at most a page copied or mapped), so one entry
/// holds the lock for a bounded time whatever count the guest passes.
pub const OPS_PER_ENTRY: u64 = 16;
fn xen_version(d: &mut Domain, cmd: u64, arg: u64) -> Result<i64, XenErrno> {
    match u32::try_from(cmd).ok().and_then(XenVer::from_raw) {
        Some(XenVer::Version) => Ok(((XEN_MAJOR << 16) | XEN_MINOR) as i64),
        Some(XenVer::GetFeatures) => {
            let mut fi = XenFeatureInfo::default();
            d.copy_from_guest(arg, fi.as_mut_bytes())?;
            if fi.submap_idx >= XENFEAT_NR_SUBMAPS {
                return Err(XenErrno::Einval);
            }
            fi.submap = FEATURES_SUBMAP0;
            d.copy_to_guest(arg, fi.as_bytes())?;
            Ok(0)
        }
        Some(XenVer::Pagesize) => Ok(4096),
        Some(XenVer::Extraversion) => {
            let mut s = [0u8; sluice_abi::hypercall::XEN_EXTRAVERSION_LEN];
            s[..7].copy_from_slice(b"-sluice");
            d.copy_to_guest(arg, &s)?;
            Ok(0)
        }
        _ => Err(XenErrno::Enosys),
    }
}

fn sched_op(d: &mut Domain, cmd: u64, arg: u64) -> (Result<i64, XenErrno>, After) {
    match u32::try_from(cmd).ok().and_then(SchedOp::from_raw) {
        Some(SchedOp::Yield) => (Ok(0), After::Yield),
        Some(SchedOp::Block)
            if crate::evtchn::upcall_pending(d, d.cur) || d.interrupt_due(d.cur) =>
        {
            (Ok(0), After::Continue)
        }
        Some(SchedOp::Block) => (Ok(0), After::Block),
        Some(SchedOp::Shutdown) => {
            let mut s = [0u8; 4];
            if let Err(e) = d.copy_from_guest(arg, &mut s) {
                return (Err(e), After::Continue);
            }
            let s = SchedShutdown::read_from_bytes(&s).unwrap_or_default();
            match ShutdownReason::from_raw(s.reason) {
                Some(_) => (Ok(0), After::Shutdown(s.reason)),
                None => (Err(XenErrno::Einval), After::Continue),
            }
        }
        Some(SchedOp::Poll) => match poll(d, arg) {
            Ok(true) => (Ok(0), After::Continue),
            Ok(false) => (Ok(0), After::Block),
            Err(e) => (Err(e), After::Continue),
        },
        _ => (Err(XenErrno::Enosys), After::Continue),
    }
}

/// SCHEDOP_poll: returns at once (true) if a listed port is pending; otherwise records
/// the ports and the timeout so a send to one of them (masked or not) or the timeout
/// wakes the vCPU.
fn poll(d: &mut Domain, arg: u64) -> Result<bool, XenErrno> {
    let mut p = SchedPoll::default();
    d.copy_from_guest(arg, p.as_mut_bytes())?;
    let n = p.nr_ports as usize;
    if n > 8 {
        return Err(XenErrno::Einval);
    }
    let mut ports = [0u32; 8];
    for (i, port) in ports[..n].iter_mut().enumerate() {
        let mut b = [0u8; 4];
        d.copy_from_guest(p.ports.wrapping_add(4 * i as u64), &mut b)?;
        *port = u32::from_le_bytes(b);
        if *port as usize >= crate::evtchn::NR_PORTS {
            return Err(XenErrno::Einval);
        }
    }
    if ports[..n]
        .iter()
        .any(|&port| crate::evtchn::is_pending(d, port))
    {
        return Ok(true);
    }
    if p.timeout != 0 && p.timeout <= d.clock.now_ns() {
        return Ok(true);
    }
    let e = &mut d.smp.ev[d.cur];
    e.poll_ports = ports;
    e.poll_n = n;
    e.poll_deadline = (p.timeout != 0).then_some(p.timeout);
    Ok(false)
}

/// VCPUOP_*: each vCPU's timers (single-shot ones only by the vCPU itself, EINVAL for
/// another, as Xen; periodic ones for any); secondary vCPUs (a domain with `vcpus=N`,
/// started by INIT/SIPI through the LAPIC, crate::vsmp, or as here)
/// with initialise (a `vcpu_hvm_context`, 32-bit mode: the PVH entry state at its eip,
/// with its esp and ebx) and up, and stop themselves with down.
fn vcpu_op(d: &mut Domain, cmd: u64, vcpu: u64, arg: u64) -> (Result<i64, XenErrno>, After) {
    let Some(op) = u32::try_from(cmd).ok().and_then(VcpuOp::from_raw) else {
        return (Err(XenErrno::Enosys), After::Continue);
    };
    if vcpu >= d.nr_vcpus as u64 {
        return (Err(XenErrno::Enoent), After::Continue);
    }
    let k = vcpu as usize;
    let r = match op {
        VcpuOp::IsUp => Ok((d.vcpus[k].state != RunState::Down) as i64),
        VcpuOp::Initialise => {
            // struct vcpu_hvm_context: mode, pad, then vcpu_hvm_x86_32 (eax, ecx, edx,
            // ebx, esp, ebp, esi, edi, eip, ...).
            let mut c = [0u8; 48];
            match d.copy_from_guest(arg, &mut c) {
                Err(e) => Err(e),
                Ok(()) => {
                    let w = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                    if w(0) != 0 {
                        Err(XenErrno::Einval)
                    } else {
                        d.init_secondary(k, w(40), w(24), w(20)).map(|()| 0)
                    }
                }
            }
        }
        VcpuOp::Up => match (&d.vcpus[k].slot, d.vcpus[k].state) {
            (Some(_), RunState::Down) => {
                d.vcpus[k].state = RunState::Runnable;
                Ok(0)
            }
            (None, RunState::Down) => Err(XenErrno::Einval),
            _ => Ok(0),
        },
        VcpuOp::Down if k == d.cur && k != 0 => {
            return (Ok(0), After::Down);
        }
        VcpuOp::Down => Err(XenErrno::Einval),
        VcpuOp::RegisterVcpuInfo => crate::hvm::register_vcpu_info(d, k, arg),
        VcpuOp::RegisterRunstateMemoryArea => crate::hvm::register_runstate(d, k, arg),
        VcpuOp::SetSingleshotTimer | VcpuOp::StopSingleshotTimer if k != d.cur => {
            Err(XenErrno::Einval)
        }
        VcpuOp::SetSingleshotTimer => {
            let mut t = VcpuSetSingleshotTimer::default();
            match d.copy_from_guest(arg, t.as_mut_bytes()) {
                Err(e) => Err(e),
                Ok(())
                    if t.flags & VCPU_SSHOTTMR_FUTURE != 0
                        && t.timeout_abs_ns < d.clock.now_ns() =>
                {
                    Err(XenErrno::Etime)
                }
                Ok(()) => {
                    d.smp.ev[k].timer_deadline = Some(t.timeout_abs_ns);
                    Ok(0)
                }
            }
        }
        VcpuOp::StopSingleshotTimer => {
            d.smp.ev[k].timer_deadline = None;
            Ok(0)
        }
        // As Xen: under 1 ms or over STIME_DELTA_MAX (2^62 - 1 ns) EINVAL; the first
        // event comes at once unless one came less than a period ago, then one every
        // period (never sooner than a period after the last).
        VcpuOp::SetPeriodicTimer => {
            let mut t = VcpuSetPeriodicTimer::default();
            match d.copy_from_guest(arg, t.as_mut_bytes()) {
                Err(e) => Err(e),
                Ok(()) if !(PERIODIC_MIN_NS..=STIME_DELTA_MAX).contains(&t.period_ns) => {
                    Err(XenErrno::Einval)
                }
                Ok(()) => {
                    d.smp.ev[k].periodic_period = t.period_ns;
                    Ok(0)
                }
            }
        }
        VcpuOp::StopPeriodicTimer => {
            d.smp.ev[k].periodic_period = 0;
            Ok(0)
        }
        _ => Err(XenErrno::Enosys),
    };
    (r, After::Continue)
}

/// Puts a hypervisor-owned frame at `gpa` in the domain's physmap; `at` is where it is
/// now (with the RAM frame it displaced). Returns the new `at`.
fn map_xen_frame(
    d: &mut Domain,
    fa: &mut FrameAllocator,
    gpa: Gpa,
    frame: Hpa,
    at: Option<(Gpa, Hpa)>,
) -> Result<Option<(Gpa, Hpa)>, XenErrno> {
    if gpa.0 >= d.mem_bytes {
        return Err(XenErrno::Einval);
    }
    if at.is_some_and(|(g, _)| g == gpa) {
        return Ok(at);
    }
    // The target must be the domain's own RAM: not another hypervisor frame, not a
    // grant mapping (that frame is another domain's).
    let cur = d.translate(gpa, Access::Read).ok_or(XenErrno::Einval)?;
    if fa.owner(cur) != Owner::Domain(d.id) || d.grant_maps.iter().flatten().any(|m| m.gpa == gpa) {
        return Err(XenErrno::Ebusy);
    }
    // Mapped at the new place first (splitting a 2 MiB leaf there may fail: then nothing
    // changed); if it moves, the RAM frame it displaced goes back where it was (that leaf
    // is split already, so this cannot fail).
    let ram = d.remap(fa, gpa, frame).ok_or(XenErrno::Enomem)?;
    if let Some((g, old)) = at {
        d.remap(fa, g, old).ok_or(XenErrno::Einval)?;
    }
    Ok(Some((gpa, ram)))
}

fn memory_op(d: &mut Domain, fa: &mut FrameAllocator, cmd: u64, arg: u64) -> Result<i64, XenErrno> {
    match u32::try_from(cmd).ok().and_then(XenMemOp::from_raw) {
        Some(XenMemOp::MemoryMap) => {
            let mut m = XenMemoryMap::default();
            d.copy_from_guest(arg, m.as_mut_bytes())?;
            let map = d.e820();
            let n = (m.nr_entries as usize).min(map.len());
            for (i, (addr, size, ty)) in map[..n].iter().enumerate() {
                // struct e820entry is packed: 8 + 8 + 4 bytes.
                let mut e = [0u8; 20];
                e[..8].copy_from_slice(&addr.to_le_bytes());
                e[8..16].copy_from_slice(&size.to_le_bytes());
                e[16..].copy_from_slice(&ty.to_le_bytes());
                d.copy_to_guest(m.buffer.wrapping_add(20 * i as u64), &e)?;
            }
            m.nr_entries = n as u32;
            d.copy_to_guest(arg, m.as_bytes())?;
            Ok(0)
        }
        Some(XenMemOp::AddToPhysmap) => {
            let mut a = XenAddToPhysmap::default();
            d.copy_from_guest(arg, a.as_mut_bytes())?;
            if a.domid != DOMID_SELF && a.domid != d.id {
                return Err(XenErrno::Esrch);
            }
            match XenMapSpace::from_raw(a.space) {
                Some(XenMapSpace::SharedInfo) if a.idx == 0 => {
                    let gpa = Gfn(a.gpfn).gpa().ok_or(XenErrno::Einval)?;
                    let frame = d.shared_info;
                    let at = map_xen_frame(d, fa, gpa, frame, d.shared_info_at)?;
                    d.shared_info_at = at;
                    crate::log!("d{}: shared_info at gpa {:#x}", d.id, gpa);
                    Ok(0)
                }
                // Like Xen's gnttab_map_frame: an index below the maximum grows the
                // table to idx + 1 frames first; one at or above it is EINVAL.
                Some(XenMapSpace::GrantTable)
                    if a.idx < crate::grant::MAX_GRANT_FRAMES as u64
                        && crate::grant::grow(d, fa, a.idx as u32 + 1) =>
                {
                    let i = a.idx as usize;
                    let gpa = Gfn(a.gpfn).gpa().ok_or(XenErrno::Einval)?;
                    let frame = d.grant.frames[i];
                    let at = map_xen_frame(d, fa, gpa, frame, d.grant.at[i])?;
                    d.grant.at[i] = at;
                    crate::log!("d{}: grant table frame {} at gpa {:#x}", d.id, i, gpa);
                    Ok(0)
                }
                Some(XenMapSpace::SharedInfo | XenMapSpace::GrantTable) => Err(XenErrno::Einval),
                _ => Err(XenErrno::Enosys),
            }
        }
        _ => Err(XenErrno::Enosys),
    }
}

/// Marks the domain for the scheduler after `after`.
pub fn apply(d: &mut Domain, after: After) {
    match after {
        After::Block => d.vcpus[d.cur].state = RunState::Blocked,
        After::Down => d.vcpus[d.cur].state = RunState::Down,
        After::Shutdown(_) | After::Kill => {
            if let (After::Shutdown(r), false) = (after, d.dying) {
                d.shutdown_reason = Some(r);
            }
            d.dying = true;
            for v in d.vcpus.iter_mut() {
                v.state = RunState::Dead;
            }
        }
        After::Continue | After::Yield => {}
    }
}
