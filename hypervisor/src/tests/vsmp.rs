//! Guest SMP (crate::vsmp) with hostile values: INIT/SIPI, fixed IPIs and their
//! priority, per-vCPU VIRQs, single-shot timers and upcall vectors.

use super::misc::hypercall;
use super::*;
use crate::addr::Gpa;
use crate::domain::RunState;
use sluice_abi::event_channel::EvtchnBindVirq;
use sluice_abi::hypercall::{VcpuRegisterVcpuInfo, XenHvmEvtchnUpcallVector};

const EVTCHN_OP: u64 = 32;
const HVM_OP: u64 = 34;
const VCPU_OP: u64 = 24;

/// One domain with `vcpus` vCPUs.
fn smp(vcpus: usize) -> Machine {
    let (mut fa, mut spec) = allocator();
    spec.vcpus = vcpus;
    let base = fa.handed_out;
    let d = Domain::create(&Svm::new(), &mut fa, 1, &spec, Clock::calibrate()).unwrap();
    Machine {
        fa,
        doms: alloc::vec![Some(d)],
        base,
        entries: 0,
    }
}

/// An ICR write by vCPU `from`.
fn icr(m: &mut Machine, from: usize, value: u64) {
    let d = m.doms[0].as_mut().unwrap();
    d.cur = from;
    assert_eq!(crate::vlapic::msr(d, 0x830, true, value), Some(Ok(0)));
}

const INIT_ASSERT: u64 = 5 << 8 | 1 << 14;
const STARTUP: u64 = 6 << 8;
const ALL_BUT_SELF: u64 = 3 << 18;

#[test]
fn init_then_startup_starts_a_vcpu_in_real_mode_once() {
    let mut m = smp(4);
    // A STARTUP without INIT, and one to a vCPU that does not exist: nothing.
    icr(&mut m, 0, 2 << 32 | STARTUP | 0x99);
    icr(&mut m, 0, 8 << 32 | INIT_ASSERT);
    icr(&mut m, 0, 8 << 32 | STARTUP | 0x99);
    assert!(m.d(0).vcpus[1].slot.is_none());
    // INIT (physical APIC id 2 = vCPU 1), then STARTUP: real mode at 0x99000.
    icr(&mut m, 0, 2 << 32 | INIT_ASSERT);
    icr(&mut m, 0, 2 << 32 | 5 << 8); // INIT de-assert: nothing
    icr(&mut m, 0, 2 << 32 | STARTUP | 0x99);
    let d = m.doms[0].as_mut().unwrap();
    assert_eq!(d.vcpus[1].state, RunState::Runnable);
    let v = d.vcpus[1].slot.as_mut().unwrap();
    assert_eq!(v.real_cs_base, Some(0x9_9000));
    // The second STARTUP (Linux sends two) and a later INIT leave it alone.
    v.rip = 0x1234;
    icr(&mut m, 0, 2 << 32 | STARTUP | 0x42);
    icr(&mut m, 0, 2 << 32 | INIT_ASSERT);
    icr(&mut m, 0, 2 << 32 | STARTUP | 0x42);
    let v = m.d(0).vcpus[1].slot.as_ref().unwrap();
    assert_eq!((v.rip, v.real_cs_base), (0x1234, Some(0x9_9000)));
    // INIT by logical destination (cluster 0, bit of APIC id 4: vCPU 2), then a STARTUP
    // to all but self: only vCPU 2 starts.
    icr(&mut m, 0, (1 << 4) << 32 | 1 << 11 | INIT_ASSERT);
    icr(&mut m, 0, ALL_BUT_SELF | STARTUP | 0x10);
    assert_eq!(m.d(0).vcpus[2].state, RunState::Runnable);
    assert!(m.d(0).vcpus[3].slot.is_none());
    assert_eq!(m.d(0).vcpus[3].state, RunState::Down);
}

