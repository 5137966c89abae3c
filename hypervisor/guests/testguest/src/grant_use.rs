//! Using a peer's grants: GNTTABOP_copy and map/unmap_grant_ref (refusals included),
//! and the `lender` and `rogue-mapper` roles.

use super::grant_table::{
    grant_pages_to, query_size, GRANT_TABLE_GPA, MAX_GRANT_FRAMES, REF2_RO, REF2_RW, REF_OTHER,
    REF_RO, REF_RW,
};
use super::smp::wait_until;
use super::xen::{self, hypercall, Console};
use super::{err, Checks};
use core::fmt::Write;
use sluice_abi::grant_table::{GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabUnmapGrantRef};
use sluice_abi::hypercall::{Hypercall, XenErrno};
use sluice_abi::types::DOMID_SELF;

pub(super) fn gnttab_copy(op: &mut GnttabCopy) -> (i64, i16) {
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [5, op as *mut _ as u64, 1, 0, 0],
    );
    (r, op.status)
}

/// Reads and writes the peer's granted pages with GNTTABOP_copy; is refused the rest.
pub(super) fn use_grants_from(c: &mut Checks, peer: u16) {
    let (r, st, nr, max) = query_size(DOMID_SELF, 1);
    c.check(
        "gnttab query_size",
        r == 0 && st == 0 && nr == 1 && max == MAX_GRANT_FRAMES,
        r,
    );
    let mine = xen::page_addr(0) >> 12;
    let copy = |src: GnttabCopyPtr, dst: GnttabCopyPtr, len: u16, flags: u16| GnttabCopy {
        source: src,
        dest: dst,
        len,
        flags,
        status: 99,
        _pad0: 0,
    };
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, peer, 0),
        GnttabCopyPtr::with_gmfn(mine, DOMID_SELF, 0),
        15,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy from a granted page",
        r == 0 && st == 0 && xen::page(0)[..15] == *b"hello from ping",
        st as i64,
    );
    xen::page_mut(1)[..15].copy_from_slice(b"reply from pong");
    let mut op = copy(
        GnttabCopyPtr::with_gmfn(mine + 1, DOMID_SELF, 0),
        GnttabCopyPtr::with_gref(REF_RW, peer, 0),
        15,
        2,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy into a page granted read-write",
        r == 0 && st == 0,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gmfn(mine + 1, DOMID_SELF, 0),
        GnttabCopyPtr::with_gref(REF_RO, peer, 0),
        15,
        2,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy into a read-only grant -> GNTST_permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_OTHER, peer, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from a page granted to another domain -> permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gmfn(mine, peer, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        0,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from the peer's frame by number -> permission_denied",
        r == 0 && st == -8,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(2048, peer, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from grant ref 2048 (past the peer's 4 frames) -> GNTST_bad_gntref",
        r == 0 && st == -3,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, peer, 0),
        GnttabCopyPtr::with_gref(u32::MAX, DOMID_SELF, 0),
        16,
        3,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy into our own grant ref 0xffffffff -> GNTST_bad_gntref",
        r == 0 && st == -3,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, peer, 4000),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        200,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy crossing the page end -> GNTST_bad_copy_arg",
        r == 0 && st == -10,
        st as i64,
    );
    let mut op = copy(
        GnttabCopyPtr::with_gref(REF_RW, 99, 0),
        GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 0),
        16,
        1,
    );
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "copy from domain 99 -> GNTST_bad_domain",
        r == 0 && st == -2,
        st as i64,
    );
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [5, 0xdead_0000_0000, 1, 0, 0],
    );
    c.check(
        "gnttab copy, unmapped op array -> EFAULT",
        r == err(XenErrno::Efault),
        r,
    );
    grant_map_checks(c, peer);
    second_frame_checks(c, peer);
    let r = hypercall(Hypercall::GrantTableOp as u64, [99, 0, 0, 0, 0]);
    c.check(
        "gnttab unknown command -> ENOSYS",
        r == err(XenErrno::Enosys),
        r,
    );
}

