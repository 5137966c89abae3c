//! Sluice's IOMMU drivers: Intel VT-d and AMD-Vi behind one vendor-neutral API.
//!
//! * [`acpi`]: DMAR and IVRS parsing (typed errors, never panics).
//! * [`pagetable`]: the radix page-table logic shared by both formats (map, unmap,
//!   superpage split and merge, overlap checks).
//! * [`vtd`] and [`amdvi`]: the hardware protocols (root/context tables or device table,
//!   invalidation queue or command buffer, fault recording or event log, interrupt
//!   remapping).
//! * [`domain`]: the vendor-neutral API ([`domain::Iommu`]) the hypervisor uses.
//! * [`hal`]: the only seam to the machine; all `unsafe` lives in its implementations.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod acpi;
pub mod amdvi;
pub mod domain;
pub mod error;
pub mod hal;
pub mod pagetable;
pub mod vtd;

pub use domain::{DomainId, Fault, FaultKind, Iommu, IommuHw, MsiMessage};
pub use error::{Error, Result};
pub use hal::{Hal, PhysAddr, PAGE_SIZE};
pub use pagetable::Perm;

use core::fmt;

/// A PCI function: segment, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// A function on segment 0. `device` is masked to 5 bits and `function` to 3.
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Bdf {
            segment: 0,
            bus,
            device: device & 0x1f,
            function: function & 7,
        }
    }

    /// The 16-bit requester id (source id / device id) the IOMMU sees.
    pub const fn requester_id(self) -> u16 {
        ((self.bus as u16) << 8) | ((self.device as u16) << 3) | self.function as u16
    }

    /// The function with this requester id on `segment`.
    pub const fn from_requester_id(segment: u16, rid: u16) -> Self {
        Bdf {
            segment,
            bus: (rid >> 8) as u8,
            device: ((rid >> 3) & 0x1f) as u8,
            function: (rid & 7) as u8,
        }
    }

    /// Device and function as one byte.
    pub const fn devfn(self) -> u8 {
        (self.device << 3) | self.function
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// Which PCI functions an IOMMU unit translates.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Coverage {
    pub segment: u16,
    /// Every function on the segment not claimed by another unit (DMAR INCLUDE_PCI_ALL,
    /// IVHD "all" entries).
    pub all: bool,
    /// Requester-id ranges (inclusive) named explicitly.
    pub ranges: alloc::vec::Vec<(u16, u16)>,
}

impl Coverage {
    /// True when `device` is translated by the unit.
    pub fn covers(&self, device: Bdf) -> bool {
        device.segment == self.segment
            && (self.all
                || self
                    .ranges
                    .iter()
                    .any(|&(a, b)| (a..=b).contains(&device.requester_id())))
    }
}
