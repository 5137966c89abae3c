//! Passthrough roles: a guest given QEMU's `edu` (`assign=BB:DD.F`) finds it through
//! the PCI config ports, places its BAR, DMAs into its own memory and outside it, takes
//! its MSI; a second guest probes the same device; a third dies with DMA in flight.
//!
//! edu (QEMU hw/misc/edu.c): BAR0 1 MiB; 0x00 id 0x010000ed, 0x04 liveness (reads the
//! inverse), 0x24 interrupt status, 0x60 raise, 0x64 acknowledge, 0x80 DMA source,
//! 0x88 destination, 0x90 count, 0x98 command (1 start, 2 edu->RAM, 4 interrupt when
//! done); its DMA buffer is at device address 0x40000.

use super::xen::{hypercall, page_addr, page_mut, rdtsc, Console};
use super::Checks;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use sluice_abi::hypercall::{Hypercall, XenAddToPhysmap};
use sluice_abi::types::DOMID_SELF;

/// Where this guest places edu's BAR0 (above its RAM, below 4 GiB).
pub const GUEST_BAR: u64 = 0xE000_0000;
/// A guest-physical address that is not this guest's (8 MiB of RAM): host RAM if the
/// IOMMU let the DMA through untranslated.
pub const NOT_MINE: u64 = 0x0100_0000;
/// The ECAM window the hypervisor describes in this guest's MCFG (trapped, emulated).
pub const ECAM: u64 = 0xB000_0000;
/// The guest's MSI vector.
pub const MSI_VECTOR: u8 = 0x41;
const EDU_BUF: u64 = 0x4_0000;
const DMA_LEN: u64 = 2048;
/// Hang guard only (no result depends on it): TSC ticks to wait for the device.
const GUARD: u64 = 40_000_000_000;

fn outl(port: u16, v: u32) {
    // SAFETY: port I/O to the PCI config ports, which the hypervisor intercepts.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") v) };
}
fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") v) };
    v
}
fn outw(port: u16, v: u16) {
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") v) };
}
fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in ax, dx", in("dx") port, out("ax") v) };
    v
}
fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v) };
    v
}

fn addr(bdf: (u8, u8, u8), off: u16) -> u32 {
    1 << 31
        | u32::from(bdf.0) << 16
        | u32::from(bdf.1) << 11
        | u32::from(bdf.2) << 8
        | u32::from(off & 0xfc)
}
pub(crate) fn cfg_read32(bdf: (u8, u8, u8), off: u16) -> u32 {
    outl(0xCF8, addr(bdf, off));
    inl(0xCFC)
}
pub(crate) fn cfg_write32(bdf: (u8, u8, u8), off: u16, v: u32) {
    outl(0xCF8, addr(bdf, off));
    outl(0xCFC, v);
}
pub(crate) fn cfg_read16(bdf: (u8, u8, u8), off: u16) -> u16 {
    outl(0xCF8, addr(bdf, off));
    inw(0xCFC + (off & 2))
}
pub(crate) fn cfg_write16(bdf: (u8, u8, u8), off: u16, v: u16) {
    outl(0xCF8, addr(bdf, off));
    outw(0xCFC + (off & 2), v);
}
fn cfg_read8(bdf: (u8, u8, u8), off: u16) -> u8 {
    outl(0xCF8, addr(bdf, off));
    inb(0xCFC + (off & 3))
}

pub(crate) fn mmio_read32(pa: u64) -> u32 {
    // SAFETY: the device's BAR, mapped by the hypervisor where this guest placed it.
    unsafe { core::ptr::read_volatile(pa as *const u32) }
}
pub(crate) fn mmio_write32(pa: u64, v: u32) {
    // SAFETY: as in `mmio_read32`.
    unsafe { core::ptr::write_volatile(pa as *mut u32, v) }
}
fn mmio_write64(pa: u64, v: u64) {
    // SAFETY: as in `mmio_read32`.
    unsafe { core::ptr::write_volatile(pa as *mut u64, v) }
}