/// Copies from and into the peer's grants in its table's second frame, and maps one.
fn second_frame_checks(c: &mut Checks, peer: u16) {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    let mine = xen::page_addr(0) >> 12;
    xen::page_mut(2)[300..309].fill(0);
    let mut op = GnttabCopy {
        source: GnttabCopyPtr::with_gref(REF2_RO, peer, 0),
        dest: GnttabCopyPtr::with_gmfn(mine + 2, DOMID_SELF, 300),
        len: 9,
        flags: 1,
        status: 99,
        _pad0: 0,
    };
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy from grant 515 (the peer's second table frame)",
        r == 0 && st == 0 && xen::page(2)[300..309] == *b"read-only",
        st as i64,
    );
    xen::page_mut(1)[500..512].copy_from_slice(b"second frame");
    let mut op = GnttabCopy {
        source: GnttabCopyPtr::with_gmfn(mine + 1, DOMID_SELF, 500),
        dest: GnttabCopyPtr::with_gref(REF2_RW, peer, 200),
        len: 12,
        flags: 2,
        status: 99,
        _pad0: 0,
    };
    let (r, st) = gnttab_copy(&mut op);
    c.check(
        "gnttab copy into grant 1000 (second frame, read-write)",
        r == 0 && st == 0,
        st as i64,
    );
    let at = xen::page_addr(2);
    let (st, h) = gnttab_map(REF2_RO, peer, at, HOST_MAP | READONLY);
    c.check(
        "map_grant_ref of grant 515: the peer's read-only page appears",
        st == 0 && xen::page(2)[..9] == *b"read-only",
        st as i64,
    );
    let (st2, _) = gnttab_map(REF2_RO, peer, xen::page_addr(0), HOST_MAP);
    c.check(
        "map grant 515 (read-only) writable -> permission_denied",
        st2 == -8,
        st2 as i64,
    );
    let st = if st == 0 { gnttab_unmap(at, h) } else { st };
    c.check(
        "unmap grant 515: our own page is back",
        st == 0 && xen::page(2)[300..309] == *b"read-only",
        st as i64,
    );
}

pub(super) fn gnttab_map(gref: u32, dom: u16, host_addr: u64, flags: u32) -> (i16, u32) {
    let mut op = GnttabMapGrantRef {
        host_addr,
        flags,
        gref,
        dom,
        status: 99,
        handle: 0,
        dev_bus_addr: 0,
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [0, &mut op as *mut _ as u64, 1, 0, 0],
    );
    if r != 0 {
        return (r as i16, 0);
    }
    (op.status, op.handle)
}

pub(super) fn gnttab_unmap(host_addr: u64, handle: u32) -> i16 {
    let mut op = GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 99,
        _pad0: 0,
    };
    let r = hypercall(
        Hypercall::GrantTableOp as u64,
        [1, &mut op as *mut _ as u64, 1, 0, 0],
    );
    if r != 0 {
        return r as i16;
    }
    op.status
}

