//! The hypercall entry and event channels over the fake machine.

use super::*;
use sluice_abi::event_channel::{EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnSend};
use sluice_abi::types::DOMID_SELF;

/// Domain `i` makes hypercall `nr` (64-bit guest, kernel mode): its return value.
pub fn hypercall(m: &mut Machine, i: usize, nr: u64, a: [u64; 3]) -> i64 {
    let d = m.doms[i].as_mut().unwrap();
    let v = d.vcpu();
    v.long_mode = true;
    v.rax = nr;
    v.regs.rdi = a[0];
    v.regs.rsi = a[1];
    v.regs.rdx = a[2];
    crate::hypercall::hypercall(&mut m.doms, i, &mut m.fa);
    m.doms[i].as_mut().unwrap().vcpu().rax as i64
}

#[test]
fn hypercalls_from_user_mode_and_unknown_numbers() {
    let mut m = machine(1);
    assert_eq!(hypercall(&mut m, 0, 99, [0; 3]), XenErrno::Enosys.to_ret());
    m.doms[0].as_mut().unwrap().vcpu().cpl = 3;
    assert_eq!(
        hypercall(&mut m, 0, 17, [0, 0, 0]),
        XenErrno::Eperm.to_ret()
    );
}

#[test]
fn hostile_pointers_give_efault() {
    let mut m = machine(1);
    // xen_version(extraversion) past the domain's memory, and across its end.
    assert_eq!(
        hypercall(&mut m, 0, 17, [1, 0x4000_0000, 0]),
        XenErrno::Efault.to_ret()
    );
    assert_eq!(
        hypercall(&mut m, 0, 17, [1, DOMAIN_MEM - 8, 0]),
        XenErrno::Efault.to_ret()
    );
    assert_eq!(hypercall(&mut m, 0, 17, [1, 0x9000, 0]), 0);
}

#[test]
fn interdomain_event_sets_the_pending_bit() {
    let mut m = machine(2);
    let a = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: 2,
        port: 0,
    };
    m.put(0, ARG, &a);
    assert_eq!(
        crate::evtchn::event_channel_op(&mut m.doms, 0, 6, ARG),
        Ok(0)
    );
    let a: EvtchnAllocUnbound = m.get(0, ARG);
    let b = EvtchnBindInterdomain {
        remote_dom: 1,
        remote_port: a.port,
        ..Default::default()
    };
    m.put(1, ARG, &b);
    assert_eq!(
        crate::evtchn::event_channel_op(&mut m.doms, 1, 0, ARG),
        Ok(0)
    );
    let b: EvtchnBindInterdomain = m.get(1, ARG);
    m.put(1, ARG, &EvtchnSend { port: b.local_port });
    assert_eq!(
        crate::evtchn::event_channel_op(&mut m.doms, 1, 4, ARG),
        Ok(0)
    );
    assert!(crate::evtchn::is_pending(m.d(0), a.port));
    // A port out of range, and a closed peer: errors, nothing pending.
    m.put(1, ARG, &EvtchnSend { port: 4096 });
    assert!(crate::evtchn::event_channel_op(&mut m.doms, 1, 4, ARG).is_err());
    m.kill(0);
    m.put(1, ARG, &EvtchnSend { port: b.local_port });
    assert_eq!(
        crate::evtchn::event_channel_op(&mut m.doms, 1, 4, ARG),
        Ok(0)
    );
}

/// Another backend: the domain code needs nothing of SVM's.
#[derive(Clone)]
struct Other;

impl crate::virt::VirtBackend for Other {
    type Vcpu = crate::arch::svm::SvmVcpu;
    fn asids(&self) -> u32 {
        4
    }
    fn create_vcpu(&self, _vmcb: u64, _asid: u32, _npt: u64, entry: u32, _ebx: u32) -> Self::Vcpu {
        crate::arch::svm::SvmVcpu {
            rip: entry as u64 + 1,
            ..Default::default()
        }
    }
    fn create_vcpu_real(&self, _vmcb: u64, _asid: u32, _npt: u64, _vector: u8) -> Self::Vcpu {
        Default::default()
    }
    fn run(&self, _vcpu: &mut Self::Vcpu) -> crate::virt::Exit {
        crate::virt::Exit::Shutdown
    }
}

#[test]
fn a_domain_on_another_backend() {
    let (mut fa, spec) = allocator();
    let base = fa.handed_out;
    let clock = Clock::calibrate();
    assert!(matches!(
        Domain::create(&Other, &mut fa, 4, &spec, clock),
        Err(crate::domain::CreateError::NoAsid)
    ));
    let mut d = Domain::create(&Other, &mut fa, 3, &spec, clock).unwrap();
    assert_eq!(crate::virt::VcpuState::rip(d.vcpu()), 0x10_0001);
    d.write_gpa(Gpa(0x9000), b"hello").unwrap();
    let mut b = [0u8; 5];
    d.read_gpa(Gpa(0x9000), &mut b).unwrap();
    assert_eq!(&b, b"hello");
    d.destroy(&mut fa);
    assert_eq!(fa.handed_out, base);
}

