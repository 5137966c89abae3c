//! A guest's SMP, as Linux 6.1's PVH path uses it (arch/x86/xen/smp_hvm.c, time.c,
//! drivers/xen/events): per-vCPU timers (single-shot and periodic, each raising its
//! own VIRQ_TIMER port), SCHEDOP_poll, event delivery to the vCPU a port notifies
//! (bind_virq / bind_ipi / bind_vcpu), and the LAPIC's interrupt command register:
//! INIT + STARTUP start a secondary vCPU in real mode at `vector << 12`, fixed IPIs are
//! queued in the target's IRR and injected when its TPR and in-service vector allow.
//!
//! A vCPU made runnable or given an interrupt while it runs on another CPU is marked
//! `kick`: the scheduler then interrupts that CPU so it enters again with it.

use crate::domain::{Domain, RunState, MAX_VCPUS};
use crate::evtchn::NR_PORTS;
use crate::virt::{VcpuState, VirtBackend};

/// One vCPU's timers, poll and pending work for the scheduler.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuEv {
    /// VCPUOP_set_singleshot_timer deadline (system time, ns).
    pub timer_deadline: Option<u64>,
    /// VCPUOP_set_periodic_timer period (ns; 0: stopped) and when it last fired (0
    /// before the first, so, as Xen's, the first fires when it is set).
    pub periodic_period: u64,
    pub periodic_last: u64,
    /// The port its VIRQ_TIMER is bound to.
    pub virq_timer: Option<u32>,
    /// SCHEDOP_poll in progress: its ports and timeout.
    pub poll_ports: [u32; 8],
    pub poll_n: usize,
    pub poll_deadline: Option<u64>,
    /// An INIT came: the next STARTUP IPI starts it.
    pub wait_sipi: bool,
    /// Something became due for it while another CPU may run it: interrupt that CPU.
    pub kick: bool,
    /// Its LAPIC's requested fixed vectors (256 bits; IPIs through the ICR).
    pub irr: [u64; 4],
    /// The fixed vector put in V_IRQ at its last entry (in service once taken).
    pub injected: Option<u8>,
    /// HVMOP_set_evtchn_upcall_vector: its upcalls as this LAPIC vector (0: none).
    pub upcall_vector: u8,
}

impl VcpuEv {
    /// When the periodic timer is next due (system time), if it runs.
    pub fn periodic_deadline(&self) -> Option<u64> {
        (self.periodic_period != 0).then(|| self.periodic_last.saturating_add(self.periodic_period))
    }
    /// The earliest of its deadlines.
    pub fn next_deadline(&self) -> Option<u64> {
        [
            self.timer_deadline,
            self.poll_deadline,
            self.periodic_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A domain's per-vCPU event state (on the heap: domains are built on the boot stack).
#[derive(Debug, Clone)]
pub struct Smp {
    pub ev: [VcpuEv; MAX_VCPUS],
    /// Per port: the vCPU its upcall goes to (Xen's notify_vcpu_id).
    pub notify: [u8; NR_PORTS],
    /// Exits of its vCPUs by kind ([`EXIT_KINDS`]), logged at its teardown.
    pub exits: [u64; EXIT_KINDS.len()],
    /// Its port I/O exits by port: the first [`IO_PORTS`] ports it used, then the rest.
    pub io_ports: IoPorts,
    /// HLTs that found a vector in V_IRQ the LAPIC model does not track (a device
    /// vector or the callback vector), so returned at once (before issue 13's fix they
    /// blocked the vCPU with it undelivered); logged at its teardown.
    pub hlt_virq: u64,
}

/// Ports whose I/O exits are counted one by one.
pub const IO_PORTS: usize = 8;

/// Port I/O exits by port (logged at a domain's teardown).
#[derive(Debug, Clone, Copy, Default)]
pub struct IoPorts {
    pub ports: [(u16, u64); IO_PORTS],
    pub used: usize,
    pub other: u64,
}

impl IoPorts {
    pub fn count(&mut self, port: u16) {
        match self.ports[..self.used].iter_mut().find(|p| p.0 == port) {
            Some(p) => p.1 += 1,
            None if self.used < IO_PORTS => {
                self.ports[self.used] = (port, 1);
                self.used += 1;
            }
            None => self.other += 1,
        }
    }
}

impl core::fmt::Display for IoPorts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (port, n)) in self.ports[..self.used].iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{port:#x} {n}")?;
        }
        if self.other > 0 {
            write!(f, ", other ports {}", self.other)?;
        }
        Ok(())
    }
}