fn ecam_addr(bdf: (u8, u8, u8), off: u16) -> u64 {
    ECAM | u64::from(bdf.0) << 20 | u64::from(bdf.1) << 15 | u64::from(bdf.2) << 12 | u64::from(off)
}

/// Config reads and writes through the ECAM window with the instruction forms Linux's
/// accessors use (each emulated by the hypervisor), checked against 0xCF8/0xCFC.
fn ecam(c: &mut Checks, bdf: (u8, u8, u8)) {
    let a = ecam_addr(bdf, 0);
    let (id, dev, cls, q): (u32, u32, u64, u64);
    // SAFETY: the ECAM window is trapped by the hypervisor (never mapped RAM); each
    // access is a plain load of the named width.
    unsafe {
        core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) id, in(reg) a);
        core::arch::asm!("movzx {0:e}, word ptr [{1} + 2]", out(reg) dev, in(reg) a);
        core::arch::asm!("mov rax, -1", "mov al, byte ptr [{1} + 0xb]", "mov {0}, rax", out(reg) cls, in(reg) a, out("rax") _);
        core::arch::asm!("mov {0}, qword ptr [{1}]", out(reg) q, in(reg) a);
    }
    c.check(
        "pt: edu 1234:11e8 through the ECAM window (mov r32, m32)",
        id == 0x11e8_1234,
        id as i64,
    );
    c.check(
        "pt: device id 0x11e8 through ECAM (movzx r32, m16)",
        dev == 0x11e8,
        dev as i64,
    );
    let class = u64::from(cfg_read8(bdf, 0xb));
    c.check(
        "pt: class byte through ECAM into AL, the rest of RAX kept",
        cls == 0xFFFF_FFFF_FFFF_FF00 | class,
        cls as i64,
    );
    c.check(
        "pt: an 8-byte ECAM read gives all-ones",
        q == u64::MAX,
        q as i64,
    );
    let host_bridge: u32;
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) host_bridge, in(reg) ECAM);
    }
    c.check(
        "pt: 00:00.0 through ECAM is the emulated host bridge (1b36:0008), not the host's",
        host_bridge == 0x0008_1B36,
        host_bridge as i64,
    );
    // A write through ECAM (MSI address, MSI still off) seen through 0xCFC; then an
    // immediate store, and a read back through ECAM.
    let Some(m) = find_cap(bdf, 5) else { return };
    let w = ecam_addr(bdf, m + 4);
    let v: u32 = 0xFEE0_1000;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov dword ptr [{0}], {1:e}", in(reg) w, in(reg) v) };
    let back = cfg_read32(bdf, m + 4);
    let again: u32;
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("mov dword ptr [{0}], 0xfee02000", in(reg) w);
        core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) again, in(reg) w);
    }
    c.check(
        "pt: ECAM writes reach the virtual config space (mov m32, r32 / imm32)",
        back == v && again == 0xFEE0_2000,
        again as i64,
    );
}

pub(crate) fn yield_cpu() {
    hypercall(Hypercall::SchedOp as u64, [0, 0, 0, 0, 0]);
}

/// The `edu=BB:DD.F` (else the first `assign=`) function of the command line.
pub(crate) fn edu_bdf(cmdline: &str) -> (u8, u8, u8) {
    let w = cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("edu="))
        .or_else(|| {
            cmdline
                .split(' ')
                .find_map(|a| a.strip_prefix("assign="))
                .and_then(|l| l.split(',').next())
        })
        .unwrap_or("00:04.0");
    let p = |s: &str| u8::from_str_radix(s, 16).unwrap_or(0xff);
    let (b, rest) = w.split_once(':').unwrap_or(("ff", "ff.f"));
    let (d, f) = rest.split_once('.').unwrap_or(("ff", "f"));
    (p(b), p(d), p(f))
}

