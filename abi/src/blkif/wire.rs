//! The wire structs of `io/blkif.h`: sizes and limits, `BLKIF_OP_*`/`BLKIF_RSP_*`,
//! `VDISK_*`, the segment descriptor, the four request variants that share a ring slot,
//! the response, and the blkif ring aliases. Byte-compatible with the C header
//! (`tests/layout/`).

use bitflags::bitflags;
use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
use crate::ring::{BackRing, FrontRing};
use crate::types::GrantRef;

/// Bytes per sector in every sector-valued field of the protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes per granted page (`XEN_PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;
/// Sectors per granted page: `first_sect` and `last_sect` are `< SECTORS_PER_PAGE`.
pub const SECTORS_PER_PAGE: u8 = (PAGE_SIZE as u64 / SECTOR_SIZE) as u8;
/// Segments a direct request can carry (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Grant references of indirect-segment pages an indirect request can carry
/// (`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`).
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segment descriptors per indirect page: 4096 / 8.
pub const SEGMENTS_PER_INDIRECT_PAGE: usize =
    PAGE_SIZE / core::mem::size_of::<BlkifRequestSegment>();
/// Most segments an indirect request can describe at all (8 pages of 512); a backend
/// advertises its own, smaller, `feature-max-indirect-segments`.
pub const BLKIF_MAX_INDIRECT_SEGMENTS: usize =
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_PAGE;
/// `flag` bit of a discard: securely erase the range (`BLKIF_DISCARD_SECURE`).
pub const BLKIF_DISCARD_SECURE: u8 = 1;

xen_enum! {
    /// Request operations (`BLKIF_OP_*`).
    pub enum BlkifOp: u8 as "blkif operation" {
        /// Read into the segments.
        Read = 0 => "BLKIF_OP_READ",
        /// Write from the segments.
        Write = 1 => "BLKIF_OP_WRITE",
        /// Write ordered after all earlier writes (`feature-barrier`); may carry no data.
        WriteBarrier = 2 => "BLKIF_OP_WRITE_BARRIER",
        /// Flush the disk's volatile cache (`feature-flush-cache`); may carry data to
        /// write first.
        FlushDiskcache = 3 => "BLKIF_OP_FLUSH_DISKCACHE",
        /// Reserved (SLES device-specific packets); never valid here.
        Reserved1 = 4 => "BLKIF_OP_RESERVED_1",
        /// Discard (trim) a sector range (`feature-discard`).
        Discard = 5 => "BLKIF_OP_DISCARD",
        /// Read or write with segments in separate pages
        /// (`feature-max-indirect-segments`).
        Indirect = 6 => "BLKIF_OP_INDIRECT",
    }
}

xen_enum! {
    /// Response status (`BLKIF_RSP_*`).
    pub enum BlkifRsp: i16 as "blkif response status" {
        /// Done.
        Okay = 0 => "BLKIF_RSP_OKAY",
        /// Failed (I/O error).
        Error = -1 => "BLKIF_RSP_ERROR",
        /// Operation not supported.
        EOpNotSupp = -2 => "BLKIF_RSP_EOPNOTSUPP",
    }
}

bitflags! {
    /// The backend's `info` node (`VDISK_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VdiskInfo: u32 {
        /// A CD-ROM.
        const CDROM = 0x1;
        /// Removable media.
        const REMOVABLE = 0x2;
        /// Read-only.
        const READONLY = 0x4;
    }
}

/// One segment: sectors `first_sect..=last_sect` of a granted page
/// (`struct blkif_request_segment`). Also the entry type of indirect pages.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestSegment {
    /// Grant of the data page.
    pub gref: GrantRef,
    /// First sector in the page (inclusive, 0..=7).
    pub first_sect: u8,
    /// Last sector in the page (inclusive, `first_sect..=7`).
    pub last_sect: u8,
    /// Padding (implicit in C).
    pub _pad0: u16,
}

impl BlkifRequestSegment {
    /// A segment over sectors `first..=last` of grant `gref`.
    pub fn new(gref: impl Into<GrantRef>, first_sect: u8, last_sect: u8) -> Self {
        BlkifRequestSegment {
            gref: gref.into(),
            first_sect,
            last_sect,
            _pad0: 0,
        }
    }

    /// Check `first_sect <= last_sect < 8`.
    pub const fn validate(&self) -> Result<(), SegmentError> {
        if self.last_sect >= SECTORS_PER_PAGE || self.first_sect > self.last_sect {
            Err(SegmentError {
                first_sect: self.first_sect,
                last_sect: self.last_sect,
            })
        } else {
            Ok(())
        }
    }

