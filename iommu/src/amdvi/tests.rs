//! AMD-Vi protocol tests against the mock's emulated command buffer, with QEMU 7.2's
//! amd-iommu extended features.

extern crate std;

use super::*;
use crate::hal::mock::{Consumed, MockHal, Model};
use crate::{FaultKind, Iommu, Perm};
use alloc::vec::Vec;

const BASE: u64 = 0xfed8_0000;
const EFR: u64 = 0x29d3;
const RW: Perm = Perm::READ.union(Perm::WRITE);

fn edu() -> Bdf {
    Bdf::new(0, 4, 0)
}

fn unit(np_cache: bool) -> Iommu<AmdVi<&'static MockHal>> {
    unit_with(np_cache, 0)
}

fn unit_with(np_cache: bool, va_bits: u8) -> Iommu<AmdVi<&'static MockHal>> {
    let hal: &'static MockHal = std::boxed::Box::leak(std::boxed::Box::new(MockHal::new(
        256 << 20,
        Model::AmdVi {
            base: BASE,
            efr: EFR,
        },
    )));
    let coverage = Coverage {
        segment: 0,
        all: false,
        ranges: alloc::vec![(0x20, 0x20), (0x28, 0x28)],
    };
    let config = AmdViConfig { np_cache, va_bits };
    Iommu::new(AmdVi::new(hal, BASE, coverage, config).unwrap())
}

/// Consumed commands, COMPLETION_WAITs dropped.
fn commands(hal: &MockHal) -> Vec<[u64; 2]> {
    hal.consumed()
        .into_iter()
        .filter_map(|c| match c {
            Consumed::Queued(c) if c[0] >> 60 != opcode::COMPLETION_WAIT => Some(c),
            _ => None,
        })
        .collect()
}

fn dte(iommu: &mut Iommu<AmdVi<&'static MockHal>>, id: u16) -> [u64; 4] {
    let hal = *iommu.hw().hal();
    let e = iommu.hw().dte(id);
    [0, 8, 16, 24].map(|o| hal.read_phys_u64(e + o))
}

#[test]
fn init_blocks_every_device_and_enables() {
    let mut iommu = unit(false);
    let hal = *iommu.hw().hal();
    assert_eq!(
        hal.reg(BASE + CONTROL),
        (Control::IOMMU_EN | Control::EVENT_LOG_EN | Control::CMD_BUF_EN).bits()
    );
    assert_eq!(hal.reg(BASE + DEVICE_TABLE_BASE) & 0x1ff, 511);
    assert_eq!(hal.reg(BASE + COMMAND_BASE) >> 56, COMMAND_LOG2);
    for id in [0u16, 0x20, 0xffff] {
        assert_eq!(
            dte(&mut iommu, id),
            [DTE_V | DTE_TV, 0, DTE_IV, 0],
            "device {id:#x}"
        );
    }
    assert_eq!(iommu.hw().page_table_levels(), 4);
}

#[test]
fn attach_points_the_dte_at_the_domain_and_invalidates() {
    let mut iommu = unit(false);
    let dom = iommu.create_domain().unwrap();
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    iommu.attach(dom, edu()).unwrap();
    let e = dte(&mut iommu, 0x20);
    assert_eq!(e[0] & 0xfff, DTE_V | DTE_TV | (4 << 9));
    assert_eq!(e[0] & (DTE_IR | DTE_IW), DTE_IR | DTE_IW);
    assert_ne!(e[0] & 0x000f_ffff_ffff_f000, 0);
    assert_eq!(e[1], u64::from(dom));
    let c = commands(hal);
    assert_eq!(c[0], [0x20 | (opcode::INVALIDATE_DEVTAB_ENTRY << 60), 0]);
    assert_eq!(
        c[1][0],
        (u64::from(dom) << 32) | (opcode::INVALIDATE_IOMMU_PAGES << 60)
    );
    assert_eq!(
        c[1][1],
        0x7fff_ffff_ffff_f000 | 3,
        "whole domain, S and PDE"
    );
    // Every command batch ends with a COMPLETION_WAIT whose store the driver waited for.
    assert!(
        matches!(hal.consumed().last(), Some(Consumed::Queued(c)) if c[0] >> 60 == 1 && c[0] & 1 == 1)
    );
    iommu.detach(edu()).unwrap();
    assert_eq!(dte(&mut iommu, 0x20), [DTE_V | DTE_TV, 0, DTE_IV, 0]);
}

