//! Inventory and assignability over the fake segment: QEMU's e1000e, nvme, edu, a
//! PCIe-to-PCI bridge with two devices, a multi-function device without ACS, a
//! root port, and hostile devices.
use sluice_pciback::assign::{
    group_of, groups, unity_conflicts, Policy, RdmPolicy, Refusal, ReservedRegion,
};
use sluice_pciback::config::*;
use sluice_pciback::fake::{qemu, FakeBus};
use sluice_pciback::inventory::{enumerate, BarKind, Defect};
use sluice_pciback::Bdf;

pub fn machine() -> FakeBus {
    let [lpc, sata] = qemu::multifunction_no_acs(0, 0x1f);
    FakeBus::new(vec![
        qemu::host_bridge(Bdf::new(0, 0, 0)),
        qemu::e1000e(Bdf::new(0, 1, 0)),
        qemu::nvme(Bdf::new(0, 2, 0)),
        qemu::edu(Bdf::new(0, 3, 0)),
        qemu::pcie_pci_bridge(Bdf::new(0, 4, 0), 1),
        qemu::edu(Bdf::new(1, 1, 0)),
        qemu::edu(Bdf::new(1, 2, 0)),
        qemu::root_port(Bdf::new(0, 5, 0), 2, 2),
        qemu::nvme(Bdf::new(2, 0, 0)),
        qemu::cap_loop(Bdf::new(0, 6, 0)),
        qemu::cap_out_of_range(Bdf::new(0, 7, 0)),
        qemu::ext_cap_loop(Bdf::new(0, 8, 0)),
        lpc,
        sata,
    ])
}

#[test]
fn enumerates_functions_bridges_and_multifunction() {
    let mut bus = machine();
    let inv = enumerate(&mut bus, 0, 0, 0xff);
    let found: Vec<Bdf> = inv.iter().map(|f| f.bdf).collect();
    let mut want: Vec<Bdf> = bus.functions.iter().map(|f| f.bdf).collect();
    want.sort();
    assert_eq!(found, want);
    let behind = inv.iter().find(|f| f.bdf == Bdf::new(1, 2, 0)).unwrap();
    assert_eq!(behind.parent, Some(Bdf::new(0, 4, 0)));
    assert_eq!(behind.resets.bus, Some(Bdf::new(0, 4, 0)));
}

#[test]
fn bars_rom_msi_msix_and_resets() {
    let mut bus = machine();
    // Decode on at inventory time: sizing must turn it off first, then restore it.
    bus.get_mut(Bdf::new(0, 1, 0))
        .put16(COMMAND, CMD_MEMORY | CMD_IO | CMD_MASTER);
    let inv = enumerate(&mut bus, 0, 0, 0xff);
    let e = inv.iter().find(|f| f.bdf == Bdf::new(0, 1, 0)).unwrap();
    let sizes: Vec<(u8, BarKind, u64)> = e.bars.iter().map(|b| (b.index, b.kind, b.size)).collect();
    assert_eq!(
        sizes,
        vec![
            (0, BarKind::Mem32, 128 << 10),
            (1, BarKind::Mem32, 128 << 10),
            (2, BarKind::Io, 32),
            (3, BarKind::Mem32, 16 << 10)
        ]
    );
    assert_eq!(e.rom_size, 256 << 10);
    let m = e.msix.unwrap();
    assert_eq!(
        (m.entries, m.table_bir, m.table_off, m.pba_bir, m.pba_off),
        (5, 3, 0, 3, 0x2000)
    );
    assert!(e.msi.unwrap().is64);
    assert!(e.resets.pm && !e.resets.flr && e.resets.bus.is_none());
    assert_eq!(e.defect, None);
    assert_eq!(bus.get(Bdf::new(0, 1, 0)).sized_with_decode_on, 0);
    assert_eq!(
        bus.get(Bdf::new(0, 1, 0)).get16(COMMAND),
        CMD_MEMORY | CMD_IO | CMD_MASTER
    );

    let n = inv.iter().find(|f| f.bdf == Bdf::new(0, 2, 0)).unwrap();
    assert_eq!(
        (n.bars[0].kind, n.bars[0].size, n.bars.len()),
        (BarKind::Mem64, 16 << 10, 1)
    );
    assert!(n.resets.flr);
    assert_eq!(n.msix.unwrap().entries, 65);
    let edu = inv.iter().find(|f| f.bdf == Bdf::new(0, 3, 0)).unwrap();
    assert!(!edu.resets.any(), "edu on the root bus has no reset");
    let br = inv.iter().find(|f| f.bdf == Bdf::new(0, 4, 0)).unwrap();
    assert_eq!((br.bars[0].kind, br.bars[0].size), (BarKind::Mem64, 256));
    assert_eq!(br.bridge, Some((1, 1)));
}