    /// Sectors covered (valid segments only).
    pub const fn sectors(&self) -> u64 {
        (self.last_sect as u64 + 1).saturating_sub(self.first_sect as u64)
    }

    /// Byte offset of the data in the page.
    pub const fn byte_offset(&self) -> usize {
        self.first_sect as usize * SECTOR_SIZE as usize
    }

    /// Bytes covered (valid segments only).
    pub const fn byte_len(&self) -> usize {
        self.sectors() as usize * SECTOR_SIZE as usize
    }
}

/// A segment whose sector range does not lie within one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentError {
    /// The segment's `first_sect`.
    pub first_sect: u8,
    /// The segment's `last_sect`.
    pub last_sect: u8,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment sectors {}..={} not within a {PAGE_SIZE}-byte page",
            self.first_sect, self.last_sect
        )
    }
}

/// An indirect-segment page: 512 segment descriptors.
pub type BlkifIndirectPage = [BlkifRequestSegment; SEGMENTS_PER_INDIRECT_PAGE];

/// Read, write, barrier and flush requests (`struct blkif_request`), and the ring's
/// request slot type.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequest {
    /// [`BlkifOp`].
    pub operation: u8,
    /// Segments used, `seg[..nr_segments]`.
    pub nr_segments: u8,
    /// Virtual device handle (read/write only).
    pub handle: u16,
    /// Padding (implicit in C).
    pub _pad0: u32,
    /// Guest's value, echoed in the response.
    pub id: u64,
    /// First 512-byte sector on the disk.
    pub sector_number: u64,
    /// The data pages.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// A discard request (`struct blkif_request_discard`), when `operation` is
/// `BLKIF_OP_DISCARD`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestDiscard {
    /// `BLKIF_OP_DISCARD`.
    pub operation: u8,
    /// [`BLKIF_DISCARD_SECURE`] or 0.
    pub flag: u8,
    /// Virtual device handle.
    pub handle: u16,
    /// Padding (implicit in C).
    pub _pad0: u32,
    /// Guest's value, echoed in the response.
    pub id: u64,
    /// First 512-byte sector to discard.
    pub sector_number: u64,
    /// Number of 512-byte sectors.
    pub nr_sectors: u64,
}

/// An indirect request (`struct blkif_request_indirect`), when `operation` is
/// `BLKIF_OP_INDIRECT`: the segments live in up to 8 granted pages.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestIndirect {
    /// `BLKIF_OP_INDIRECT`.
    pub operation: u8,
    /// The real operation: `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    /// Segments, spread over `ceil(nr_segments / 512)` pages.
    pub nr_segments: u16,
    /// Padding (implicit in C).
    pub _pad0: u32,
    /// Guest's value, echoed in the response.
    pub id: u64,
    /// First 512-byte sector on the disk.
    pub sector_number: u64,
    /// Virtual device handle.
    pub handle: u16,
    /// Padding (implicit in C).
    pub _pad1: u16,
    /// Grants of the indirect pages ([`BlkifIndirectPage`]).
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// Padding (implicit in C).
    pub _pad2: u32,
}

/// The part every request variant shares: operation and id (Linux's
/// `struct blkif_request_other`); what a backend can still read from a request it
/// cannot otherwise understand.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestOther {
    /// [`BlkifOp`] (or an unknown value).
    pub operation: u8,
    /// Variant-specific.
    pub _pad0: u8,
    /// Variant-specific.
    pub _pad1: u16,
    /// Variant-specific.
    pub _pad2: u32,
    /// Guest's value, echoed in the response.
    pub id: u64,
}

/// A response (`struct blkif_response`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifResponse {
    /// The request's id.
    pub id: u64,
    /// The request's operation.
    pub operation: u8,
    /// Padding (implicit in C).
    pub _pad0: u8,
    /// [`BlkifRsp`].
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad1: u32,
}

impl BlkifResponse {
    /// The response to a request with `id` and `operation`.
    pub const fn new(id: u64, operation: u8, status: BlkifRsp) -> Self {
        BlkifResponse {
            id,
            operation,
            _pad0: 0,
            status: status as i16,
            _pad1: 0,
        }
    }
}

/// Frontend view of a blkif ring (`blkif_front_ring_t`).
pub type BlkifFrontRing<'a> = FrontRing<'a, BlkifRequest, BlkifResponse>;
/// Backend view of a blkif ring (`blkif_back_ring_t`).
pub type BlkifBackRing<'a> = BackRing<'a, BlkifRequest, BlkifResponse>;
