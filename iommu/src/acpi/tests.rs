use super::dmar::Dmar;
use super::ivrs::{DeviceEntry, Ivrs};
use super::AcpiError;
use crate::Bdf;
use alloc::vec::Vec;
use proptest::prelude::*;

const DMAR: &[u8] = include_bytes!("../../testdata/qemu72-q35-intel-iommu.dmar");
const DMAR_AW48: &[u8] = include_bytes!("../../testdata/qemu72-q35-intel-iommu-aw48.dmar");
const IVRS: &[u8] = include_bytes!("../../testdata/qemu72-q35-amd-iommu.ivrs");

/// A table with a fixed header, `body` after byte 36, and a correct checksum.
fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = Vec::from(&sig[..]);
    let len = (36 + body.len()) as u32;
    t.extend_from_slice(&len.to_le_bytes());
    t.extend_from_slice(&[1, 0]);
    t.extend_from_slice(b"SLUICETESTTABLE ");
    t.extend_from_slice(&[0; 10]);
    t.extend_from_slice(body);
    fix_checksum(&mut t);
    t
}

fn fix_checksum(t: &mut [u8]) {
    t[9] = 0;
    let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    t[9] = 0u8.wrapping_sub(sum);
}

#[test]
fn qemu_dmar_with_intel_iommu() {
    let d = Dmar::parse(DMAR).unwrap();
    assert_eq!(d.host_address_width, 39);
    assert_eq!(d.flags & 1, 1, "INTR_REMAP");
    assert_eq!(d.units.len(), 1);
    let u = &d.units[0];
    assert_eq!(u.base, 0xfed9_0000);
    assert!(!u.include_pci_all);
    let cov = u.coverage();
    assert!(cov.covers(Bdf::new(0, 4, 0)) && cov.covers(Bdf::new(0, 5, 0)));
    assert!(!cov.covers(Bdf::new(0, 9, 0)));
    assert!(u.scopes.iter().any(|s| s.kind == 3), "IOAPIC scope");
    // QEMU's IOAPIC requests as ff:00.0: its remapped interrupts belong to this unit.
    assert!(cov.covers(Bdf::new(0xff, 0, 0)));
    assert_eq!(Dmar::parse(DMAR_AW48).unwrap().host_address_width, 48);
}

#[test]
fn qemu_ivrs_with_amd_iommu() {
    let i = Ivrs::parse(IVRS).unwrap();
    assert_eq!(i.pa_bits(), 40);
    assert_eq!(i.units.len(), 1);
    let u = &i.units[0];
    assert_eq!(
        (u.kind, u.base, u.device_id, u.capability_offset),
        (0x10, 0xfed8_0000, 0x18, 0x40)
    );
    assert!(u.coverage().covers(Bdf::new(0, 4, 0)));
    assert!(u.coverage().covers(Bdf::new(0, 5, 0)));
    assert!(!u.coverage().covers(Bdf::new(1, 0, 0)));
    assert!(
        u.coverage().covers(Bdf::from_requester_id(0, 0xa0)),
        "IOAPIC"
    );
    assert!(u.entries.contains(&DeviceEntry::Special {
        handle: 0,
        id: 0xa0,
        variety: 1,
        setting: 0
    }));
}

#[test]
fn every_truncation_is_an_error() {
    for t in [DMAR, DMAR_AW48] {
        for n in 0..t.len() {
            assert!(Dmar::parse(&t[..n]).is_err(), "DMAR prefix {n}");
        }
    }
    for n in 0..IVRS.len() {
        assert!(Ivrs::parse(&IVRS[..n]).is_err(), "IVRS prefix {n}");
    }
}

#[test]
fn wrong_signature_and_checksum() {
    assert_eq!(
        Dmar::parse(IVRS).unwrap_err(),
        AcpiError::Signature(*b"IVRS")
    );
    let mut t = DMAR.to_vec();
    t[60] ^= 1;
    assert_eq!(Dmar::parse(&t).unwrap_err(), AcpiError::Checksum);
}

