//! `vpci`: the `assign=` parser, the guest MSI checks, the 0xCF8/0xCFC mechanism over a
//! fake bus with QEMU's edu (its real config bytes, from sluice-pciback's fakes), and the
//! device-interrupt IRR.

use crate::arch::svm::SvmVcpu;
use crate::vpci::{self, Assigned, DomainPci, GuestMsi, ParseError};
use sluice_pciback::fake::{qemu, FakeBus};
use sluice_pciback::inventory;
use sluice_pciback::vcfg::{Event, VirtualConfig};
use sluice_pciback::Bdf;
use std::prelude::rust_2021::*;

const EDU: Bdf = Bdf {
    segment: 0,
    bus: 0,
    device: 4,
    function: 0,
};

#[test]
fn assign_lists() {
    assert_eq!(vpci::parse_assign("name=x role=abi"), Ok(vec![]));
    assert_eq!(
        vpci::parse_assign("name=x assign=00:04.0"),
        Ok(vec![Bdf::new(0, 4, 0)])
    );
    assert_eq!(
        vpci::parse_assign("assign=00:05.0,00:05.1 memory=16"),
        Ok(vec![Bdf::new(0, 5, 0), Bdf::new(0, 5, 1)])
    );
    assert_eq!(
        vpci::parse_assign("assign=ff:1f.7"),
        Ok(vec![Bdf::new(0xff, 0x1f, 7)])
    );
    for bad in [
        "assign=",
        "assign=00:20.0",
        "assign=00:04.8",
        "assign=00:04",
        "assign=004.0",
        "assign=100:04.0",
        "assign=00:04.0,",
        "assign=00:04.0,zz",
        "assign=0000:00:04.0",
        "assign=+0:04.0",
    ] {
        assert_eq!(vpci::parse_assign(bad), Err(ParseError::BadBdf), "{bad}");
    }
    assert_eq!(
        vpci::parse_assign("assign=00:04.0,00:04.0"),
        Err(ParseError::Duplicate(Bdf::new(0, 4, 0)))
    );
    let nine = (0..9)
        .map(|d| format!("00:{d:02x}.0"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        vpci::parse_assign(&format!("assign={nine}")),
        Err(ParseError::TooMany)
    );
}

#[test]
fn guest_msi_checked() {
    assert_eq!(
        vpci::guest_msi(0xFEE0_0000, 0x41, 1),
        Ok(GuestMsi {
            vector: 0x41,
            vcpu: 0
        })
    );
    assert_eq!(
        vpci::guest_msi(0xFEE0_2000, 0xfe, 2),
        Ok(GuestMsi {
            vector: 0xfe,
            vcpu: 1
        })
    );
    for (addr, data, why) in [
        (0xFED0_0000, 0x41, "window"),
        (0x1_FEE0_0000, 0x41, "window"),
        (0xFEE0_0004, 0x41, "logical"),
        (0xFEE0_0010, 0x41, "remappable"),
        (0xFEE0_0000, 0x141, "fixed"),
        (0xFEE0_0000, 0x441, "fixed"),
        (0xFEE0_0000, 0x8041, "level"),
        (0xFEE0_0000, 0x0f, "below 16"),
        (0xFEE0_1000, 0x41, "none of"),
        (0xFEE0_2000, 0x41, "none of"),
        (0xFEEF_F000, 0x41, "none of"),
    ] {
        let e = vpci::guest_msi(addr, data, 1).unwrap_err();
        assert!(e.contains(why), "{addr:#x} {data:#x}: {e}");
    }
}

fn edu_domain() -> (FakeBus, DomainPci) {
    let mut bus = FakeBus::new(vec![qemu::edu(EDU), qemu::host_bridge(Bdf::new(0, 0, 0))]);
    let f = inventory::describe(&mut bus, EDU, None);
    let mut pci = DomainPci::default();
    pci.functions.push(Assigned {
        host: EDU,
        unit: 0,
        vcfg: VirtualConfig::new(&f, &[(0, 8 << 20)], &[(0xFEC0_0000, 0xFF00_0000)], 1 << 36),
        bars: Vec::new(),
        msi: None,
        msix: Vec::new(),
        slot: Some(0),
    });
    (bus, pci)
}

fn cf8(bdf: Bdf, off: u32) -> u32 {
    1 << 31
        | u32::from(bdf.bus) << 16
        | u32::from(bdf.device) << 11
        | u32::from(bdf.function) << 8
        | off
}

/// OUT then IN through the mechanism; returns the IN's value and all events.
fn rd(bus: &mut FakeBus, pci: &mut DomainPci, addr: u32, port: u16, size: u8) -> u32 {
    assert!(pci.pio(bus, 0xCF8, 4, false, addr).events.is_empty());
    pci.pio(bus, port, size, true, 0).value.unwrap()
}

fn wr(
    bus: &mut FakeBus,
    pci: &mut DomainPci,
    addr: u32,
    port: u16,
    size: u8,
    v: u32,
) -> Vec<Event> {
    pci.pio(bus, 0xCF8, 4, false, addr);
    let e = pci.pio(bus, port, size, false, v);
    assert_eq!(e.value, None);
    e.events
        .into_iter()
        .map(|(i, e)| {
            assert_eq!(i, 0);
            e
        })
        .collect()
}

#[test]
fn config_ports() {
    let (mut bus, mut pci) = edu_domain();
    // The latch reads back with its reserved bits (30:24, 1:0) cleared.
    pci.pio(&mut bus, 0xCF8, 4, false, 0xFFFF_FFFF);
    assert_eq!(
        pci.pio(&mut bus, 0xCF8, 4, true, 0).value,
        Some(0x80FF_FFFC)
    );
    assert_eq!(rd(&mut bus, &mut pci, cf8(EDU, 0), 0xCFC, 4), 0x11e8_1234);
    assert_eq!(rd(&mut bus, &mut pci, cf8(EDU, 0), 0xCFE, 2), 0x11e8);
    assert_eq!(rd(&mut bus, &mut pci, cf8(EDU, 0), 0xCFD, 1), 0x12);
    // Misaligned for its width, the enable bit off, another function (present on the
    // bus, not assigned), narrow accesses to 0xCF8..0xCFB: all-ones, nothing reaches a
    // device.
    assert_eq!(rd(&mut bus, &mut pci, cf8(EDU, 0), 0xCFD, 2), 0xffff);
    assert_eq!(
        rd(&mut bus, &mut pci, cf8(EDU, 0) & !(1 << 31), 0xCFC, 4),
        u32::MAX
    );
    // 00:00.0 is the emulated host bridge, never the host's (whose ids differ in the
    // fake): ids, class 06/00/00, header type 0, zero elsewhere; misaligned all-ones.
    let hb = Bdf::new(0, 0, 0);
    assert_eq!(rd(&mut bus, &mut pci, cf8(hb, 0), 0xCFC, 4), 0x0008_1b36);
    assert_eq!(rd(&mut bus, &mut pci, cf8(hb, 0), 0xCFE, 2), 0x0008);
    assert_eq!(rd(&mut bus, &mut pci, cf8(hb, 8), 0xCFC, 4), 0x0600_0000);
    assert_eq!(rd(&mut bus, &mut pci, cf8(hb, 8), 0xCFF, 1), 0x06);
    assert_eq!(
        rd(&mut bus, &mut pci, cf8(hb, 0xC), 0xCFE, 1),
        0,
        "header type 0"
    );
    assert_eq!(rd(&mut bus, &mut pci, cf8(hb, 0x10), 0xCFC, 4), 0, "no BAR");
    assert_eq!(
        rd(&mut bus, &mut pci, cf8(hb, 0x34), 0xCFC, 1),
        0,
        "no capabilities"
    );
    assert_eq!(
        rd(&mut bus, &mut pci, cf8(hb, 0), 0xCFD, 2),
        0xffff,
        "misaligned"
    );
    assert_eq!(rd(&mut bus, &mut pci, cf8(hb, 0), 0xCFC, 2), 0x1b36);
    // Another absent function: all-ones.
    assert_eq!(
        rd(&mut bus, &mut pci, cf8(Bdf::new(0, 1, 0), 0), 0xCFC, 4),
        u32::MAX
    );
    assert_eq!(pci.pio(&mut bus, 0xCF9, 1, true, 0).value, Some(0xff));
    assert_eq!(pci.pio(&mut bus, 0xCFA, 2, true, 0).value, Some(0xffff));
    assert_eq!(pci.pio(&mut bus, 0xCFC, 3, true, 0).value, Some(u32::MAX));
    let writes = bus.write_count();
    wr(&mut bus, &mut pci, cf8(Bdf::new(0, 0, 0), 4), 0xCFC, 2, 0x6);
    assert_eq!(
        rd(&mut bus, &mut pci, cf8(hb, 4), 0xCFC, 2),
        0,
        "took no write"
    );
    pci.pio(&mut bus, 0xCF9, 1, false, 0x0e); // reset control: ignored
    wr(&mut bus, &mut pci, cf8(EDU, 4) & !(1 << 31), 0xCFC, 2, 0x6);
    assert_eq!(bus.write_count(), writes, "a write reached a device");
}

#[test]
fn bar_and_msi_through_the_ports() {
    let (mut bus, mut pci) = edu_domain();
    let a = |off| cf8(EDU, off);
    assert!(wr(&mut bus, &mut pci, a(0x10), 0xCFC, 4, u32::MAX).is_empty());
    assert_eq!(
        rd(&mut bus, &mut pci, a(0x10), 0xCFC, 4) & !0xf,
        0xFFF0_0000
    );
    wr(&mut bus, &mut pci, a(0x10), 0xCFC, 4, 0xE000_0000);
    let ev = wr(&mut bus, &mut pci, a(4), 0xCFC, 2, 0x6);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::MapBar {
                index: 0,
                guest: 0xE000_0000,
                size: 0x10_0000,
                ..
            }]
        ),
        "{ev:?}"
    );
    // Over its RAM: refused.
    wr(&mut bus, &mut pci, a(4), 0xCFC, 2, 0);
    wr(&mut bus, &mut pci, a(0x10), 0xCFC, 4, 0x0010_0000);
    let ev = wr(&mut bus, &mut pci, a(4), 0xCFC, 2, 0x2);
    assert!(
        matches!(ev.as_slice(), [Event::BarRefused { index: 0, .. }]),
        "{ev:?}"
    );
    // MSI (edu: capability at 0x40, 64-bit): enabling gives the guest's message.
    let msi = 0x40;
    assert_eq!(rd(&mut bus, &mut pci, a(msi), 0xCFC, 1), 0x05);
    wr(&mut bus, &mut pci, a(msi + 4), 0xCFC, 4, 0xFEE0_0000);
    wr(&mut bus, &mut pci, a(msi + 8), 0xCFC, 4, 0);
    wr(&mut bus, &mut pci, a(msi + 12), 0xCFC, 2, 0x41);
    let ev = wr(&mut bus, &mut pci, a(msi), 0xCFE, 2, 1);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::MsiEnable {
                addr: 0xFEE0_0000,
                data: 0x41,
                ..
            }]
        ),
        "{ev:?}"
    );
}

