//! ACPI discovery: the RSDP (BIOS area), the RSDT/XSDT, the MADT (CPUs, I/O APICs), the
//! MCFG (PCI ECAM), and where the DMAR / IVRS (IOMMU) tables are; then PCI enumeration
//! of the MCFG's buses over ECAM. Addresses and lengths from the tables are checked
//! against the identity map before anything is read: a bad table is skipped, never a
//! fault.

use crate::arch::phys;
use alloc::vec::Vec;
use sluice_iommu::Bdf;

fn bytes<const N: usize>(pa: u64) -> [u8; N] {
    let mut b = [0u8; N];
    phys::read(pa, &mut b);
    b
}
fn u32_at(pa: u64) -> u32 {
    u32::from_le_bytes(bytes(pa))
}
fn u64_at(pa: u64) -> u64 {
    u64::from_le_bytes(bytes(pa))
}

fn checksum_ok(pa: u64, len: u64) -> bool {
    let mut sum = 0u8;
    let mut buf = [0u8; 256];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(256) as usize;
        phys::read(pa + off, &mut buf[..n]);
        sum = buf[..n].iter().fold(sum, |s, b| s.wrapping_add(*b));
        off += n as u64;
    }
    sum == 0
}

#[derive(Default, Debug, Clone)]
pub struct Platform {
    /// Where the RSDP is (0 when it came as a copy in a multiboot2 tag).
    pub rsdp: u64,
    /// The RSDP came from a multiboot2 ACPI tag (no BIOS-area scan).
    pub rsdp_from_tag: bool,
    pub cpus: u32,
    pub lapic_ids: [u8; 32],
    pub ioapics: u32,
    pub ecam_base: u64,
    pub ecam_buses: (u8, u8),
    /// Where the DMAR table is (address, length), checksum not yet checked.
    pub dmar: Option<(u64, u64)>,
    /// Where the IVRS table is.
    pub ivrs: Option<(u64, u64)>,
}

/// Largest ACPI table read (DMAR and IVRS of real machines are a few KiB).
pub const MAX_TABLE: u64 = 1 << 20;

/// A copy of the table at `(pa, len)` (the parsers check header, length and checksum).
pub fn copy_table((pa, len): (u64, u64)) -> Option<Vec<u8>> {
    if len > MAX_TABLE || !phys::mapped(pa, len) {
        return None;
    }
    let mut v = alloc::vec![0u8; len as usize];
    phys::read(pa, &mut v);
    Some(v)
}

fn find_rsdp() -> Option<u64> {
    let ebda = (u16::from_le_bytes(bytes(0x40E)) as u64) << 4;
    let ranges = [(ebda, ebda + 1024), (0xE_0000, 0x10_0000)];
    for (start, end) in ranges {
        if start < 0x1000 {
            continue;
        }
        let mut p = start;
        while p + 20 <= end {
            if bytes::<8>(p) == *b"RSD PTR " && checksum_ok(p, 20) {
                return Some(p);
            }
            p += 16;
        }
    }
    None
}

/// Where the log says the RSDP came from.
pub struct RsdpFrom<'a>(pub &'a Platform);

impl core::fmt::Display for RsdpFrom<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.rsdp_from_tag {
            write!(f, "from the multiboot2 tag")
        } else {
            write!(f, "at {:#x}", self.0.rsdp)
        }
    }
}

/// A copy of an RSDP (`len` 20 or 36) that is usable: signature and checksum(s) right.
fn rsdp_ok(b: &[u8; 36], len: usize) -> bool {
    let sum = |n: usize| b[..n].iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0;
    &b[..8] == b"RSD PTR " && sum(20) && (len < 36 || b[15] < 2 || sum(36))
}