/// The kinds of exits counted per domain.
pub const EXIT_KINDS: [&str; 9] = [
    "hypercall",
    "cpuid",
    "EOI",
    "ICR",
    "other MSR",
    "HLT",
    "I/O",
    "interrupt",
    "other",
];

/// Counts one exit of vCPU `k` (`msr`: the MSR index of an MSR exit).
pub fn tally(d: &mut Domain, exit: &crate::virt::Exit, msr: u32) {
    use crate::virt::Exit;
    let kind = match exit {
        Exit::Hypercall => 0,
        Exit::Cpuid => 1,
        Exit::Msr { .. } if msr == 0x80B => 2,
        Exit::Msr { .. } if msr == 0x830 || msr == 0x83F => 3,
        Exit::Msr { .. } => 4,
        Exit::Hlt => 5,
        Exit::Io { port, .. } => {
            d.smp.io_ports.count(*port);
            6
        }
        Exit::ExternalInterrupt => 7,
        _ => 8,
    };
    d.smp.exits[kind] += 1;
}

impl Default for Smp {
    fn default() -> Self {
        Smp {
            ev: [VcpuEv::default(); MAX_VCPUS],
            notify: [0; NR_PORTS],
            exits: [0; EXIT_KINDS.len()],
            io_ports: IoPorts::default(),
            hlt_virq: 0,
        }
    }
}

impl<B: VirtBackend> Domain<B> {
    /// Wakes vCPU `k` if it is blocked; marks it to be kicked (it may be running, or
    /// about to, with an interrupt it must now take).
    pub fn wake(&mut self, k: usize) {
        if k >= self.nr_vcpus {
            return;
        }
        if self.vcpus[k].state == RunState::Blocked {
            self.vcpus[k].state = RunState::Runnable;
        }
        self.smp.ev[k].kick = true;
    }

    /// Ends vCPU `k`'s SCHEDOP_poll (a polled port fired or it timed out).
    pub fn end_poll(&mut self, k: usize) {
        let e = &mut self.smp.ev[k];
        e.poll_n = 0;
        e.poll_deadline = None;
        self.wake(k);
    }

    /// Whether vCPU `k` has a fixed interrupt its LAPIC would deliver now.
    pub fn lapic_due(&self, k: usize) -> Option<u8> {
        deliverable(&self.smp.ev[k].irr, &self.vcpus[k].lapic)
    }
}

impl Domain {
    /// Whether vCPU `k` has an interrupt to take: one the LAPIC model requested in
    /// V_IRQ and the guest has not taken, one its LAPIC would deliver now, a level
    /// upcall, or a device interrupt raised and not yet injected.
    fn interrupt_requested(&self, k: usize) -> bool {
        self.smp.ev[k].injected.is_some()
            || self.lapic_due(k).is_some()
            || crate::hvm::upcall_due(self, k).is_some()
            || self.pci.as_ref().is_some_and(|p| p.due(k))
    }

    /// Whether vCPU `k` has an interrupt to take: as `interrupt_requested`, or any
    /// vector still in V_IRQ (a device vector put there at an entry with the guest's
    /// interrupts off: a HLT in the STI shadow of Linux's idle `sti; hlt` exits with it
    /// pending). SCHEDOP_block returns then; HLT too (`hlt`).
    pub fn interrupt_due(&self, k: usize) -> bool {
        self.interrupt_requested(k)
            || self.vcpus[k]
                .slot
                .as_ref()
                .is_some_and(|v| v.virq_pending())
    }
}

