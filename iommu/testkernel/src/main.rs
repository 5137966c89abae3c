//! Proof of sluice-iommu on QEMU's emulated IOMMUs with real edu DMA and MSIs.
//!
//! Boots by multiboot, finds DMAR or IVRS, brings up the matching driver through the
//! vendor-neutral API and runs tests a-e from the issue; prints `VERDICT PASS` or
//! `VERDICT FAIL` and exits through isa-debug-exit (0x10 pass, 0x01 fail).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod boot;
mod hw;
mod msibench;

use alloc::vec::Vec;
use hw::{fill, peek, poke, HAL};
use linked_list_allocator::LockedHeap;
use sluice_iommu::acpi::{dmar::Dmar, ivrs::Ivrs};
use sluice_iommu::amdvi::{AmdVi, AmdViConfig};
use sluice_iommu::vtd::{Vtd, VtdConfig};
use sluice_iommu::{Bdf, Error, FaultKind, Iommu, IommuHw, Perm};

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
/// The kernel heap (for the driver's maps and vectors): 8 MiB .. 16 MiB.
const HEAP_START: usize = 8 << 20;
const HEAP_SIZE: usize = 8 << 20;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    println!("VERDICT FAIL");
    hw::exit(1)
}

/// An edu device.
#[derive(Clone, Copy)]
struct Edu {
    bdf: Bdf,
    bar: u64,
}

/// edu's DMA buffer, as a device-side address.
const EDU_BUF: u64 = 0x40000;
/// Bytes per DMA: QEMU 7.2's edu refuses a transfer ending exactly at its buffer's end.
const DMA_LEN: u64 = 2048;

impl Edu {
    fn reg_write(&self, off: u64, v: u64) {
        HAL_REF.mmio_write64(self.bar + off, v);
    }
    fn reg_read(&self, off: u64) -> u64 {
        HAL_REF.mmio_read64(self.bar + off)
    }
    /// Runs one DMA and waits for it: `to_ram` writes edu's buffer to `iova`, else
    /// edu reads `iova` into its buffer.
    fn dma(&self, iova: u64, len: u64, to_ram: bool) {
        let (src, dst) = if to_ram {
            (EDU_BUF, iova)
        } else {
            (iova, EDU_BUF)
        };
        self.reg_write(0x80, src);
        self.reg_write(0x88, dst);
        self.reg_write(0x90, len);
        self.reg_write(0x98, 1 | if to_ram { 2 } else { 0 });
        for _ in 0..200_000_000u64 {
            if self.reg_read(0x98) & 1 == 0 {
                return;
            }
            core::hint::spin_loop();
        }
        panic!("edu {} DMA did not complete", self.bdf);
    }
    fn msi_cap(&self) -> Option<u8> {
        let b = self.bdf;
        let mut ptr = (hw::pci_read32(b.bus, b.device, b.function, 0x34) & 0xfc) as u8;
        while ptr != 0 {
            let v = hw::pci_read32(b.bus, b.device, b.function, ptr);
            if v & 0xff == 5 {
                return Some(ptr);
            }
            ptr = ((v >> 8) & 0xfc) as u8;
        }
        None
    }
    /// Programs and enables edu's MSI (64-bit capable capability).
    fn set_msi(&self, address: u64, data: u32) {
        let b = self.bdf;
        let cap = self.msi_cap().expect("edu has an MSI capability");
        let ctl = hw::pci_read32(b.bus, b.device, b.function, cap);
        hw::pci_write32(b.bus, b.device, b.function, cap + 4, address as u32);
        let data_off = if ctl & (1 << 23) != 0 {
            hw::pci_write32(b.bus, b.device, b.function, cap + 8, (address >> 32) as u32);
            12
        } else {
            8
        };
        hw::pci_write32(b.bus, b.device, b.function, cap + data_off, data);
        hw::pci_write32(b.bus, b.device, b.function, cap, ctl | (1 << 16));
    }
    /// Makes edu send its MSI (interrupt-raise register), then acknowledges it.
    fn raise(&self) {
        HAL_REF.mmio_write32(self.bar + 0x60, 1);
        for _ in 0..1_000_000 {
            core::hint::spin_loop();
        }
        HAL_REF.mmio_write32(self.bar + 0x64, 1);
    }
}

static HAL_REF: &hw::KernelHal = &HAL;
use sluice_iommu::Hal as _;