/// Starts a DMA and waits (yielding) until edu says it is done; false: it never did.
fn dma(bar: u64, src: u64, dst: u64, to_ram: bool) -> bool {
    mmio_write64(bar + 0x80, src);
    mmio_write64(bar + 0x88, dst);
    mmio_write64(bar + 0x90, DMA_LEN);
    mmio_write64(bar + 0x98, 1 | if to_ram { 2 } else { 0 });
    let t0 = rdtsc();
    while mmio_read32(bar + 0x98) & 1 != 0 {
        if rdtsc() - t0 > GUARD {
            return false;
        }
        yield_cpu();
    }
    true
}

pub(crate) static MSIS: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .section .text
    .global tg_pt_msi
tg_pt_msi:
    lock incq {msis}(%rip)
    iretq
"#,
    msis = sym MSIS,
    options(att_syntax)
);

extern "C" {
    fn tg_pt_msi();
}

static mut IDT: [u64; 512] = [0; 512];

pub(crate) fn install_msi_handler() {
    install_gate(MSI_VECTOR, tg_pt_msi as *const () as u64);
}

/// Points `vector` of this guest's IDT at `h` (an interrupt gate) and loads the IDT.
pub(crate) fn install_gate(vector: u8, h: u64) {
    let idt = core::ptr::addr_of!(IDT) as u64;
    let lo = (h & 0xFFFF) | (0x08 << 16) | (0x8E << 40) | ((h >> 16) & 0xFFFF) << 48;
    super::xen::write64(idt + u64::from(vector) * 16, lo);
    super::xen::write64(idt + u64::from(vector) * 16 + 8, h >> 32);
    let mut ptr = [0u8; 10];
    ptr[..2].copy_from_slice(&4095u16.to_le_bytes());
    ptr[2..].copy_from_slice(&idt.to_le_bytes());
    // SAFETY: the IDT is ours; its gates point at handlers of this guest (the MSI
    // counter above, pt_msibench's stub).
    unsafe { core::arch::asm!("lidt [{0}]", in(reg) ptr.as_ptr()) };
}

/// Finds, sizes and places BAR0, turns on memory decode and bus mastering.
pub(crate) fn bring_up(c: &mut Checks, bdf: (u8, u8, u8)) -> Option<u64> {
    let id = cfg_read32(bdf, 0);
    c.check(
        "pt: edu 1234:11e8 in config space through 0xCF8/0xCFC",
        id == 0x11e8_1234,
        id as i64,
    );
    if id != 0x11e8_1234 {
        return None;
    }
    cfg_write32(bdf, 0x10, 0xFFFF_FFFF);
    let size = cfg_read32(bdf, 0x10);
    c.check(
        "pt: BAR0 sizes as 1 MiB memory",
        size & !0xf == 0xFFF0_0000,
        size as i64,
    );
    cfg_write32(bdf, 0x10, GUEST_BAR as u32);
    let placed = cfg_read32(bdf, 0x10);
    c.check(
        "pt: BAR0 placed at 0xe0000000",
        placed & !0xf == GUEST_BAR as u32,
        placed as i64,
    );
    let cmd = cfg_read16(bdf, 4);
    cfg_write16(bdf, 4, cmd | 0x6);
    let ident = mmio_read32(GUEST_BAR);
    c.check(
        "pt: edu id 0x010000ed through the mapped BAR",
        ident == 0x0100_00ed,
        ident as i64,
    );
    mmio_write32(GUEST_BAR + 4, 0x1234_5678);
    let live = mmio_read32(GUEST_BAR + 4);
    c.check(
        "pt: edu liveness register inverts",
        live == !0x1234_5678,
        live as i64,
    );
    Some(GUEST_BAR)
}

