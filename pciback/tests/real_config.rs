//! The inventory's capability walks and the virtual config space over config-space
//! bytes read from QEMU 7.2 q35 devices (Debian 6.1 guest, `intel_iommu=on`; dumped
//! from sysfs by pciback/scripts' guest, `od` of each `config` file): e1000e, nvme,
//! edu, pcie-root-port, pcie-pci-bridge, the ICH9 functions. Read-only: BAR sizing
//! needs the device, so BARs are not checked here.
use sluice_pciback::config::*;
use sluice_pciback::inventory::{capabilities, describe, ext_capabilities};
use sluice_pciback::vcfg::VirtualConfig;
use sluice_pciback::Bdf;

fn dump(name: &str) -> Snapshot {
    let p = format!(
        "{}/testdata/qemu72-q35-{name}.cfg",
        env!("CARGO_MANIFEST_DIR")
    );
    Snapshot(std::fs::read(p).unwrap())
}

const B: Bdf = Bdf::new(0, 2, 0);

fn ids(v: &mut VirtualConfig, d: &mut Snapshot) -> Vec<u8> {
    let mut out = vec![];
    let mut p = v.read(d, CAP_PTR, Width::B1) as u16;
    while p != 0 && out.len() < 64 {
        out.push(v.read(d, p, Width::B1) as u8);
        p = v.read(d, p + 1, Width::B1) as u16;
    }
    out
}

#[test]
fn e1000e() {
    let mut d = dump("0000_00_02.0");
    let caps: Vec<(u8, u16)> = capabilities(&mut d, B)
        .unwrap()
        .iter()
        .map(|c| (c.id, c.off))
        .collect();
    assert_eq!(
        caps,
        vec![
            (CAP_PM, 0xc8),
            (CAP_MSI, 0xd0),
            (CAP_PCIE, 0xe0),
            (CAP_MSIX, 0xa0)
        ]
    );
    let ext: Vec<(u16, u16)> = ext_capabilities(&mut d, B)
        .unwrap()
        .iter()
        .map(|c| (c.id, c.off))
        .collect();
    assert_eq!(ext, vec![(0x0001, 0x100), (0x0003, 0x140)], "AER, DSN");
    let f = describe(&mut d, B, None);
    let m = f.msix.unwrap();
    assert_eq!(
        (m.entries, m.table_bir, m.table_off, m.pba_bir, m.pba_off),
        (5, 3, 0, 3, 0x2000)
    );
    // Linux's reset_method for this function in the same guest: "pm".
    assert!(f.resets.pm && !f.resets.flr && !f.resets.af_flr);
    assert_eq!(
        f.pcie_type,
        Some(9),
        "root-complex integrated endpoint on q35's root bus"
    );
    let mut v = VirtualConfig::new(&f, &[], &[], 1 << 40);
    assert_eq!(
        ids(&mut v, &mut d),
        vec![CAP_PM, CAP_MSI, CAP_PCIE, CAP_MSIX]
    );
    assert_eq!(
        v.read(&mut d, 0x100, Width::B4),
        0,
        "the PCIe capability at 0xe0 does not reach the AER header"
    );
    assert_eq!(v.read(&mut d, 0xfc, Width::B4), d.read32(B, 0xfc));
}

#[test]
fn nvme_edu_ports_and_ich9() {
    let mut d = dump("0000_00_03.0");
    let f = describe(&mut d, B, None);
    let m = f.msix.unwrap();
    assert_eq!(
        (m.entries, m.table_bir, m.table_off, m.pba_bir, m.pba_off),
        (65, 0, 0x2000, 0, 0x3000)
    );
    // Linux: "flr" (PM has No_Soft_Reset set).
    assert!(f.resets.flr && !f.resets.pm);

    let mut d = dump("0000_00_04.0");
    let f = describe(&mut d, B, None);
    assert_eq!(
        (f.pcie_type, f.msi.unwrap().is64, f.msix, f.resets.any()),
        (None, true, None, false)
    );

    let mut d = dump("0000_00_05.0");
    let f = describe(&mut d, B, None);
    assert_eq!(
        (f.pcie_type, f.acs),
        (Some(EXP_TYPE_ROOT_PORT), true),
        "Linux enabled ACS on the root port"
    );

    let mut d = dump("0000_01_00.0");
    let f = describe(&mut d, B, None);
    assert_eq!(f.pcie_type, Some(EXP_TYPE_PCIE_TO_PCI));
    assert!(f.resets.pm, "Linux: pm,bus");

    let mut d = dump("0000_00_1f.2");
    let f = describe(&mut d, B, None);
    let mut v = VirtualConfig::new(&f, &[], &[], 1 << 40);
    assert_eq!(ids(&mut v, &mut d), vec![CAP_MSI], "SATA capability hidden");
}

#[test]
fn every_dump_walks_cleanly() {
    let dir = format!("{}/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "cfg") {
            let mut d = Snapshot(std::fs::read(&p).unwrap());
            assert_eq!(describe(&mut d, B, None).defect, None, "{}", p.display());
            n += 1;
        }
    }
    assert_eq!(n, 12);
}
