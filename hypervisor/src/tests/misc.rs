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
    d.write_gpa(0x9000, b"hello").unwrap();
    let mut b = [0u8; 5];
    d.read_gpa(0x9000, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    d.destroy(&mut fa);
    assert_eq!(fa.handed_out, base);
}
