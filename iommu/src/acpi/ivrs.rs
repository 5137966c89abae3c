//! The I/O Virtualization Reporting Structure (AMD IOMMU spec, section 5).

use super::{check_header, AcpiError, Bytes};
use crate::Coverage;
use alloc::vec::Vec;

/// An IVHD device entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceEntry {
    /// Type 1: every device id.
    All { setting: u8 },
    /// Type 2 (and 0x46 extended): one device id.
    Select { id: u16, setting: u8 },
    /// Types 3/0x47 .. 4: an inclusive range.
    Range { start: u16, end: u16, setting: u8 },
    /// Type 0x42: one device id that requests as `alias`.
    Alias { id: u16, alias: u16, setting: u8 },
    /// Type 0x43 .. 4: a range requesting as `alias`.
    AliasRange {
        start: u16,
        end: u16,
        alias: u16,
        setting: u8,
    },
    /// Type 0x48: an IOAPIC (variety 1) or HPET (variety 2) with its handle.
    Special {
        handle: u8,
        id: u16,
        variety: u8,
        setting: u8,
    },
    /// Type 0xf0: an ACPI namespace device.
    AcpiHid { id: u16, setting: u8, hid: [u8; 8] },
}

/// An I/O virtualization hardware definition (IOMMU unit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ivhd {
    /// 0x10, 0x11 or 0x40.
    pub kind: u8,
    pub flags: u8,
    /// The IOMMU's own PCI requester id.
    pub device_id: u16,
    /// Offset of its capability block in its PCI config space.
    pub capability_offset: u16,
    pub base: u64,
    pub segment: u16,
    pub info: u16,
    /// Type 0x10: IOMMU feature reporting; 0x11/0x40: IOMMU attributes.
    pub features: u32,
    /// Types 0x11/0x40: an image of the extended-feature register.
    pub efr: Option<u64>,
    pub entries: Vec<DeviceEntry>,
}

impl Ivhd {
    /// The requester ids this unit translates.
    pub fn coverage(&self) -> Coverage {
        let mut c = Coverage {
            segment: self.segment,
            ..Coverage::default()
        };
        for e in &self.entries {
            match *e {
                DeviceEntry::All { .. } => c.all = true,
                DeviceEntry::Select { id, .. } | DeviceEntry::Alias { id, .. } => {
                    c.ranges.push((id, id))
                }
                DeviceEntry::Range { start, end, .. }
                | DeviceEntry::AliasRange { start, end, .. } => c.ranges.push((start, end)),
                // IOAPIC/HPET: interrupt sources with their own requester id.
                DeviceEntry::Special { id, .. } => c.ranges.push((id, id)),
                DeviceEntry::AcpiHid { .. } => {}
            }
        }
        c
    }
}

/// An I/O virtualization memory definition (a range needing special treatment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ivmd {
    /// 0x20 all devices, 0x21 one device, 0x22 a range of devices.
    pub kind: u8,
    /// bit 0 unity, bit 1 IR, bit 2 IW, bit 3 exclusion range.
    pub flags: u8,
    pub device_id: u16,
    pub aux: u16,
    pub start: u64,
    pub length: u64,
}

/// The parsed table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ivrs {
    pub iv_info: u32,
    pub units: Vec<Ivhd>,
    pub memory: Vec<Ivmd>,
    /// Types of blocks not interpreted.
    pub skipped: Vec<u8>,
}

impl Ivrs {
    /// Virtual address bits the IOMMUs translate (IVinfo VAsize).
    pub fn va_bits(&self) -> u8 {
        ((self.iv_info >> 15) & 0x7f) as u8
    }

    /// Physical address bits (IVinfo PAsize).
    pub fn pa_bits(&self) -> u8 {
        ((self.iv_info >> 8) & 0x7f) as u8
    }

