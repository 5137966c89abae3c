//! HVM/PVH pieces Linux needs (crate::hvm, crate::vlapic) with hostile arguments.

use super::misc::hypercall;
use super::*;
use crate::addr::Gpa;
use crate::hvm::{io, IoExit};
use sluice_abi::hypercall::{VcpuRegisterVcpuInfo, XenHvmParam};
use sluice_abi::types::DOMID_SELF;

const HVM_OP: u64 = 34;
const VCPU_OP: u64 = 24;

fn param(m: &mut Machine, set: bool, domid: u16, index: u32, value: u64) -> (i64, u64) {
    let p = XenHvmParam {
        domid,
        pad: 0,
        index,
        value,
    };
    m.put(0, ARG, &p);
    let r = hypercall(m, 0, HVM_OP, [!set as u64, ARG, 0]);
    (r, m.get::<XenHvmParam>(0, ARG).value)
}

#[test]
fn hvm_params_as_xen_answers_them() {
    let mut m = machine(2);
    let vector = 2 << 56 | 0xF3;
    // Another domain: EPERM, none such ESRCH; past HVM_NR_PARAMS: EINVAL; a toolstack
    // parameter: EPERM.
    assert_eq!(
        param(&mut m, true, 2, 0, vector).0,
        XenErrno::Eperm.to_ret()
    );
    assert_eq!(
        param(&mut m, true, 9, 0, vector).0,
        XenErrno::Esrch.to_ret()
    );
    assert_eq!(
        param(&mut m, false, DOMID_SELF, 39, 0).0,
        XenErrno::Einval.to_ret()
    );
    assert_eq!(
        param(&mut m, true, DOMID_SELF, 1, 5).0,
        XenErrno::Eperm.to_ret()
    );
    // CALLBACK_IRQ: a vector below 0x10, junk above it, an unknown type: EINVAL,
    // unchanged.
    for bad in [2 << 56 | 0x0F, 2 << 56 | 0x1F3, 3 << 56] {
        assert_eq!(
            param(&mut m, true, DOMID_SELF, 0, bad).0,
            XenErrno::Einval.to_ret()
        );
    }
    assert_eq!(m.d(0).callback_irq, 0);
    assert_eq!(param(&mut m, true, 1, 0, vector).0, 0);
    assert_eq!(param(&mut m, false, DOMID_SELF, 0, 0), (0, vector));
    // No xenstore, no console ring: STORE_PFN and CONSOLE_EVTCHN read 0.
    assert_eq!(param(&mut m, false, DOMID_SELF, 1, 7), (0, 0));
    assert_eq!(param(&mut m, false, DOMID_SELF, 18, 7), (0, 0));
    // The GSI type (Linux sets GSI 1 with per-vCPU upcall vectors): recorded.
    assert_eq!(param(&mut m, true, DOMID_SELF, 0, 1).0, 0);
    assert_eq!(param(&mut m, false, DOMID_SELF, 0, 0), (0, 1));
    // Other HVMOPs: ENOSYS.
    assert_eq!(
        hypercall(&mut m, 0, HVM_OP, [99, ARG, 0]),
        XenErrno::Enosys.to_ret()
    );
}

#[test]
fn upcall_vector_follows_evtchn_upcall_pending() {
    let mut m = machine(1);
    assert_eq!(param(&mut m, true, DOMID_SELF, 0, 2 << 56 | 0xF3).0, 0);
    assert_eq!(crate::hvm::upcall_due(m.d(0), 0), None);
    let si = m.d(0).shared_info;
    phys::write(si.0, &[1]);
    assert_eq!(crate::hvm::upcall_due(m.d(0), 0), Some(0xF3));
    let d = m.doms[0].as_mut().unwrap();
    let mut v = d.vcpus[0].slot.take().unwrap();
    crate::vsmp::before_entry(d, 0, &mut v);
    assert_eq!(v.virq, Some(0xF3));
}

