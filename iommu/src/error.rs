//! Typed errors of the vendor-neutral API and the drivers.

use crate::Bdf;
use core::fmt;

/// Everything that can go wrong, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address or length is not a multiple of 4 KiB, or the length is zero.
    Unaligned { iova: u64, len: u64 },
    /// The range ends beyond the domain's address width.
    OutOfRange { iova: u64, len: u64, limit: u64 },
    /// Part of the range is already mapped (the first mapped IOVA is given).
    Overlap { iova: u64 },
    /// Part of the physical range wraps around the address space.
    BadPhysical { pa: u64 },
    /// A mapping must allow reading, writing or both.
    EmptyPermission,
    /// No domain with this id.
    NoSuchDomain(u32),
    /// The device is not behind this IOMMU (not in any device scope).
    UnknownDevice(Bdf),
    /// The device is attached to another domain.
    AlreadyAttached { device: Bdf, domain: u32 },
    /// The device is not attached to any domain.
    NotAttached(Bdf),
    /// The domain still has devices attached.
    DomainBusy(u32),
    /// Every hardware domain id is in use.
    NoDomainIds,
    /// The HAL could not provide memory.
    OutOfMemory,
    /// The hardware did not complete a command within the polling budget.
    Timeout(&'static str),
    /// The hardware lacks something the driver needs.
    Unsupported(&'static str),
    /// The interrupt-remapping table is full or an index is invalid.
    NoInterruptEntry,
    /// An ACPI table is malformed.
    Acpi(crate::acpi::AcpiError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unaligned { iova, len } => {
                write!(
                    f,
                    "range {iova:#x}+{len:#x} is not 4 KiB aligned or is empty"
                )
            }
            Error::OutOfRange { iova, len, limit } => {
                write!(
                    f,
                    "range {iova:#x}+{len:#x} exceeds the address width (limit {limit:#x})"
                )
            }
            Error::Overlap { iova } => write!(f, "IOVA {iova:#x} is already mapped"),
            Error::BadPhysical { pa } => write!(f, "physical range at {pa:#x} wraps"),
            Error::EmptyPermission => write!(f, "a mapping needs read or write permission"),
            Error::NoSuchDomain(d) => write!(f, "no domain {d}"),
            Error::UnknownDevice(b) => write!(f, "device {b} is not behind this IOMMU"),
            Error::AlreadyAttached { device, domain } => {
                write!(f, "device {device} is already attached to domain {domain}")
            }
            Error::NotAttached(b) => write!(f, "device {b} is not attached"),
            Error::DomainBusy(d) => write!(f, "domain {d} still has devices attached"),
            Error::NoDomainIds => write!(f, "all hardware domain ids are in use"),
            Error::OutOfMemory => write!(f, "out of memory for IOMMU tables"),
            Error::Timeout(what) => write!(f, "IOMMU timed out: {what}"),
            Error::Unsupported(what) => write!(f, "IOMMU lacks {what}"),
            Error::NoInterruptEntry => write!(f, "no free or valid interrupt-remapping entry"),
            Error::Acpi(e) => write!(f, "ACPI: {e}"),
        }
    }
}

impl From<crate::acpi::AcpiError> for Error {
    fn from(e: crate::acpi::AcpiError) -> Self {
        Error::Acpi(e)
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
