//! Grant tables, version 1 (`xen/grant_table.h`): how one domain lets another map or
//! copy one of its pages.
//!
//! The granting domain fills a [`GrantEntryV1`] in its grant table and passes the index
//! (a [`RawGrantRef`]) to the peer; the peer calls `HYPERVISOR_grant_table_op` with one of
//! the [`GntTabOp`] commands and an array of the matching argument structs below.
//! Grant table v2 is out of scope.

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
pub use crate::types::{GrantHandle, GuestHandle, RawDomId, RawGrantRef, XenPfn};

/// Grant entries 0..8 are reserved for the toolstack and survive a guest's grant table
/// reset (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const GNTTAB_NR_RESERVED_ENTRIES: RawGrantRef = 8;
/// Reserved grant reference through which dom0 maps the guest's console page
/// (`GNTTAB_RESERVED_CONSOLE`).
pub const GNTTAB_RESERVED_CONSOLE: RawGrantRef = 0;
/// Reserved grant reference through which xenstored maps the guest's xenstore page
/// (`GNTTAB_RESERVED_XENSTORE`).
pub const GNTTAB_RESERVED_XENSTORE: RawGrantRef = 1;

/// One v1 grant table entry (`struct grant_entry_v1`), 8 bytes.
///
/// `flags` holds the entry type in bits 0..2 ([`GrantEntryType`]) and the
/// [`GrantEntryFlags`] above them. The granting guest writes `domid` and `frame` first,
/// then `flags` (with a write barrier between); Xen sets the `READING`/`WRITING` bits
/// while the grant is mapped.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*`: entry type and flags.
    pub flags: u16,
    /// The domain allowed to use this grant.
    pub domid: RawDomId,
    /// For `PERMIT_ACCESS`: the frame being granted. For `ACCEPT_TRANSFER`: 0, then the
    /// frame transferred in, once `TRANSFER_COMPLETED` is set.
    pub frame: u32,
}

impl GrantEntryV1 {
    /// The entry's type (the low two bits of `flags`).
    pub const fn entry_type(&self) -> GrantEntryType {
        match self.flags & GTF_TYPE_MASK {
            0 => GrantEntryType::Invalid,
            1 => GrantEntryType::PermitAccess,
            2 => GrantEntryType::AcceptTransfer,
            _ => GrantEntryType::Transitive,
        }
    }

    /// The flag bits above the type, unknown bits kept.
    pub const fn entry_flags(&self) -> GrantEntryFlags {
        GrantEntryFlags::from_bits_retain(self.flags & !GTF_TYPE_MASK)
    }

    /// An entry granting `domid` access to `frame`, read-only or writable.
    pub const fn permit_access(domid: RawDomId, frame: u32, readonly: bool) -> Self {
        let mut flags = GrantEntryType::PermitAccess as u16;
        if readonly {
            flags |= GrantEntryFlags::READONLY.bits();
        }
        GrantEntryV1 {
            flags,
            domid,
            frame,
        }
    }
}

/// Mask of the entry-type bits in [`GrantEntryV1::flags`] (`GTF_type_mask`).
pub const GTF_TYPE_MASK: u16 = 3;

xen_enum! {
    /// What a grant entry grants (`GTF_invalid` .. `GTF_transitive`, bits 0..2 of `flags`).
    pub enum GrantEntryType: u16 as "grant entry type" {
        /// Grants nothing; the peer may not use it.
        Invalid = 0 => "GTF_invalid",
        /// Allows `domid` to map or copy `frame`.
        PermitAccess = 1 => "GTF_permit_access",
        /// Allows `domid` to transfer a page into this slot.
        AcceptTransfer = 2 => "GTF_accept_transfer",
        /// Re-grants another domain's grant (v2 only; never valid in a v1 table).
        Transitive = 3 => "GTF_transitive",
    }
}