/// role=pt-edu: the assigned edu's DMA and MSI.
pub fn edu(c: &mut Checks, cmdline: &str) {
    let bdf = edu_bdf(cmdline);
    let other = cfg_read32((0, 0, 0), 0);
    let class = cfg_read32((0, 0, 0), 8);
    c.check(
        "pt: 00:00.0 is the emulated host bridge (1b36:0008, class 06/00/00), not the host's",
        other == 0x0008_1B36 && class == 0x0600_0000,
        other as i64,
    );
    let Some(bar) = bring_up(c, bdf) else { return };
    ecam(c, bdf);

    // DMA within its own memory: page 0 -> edu buffer -> page 1.
    let (a, b) = (page_addr(0), page_addr(1));
    for (i, x) in page_mut(0).iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(7) ^ 0xA5;
    }
    page_mut(1).fill(0);
    let ok = dma(bar, a, EDU_BUF, false) && dma(bar, EDU_BUF, b, true);
    let same = page_mut(1)[..DMA_LEN as usize] == page_mut(0)[..DMA_LEN as usize];
    c.check(
        "pt: edu DMA to its own GPA lands in its memory",
        ok && same,
        same as i64,
    );

    // DMA to a GPA it does not own: blocked by the IOMMU (the hypervisor logs the fault).
    let _ = writeln!(
        Console,
        "pt: edu DMA-writes to gpa {NOT_MINE:#x} (not mine)"
    );
    let done = dma(bar, EDU_BUF, NOT_MINE, true);
    c.check(
        "pt: DMA outside its memory completes at the device (blocked by the IOMMU)",
        done,
        0,
    );
    // The buffer still holds the pattern: the read direction from outside gives nothing
    // of the host's either (checked through page 2).
    page_mut(2).fill(0x11);
    let _ = dma(bar, NOT_MINE, EDU_BUF, false) && dma(bar, EDU_BUF, page_addr(2), true);
    let leaked = page_mut(2)[..DMA_LEN as usize]
        .iter()
        .any(|&x| x != 0 && x != 0x11 && x != 0xff);
    let _ = writeln!(
        Console,
        "pt: DMA read from gpa {NOT_MINE:#x} brought {} (first bytes {:02x?})",
        if leaked { "data" } else { "no data" },
        &page_mut(2)[..8]
    );

    // MSI: the guest's vector on vCPU 0 (APIC id 0).
    let msi = find_cap(bdf, 5);
    c.check("pt: MSI capability visible", msi.is_some(), 0);
    let Some(m) = msi else { return };
    install_msi_handler();
    let ctl = cfg_read16(bdf, m + 2);
    let is64 = ctl & 0x80 != 0;
    cfg_write32(bdf, m + 4, 0xFEE0_0000);
    let data_off = if is64 {
        cfg_write32(bdf, m + 8, 0);
        m + 12
    } else {
        m + 8
    };
    cfg_write16(bdf, data_off, u16::from(MSI_VECTOR));
    // Hostile first: a destination that is none of its vCPUs (APIC id 2 = vCPU 1 of a
    // one-vCPU domain): refused by the hypervisor, so a raise delivers nothing.
    cfg_write32(bdf, m + 4, 0xFEE0_2000);
    cfg_write16(bdf, m + 2, ctl | 1);
    // SAFETY: the IDT has a gate for the only vector that can come.
    unsafe { core::arch::asm!("sti") };
    mmio_write32(bar + 0x60, 4);
    for _ in 0..50 {
        yield_cpu();
    }
    let n0 = MSIS.load(Ordering::SeqCst);
    c.check(
        "pt: no MSI while its destination is no vCPU of ours",
        n0 == 0,
        n0 as i64,
    );
    mmio_write32(bar + 0x64, 4);
    cfg_write16(bdf, m + 2, ctl & !1);
    cfg_write32(bdf, m + 4, 0xFEE0_0000);
    cfg_write16(bdf, m + 2, ctl | 1);
    mmio_write32(bar + 0x60, 1); // raise
    let t0 = rdtsc();
    while MSIS.load(Ordering::SeqCst) == 0 && rdtsc() - t0 < GUARD {
        yield_cpu();
    }
    // A few more rounds through the hypervisor: a duplicate would arrive by then.
    for _ in 0..50 {
        yield_cpu();
    }
    let n = MSIS.load(Ordering::SeqCst);
    c.check(
        "pt: edu MSI arrives at vector 0x41 exactly once",
        n == 1,
        n as i64,
    );
    mmio_write32(bar + 0x64, 1); // acknowledge
                                 // Masked by the guest (MSI off): a raise delivers nothing.
    cfg_write16(bdf, m + 2, ctl & !1);
    mmio_write32(bar + 0x60, 2);
    for _ in 0..50 {
        yield_cpu();
    }
    let n2 = MSIS.load(Ordering::SeqCst);
    c.check(
        "pt: no MSI after the guest disabled MSI",
        n2 == 1,
        n2 as i64,
    );
    mmio_write32(bar + 0x64, 2);
    // SAFETY: back to no interrupts.
    unsafe { core::arch::asm!("cli") };
    physmap_change(c, bar);
    // `linger`: stay alive a while (TSC ticks) so that the hypervisor's end-of-run check
    // of a dead domain's freed frames comes well after that domain's last DMA could have.
    if let Some(t) = cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("linger="))
        .and_then(|n| n.parse::<u64>().ok())
    {
        let t0 = rdtsc();
        while rdtsc() - t0 < t {
            yield_cpu();
        }
        let _ = writeln!(Console, "pt: lingered {t} TSC ticks");
    }
}

