//! VT-d protocol tests against the mock's emulated registers and invalidation queue, with
//! the capability values QEMU 7.2's intel-iommu reports.

extern crate std;

use super::*;
use crate::hal::mock::{Consumed, MockHal, Model};
use crate::{Iommu, Perm};
use alloc::vec::Vec;

const BASE: u64 = 0xfed9_0000;
/// QEMU 7.2 intel-iommu: 39-bit, 2M+1G pages, PSI with MAMV 18, one fault record at 0x220.
const CAP: u64 = 0x00d2_008c_2226_0206;
/// The same with caching-mode=on,aw-bits=48.
const CAP_CM_48: u64 = 0x00d2_008c_222f_0686;
const ECAP: u64 = 0x00f0_0f4a;
const RW: Perm = Perm::READ.union(Perm::WRITE);

fn edu() -> Bdf {
    Bdf::new(0, 4, 0)
}

fn coverage() -> Coverage {
    Coverage {
        segment: 0,
        all: false,
        ranges: alloc::vec![(0x20, 0x28)],
    }
}

fn unit(cap: u64, config: VtdConfig) -> Iommu<Vtd<&'static MockHal>> {
    let hal: &'static MockHal = std::boxed::Box::leak(std::boxed::Box::new(MockHal::new(
        256 << 20,
        Model::Vtd {
            base: BASE,
            cap,
            ecap: ECAP,
        },
    )));
    Iommu::new(Vtd::new(hal, BASE, coverage(), config).unwrap())
}

/// Queued descriptors by type (wait descriptors dropped).
fn queued(hal: &MockHal) -> Vec<[u64; 2]> {
    hal.consumed()
        .into_iter()
        .filter_map(|c| match c {
            Consumed::Queued(d) if d[0] & 0xf != 5 => Some(d),
            _ => None,
        })
        .collect()
}

#[test]
fn init_programs_root_table_queue_and_enables_translation() {
    let mut iommu = unit(
        CAP,
        VtdConfig {
            interrupt_remapping: true,
            ..VtdConfig::default()
        },
    );
    let hal = *iommu.hw().hal();
    assert_ne!(hal.reg(BASE + RTADDR), 0);
    let gsts = hal.mmio_read32(BASE + GSTS);
    assert!(Global::from_bits_truncate(gsts).contains(Global::TE | Global::QIE | Global::IRE));
    assert!(
        !Global::from_bits_truncate(gsts).contains(Global::CFI),
        "compat interrupts stay blocked"
    );
    assert_eq!(hal.reg(BASE + IRTA) & 0xf, 7);
    let d = queued(hal);
    // Global context-cache, global IOTLB, global interrupt-entry cache.
    assert_eq!(d[0][0] & 0x3f, 0x11);
    assert_eq!(d[1][0] & 0x3f, 0x12);
    assert_eq!(d[2][0] & 0x1f, 0x04);
    assert_eq!(iommu.hw().page_table_levels(), 3);
}

#[test]
fn attach_writes_context_entry_and_detach_invalidates() {
    let mut iommu = unit(CAP, VtdConfig::default());
    let dom = iommu.create_domain().unwrap();
    iommu.attach(dom, edu()).unwrap();
    let hal = *iommu.hw().hal();
    let root = hal.reg(BASE + RTADDR);
    let root_entry = hal.read_phys_u64(root);
    assert_eq!(root_entry & 1, 1);
    let ctx = (root_entry & !0xfff) + u64::from(edu().devfn()) * 16;
    let lo = hal.read_phys_u64(ctx);
    let hi = hal.read_phys_u64(ctx + 8);
    assert_eq!(lo & 0xf, 1, "present, translation type 0");
    assert_eq!(hi & 7, 1, "AW 39-bit");
    assert_eq!((hi >> 8) & 0xffff, u64::from(dom));
    hal.clear_consumed();
    iommu.detach(edu()).unwrap();
    assert_eq!(hal.read_phys_u64(ctx), 0);
    let d = queued(hal);
    // Device-selective context invalidation naming the source id, then domain IOTLB.
    assert_eq!(d[0][0] & 0x3f, 0x31);
    assert_eq!((d[0][0] >> 32) & 0xffff, 0x20);
    assert_eq!(d[1][0] & 0x3f, 0x22);
    assert_eq!((d[1][0] >> 16) & 0xffff, u64::from(dom));
}