#[test]
fn fixed_ipis_follow_priority_and_eoi() {
    let mut m = smp(3);
    icr(&mut m, 0, 2 << 32 | INIT_ASSERT);
    icr(&mut m, 0, 2 << 32 | STARTUP | 0x99);
    // An illegal vector: the sender's ESR, nothing sent.
    icr(&mut m, 0, 2 << 32 | 5);
    assert_eq!(m.d(0).vcpus[0].lapic.esr, 1 << 5);
    assert_eq!(m.d(0).lapic_due(1), None);
    // 0xF8 to vCPU 1 by logical destination (cluster 0, bit 2).
    icr(&mut m, 0, (1 << 2) << 32 | 1 << 11 | 0xF8);
    assert_eq!(m.d(0).lapic_due(1), Some(0xF8));
    assert_eq!(m.d(0).lapic_due(2), None);
    let d = m.doms[0].as_mut().unwrap();
    let mut v = d.vcpus[1].slot.take().unwrap();
    crate::vsmp::before_entry(d, 1, &mut v);
    assert_eq!(v.virq, Some(0xF8));
    // Requested, not taken yet (a HLT in an STI shadow exits so): still due, so the
    // HLT does not block.
    assert_eq!(d.lapic_due(1), None);
    assert!(d.interrupt_due(1));
    // Taken by the guest: in service; a lower class waits for its EOI.
    v.virq = None;
    crate::vsmp::sync_taken(d, 1, &v);
    d.vcpus[1].slot = Some(v);
    icr(&mut m, 0, 2 << 32 | 0x30);
    assert_eq!(m.d(0).lapic_due(1), None);
    // The TPR masks too.
    let d = m.doms[0].as_mut().unwrap();
    d.cur = 1;
    assert_eq!(crate::vlapic::msr(d, 0x80B, true, 0), Some(Ok(0)));
    assert_eq!(d.lapic_due(1), Some(0x30));
    assert_eq!(crate::vlapic::msr(d, 0x808, true, 0x40), Some(Ok(0)));
    assert_eq!(d.lapic_due(1), None);
    // SELF IPI: to the writer only.
    d.cur = 2;
    assert_eq!(crate::vlapic::msr(d, 0x83F, true, 0x51), Some(Ok(0)));
    assert_eq!(d.lapic_due(2), Some(0x51));
    assert_eq!(crate::vlapic::msr(d, 0x83F, true, 0x100), Some(Err(())));
}

#[test]
fn virqs_timers_and_upcall_vectors_are_per_vcpu() {
    let mut m = smp(2);
    let bind = |m: &mut Machine, vcpu: u32| {
        let b = EvtchnBindVirq {
            virq: 0,
            vcpu,
            port: 0,
        };
        m.put(0, ARG, &b);
        let r = hypercall(m, 0, EVTCHN_OP, [1, ARG, 0]);
        (r, m.get::<EvtchnBindVirq>(0, ARG).port)
    };
    assert_eq!(bind(&mut m, 9).0, XenErrno::Enoent.to_ret());
    let (r, p1) = bind(&mut m, 1);
    assert_eq!(r, 0);
    assert_eq!(bind(&mut m, 1).0, XenErrno::Eexist.to_ret());
    let (r, p0) = bind(&mut m, 0);
    assert_eq!(r, 0);
    assert_ne!(p0, p1);
    assert_eq!(m.d(0).smp.ev[1].virq_timer, Some(p1));
    // A single-shot timer for another vCPU: EINVAL, as Xen.
    m.put(0, ARG, &[1u64 << 40, 0]);
    assert_eq!(
        hypercall(&mut m, 0, VCPU_OP, [8, 1, ARG]),
        XenErrno::Einval.to_ret()
    );
    assert_eq!(hypercall(&mut m, 0, VCPU_OP, [8, 0, ARG]), 0);
    assert_eq!(m.d(0).smp.ev[0].timer_deadline, Some(1 << 40));
    // Upcall vectors: below 0x10 EINVAL, no such vCPU ENOENT.
    let set = |m: &mut Machine, vcpu: u32, vector: u8| {
        let a = XenHvmEvtchnUpcallVector {
            vcpu,
            vector,
            _pad0: [0; 3],
        };
        m.put(0, ARG, &a);
        hypercall(m, 0, HVM_OP, [23, ARG, 0])
    };
    assert_eq!(set(&mut m, 1, 0x0F), XenErrno::Einval.to_ret());
    assert_eq!(set(&mut m, 2, 0xF3), XenErrno::Enoent.to_ret());
    assert_eq!(set(&mut m, 1, 0xF3), 0);
    // An event on vCPU 1's timer port: its vcpu_info (shared_info slot 1) pending,
    // its vector requested; vCPU 0 untouched.
    let d = m.doms[0].as_mut().unwrap();
    crate::evtchn::set_pending(d, p1);
    assert!(crate::evtchn::upcall_pending(d, 1));
    assert!(!crate::evtchn::upcall_pending(d, 0));
    assert_eq!(d.lapic_due(1), Some(0xF3));
    assert_eq!(d.lapic_due(0), None);
    assert_eq!(crate::hvm::upcall_due(d, 1), None);
}