bitflags! {
    /// Flag bits of [`GrantEntryV1::flags`] above the type (`GTF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GrantEntryFlags: u16 {
        /// The peer may only map/copy from the frame (`GTF_readonly`).
        const READONLY = 1 << 2;
        /// Set by Xen while the grant is mapped for reading (`GTF_reading`).
        const READING = 1 << 3;
        /// Set by Xen while the grant is mapped for writing (`GTF_writing`).
        const WRITING = 1 << 4;
        /// Map with page-write-through caching (`GTF_PWT`).
        const PWT = 1 << 5;
        /// Map with page-cache-disable (`GTF_PCD`).
        const PCD = 1 << 6;
        /// Map with the PAT bit set (`GTF_PAT`).
        const PAT = 1 << 7;
        /// Only part of the page is granted (`GTF_sub_page`, v2 only).
        const SUB_PAGE = 1 << 8;
        /// Accept-transfer entries: Xen has committed to the transfer
        /// (`GTF_transfer_committed`; same bit as `READONLY`).
        const TRANSFER_COMMITTED = 1 << 2;
        /// Accept-transfer entries: the transfer is complete and `frame` is valid
        /// (`GTF_transfer_completed`; same bit as `READING`).
        const TRANSFER_COMPLETED = 1 << 3;
    }
}

xen_enum! {
    /// The sub-commands of `HYPERVISOR_grant_table_op` (`GNTTABOP_*`). Argument structs
    /// are modelled for the v1 operations and the version query/selection.
    pub enum GntTabOp: u32 as "grant table op" {
        /// Map foreign grants ([`GnttabMapGrantRef`]).
        MapGrantRef = 0 => "GNTTABOP_map_grant_ref",
        /// Unmap them ([`GnttabUnmapGrantRef`]).
        UnmapGrantRef = 1 => "GNTTABOP_unmap_grant_ref",
        /// Get the frames of one's own grant table ([`GnttabSetupTable`]).
        SetupTable = 2 => "GNTTABOP_setup_table",
        /// Dump a grant table to Xen's console ([`GnttabDumpTable`]).
        DumpTable = 3 => "GNTTABOP_dump_table",
        /// Transfer a page to another domain ([`GnttabTransfer`]).
        Transfer = 4 => "GNTTABOP_transfer",
        /// Copy between grants and/or local frames ([`GnttabCopy`]).
        Copy = 5 => "GNTTABOP_copy",
        /// Current and maximum grant table size ([`GnttabQuerySize`]).
        QuerySize = 6 => "GNTTABOP_query_size",
        /// Unmap a grant and put another mapping in its place ([`GnttabUnmapAndReplace`]).
        UnmapAndReplace = 7 => "GNTTABOP_unmap_and_replace",
        /// Select the grant table version ([`GnttabSetVersion`]). Linux calls it at
        /// boot; this stack supports only version 1.
        SetVersion = 8 => "GNTTABOP_set_version",
        /// Status frames of a v2 table (v2: not supported).
        GetStatusFrames = 9 => "GNTTABOP_get_status_frames",
        /// Current grant table version ([`GnttabGetVersion`]).
        GetVersion = 10 => "GNTTABOP_get_version",
        /// Swap two grant entries (v2: not supported).
        SwapGrantRef = 11 => "GNTTABOP_swap_grant_ref",
        /// Cache maintenance on a grant (Arm).
        CacheFlush = 12 => "GNTTABOP_cache_flush",
    }
}

bitflags! {
    /// How a grant is mapped (`GNTMAP_*`, [`GnttabMapGrantRef::flags`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GntMapFlags: u32 {
        /// Map for device (I/O MMU) access (`GNTMAP_device_map`).
        const DEVICE_MAP = 1 << 0;
        /// Map for CPU access (`GNTMAP_host_map`).
        const HOST_MAP = 1 << 1;
        /// Read-only mapping (`GNTMAP_readonly`).
        const READONLY = 1 << 2;
        /// The mapping is for a guest application, not its kernel
        /// (`GNTMAP_application_map`).
        const APPLICATION_MAP = 1 << 3;
        /// `host_addr` is the machine address of the PTE to update
        /// (`GNTMAP_contains_pte`).
        const CONTAINS_PTE = 1 << 4;
        /// Bits 16..32 are free for the guest's own use (`GNTMAP_guest_avail_mask`).
        const GUEST_AVAIL_MASK = 0xFFFF_0000;
    }
}

bitflags! {
    /// Which side of a [`GnttabCopy`] is a grant reference rather than a local frame
    /// (`GNTCOPY_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GntCopyFlags: u16 {
        /// `source.u` is a grant reference of `source.domid` (`GNTCOPY_source_gref`).
        const SOURCE_GREF = 1 << 0;
        /// `dest.u` is a grant reference of `dest.domid` (`GNTCOPY_dest_gref`).
        const DEST_GREF = 1 << 1;
    }
}