#[test]
fn caching_mode_flushes_not_present_to_present() {
    let mut iommu = unit(CAP_CM_48, VtdConfig::default());
    assert_eq!(iommu.hw().page_table_levels(), 4);
    let dom = iommu.create_domain().unwrap();
    assert_ne!(dom, 0, "domain id 0 is reserved under caching mode");
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    iommu.attach(dom, edu()).unwrap();
    let d = queued(hal);
    assert_eq!(
        d[0][0] & 0x3f,
        0x31,
        "device-selective context invalidation"
    );
    assert_eq!((d[0][0] >> 16) & 0xffff, 0, "with domain id 0");
    hal.clear_consumed();
    iommu.map(dom, 0x1000, 0x20_0000, 0x1000, RW).unwrap();
    let d = queued(hal);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0][0] & 0x3f, 0x32, "page-selective IOTLB after a map");
    assert_eq!(d[0][1] & !0xfff, 0x1000);
    // Without caching mode a map needs no invalidation.
    let mut plain = unit(CAP, VtdConfig::default());
    let dom = plain.create_domain().unwrap();
    let hal = *plain.hw().hal();
    hal.clear_consumed();
    plain.map(dom, 0x1000, 0x20_0000, 0x1000, RW).unwrap();
    assert!(queued(hal).is_empty());
}

#[test]
fn one_gib_unmap_is_one_page_selective_invalidation() {
    for pages_4k in [false, true] {
        let mut iommu = unit(CAP, VtdConfig::default());
        let dom = iommu.create_domain().unwrap();
        let hal = *iommu.hw().hal();
        if pages_4k {
            // Misaligned physical address: every page is 4 KiB.
            iommu
                .map(dom, 1 << 30, (4 << 30) + 0x1000, 1 << 30, RW)
                .unwrap();
        } else {
            iommu.map(dom, 1 << 30, 4 << 30, 1 << 30, RW).unwrap();
            assert_eq!(iommu.translate(dom, 1 << 30).unwrap().2, 3);
        }
        hal.clear_consumed();
        assert_eq!(iommu.unmap(dom, 1 << 30, 1 << 30).unwrap(), 1 << 30);
        let d = queued(hal);
        assert_eq!(d.len(), 1, "{d:x?}");
        assert_eq!(d[0][0] & 0x3f, 0x32);
        // Freed tables need the paging-structure caches flushed too (IH=0); a lone 1 GiB
        // leaf in the root table frees nothing (IH=1).
        let ih = if pages_4k { 0 } else { 1 << 6 };
        assert_eq!(d[0][1], (1 << 30) | ih | 18, "address with AM=18");
        assert_eq!(iommu.table_count(dom), Some(1));
    }
}

#[test]
fn register_based_invalidation() {
    let mut iommu = unit(
        CAP,
        VtdConfig {
            register_invalidation: true,
            interrupt_remapping: false,
        },
    );
    assert!(!iommu.hw().queued());
    let dom = iommu.create_domain().unwrap();
    iommu.map(dom, 0x20_0000, 0x40_0000, 0x20_0000, RW).unwrap();
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    iommu.unmap(dom, 0x20_0000, 0x20_0000).unwrap();
    match hal.consumed().as_slice() {
        [Consumed::IotlbReg(iva, cmd)] => {
            assert_eq!(*iva, 0x20_0000 | 9);
            assert_eq!((cmd >> 60) & 3, 3, "page-selective");
            assert_eq!((cmd >> 32) & 0xffff, u64::from(dom));
        }
        other => panic!("{other:x?}"),
    }
    assert_eq!(
        iommu.map_msi(edu(), 0x40, 0).unwrap_err(),
        Error::Unsupported("interrupt remapping (not enabled)")
    );
}

