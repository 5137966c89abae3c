//! Grant in-use accounting (Xen's active entries) and frame ownership of grants.

use super::*;
use crate::arch::phys;
use sluice_abi::types::DOMID_SELF;

const P: u64 = 0x2_0000;
const X: u64 = 0x3_0000;
const X2: u64 = 0x3_1000;

fn gref(g: u32, dom: u16) -> GnttabCopyPtr {
    GnttabCopyPtr::with_gref(g, dom, 0)
}

fn gfn(gpa: u64) -> GnttabCopyPtr {
    GnttabCopyPtr::with_gmfn(gpa >> 12, DOMID_SELF, 0)
}

#[test]
fn same_ref_mapped_twice_unmapped_once_stays_in_use() {
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    let (s1, h1) = m.map(1, 1, 8, X, HOST_MAP);
    let (s2, h2) = m.map(1, 1, 8, X2, HOST_MAP);
    assert_eq!((s1, s2), (0, 0));
    assert_eq!(m.flags(0, 8), GTF_READING | GTF_WRITING);
    assert_eq!(m.unmap(1, X2, h2), 0);
    assert_eq!(
        m.flags(0, 8),
        GTF_READING | GTF_WRITING,
        "one mapping is left"
    );
    assert_eq!(m.unmap(1, X, h1), 0);
    assert_eq!(m.flags(0, 8), 0);
    assert!(m.d(0).grant.active.is_empty());
}

#[test]
fn writing_clears_with_the_last_writable_pin() {
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    let (_, ro) = m.map(1, 1, 8, X, HOST_MAP | READONLY);
    assert_eq!(m.flags(0, 8), GTF_READING);
    let (_, rw) = m.map(1, 1, 8, X2, HOST_MAP);
    assert_eq!(m.flags(0, 8), GTF_READING | GTF_WRITING);
    assert_eq!(m.unmap(1, X2, rw), 0);
    assert_eq!(m.flags(0, 8), GTF_READING);
    assert_eq!(m.unmap(1, X, ro), 0);
    assert_eq!(m.flags(0, 8), 0);
}

#[test]
fn a_failed_map_leaves_nothing_set() {
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    m.grant(0, 9, 2, P, true);
    // Misaligned, outside memory, over a hypervisor frame: the pin is taken, then dropped.
    assert_eq!(m.map(1, 1, 8, X + 8, HOST_MAP).0, -5);
    assert_eq!(m.map(1, 1, 8, 0x4000_0000, HOST_MAP).0, -5);
    // Writable map of a read-only grant: refused before anything is set.
    assert_eq!(m.map(1, 1, 9, X, HOST_MAP).0, -8);
    assert_eq!((m.flags(0, 8), m.flags(0, 9)), (0, 0));
    assert!(m.d(0).grant.active.is_empty());
    assert_eq!(m.fa.bad_frees, 0);
}

#[test]
fn a_copy_pins_and_unpins() {
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    m.d(1).write_gpa(Gpa(X), b"sixteen bytes!!!").unwrap();
    assert_eq!(m.copy(1, gfn(X), gref(8, 1), 2), 0);
    let mut b = [0u8; 16];
    m.d(0).read_gpa(Gpa(P), &mut b).unwrap();
    assert_eq!(&b, b"sixteen bytes!!!");
    assert_eq!(m.flags(0, 8), 0);
    // While a mapping holds it, a copy leaves the mapping's pin alone.
    let (_, h) = m.map(1, 1, 8, X2, HOST_MAP);
    assert_eq!(m.copy(1, gref(8, 1), gfn(X), 1), 0);
    assert_eq!(m.flags(0, 8), GTF_READING | GTF_WRITING);
    assert_eq!(m.unmap(1, X2, h), 0);
    assert_eq!(m.flags(0, 8), 0);
}

#[test]
fn flags_clear_when_the_grantee_dies() {
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    m.map(1, 1, 8, X, HOST_MAP);
    m.map(1, 1, 8, X2, HOST_MAP | READONLY);
    m.kill(1);
    assert_eq!(m.flags(0, 8), 0);
    assert!(m.d(0).grant.active.is_empty());
}

