//! Frame ownership and lifetime (the frame table), and the guest-memory API's NPT
//! permission check on every write the hypervisor makes for a guest.

use super::*;
use crate::domain::Access;
use crate::mm::Owner;
use sluice_abi::types::DOMID_SELF;

const P: u64 = 0x2_0000;
const Y: u64 = 0x3_0000;

#[test]
fn frames_are_recorded_and_all_come_back() {
    let mut m = machine(2);
    let frame = m.hpa(0, P);
    assert_eq!(m.fa.owner(frame), Owner::Domain(1));
    assert_eq!(m.fa.owner(m.d(0).shared_info), Owner::Xen);
    assert_eq!(m.fa.owner(Hpa(0x1000)), Owner::NotRam);
    assert_eq!(
        m.fa.owner(Hpa(super::RAM.0 + 0x10_0000)),
        Owner::Xen,
        "reserved"
    );
    m.kill(0);
    m.kill(1);
    assert_eq!(m.fa.handed_out, m.base);
    assert_eq!(m.fa.owner(frame), Owner::Free);
    assert_eq!(m.fa.bad_frees, 0);
}

/// A watched frame (a dead domain's poisoned RAM) is named while it stays free, and
/// never after it was handed out again, even once freed again: its new user's bytes
/// are not the poison (a reboot reuses a dead domain's frames).
#[test]
fn watched_frames_are_named_only_while_they_stay_free() {
    let mut m = machine(2);
    let (a, b) = (m.hpa(0, P), m.hpa(0, Y));
    m.fa.watch(a);
    m.fa.watch(b);
    let watched = |fa: &crate::mm::FrameAllocator| {
        let mut v = std::vec::Vec::new();
        fa.for_each_watched(|f| v.push(f));
        v
    };
    assert!(watched(&m.fa).is_empty(), "not free yet");
    m.kill(0);
    let mut w = watched(&m.fa);
    w.sort();
    let mut want = std::vec![a.0, b.0];
    want.sort();
    assert_eq!(w, want);
    // Every free frame handed out again (the free list is LIFO), then freed again.
    let mut taken = std::vec::Vec::new();
    while let Some(f) = m.fa.alloc() {
        taken.push(f);
        if taken.contains(&a.0) && taken.contains(&b.0) {
            break;
        }
    }
    assert!(watched(&m.fa).is_empty());
    for f in taken {
        m.fa.free(f);
    }
    assert!(watched(&m.fa).is_empty(), "freed again, not watched again");
    assert_eq!(m.fa.owner(a), Owner::Free);
    assert_eq!(m.fa.bad_frees, 0);
    m.kill(1);
    assert_eq!(m.fa.handed_out, m.base);
}

#[test]
fn the_granters_death_revokes_mappings_before_its_frames_are_freed() {
    let mut m = machine(2);
    m.d(1).write_gpa(Gpa(Y), b"A's own RAM").unwrap();
    let own = m.hpa(1, Y);
    m.grant(0, 8, 2, P, false);
    assert_eq!(m.map(1, 1, 8, Y, HOST_MAP).0, 0);
    let c_frame = m.hpa(0, P);
    assert_eq!(m.hpa(1, Y), c_frame);
    m.kill(0);
    // A's own frame is back at Y; C's frame is free and reachable by no one.
    assert_eq!(m.hpa(1, Y), own);
    assert_eq!(m.fa.owner(c_frame), Owner::Free);
    assert_eq!(m.fa.bad_frees, 0);
    assert!(m.d(1).grant_maps.iter().all(|g| g.is_none()));
}

#[test]
fn a_mapped_frame_is_never_freed() {
    let mut m = machine(1);
    let f = m.hpa(0, P);
    assert!(m.fa.get_map(f));
    m.fa.free(f.0);
    assert_eq!(m.fa.bad_frees, 1);
    assert_eq!(
        m.fa.owner(f),
        Owner::Domain(1),
        "kept, not on the free list"
    );
    m.fa.put_map(f);
    // A double free is refused too.
    m.fa.free(f.0);
    m.fa.free(f.0);
    assert_eq!(m.fa.bad_frees, 2);
    assert!(crate::arch::serial::take_log().contains("HYPERVISOR BUG"));
    // Nor can a hypervisor frame or a free one be counted as mapped.
    assert!(!m.fa.get_map(f));
    assert!(!m.fa.get_map(m.d(0).shared_info));
}