fn find_edus() -> Vec<Edu> {
    let mut out = Vec::new();
    for dev in 0..32u8 {
        let id = hw::pci_read32(0, dev, 0, 0);
        if id == 0x11e8_1234 {
            let bar = u64::from(hw::pci_read32(0, dev, 0, 0x10) & !0xf);
            // Memory decoding and bus mastering on.
            let cmd = hw::pci_read32(0, dev, 0, 4);
            hw::pci_write32(0, dev, 0, 4, cmd | 0x6);
            out.push(Edu {
                bdf: Bdf::new(0, dev, 0),
                bar,
            });
        }
    }
    out
}

/// ACPI tables by signature (RSDP in the BIOS area, then RSDT).
fn acpi_table(signature: &[u8; 4]) -> Option<&'static [u8]> {
    let bios = hw::phys_slice(0xe0000, 0x20000);
    let rsdp = (0..bios.len() - 20)
        .step_by(16)
        .find(|&i| &bios[i..i + 8] == b"RSD PTR ")?;
    let rsdt = u64::from(u32::from_le_bytes(
        bios[rsdp + 16..rsdp + 20].try_into().ok()?,
    ));
    let header = hw::phys_slice(rsdt, 36);
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let rsdt = hw::phys_slice(rsdt, len);
    for entry in rsdt[36..].chunks_exact(4) {
        let pa = u64::from(u32::from_le_bytes(entry.try_into().ok()?));
        let h = hw::phys_slice(pa, 36);
        if &h[0..4] == signature {
            let len = u32::from_le_bytes(h[4..8].try_into().ok()?) as usize;
            return Some(hw::phys_slice(pa, len));
        }
    }
    None
}

fn dump(name: &str, table: &[u8]) {
    let mut line = alloc::string::String::new();
    for b in table {
        use core::fmt::Write;
        let _ = write!(line, "{b:02x}");
    }
    println!("ACPI {name} {line}");
}

/// Local APIC (xAPIC MMIO), software-enabled; interrupts are counted by `hw::interrupt_entry`.
const LAPIC: u64 = 0xfee0_0000;
/// Where VT-d fault events are delivered.
const FAULT_VECTOR: u8 = 0x90;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Vtd,
    AmdVi,
}

struct Checker {
    failed: u32,
}