/// HLT by the current vCPU (its RIP already past it): an interrupt requested, or one
/// waiting in V_IRQ that the guest can take (IF on: the STI shadow ends with the HLT),
/// ends it at once; else, as Xen's hvm_hlt, with interrupts off the vCPU goes down
/// (Linux's stop_this_cpu), with them on it blocks until something wakes it.
pub fn hlt(d: &mut Domain) -> crate::hypercall::After {
    use crate::hypercall::After;
    let k = d.cur;
    let if_on = d.vcpu().rflags() & 1 << 9 != 0;
    let waiting = d.vcpu().virq();
    if let (Some(vector), None, true) = (waiting, d.smp.ev[k].injected, if_on) {
        d.smp.hlt_virq += 1;
        if d.smp.hlt_virq <= 4 {
            crate::log!(
                "d{}: vCPU {} HLT with vector {:#x} waiting in V_IRQ: returns at once (first 4 logged)",
                d.id,
                k,
                vector
            );
        }
    }
    if d.interrupt_requested(k) || (if_on && waiting.is_some()) {
        After::Continue
    } else if !if_on {
        After::Down
    } else {
        After::Block
    }
}

/// The highest pending vector in `irr` above both the TPR's and the highest in-service
/// vector's priority class of `l`.
fn deliverable(irr: &[u64; 4], l: &crate::vlapic::VLapic) -> Option<u8> {
    let vec = highest(irr)?;
    let floor = highest(&l.isr).unwrap_or(0).max(l.tpr) >> 4;
    (vec >> 4 > floor).then_some(vec)
}

fn highest(bits: &[u64; 4]) -> Option<u8> {
    (0..4)
        .rev()
        .find(|&w| bits[w] != 0)
        .map(|w| (w as u32 * 64 + 63 - bits[w].leading_zeros()) as u8)
}

/// After vCPU `k` exits: a fixed vector injected at its last entry that the guest took
/// (V_IRQ no longer pending) becomes in service.
pub fn sync_taken<V: VcpuState>(d: &mut Domain, k: usize, v: &V) {
    if let Some(vec) = d.smp.ev[k].injected {
        if !v.virq_pending() {
            d.smp.ev[k].injected = None;
            d.vcpus[k].lapic.isr[vec as usize / 64] |= 1 << (vec % 64);
        }
    }
}

/// Before vCPU `k` enters: a deliverable fixed IPI goes first (taken from the IRR; in
/// service once the guest takes it), else the upcall vector while an upcall is due.
pub fn before_entry<V: VcpuState>(d: &mut Domain, k: usize, v: &mut V) {
    if v.virq_pending() {
        return;
    }
    sync_taken(d, k, v);
    if let Some(vec) = d.lapic_due(k) {
        let e = &mut d.smp.ev[k];
        e.irr[vec as usize / 64] &= !(1 << (vec % 64));
        e.injected = Some(vec);
        v.set_virq(vec);
        return;
    }
    if let Some(vector) = crate::hvm::upcall_due(d, k) {
        v.set_virq(vector);
    }
}

/// ICR delivery modes.
const FIXED: u64 = 0;
const LOWEST: u64 = 1;
const INIT: u64 = 5;
const STARTUP: u64 = 6;

/// Which vCPUs an ICR value addresses (x2APIC: destination in bits 63:32; logical
/// destinations in the cluster model of the LDR, crate::vlapic).
fn targets(d: &Domain, icr: u64) -> [bool; MAX_VCPUS] {
    let me = d.cur;
    let dest = (icr >> 32) as u32;
    let logical = icr & 1 << 11 != 0;
    core::array::from_fn(|k| {
        if k >= d.nr_vcpus {
            return false;
        }
        let id = crate::vlapic::apic_id(k);
        match (icr >> 18) & 3 {
            1 => k == me,
            2 => true,
            3 => k != me,
            _ if dest == u32::MAX => true,
            _ if logical => dest >> 16 == id >> 4 && dest & 0xFFFF & 1 << (id & 0xF) != 0,
            _ => dest == id,
        }
    })
}