#[test]
fn invalidation_ranges_use_the_size_encoding() {
    let mut iommu = unit(false);
    let dom = iommu.create_domain().unwrap();
    let hal = *iommu.hw().hal();
    iommu.map(dom, 1 << 30, 8 << 30, 1 << 30, RW).unwrap();
    hal.clear_consumed();
    iommu.unmap(dom, (1 << 30) + 0x5000, 0x1000).unwrap();
    let c = commands(hal);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0][1], (1 << 30) + 0x5000, "one page: S=0");
    hal.clear_consumed();
    iommu.unmap(dom, 1 << 30, 1 << 30).unwrap();
    let c = commands(hal);
    assert_eq!(c.len(), 1, "1 GiB unmap: one command");
    let addr = c[0][1];
    assert_eq!(addr & 1, 1, "S");
    assert_eq!(addr & 2, 2, "tables were freed: PDE");
    // Lowest clear bit at or above 12 is bit 29: a 2^30-byte range at 1 GiB.
    assert_eq!(addr & !0xfff, (1 << 30) | ((1 << 29) - 1) & !0xfff);
}

#[test]
fn np_cache_flushes_after_map() {
    let mut iommu = unit(true);
    let dom = iommu.create_domain().unwrap();
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    iommu.map(dom, 0x2000, 0x40_0000, 0x2000, RW).unwrap();
    let c = commands(hal);
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0][1] & !0xfff,
        0x2000,
        "two pages: base 0x2000, bit 12 clear"
    );
    assert_eq!(c[0][1] & 1, 1);
}

#[test]
fn event_log_entries_are_decoded() {
    let mut iommu = unit(false);
    let hal = *iommu.hw().hal();
    let log = iommu.hw().event_log_base();
    // QEMU 7.2's IO_PAGE_FAULT: devfn, info (IOPF | I | IOMMU_WO) at bit 48, address.
    hal.write_phys_u64(log, 0x20 | ((0x2000u64 | 8 | 2) << 48));
    hal.write_phys_u64(log + 8, 0x800_1000);
    // A spec-format ILLEGAL_DEV_TABLE_ENTRY for 01:00.0.
    hal.write_phys_u64(log + 16, 0x100 | (1 << 60));
    hal.write_phys_u64(log + 24, 0xdead_0000);
    // The tail register stays 0 as in QEMU 7.2: entries are still found.
    let mut got = Vec::new();
    assert_eq!(iommu.drain_faults(&mut |f| got.push(f)).unwrap(), 2);
    assert_eq!(
        (got[0].device, got[0].address, got[0].kind, got[0].code),
        (edu(), 0x800_1000, FaultKind::Write, 2)
    );
    assert_eq!(got[0].reason, "IO_PAGE_FAULT");
    assert_eq!(
        (got[1].device, got[1].kind, got[1].reason),
        (
            Bdf::new(1, 0, 0),
            FaultKind::Other,
            "ILLEGAL_DEV_TABLE_ENTRY"
        )
    );
    // Consumed entries are cleared and the log restarted empty.
    assert_eq!(hal.read_phys_u64(log), 0);
    assert_eq!(hal.reg(BASE + EVENT_HEAD), 0);
    assert_eq!(
        iommu
            .drain_faults(&mut |_| panic!("no more events"))
            .unwrap(),
        0
    );
    // Spec behaviour: the tail register names the entries; a read fault.
    hal.write_phys_u64(log, 0x28 | ((0x2000u64) << 48));
    hal.write_phys_u64(log + 8, 0x1234_5000);
    hal.set_reg(BASE + EVENT_TAIL, 1 << 4);
    got.clear();
    let n = iommu.drain_faults(&mut |f| got.push(f)).unwrap();
    assert_eq!(n, 1, "{got:x?}");
    assert_eq!(
        (got[0].device, got[0].kind),
        (Bdf::new(0, 5, 0), FaultKind::Read)
    );
    // Overflow is counted and the log restarted.
    hal.set_reg(BASE + STATUS, Status::EVENT_OVERFLOW.bits());
    iommu.drain_faults(&mut |_| ()).unwrap();
    assert_eq!(iommu.hw().lost_events, 1);
}