xen_enum! {
    /// Per-operation result of a grant table op (`GNTST_*`, the `status` fields).
    pub enum GrantStatus: i16 as "grant status" {
        /// Success.
        Okay = 0 => "GNTST_okay",
        /// Undefined error.
        GeneralError = -1 => "GNTST_general_error",
        /// Unrecognised domain id.
        BadDomain = -2 => "GNTST_bad_domain",
        /// Unrecognised or inappropriate grant reference.
        BadGntref = -3 => "GNTST_bad_gntref",
        /// Unrecognised or inappropriate mapping handle.
        BadHandle = -4 => "GNTST_bad_handle",
        /// Inappropriate virtual address to map.
        BadVirtAddr = -5 => "GNTST_bad_virt_addr",
        /// Inappropriate device address to unmap.
        BadDevAddr = -6 => "GNTST_bad_dev_addr",
        /// Out of space in the I/O MMU.
        NoDeviceSpace = -7 => "GNTST_no_device_space",
        /// Not enough privilege for the operation.
        PermissionDenied = -8 => "GNTST_permission_denied",
        /// The page was invalid for the operation.
        BadPage = -9 => "GNTST_bad_page",
        /// Copy arguments cross a page boundary.
        BadCopyArg = -10 => "GNTST_bad_copy_arg",
        /// Transfer page address too large.
        AddressTooBig = -11 => "GNTST_address_too_big",
        /// Operation not done; try again.
        Eagain = -12 => "GNTST_eagain",
        /// Out of space (handles etc.).
        NoSpace = -13 => "GNTST_no_space",
    }
}

impl GrantStatus {
    /// Xen's message for this status (the `GNTTABOP_error_msgs` table).
    pub const fn message(self) -> &'static str {
        match self {
            GrantStatus::Okay => "okay",
            GrantStatus::GeneralError => "undefined error",
            GrantStatus::BadDomain => "unrecognised domain id",
            GrantStatus::BadGntref => "invalid grant reference",
            GrantStatus::BadHandle => "invalid mapping handle",
            GrantStatus::BadVirtAddr => "invalid virtual address",
            GrantStatus::BadDevAddr => "invalid device address",
            GrantStatus::NoDeviceSpace => "no spare translation slot in the I/O MMU",
            GrantStatus::PermissionDenied => "permission denied",
            GrantStatus::BadPage => "bad page",
            GrantStatus::BadCopyArg => "copy arguments cross page boundary",
            GrantStatus::AddressTooBig => "page address size too large",
            GrantStatus::Eagain => "operation not done; try again",
            GrantStatus::NoSpace => "out of space",
        }
    }
}

impl core::fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// `GNTTABOP_map_grant_ref` argument (`struct gnttab_map_grant_ref`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabMapGrantRef {
    /// IN: where to map (virtual address, or PTE address with `CONTAINS_PTE`; for HVM
    /// guests, a guest physical address).
    pub host_addr: u64,
    /// IN: [`GntMapFlags`].
    pub flags: u32,
    /// IN: the grant reference in `dom`'s table.
    pub gref: RawGrantRef,
    /// IN: the granting domain.
    pub dom: RawDomId,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// OUT: handle for the unmap.
    pub handle: GrantHandle,
    /// OUT: bus address for `DEVICE_MAP` mappings.
    pub dev_bus_addr: u64,
}

/// `GNTTABOP_unmap_grant_ref` argument (`struct gnttab_unmap_grant_ref`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabUnmapGrantRef {
    /// IN: the address the grant was mapped at (0 if none).
    pub host_addr: u64,
    /// IN: the bus address of a device mapping (0 if none).
    pub dev_bus_addr: u64,
    /// IN: handle returned by the map.
    pub handle: GrantHandle,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad0: u16,
}

/// `GNTTABOP_setup_table` argument (`struct gnttab_setup_table`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabSetupTable {
    /// IN: the domain (usually `DOMID_SELF`).
    pub dom: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: u16,
    /// IN: number of grant table frames wanted.
    pub nr_frames: u32,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad1: [u16; 3],
    /// IN: guest pointer to an array of `nr_frames` [`XenPfn`]s, filled by Xen.
    pub frame_list: GuestHandle,
}

/// `GNTTABOP_dump_table` argument (`struct gnttab_dump_table`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabDumpTable {
    /// IN: the domain whose table to dump.
    pub dom: RawDomId,
    /// OUT: [`GrantStatus`].
    pub status: i16,
}

