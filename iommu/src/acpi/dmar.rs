//! The DMA Remapping Reporting table (VT-d spec chapter 8).

use super::{check_header, AcpiError, Bytes};
use crate::{Bdf, Coverage};
use alloc::vec::Vec;

/// A device-scope entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceScope {
    /// 1 endpoint, 2 bridge (sub-hierarchy), 3 IOAPIC, 4 HPET, 5 ACPI namespace device.
    pub kind: u8,
    pub enumeration_id: u8,
    pub start_bus: u8,
    /// (device, function) hops from `start_bus`.
    pub path: Vec<(u8, u8)>,
}

impl DeviceScope {
    /// The function this scope names when its path is one hop (no bridge to resolve).
    pub fn direct(&self, segment: u16) -> Option<Bdf> {
        match self.path.as_slice() {
            [(d, f)] => Some(Bdf {
                segment,
                ..Bdf::new(self.start_bus, *d, *f)
            }),
            _ => None,
        }
    }
}

/// A remapping hardware unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drhd {
    pub include_pci_all: bool,
    pub segment: u16,
    pub base: u64,
    pub scopes: Vec<DeviceScope>,
}

impl Drhd {
    /// The requester ids this unit translates or remaps interrupts for (single-hop
    /// endpoint, IOAPIC and HPET scopes; bridge scopes cover their bus only when the caller
    /// resolves them).
    pub fn coverage(&self) -> Coverage {
        Coverage {
            segment: self.segment,
            all: self.include_pci_all,
            ranges: self
                .scopes
                .iter()
                // Endpoints, and IOAPIC/HPET scopes: those are interrupt sources whose
                // requests (remapped interrupts) carry that source id.
                .filter(|s| matches!(s.kind, 1 | 3 | 4))
                .filter_map(|s| s.direct(self.segment))
                .map(|b| (b.requester_id(), b.requester_id()))
                .collect(),
        }
    }
}

/// A reserved memory region a device keeps using (must stay identity mapped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rmrr {
    pub segment: u16,
    pub base: u64,
    pub limit: u64,
    pub scopes: Vec<DeviceScope>,
}

/// Root ports that support address translation services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atsr {
    pub all_ports: bool,
    pub segment: u16,
    pub scopes: Vec<DeviceScope>,
}

/// The parsed table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dmar {
    /// Host address width (bits).
    pub host_address_width: u8,
    /// bit 0 INTR_REMAP, bit 1 X2APIC_OPT_OUT, bit 2 DMA_CTRL_PLATFORM_OPT_IN.
    pub flags: u8,
    pub units: Vec<Drhd>,
    pub reserved_regions: Vec<Rmrr>,
    pub ats: Vec<Atsr>,
    /// Types of structures not interpreted (RHSA, ANDD, SATC...).
    pub skipped: Vec<u16>,
}

impl Dmar {
    /// Parses a complete DMAR table (header included).
    pub fn parse(table: &[u8]) -> Result<Self, AcpiError> {
        let table = check_header(table, b"DMAR")?;
        let b = Bytes(table);
        let mut dmar = Dmar {
            host_address_width: b.u8(36)?.saturating_add(1),
            flags: b.u8(37)?,
            units: Vec::new(),
            reserved_regions: Vec::new(),
            ats: Vec::new(),
            skipped: Vec::new(),
        };
        let mut at = 48;
        while at < table.len() {
            let kind = b.u16(at)?;
            let len = usize::from(b.u16(at + 2)?);
            if len < 4 || at + len > table.len() {
                return Err(AcpiError::BadLength { at, len });
            }
            let s = Bytes(&table[at..at + len]);
            match kind {
                0 => dmar.units.push(Drhd {
                    include_pci_all: s.u8(4)? & 1 != 0,
                    segment: s.u16(6)?,
                    base: s.u64(8)?,
                    scopes: scopes(&table[at..at + len], 16, at)?,
                }),
                1 => dmar.reserved_regions.push(Rmrr {
                    segment: s.u16(6)?,
                    base: s.u64(8)?,
                    limit: s.u64(16)?,
                    scopes: scopes(&table[at..at + len], 24, at)?,
                }),
                2 => dmar.ats.push(Atsr {
                    all_ports: s.u8(4)? & 1 != 0,
                    segment: s.u16(6)?,
                    scopes: scopes(&table[at..at + len], 8, at)?,
                }),
                other => dmar.skipped.push(other),
            }
            at += len;
        }
        Ok(dmar)
    }
}

fn scopes(structure: &[u8], mut at: usize, origin: usize) -> Result<Vec<DeviceScope>, AcpiError> {
    let b = Bytes(structure);
    let mut out = Vec::new();
    if at > structure.len() {
        return Err(AcpiError::Truncated { at: origin + at });
    }
    while at < structure.len() {
        let kind = b.u8(at)?;
        let len = usize::from(b.u8(at + 1)?);
        if len < 6 || len % 2 != 0 || at + len > structure.len() {
            return Err(AcpiError::BadEntry { at: origin + at });
        }
        let path = (at + 6..at + len)
            .step_by(2)
            .map(|p| Ok((b.u8(p)?, b.u8(p + 1)?)))
            .collect::<Result<Vec<_>, AcpiError>>()?;
        out.push(DeviceScope {
            kind,
            enumeration_id: b.u8(at + 4)?,
            start_bus: b.u8(at + 5)?,
            path,
        });
        at += len;
    }
    Ok(out)
}