#[test]
fn hostile_capability_lists_are_defects_not_hangs() {
    let mut bus = machine();
    let inv = enumerate(&mut bus, 0, 0, 0xff);
    let d = |b| inv.iter().find(|f| f.bdf == b).unwrap().defect;
    assert_eq!(d(Bdf::new(0, 6, 0)), Some(Defect::CapLoop { at: 0x40 }));
    assert_eq!(
        d(Bdf::new(0, 7, 0)),
        Some(Defect::CapOutOfRange { ptr: 0x3c })
    );
    assert_eq!(d(Bdf::new(0, 8, 0)), Some(Defect::CapLoop { at: 0x100 }));
}

#[test]
fn bridge_pointing_back_up_is_scanned_once() {
    let mut bus = FakeBus::new(vec![
        qemu::pcie_pci_bridge(Bdf::new(0, 4, 0), 1),
        qemu::pcie_pci_bridge(Bdf::new(1, 0, 0), 0),
    ]);
    let inv = enumerate(&mut bus, 0, 0, 0xff);
    assert_eq!(inv.len(), 2);
}

fn policy<'a>(
    uses: &'a [Bdf],
    reserved: &'a [ReservedRegion],
    rdm: RdmPolicy,
    covered: &'a dyn Fn(Bdf) -> bool,
) -> Policy<'a> {
    Policy {
        hypervisor_uses: uses,
        iommu_functions: &[],
        covered,
        reserved,
        rdm,
    }
}

#[test]
fn groups_and_refusals() {
    let mut bus = machine();
    let inv = enumerate(&mut bus, 0, 0, 0xff);
    let all = |_: Bdf| true;
    let uses = [Bdf::new(0, 3, 0)];
    let gs = groups(&inv, &policy(&uses, &[], RdmPolicy::Strict, &all));
    let g = |b| group_of(&gs, b).unwrap();
    // Everything behind the PCIe-to-PCI bridge is one group; the bridge and its
    // secondary bus's id are aliases.
    let br = g(Bdf::new(1, 1, 0));
    assert_eq!(br.members, vec![Bdf::new(1, 1, 0), Bdf::new(1, 2, 0)]);
    assert_eq!(br.aliases, vec![Bdf::new(0, 4, 0), Bdf::new(1, 0, 0)]);
    assert_eq!(br.verdict, Ok(()));
    // Multi-function without ACS: one group.
    assert_eq!(
        g(Bdf::new(0, 0x1f, 1)).members,
        vec![Bdf::new(0, 0x1f, 0), Bdf::new(0, 0x1f, 1)]
    );
    // Behind an ACS root port: the endpoint alone; the port is an alias of nothing.
    assert_eq!(g(Bdf::new(2, 0, 0)).members, vec![Bdf::new(2, 0, 0)]);
    assert_eq!(
        g(Bdf::new(0, 5, 0)).verdict,
        Err(Refusal::NotAnEndpoint(Bdf::new(0, 5, 0)))
    );
    assert_eq!(
        g(Bdf::new(0, 0, 0)).verdict,
        Err(Refusal::HostBridge(Bdf::new(0, 0, 0)))
    );
    assert_eq!(
        g(Bdf::new(0, 3, 0)).verdict,
        Err(Refusal::UsedByHypervisor(Bdf::new(0, 3, 0)))
    );
    assert_eq!(
        g(Bdf::new(0, 6, 0)).verdict,
        Err(Refusal::Defective(
            Bdf::new(0, 6, 0),
            Defect::CapLoop { at: 0x40 }
        ))
    );
    assert_eq!(g(Bdf::new(0, 1, 0)).verdict, Ok(()));
    // Not covered by an IOMMU.
    let not_e1000e = |b: Bdf| b != Bdf::new(0, 1, 0);
    let gs = groups(&inv, &policy(&[], &[], RdmPolicy::Strict, &not_e1000e));
    assert_eq!(
        group_of(&gs, Bdf::new(0, 1, 0)).unwrap().verdict,
        Err(Refusal::NotCoveredByIommu(Bdf::new(0, 1, 0)))
    );
    // The IOMMU's own function (AMD-Vi: class 0806) is never assignable.
    let mut iommu = FakeBus::new(vec![sluice_pciback::fake::FakeFunction::endpoint(
        Bdf::new(0, 9, 0),
        0x1022,
        0x1419,
        0x080600,
    )]);
    let inv2 = enumerate(&mut iommu, 0, 0, 0);
    assert_eq!(
        groups(&inv2, &policy(&[], &[], RdmPolicy::Strict, &all))[0].verdict,
        Err(Refusal::Iommu(Bdf::new(0, 9, 0)))
    );
}