    /// Parses a complete IVRS table (header included). When a type 0x11/0x40 block
    /// describes the same unit as a type 0x10 block, both are returned: pick by `kind`.
    pub fn parse(table: &[u8]) -> Result<Self, AcpiError> {
        let table = check_header(table, b"IVRS")?;
        let b = Bytes(table);
        let mut ivrs = Ivrs {
            iv_info: b.u32(36)?,
            units: Vec::new(),
            memory: Vec::new(),
            skipped: Vec::new(),
        };
        let mut at = 48;
        while at < table.len() {
            let kind = b.u8(at)?;
            let len = usize::from(b.u16(at + 2)?);
            if len < 4 || at + len > table.len() {
                return Err(AcpiError::BadLength { at, len });
            }
            let block = &table[at..at + len];
            let s = Bytes(block);
            match kind {
                0x10 | 0x11 | 0x40 => {
                    let header = if kind == 0x10 { 24 } else { 40 };
                    if len < header {
                        return Err(AcpiError::BadLength { at, len });
                    }
                    ivrs.units.push(Ivhd {
                        kind,
                        flags: s.u8(1)?,
                        device_id: s.u16(4)?,
                        capability_offset: s.u16(6)?,
                        base: s.u64(8)?,
                        segment: s.u16(16)?,
                        info: s.u16(18)?,
                        features: s.u32(20)?,
                        efr: if kind == 0x10 { None } else { Some(s.u64(24)?) },
                        entries: device_entries(block, header, at)?,
                    });
                }
                0x20..=0x22 => {
                    if len < 32 {
                        return Err(AcpiError::BadLength { at, len });
                    }
                    ivrs.memory.push(Ivmd {
                        kind,
                        flags: s.u8(1)?,
                        device_id: s.u16(4)?,
                        aux: s.u16(6)?,
                        start: s.u64(16)?,
                        length: s.u64(24)?,
                    });
                }
                other => ivrs.skipped.push(other),
            }
            at += len;
        }
        Ok(ivrs)
    }
}

fn device_entries(
    block: &[u8],
    mut at: usize,
    origin: usize,
) -> Result<Vec<DeviceEntry>, AcpiError> {
    let b = Bytes(block);
    let mut out = Vec::new();
    // A start-of-range entry waiting for its end: (start, setting, alias).
    let mut open: Option<(u16, u8, Option<u16>)> = None;
    while at < block.len() {
        let kind = b.u8(at)?;
        let id = b.u16(at + 1)?;
        let setting = b.u8(at + 3)?;
        let bad = AcpiError::BadEntry { at: origin + at };
        if open.is_some() && kind != 4 {
            return Err(bad);
        }
        let len = match kind {
            0..=63 => 4,
            64..=127 => 8,
            0xf0 => {
                // ACPI HID entry: 22 bytes plus a UID of the length at byte 21.
                22 + usize::from(b.u8(at + 21)?)
            }
            _ => return Err(bad),
        };
        if at + len > block.len() {
            return Err(AcpiError::Truncated { at: origin + at });
        }
        match kind {
            0 => {}
            1 => out.push(DeviceEntry::All { setting }),
            2 | 0x46 => out.push(DeviceEntry::Select { id, setting }),
            3 | 0x47 => open = Some((id, setting, None)),
            0x43 => open = Some((id, setting, Some(b.u16(at + 5)?))),
            4 => {
                let (start, setting, alias) = open.take().ok_or(bad)?;
                if id < start {
                    return Err(bad);
                }
                out.push(match alias {
                    None => DeviceEntry::Range {
                        start,
                        end: id,
                        setting,
                    },
                    Some(alias) => DeviceEntry::AliasRange {
                        start,
                        end: id,
                        alias,
                        setting,
                    },
                });
            }
            0x42 => out.push(DeviceEntry::Alias {
                id,
                alias: b.u16(at + 5)?,
                setting,
            }),
            0x48 => out.push(DeviceEntry::Special {
                handle: b.u8(at + 4)?,
                id: b.u16(at + 5)?,
                variety: b.u8(at + 7)?,
                setting,
            }),
            0xf0 => {
                let mut hid = [0u8; 8];
                hid.copy_from_slice(&block[at + 4..at + 12]);
                out.push(DeviceEntry::AcpiHid { id, setting, hid });
            }
            // Reserved types of known size are skipped.
            _ => {}
        }
        at += len;
    }
    if open.is_some() {
        return Err(AcpiError::BadEntry { at: origin + at });
    }
    Ok(out)
}