#[test]
fn an_unaligned_vcpu_info_is_refused() {
    let mut m = smp(1);
    let r = VcpuRegisterVcpuInfo {
        mfn: 0x20,
        offset: 4,
        rsvd: 0,
    };
    m.put(0, ARG, &r);
    assert_eq!(
        hypercall(&mut m, 0, VCPU_OP, [10, 0, ARG]),
        XenErrno::Einval.to_ret()
    );
}

#[test]
fn ctrl_a_three_times_switches_console_input() {
    use crate::console_in::ConsoleIn;
    let mut m = machine(3);
    for i in [0, 2] {
        crate::hvm::console_setup(m.doms[i].as_mut().unwrap()).unwrap();
    }
    // What domain `i`'s console in ring holds (its producer index from 0).
    let typed = |m: &Machine, i: usize| {
        let prod: u32 = m.get(i, crate::hvm::CONSOLE_GPA + 3076);
        let mut b = alloc::vec![0u8; prod as usize];
        m.d(i)
            .read_gpa(Gpa(crate::hvm::CONSOLE_GPA), &mut b)
            .unwrap();
        b
    };
    let mut c = ConsoleIn::default();
    c.feed(&mut m.doms, b"ab");
    assert_eq!(typed(&m, 0), b"ab");
    // Ctrl-A x3: the next domain with a console (domain 3; domain 2 has none).
    c.feed(&mut m.doms, b"\x01\x01\x01cd");
    assert_eq!(typed(&m, 2), b"cd");
    // One or two Ctrl-As then a key: typed as they are.
    c.feed(&mut m.doms, b"\x01x\x01\x01y");
    assert_eq!(typed(&m, 2), b"cd\x01x\x01\x01y");
    // Three across two batches: back to domain 1 (wrapping).
    c.feed(&mut m.doms, b"\x01\x01");
    c.feed(&mut m.doms, b"\x01e");
    assert_eq!(typed(&m, 0), b"abe");
    assert_eq!(c.target, Some(1));
    // The chosen domain gone: the first with a console again.
    c.feed(&mut m.doms, b"\x01\x01\x01");
    assert_eq!(c.target, Some(3));
    m.doms[2].as_mut().unwrap().dying = true;
    c.feed(&mut m.doms, b"f");
    assert_eq!(typed(&m, 0), b"abef");
    assert_eq!(typed(&m, 2), b"cd\x01x\x01\x01y");
}

/// A device interrupt (a remapped MSI) put in V_IRQ at an entry with interrupts off,
/// then Linux's idle `sti; hlt`: the HLT exits in the STI shadow with it still pending.
/// The HLT must return at once: blocking there left the vCPU asleep with its interrupt
/// undelivered until some other event woke it (e1000e's auto-masked RX cause then sends
/// nothing more: the guest's receive stalls for good).
#[test]
fn hlt_with_a_device_vector_in_virq_does_not_block() {
    use crate::hypercall::After;
    use crate::vpci::{DomainPci, GuestMsi};
    let mut m = smp(2);
    let d = m.doms[0].as_mut().unwrap();
    d.cur = 0;
    d.pci = Some(alloc::boxed::Box::new(DomainPci::default()));
    // Raised while the vCPU was out (an exit with interrupts off): not injected yet, so
    // a HLT now returns.
    let msi = GuestMsi {
        vector: 0x41,
        vcpu: 0,
    };
    d.pci.as_mut().unwrap().raise(msi);
    d.vcpu().rflags = 2 | 1 << 9;
    assert_eq!(crate::vsmp::hlt(d), After::Continue);
    // The entry injects it (IF still 0 in the guest: not taken), the guest runs
    // `sti; hlt`: the HLT exits with it in V_IRQ and none raised besides.
    let mut v = d.vcpus[0].slot.take().unwrap();
    v.rflags = 2;
    crate::vsmp::before_entry(d, 0, &mut v);
    crate::vpci::before_entry(d.pci.as_mut().unwrap(), 0, &mut v);
    assert_eq!(v.virq, Some(0x41));
    assert!(!d.pci.as_ref().unwrap().due(0));
    v.rflags = 2 | 1 << 9;
    d.vcpus[0].slot = Some(v);
    assert!(d.interrupt_due(0));
    assert_eq!(d.smp.hlt_virq, 0);
    assert_eq!(crate::vsmp::hlt(d), After::Continue);
    assert_eq!(d.smp.hlt_virq, 1);
    // With interrupts off (Linux's stop_this_cpu: `cli; hlt`) the guest cannot take
    // it: down, as Xen's hvm_hlt (no exit loop); not counted.
    d.vcpu().rflags = 2;
    assert_eq!(crate::vsmp::hlt(d), After::Down);
    assert_eq!(d.smp.hlt_virq, 1);
    d.vcpu().rflags = 2 | 1 << 9;
    // Its other vCPU has nothing due.
    assert!(!d.interrupt_due(1));
    // Taken by the guest: the next HLT blocks (interrupts on), or takes the vCPU down
    // (interrupts off).
    d.vcpu().virq = None;
    assert!(!d.interrupt_due(0));
    assert_eq!(crate::vsmp::hlt(d), After::Block);
    d.vcpu().rflags = 2;
    assert_eq!(crate::vsmp::hlt(d), After::Down);
}