#[test]
fn dmar_rmrr_atsr_and_bad_scopes() {
    let mut body = alloc::vec![38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // DRHD, INCLUDE_PCI_ALL, segment 0, base 0xfed91000, one bridge scope.
    body.extend_from_slice(&[0, 0, 24, 0, 1, 0, 0, 0]);
    body.extend_from_slice(&0xfed9_1000u64.to_le_bytes());
    body.extend_from_slice(&[2, 8, 0, 0, 0, 0, 0x1c, 0]);
    // RMRR 0x3000_0000..0x3000_ffff for 00:1d.0.
    body.extend_from_slice(&[1, 0, 32, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&0x3000_0000u64.to_le_bytes());
    body.extend_from_slice(&0x3000_ffffu64.to_le_bytes());
    body.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0x1d, 0]);
    // ATSR, ALL_PORTS.
    body.extend_from_slice(&[2, 0, 8, 0, 1, 0, 0, 0]);
    let d = Dmar::parse(&table(b"DMAR", &body)).unwrap();
    assert!(d.units[0].include_pci_all);
    assert!(d.units[0].coverage().covers(Bdf::new(9, 9, 1)));
    assert_eq!(d.reserved_regions[0].limit, 0x3000_ffff);
    assert_eq!(
        d.reserved_regions[0].scopes[0].direct(0),
        Some(Bdf::new(0, 0x1d, 0))
    );
    assert!(d.ats[0].all_ports);
    // A scope claiming more bytes than its structure has.
    let mut bad = body.clone();
    bad[12 + 17] = 40;
    assert!(matches!(
        Dmar::parse(&table(b"DMAR", &bad)),
        Err(AcpiError::BadEntry { .. })
    ));
    // A structure of length 0 would loop forever in a careless parser.
    let mut bad = body;
    bad[12 + 2] = 0;
    assert!(matches!(
        Dmar::parse(&table(b"DMAR", &bad)),
        Err(AcpiError::BadLength { .. })
    ));
}

#[test]
fn ivrs_type_0x11_ranges_aliases_and_ivmd() {
    let mut body = alloc::vec::Vec::new();
    body.extend_from_slice(&((48u32 << 15) | (40 << 8)).to_le_bytes());
    body.extend_from_slice(&[0; 8]);
    let entries: &[u8] = &[
        3, 0x00, 0x01, 0, 4, 0xff, 0x01, 0, // range 01:00.0 ..= 01:1f.7
        0x42, 0x08, 0x02, 0, 0, 0x00, 0x02, 0, // alias 02:01.0 -> 02:00.0
        0x48, 0, 0, 0xd7, 0x21, 0xa0, 0x00, 1, // IOAPIC id 0x21
    ];
    let len = 40 + entries.len() as u16;
    body.extend_from_slice(&[0x11, 0x90]);
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(&[0x02, 0, 0x40, 0]);
    body.extend_from_slice(&0xfeb8_0000u64.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&0x1234u64.to_le_bytes());
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(entries);
    // IVMD for device 00:14.0: unity-mapped, IR|IW, 0x8000_0000 + 64 KiB.
    body.extend_from_slice(&[0x21, 7, 32, 0, 0xa0, 0, 0, 0]);
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&0x8000_0000u64.to_le_bytes());
    body.extend_from_slice(&0x1_0000u64.to_le_bytes());
    let i = Ivrs::parse(&table(b"IVRS", &body)).unwrap();
    assert_eq!(i.va_bits(), 48);
    let u = &i.units[0];
    assert_eq!((u.kind, u.efr), (0x11, Some(0x1234)));
    assert!(u.coverage().covers(Bdf::new(1, 31, 7)));
    assert!(u.coverage().covers(Bdf::new(2, 1, 0)));
    assert!(!u.coverage().covers(Bdf::new(2, 2, 0)));
    assert_eq!(i.memory[0].start, 0x8000_0000);
    assert_eq!(i.memory[0].flags, 7);
    // A range that never ends.
    let mut bad = body.clone();
    bad[12 + 40 + 4] = 2;
    assert!(matches!(
        Ivrs::parse(&table(b"IVRS", &bad)),
        Err(AcpiError::BadEntry { .. })
    ));
    // An entry type with no defined size.
    let mut bad = body;
    bad[12 + 40] = 0xc5;
    assert!(matches!(
        Ivrs::parse(&table(b"IVRS", &bad)),
        Err(AcpiError::BadEntry { .. })
    ));
}

proptest! {
    #[test]
    fn corrupted_tables_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8),
    ) {
        let mut t = [DMAR, DMAR_AW48, IVRS][which].to_vec();
        for (at, v) in flips {
            let n = t.len();
            t[at % n] = v;
        }
        if t.len() > 9 {
            fix_checksum(&mut t);
        }
        let _ = Dmar::parse(&t);
        let _ = Ivrs::parse(&t);
    }
}