impl Checker {
    fn check(&mut self, name: &str, ok: bool) {
        println!("{} {name}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

// Physical frames the tests use (identity-mapped RAM outside the driver's pool).
const SRC: u64 = 0x0700_0000;
const DST_A: u64 = 0x0700_1000;
const DST_B: u64 = 0x0700_2000;
const CHECK: u64 = 0x0700_3000;
/// IOVAs: also real RAM addresses, so an identity (untranslated) DMA would show up there.
const IOVA_SRC: u64 = 0x0800_0000;
const IOVA_DST: u64 = 0x0800_1000;
const IOVA_RO: u64 = 0x0801_0000;
const IOVA_OTHER: u64 = 0x0802_0000;

fn pattern(seed: u8) {
    for i in 0..4096u64 {
        poke(SRC + i, seed.wrapping_add(i as u8));
    }
}

fn holds_pattern(pa: u64, seed: u8) -> bool {
    (0..DMA_LEN).all(|i| peek(pa + i) == seed.wrapping_add(i as u8))
}

fn all_bytes(pa: u64, b: u8) -> bool {
    (0..4096u64).all(|i| peek(pa + i) == b)
}

fn faults<D: IommuHw>(iommu: &mut Iommu<D>) -> Vec<sluice_iommu::Fault> {
    let mut v = Vec::new();
    if let Err(e) = iommu.drain_faults(&mut |f| v.push(f)) {
        println!("drain_faults: {e}");
    }
    for f in &v {
        println!(
            "     fault: device {} address {:#x} {:?} code {:#x} ({})",
            f.device, f.address, f.kind, f.code, f.reason
        );
    }
    v
}

/// Checks that a blocked DMA was reported, naming `device` and `iova`. Under QEMU 7.2's
/// AMD-Vi the event log can never be written (`amdvi_test_mask` ORs instead of ANDs, so
/// `amdvi_log_event` always sees "overflow" and returns): there an empty log is tolerated
/// and said so, but any event that does arrive must still be right.
fn check_fault(
    c: &mut Checker,
    name: &str,
    f: &[sluice_iommu::Fault],
    device: Bdf,
    iova: u64,
    log_works: bool,
) {
    let named = f
        .iter()
        .any(|f| f.device == device && f.address & !0xfff == iova && f.kind == FaultKind::Write);
    if !log_works && f.is_empty() {
        println!("skip {name}: QEMU 7.2 amd-iommu never writes its event log");
        return;
    }
    c.check(name, named);
}

fn run<D: IommuHw>(
    iommu: &mut Iommu<D>,
    edus: &[Edu],
    c: &mut Checker,
    vendor: Vendor,
    msi: bool,
    bench: Option<usize>,
) -> Result<(), Error> {
    if let Some(n) = bench {
        // `cargo xtask bench msi`: the bench alone (tests a-e are the suite's).
        println!("msibench mode: tests a-e not run");
        c.check("msibench: interrupt remapping on", msi);
        if msi {
            let all = msibench::run(iommu, edus[0], n)?;
            c.check("msibench: every raise arrived", all);
        }
        return Ok(());
    }
    // QEMU 7.2's amd-iommu never writes its event log (see `check_fault`).
    let log_works = vendor == Vendor::Vtd;
    let (e1, e2) = (edus[0], edus[1]);
    fill(IOVA_SRC, 0x3_0000, 0xcc);
    // a. map a buffer; edu reads the source page and writes it to IOVA_DST.
    let d1 = iommu.create_domain()?;
    iommu.attach(d1, e1.bdf)?;
    iommu.map(d1, IOVA_SRC, SRC, 4096, Perm::READ)?;
    iommu.map(d1, IOVA_DST, DST_A, 4096, Perm::READ | Perm::WRITE)?;
    pattern(0x11);
    fill(DST_A, 4096, 0);
    e1.dma(IOVA_SRC, DMA_LEN, false);
    e1.dma(IOVA_DST, DMA_LEN, true);
    c.check(
        "a: DMA through the mapping lands in the mapped frame",
        holds_pattern(DST_A, 0x11),
    );
    c.check(
        "a: nothing reached the IOVA as a physical address",
        all_bytes(IOVA_DST, 0xcc),
    );
    c.check("a: no faults", faults(iommu).is_empty());

    // b. unmap it and DMA again.
    let unmapped = iommu.unmap(d1, IOVA_DST, 4096)?;
    c.check("b: unmap reports 4 KiB", unmapped == 4096);
    fill(DST_A, 4096, 0x5a);
    pattern(0x22);
    e1.dma(IOVA_SRC, DMA_LEN, false);
    e1.dma(IOVA_DST, DMA_LEN, true);
    c.check("b: frame unchanged after unmap", all_bytes(DST_A, 0x5a));
    c.check("b: IOVA as physical unchanged", all_bytes(IOVA_DST, 0xcc));
    let f = faults(iommu);
    let name = "b: fault log names edu and the IOVA";
    check_fault(c, name, &f, e1.bdf, IOVA_DST, log_works);

    // c. read-only mapping: writes blocked, reads allowed.
    iommu.map(d1, IOVA_RO, DST_B, 4096, Perm::READ)?;
    iommu.map(d1, IOVA_DST, DST_A, 4096, Perm::READ | Perm::WRITE)?;
    for i in 0..4096u64 {
        poke(DST_B + i, 0x33u8.wrapping_add(i as u8));
    }
    pattern(0x44);
    e1.dma(IOVA_SRC, DMA_LEN, false);
    e1.dma(IOVA_RO, DMA_LEN, true); // write into the read-only page
    c.check("c: device write into read-only page blocked", {
        (0..4096u64).all(|i| peek(DST_B + i) == 0x33u8.wrapping_add(i as u8))
    });
    let _ = faults(iommu);
    fill(DST_A, 4096, 0);
    e1.dma(IOVA_RO, DMA_LEN, false); // read from the read-only page
    e1.dma(IOVA_DST, DMA_LEN, true); // and show what it read
    c.check("c: device read from read-only page allowed", {
        (0..DMA_LEN).all(|i| peek(DST_A + i) == 0x33u8.wrapping_add(i as u8))
    });

    // Errors of the API.
    c.check(
        "api: overlapping map refused",
        matches!(
            iommu.map(d1, IOVA_DST, DST_B, 4096, Perm::READ),
            Err(Error::Overlap { .. })
        ),
    );
    c.check(
        "api: unaligned map refused",
        matches!(
            iommu.map(d1, IOVA_DST + 8, DST_B, 4096, Perm::READ),
            Err(Error::Unaligned { .. })
        ),
    );
    c.check(
        "api: unknown device refused",
        matches!(
            iommu.attach(d1, Bdf::new(0x7f, 1, 0)),
            Err(Error::UnknownDevice(_))
        ),
    );

    // d. two domains, two devices, the same IOVA leads to different frames.
    let d2 = iommu.create_domain()?;
    c.check(
        "api: device attached elsewhere refused",
        matches!(iommu.attach(d2, e1.bdf), Err(Error::AlreadyAttached { .. })),
    );
    iommu.attach(d2, e2.bdf)?;
    iommu.map(d2, IOVA_SRC, SRC, 4096, Perm::READ)?;
    iommu.map(d2, IOVA_DST, DST_B, 4096, Perm::READ | Perm::WRITE)?;
    iommu.map(d2, IOVA_OTHER, CHECK, 4096, Perm::READ | Perm::WRITE)?;
    fill(DST_A, 4096, 0);
    fill(DST_B, 4096, 0);
    fill(CHECK, 4096, 0x77);
    pattern(0x55);
    e1.dma(IOVA_SRC, DMA_LEN, false);
    e1.dma(IOVA_DST, DMA_LEN, true);
    c.check(
        "d: edu1 reaches its domain's frame",
        holds_pattern(DST_A, 0x55),
    );
    c.check(
        "d: edu1 did not reach domain 2's frame",
        all_bytes(DST_B, 0),
    );
    pattern(0x66);
    e2.dma(IOVA_SRC, DMA_LEN, false);
    e2.dma(IOVA_DST, DMA_LEN, true);
    c.check(
        "d: edu2 reaches its domain's frame",
        holds_pattern(DST_B, 0x66),
    );
    c.check(
        "d: edu2 did not reach domain 1's frame",
        holds_pattern(DST_A, 0x55),
    );
    let _ = faults(iommu);
    e1.dma(IOVA_OTHER, DMA_LEN, true);
    c.check(
        "d: edu1 blocked from an IOVA only domain 2 maps",
        all_bytes(CHECK, 0x77),
    );
    let f = faults(iommu);
    let name = "d: the fault names edu1 and that IOVA";
    check_fault(c, name, &f, e1.bdf, IOVA_OTHER, log_works);

    // Superpages: a 2 MiB mapping, split by a 4 KiB unmap, merged back by a 4 KiB map.
    // QEMU caches the 2 MiB translation: a missing invalidation shows up as a stale hit.
    if iommu.hw().max_leaf_level() >= 2 {
        let (big_iova, big_pa) = (0x4000_0000u64, 0x0740_0000u64);
        iommu.map(d1, big_iova, big_pa, 2 << 20, Perm::READ | Perm::WRITE)?;
        c.check(
            "s: 2 MiB range mapped by one 2 MiB leaf",
            iommu.translate(d1, big_iova).map(|t| t.2) == Some(2),
        );
        fill(big_pa, 0x3000, 0);
        pattern(0x88);
        e1.dma(IOVA_SRC, DMA_LEN, false);
        e1.dma(big_iova + 0x1000, DMA_LEN, true);
        c.check(
            "s: DMA through the 2 MiB page lands at its offset",
            holds_pattern(big_pa + 0x1000, 0x88),
        );
        iommu.unmap(d1, big_iova + 0x1000, 4096)?;
        c.check(
            "s: 4 KiB unmap split the 2 MiB page",
            iommu.translate(d1, big_iova).map(|t| t.2) == Some(1)
                && iommu.translate(d1, big_iova + 0x1000).is_none(),
        );
        fill(big_pa, 0x3000, 0);
        e1.dma(big_iova + 0x1000, DMA_LEN, true);
        c.check(
            "s: DMA into the hole blocked (no stale 2 MiB translation)",
            all_bytes(big_pa + 0x1000, 0),
        );
        e1.dma(big_iova + 0x2000, DMA_LEN, true);
        c.check(
            "s: DMA next to the hole still lands",
            holds_pattern(big_pa + 0x2000, 0x88),
        );
        let f = faults(iommu);
        let name = "s: fault names edu and the hole";
        check_fault(c, name, &f, e1.bdf, big_iova + 0x1000, log_works);
        iommu.map(
            d1,
            big_iova + 0x1000,
            big_pa + 0x1000,
            4096,
            Perm::READ | Perm::WRITE,
        )?;
        c.check(
            "s: mapping the hole merged the 2 MiB page back",
            iommu.translate(d1, big_iova).map(|t| t.2) == Some(2),
        );
        fill(big_pa, 0x3000, 0);
        e1.dma(big_iova + 0x1000, DMA_LEN, true);
        c.check(
            "s: DMA through the merged page lands",
            holds_pattern(big_pa + 0x1000, 0x88),
        );
        iommu.unmap(d1, big_iova, 2 << 20)?;
    }
    // A 1 GiB page: IOVA 4 GiB + x -> physical x.
    if iommu.hw().max_leaf_level() >= 3 {
        let giant = 4u64 << 30;
        iommu.map(d1, giant, 0, 1 << 30, Perm::READ | Perm::WRITE)?;
        c.check(
            "s: 1 GiB range mapped by one 1 GiB leaf",
            iommu.translate(d1, giant).map(|t| t.2) == Some(3),
        );
        fill(CHECK, 4096, 0);
        pattern(0x99);
        e1.dma(IOVA_SRC, DMA_LEN, false);
        e1.dma(giant + CHECK, DMA_LEN, true);
        c.check(
            "s: DMA through the 1 GiB page lands at its offset",
            holds_pattern(CHECK, 0x99),
        );
        iommu.unmap(d1, giant, 1 << 30)?;
        fill(CHECK, 4096, 0);
        e1.dma(giant + CHECK, DMA_LEN, true);
        c.check(
            "s: after unmapping the 1 GiB page the DMA is blocked",
            all_bytes(CHECK, 0),
        );
        let _ = faults(iommu);
    }

    // e. MSIs through the remapping table.
    if !msi {
        println!("skip e: interrupt remapping not enabled in this configuration");
        iommu.detach(e1.bdf)?;
        iommu.detach(e2.bdf)?;
        iommu.destroy_domain(d1)?;
        iommu.destroy_domain(d2)?;
        return Ok(());
    }
    let before = hw::all_interrupts();
    let (index, msg) = iommu.map_msi(e1.bdf, 0x51, 0)?;
    println!(
        "     msi: entry {index} address {:#x} data {:#x}",
        msg.address, msg.data
    );
    e1.set_msi(msg.address, msg.data);
    e1.raise();
    c.check(
        "e: MSI arrived at the programmed vector 0x51 (handler ran once)",
        hw::interrupts(0x51) == 1 && hw::all_interrupts() == before + 1,
    );
    // An entry that is not programmed: nothing may arrive.
    let before = hw::all_interrupts();
    let (index2, msg2) = iommu.map_msi(e1.bdf, 0x62, 0)?;
    iommu.unmap_msi(e1.bdf, index2)?;
    e1.set_msi(msg2.address, msg2.data);
    e1.raise();
    c.check(
        "e: MSI through an invalidated entry blocked",
        hw::all_interrupts() == before,
    );
    // edu2's entry, used by edu1: it must never reach edu2's vector. VT-d has one table
    // and validates the source id: nothing arrives. AMD-Vi tables are per device: the
    // index resolves in edu1's own table (its entry 0 is vector 0x51).
    let before = hw::all_interrupts();
    let (index3, msg3) = iommu.map_msi(e2.bdf, 0x73, 0)?;
    e1.set_msi(msg3.address, msg3.data);
    e1.raise();
    c.check(
        "e: MSI through another device's entry never reaches its vector",
        hw::interrupts(0x73) == 0,
    );
    if vendor == Vendor::Vtd {
        c.check(
            "e: VT-d source-id validation blocked it entirely",
            hw::all_interrupts() == before,
        );
    } else {
        c.check(
            "e: AMD-Vi resolved it in edu1's own table (entry 0, vector 0x51)",
            hw::interrupts(0x51) == 2 && hw::all_interrupts() == before + 1,
        );
    }
    // And edu2 itself reaches its vector through that entry.
    e2.set_msi(msg3.address, msg3.data);
    e2.raise();
    c.check(
        "e: edu2's own MSI arrives at 0x73",
        hw::interrupts(0x73) == 1,
    );
    iommu.unmap_msi(e2.bdf, index3)?;
    let _ = faults(iommu);

    // Teardown through the API.
    iommu.detach(e1.bdf)?;
    iommu.detach(e2.bdf)?;
    iommu.destroy_domain(d1)?;
    iommu.destroy_domain(d2)?;
    Ok(())
}

#[allow(unsafe_code)] // the boot code calls `kmain` by name
#[unsafe(no_mangle)]
extern "C" fn kmain(mb_info: u32) -> ! {
    // SAFETY-free: the heap range is reserved RAM below the driver's pool.
    init_heap();
    hw::mask_pic();
    HAL_REF.mmio_write32(LAPIC + 0xf0, 0x1ff);
    hw::init_interrupts();
    println!("iommu testkernel");
    let edus = find_edus();
    println!("edu devices: {}", edus.len());
    let mut c = Checker { failed: 0 };
    if edus.len() < 2 {
        println!("need two edu devices");
        println!("VERDICT FAIL");
        hw::exit(1);
    }
    let result = if let Some(t) = acpi_table(b"DMAR") {
        dump("DMAR", t);
        let dmar = Dmar::parse(t).expect("DMAR parses");
        let unit = &dmar.units[0];
        println!(
            "DMAR: haw {} flags {:#x}, unit at {:#x}",
            dmar.host_address_width, dmar.flags, unit.base
        );
        // "regs" on the command line: register-based invalidation (interrupt remapping
        // needs the queue, so it is off then).
        let regs = cmdline(mb_info).split(' ').any(|w| w == "regs");
        let bench = msibench::requested(cmdline(mb_info));
        let config = VtdConfig {
            register_invalidation: regs,
            interrupt_remapping: !regs,
        };
        match Vtd::new(HAL_REF, unit.base, unit.coverage(), config) {
            Ok(mut vtd) => {
                println!(
                    "VT-d: cap {:#x} ecap {:#x} levels {} caching-mode {} queued {}",
                    vtd.cap.raw,
                    vtd.ecap.raw,
                    vtd.page_table_levels(),
                    vtd.cap.caching_mode,
                    vtd.queued()
                );
                // Fault events: an MSI (compatibility format, the unit's own) to vector 0x90.
                vtd.set_fault_interrupt(sluice_iommu::MsiMessage {
                    address: LAPIC,
                    data: u32::from(FAULT_VECTOR),
                });
                let mut iommu = Iommu::new(vtd);
                let quiet_before = hw::interrupts(FAULT_VECTOR) == 0;
                let r = run(&mut iommu, &edus, &mut c, Vendor::Vtd, !regs, bench);
                if bench.is_none() {
                    c.check(
                        "faults raised the fault-event interrupt (vector 0x90)",
                        quiet_before && hw::interrupts(FAULT_VECTOR) > 0,
                    );
                }
                println!("invalidations issued: {}", iommu.hw().invalidations());
                r
            }
            Err(e) => Err(e),
        }
    } else if let Some(t) = acpi_table(b"IVRS") {
        dump("IVRS", t);
        let ivrs = Ivrs::parse(t).expect("IVRS parses");
        let unit = &ivrs.units[0];
        let cap = hw::pci_read32(
            (unit.device_id >> 8) as u8,
            ((unit.device_id >> 3) & 0x1f) as u8,
            (unit.device_id & 7) as u8,
            unit.capability_offset as u8,
        );
        println!(
            "IVRS: ivinfo {:#x}, unit at {:#x}, cap header {cap:#x}",
            ivrs.iv_info, unit.base
        );
        let config = AmdViConfig {
            np_cache: cap & (1 << 26) != 0,
            va_bits: ivrs.va_bits(),
        };
        match AmdVi::new(HAL_REF, unit.base, unit.coverage(), config) {
            Ok(amd) => {
                println!(
                    "AMD-Vi: efr {:#x} levels {}",
                    amd.ext_features,
                    amd.page_table_levels()
                );
                let mut iommu = Iommu::new(amd);
                let bench = msibench::requested(cmdline(mb_info));
                let r = run(&mut iommu, &edus, &mut c, Vendor::AmdVi, true, bench);
                println!("invalidations issued: {}", iommu.hw().invalidations());
                r
            }
            Err(e) => Err(e),
        }
    } else {
        println!("no DMAR or IVRS table");
        Err(Error::Unsupported("an IOMMU"))
    };
    if let Err(e) = result {
        println!("FAIL driver error: {e}");
        c.failed += 1;
    }
    if c.failed == 0 {
        println!("VERDICT PASS");
        hw::exit(0x10)
    } else {
        println!("VERDICT FAIL ({} checks failed)", c.failed);
        hw::exit(1)
    }
}

/// The kernel command line from the multiboot information (flags bit 2).
fn cmdline(mb_info: u32) -> &'static str {
    let info = hw::phys_slice(u64::from(mb_info), 20);
    if info[0] & 4 == 0 {
        return "";
    }
    let pa = u64::from(u32::from_le_bytes([info[16], info[17], info[18], info[19]]));
    let bytes = hw::phys_slice(pa, 256);
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

fn init_heap() {
    // The heap is RAM the boot code identity-maps and nothing else uses.
    hw::init_heap(&HEAP, HEAP_START, HEAP_SIZE);
}
