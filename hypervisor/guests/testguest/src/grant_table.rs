//! Our grant table: its frames (setup_table, query_size, a second frame through
//! add_to_physmap, their hostile cases) and the grants we make to a peer.

use super::xen::{self, hypercall};
use super::{err, Checks};
use sluice_abi::grant_table::{GnttabQuerySize, GnttabSetupTable, GrantEntryV1};
use sluice_abi::hypercall::{Hypercall, XenAddToPhysmap, XenErrno};
use sluice_abi::types::DOMID_SELF;
use zerocopy::IntoBytes;

pub(super) const GRANT_TABLE_GPA: u64 = 0x70_1000;
pub(super) const REF_RW: u32 = 8;
pub(super) const REF_RO: u32 = 9;
pub(super) const REF_OTHER: u32 = 10;
/// Grants in the table's second frame (entries 512..1024): page 1 read-only, page 0
/// read-write.
pub(super) const REF2_RO: u32 = 515;
pub(super) const REF2_RW: u32 = 1000;
/// Grant table frames the hypervisor allows (its max_grant_frames).
pub(super) const MAX_GRANT_FRAMES: u32 = 32;

/// GNTTABOP_setup_table for `dom`, `nr` frames into `list`, with `count` ops.
pub(super) fn setup_table(dom: u16, nr: u32, list: u64, count: u64) -> (i64, i16) {
    let mut op = GnttabSetupTable {
        dom,
        nr_frames: nr,
        status: 99,
        frame_list: list,
        ..Default::default()
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [2, &mut op as *mut _ as u64, count, 0, 0],
    );
    (r, op.status)
}

/// GNTTABOP_query_size for `dom`: (return value, status, nr_frames, max_nr_frames).
pub(super) fn query_size(dom: u16, count: u64) -> (i64, i16, u32, u32) {
    let mut q = GnttabQuerySize {
        dom,
        status: 99,
        ..Default::default()
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [6, &mut q as *mut _ as u64, count, 0, 0],
    );
    (r, q.status, q.nr_frames, q.max_nr_frames)
}

