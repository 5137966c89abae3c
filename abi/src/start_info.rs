//! The PVH boot ABI (`xen/arch-x86/hvm/start_info.h`): what a PVH guest finds in `%ebx`
//! when it starts at its `XEN_ELFNOTE_PHYS32_ENTRY` in 32-bit protected mode with
//! paging off.
//!
//! `%ebx` holds the physical address of an [`HvmStartInfo`]; it points to the module
//! list ([`HvmModlistEntry`]), the command line, the ACPI RSDP, and (version 1) the
//! memory map ([`HvmMemmapTableEntry`]).

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;

/// [`HvmStartInfo::magic`]: "xEn3" with the 0x80 bit of the "E" set
/// (`XEN_HVM_START_MAGIC_VALUE`).
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// The structure version this crate writes (memory map fields present).
pub const HVM_START_INFO_VERSION: u32 = 1;
/// ELF note type naming the 32-bit PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

bitflags::bitflags! {
    /// [`HvmStartInfo::flags`] (`SIF_*` from `xen.h`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct StartInfoFlags: u32 {
        /// The domain is privileged (`SIF_PRIVILEGED`).
        const PRIVILEGED = 1 << 0;
        /// The initial control domain (`SIF_INITDOMAIN`).
        const INITDOMAIN = 1 << 1;
        /// `mod_start` is a multiboot module (`SIF_MULTIBOOT_MOD`).
        const MULTIBOOT_MOD = 1 << 2;
        /// `mod_start` is a PFN (`SIF_MOD_START_PFN`).
        const MOD_START_PFN = 1 << 3;
        /// Tools understand a virtually mapped p2m (`SIF_VIRT_P2M_4TOOLS`).
        const VIRT_P2M_4TOOLS = 1 << 4;
    }
}

/// The PVH start-of-day structure (`struct hvm_start_info`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// 0 or 1; version 1 adds the memory map fields.
    pub version: u32,
    /// [`StartInfoFlags`].
    pub flags: u32,
    /// Entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of `nr_modules` [`HvmModlistEntry`]s.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line (0: none).
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP (0: none).
    pub rsdp_paddr: u64,
    /// Version 1: physical address of `memmap_entries` [`HvmMemmapTableEntry`]s.
    pub memmap_paddr: u64,
    /// Version 1: entries at `memmap_paddr` (0: no map).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Why an [`HvmStartInfo`] is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// Wrong magic value.
    BadMagic(u32),
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::BadMagic(m) => write!(f, "hvm_start_info magic {m:#x}"),
        }
    }
}

impl core::error::Error for StartInfoError {}

impl HvmStartInfo {
    /// Check the magic value.
    pub fn check(&self) -> Result<(), StartInfoError> {
        if self.magic != XEN_HVM_START_MAGIC_VALUE {
            return Err(StartInfoError::BadMagic(self.magic));
        }
        Ok(())
    }

    /// The memory map location and length, if this is a version-1 structure with one.
    pub fn memmap(&self) -> Option<(u64, u32)> {
        (self.version >= 1 && self.memmap_entries != 0)
            .then_some((self.memmap_paddr, self.memmap_entries))
    }
}

/// One module passed to the guest (`struct hvm_modlist_entry`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of its command line (0: none).
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

xen_enum! {
    /// Memory map entry types (`XEN_HVM_MEMMAP_TYPE_*`, the E820 types).
    pub enum HvmMemmapType: u32 as "hvm memmap type" {
        /// Usable RAM.
        Ram = 1 => "XEN_HVM_MEMMAP_TYPE_RAM",
        /// Reserved.
        Reserved = 2 => "XEN_HVM_MEMMAP_TYPE_RESERVED",
        /// ACPI reclaimable.
        Acpi = 3 => "XEN_HVM_MEMMAP_TYPE_ACPI",
        /// ACPI NVS.
        Nvs = 4 => "XEN_HVM_MEMMAP_TYPE_NVS",
        /// Unusable.
        Unusable = 5 => "XEN_HVM_MEMMAP_TYPE_UNUSABLE",
        /// Disabled.
        Disabled = 6 => "XEN_HVM_MEMMAP_TYPE_DISABLED",
        /// Persistent memory.
        Pmem = 7 => "XEN_HVM_MEMMAP_TYPE_PMEM",
    }
}

/// One memory map entry (`struct hvm_memmap_table_entry`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmMemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// [`HvmMemmapType`] (`type` in C).
    pub map_type: u32,
    /// Must be zero.
    pub reserved: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_and_memmap() {
        let mut si = HvmStartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            memmap_paddr: 0x1000,
            memmap_entries: 3,
            ..Default::default()
        };
        assert_eq!(si.check(), Ok(()));
        assert_eq!(si.memmap(), Some((0x1000, 3)));
        si.version = 0;
        assert_eq!(si.memmap(), None);
        si.magic = 1;
        assert_eq!(si.check(), Err(StartInfoError::BadMagic(1)));
        assert_eq!(HvmMemmapType::try_from(8).unwrap_err().value, 8);
    }
}
