//! ACPI DMAR (VT-d) and IVRS (AMD-Vi) parsing. Malformed or truncated tables give an
//! [`AcpiError`]; nothing here indexes out of bounds or panics.

pub mod dmar;
pub mod ivrs;

use core::fmt;

/// What is wrong with a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// Shorter than its header or its declared length.
    Truncated { at: usize },
    /// Wrong signature.
    Signature([u8; 4]),
    /// Bytes do not sum to zero.
    Checksum,
    /// A structure's length is impossible (zero, too short, past the end).
    BadLength { at: usize, len: usize },
    /// A device-scope or device entry is malformed.
    BadEntry { at: usize },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::Truncated { at } => write!(f, "table truncated at byte {at}"),
            AcpiError::Signature(s) => write!(f, "unexpected signature {s:?}"),
            AcpiError::Checksum => write!(f, "checksum mismatch"),
            AcpiError::BadLength { at, len } => {
                write!(f, "bad structure length {len} at byte {at}")
            }
            AcpiError::BadEntry { at } => write!(f, "malformed entry at byte {at}"),
        }
    }
}

/// Bounds-checked little-endian reads.
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn u8(&self, at: usize) -> Result<u8, AcpiError> {
        self.0.get(at).copied().ok_or(AcpiError::Truncated { at })
    }
    pub fn u16(&self, at: usize) -> Result<u16, AcpiError> {
        Ok(u16::from_le_bytes(self.array(at)?))
    }
    pub fn u32(&self, at: usize) -> Result<u32, AcpiError> {
        Ok(u32::from_le_bytes(self.array(at)?))
    }
    pub fn u64(&self, at: usize) -> Result<u64, AcpiError> {
        Ok(u64::from_le_bytes(self.array(at)?))
    }
    fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], AcpiError> {
        self.0
            .get(at..at.checked_add(N).ok_or(AcpiError::Truncated { at })?)
            .and_then(|s| s.try_into().ok())
            .ok_or(AcpiError::Truncated { at })
    }
}

/// Checks signature, length and checksum; returns the table cut to its declared length.
pub(crate) fn check_header<'a>(
    table: &'a [u8],
    signature: &[u8; 4],
) -> Result<&'a [u8], AcpiError> {
    let b = Bytes(table);
    let sig = [b.u8(0)?, b.u8(1)?, b.u8(2)?, b.u8(3)?];
    if &sig != signature {
        return Err(AcpiError::Signature(sig));
    }
    let len = b.u32(4)? as usize;
    if len < 36 {
        return Err(AcpiError::BadLength { at: 4, len });
    }
    let table = table
        .get(..len)
        .ok_or(AcpiError::Truncated { at: table.len() })?;
    if table.iter().fold(0u8, |s, &x| s.wrapping_add(x)) != 0 {
        return Err(AcpiError::Checksum);
    }
    Ok(table)
}

#[cfg(test)]
mod tests;