#[test]
fn reserved_regions_follow_xen() {
    let mut bus = machine();
    let inv = enumerate(&mut bus, 0, 0, 0xff);
    let all = |_: Bdf| true;
    let own = ReservedRegion {
        base: 0xdb00_0000,
        end: 0xdb00_ffff,
        scope: vec![Bdf::new(0, 2, 0)],
    };
    let shared = ReservedRegion {
        base: 0xdc00_0000,
        end: 0xdc00_0fff,
        scope: vec![Bdf::new(0, 1, 0), Bdf::new(2, 0, 0)],
    };
    let in_group = ReservedRegion {
        base: 0xdd00_0000,
        end: 0xdd00_0fff,
        scope: vec![Bdf::new(1, 1, 0), Bdf::new(1, 2, 0)],
    };
    let rs = [own.clone(), shared.clone(), in_group];
    let gs = groups(&inv, &policy(&[], &rs, RdmPolicy::Strict, &all));
    let nvme = group_of(&gs, Bdf::new(0, 2, 0)).unwrap();
    assert_eq!(
        (nvme.verdict, nvme.unity_maps.clone()),
        (Ok(()), vec![(own.base, own.end)])
    );
    assert_eq!(
        unity_conflicts(nvme, &[(0, 0xdb00_0000)]),
        vec![(own.base, own.end)]
    );
    assert!(unity_conflicts(nvme, &[(0, 0xdaff_ffff)]).is_empty());
    let shared_refusal = Refusal::SharedReservedRegion {
        bdf: Bdf::new(0, 1, 0),
        base: shared.base,
        other: Bdf::new(2, 0, 0),
    };
    assert_eq!(
        group_of(&gs, Bdf::new(0, 1, 0)).unwrap().verdict,
        Err(shared_refusal)
    );
    assert_eq!(
        group_of(&gs, Bdf::new(1, 1, 0)).unwrap().verdict,
        Ok(()),
        "shared only inside the group"
    );
    let gs = groups(&inv, &policy(&[], &rs, RdmPolicy::Relaxed, &all));
    let e = group_of(&gs, Bdf::new(0, 1, 0)).unwrap();
    assert_eq!(
        (e.verdict, e.warnings.clone(), e.unity_maps.clone()),
        (
            Ok(()),
            vec![shared_refusal],
            vec![(shared.base, shared.end)]
        )
    );
}

mod hostile {
    use proptest::prelude::*;
    use sluice_pciback::config::Width;
    use sluice_pciback::fake::{FakeBus, FakeFunction};
    use sluice_pciback::inventory::{describe, enumerate};
    use sluice_pciback::reset::{ResetMachine, Step};
    use sluice_pciback::vcfg::VirtualConfig;
    use sluice_pciback::Bdf;

