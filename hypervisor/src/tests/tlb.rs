//! Stale translations after an NPT entry goes (class 1): a frame removed from a domain's
//! nested page table while another of its vCPUs runs on another CPU is not reused
//! before that CPU is synced (left its guest: it flushes before it enters again).

use super::*;
use crate::mm::Owner;

const P: u64 = 0x2_0000;
const X: u64 = 0x3_0000;

/// Every frame the allocator has left (it is empty afterwards).
fn drain(fa: &mut FrameAllocator) -> Vec<u64> {
    core::iter::from_fn(|| fa.alloc()).collect()
}

/// C (index 0) grants P to A (index 1, two vCPUs); A maps it at X. Returns the frame.
fn mapped(a_vcpu1_elsewhere: bool) -> (Machine, Hpa) {
    let mut m = machine(1);
    let mut spec = spec();
    spec.vcpus = 2;
    let a = Domain::create(&Svm::new(), &mut m.fa, 2, &spec, Clock::calibrate()).unwrap();
    m.doms.push(Some(a));
    m.grant(0, 8, 2, P, false);
    let frame = m.hpa(0, P);
    let (st, _) = m.map(1, 1, 8, X, HOST_MAP);
    assert_eq!(st, 0);
    assert_eq!(m.hpa(1, X), frame);
    if a_vcpu1_elsewhere {
        // A's vCPU 1 runs on CPU 1 (its CPU holds its state) while vCPU 0's hypercalls
        // are handled here.
        let v = &mut m.doms[1].as_mut().unwrap().vcpus[1];
        v.running_on = Some(1);
        v.state = crate::domain::RunState::Runnable;
    }
    (m, frame)
}

#[test]
fn a_frame_unmapped_while_a_vcpu_runs_elsewhere_is_not_reused_before_the_sync() {
    let (mut m, frame) = mapped(true);
    assert_eq!(m.unmap(1, X, 0), 0);
    assert!(m.d(1).vcpus[1].flush_pending, "vCPU 1 must flush");
    assert!(m.fa.tlbs_are_stale());
    // The granter dies: its frame goes back, but vCPU 1's CPU may still translate X to
    // it, so no one gets it (nor any frame freed meanwhile) until that CPU is synced.
    m.kill(0);
    assert_eq!(m.fa.owner(frame), Owner::Free);
    assert!(m.fa.held_back > 0);
    let before = drain(&mut m.fa);
    assert!(
        !before.contains(&frame.0),
        "a frame a CPU may still reach was reused"
    );
    for f in before {
        m.fa.free(f);
    }
    // The scheduler's sync (every CPU running a vCPU to flush has left its guest).
    m.fa.tlbs_synced();
    assert_eq!(m.fa.held_back, 0);
    assert!(
        drain(&mut m.fa).contains(&frame.0),
        "synced: reusable again"
    );
}

#[test]
fn without_a_vcpu_elsewhere_nothing_is_held_back() {
    let (mut m, frame) = mapped(false);
    assert_eq!(m.unmap(1, X, 0), 0);
    assert!(!m.fa.tlbs_are_stale());
    m.kill(0);
    assert_eq!(m.fa.held_back, 0);
    assert!(drain(&mut m.fa).contains(&frame.0));
}

#[test]
fn revoking_a_mapping_at_the_granters_death_marks_the_mappers_cpus() {
    // The granter dies with the mapping in place: release_all revokes it from A (whose
    // vCPU 1 runs elsewhere); the frame is held back until the teardown's sync.
    let (mut m, frame) = mapped(true);
    m.kill(0);
    assert_eq!(m.fa.owner(frame), Owner::Free);
    assert!(m.d(1).vcpus[1].flush_pending);
    assert!(!drain(&mut m.fa).contains(&frame.0));
}