#[test]
fn add_to_physmap_places_only_over_own_ram_and_gives_everything_back() {
    use crate::domain::Access;
    use crate::mm::Owner;
    use sluice_abi::hypercall::XenAddToPhysmap;
    let mut m = machine(2);
    let base = m.base;
    let place = |m: &mut Machine, space: u32, idx: u64, gpfn: u64| {
        let a = XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space,
            idx,
            gpfn,
        };
        m.put(1, ARG, &a);
        hypercall(m, 1, 12, [7, ARG, 0])
    };
    let own = m.hpa(1, 0x5_0000);
    assert_eq!(place(&mut m, 0, 0, 0x50), 0);
    let si = m.d(1).translate(Gpa(0x5_0000), Access::Write).unwrap();
    assert_eq!((si, m.fa.owner(si)), (m.d(1).shared_info, Owner::Xen));
    // Moved: the RAM it displaced comes back.
    assert_eq!(place(&mut m, 0, 0, 0x51), 0);
    assert_eq!(m.hpa(1, 0x5_0000), own);
    // Grant table frame 1 (grows the table), and hostile indices and places.
    assert_eq!(place(&mut m, 1, 1, 0x52), 0);
    assert_eq!(m.d(1).nr_grant_frames, 2);
    assert_eq!(place(&mut m, 1, 32, 0x53), XenErrno::Einval.to_ret());
    assert_eq!(
        place(&mut m, 0, 0, DOMAIN_MEM >> 12),
        XenErrno::Einval.to_ret()
    );
    assert_eq!(place(&mut m, 0, 0, u64::MAX), XenErrno::Einval.to_ret());
    // Over another hypervisor frame, or over a grant mapping: EBUSY.
    assert_eq!(place(&mut m, 1, 0, 0x52), XenErrno::Ebusy.to_ret());
    m.grant(0, 8, 2, 0x2_0000, false);
    assert_eq!(m.map(1, 1, 8, 0x6_0000, HOST_MAP).0, 0);
    assert_eq!(place(&mut m, 0, 0, 0x60), XenErrno::Ebusy.to_ret());
    m.kill(1);
    m.kill(0);
    assert_eq!(m.fa.handed_out, base);
    assert_eq!(m.fa.bad_frees, 0);
}

#[test]
fn hostile_event_channel_ops() {
    use crate::evtchn::{event_channel_op as op, Port};
    let mut m = machine(3);
    // An unbound port of domain 1 offered to domain 2 only.
    m.put(
        0,
        ARG,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 2,
            port: 0,
        },
    );
    assert_eq!(op(&mut m.doms, 0, 6, ARG), Ok(0));
    let offered = m.get::<EvtchnAllocUnbound>(0, ARG).port;
    // alloc_unbound for another domain: EPERM.
    let other = EvtchnAllocUnbound {
        dom: 2,
        remote_dom: 1,
        port: 0,
    };
    m.put(0, ARG, &other);
    assert_eq!(op(&mut m.doms, 0, 6, ARG), Err(XenErrno::Eperm));
    let bind = |remote_dom: u16, remote_port: u32| EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        ..Default::default()
    };
    // Domain 3 binding the port offered to 2, loopback, ports out of range, no domain.
    for (i, b, e) in [
        (2, bind(1, offered), XenErrno::Einval),
        (1, bind(DOMID_SELF, 1), XenErrno::Einval),
        (1, bind(1, 0), XenErrno::Einval),
        (1, bind(1, 4096), XenErrno::Einval),
        (1, bind(1, u32::MAX), XenErrno::Einval),
    ] {
        m.put(i, ARG, &b);
        assert_eq!(op(&mut m.doms, i, 0, ARG), Err(e), "{b:?}");
    }
    m.put(1, ARG, &bind(77, 1));
    assert!(op(&mut m.doms, 1, 0, ARG).is_err());
    // Domain 2's bind whose answer would land in a read-only page: EFAULT, and neither
    // end is bound.
    m.grant(2, 8, 2, 0x2_0000, true);
    assert_eq!(m.map(1, 3, 8, 0x3_0000, HOST_MAP | READONLY).0, 0);
    crate::arch::phys::write(m.hpa(2, 0x2_0000).0, bind(1, offered).as_bytes());
    assert_eq!(op(&mut m.doms, 1, 0, 0x3_0000), Err(XenErrno::Efault));
    assert_eq!(m.d(0).evtchn[offered as usize], Port::Unbound { remote: 2 });
    assert!(m.d(1).evtchn.iter().all(|p| *p == Port::Free));
}