#[test]
fn interrupt_remapping_table_per_device() {
    let mut iommu = unit(false);
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    let (index, msg) = iommu.map_msi(edu(), 0x51, 2).unwrap();
    assert_eq!((index, msg.address, msg.data), (0, 0xfee0_0000, 0));
    let e = dte(&mut iommu, 0x20);
    assert_eq!(e[2] & 0x1f, DTE_IV | (8 << 1));
    assert_eq!(e[2] >> 60, 2, "IntCtl: remapped");
    let table = e[2] & 0x000f_ffff_ffff_ffc0;
    assert_eq!(read_phys_u32(hal, table), 1 | (2 << 8) | (0x51 << 16));
    let c = commands(hal);
    assert_eq!(
        c.last().unwrap()[0],
        0x20 | (opcode::INVALIDATE_INTERRUPT_TABLE << 60)
    );
    // Another device gets its own table: the same index there is a different entry.
    let (index2, _) = iommu.map_msi(Bdf::new(0, 5, 0), 0x73, 0).unwrap();
    assert_eq!(index2, 0);
    assert_ne!(dte(&mut iommu, 0x28)[2] & 0x000f_ffff_ffff_ffc0, table);
    iommu.unmap_msi(edu(), 0).unwrap();
    assert_eq!(read_phys_u32(hal, table), 0);
    // Attaching keeps the interrupt settings.
    let dom = iommu.create_domain().unwrap();
    iommu.attach(dom, edu()).unwrap();
    assert_eq!(dte(&mut iommu, 0x20)[2], e[2]);
}

#[test]
fn events_decode_by_type() {
    let flags = AccessFlags::PR | AccessFlags::RW | AccessFlags::PE;
    let e = [
        0x20 | (0x2 << 60) | (7 << 32) | (u64::from(flags.bits()) << 48),
        0x1000,
    ];
    assert_eq!(
        Event::decode(e),
        Event::IoPageFault {
            device: 0x20,
            domain: 7,
            address: 0x1000,
            flags
        }
    );
    assert_eq!(decode_event(0, e).kind, FaultKind::Write);
    assert_eq!(
        Event::decode([5 << 60, 0xabc0]),
        Event::IllegalCommandError { address: 0xabc0 }
    );
    assert_eq!(
        Event::decode([0x28 | (7 << 60), 0x5000]),
        Event::IotlbInvTimeout {
            device: 0x28,
            address: 0x5000
        }
    );
    assert!(matches!(
        Event::decode([0xb << 60, 0]),
        Event::Other { code: 0xb, .. }
    ));
    // A blocked interrupt request (spec encoding: I set, no RW).
    let e = [
        0x20 | (0x2 << 60) | (u64::from(AccessFlags::I.bits()) << 48),
        0xfee0_0000,
    ];
    assert_eq!(decode_event(0, e).kind, FaultKind::Interrupt);
    // A spec read fault.
    let e = [
        0x20 | (0x2 << 60) | (u64::from(AccessFlags::PR.bits()) << 48),
        0x3000,
    ];
    assert_eq!(decode_event(0, e).kind, FaultKind::Read);
    // QEMU 7.2's read fault: I | IOMMU_RO in bit 0.
    let e = [0x20 | (0x2 << 60) | (0x9 << 48), 0x3000];
    assert_eq!(decode_event(0, e).kind, FaultKind::Read);
}

#[test]
fn levels_follow_the_address_width() {
    for (va_bits, levels) in [(0, 4), (39, 3), (48, 4), (57, 5), (64, 6)] {
        // QEMU's EFR (0x29d3) has HATS=2: up to 6 levels.
        let mut iommu = unit_with(false, va_bits);
        assert_eq!(iommu.hw().page_table_levels(), levels, "{va_bits} bits");
        let dom = iommu.create_domain().unwrap();
        iommu.attach(dom, edu()).unwrap();
        assert_eq!((dte(&mut iommu, 0x20)[0] >> 9) & 7, u64::from(levels));
        // Ranges are end-exclusive u64s: the last page of a 64-bit space is not mappable.
        let top = if levels == 6 {
            u64::MAX - 0x1fff
        } else {
            (1u64 << (12 + 9 * u32::from(levels))) - 4096
        };
        iommu.map(dom, top, 0x10_0000, 4096, RW).unwrap();
        assert_eq!(iommu.translate(dom, top + 5), Some((0x10_0005, RW, 1)));
        assert!(iommu.map(dom, top, 0x10_0000, 8192, RW).is_err());
        assert_eq!(iommu.unmap(dom, top, 4096), Ok(4096));
    }
}

#[test]
fn command_buffer_wraps() {
    let mut iommu = unit(false);
    let dom = iommu.create_domain().unwrap();
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    // 300 unmaps: 600 commands through a 256-entry buffer.
    for i in 0..300u64 {
        iommu
            .map(dom, i << 12, 0x100_0000 + (i << 12), 4096, RW)
            .unwrap();
        iommu.unmap(dom, i << 12, 4096).unwrap();
    }
    let c = commands(hal);
    assert_eq!(c.len(), 300);
    assert!(c
        .iter()
        .enumerate()
        .all(|(i, c)| c[1] & !0xfff == (i as u64) << 12));
    assert_eq!(hal.reg(BASE + COMMAND_HEAD), hal.reg(BASE + COMMAND_TAIL));
}