/// Grows our grant table to two frames (setup_table, add_to_physmap of frame 1) and
/// checks what setup_table and query_size report, and their hostile cases.
fn grant_table_frames(c: &mut Checks, peer: u16) {
    let (r, st, nr, max) = query_size(DOMID_SELF, 1);
    c.check(
        "gnttab query_size: one frame of 32 at first",
        r == 0 && st == 0 && nr == 1 && max == MAX_GRANT_FRAMES,
        (nr as i64) << 32 | max as i64,
    );
    let mut list = [0u64; 4];
    let (r, st) = setup_table(DOMID_SELF, 2, list.as_mut_ptr() as u64, 1);
    c.check(
        "gnttab setup_table(2): frame 0's GFN, frame 1 not mapped (INVALID_M2P_ENTRY)",
        r == 0 && st == 0 && list[0] == GRANT_TABLE_GPA >> 12 && list[1] == !0 && list[2] == 0,
        list[1] as i64,
    );
    let (_, _, nr, _) = query_size(DOMID_SELF, 1);
    c.check(
        "query_size after setup_table(2): 2 frames",
        nr == 2,
        nr as i64,
    );
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 1,
        idx: 1,
        gpfn: (GRANT_TABLE_GPA >> 12) + 1,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("add_to_physmap(grant table frame 1)", r == 0, r);
    let (r, st) = setup_table(DOMID_SELF, 2, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table(2) again: both frames' GFNs, no growth",
        r == 0
            && st == 0
            && list[1] == (GRANT_TABLE_GPA >> 12) + 1
            && query_size(DOMID_SELF, 1).2 == 2,
        list[1] as i64,
    );
    a.idx = MAX_GRANT_FRAMES as u64;
    a.gpfn = (GRANT_TABLE_GPA >> 12) + 2;
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check(
        "add_to_physmap(grant frame 32, the maximum) -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
    let (r, st) = setup_table(
        DOMID_SELF,
        MAX_GRANT_FRAMES + 1,
        list.as_mut_ptr() as u64,
        1,
    );
    c.check(
        "setup_table(33 frames) -> GNTST_general_error",
        r == 0 && st == -1,
        st as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, u32::MAX, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table(0xffffffff frames) -> GNTST_general_error",
        r == 0 && st == -1,
        st as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, 1, 0xdead_0000_0000, 1);
    c.check(
        "setup_table, unmapped frame_list -> GNTST_bad_virt_addr",
        r == 0 && st == -5,
        st as i64,
    );
    let (r, st) = setup_table(peer, 1, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table for the peer -> GNTST_permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let (r, st) = setup_table(99, 1, list.as_mut_ptr() as u64, 1);
    c.check(
        "setup_table for domain 99 -> GNTST_bad_domain",
        r == 0 && st == -2,
        st as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, 1, list.as_mut_ptr() as u64, 2);
    c.check(
        "setup_table with count 2 -> EINVAL (untouched)",
        r == err(XenErrno::Einval) && st == 99,
        r,
    );
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [2, 0xdead_0000_0000, 1, 0, 0],
    );
    c.check(
        "setup_table, unmapped op -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    let (_, _, nr, max) = query_size(DOMID_SELF, 1);
    c.check(
        "hostile setup_tables left the table at 2 frames of 32",
        nr == 2 && max == MAX_GRANT_FRAMES,
        nr as i64,
    );
    // add_to_physmap of frame 3 grows the table to 4 frames (frame 2 allocated but
    // not mapped).
    a.idx = 3;
    a.gpfn = (GRANT_TABLE_GPA >> 12) + 3;
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    let (_, _, nr, _) = query_size(DOMID_SELF, 1);
    c.check(
        "add_to_physmap(grant table frame 3) grows the table to 4 frames",
        r == 0 && nr == 4,
        (r << 8) | nr as i64,
    );
    let (r, st) = setup_table(DOMID_SELF, 4, list.as_mut_ptr() as u64, 1);
    let base = GRANT_TABLE_GPA >> 12;
    c.check(
        "setup_table(4): frames 0, 1, 3 at their GFNs, frame 2 INVALID_M2P_ENTRY",
        r == 0 && st == 0 && list == [base, base + 1, !0, base + 3],
        list[2] as i64,
    );
    let (r, st, _, _) = query_size(peer, 1);
    c.check(
        "query_size of the peer -> GNTST_permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let (r, st, _, _) = query_size(99, 1);
    c.check(
        "query_size of domain 99 -> GNTST_bad_domain",
        r == 0 && st == -2,
        st as i64,
    );
    let (r, _, _, _) = query_size(DOMID_SELF, 3);
    c.check(
        "query_size with count 3 -> EINVAL",
        r == err(XenErrno::Einval),
        r,
    );
}

/// Maps the grant table and grants `peer` page 0 read-write and page 1 read-only, and
/// page 2 to a domain that is not `peer`.
pub(super) fn grant_pages_to(c: &mut Checks, peer: u16) {
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 1,
        idx: 0,
        gpfn: GRANT_TABLE_GPA >> 12,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("memory_op add_to_physmap(grant table frame 0)", r == 0, r);
    grant_table_frames(c, peer);
    xen::page_mut(0)[..15].copy_from_slice(b"hello from ping");
    xen::page_mut(1)[..9].copy_from_slice(b"read-only");
    let entries = [
        (
            REF_RW,
            GrantEntryV1::permit_access(peer, (xen::page_addr(0) >> 12) as u32, false),
        ),
        (
            REF_RO,
            GrantEntryV1::permit_access(peer, (xen::page_addr(1) >> 12) as u32, true),
        ),
        (
            REF_OTHER,
            GrantEntryV1::permit_access(peer + 40, (xen::page_addr(2) >> 12) as u32, false),
        ),
        (
            REF2_RO,
            GrantEntryV1::permit_access(peer, (xen::page_addr(1) >> 12) as u32, true),
        ),
        (
            REF2_RW,
            GrantEntryV1::permit_access(peer, (xen::page_addr(0) >> 12) as u32, false),
        ),
    ];
    for (r, e) in entries {
        let raw = u64::from_le_bytes(e.as_bytes().try_into().unwrap());
        xen::write64(GRANT_TABLE_GPA + r as u64 * 8, raw);
    }
}