pub(crate) fn find_cap(bdf: (u8, u8, u8), id: u8) -> Option<u16> {
    if cfg_read16(bdf, 6) & 0x10 == 0 {
        return None;
    }
    let mut p = u16::from(cfg_read8(bdf, 0x34)) & 0xfc;
    for _ in 0..48 {
        if p < 0x40 {
            return None;
        }
        if cfg_read8(bdf, p) == id {
            return Some(p);
        }
        p = u16::from(cfg_read8(bdf, p + 1)) & 0xfc;
    }
    None
}

/// role=pt-snoop: a domain without the device probes its config space and the
/// guest address where the owner placed its BAR (the hypervisor kills it there).
pub fn snoop(c: &mut Checks, cmdline: &str) {
    let bdf = edu_bdf(cmdline);
    let id = cfg_read32(bdf, 0);
    c.check(
        "pt-snoop: the other domain's edu reads all-ones",
        id == u32::MAX,
        id as i64,
    );
    cfg_write32(bdf, 0x10, 0xFFFF_FFFF);
    let bar = cfg_read32(bdf, 0x10);
    c.check(
        "pt-snoop: its BAR0 cannot be sized (all-ones, write dropped)",
        bar == u32::MAX,
        bar as i64,
    );
    cfg_write16(bdf, 4, 0);
    for _ in 0..20 {
        yield_cpu();
    }
    let _ = writeln!(
        Console,
        "pt-snoop: reading gpa {GUEST_BAR:#x} (the owner's BAR address)"
    );
    let v = mmio_read32(GUEST_BAR);
    c.check("pt-snoop: was stopped at the BAR address", false, v as i64);
}

/// role=pt-dying: DMA in a loop into its own page, then dies (a write outside its
/// memory) with a transfer in flight; the hypervisor must stop the device first.
pub fn dying(c: &mut Checks, cmdline: &str) {
    let bdf = edu_bdf(cmdline);
    let Some(bar) = bring_up(c, bdf) else { return };
    page_mut(0).fill(0xC3);
    let ok = dma(bar, page_addr(0), EDU_BUF, false);
    let mut rounds = 0;
    for _ in 0..3 {
        if !dma(bar, EDU_BUF, page_addr(1), true) {
            break;
        }
        rounds += 1;
    }
    c.check("pt-dying: DMA loop runs", ok && rounds == 3, rounds);
    // One more transfer, and die before it completes (edu takes 100 ms of QEMU time).
    mmio_write64(bar + 0x80, EDU_BUF);
    mmio_write64(bar + 0x88, page_addr(1));
    mmio_write64(bar + 0x90, DMA_LEN);
    mmio_write64(bar + 0x98, 1 | 2);
    let _ = writeln!(
        Console,
        "pt-dying: DMA in flight to gpa {:#x}; dying now",
        page_addr(1)
    );
    // An instruction the hypervisor does not emulate, in its ECAM window.
    // SAFETY: it traps; the hypervisor ends this domain there.
    unsafe { core::arch::asm!("inc dword ptr [{0}]", in(reg) ECAM) };
    c.check("pt-dying: was stopped", false, 0);
}