#[test]
fn ctrl_bracket_q_asks_for_a_dump_other_keys_are_typed() {
    use crate::console_in::ConsoleIn;
    let mut m = machine(1);
    crate::hvm::console_setup(m.doms[0].as_mut().unwrap()).unwrap();
    let typed = |m: &Machine| {
        let prod: u32 = m.get(0, crate::hvm::CONSOLE_GPA + 3076);
        let mut b = alloc::vec![0u8; prod as usize];
        m.d(0)
            .read_gpa(Gpa(crate::hvm::CONSOLE_GPA), &mut b)
            .unwrap();
        b
    };
    let mut c = ConsoleIn::default();
    assert_eq!(c.feed(&mut m.doms, b"a\x1dqb"), 1);
    assert_eq!(typed(&m), b"ab");
    // Across two batches; twice in one.
    assert_eq!(c.feed(&mut m.doms, b"\x1d"), 0);
    assert_eq!(c.feed(&mut m.doms, b"q\x1dq\x1dq"), 3);
    // Ctrl-] then another key (Ctrl-] and Ctrl-A too): typed as they are.
    assert_eq!(c.feed(&mut m.doms, b"\x1dx\x1d\x1d\x1d\x01y"), 0);
    assert_eq!(typed(&m), b"ab\x1dx\x1d\x1d\x1d\x01y");
    // Held Ctrl-As go out before a Ctrl-]; a full batch of them fits.
    assert_eq!(c.feed(&mut m.doms, b"\x01\x01"), 0);
    assert_eq!(c.feed(&mut m.doms, &[0x1d; 64]), 0);
    assert_eq!(c.feed(&mut m.doms, b"q"), 1);
    let t = typed(&m);
    assert_eq!(&t[..11], b"ab\x1dx\x1d\x1d\x1d\x01y\x01\x01");
    assert_eq!(t.len(), 11 + 63);
}

/// The dump's vCPU line names what a hang needs: a vCPU blocked with a device vector
/// in V_IRQ, its in-service and requested vectors.
#[test]
fn dump_line_shows_virq_isr_irr_and_raised_device_vectors() {
    use crate::vpci::{DomainPci, GuestMsi};
    let mut m = smp(2);
    let d = m.doms[0].as_mut().unwrap();
    d.pci = Some(alloc::boxed::Box::new(DomainPci::default()));
    d.pci.as_mut().unwrap().raise(GuestMsi {
        vector: 0x51,
        vcpu: 0,
    });
    d.vcpus[0].state = RunState::Blocked;
    d.vcpus[0].lapic.isr[3] = 1 << 0x33;
    d.smp.ev[0].irr[1] = 1 << 0x3f | 1;
    let v = d.vcpus[0].slot.as_mut().unwrap();
    v.virq = Some(0x41);
    v.rflags = 2 | 1 << 9;
    v.rip = 0xffff_8000_0000_1234;
    let l = crate::dump::vcpu_line(d, 0);
    assert!(
        l.starts_with("dump: d1 vCPU 0: Blocked, rip 0xffff800000001234 IF 1 V_IRQ 0x41"),
        "{l}"
    );
    assert!(l.contains("ISR 0xf3 IRR 0x40,0x7f given -"), "{l}");
    assert!(l.contains("device vectors raised 0x51"), "{l}");
    assert!(l.ends_with("due 1"), "{l}");
    d.vcpus[1].running_on = Some(1);
    let l = crate::dump::vcpu_line(d, 1);
    assert!(l.starts_with("dump: d1 vCPU 1: Down, on CPU 1;"), "{l}");
    assert_eq!(
        alloc::format!("{}", crate::dump::Vectors(&[u64::MAX, 0, 0, 0])),
        "0x0,0x1,0x2,0x3,0x4,0x5,0x6,0x7,+56"
    );
}