    proptest! {
        /// A device with arbitrary config bytes (capability pointers, extended headers,
        /// MSI/MSI-X fields, bridge bus numbers): inventory, the virtual config space and
        /// the reset machine finish without panicking.
        #[test]
        fn arbitrary_config_space(header in proptest::collection::vec(any::<u8>(), 256),
                                  ext in proptest::collection::vec((0x40u16..0x400, any::<u32>()), 0..16),
                                  ops in proptest::collection::vec((0u16..0x1000, 0usize..3, any::<u32>(), any::<bool>()), 0..64)) {
            let b = Bdf::new(0, 3, 0);
            let mut f = FakeFunction::endpoint(b, 0x1af4, 0x1, 0);
            f.cfg[..256].copy_from_slice(&header);
            f.cfg[0] = 0xf4; f.cfg[1] = 0x1a;
            for (slot, v) in ext { f.put32(slot * 4, v); }
            f.wmask.iter_mut().for_each(|m| *m = 0xff);
            let mut bus = FakeBus::new(vec![f]);
            let inv = enumerate(&mut bus, 0, 0, 0xff);
            prop_assert!(!inv.is_empty() && inv.len() <= 8 * 32 * 256);
            let d = describe(&mut bus, b, None);
            prop_assert!(d.caps.len() <= 48 && d.ext_caps.len() <= 960);
            let mut v = VirtualConfig::new(&d, &[(0, 1 << 30)], &[], 1 << 40);
            for (off, w, val, r) in ops {
                let w = [Width::B1, Width::B2, Width::B4][w];
                if r { v.read(&mut bus, off, w); } else { v.write(&mut bus, off, w, val); }
                v.msix_table_read(off as u64, w);
                v.msix_table_write(off as u64, w, val);
            }
            let mut m = ResetMachine::new(&d);
            let mut done = false;
            for _ in 0..1000 {
                match m.step(&mut bus) {
                    Step::Quarantine => { m.quarantined(); done = true; break; }
                    Step::Done(_) => { done = true; break; }
                    Step::Delay(_) => {}
                }
            }
            prop_assert!(done);
        }
    }
}

/// Root port 00:05.0 -> switch upstream port 02:00.0 -> downstream ports 03:00.0 and
/// 03:01.0 -> nvme 04:00.0 and e1000e 05:00.0.
fn switch(acs: bool) -> FakeBus {
    use sluice_pciback::fake::FakeFunction;
    let port = |b: Bdf, t: u8, sec: u8, sub: u8| {
        FakeFunction::bridge(b, 0x1b36, 0x000c, sec, sub)
            .pcie(t, false)
            .acs(acs)
    };
    FakeBus::new(vec![
        qemu::root_port(Bdf::new(0, 5, 0), 2, 5),
        port(Bdf::new(2, 0, 0), 5, 3, 5),
        port(Bdf::new(3, 0, 0), EXP_TYPE_DOWNSTREAM, 4, 4),
        port(Bdf::new(3, 1, 0), EXP_TYPE_DOWNSTREAM, 5, 5),
        qemu::nvme(Bdf::new(4, 0, 0)),
        qemu::e1000e(Bdf::new(5, 0, 0)),
    ])
}

#[test]
fn switch_without_acs_is_one_group() {
    let all = |_: Bdf| true;
    for acs in [false, true] {
        let mut bus = switch(acs);
        let inv = enumerate(&mut bus, 0, 0, 0xff);
        assert_eq!(inv.len(), 6);
        let gs = groups(&inv, &policy(&[], &[], RdmPolicy::Strict, &all));
        let g = group_of(&gs, Bdf::new(4, 0, 0)).unwrap();
        if acs {
            assert_eq!(g.members, vec![Bdf::new(4, 0, 0)]);
        } else {
            assert_eq!(g.members, vec![Bdf::new(4, 0, 0), Bdf::new(5, 0, 0)]);
            assert_eq!(g.verdict, Ok(()));
        }
    }
}