/// role=pt-pair (`assign=00:05.0,00:05.1`, a whole group): both functions' BARs at the
/// same guest address: the second is refused (not mapped); moved next to it, it maps.
pub fn pair(c: &mut Checks) {
    let (f0, f1) = ((0, 5, 0), (0, 5, 1));
    for f in [f0, f1] {
        let id = cfg_read32(f, 0);
        c.check(
            "pt-pair: both functions of the group visible",
            id == 0x11e8_1234,
            id as i64,
        );
    }
    cfg_write32(f0, 0x10, GUEST_BAR as u32);
    cfg_write16(f0, 4, 0x2);
    cfg_write32(f1, 0x10, GUEST_BAR as u32);
    cfg_write16(f1, 4, 0x2);
    let _ = writeln!(Console, "pt-pair: both BARs placed at {GUEST_BAR:#x}");
    let id0 = mmio_read32(GUEST_BAR);
    c.check(
        "pt-pair: the first BAR maps",
        id0 == 0x0100_00ed,
        id0 as i64,
    );
    // Move the second one beside it (decode off, place, decode on).
    cfg_write16(f1, 4, 0);
    cfg_write32(f1, 0x10, (GUEST_BAR + 0x10_0000) as u32);
    cfg_write16(f1, 4, 0x2);
    mmio_write32(GUEST_BAR + 4, 1);
    mmio_write32(GUEST_BAR + 0x10_0000 + 4, 2);
    let (l0, l1) = (
        mmio_read32(GUEST_BAR + 4),
        mmio_read32(GUEST_BAR + 0x10_0000 + 4),
    );
    c.check(
        "pt-pair: each BAR reaches its own function",
        l0 == !1 && l1 == !2,
        l1 as i64,
    );
}

/// A RAM page of this guest that becomes its shared_info (add_to_physmap): before, edu
/// DMA lands there; after, the IOMMU no longer maps it (the hypervisor remapped the
/// page in the IOMMU before the old frame could be reused), so the DMA is blocked and
/// shared_info (a hypervisor frame) is untouched.
fn physmap_change(c: &mut Checks, bar: u64) {
    const GPA: u64 = 0x70_0000;
    // The edu buffer gets page 0's pattern again (the blocked read above emptied it).
    super::xen::write64(GPA, 0);
    let landed = dma(bar, page_addr(0), EDU_BUF, false)
        && dma(bar, EDU_BUF, GPA, true)
        && super::xen::read64(GPA) == super::xen::read64(page_addr(0));
    c.check("pt: DMA to gpa 0x700000 (its RAM) lands", landed, 0);
    let mut a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 0,
        idx: 0,
        gpfn: GPA >> 12,
    };
    let r = hypercall(
        Hypercall::MemoryOp as u64,
        [7, &mut a as *mut _ as u64, 0, 0, 0],
    );
    c.check("pt: add_to_physmap(shared_info) at gpa 0x700000", r == 0, r);
    // Words 8..256: vcpu_info of vCPUs 1..31, which this one-vCPU domain does not have
    // (the hypervisor writes only vCPU 0's time info there).
    let mut before = [0u64; 256];
    for (i, w) in before.iter_mut().enumerate().skip(8) {
        *w = super::xen::read64(GPA + 8 * i as u64);
    }
    let _ = writeln!(
        Console,
        "pt: edu DMA-writes to gpa {GPA:#x} (now shared_info)"
    );
    let done = dma(bar, EDU_BUF, GPA, true);
    let same = before
        .iter()
        .enumerate()
        .skip(8)
        .all(|(i, &w)| super::xen::read64(GPA + 8 * i as u64) == w);
    c.check(
        "pt: shared_info untouched by the DMA",
        done && same,
        same as i64,
    );
}
