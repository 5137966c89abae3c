//! role=pt-bigbar (`assign=` QEMU's `ivshmem-plain` with a 1 GiB memdev, a file the
//! host pre-fills and checks afterwards): its BAR2 is 64-bit prefetchable and 1 GiB.
//! Placements over its RAM, over the ECAM window or past the guest-physical limit are
//! refused (memory decode stays off); placed at 16 GiB it maps, and at each offset of
//! `OFFSETS` (start, inside, middle, last page) the guest reads the host's word at
//! `o + 8` and writes its own at `o`; moved to 1 GiB the same words are there and it
//! writes a second one at `o + 16`; then it touches the old address (killed there: the
//! move unmapped it).

use super::passthrough::{cfg_read16, cfg_read32, cfg_write16, cfg_write32};
use super::xen::{read64, write64, Console};
use super::Checks;
use core::fmt::Write;

const GIB: u64 = 1 << 30;
/// ivshmem's ids (QEMU hw/misc/ivshmem.c): Red Hat / Qumranet 1af4:1110.
const IVSHMEM: u32 = 0x1110_1af4;
const HIGH: u64 = 16 * GIB;
const LOW: u64 = GIB;
/// Offsets into the shared memory; the suite (xtask/src/passthrough.rs) uses the same.
pub const OFFSETS: [u64; 6] = [0, 0x1F_FFF8 - 8, 0x1234_5670, GIB / 2, GIB - 4096, GIB - 24];

pub const fn host_word(o: u64) -> u64 {
    0x5EED_0000_0000_0000 ^ o
}
pub const fn guest_word(o: u64) -> u64 {
    0xC0DE_0000_0000_0000 ^ o
}
pub const fn moved_word(o: u64) -> u64 {
    0xB0B0_0000_0000_0000 ^ o
}

/// A page directory of 2 MiB pages for the GiB at `HIGH` (the boot map covers 4 GiB).
#[repr(C, align(4096))]
struct Pd([u64; 512]);
static mut PD_HIGH: Pd = Pd([0; 512]);

/// Maps `[HIGH, HIGH + 1 GiB)` uncached in this guest's page tables.
fn map_high() {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3) };
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
    let pml4 = cr3 & ADDR;
    let pdpt = read64(pml4) & ADDR;
    let pd = core::ptr::addr_of!(PD_HIGH) as u64;
    for i in 0..512 {
        // Present, writable, PWT | PCD, 2 MiB page.
        write64(pd + 8 * i, (HIGH + i * (2 << 20)) | 0x9B);
    }
    write64(pdpt + 8 * (HIGH >> 30), pd | 3);
    // SAFETY: reloading CR3 with its own value flushes the TLB, nothing else.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3) };
}

fn place(bdf: (u8, u8, u8), bar0: u32, bar2: u64) -> bool {
    cfg_write16(bdf, 4, 0);
    cfg_write32(bdf, 0x10, bar0);
    cfg_write32(bdf, 0x18, bar2 as u32);
    cfg_write32(bdf, 0x1C, (bar2 >> 32) as u32);
    cfg_write16(bdf, 4, 0x2);
    cfg_read16(bdf, 4) & 0x2 != 0
}

pub fn bigbar(c: &mut Checks, cmdline: &str) {
    let bdf = super::passthrough::edu_bdf(cmdline);
    let id = cfg_read32(bdf, 0);
    c.check(
        "pt-bigbar: ivshmem 1af4:1110 visible",
        id == IVSHMEM,
        id as i64,
    );
    if id != IVSHMEM {
        return;
    }
    cfg_write32(bdf, 0x18, u32::MAX);
    cfg_write32(bdf, 0x1C, u32::MAX);
    let (lo, hi) = (cfg_read32(bdf, 0x18), cfg_read32(bdf, 0x1C));
    let size = (!((u64::from(hi) << 32) | u64::from(lo & !0xF))).wrapping_add(1);
    c.check(
        "pt-bigbar: BAR2 sizes as 1 GiB, 64-bit prefetchable",
        lo & 0xF == 0xC && size == GIB,
        size as i64,
    );
    // Refused placements: memory decode stays off (the hypervisor logs each reason).
    let ram = place(bdf, 0x10_0000, HIGH);
    let ecam = place(bdf, 0, 0x8000_0000);
    let far = place(bdf, 0, 64 * GIB);
    c.check(
        "pt-bigbar: over its RAM, over ECAM, past 64 GiB: refused (decode off)",
        !ram && !ecam && !far,
        (ram as i64) | (ecam as i64) << 1 | (far as i64) << 2,
    );
    let on = place(bdf, 0, HIGH);
    c.check("pt-bigbar: BAR2 at 16 GiB decodes", on, 0);
    if !on {
        return;
    }
    map_high();
    let mut seen = 0;
    for o in OFFSETS {
        seen += (read64(HIGH + o + 8) == host_word(o)) as i64;
        write64(HIGH + o, guest_word(o));
    }
    let back = OFFSETS
        .iter()
        .filter(|&&o| read64(HIGH + o) == guest_word(o))
        .count();
    c.check(
        "pt-bigbar: at 16 GiB: the host's words read at 6 offsets over the GiB",
        seen == OFFSETS.len() as i64,
        seen,
    );
    c.check(
        "pt-bigbar: at 16 GiB: its own words read back",
        back == OFFSETS.len(),
        back as i64,
    );
    let moved = place(bdf, 0, LOW);
    c.check("pt-bigbar: BAR2 moved to 1 GiB decodes", moved, 0);
    let mut same = 0;
    for o in OFFSETS {
        same += (read64(LOW + o + 8) == host_word(o) && read64(LOW + o) == guest_word(o)) as i64;
        write64(LOW + o + 16, moved_word(o));
    }
    c.check(
        "pt-bigbar: at 1 GiB: the same memory (host's and its own words)",
        same == OFFSETS.len() as i64,
        same,
    );
    let _ = writeln!(
        Console,
        "pt-bigbar: reading gpa {HIGH:#x} (where BAR2 was before the move)"
    );
    let v = read64(HIGH);
    c.check(
        "pt-bigbar: was stopped at the old BAR address",
        false,
        v as i64,
    );
}