/// Maps the peer's granted pages into our physmap, writes through the read-write one.
fn grant_map_checks(c: &mut Checks, peer: u16) {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    let (rw_at, ro_at) = (xen::page_addr(2), xen::page_addr(1));
    let (st, h_rw) = gnttab_map(REF_RW, peer, rw_at, HOST_MAP);
    c.check(
        "gnttab map_grant_ref read-write: the peer's page appears",
        st == 0 && xen::page(2)[..15] == *b"reply from pong",
        st as i64,
    );
    xen::page_mut(2)[100..112].copy_from_slice(b"mapped write");
    let (st, h_ro) = gnttab_map(REF_RO, peer, ro_at, HOST_MAP | READONLY);
    c.check(
        "gnttab map_grant_ref read-only",
        st == 0 && xen::page(1)[..9] == *b"read-only",
        st as i64,
    );
    let spare = xen::page_addr(0);
    let (st, _) = gnttab_map(REF_RO, peer, spare, HOST_MAP);
    c.check(
        "map a read-only grant writable -> permission_denied",
        st == -8,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_OTHER, peer, spare, HOST_MAP);
    c.check(
        "map a page granted to another domain -> permission_denied",
        st == -8,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, peer, spare, 0);
    c.check(
        "map without GNTMAP_host_map -> general_error",
        st == -1,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, peer, spare + 8, HOST_MAP);
    c.check(
        "map at a misaligned address -> bad_virt_addr",
        st == -5,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, peer, 0x3000_0000, HOST_MAP);
    c.check(
        "map outside our memory -> bad_virt_addr",
        st == -5,
        st as i64,
    );
    let (st, _) = gnttab_map(REF_RW, 99, spare, HOST_MAP);
    c.check("map from domain 99 -> bad_domain", st == -2, st as i64);
    let st = gnttab_unmap(spare, h_rw);
    c.check(
        "unmap with the wrong address -> bad_handle",
        st == -4,
        st as i64,
    );
    let st = gnttab_unmap(rw_at, 77);
    c.check("unmap handle 77 -> bad_handle", st == -4, st as i64);
    let st = gnttab_unmap(rw_at, h_rw);
    c.check(
        "gnttab unmap_grant_ref: our own page is back",
        st == 0 && xen::page(2)[100..112] != *b"mapped write",
        st as i64,
    );
    let st = gnttab_unmap(ro_at, h_ro);
    c.check(
        "unmap the read-only mapping",
        st == 0 && xen::page(1)[..15] == *b"reply from pong",
        st as i64,
    );
}

/// Grants `peer` page 0 read-write and page 1 read-only, lets it run (it maps both and
/// is killed for writing to the read-only one), then checks its write arrived.
pub(super) fn lender(c: &mut Checks, peer: u16) {
    grant_pages_to(c, peer);
    // The mapper may run on another CPU, before or after us: wait (yielding) for its
    // write through the read-write mapping, then for that grant to be released (its
    // GTF_reading cleared), which happens only when the mapper is killed.
    let arrived = wait_until(|| xen::page(0)[..12] == *b"mapper wrote");
    c.check(
        "the mapper's write through its read-write mapping arrived",
        arrived,
        0,
    );
    let rw_flags = || xen::read64(GRANT_TABLE_GPA + REF_RW as u64 * 8) & 0xFFFF;
    const GTF_READING: u64 = 1 << 3;
    let released = wait_until(|| rw_flags() & GTF_READING == 0);
    c.check(
        "the mapper's mappings were released (it was killed)",
        arrived && released,
        rw_flags() as i64,
    );
    c.check(
        "the read-only page survived the mapper's write attempt",
        xen::page(1)[..9] == *b"read-only",
        0,
    );
}

pub(super) fn rogue_mapper(c: &mut Checks, peer: u16) {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    // The lender may not have written its grant entries yet: retry after yielding.
    // (Bounded by time, not by yields: the lender may run on another CPU, or late.)
    let st = core::cell::Cell::new(-1);
    wait_until(|| {
        st.set(gnttab_map(REF_RW, peer, xen::page_addr(2), HOST_MAP).0);
        st.get() == 0
    });
    let st = st.get();
    c.check("map the lender's read-write grant", st == 0, st as i64);
    xen::page_mut(2)[..12].copy_from_slice(b"mapper wrote");
    let (st, _) = gnttab_map(REF_RO, peer, xen::page_addr(1), HOST_MAP | READONLY);
    c.check(
        "map the lender's read-only grant",
        st == 0 && xen::page(1)[..9] == *b"read-only",
        st as i64,
    );
    let _ = writeln!(Console, "rogue-mapper: writing to the read-only mapping");
    xen::page_mut(1)[0] = b'X';
    c.check("a write to a read-only grant mapping was stopped", false, 0);
}
