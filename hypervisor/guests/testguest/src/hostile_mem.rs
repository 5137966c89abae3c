//! Hostile grant and memory roles (issue 11, items 1-3), three domains that know each
//! other from `c=`, `a=`, `b=` on their command lines:
//! - `hm-granter` (C) grants pages to A and checks its entries' GTF_reading/GTF_writing
//!   follow A's pins (mapped twice and unmapped once: still in use; a failed map and a
//!   copy leave nothing set), then dies while A still maps one of its pages;
//! - `hm-mapper` (A) maps C's grants, asks the hypervisor to write into C's read-only
//!   grant by every path (each refused, the page unchanged), grants C's frames, its own
//!   grant table frame and a read-only mapping on to B (each refused to B), sees its
//!   mapping revoked when C dies, and last makes the hypervisor write its hypercall page
//!   into B's read-only grant (#GP: with no IDT it triple-faults and is killed);
//! - `hm-regrant` (B) tries to map and copy what A re-granted (refused), and checks its
//!   read-only page survived A's hypercall-page write and its flags cleared when A died.

use super::{gnttab_copy, gnttab_map, gnttab_unmap, hypercall, wait_until, xen, Checks};
use core::fmt::Write;
use sluice_abi::grant_table::{GnttabCopy, GnttabCopyPtr, GrantEntryV1};
use sluice_abi::hypercall::{Hypercall, XenAddToPhysmap, XenErrno};
use sluice_abi::types::DOMID_SELF;
use xen::Console;
use zerocopy::IntoBytes;

#[repr(C, align(4096))]
struct Pg([u8; 4096]);

static mut PAGES: [Pg; 8] = [const { Pg([0; 4096]) }; 8];

/// Where these roles map their grant table frame 0.
const TABLE_GPA: u64 = 0x70_1000;
const HOST_MAP: u32 = 1 << 1;
const READONLY: u32 = 1 << 2;
pub(crate) const GTF_READING: u64 = 1 << 3;
const GTF_WRITING: u64 = 1 << 4;
const GNTST_BAD_VIRT_ADDR: i16 = -5;
const GNTST_PERMISSION_DENIED: i16 = -8;
const GNTST_BAD_PAGE: i16 = -9;
const GNTST_BAD_HANDLE: i16 = -4;

fn addr(i: usize) -> u64 {
    (core::ptr::addr_of!(PAGES) as u64) + i as u64 * 4096
}

/// Byte `off` of page `i`, read afresh (the hypervisor or a peer may change it).
fn byte(i: usize, off: usize) -> u8 {
    // SAFETY: inside our static pages; a volatile read of a byte.
    unsafe { core::ptr::read_volatile((addr(i) + off as u64) as *const u8) }
}

fn has(i: usize, off: usize, s: &[u8]) -> bool {
    s.iter().enumerate().all(|(k, &b)| byte(i, off + k) == b)
}

fn put(i: usize, off: usize, s: &[u8]) {
    for (k, &b) in s.iter().enumerate() {
        // SAFETY: inside our static pages (a read-only mapping is never written here).
        unsafe { core::ptr::write_volatile((addr(i) + (off + k) as u64) as *mut u8, b) }
    }
}