#[test]
fn an_unstable_entry_is_retried_a_bounded_number_of_times() {
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    let pa = m.entry_pa(0, 8);
    // Another CPU flips a reserved flag bit under each compare-exchange: give up.
    phys::interfere(pa, crate::grant::SET_STATUS_RETRIES, 1 << 15);
    assert_eq!(m.map(1, 1, 8, X, HOST_MAP).0, -1);
    assert!(m.d(0).grant.active.is_empty());
    assert_eq!(m.flags(0, 8), 0);
    // One interference fewer than the bound: the next try wins.
    phys::interfere(pa, crate::grant::SET_STATUS_RETRIES - 1, 1 << 15);
    assert_eq!(m.map(1, 1, 8, X, HOST_MAP).0, 0);
}

#[test]
fn only_the_granters_own_ram_can_be_granted() {
    // C (0) grants P to A (1); A maps it at X and grants X on to B (2).
    let mut m = machine(3);
    m.grant(0, 8, 2, P, false);
    assert_eq!(m.map(1, 1, 8, X, HOST_MAP).0, 0);
    m.grant(1, 8, 3, X, false);
    m.grant(1, 9, 3, X, true);
    assert_eq!(
        m.map(2, 2, 8, X, HOST_MAP).0,
        -9,
        "re-grant of a mapped frame"
    );
    assert_eq!(m.map(2, 2, 9, X, HOST_MAP | READONLY).0, -9);
    assert_eq!(m.copy(2, gref(8, 2), gfn(X), 1), -9);
    assert_eq!(m.copy(2, gfn(X), gref(8, 2), 2), -9);
    // A's own copy naming the mapped frame by GFN is refused too.
    assert_eq!(m.copy(1, gfn(X), gfn(X2), 0), -9);
    // Hypervisor frames: A's shared_info and grant table frame, mapped in its physmap.
    let a = m.doms[1].as_mut().unwrap();
    let (si, gt) = (a.shared_info, a.grant.frames[0]);
    a.remap(&mut m.fa, Gpa(0x5_0000), si).unwrap();
    a.remap(&mut m.fa, Gpa(0x5_1000), gt).unwrap();
    m.grant(1, 10, 3, 0x5_0000, false);
    m.grant(1, 11, 3, 0x5_1000, true);
    assert_eq!(m.map(2, 2, 10, X, HOST_MAP).0, -9);
    assert_eq!(m.map(2, 2, 11, X, HOST_MAP | READONLY).0, -9);
    assert_eq!(m.copy(2, gref(10, 2), gfn(X), 1), -9);
    // Nothing stays pinned by the refusals; B's X is still its own RAM.
    assert!(m.d(1).grant.active.is_empty());
    assert!(m.doms.iter().flatten().all(|d| d.audit(&mut m.fa) == 0));
    assert_eq!(m.fa.owner(m.hpa(2, X)), crate::mm::Owner::Domain(3));
}

#[test]
fn a_long_batch_is_done_in_bounded_entries_by_continuations() {
    use crate::hypercall::OPS_PER_ENTRY;
    let mut m = machine(2);
    m.grant(0, 8, 2, P, false);
    m.d(1).write_gpa(Gpa(X), b"sixteen bytes!!!").unwrap();
    // 40 copies from domain 2's page into domain 1's granted page, one after another.
    const N: u64 = 40;
    let sz = core::mem::size_of::<GnttabCopy>() as u64;
    for k in 0..N {
        let op = GnttabCopy {
            source: gfn(X),
            dest: gref(8, 1),
            len: 16,
            flags: 2,
            status: 99,
            ..Default::default()
        };
        m.put(1, ARG + k * sz, &op);
    }
    assert_eq!(m.grant_batch(1, 5, ARG, N), Ok(0));
    // Each entry does at most OPS_PER_ENTRY ops: 40 ops take 3 entries.
    assert_eq!(m.entries as u64, N.div_ceil(OPS_PER_ENTRY));
    for k in 0..N {
        let op: GnttabCopy = m.get(1, ARG + k * sz);
        assert_eq!(op.status, 0, "op {k}");
    }
    assert_eq!(m.flags(0, 8), 0);
    // A count that is negative as Xen's int is refused before any work.
    assert_eq!(m.grant_batch(1, 5, ARG, 0x8000_0000), Err(XenErrno::Einval));
}