#[test]
fn vcpu_info_registration_is_checked_once() {
    let mut m = machine(1);
    let reg = |m: &mut Machine, mfn: u64, offset: u32| {
        let r = VcpuRegisterVcpuInfo {
            mfn,
            offset,
            rsvd: 0,
        };
        m.put(0, ARG, &r);
        hypercall(m, 0, VCPU_OP, [10, 0, ARG])
    };
    // Crossing its page, outside the domain's memory: EINVAL.
    assert_eq!(reg(&mut m, 0x10, 4096 - 63), XenErrno::Einval.to_ret());
    assert_eq!(reg(&mut m, DOMAIN_MEM >> 12, 0), XenErrno::Einval.to_ret());
    phys::write(m.d(0).shared_info.0, &[0; 64]);
    assert_eq!(reg(&mut m, 0x10, 0x40), 0);
    // Every event marked pending there (a spurious upcall: none lost); once only.
    let mut b = [0u8; 16];
    phys::read(m.hpa(0, 0x10_040).0, &mut b);
    assert_eq!(b[0], 1);
    assert_eq!(u64::from_le_bytes(b[8..].try_into().unwrap()), u64::MAX);
    assert_eq!(reg(&mut m, 0x11, 0), XenErrno::Einval.to_ret());
}

#[test]
fn rep_outsb_to_the_debug_port_is_bounded_per_exit() {
    let mut m = machine(1);
    let d = m.doms[0].as_mut().unwrap();
    d.write_gpa(Gpa(0x9000), &[b'x'; 600]).unwrap();
    let v = d.vcpu();
    v.rip = 0x100;
    v.regs.rsi = 0x9000;
    v.regs.rcx = 600;
    let e = IoExit {
        port: 0xE9,
        input: false,
        size: 1,
        string: true,
        rep: true,
        next_rip: 0x102,
    };
    // 256 bytes an exit, the instruction re-executed until RCX is 0.
    for left in [344, 88] {
        io(d, e);
        assert_eq!((d.vcpu().regs.rcx, d.vcpu().rip), (left, 0x100));
    }
    io(d, e);
    assert_eq!((d.vcpu().regs.rcx, d.vcpu().regs.rsi), (0, 0x9000 + 600));
    assert_eq!(d.vcpu().rip, 0x102);
    // A source outside the domain ends the string (no fault into the hypervisor).
    d.vcpu().regs.rsi = DOMAIN_MEM + 0x1000;
    d.vcpu().regs.rcx = 10;
    d.vcpu().rip = 0x100;
    io(d, e);
    assert_eq!(d.vcpu().rip, 0x102);
}

#[test]
fn ports_without_a_device_read_all_ones_as_xens_null_handler() {
    let mut m = machine(1);
    let d = m.doms[0].as_mut().unwrap();
    // Linux's quick_pit_calibrate reads PIT channel 2 (0x42): no PIT, all ones.
    for (size, want) in [
        (1, 0x1234_5678_9ABC_DEFF),
        (2, 0x1234_5678_9ABC_FFFF),
        (4, 0xFFFF_FFFF),
    ] {
        d.vcpu().rax = 0x1234_5678_9ABC_DE00;
        d.vcpu().rip = 0x100;
        let e = IoExit {
            port: 0x42,
            input: true,
            size,
            string: false,
            rep: false,
            next_rip: 0x102,
        };
        assert_eq!(io(d, e), crate::hypercall::After::Continue);
        assert_eq!((d.vcpu().rax, d.vcpu().rip), (want, 0x102), "size {size}");
    }
}

#[test]
fn port_io_exits_are_counted_by_port() {
    let mut p = crate::vsmp::IoPorts::default();
    for port in [0x42, 0x42, 0x61, 0x42] {
        p.count(port);
    }
    for port in 0x70..0x7A {
        p.count(port);
    }
    assert_eq!(
        std::format!("{p}"),
        "0x42 3, 0x61 1, 0x70 1, 0x71 1, 0x72 1, 0x73 1, 0x74 1, 0x75 1, other ports 4"
    );
}

