//! Hostile roles for stale TLBs after a grant unmap (SECURITY.md, class 1):
//! - `tlb-granter` (G, `m=` the reader's id) grants a page holding its secret to M, and
//!   dies once M has unmapped it.
//! - `tlb-reader` (M, `vcpus=2`, `g=` the granter's id) maps G's page; its vCPU 1 reads
//!   it in a tight loop (no exits) while vCPU 0 unmaps it on the other CPU and then sets
//!   a flag. A read that vCPU 1 makes after seeing the flag must see M's own RAM: the
//!   unmap returns only once vCPU 1's CPU has left its guest (and it flushes before it
//!   enters again), as Xen flushes before an unmap completes. vCPU 1 keeps reading
//!   while G dies and its frame goes back to the allocator.

use super::hostile_cpu::{start_vcpu1, AP_ROLE};
use super::hostile_mem::{arg, by_gref, flags, grant, map_table, GTF_READING};
use super::{gnttab_copy, gnttab_map, gnttab_unmap, hypercall, wait_until, Checks};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sluice_abi::grant_table::{GnttabCopy, GnttabCopyPtr};
use sluice_abi::hypercall::Hypercall;
use sluice_abi::types::DOMID_SELF;
use xen::Console;

use super::xen;

#[repr(C, align(4096))]
struct Pg([u8; 4096]);
static mut PAGES: [Pg; 2] = [const { Pg([0; 4096]) }; 2];

const G_SECRET: u64 = u64::from_le_bytes(*b"G-SECRET");
const M_OWN: u64 = u64::from_le_bytes(*b"M-OWNRAM");
const HOST_MAP: u32 = 1 << 1;
const GNTST_BAD_DOMAIN: i16 = -2;

fn addr(i: usize) -> u64 {
    (core::ptr::addr_of!(PAGES) as u64) + i as u64 * 4096
}

fn word(i: usize) -> u64 {
    // SAFETY: inside our static pages; a volatile read (the page may be remapped).
    unsafe { core::ptr::read_volatile(addr(i) as *const u64) }
}

fn set_word(i: usize, v: u64) {
    // SAFETY: inside our static pages.
    unsafe { core::ptr::write_volatile(addr(i) as *mut u64, v) }
}

/// Waits for `done`, yielding, up to ~20 s.
fn wait_long(done: impl Fn() -> bool) -> bool {
    (0..10).any(|_| wait_until(&done))
}

/// G: grants its secret page (gref 8) and a life probe (gref 9) to M; dies once M has
/// mapped and unmapped the secret.
pub fn granter(c: &mut Checks, cmdline: &str) {
    let m = arg(cmdline, "m");
    map_table(c);
    set_word(0, G_SECRET);
    set_word(1, G_SECRET);
    grant(8, m, addr(0), false);
    grant(9, m, addr(1), true);
    let mapped = wait_long(|| flags(8) & GTF_READING != 0);
    c.check("tlb-granter: M mapped grant 8", mapped, 0);
    let unmapped = wait_long(|| flags(8) & GTF_READING == 0);
    c.check("tlb-granter: M unmapped grant 8", unmapped, 0);
    let _ = writeln!(Console, "tlb-granter: dying; M's vCPU 1 reads on");
}

/// vCPU 1 of M: reads the page; after the flag, G's secret there is a stale TLB.
static AFTER_UNMAP: AtomicU32 = AtomicU32::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
static SEEN_G: AtomicU64 = AtomicU64::new(0);
static OWN_AFTER: AtomicU64 = AtomicU64::new(0);
static STALE: AtomicU64 = AtomicU64::new(0);

pub fn reader_ap() -> ! {
    loop {
        // The flag first: x86 keeps loads in order, so a read after the flag was seen
        // happens after vCPU 0's unmap returned.
        let after = AFTER_UNMAP.load(Ordering::SeqCst) != 0;
        let v = word(0);
        match (after, v) {
            (false, G_SECRET) => SEEN_G.fetch_add(1, Ordering::SeqCst),
            (true, G_SECRET) => STALE.fetch_add(1, Ordering::SeqCst),
            (true, M_OWN) => OWN_AFTER.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        READS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Whether G still exists: a grant copy from its life-probe grant works, else
/// GNTST_bad_domain.
fn granter_alive(g: u16) -> Option<bool> {
    let mut op = GnttabCopy {
        source: by_gref(g, 9),
        dest: GnttabCopyPtr {
            domid: DOMID_SELF,
            offset: 0,
            u: addr(1) >> 12,
            ..Default::default()
        },
        len: 8,
        flags: 1, // GNTCOPY_source_gref
        status: 99,
        _pad0: 0,
    };
    match gnttab_copy(&mut op) {
        (0, 0) => Some(true),
        (0, GNTST_BAD_DOMAIN) => Some(false),
        _ => None,
    }
}

/// M: maps G's page, lets vCPU 1 read it, unmaps it while vCPU 1 runs beside.
pub fn reader(c: &mut Checks, cmdline: &str) {
    let g = arg(cmdline, "g");
    set_word(0, M_OWN);
    let handle = core::cell::Cell::new(0);
    let mapped = wait_long(|| {
        let (s, h) = gnttab_map(8, g, addr(0), HOST_MAP);
        handle.set(h);
        s == 0
    });
    c.check("tlb-reader: map G's grant 8", mapped, 0);
    c.check("tlb-reader: G's secret appears", word(0) == G_SECRET, 0);
    AP_ROLE.store(3, Ordering::SeqCst);
    start_vcpu1(c);
    let reading = wait_long(|| SEEN_G.load(Ordering::SeqCst) > 1000);
    c.check("tlb-reader: vCPU 1 reads G's page", reading, 0);
    // Unmap while vCPU 1 is on the other CPU now: its count moves during a spin here.
    let mut beside = false;
    for _ in 0..1000 {
        let r0 = READS.load(Ordering::SeqCst);
        for _ in 0..2000 {
            core::hint::spin_loop();
        }
        if READS.load(Ordering::SeqCst) > r0 {
            beside = true;
            break;
        }
        hypercall(Hypercall::SchedOp as u64, [0, 0, 0, 0, 0]);
    }
    let s = gnttab_unmap(addr(0), handle.get());
    AFTER_UNMAP.store(1, Ordering::SeqCst);
    c.check("tlb-reader: vCPU 1 was running beside the unmap", beside, 0);
    c.check("tlb-reader: unmap G's grant 8", s == 0, s as i64);
    let own = wait_long(|| OWN_AFTER.load(Ordering::SeqCst) > 10_000);
    c.check(
        "tlb-reader: vCPU 1 reads our own RAM after the unmap",
        own,
        0,
    );
    let died = wait_long(|| granter_alive(g) == Some(false));
    c.check("tlb-reader: G died (its frames freed)", died, 0);
    let n = OWN_AFTER.load(Ordering::SeqCst);
    let on = wait_long(|| OWN_AFTER.load(Ordering::SeqCst) > n + 10_000);
    c.check("tlb-reader: vCPU 1 read on after G died", on, 0);
    let stale = STALE.load(Ordering::SeqCst);
    let _ = writeln!(
        Console,
        "tlb-reader: vCPU 1: {} reads of G's page before the unmap, {} of our RAM after, {} stale",
        SEEN_G.load(Ordering::SeqCst),
        OWN_AFTER.load(Ordering::SeqCst),
        stale
    );
    c.check(
        "tlb-reader: vCPU 1 never read G's frame after the unmap returned",
        stale == 0,
        stale as i64,
    );
}