/// A write of `icr` to the ICR by the current vCPU: fixed (and lowest-priority, given
/// to every target as fixed) IPIs set the targets' IRR; INIT readies a vCPU never
/// started for a STARTUP, which starts it in real mode at `vector << 12` (as Xen's
/// vlapic_init_sipi_action; a running vCPU ignores both). NMI and SMI are dropped
/// (logged once). Vectors below 16 are an illegal vector (ESR bit 5 of the sender).
pub fn icr_write(d: &mut Domain, icr: u64) {
    let vector = icr as u8;
    let mode = (icr >> 8) & 7;
    let to = targets(d, icr);
    match mode {
        FIXED | LOWEST => {
            if vector < 16 {
                d.vcpus[d.cur].lapic.esr |= 1 << 5;
                return;
            }
            for k in (0..d.nr_vcpus).filter(|&k| to[k]) {
                d.smp.ev[k].irr[vector as usize / 64] |= 1 << (vector % 64);
                d.wake(k);
            }
        }
        // INIT level de-assert: nothing to do.
        INIT if icr & 1 << 14 == 0 => {}
        INIT => {
            for k in (0..d.nr_vcpus).filter(|&k| to[k]) {
                let v = &d.vcpus[k];
                if v.slot.is_none() && v.state == RunState::Down {
                    d.smp.ev[k].wait_sipi = true;
                }
            }
        }
        STARTUP => {
            for k in (0..d.nr_vcpus).filter(|&k| to[k]) {
                if !core::mem::take(&mut d.smp.ev[k].wait_sipi) {
                    continue;
                }
                if d.start_real_mode(k, vector).is_ok() {
                    crate::log!(
                        "d{}: vCPU {} started by INIT/SIPI at {:#x} (real mode)",
                        d.id,
                        k,
                        (vector as u32) << 12
                    );
                    d.vcpus[k].state = RunState::Runnable;
                    d.wake(k);
                }
            }
        }
        _ => {
            if !d.icr_logged {
                d.icr_logged = true;
                crate::log!(
                    "d{}: vCPU {} ICR {:#x}: delivery mode {} not emulated (dropped)",
                    d.id,
                    d.cur,
                    icr,
                    mode
                );
            }
        }
    }
}

/// XEN_HVM_CPUID_UPCALL_VECTOR: the HVM CPUID leaf offers per-vCPU upcall vectors (as
/// Xen 4.17; Linux 6.1 then takes them for every CPU).
pub const CPUID_UPCALL_VECTOR: u32 = 1 << 6;

/// HVMOP_set_evtchn_upcall_vector, as Xen's: vector below 0x10 EINVAL, a vCPU the
/// domain lacks ENOENT; from then on an event for that vCPU sets the vector in its
/// LAPIC (edge: when its evtchn_upcall_pending goes 0 -> 1; the guest EOIs it), which
/// takes precedence over HVM_PARAM_CALLBACK_IRQ. An upcall already pending is raised.
pub fn set_upcall_vector(d: &mut Domain, arg: u64) -> Result<i64, sluice_abi::hypercall::XenErrno> {
    use sluice_abi::hypercall::{XenErrno, XenHvmEvtchnUpcallVector};
    use zerocopy::IntoBytes;
    let mut a = XenHvmEvtchnUpcallVector::default();
    d.copy_from_guest(arg, a.as_mut_bytes())?;
    if a.vector < 0x10 {
        return Err(XenErrno::Einval);
    }
    let k = a.vcpu as usize;
    if k >= d.nr_vcpus {
        return Err(XenErrno::Enoent);
    }
    if d.smp.ev[k].upcall_vector != a.vector {
        crate::log!("d{}: vCPU {} upcall vector {:#x}", d.id, k, a.vector);
    }
    d.smp.ev[k].upcall_vector = a.vector;
    if crate::evtchn::upcall_pending(d, k) {
        assert_upcall(d, k);
    }
    Ok(0)
}

/// An upcall became pending for vCPU `k`: with a per-vCPU vector, that vector is
/// requested in its LAPIC; either way the vCPU is woken.
pub fn assert_upcall(d: &mut Domain, k: usize) {
    let v = d.smp.ev[k].upcall_vector;
    if v != 0 {
        d.smp.ev[k].irr[v as usize / 64] |= 1 << (v % 64);
    }
    d.wake(k);
}

/// A domain's exit counts, for the log.
pub struct Exits<'a>(pub &'a [u64; EXIT_KINDS.len()]);

impl core::fmt::Display for Exits<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (n, what)) in self.0.iter().zip(EXIT_KINDS).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{n} {what}")?;
        }
        Ok(())
    }
}