#[test]
fn x2apic_registers_as_the_sdm() {
    let mut m = machine(1);
    let d = m.doms[0].as_mut().unwrap();
    use crate::vlapic::msr;
    // APIC_BASE: enabled, x2APIC, BSP; leaving x2APIC mode is refused.
    assert_eq!(msr(d, 0x1B, false, 0), Some(Ok(0xFEE0_0D00)));
    assert_eq!(msr(d, 0x1B, true, 0xFEE0_0900), Some(Err(())));
    assert_eq!(msr(d, 0x802, false, 0), Some(Ok(0)));
    // EOI is write-only (a read #GP), a non-zero EOI #GP; ID read-only.
    assert_eq!(msr(d, 0x80B, false, 0), Some(Err(())));
    assert_eq!(msr(d, 0x80B, true, 1), Some(Err(())));
    assert_eq!(msr(d, 0x802, true, 4), Some(Err(())));
    assert_eq!(msr(d, 0x808, true, 0x100), Some(Err(())));
    assert_eq!(msr(d, 0x808, true, 0x20), Some(Ok(0)));
    assert_eq!(msr(d, 0x808, false, 0), Some(Ok(0x20)));
    assert_eq!(msr(d, 0x10, false, 0), None);
}

#[test]
fn console_ring_is_drained_at_most_a_ring_per_notify() {
    let mut m = machine(1);
    // Without a console: CONSOLE_PFN / EVTCHN read 0.
    assert_eq!(param(&mut m, false, DOMID_SELF, 17, 0), (0, 0));
    let d = m.doms[0].as_mut().unwrap();
    crate::hvm::console_setup(d).unwrap();
    assert_eq!(param(&mut m, false, DOMID_SELF, 17, 0), (0, 0xEF));
    assert_eq!(param(&mut m, false, DOMID_SELF, 18, 0), (0, 1));
    // A producer index a million bytes ahead: one ring's worth printed, cons advanced
    // by it; an empty ring prints nothing.
    let d = m.doms[0].as_mut().unwrap();
    let ring = crate::hvm::CONSOLE_GPA;
    d.write_gpa(Gpa(ring + 1024), &[b'a'; 2048]).unwrap();
    d.write_gpa(Gpa(ring + 3080), &5u32.to_le_bytes()).unwrap();
    d.write_gpa(Gpa(ring + 3084), &1_000_005u32.to_le_bytes())
        .unwrap();
    let before = d.console_rate.printed + d.console_rate.dropped;
    crate::hvm::console_drain(d);
    assert_eq!(
        d.console_rate.printed + d.console_rate.dropped - before,
        2048
    );
    let mut cons = [0u8; 4];
    d.read_gpa(Gpa(ring + 3080), &mut cons).unwrap();
    assert_eq!(u32::from_le_bytes(cons), 5 + 2048);
    d.write_gpa(Gpa(ring + 3084), &(5u32 + 2048).to_le_bytes())
        .unwrap();
    crate::hvm::console_drain(d);
    assert_eq!(
        d.console_rate.printed + d.console_rate.dropped - before,
        2048
    );
}

#[test]
fn console_input_fills_only_the_room_the_guest_left() {
    let mut m = machine(1);
    let d = m.doms[0].as_mut().unwrap();
    // No console: nothing taken.
    assert_eq!(crate::hvm::console_input(d, b"abc"), 0);
    crate::hvm::console_setup(d).unwrap();
    let ring = crate::hvm::CONSOLE_GPA;
    assert_eq!(crate::hvm::console_input(d, b"abc"), 3);
    let mut b = [0u8; 3];
    d.read_gpa(Gpa(ring), &mut b).unwrap();
    assert_eq!(&b, b"abc");
    // The guest claims to have consumed far less than produced: no room, none written.
    d.write_gpa(Gpa(ring + 3072), &u32::MAX.to_le_bytes())
        .unwrap();
    d.write_gpa(Gpa(ring + 3076), &5000u32.to_le_bytes())
        .unwrap();
    assert_eq!(crate::hvm::console_input(d, &[b'x'; 64]), 0);
    // 1020 of 1024 used: 4 taken, wrapping around the ring's end.
    d.write_gpa(Gpa(ring + 3072), &10u32.to_le_bytes()).unwrap();
    d.write_gpa(Gpa(ring + 3076), &1030u32.to_le_bytes())
        .unwrap();
    assert_eq!(crate::hvm::console_input(d, b"wxyz!"), 4);
    let mut p = [0u8; 4];
    d.read_gpa(Gpa(ring + 3076), &mut p).unwrap();
    assert_eq!(u32::from_le_bytes(p), 1034);
    d.read_gpa(Gpa(ring + 6), &mut b).unwrap();
    assert_eq!(&b, b"wxy");
    // The port is pending for the guest.
    assert!(crate::evtchn::is_pending(d, crate::hvm::CONSOLE_PORT));
}
