//! The nested page table's 2 MiB leaves: RAM is mapped with them where its frames are
//! one aligned contiguous run; a page inside that changes (a grant mapping,
//! add_to_physmap) splits the leaf with every other translation and permission kept;
//! the leaf comes back once the run is whole again, and only then.

use super::*;
use crate::domain::{Access, LARGE};
use crate::mm::Owner;

const P: u64 = 0x2_0000;
const Y: u64 = 0x3_0000;

/// Every page of domain `i`: its host frame and whether it is writable.
fn layout(m: &Machine, i: usize) -> Vec<(Hpa, bool)> {
    let d = m.d(i);
    (0..LARGE / 4096)
        .map(|p| {
            let gpa = Gpa(p * 4096);
            let r = d.translate(gpa, Access::Read).unwrap();
            (r, d.translate(gpa, Access::Write).is_some())
        })
        .collect()
}

#[test]
fn ram_is_one_2mib_leaf_of_the_domains_own_contiguous_frames() {
    let mut m = machine(2);
    for i in 0..2 {
        assert_eq!(m.doms[i].as_ref().unwrap().audit(&mut m.fa), 0);
        assert_eq!(m.d(i).large_leaves(), 1);
        let l = layout(&m, i);
        assert!(l[0].0 .0.is_multiple_of(LARGE));
        for (p, &(f, w)) in l.iter().enumerate() {
            assert_eq!(f, Hpa(l[0].0 .0 + p as u64 * 4096));
            assert!(w);
            assert_eq!(m.fa.owner(f), Owner::Domain(i as u16 + 1));
        }
        // An offset inside a page translates to the same offset.
        assert_eq!(m.hpa(i, P + 0x123), Hpa(l[0].0 .0 + P + 0x123));
    }
}

#[test]
fn a_grant_mapping_splits_the_leaf_and_its_unmap_merges_it_back() {
    let mut m = machine(2);
    m.d(1).write_gpa(Gpa(P), b"A's data").unwrap();
    let before = layout(&m, 1);
    m.grant(0, 8, 2, P, true);
    let (st, h) = m.map(1, 1, 8, Y, HOST_MAP | READONLY);
    assert_eq!(st, 0);
    let a = m.d(1);
    assert_eq!((a.large_leaves(), a.npt_splits, a.npt_merges), (0, 1, 0));
    // Only Y changed (C's frame, read-only); every other page as before, data too.
    let after = layout(&m, 1);
    for (p, (b, a)) in before.iter().zip(&after).enumerate() {
        if p as u64 * 4096 == Y {
            assert_eq!(*a, (m.hpa(0, P), false));
        } else {
            assert_eq!(a, b, "page {p:#x}");
        }
    }
    let mut buf = [0u8; 8];
    m.d(1).read_gpa(Gpa(P), &mut buf).unwrap();
    assert_eq!(&buf, b"A's data");
    assert_eq!(m.doms[1].as_ref().unwrap().audit(&mut m.fa), 0);
    assert_eq!(m.unmap(1, Y, h), 0);
    let a = m.d(1);
    assert_eq!((a.large_leaves(), a.npt_splits, a.npt_merges), (1, 1, 1));
    assert_eq!(layout(&m, 1), before);
    // The split's table went back; every frame comes back at the end.
    m.kill(1);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
    assert_eq!(m.fa.bad_frees, 0);
}

#[test]
fn a_leaf_is_not_merged_while_a_page_is_not_the_domains_own_run() {
    let mut m = machine(2);
    let si = m.d(1).shared_info;
    let ram = m.doms[1]
        .as_mut()
        .unwrap()
        .remap(&mut m.fa, Gpa(0x5_0000), si)
        .unwrap();
    assert_eq!(m.d(1).large_leaves(), 0);
    // A grant mapped and unmapped beside it: still split (shared_info is there).
    m.grant(0, 8, 2, P, false);
    let (st, h) = m.map(1, 1, 8, Y, HOST_MAP);
    assert_eq!(st, 0);
    assert_eq!(m.unmap(1, Y, h), 0);
    assert_eq!(m.d(1).large_leaves(), 0);
    assert_eq!(m.hpa(1, 0x5_0000), si);
    // A frame of its own but out of place (swapped pages) is no run either.
    let d = m.doms[1].as_mut().unwrap();
    let other = d.translate(Gpa(Y), Access::Read).unwrap();
    d.remap(&mut m.fa, Gpa(0x5_0000), other).unwrap();
    assert_eq!(d.large_leaves(), 0);
    // The displaced frame back in place: whole again, merged.
    d.remap(&mut m.fa, Gpa(0x5_0000), ram).unwrap();
    assert_eq!((d.large_leaves(), d.npt_merges), (1, 1));
    assert_eq!(d.translate(Gpa(0x5_0000), Access::Write), Some(ram));
    assert_eq!(m.doms[1].as_ref().unwrap().audit(&mut m.fa), 0);
}