/// A (1) maps C's (0) read-only grant at Y and asks the hypervisor to write into it.
fn read_only_mapping() -> Machine {
    let mut m = machine(2);
    m.d(0).write_gpa(Gpa(P), b"C read-only data").unwrap();
    m.grant(0, 9, 2, P, true);
    assert_eq!(m.map(1, 1, 9, Y, HOST_MAP | READONLY).0, 0);
    m
}

fn unchanged(m: &Machine) -> bool {
    let mut b = [0u8; 4096];
    m.d(0).read_gpa(Gpa(P), &mut b).unwrap();
    &b[..16] == b"C read-only data" && b[16..].iter().all(|&x| x == 0)
}

#[test]
fn the_guest_memory_api_honours_read_only_mappings() {
    let m = read_only_mapping();
    let a = m.d(1);
    assert!(a.translate(Gpa(Y), Access::Read).is_some());
    assert!(a.translate(Gpa(Y), Access::Write).is_none());
    assert_eq!(a.write_gpa(Gpa(Y + 100), b"x"), Err(XenErrno::Efault));
    // A write spanning a writable page and the read-only one writes nothing.
    assert_eq!(a.write_gpa(Gpa(Y - 4), b"12345678"), Err(XenErrno::Efault));
    assert_eq!(a.copy_to_guest(Y - 4, b"12345678"), Err(XenErrno::Efault));
    let mut b = [0u8; 4];
    a.read_gpa(Gpa(Y - 4), &mut b).unwrap();
    assert_eq!(b, [0; 4]);
    assert!(unchanged(&m));
}

#[test]
fn no_hypercall_writes_into_a_read_only_mapping() {
    let mut m = read_only_mapping();
    // GNTTABOP_copy into it by GFN, and through a grant of A's own naming it.
    let src = GnttabCopyPtr::with_gmfn(0x40, DOMID_SELF, 0);
    let dst = GnttabCopyPtr::with_gmfn(Y >> 12, DOMID_SELF, 0);
    assert_eq!(m.copy(1, src, dst, 0), -9);
    m.grant(1, 20, 2, Y, false);
    assert_eq!(
        m.copy(1, src, GnttabCopyPtr::with_gref(20, DOMID_SELF, 0), 2),
        -9
    );
    // setup_table's frame list into it: GNTST_bad_virt_addr.
    let op = sluice_abi::grant_table::GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: Y,
        ..Default::default()
    };
    let (r, op) = m.gnttab(1, 2, &op);
    assert_eq!((r, op.status), (Ok(0), -5));
    // Hypercalls whose output is in it: EFAULT (query_size reads its argument there).
    let mut dom_self = [0u8; 4];
    dom_self[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    dom_self[2..].copy_from_slice(&DOMID_SELF.to_le_bytes());
    crate::arch::phys::write(m.hpa(0, P).0 + 32, &dom_self);
    let r = crate::grant::grant_table_op(&mut m.doms, 1, &mut m.fa, 6, Y + 32, 1);
    assert_eq!(r, Err(XenErrno::Efault));
    let r = crate::evtchn::event_channel_op(&mut m.doms, 1, 6, Y + 32);
    assert_eq!(r, Err(XenErrno::Efault));
    assert!(m
        .d(1)
        .evtchn
        .iter()
        .all(|p| matches!(p, crate::evtchn::Port::Free)));
    crate::arch::phys::write(m.hpa(0, P).0 + 32, &[0; 4]);
    assert_eq!(
        super::misc::hypercall(&mut m, 1, 17, [1, Y, 0]),
        XenErrno::Efault.to_ret()
    );
    // The hypercall page: #GP, nothing written.
    let d = m.doms[1].as_mut().unwrap();
    d.vcpu().regs.rcx = crate::hypercall::HYPERCALL_MSR as u64;
    d.vcpu().rax = Y;
    d.vcpu().regs.rdx = 0;
    crate::hypercall::msr(d, true);
    assert_eq!(m.doms[1].as_mut().unwrap().vcpu().gp, 1);
    assert!(unchanged(&m));
}