#[test]
fn device_interrupts_as_an_irr() {
    let mut pci = DomainPci::default();
    let mut v = SvmVcpu::default();
    let m = |vector| GuestMsi { vector, vcpu: 0 };
    assert!(!pci.due(0));
    // Twice before it is injected: merged, as a LAPIC's IRR does.
    pci.raise(m(0x41));
    pci.raise(m(0x41));
    pci.raise(m(0x90));
    pci.raise(GuestMsi {
        vector: 0x50,
        vcpu: 1,
    });
    pci.raise(GuestMsi {
        vector: 0x50,
        vcpu: 99,
    });
    assert!(pci.due(0) && pci.due(1));
    vpci::before_entry(&mut pci, 0, &mut v);
    assert_eq!(v.virq, Some(0x90), "highest first");
    // Still pending in the vCPU: nothing more injected.
    vpci::before_entry(&mut pci, 0, &mut v);
    assert_eq!(v.virq, Some(0x90));
    v.virq = None;
    vpci::before_entry(&mut pci, 0, &mut v);
    assert_eq!(v.virq, Some(0x41));
    v.virq = None;
    vpci::before_entry(&mut pci, 0, &mut v);
    assert_eq!(v.virq, None);
    assert!(!pci.due(0));
    assert_eq!(pci.injected, 2);
    assert_eq!(pci.take(1), Some(0x50));
    assert_eq!(pci.take(1), None);
}