/// Walks the ACPI tables from the RSDP copy a loader gave (multiboot2's ACPI tags) or
/// else the one found in the BIOS areas. Returns `None` without an RSDP.
pub fn discover(copy: Option<([u8; 36], usize)>) -> Option<Platform> {
    let (b, len, pa, from_tag) = match copy {
        Some((b, len)) if rsdp_ok(&b, len) => (b, len, 0, true),
        _ => {
            let pa = find_rsdp()?;
            (bytes::<36>(pa), 36, pa, false)
        }
    };
    let mut pf = Platform {
        rsdp: pa,
        rsdp_from_tag: from_tag,
        ..Default::default()
    };
    let le32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let le64 = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let revision = b[15];
    let (root, entry_size) = if revision >= 2 && len >= 36 && le64(24) != 0 {
        (le64(24), 8)
    } else {
        (le32(16) as u64, 4)
    };
    if !phys::mapped(root, 36) {
        return Some(pf);
    }
    let len = (u32_at(root + 4) as u64).min(4096);
    if !phys::mapped(root, len) {
        return Some(pf);
    }
    let mut e = root + 36;
    while e + entry_size <= root + len {
        let table = if entry_size == 8 {
            u64_at(e)
        } else {
            u32_at(e) as u64
        };
        e += entry_size;
        if !phys::mapped(table, 36) {
            continue;
        }
        let sig = bytes::<4>(table);
        let tlen = u32_at(table + 4) as u64;
        if !(36..=MAX_TABLE).contains(&tlen) || !phys::mapped(table, tlen) {
            continue;
        }
        // The IOMMU tables are kept even with a bad checksum: their parser reports it
        // (a present but unusable IOMMU must be logged, not mistaken for none).
        match &sig {
            b"DMAR" => pf.dmar = Some((table, tlen)),
            b"IVRS" => pf.ivrs = Some((table, tlen)),
            _ => {}
        }
        if !checksum_ok(table, tlen) {
            continue;
        }
        match &sig {
            b"APIC" => parse_madt(&mut pf, table, tlen),
            b"MCFG" if tlen >= 44 + 16 => {
                pf.ecam_base = u64_at(table + 44);
                let b = bytes::<2>(table + 44 + 10);
                pf.ecam_buses = (b[0], b[1]);
            }
            _ => {}
        }
    }
    Some(pf)
}

fn parse_madt(pf: &mut Platform, table: u64, len: u64) {
    let mut p = table + 44;
    while p + 2 <= table + len {
        let [ty, l] = bytes::<2>(p);
        if l < 2 {
            break;
        }
        match ty {
            0 if l >= 8 => {
                let [_, _, _, apic_id] = bytes::<4>(p);
                let flags = u32_at(p + 4);
                if flags & 1 != 0 && (pf.cpus as usize) < pf.lapic_ids.len() {
                    pf.lapic_ids[pf.cpus as usize] = apic_id;
                    pf.cpus += 1;
                }
            }
            1 => pf.ioapics += 1,
            _ => {}
        }
        p += l as u64;
    }
}

/// A PCI function found over ECAM.
#[derive(Clone, Copy, Debug)]
pub struct PciFunction {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
}

/// The ECAM address of a function's configuration space, if inside the identity map.
pub fn config_space(pf: &Platform, bdf: Bdf) -> Option<u64> {
    if pf.ecam_base == 0
        || bdf.segment != 0
        || !(pf.ecam_buses.0..=pf.ecam_buses.1).contains(&bdf.bus)
    {
        return None;
    }
    // The MCFG base address is that of bus 0, whatever the first bus decoded.
    let cfg = pf.ecam_base.checked_add(
        ((bdf.bus as u64) << 20) | ((bdf.device as u64) << 15) | ((bdf.function as u64) << 12),
    )?;
    phys::mapped(cfg, 4096).then_some(cfg)
}

/// Reads a 32-bit configuration register (`off` is rounded down to 4 and kept below
/// 4096); all ones for a function without configuration space.
pub fn config_read(pf: &Platform, bdf: Bdf, off: u16) -> u32 {
    match config_space(pf, bdf) {
        Some(cfg) => phys::mmio_read_u32(cfg + u64::from(off & 0xffc)),
        None => u32::MAX,
    }
}

/// Writes a 32-bit configuration register.
pub fn config_write(pf: &Platform, bdf: Bdf, off: u16, v: u32) {
    if let Some(cfg) = config_space(pf, bdf) {
        phys::mmio_write_u32(cfg + u64::from(off & 0xffc), v)
    }
}

/// Logs and returns each PCI function found over ECAM.
pub fn enumerate_pci(pf: &Platform) -> Vec<PciFunction> {
    let mut found = Vec::new();
    if pf.ecam_base == 0 {
        return found;
    }
    for bus in pf.ecam_buses.0..=pf.ecam_buses.1 {
        for dev in 0..32u8 {
            for func in 0..8u8 {
                let bdf = Bdf::new(bus, dev, func);
                let Some(cfg) = config_space(pf, bdf) else {
                    return found;
                };
                let id = phys::mmio_read_u32(cfg);
                if id & 0xFFFF == 0xFFFF {
                    if func == 0 {
                        break;
                    }
                    continue;
                }
                let class = phys::mmio_read_u32(cfg + 8) >> 8;
                crate::log!(
                    "pci: {:02x}:{:02x}.{} {:04x}:{:04x} class {:06x}",
                    bus,
                    dev,
                    func,
                    id & 0xFFFF,
                    id >> 16,
                    class
                );
                found.push(PciFunction {
                    bdf,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                });
                let header = phys::mmio_read_u32(cfg + 12) >> 16 & 0xFF;
                if func == 0 && header & 0x80 == 0 {
                    break;
                }
            }
        }
    }
    found
}
