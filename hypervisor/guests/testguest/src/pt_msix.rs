//! role=pt-msix (`assign=00:07.0`, QEMU's e1000e): MSI-X through the hypervisor's
//! trapped table. The e1000e raises its "other" cause on vector 0 (IVAR) when ICS is
//! written (QEMU hw/net/e1000e_core.c): masked, the device sets the PBA bit instead
//! (read through the trapped PBA page); unmasked, the message is delivered once at the
//! guest's vector; a destination that is none of its vCPUs is refused.
//!
//! e1000e registers (BAR0): 0xC0 ICR (write-1-to-clear), 0xC8 ICS, 0xD0 IMS, 0xE4 IVAR
//! (other cause: bits 19:16, valid bit 19); MSI-X table in BAR3 at 0, PBA at 0x2000.

use super::passthrough::{
    cfg_read16, cfg_read32, cfg_write16, cfg_write32, find_cap, install_msi_handler, mmio_read32,
    mmio_write32, yield_cpu, MSIS, MSI_VECTOR,
};
use super::xen::rdtsc;
use super::Checks;
use core::sync::atomic::Ordering;

const NIC: (u8, u8, u8) = (0, 7, 0);
const BAR0: u64 = 0xE000_0000;
const BAR1: u64 = 0xE002_0000;
const BAR3: u64 = 0xE004_0000;
const ICR: u64 = 0xC0;
const ICS: u64 = 0xC8;
const IMS: u64 = 0xD0;
const IVAR: u64 = 0xE4;
/// ICR/IMS "other" (bit 24) and MDAC (bit 9, one of the other causes).
const OTHER: u32 = 1 << 24;
const MDAC: u32 = 1 << 9;
/// Hang guard only (no result depends on it).
const GUARD: u64 = 40_000_000_000;

fn entry(n: u64, word: u64) -> u64 {
    BAR3 + 16 * n + 4 * word
}

/// Yields a while (a duplicate or late interrupt would arrive by then).
fn settle() {
    for _ in 0..50 {
        yield_cpu();
    }
}

fn raise() {
    mmio_write32(BAR0 + ICR, u32::MAX);
    mmio_write32(BAR0 + ICS, MDAC);
}

pub fn msix(c: &mut Checks) {
    let id = cfg_read32(NIC, 0);
    c.check(
        "pt-msix: e1000e 8086:10d3 visible",
        id == 0x10d3_8086,
        id as i64,
    );
    let Some(m) = find_cap(NIC, 0x11) else {
        c.check("pt-msix: MSI-X capability visible", false, 0);
        return;
    };
    for (bar, at) in [(0x10, BAR0), (0x14, BAR1), (0x1C, BAR3)] {
        cfg_write32(NIC, bar, at as u32);
    }
    let cmd = cfg_read16(NIC, 4);
    cfg_write16(NIC, 4, cmd | 0x6);
    // MSI-X on with the function masked while the table is written (as Linux does).
    let ctl = cfg_read16(NIC, m + 2);
    cfg_write16(NIC, m + 2, ctl | 0xC000);
    install_msi_handler();
    mmio_write32(entry(0, 0), 0xFEE0_0000);
    mmio_write32(entry(0, 1), 0);
    mmio_write32(entry(0, 2), u32::from(MSI_VECTOR));
    let (lo, data, vc) = (
        mmio_read32(entry(0, 0)),
        mmio_read32(entry(0, 2)),
        mmio_read32(entry(0, 3)),
    );
    c.check(
        "pt-msix: the virtual table keeps the guest's entry (masked)",
        lo == 0xFEE0_0000 && data == u32::from(MSI_VECTOR) && vc == 1,
        vc as i64,
    );
    // Entry 1: a destination that is none of its vCPUs (APIC id 2): refused.
    mmio_write32(entry(1, 0), 0xFEE0_2000);
    mmio_write32(entry(1, 2), u32::from(MSI_VECTOR));
    mmio_write32(entry(1, 3), 0);
    cfg_write16(NIC, m + 2, (ctl | 0x8000) & !0x4000);
    // SAFETY: the IDT has a gate for the only vector that can come.
    unsafe { core::arch::asm!("sti") };

    // The device's "other" cause on vector 0 while entry 0 is masked: pending in the PBA.
    mmio_write32(BAR0 + IVAR, 0x8 << 16);
    mmio_write32(BAR0 + IMS, OTHER);
    raise();
    settle();
    let pba = mmio_read32(BAR3 + 0x2000);
    let n0 = MSIS.load(Ordering::SeqCst);
    c.check(
        "pt-msix: masked: no interrupt, the PBA (read from the device) shows vector 0",
        n0 == 0 && pba & 1 == 1,
        pba as i64,
    );
    // Unmasked: the hypervisor programs the device's entry; the pending message comes.
    mmio_write32(entry(0, 3), 0);
    let t0 = rdtsc();
    while MSIS.load(Ordering::SeqCst) == 0 && rdtsc() - t0 < GUARD {
        yield_cpu();
    }
    settle();
    let n1 = MSIS.load(Ordering::SeqCst);
    let pba1 = mmio_read32(BAR3 + 0x2000);
    c.check(
        "pt-msix: unmasked: the MSI-X message arrives at vector 0x41 exactly once",
        n1 == 1 && pba1 & 1 == 0,
        n1 as i64,
    );
    // Masked again by the guest: the device's entry is masked, nothing is delivered.
    mmio_write32(entry(0, 3), 1);
    raise();
    settle();
    let n2 = MSIS.load(Ordering::SeqCst);
    let pba2 = mmio_read32(BAR3 + 0x2000);
    c.check(
        "pt-msix: masked again: no interrupt, pending in the PBA",
        n2 == 1 && pba2 & 1 == 1,
        n2 as i64,
    );
    // SAFETY: back to no interrupts.
    unsafe { core::arch::asm!("cli") };
}