#[test]
fn owned_mmio() {
    let mut pci = DomainPci::default();
    let (_, p) = edu_domain();
    let mut a = p.functions.into_iter().next().unwrap();
    a.bars.push(vpci::MappedBar {
        index: 0,
        guest: 0xE000_0000,
        host: 0xFE90_0000,
        size: 0x10_0000,
    });
    pci.functions.push(a);
    assert!(pci.owns_mmio(0xFE90_0000));
    assert!(pci.owns_mmio(0xFE9F_F000));
    assert!(!pci.owns_mmio(0xFEA0_0000));
    assert!(!pci.owns_mmio(0xFE8F_F000));
}

/// The ECAM offset of `bdf`'s register `off`.
fn ecam(bdf: Bdf, off: u64) -> u64 {
    u64::from(bdf.bus) << 20 | u64::from(bdf.device) << 15 | u64::from(bdf.function) << 12 | off
}

fn rd_port(bus: &mut FakeBus, pci: &mut DomainPci, addr: u32) -> u32 {
    rd(bus, pci, addr, 0xCFC, 4)
}

#[test]
fn ecam_window_reaches_the_same_virtual_config_space() {
    let (mut bus, mut pci) = edu_domain();
    let rd = |bus: &mut FakeBus, pci: &mut DomainPci, off, size| {
        let (v, ev) = pci.ecam(bus, off, size, true, 0);
        assert!(ev.is_empty());
        v
    };
    assert_eq!(rd(&mut bus, &mut pci, ecam(EDU, 0), 4), 0x11e8_1234);
    assert_eq!(rd(&mut bus, &mut pci, ecam(EDU, 2), 2), 0x11e8);
    assert_eq!(rd(&mut bus, &mut pci, ecam(EDU, 1), 1), 0x12);
    // Misaligned, 8 bytes, 3 bytes, a function not assigned, one on another bus, past
    // the window: all-ones of the access's width; 00:00.0 is the emulated host bridge
    // (the host's, present on the fake bus, is never reached), its extended space zero.
    assert_eq!(rd(&mut bus, &mut pci, ecam(EDU, 1), 2), 0xffff);
    assert_eq!(rd(&mut bus, &mut pci, ecam(EDU, 0), 8), u64::MAX);
    assert_eq!(rd(&mut bus, &mut pci, ecam(EDU, 0), 3), 0xff_ffff);
    assert_eq!(
        rd(&mut bus, &mut pci, ecam(Bdf::new(0, 0, 0), 0), 4),
        0x0008_1b36
    );
    assert_eq!(rd(&mut bus, &mut pci, ecam(Bdf::new(0, 0, 0), 0x100), 4), 0);
    assert_eq!(
        rd(&mut bus, &mut pci, ecam(Bdf::new(0, 3, 0), 0), 4),
        0xffff_ffff
    );
    assert_eq!(
        rd(&mut bus, &mut pci, ecam(Bdf::new(1, 4, 0), 0), 4),
        0xffff_ffff
    );
    assert_eq!(rd(&mut bus, &mut pci, vpci::ECAM_SIZE, 4), 0xffff_ffff);
    // Extended config space of the function (offset >= 256) is its virtual one too:
    // nothing there on edu.
    assert_ne!(rd(&mut bus, &mut pci, ecam(EDU, 0x100), 4), 0x11e8_1234);
    // Nothing but the assigned function's handlers is written.
    let writes = bus.write_count();
    for (off, size) in [
        (ecam(Bdf::new(0, 0, 0), 4), 2),
        (ecam(EDU, 4), 8),
        (ecam(EDU, 5), 2),
    ] {
        let (_, ev) = pci.ecam(&mut bus, off, size, false, 0x6);
        assert!(ev.is_empty());
    }
    assert_eq!(bus.write_count(), writes, "a write reached a device");
    // A BAR placed and decode enabled through ECAM: the same event as through the ports,
    // and the BAR reads back through 0xCF8/0xCFC.
    pci.ecam(&mut bus, ecam(EDU, 0x10), 4, false, 0xE000_0000);
    let (_, ev) = pci.ecam(&mut bus, ecam(EDU, 4), 2, false, 0x6);
    assert!(matches!(
        ev.as_slice(),
        [(
            0,
            Event::MapBar {
                index: 0,
                guest: 0xE000_0000,
                size: 0x10_0000,
                ..
            }
        )]
    ));
    assert_eq!(
        rd_port(&mut bus, &mut pci, cf8(EDU, 0x10)) & !0xf,
        0xE000_0000
    );
}