/// `GNTTABOP_transfer` argument (`struct gnttab_transfer`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabTransfer {
    /// IN: the frame to give away.
    pub mfn: XenPfn,
    /// IN: the receiving domain.
    pub domid: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: u16,
    /// IN: the receiver's accept-transfer grant.
    pub gref: RawGrantRef,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad1: [u16; 3],
}

/// One side of a [`GnttabCopy`] (`struct gnttab_copy_ptr`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// The C union `u { grant_ref_t ref; xen_pfn_t gmfn; }`: a grant reference (low 32
    /// bits) when the matching `GNTCOPY_*_gref` flag is set, else a local frame number.
    /// Use [`GnttabCopyPtr::gref`] / [`GnttabCopyPtr::with_gref`] and friends.
    pub u: u64,
    /// The domain owning the grant (or `DOMID_SELF` for a local frame).
    pub domid: RawDomId,
    /// Byte offset within the page.
    pub offset: u16,
    /// Padding (implicit in C).
    pub _pad0: u32,
}

impl GnttabCopyPtr {
    /// A copy endpoint naming grant `gref` of domain `domid`, at `offset` in the page.
    pub const fn with_gref(gref: RawGrantRef, domid: RawDomId, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gref as u64,
            domid,
            offset,
            _pad0: 0,
        }
    }

    /// A copy endpoint naming local frame `gmfn` of domain `domid`, at `offset`.
    pub const fn with_gmfn(gmfn: XenPfn, domid: RawDomId, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gmfn,
            domid,
            offset,
            _pad0: 0,
        }
    }

    /// The union read as a grant reference (`u.ref`, the low 32 bits on little-endian x86).
    pub const fn gref(&self) -> RawGrantRef {
        self.u as u32
    }

    /// The union read as a frame number (`u.gmfn`).
    pub const fn gmfn(&self) -> XenPfn {
        self.u
    }
}

/// `GNTTABOP_copy` argument (`struct gnttab_copy`): copy `len` bytes from `source` to
/// `dest`; neither side may cross its page.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabCopy {
    /// IN: where to copy from.
    pub source: GnttabCopyPtr,
    /// IN: where to copy to.
    pub dest: GnttabCopyPtr,
    /// IN: number of bytes.
    pub len: u16,
    /// IN: [`GntCopyFlags`].
    pub flags: u16,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad0: u16,
}

/// `GNTTABOP_query_size` argument (`struct gnttab_query_size`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabQuerySize {
    /// IN: the domain.
    pub dom: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: u16,
    /// OUT: current number of grant table frames.
    pub nr_frames: u32,
    /// OUT: maximum number of grant table frames.
    pub max_nr_frames: u32,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad1: u16,
}

/// `GNTTABOP_unmap_and_replace` argument (`struct gnttab_unmap_and_replace`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabUnmapAndReplace {
    /// IN: the address the grant is mapped at.
    pub host_addr: u64,
    /// IN: the address whose mapping replaces it (that address is then unmapped).
    pub new_addr: u64,
    /// IN: handle returned by the map.
    pub handle: GrantHandle,
    /// OUT: [`GrantStatus`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad0: u16,
}

/// `GNTTABOP_set_version` argument (`struct gnttab_set_version`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabSetVersion {
    /// IN: requested version; OUT: the version now in force.
    pub version: u32,
}

/// `GNTTABOP_get_version` argument (`struct gnttab_get_version`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabGetVersion {
    /// IN: the domain.
    pub dom: RawDomId,
    /// Explicit padding in C.
    pub pad: u16,
    /// OUT: its grant table version.
    pub version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn entry_type_and_flags() {
        let e = GrantEntryV1::permit_access(3, 0x1234, true);
        assert_eq!(e.entry_type(), GrantEntryType::PermitAccess);
        assert!(e.entry_flags().contains(GrantEntryFlags::READONLY));
        assert_eq!(e.as_bytes(), &[0x05, 0, 3, 0, 0x34, 0x12, 0, 0]);
    }

    #[test]
    fn status_decoding() {
        assert_eq!(GrantStatus::try_from(-12), Ok(GrantStatus::Eagain));
        assert_eq!(GrantStatus::try_from(-14).unwrap_err().value, -14);
        assert_eq!(
            GrantStatus::BadCopyArg.to_string(),
            "copy arguments cross page boundary"
        );
    }

    #[test]
    fn copy_ptr_union() {
        let p = GnttabCopyPtr::with_gref(77, 1, 512);
        assert_eq!(p.gref(), 77);
        assert_eq!(&p.as_bytes()[..4], &77u32.to_le_bytes());
    }
}
