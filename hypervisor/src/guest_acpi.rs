//! A PVH domain's ACPI tables, as libxl builds them for a PVH domU (tools/libacpi):
//! RSDP (2.0, its address in `hvm_start_info.rsdp_paddr`), XSDT, FADT (hardware-reduced:
//! no PM registers, no SCI, no VGA, no CMOS RTC; a sleep control register at I/O port
//! [`SLEEP_CONTROL_PORT`], whose S5 write (SLP_TYP 7, as Xen's `\_S5`, with SLP_EN)
//! powers the domain off, see crate::hvm), FACS, a DSDT with `\_S5` and one processor
//! device (`ACPI0007`) per vCPU, and a MADT with a local APIC per vCPU (APIC id 2 x the
//! vCPU id, as Xen) and no I/O APIC (flags 0: no 8259 either); for a domain with
//! assigned devices, an MCFG with its ECAM window (segment 0, buses 0-255 at
//! `vpci::ECAM_GPA`).
//!
//! [`build`] lays them out in one block for guest-physical `base`, every checksum set.

use alloc::vec::Vec;

/// Offsets of the tables in the block.
pub const RSDP_OFF: usize = 0;
const XSDT_OFF: usize = 0x40;
const FADT_OFF: usize = 0x100;
const FACS_OFF: usize = 0x240;
const DSDT_OFF: usize = 0x280;
const MADT_OFF: usize = 0x600;
const MCFG_OFF: usize = 0x780;
const MCFG_LEN: usize = HEADER_LEN + 8 + 16;
// The MADT of 32 vCPUs ends before the MCFG, which ends inside the block.
const _: () = assert!(MADT_OFF + 44 + 8 * 32 <= MCFG_OFF && MCFG_OFF + MCFG_LEN <= SIZE);
/// The block's size (a page).
pub const SIZE: usize = 0x1000;

const OEM_ID: &[u8; 6] = b"SLUICE";
/// The FADT's sleep control and status registers (Xen's HVM PM1a_CNT and PM1a_EVT).
pub const SLEEP_CONTROL_PORT: u16 = 0xB004;
const SLEEP_STATUS_PORT: u16 = 0xB000;
/// `\_S5`'s SLP_TYP, as Xen's DSDT.
pub const S5_SLP_TYP: u8 = 7;
const FADT_LEN: usize = 268; // revision 5 (ACPI 5.0)
const FACS_LEN: usize = 64;
const HEADER_LEN: usize = 36;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// A table header at `off` of `len` bytes (checksum left for [`seal`]).
fn header(buf: &mut [u8], off: usize, sig: &[u8; 4], len: usize, rev: u8) {
    put(buf, off, sig);
    put(buf, off + 4, &(len as u32).to_le_bytes());
    buf[off + 8] = rev;
    put(buf, off + 10, OEM_ID);
    put(buf, off + 16, b"SLUICEHV");
    put(buf, off + 24, &1u32.to_le_bytes());
    put(buf, off + 28, b"SLCE");
    put(buf, off + 32, &1u32.to_le_bytes());
}

/// Sets the checksum (byte 9) of the table at `off`.
fn seal(buf: &mut [u8], off: usize) {
    let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes")) as usize;
    buf[off + 9] = 0;
    buf[off + 9] = checksum(&buf[off..off + len]);
}

/// An AML PkgLength for a package whose contents (after the PkgLength) are `body`
/// bytes long (one or two bytes: at most 4095).
fn pkg_length(body: usize) -> Vec<u8> {
    if body + 1 < 0x40 {
        alloc::vec![(body + 1) as u8]
    } else {
        let n = body + 2;
        alloc::vec![0x40 | (n & 0xF) as u8, (n >> 4) as u8]
    }
}

/// The DSDT's AML: `Scope (\_SB) { Device (Pnnn) { Name (_HID, "ACPI0007")
/// Name (_UID, n) } ... }`.
fn dsdt_aml(vcpus: usize) -> Vec<u8> {
    let mut devices = Vec::new();
    for k in 0..vcpus {
        let mut body = Vec::new();
        body.extend_from_slice(&[b'P', b'0', b'0' + (k / 10) as u8, b'0' + (k % 10) as u8]);
        body.extend_from_slice(b"\x08_HID\x0DACPI0007\x00");
        body.extend_from_slice(&[0x08, b'_', b'U', b'I', b'D', 0x0A, k as u8]);
        devices.extend_from_slice(&[0x5B, 0x82]);
        devices.extend_from_slice(&pkg_length(body.len()));
        devices.extend_from_slice(&body);
    }
    let mut scope_body = b"\\_SB_".to_vec();
    scope_body.extend_from_slice(&devices);
    // Name (\_S5, Package (4) { 7, 7, 0, 0 })
    let mut aml = alloc::vec![0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04];
    aml.extend_from_slice(&[0x0A, S5_SLP_TYP, 0x0A, S5_SLP_TYP, 0x00, 0x00]);
    aml.push(0x10);
    aml.extend_from_slice(&pkg_length(scope_body.len()));
    aml.extend_from_slice(&scope_body);
    aml
}