#[test]
fn msix_pages_are_found_by_guest_address_and_nothing_else_is() {
    use crate::vpci::{MappedBar, MsixArea, MsixHit};
    let nic = Bdf::new(0, 2, 0);
    let mut bus = FakeBus::new(vec![qemu::e1000e(nic), qemu::edu(EDU)]);
    let mut pci = DomainPci::default();
    for (bdf, bars) in [
        // e1000e: BAR0 registers, BAR3 the MSI-X table (0) and PBA (0x2000), 16 KiB.
        (
            nic,
            vec![
                (0u8, 0xE000_0000u64, 0xFEB0_0000u64, 128u64 << 10),
                (3, 0xE010_0000, 0xFEB8_0000, 16 << 10),
            ],
        ),
        (EDU, vec![(0, 0xE020_0000, 0xFEC0_0000, 1 << 20)]),
    ] {
        let f = inventory::describe(&mut bus, bdf, None);
        pci.functions.push(Assigned {
            host: bdf,
            unit: 0,
            vcfg: VirtualConfig::new(&f, &[(0, 8 << 20)], &[], 1 << 36),
            bars: bars
                .into_iter()
                .map(|(index, guest, host, size)| MappedBar {
                    index,
                    guest,
                    host,
                    size,
                })
                .collect(),
            msi: None,
            msix: Vec::new(),
            slot: None,
        });
    }
    let m = pci.functions[0].vcfg.msix().expect("e1000e has MSI-X");
    assert_eq!(
        (m.entries, m.table_bir, m.table_off, m.pba_bir, m.pba_off),
        (5, 3, 0, 3, 0x2000)
    );
    let hit = |area, host| {
        Some(MsixHit {
            function: 0,
            area,
            host,
        })
    };
    let bar3 = 0xE010_0000;
    assert_eq!(
        pci.msix_hit(bar3 + 0x1C, 4),
        hit(MsixArea::Table(0x1C), 0xFEB8_001C)
    );
    assert_eq!(
        pci.msix_hit(bar3 + 0x40, 8),
        hit(MsixArea::Table(0x40), 0xFEB8_0040)
    );
    // Past the 5 entries, still in the table's page: the device's.
    assert_eq!(
        pci.msix_hit(bar3 + 0x50, 4),
        hit(MsixArea::Other, 0xFEB8_0050)
    );
    assert_eq!(
        pci.msix_hit(bar3 + 0x2000, 8),
        hit(MsixArea::Pba(0), 0xFEB8_2000)
    );
    assert_eq!(
        pci.msix_hit(bar3 + 0x2008, 4),
        hit(MsixArea::Other, 0xFEB8_2008)
    );
    // Not trapped (mapped pages), across a page end, outside any BAR, a BAR without
    // MSI-X (BAR0, edu), address overflow: none.
    for (gpa, size) in [
        (bar3 + 0x1000, 4),
        (bar3 + 0x3000, 4),
        (bar3 + 0xFFC, 8),
        (bar3 + 0x1FFE, 4),
        (bar3 + 0x4000, 4),
        (bar3 - 4, 4),
        (0xE000_0000, 4),
        (0xE020_0000, 4),
        (u64::MAX - 2, 8),
    ] {
        assert_eq!(pci.msix_hit(gpa, size), None, "{gpa:#x}+{size}");
    }
    // Unmapped (the guest moved or disabled the BAR): nothing trapped there any more.
    pci.functions[0].bars.retain(|b| b.index != 3);
    assert_eq!(pci.msix_hit(bar3 + 0x1C, 4), None);
}
