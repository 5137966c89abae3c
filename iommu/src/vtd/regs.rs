//! VT-d register offsets, bits and capability decoding (VT-d spec chapter 11).

use bitflags::bitflags;

pub const VER: u64 = 0x00;
pub const CAP: u64 = 0x08;
pub const ECAP: u64 = 0x10;
pub const GCMD: u64 = 0x18;
pub const GSTS: u64 = 0x1c;
pub const RTADDR: u64 = 0x20;
pub const CCMD: u64 = 0x28;
pub const FSTS: u64 = 0x34;
pub const FECTL: u64 = 0x38;
pub const FEDATA: u64 = 0x3c;
pub const FEADDR: u64 = 0x40;
pub const FEUADDR: u64 = 0x44;
pub const IQH: u64 = 0x80;
pub const IQT: u64 = 0x88;
pub const IQA: u64 = 0x90;
pub const IRTA: u64 = 0xb8;

bitflags! {
    /// Global command / status bits (GCMD writes, GSTS reads at the same positions).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Global: u32 {
        const TE = 1 << 31;
        const SRTP = 1 << 30;
        const WBF = 1 << 27;
        const QIE = 1 << 26;
        const IRE = 1 << 25;
        const SIRTP = 1 << 24;
        const CFI = 1 << 23;
    }
}

impl Global {
    /// The bits that stay set in GSTS and must be preserved in each GCMD write.
    pub const PERSISTENT: Global = Global::TE
        .union(Global::QIE)
        .union(Global::IRE)
        .union(Global::CFI);
}

bitflags! {
    /// Fault status.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fsts: u32 {
        const PFO = 1 << 0;
        const PPF = 1 << 1;
        const IQE = 1 << 4;
        const ICE = 1 << 5;
        const ITE = 1 << 6;
    }
}

/// The capability register, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub raw: u64,
    /// Supported adjusted guest address widths (bit 1: 39-bit, bit 2: 48-bit).
    pub sagaw: u8,
    /// Maximum guest address width in bits.
    pub mgaw: u8,
    /// Caching mode: not-present entries may be cached.
    pub caching_mode: bool,
    /// Write-buffer flushing required.
    pub rwbf: bool,
    /// Number of domain ids.
    pub domains: u32,
    pub super_2m: bool,
    pub super_1g: bool,
    pub page_selective: bool,
    /// Maximum address-mask value for page-selective invalidation.
    pub mamv: u8,
    /// Fault-recording register offset (bytes) and count.
    pub fault_offset: u64,
    pub fault_count: u32,
    pub drain_read: bool,
    pub drain_write: bool,
}

impl Capabilities {
    pub fn decode(raw: u64) -> Self {
        Capabilities {
            raw,
            sagaw: ((raw >> 8) & 0x1f) as u8,
            mgaw: (((raw >> 16) & 0x3f) + 1) as u8,
            caching_mode: raw & (1 << 7) != 0,
            rwbf: raw & (1 << 4) != 0,
            domains: 1 << (4 + 2 * (raw & 7)),
            super_2m: raw & (1 << 34) != 0,
            super_1g: raw & (1 << 35) != 0,
            page_selective: raw & (1 << 39) != 0,
            mamv: ((raw >> 48) & 0x3f) as u8,
            fault_offset: ((raw >> 24) & 0x3ff) * 16,
            fault_count: (((raw >> 40) & 0xff) + 1) as u32,
            drain_read: raw & (1 << 55) != 0,
            drain_write: raw & (1 << 54) != 0,
        }
    }
}

/// The extended capability register, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCapabilities {
    pub raw: u64,
    pub queued_invalidation: bool,
    pub interrupt_remapping: bool,
    pub x2apic: bool,
    /// IOTLB register offset in bytes.
    pub iotlb_offset: u64,
}

impl ExtCapabilities {
    pub fn decode(raw: u64) -> Self {
        ExtCapabilities {
            raw,
            queued_invalidation: raw & (1 << 1) != 0,
            interrupt_remapping: raw & (1 << 3) != 0,
            x2apic: raw & (1 << 4) != 0,
            iotlb_offset: ((raw >> 8) & 0x3ff) * 16,
        }
    }
}

/// Fault reason codes in words (VT-d spec, appendix "Non-Recoverable Fault Reason Encodings").
pub fn fault_reason(code: u8) -> &'static str {
    match code {
        0x01 => "root entry not present",
        0x02 => "context entry not present",
        0x03 => "invalid context entry",
        0x04 => "address beyond the domain's address width",
        0x05 => "write not permitted (entry not present or read-only)",
        0x06 => "read not permitted (entry not present or write-only)",
        0x07 => "paging-entry address invalid",
        0x08 => "root-table address invalid",
        0x09 => "context-table address invalid",
        0x0a => "reserved bits set in root entry",
        0x0b => "reserved bits set in context entry",
        0x0c => "reserved bits set in paging entry",
        0x0d => "translation type blocked by context entry",
        0x20 => "interrupt request reserved-field violation",
        0x21 => "interrupt index beyond the remapping table",
        0x22 => "interrupt-remapping entry not present",
        0x23 => "interrupt-remapping table address invalid",
        0x24 => "interrupt-remapping entry reserved-field violation",
        0x25 => "compatibility-format interrupt blocked",
        0x26 => "interrupt request source-id check failed",
        0x27 => "interrupt-remapping entry is posted or invalid type",
        _ => "unknown fault reason",
    }
}