#[test]
fn a_read_only_page_keeps_the_leaf_split() {
    let mut m = machine(1);
    let d = m.doms[0].as_mut().unwrap();
    let own = d.translate(Gpa(P), Access::Read).unwrap();
    d.remap_flags(&mut m.fa, Gpa(P), own, false).unwrap();
    assert_eq!(d.large_leaves(), 0);
    assert!(d.translate(Gpa(P), Access::Write).is_none());
    assert!(d.translate(Gpa(P + 4096), Access::Write).is_some());
    d.remap(&mut m.fa, Gpa(P), own).unwrap();
    assert_eq!(d.large_leaves(), 1);
}

#[test]
fn a_split_without_a_free_frame_changes_nothing() {
    let mut m = machine(1);
    let before = layout(&m, 0);
    let spare = m.fa.alloc().unwrap();
    while m.fa.alloc().is_some() {}
    let d = m.doms[0].as_mut().unwrap();
    assert_eq!(d.remap(&mut m.fa, Gpa(P), Hpa(spare)), None);
    assert_eq!(d.large_leaves(), 1);
    assert_eq!(layout(&m, 0), before);
}

#[test]
fn without_an_aligned_contiguous_run_ram_is_mapped_in_4k_leaves() {
    let mut fa = FrameAllocator::new();
    // 3 MiB from 4 KiB past a 2 MiB boundary: no aligned 2 MiB inside.
    fa.add_region(RAM.0 + 0x1000, RAM.0 + 0x30_0000);
    assert!(fa.init_frame_table());
    let base = fa.handed_out;
    let d = Domain::create(&Svm::new(), &mut fa, 1, &spec(), Clock::calibrate()).unwrap();
    assert_eq!(d.large_leaves(), 0);
    let mut m = Machine {
        fa,
        doms: vec![Some(d)],
        base,
        entries: 0,
    };
    for p in 0..LARGE / 4096 {
        let f = m.hpa(0, p * 4096);
        assert_eq!(m.fa.owner(f), Owner::Domain(1));
    }
    // Nothing merges frames that are not a run.
    let d = m.doms[0].as_mut().unwrap();
    let own = d.translate(Gpa(P), Access::Read).unwrap();
    d.remap(&mut m.fa, Gpa(P), own).unwrap();
    assert_eq!(d.large_leaves(), 0);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
}

#[test]
fn add_to_physmap_that_cannot_split_fails_with_enomem_and_changes_nothing() {
    use sluice_abi::hypercall::XenAddToPhysmap;
    use sluice_abi::types::DOMID_SELF;
    let (fa, mut spec) = allocator();
    spec.mem_bytes = 2 * LARGE;
    let mut m = Machine {
        base: fa.handed_out,
        fa,
        doms: vec![],
        entries: 0,
    };
    let d = Domain::create(&Svm::new(), &mut m.fa, 1, &spec, Clock::calibrate()).unwrap();
    m.doms.push(Some(d));
    assert_eq!(m.d(0).large_leaves(), 2);
    let place = |m: &mut Machine, gpfn: u64| {
        let a = XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: 0,
            idx: 0,
            gpfn,
        };
        m.put(0, ARG, &a);
        super::misc::hypercall(m, 0, 12, [7, ARG, 0])
    };
    assert_eq!(place(&mut m, 0x50), 0);
    let si = m.d(0).shared_info;
    let ram = m.hpa(0, LARGE + 0x5_0000);
    let taken: Vec<u64> = core::iter::from_fn(|| m.fa.alloc()).collect();
    // Moving it into the other 2 MiB needs a table: none left.
    assert_eq!(
        place(&mut m, (LARGE >> 12) + 0x50),
        XenErrno::Enomem.to_ret()
    );
    assert_eq!(m.hpa(0, 0x5_0000), si);
    assert_eq!(m.hpa(0, LARGE + 0x5_0000), ram);
    assert_eq!(m.d(0).large_leaves(), 1);
    taken.into_iter().for_each(|f| m.fa.free(f));
    assert_eq!(place(&mut m, (LARGE >> 12) + 0x50), 0);
    // Moved: the first 2 MiB is whole again and merged.
    assert_eq!(m.hpa(0, LARGE + 0x5_0000), si);
    assert_eq!(m.d(0).large_leaves(), 1);
    assert_eq!(m.d(0).npt_merges, 1);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
    assert_eq!(m.fa.bad_frees, 0);
}