#[test]
fn fault_records_are_decoded_and_cleared() {
    let mut iommu = unit(CAP, VtdConfig::default());
    let hal = *iommu.hw().hal();
    let record = BASE + 0x220;
    // QEMU's record for a write to unmapped IOVA 0x8001000 by 00:04.0, reason 5.
    hal.set_reg(record, 0x800_1000);
    hal.set_reg(record + 8, (1 << 63) | (5 << 32) | 0x20);
    let mut got = Vec::new();
    assert_eq!(iommu.drain_faults(&mut |f| got.push(f)).unwrap(), 1);
    assert_eq!(got[0].device, edu());
    assert_eq!(got[0].address, 0x800_1000);
    assert_eq!(got[0].kind, crate::FaultKind::Write);
    assert_eq!(got[0].code, 5);
    assert_eq!(hal.reg(record + 8) >> 63, 0, "F cleared");
    assert_eq!(
        iommu.drain_faults(&mut |_| panic!("no new fault")).unwrap(),
        0
    );
    // Read fault (T bit) on the next drain after the hardware records one.
    hal.set_reg(record + 8, (1 << 63) | (1 << 62) | (6 << 32) | 0x28);
    got.clear();
    iommu.drain_faults(&mut |f| got.push(f)).unwrap();
    assert_eq!(
        (got[0].device, got[0].kind),
        (Bdf::new(0, 5, 0), crate::FaultKind::Read)
    );
}

#[test]
fn interrupt_remapping_entries() {
    let mut iommu = unit(
        CAP,
        VtdConfig {
            interrupt_remapping: true,
            ..VtdConfig::default()
        },
    );
    let hal = *iommu.hw().hal();
    let irt = hal.reg(BASE + IRTA) & !0xfff;
    hal.clear_consumed();
    let (index, msg) = iommu.map_msi(edu(), 0x51, 3).unwrap();
    assert_eq!(index, 0);
    assert_eq!(msg.address, 0xfee0_0010, "remappable format, handle 0");
    let lo = hal.read_phys_u64(irt);
    let hi = hal.read_phys_u64(irt + 8);
    assert_eq!(lo & 1, 1);
    assert_eq!((lo >> 16) & 0xff, 0x51);
    assert_eq!((lo >> 40) & 0xff, 3);
    assert_eq!(hi & 0xffff, 0x20, "source id");
    assert_eq!((hi >> 18) & 3, 1, "verify the full source id");
    let d = queued(hal);
    assert_eq!(
        d[0][0] & 0x1f,
        0x14,
        "index-selective interrupt entry cache invalidation"
    );
    let (index2, msg2) = iommu.map_msi(Bdf::new(0, 5, 0), 0x52, 0).unwrap();
    assert_eq!((index2, msg2.address), (1, 0xfee0_0030));
    iommu.unmap_msi(edu(), index).unwrap();
    assert_eq!(hal.read_phys_u64(irt), 0);
    assert_eq!(
        iommu.unmap_msi(edu(), index).unwrap_err(),
        Error::NoInterruptEntry
    );
    assert_eq!(super::remappable_msi_address(0x8001), 0xfee0_0034);
}

#[test]
fn api_errors() {
    let mut iommu = unit(CAP, VtdConfig::default());
    let a = iommu.create_domain().unwrap();
    let b = iommu.create_domain().unwrap();
    iommu.attach(a, edu()).unwrap();
    iommu.attach(a, edu()).unwrap();
    assert_eq!(
        iommu.attach(b, edu()).unwrap_err(),
        Error::AlreadyAttached {
            device: edu(),
            domain: a
        }
    );
    assert_eq!(
        iommu.attach(b, Bdf::new(3, 0, 0)).unwrap_err(),
        Error::UnknownDevice(Bdf::new(3, 0, 0))
    );
    assert_eq!(
        iommu.detach(Bdf::new(0, 5, 0)).unwrap_err(),
        Error::NotAttached(Bdf::new(0, 5, 0))
    );
    assert_eq!(iommu.destroy_domain(a).unwrap_err(), Error::DomainBusy(a));
    assert_eq!(
        iommu.map(99, 0, 0, 4096, RW).unwrap_err(),
        Error::NoSuchDomain(99)
    );
    iommu.map(a, 0, 0x10_0000, 0x2000, RW).unwrap();
    assert_eq!(
        iommu.map(a, 0x1000, 0, 0x1000, RW).unwrap_err(),
        Error::Overlap { iova: 0x1000 }
    );
    assert!(matches!(
        iommu.map(a, 0x3000, 0, 0x800, RW),
        Err(Error::Unaligned { .. })
    ));
    assert!(matches!(
        iommu.map(a, 1 << 39, 0, 0x1000, RW),
        Err(Error::OutOfRange { .. })
    ));
    iommu.detach(edu()).unwrap();
    let before = iommu.hw().hal().allocated_pages();
    iommu.destroy_domain(a).unwrap();
    assert!(iommu.hw().hal().allocated_pages() < before);
}