/// The tables for a domain of `vcpus` (1..=32) vCPUs, placed at guest-physical `base`.
pub fn build(base: u64, vcpus: usize, ecam: bool) -> Vec<u8> {
    let vcpus = vcpus.clamp(1, 32);
    let mut t = alloc::vec![0u8; SIZE];
    let at = |off: usize| base + off as u64;

    // FACS: no checksum.
    put(&mut t, FACS_OFF, b"FACS");
    put(&mut t, FACS_OFF + 4, &(FACS_LEN as u32).to_le_bytes());
    t[FACS_OFF + 32] = 2; // version

    let aml = dsdt_aml(vcpus);
    let dsdt_len = HEADER_LEN + aml.len();
    header(&mut t, DSDT_OFF, b"DSDT", dsdt_len, 2);
    put(&mut t, DSDT_OFF + HEADER_LEN, &aml);
    seal(&mut t, DSDT_OFF);

    header(&mut t, FADT_OFF, b"FACP", FADT_LEN, 5);
    put(&mut t, FADT_OFF + 36, &(at(FACS_OFF) as u32).to_le_bytes());
    put(&mut t, FADT_OFF + 40, &(at(DSDT_OFF) as u32).to_le_bytes());
    // IAPC_BOOT_ARCH: VGA not present (2), CMOS RTC not present (5).
    put(&mut t, FADT_OFF + 109, &(1u16 << 2 | 1 << 5).to_le_bytes());
    // Flags: WBINVD (0), PROC_C1 (2), HW_REDUCED_ACPI (20).
    put(
        &mut t,
        FADT_OFF + 112,
        &(1u32 | 1 << 2 | 1 << 20).to_le_bytes(),
    );
    t[FADT_OFF + 131] = 0; // minor version
                           // SLEEP_CONTROL_REG and SLEEP_STATUS_REG: system I/O, 8 bits, byte access.
    for (off, port) in [(244, SLEEP_CONTROL_PORT), (256, SLEEP_STATUS_PORT)] {
        put(&mut t, FADT_OFF + off, &[1, 8, 0, 1]);
        put(&mut t, FADT_OFF + off + 4, &(port as u64).to_le_bytes());
    }
    put(&mut t, FADT_OFF + 132, &at(FACS_OFF).to_le_bytes());
    put(&mut t, FADT_OFF + 140, &at(DSDT_OFF).to_le_bytes());
    seal(&mut t, FADT_OFF);

    let madt_len = HEADER_LEN + 8 + 8 * vcpus;
    header(&mut t, MADT_OFF, b"APIC", madt_len, 4);
    put(&mut t, MADT_OFF + 36, &0xFEE0_0000u32.to_le_bytes());
    for k in 0..vcpus {
        let e = MADT_OFF + 44 + 8 * k;
        t[e] = 0; // processor local APIC
        t[e + 1] = 8;
        t[e + 2] = k as u8;
        t[e + 3] = crate::vlapic::apic_id(k) as u8;
        put(&mut t, e + 4, &1u32.to_le_bytes()); // enabled
    }
    seal(&mut t, MADT_OFF);

    if ecam {
        // MCFG: 8 reserved bytes, then one allocation: base, segment, start and end bus.
        header(&mut t, MCFG_OFF, b"MCFG", MCFG_LEN, 1);
        let e = MCFG_OFF + HEADER_LEN + 8;
        put(&mut t, e, &crate::vpci::ECAM_GPA.to_le_bytes());
        t[e + 10] = 0;
        t[e + 11] = ((crate::vpci::ECAM_SIZE >> 20) - 1) as u8;
        seal(&mut t, MCFG_OFF);
    }
    let xsdt_len = HEADER_LEN + 16 + if ecam { 8 } else { 0 };
    header(&mut t, XSDT_OFF, b"XSDT", xsdt_len, 1);
    put(&mut t, XSDT_OFF + 36, &at(FADT_OFF).to_le_bytes());
    put(&mut t, XSDT_OFF + 44, &at(MADT_OFF).to_le_bytes());
    if ecam {
        put(&mut t, XSDT_OFF + 52, &at(MCFG_OFF).to_le_bytes());
    }
    seal(&mut t, XSDT_OFF);

    put(&mut t, RSDP_OFF, b"RSD PTR ");
    put(&mut t, RSDP_OFF + 9, OEM_ID);
    t[RSDP_OFF + 15] = 2;
    put(&mut t, RSDP_OFF + 20, &36u32.to_le_bytes());
    put(&mut t, RSDP_OFF + 24, &at(XSDT_OFF).to_le_bytes());
    t[RSDP_OFF + 8] = checksum(&t[RSDP_OFF..RSDP_OFF + 20]);
    t[RSDP_OFF + 32] = checksum(&t[RSDP_OFF..RSDP_OFF + 36]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(t: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(t[off..off + 4].try_into().unwrap())
    }
    fn u64_at(t: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(t[off..off + 8].try_into().unwrap())
    }
    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
    }
    /// The table at guest-physical `gpa`, checked: inside the block, checksum 0.
    fn table(t: &[u8], base: u64, gpa: u64, sig: &[u8; 4]) -> (usize, usize) {
        let off = (gpa - base) as usize;
        assert_eq!(&t[off..off + 4], sig);
        let len = u32_at(t, off + 4) as usize;
        assert!(off + len <= SIZE);
        assert!(sums_to_zero(&t[off..off + len]), "{sig:?} checksum");
        (off, len)
    }

    #[test]
    fn tables_chain_from_the_rsdp_with_valid_checksums() {
        let base = 0xE_0000;
        for vcpus in [1, 2, 4] {
            let t = build(base, vcpus, false);
            assert_eq!(&t[..8], b"RSD PTR ");
            assert!(sums_to_zero(&t[..20]) && sums_to_zero(&t[..36]));
            assert_eq!(t[15], 2);
            let (x, xlen) = table(&t, base, u64_at(&t, 24), b"XSDT");
            assert_eq!(xlen, 36 + 16);
            let (f, _) = table(&t, base, u64_at(&t, x + 36), b"FACP");
            let (m, mlen) = table(&t, base, u64_at(&t, x + 44), b"APIC");
            // FADT: hardware-reduced, DSDT and FACS by both pointers.
            assert_ne!(u32_at(&t, f + 112) & 1 << 20, 0);
            assert_eq!(u64_at(&t, f + 140), u32_at(&t, f + 40) as u64);
            let (d, dlen) = table(&t, base, u64_at(&t, f + 140), b"DSDT");
            let facs = (u64_at(&t, f + 132) - base) as usize;
            assert_eq!(&t[facs..facs + 4], b"FACS");
            // DSDT: one ACPI0007 device per vCPU, AML lengths consistent.
            let aml = &t[d + 36..d + dlen];
            // \_S5 first: Package (4) { 7, 7, 0, 0 }, then the scope.
            assert_eq!(&aml[..9], b"\x08\\_S5_\x12\x08\x04");
            assert_eq!(&aml[9..15], &[0x0A, 7, 0x0A, 7, 0, 0]);
            assert_eq!(t[f + 244], 1);
            assert_eq!(u64_at(&t, f + 248), SLEEP_CONTROL_PORT as u64);
            let aml = &aml[15..];
            assert_eq!(aml[0], 0x10);
            let hids = aml.windows(8).filter(|w| w == b"ACPI0007").count();
            assert_eq!(hids, vcpus);
            let scope_len = match aml[1] >> 6 {
                0 => aml[1] as usize,
                1 => (aml[1] & 0xF) as usize | (aml[2] as usize) << 4,
                n => panic!("PkgLength of {} bytes", n + 1),
            };
            assert_eq!(1 + scope_len, aml.len());
            // MADT: a LAPIC per vCPU with APIC id 2k, enabled; nothing else.
            assert_eq!(mlen, 44 + 8 * vcpus);
            assert_eq!(u32_at(&t, m + 40), 0, "no 8259");
            for k in 0..vcpus {
                let e = m + 44 + 8 * k;
                assert_eq!(&t[e..e + 4], &[0, 8, k as u8, 2 * k as u8]);
                assert_eq!(u32_at(&t, e + 4), 1);
            }
        }
    }

    #[test]
    fn a_domain_with_devices_gets_an_mcfg_with_its_ecam_window() {
        let base = 0xE_0000;
        let t = build(base, 4, true);
        let (x, xlen) = table(&t, base, u64_at(&t, 24), b"XSDT");
        assert_eq!(xlen, 36 + 24);
        let (m, mlen) = table(&t, base, u64_at(&t, x + 52), b"MCFG");
        assert_eq!(mlen, 60);
        assert_eq!(u64_at(&t, m + 44), crate::vpci::ECAM_GPA);
        // Segment 0, buses 0..=255.
        assert_eq!(&t[m + 52..m + 56], &[0, 0, 0, 255]);
        // The other tables are where they were, and none overlaps it.
        table(&t, base, u64_at(&t, x + 44), b"APIC");
        let (_, no) = table(&build(base, 4, false), base, u64_at(&t, 24), b"XSDT");
        assert_eq!(no, 36 + 16);
    }
}