pub(crate) fn arg(cmdline: &str, key: &str) -> u16 {
    cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn map_table(c: &mut Checks) {
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 1,
        idx: 0,
        gpfn: TABLE_GPA >> 12,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("hm: add_to_physmap(grant table frame 0)", r == 0, r);
}

pub(crate) fn grant(gref: u32, to: u16, gpa: u64, readonly: bool) {
    let e = GrantEntryV1::permit_access(to, (gpa >> 12) as u32, readonly);
    let raw = u64::from_le_bytes(e.as_bytes().try_into().unwrap());
    xen::write64(TABLE_GPA + gref as u64 * 8, raw);
}

pub(crate) fn flags(gref: u32) -> u64 {
    xen::read64(TABLE_GPA + gref as u64 * 8) & 0xFFFF
}

fn copy(src: GnttabCopyPtr, dst: GnttabCopyPtr, flags: u16) -> i16 {
    let mut op = GnttabCopy {
        source: src,
        dest: dst,
        len: 16,
        flags,
        status: 99,
        _pad0: 0,
    };
    let (r, st) = gnttab_copy(&mut op);
    if r != 0 {
        return r as i16;
    }
    st
}

const SRC_GREF: u16 = 1;
const DEST_GREF: u16 = 2;

pub(crate) fn by_gref(dom: u16, gref: u32) -> GnttabCopyPtr {
    let mut p = GnttabCopyPtr {
        domid: dom,
        offset: 0,
        ..Default::default()
    };
    p.u = gref as u64;
    p
}

fn by_gfn(gpa: u64) -> GnttabCopyPtr {
    let mut p = GnttabCopyPtr {
        domid: DOMID_SELF,
        offset: 0,
        ..Default::default()
    };
    p.u = gpa >> 12;
    p
}

/// C: the original granter.
pub fn granter(c: &mut Checks, cmdline: &str) {
    let a = arg(cmdline, "a");
    map_table(c);
    put(0, 0, b"C signal page");
    // Page 1, granted read-only: a hostile hypercall argument (DOMID_SELF first, so
    // query_size and alloc_unbound accept it and then write their answer) and data.
    put(1, 0, &DOMID_SELF.to_le_bytes());
    put(1, 2, &DOMID_SELF.to_le_bytes());
    put(1, 64, b"C read-only data");
    grant(8, a, addr(0), false);
    grant(9, a, addr(1), true);
    grant(10, a, addr(2), false);
    grant(11, a, addr(3), false);
    grant(12, a, addr(4), false);
    let staged = wait_until(|| has(0, 0, b"STAGE1"));
    c.check("hm-granter: A mapped grant 10 twice", staged, 0);
    c.check(
        "hm-granter: mapped twice, unmapped once: still reading and writing",
        flags(10) & (GTF_READING | GTF_WRITING) == GTF_READING | GTF_WRITING,
        flags(10) as i64,
    );
    put(0, 16, b"ACK1");
    let staged = wait_until(|| has(0, 0, b"STAGE2"));
    c.check("hm-granter: A reached stage 2", staged, 0);
    c.check(
        "hm-granter: last unmap clears GTF_reading/GTF_writing",
        flags(10) & (GTF_READING | GTF_WRITING) == 0,
        flags(10) as i64,
    );
    c.check(
        "hm-granter: a failed map (bad host address) leaves no flag set",
        flags(11) & (GTF_READING | GTF_WRITING) == 0,
        flags(11) as i64,
    );
    c.check(
        "hm-granter: a grant copy unpins (no flag left)",
        flags(12) & (GTF_READING | GTF_WRITING) == 0 && has(4, 0, b"copied by A"),
        flags(12) as i64,
    );
    put(0, 16, b"ACK2");
    let staged = wait_until(|| has(0, 0, b"STAGE3"));
    c.check("hm-granter: A reached stage 3", staged, 0);
    c.check(
        "hm-granter: grant 8 still mapped by A (reading and writing) as C dies",
        flags(8) & (GTF_READING | GTF_WRITING) == GTF_READING | GTF_WRITING,
        flags(8) as i64,
    );
    c.check(
        "hm-granter: the read-only page survived every hypervisor write path",
        has(1, 64, b"C read-only data")
            && has(1, 0, &DOMID_SELF.to_le_bytes())
            && (16..64).chain(80..4096).all(|o| byte(1, o) == 0),
        0,
    );
    let _ = writeln!(Console, "hm-granter: dying while A maps grant 8");
}

/// A: maps C's grants, then re-grants to B.
pub fn mapper(c: &mut Checks, cmdline: &str) {
    let (cd, bd) = (arg(cmdline, "c"), arg(cmdline, "b"));
    let me = arg(cmdline, "a");
    map_table(c);
    put(0, 0, b"A's own RAM");
    let st = core::cell::Cell::new((-1, 0));
    wait_until(|| {
        st.set(gnttab_map(8, cd, addr(0), HOST_MAP));
        st.get().0 == 0
    });
    let (s, h8) = st.get();
    c.check("hm-mapper: map C's grant 8", s == 0, s as i64);
    c.check(
        "hm-mapper: C's page appears",
        has(0, 0, b"C signal page"),
        0,
    );
    // Item 3: the same grant mapped twice, unmapped once.
    let (s1, h1) = gnttab_map(10, cd, addr(1), HOST_MAP);
    let (s2, h2) = gnttab_map(10, cd, addr(2), HOST_MAP);
    c.check(
        "hm-mapper: grant 10 mapped twice",
        s1 == 0 && s2 == 0,
        (s1 as i64) << 16 | s2 as i64,
    );
    let s = gnttab_unmap(addr(2), h2);
    c.check("hm-mapper: one of them unmapped", s == 0, s as i64);
    put(0, 0, b"STAGE1");
    c.check(
        "hm-mapper: C saw stage 1",
        wait_until(|| has(0, 16, b"ACK1")),
        0,
    );
    let s = gnttab_unmap(addr(1), h1);
    c.check("hm-mapper: the other unmapped", s == 0, s as i64);
    let (s, _) = gnttab_map(11, cd, addr(3) + 8, HOST_MAP);
    c.check(
        "hm-mapper: map at a misaligned address -> bad_virt_addr",
        s == GNTST_BAD_VIRT_ADDR,
        s as i64,
    );
    let (s, _) = gnttab_map(11, cd, TABLE_GPA, HOST_MAP);
    c.check(
        "hm-mapper: map over our grant table frame -> bad_virt_addr",
        s == GNTST_BAD_VIRT_ADDR,
        s as i64,
    );
    put(5, 0, b"copied by A");
    let s = copy(by_gfn(addr(5)), by_gref(cd, 12), DEST_GREF);
    c.check("hm-mapper: grant copy into C's grant 12", s == 0, s as i64);
    put(0, 0, b"STAGE2");
    c.check(
        "hm-mapper: C saw stage 2",
        wait_until(|| has(0, 16, b"ACK2")),
        0,
    );
    read_only_writes(c, cd, me);
    regrant(c, bd);
    put(0, 0, b"STAGE3");
    let revoked = wait_until(|| has(0, 0, b"A's own RAM"));
    c.check(
        "hm-mapper: C died: its page is gone, our own RAM is back",
        revoked,
        byte(0, 0) as i64,
    );
    let s = gnttab_unmap(addr(0), h8);
    c.check(
        "hm-mapper: unmap of the revoked mapping -> bad_handle",
        s == GNTST_BAD_HANDLE,
        s as i64,
    );
    // Last: the hypercall page into B's read-only grant. Refused with #GP, which with no
    // IDT is a triple fault: the domain is killed (the suite checks it).
    let st = core::cell::Cell::new(-1);
    wait_until(|| {
        st.set(gnttab_map(9, bd, addr(7), HOST_MAP | READONLY).0);
        st.get() == 0
    });
    c.check(
        "hm-mapper: map B's read-only grant 9",
        st.get() == 0 && has(7, 0, b"B read-only"),
        st.get() as i64,
    );
    if c.failed == 0 {
        let _ = writeln!(
            Console,
            "hm-mapper: all checks passed; hypercall page into a read-only grant next"
        );
    }
    xen::wrmsr(xen::cpuid(0x4000_0002)[1], addr(7));
    c.check(
        "hm-mapper: hypercall page into a read-only grant -> #GP",
        false,
        0,
    );
}

/// A asks the hypervisor to write into C's read-only grant (mapped at page 6) by each
/// path: every one refused, the page unchanged.
fn read_only_writes(c: &mut Checks, cd: u16, me: u16) {
    let y = addr(6);
    let (s, _) = gnttab_map(9, cd, y, HOST_MAP | READONLY);
    c.check(
        "hm-mapper: map C's read-only grant 9",
        s == 0 && has(6, 64, b"C read-only data"),
        s as i64,
    );
    let efault = XenErrno::Efault.to_ret();
    // xen_version(XENVER_extraversion) writes 16 bytes.
    let r = hypercall(Hypercall::XenVersion as u64, [1, y, 0, 0, 0]);
    c.check(
        "hm-mapper: xen_version output into it -> EFAULT",
        r == efault,
        r,
    );
    // memory_op(XENMEM_memory_map): the entries into it.
    let mut m = [0u64; 2];
    m[0] = 2; // nr_entries
    m[1] = y; // buffer
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [9, m.as_mut_ptr() as u64, 0, 0, 0],
    );
    c.check(
        "hm-mapper: memory_map buffer in it -> EFAULT",
        r == efault,
        r,
    );
    // GNTTABOP_query_size / EVTCHNOP_alloc_unbound with their argument in it (read
    // fine, the answer refused).
    let r = hypercall(Hypercall::GrantTableOp as u64, [6, y, 1, 0, 0]);
    c.check(
        "hm-mapper: query_size argument in it -> EFAULT",
        r == efault,
        r,
    );
    let r = hypercall(Hypercall::EventChannelOp as u64, [6, y, 0, 0, 0]);
    c.check(
        "hm-mapper: alloc_unbound argument in it -> EFAULT",
        r == efault,
        r,
    );
    // GNTTABOP_setup_table's frame list into it.
    let (r, st) = super::setup_table(DOMID_SELF, 1, y, 1);
    c.check(
        "hm-mapper: setup_table frame_list in it -> GNTST_bad_virt_addr",
        r == 0 && st == GNTST_BAD_VIRT_ADDR,
        (r << 16) | st as i64,
    );
    // GNTTABOP_copy into it by GFN, and by a grant of our own naming it.
    put(5, 0, b"hostile copy....");
    let s = copy(by_gfn(addr(5)), by_gfn(y), 0);
    c.check(
        "hm-mapper: grant copy into it by GFN -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    grant(20, me, y, false);
    let s = copy(by_gfn(addr(5)), by_gref(DOMID_SELF, 20), DEST_GREF);
    c.check(
        "hm-mapper: grant copy into it through our own grant -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    let s = copy(by_gfn(y), by_gfn(addr(5)), 0);
    c.check(
        "hm-mapper: grant copy from it by GFN (not our frame) -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    c.check(
        "hm-mapper: C's read-only page unchanged",
        has(6, 64, b"C read-only data") && (80..4096).all(|o| byte(6, o) == 0),
        0,
    );
}

/// A grants on to B what is not its own RAM: C's frame it maps (read-write and
/// read-only), its grant table frame. Then a page of its own, which B maps.
fn regrant(c: &mut Checks, bd: u16) {
    grant(8, bd, addr(0), false);
    grant(9, bd, addr(6), true);
    grant(10, bd, TABLE_GPA, false);
    put(4, 0, b"A legit page");
    grant(12, bd, addr(4), false);
    let done = wait_until(|| has(4, 16, b"B done"));
    c.check("hm-mapper: B tried the re-grants", done, 0);
}

/// B: tries what A re-granted; offers A a read-only page for the hypercall-page write.
pub fn regrant_target(c: &mut Checks, cmdline: &str) {
    let ad = arg(cmdline, "a");
    map_table(c);
    put(1, 0, b"B read-only");
    grant(9, ad, addr(1), true);
    put(0, 0, b"B's own RAM");
    let st = core::cell::Cell::new(-1);
    wait_until(|| {
        st.set(gnttab_map(12, ad, addr(0), HOST_MAP).0);
        st.get() == 0
    });
    c.check(
        "hm-regrant: map A's own page (grant 12)",
        st.get() == 0 && has(0, 0, b"A legit page"),
        st.get() as i64,
    );
    let (s, _) = gnttab_map(8, ad, addr(2), HOST_MAP);
    c.check(
        "hm-regrant: map C's frame re-granted by A -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    let (s, _) = gnttab_map(9, ad, addr(2), HOST_MAP | READONLY);
    c.check(
        "hm-regrant: map C's read-only frame re-granted by A -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    let (s, _) = gnttab_map(10, ad, addr(2), HOST_MAP);
    c.check(
        "hm-regrant: map A's grant table frame (a hypervisor frame) -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    let s = copy(by_gref(ad, 8), by_gfn(addr(3)), SRC_GREF);
    c.check(
        "hm-regrant: copy from C's frame re-granted by A -> bad_page",
        s == GNTST_BAD_PAGE,
        s as i64,
    );
    let (s, _) = gnttab_map(11, ad, addr(2), HOST_MAP);
    c.check(
        "hm-regrant: map an entry A never wrote -> permission_denied",
        s == GNTST_PERMISSION_DENIED,
        s as i64,
    );
    c.check(
        "hm-regrant: our page 2 is still our own",
        (0..4096).all(|o| byte(2, o) == 0) && (0..4096).all(|o| byte(3, o) == 0),
        0,
    );
    put(0, 16, b"B done");
    // A is killed by its hypercall-page write: its mapping of our page is released
    // (GTF_reading clears), ours of its page revoked, and our page is unchanged.
    let released = wait_until(|| flags(9) & GTF_READING == 0 && has(0, 0, b"B's own RAM"));
    c.check(
        "hm-regrant: A died: its pin on our grant 9 released, its page revoked from us",
        released,
        flags(9) as i64,
    );
    c.check(
        "hm-regrant: the hypercall page was not written into our read-only grant",
        has(1, 0, b"B read-only") && (11..4096).all(|o| byte(1, o) == 0),
        byte(1, 100) as i64,
    );
}