#[test]
fn ioapic_rte_remappable_format() {
    let rte = super::remappable_ioapic_rte(0x8003, 0x41, true, false);
    assert_eq!(rte & 0xff, 0x41);
    assert_eq!((rte >> 48) & 1, 1, "remappable format");
    assert_eq!(rte >> 49, 3, "index bits 14:0");
    assert_eq!((rte >> 11) & 1, 1, "index bit 15");
    assert_eq!((rte >> 15) & 1, 1, "level");
}

#[test]
fn page_sizes_follow_sllps() {
    // The same unit without 1 GiB pages (SLLPS bit 35 clear): a 1 GiB range uses 2 MiB.
    let mut iommu = unit(CAP & !(1 << 35), VtdConfig::default());
    let dom = iommu.create_domain().unwrap();
    iommu.map(dom, 1 << 30, 1 << 32, 1 << 30, RW).unwrap();
    assert_eq!(iommu.translate(dom, 1 << 30).unwrap().2, 2);
    // Without any superpages: 4 KiB.
    let mut iommu = unit(CAP & !(3 << 34), VtdConfig::default());
    let dom = iommu.create_domain().unwrap();
    iommu.map(dom, 1 << 30, 1 << 32, 4 << 20, RW).unwrap();
    assert_eq!(iommu.translate(dom, 1 << 30).unwrap().2, 1);
}

#[test]
fn invalidation_queue_wraps() {
    let mut iommu = unit(CAP, VtdConfig::default());
    let dom = iommu.create_domain().unwrap();
    let hal = *iommu.hw().hal();
    hal.clear_consumed();
    // 300 unmaps: 600 descriptors through a 256-entry queue.
    for i in 0..300u64 {
        iommu
            .map(dom, i << 12, 0x100_0000 + (i << 12), 4096, RW)
            .unwrap();
        iommu.unmap(dom, i << 12, 4096).unwrap();
    }
    let d = queued(hal);
    assert_eq!(d.len(), 300);
    assert!(d
        .iter()
        .enumerate()
        .all(|(i, d)| d[1] & !0xfff == (i as u64) << 12));
    assert_eq!(hal.reg(BASE + IQH), hal.reg(BASE + IQT));
}

#[test]
fn reports_interrupt_remapping_and_address_width() {
    let ir = unit(
        CAP,
        VtdConfig {
            interrupt_remapping: true,
            ..VtdConfig::default()
        },
    );
    assert!(ir.hw_ref().interrupt_remapping());
    assert!(ir.hw_ref().queued());
    assert_eq!(ir.hw_ref().address_width(), 39);
    let plain = unit(CAP, VtdConfig::default());
    assert!(!plain.hw_ref().interrupt_remapping());
    let wide = unit(CAP_CM_48, VtdConfig::default());
    assert_eq!(wide.hw_ref().address_width(), 48);
}

#[test]
fn domain_count_follows_create_and_destroy() {
    let mut iommu = unit(CAP, VtdConfig::default());
    assert_eq!(iommu.domain_count(), 0);
    let a = iommu.create_domain().unwrap();
    let b = iommu.create_domain().unwrap();
    assert_ne!(a, b);
    assert_eq!(iommu.domain_count(), 2);
    iommu.destroy_domain(a).unwrap();
    assert_eq!(iommu.domain_count(), 1);
    assert_eq!(iommu.destroy_domain(a), Err(Error::NoSuchDomain(a)));
    assert_eq!(iommu.domain_count(), 1);
}
