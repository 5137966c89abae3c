//! `HYPERVISOR_memory_op` (`xen/memory.h`): the `XENMEM_*` commands, the
//! `XENMAPSPACE_*` spaces, and the physmap, memory-map and reservation argument
//! structs.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
use crate::types::{GuestHandle, RawDomId, XenPfn};

xen_enum! {
    /// `HYPERVISOR_memory_op` commands (`XENMEM_*`) this crate models.
    pub enum XenMemOp: u32 as "memory op" {
        /// Add extents ([`XenMemoryReservation`]).
        IncreaseReservation = 0 => "XENMEM_increase_reservation",
        /// Remove extents ([`XenMemoryReservation`]).
        DecreaseReservation = 1 => "XENMEM_decrease_reservation",
        /// Highest machine frame.
        MaximumRamPage = 2 => "XENMEM_maximum_ram_page",
        /// Current reservation of a domain.
        CurrentReservation = 3 => "XENMEM_current_reservation",
        /// Maximum reservation of a domain.
        MaximumReservation = 4 => "XENMEM_maximum_reservation",
        /// The machine-to-phys table frames.
        MachphysMfnList = 5 => "XENMEM_machphys_mfn_list",
        /// Populate the physmap ([`XenMemoryReservation`]).
        PopulatePhysmap = 6 => "XENMEM_populate_physmap",
        /// Map a Xen page into the physmap ([`XenAddToPhysmap`]).
        AddToPhysmap = 7 => "XENMEM_add_to_physmap",
        /// The domain's E820 map ([`XenMemoryMap`]).
        MemoryMap = 9 => "XENMEM_memory_map",
        /// The machine E820 map (privileged, [`XenMemoryMap`]).
        MachineMemoryMap = 10 => "XENMEM_machine_memory_map",
        /// Exchange extents.
        Exchange = 11 => "XENMEM_exchange",
        /// Machine-to-phys mapping.
        MachphysMapping = 12 => "XENMEM_machphys_mapping",
        /// Set a domain's E820 map.
        SetMemoryMap = 13 => "XENMEM_set_memory_map",
        /// Highest guest frame.
        MaximumGpfn = 14 => "XENMEM_maximum_gpfn",
        /// Remove a page from the physmap ([`XenRemoveFromPhysmap`]).
        RemoveFromPhysmap = 15 => "XENMEM_remove_from_physmap",
        /// Batched add-to-physmap.
        AddToPhysmapBatch = 23 => "XENMEM_add_to_physmap_batch",
        /// Acquire a resource (grant table, ioreq server pages).
        AcquireResource = 28 => "XENMEM_acquire_resource",
    }
}

xen_enum! {
    /// What [`XenAddToPhysmap::space`] maps (`XENMAPSPACE_*`).
    pub enum XenMapSpace: u32 as "map space" {
        /// The shared info page.
        SharedInfo = 0 => "XENMAPSPACE_shared_info",
        /// A grant table frame (`idx`; `| XENMAPIDX_GRANT_TABLE_STATUS` for status frames).
        GrantTable = 1 => "XENMAPSPACE_grant_table",
        /// A guest frame.
        Gmfn = 2 => "XENMAPSPACE_gmfn",
        /// A range of guest frames (add_to_physmap only).
        GmfnRange = 3 => "XENMAPSPACE_gmfn_range",
        /// A frame of another domain.
        GmfnForeign = 4 => "XENMAPSPACE_gmfn_foreign",
        /// Device MMIO.
        DevMmio = 5 => "XENMAPSPACE_dev_mmio",
    }
}

/// `idx` flag selecting grant table status frames (`XENMAPIDX_grant_table_status`).
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `XENMEM_add_to_physmap` argument (`struct xen_add_to_physmap`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenAddToPhysmap {
    /// The domain whose physmap changes.
    pub domid: RawDomId,
    /// Pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// [`XenMapSpace`].
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Guest frame to map it at.
    pub gpfn: XenPfn,
}

/// `XENMEM_remove_from_physmap` argument (`struct xen_remove_from_physmap`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenRemoveFromPhysmap {
    /// The domain.
    pub domid: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: [u16; 3],
    /// Guest frame to unmap.
    pub gpfn: XenPfn,
}

/// `XENMEM_memory_map` / `XENMEM_machine_memory_map` argument (`struct xen_memory_map`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryMap {
    /// IN: entries the buffer holds; OUT: entries written.
    pub nr_entries: u32,
    /// Padding (implicit in C).
    pub _pad0: u32,
    /// Guest pointer to an array of E820 entries (20 bytes each).
    pub buffer: GuestHandle,
}

/// `XENMEM_{increase,decrease}_reservation` / `populate_physmap` argument
/// (`struct xen_memory_reservation`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryReservation {
    /// Guest pointer to `nr_extents` [`XenPfn`]s.
    pub extent_start: GuestHandle,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    /// The domain.
    pub domid: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: [u16; 3],
}
