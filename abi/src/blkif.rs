//! The paravirtual block protocol (`xen/io/blkif.h`).
//!
//! A ring slot holds one request, a C union of [`BlkifRequest`] (read, write, barrier,
//! flush), [`BlkifRequestDiscard`], [`BlkifRequestIndirect`] and, for anything else,
//! the common header [`BlkifRequestOther`]; `operation` (byte 0) says which. The ring's
//! request type is [`BlkifRequest`], the largest (112 bytes); [`decode_request`] reads
//! the right variant out of a slot and validates it, returning a [`BlkifRequestError`]
//! that carries the request `id` so the backend can still answer it.
//!
//! # Units
//!
//! `sector_number`, `nr_sectors` and `first_sect`/`last_sect` are always in **512-byte
//! sectors** ([`SECTOR_SIZE`]), whatever the disk's logical block size: this stack never
//! offers `feature-large-sector-size`, and Linux's blkfront and blkback never use it.
//! A segment addresses sectors `first_sect..=last_sect` of one 4096-byte granted page, so
//! both are at most [`SECTORS_PER_PAGE`]` - 1` = 7.

use bitflags::bitflags;
use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
use crate::ring::{BackRing, FrontRing};
pub use crate::types::GrantRef;

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

/// Backend limits a request is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkifLimits {
    /// The backend's `feature-max-indirect-segments` (0: indirect requests are not
    /// supported). At most [`BLKIF_MAX_INDIRECT_SEGMENTS`].
    pub max_indirect_segments: u16,
}

/// The direct segments of a validated request, stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    len: u8,
}

impl Segments {
    /// The segments (each one validated).
    pub fn as_slice(&self) -> &[BlkifRequestSegment] {
        &self.seg[..self.len as usize]
    }

    /// Total 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.as_slice().iter().map(|s| s.sectors()).sum()
    }
}

/// A request that passed [`decode_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkRequest {
    /// Read, write, barrier or flush with its direct segments.
    ReadWrite {
        /// `Read`, `Write`, `WriteBarrier` or `FlushDiskcache`.
        op: BlkifOp,
        /// Echo in the response.
        id: u64,
        /// Virtual device handle.
        handle: u16,
        /// First 512-byte sector.
        sector_number: u64,
        /// 1..=11 segments for read/write, 0..=11 for barrier/flush.
        segments: Segments,
    },
    /// Discard.
    Discard {
        /// Echo in the response.
        id: u64,
        /// Virtual device handle.
        handle: u16,
        /// First 512-byte sector.
        sector_number: u64,
        /// 512-byte sectors.
        nr_sectors: u64,
        /// `BLKIF_DISCARD_SECURE` was set.
        secure: bool,
    },
    /// Indirect read or write; the segments must be read from the indirect pages and
    /// checked with [`BlkifRequestSegment::validate`].
    Indirect {
        /// `Read` or `Write`.
        op: BlkifOp,
        /// Echo in the response.
        id: u64,
        /// Virtual device handle.
        handle: u16,
        /// First 512-byte sector.
        sector_number: u64,
        /// 1..=`max_indirect_segments`.
        nr_segments: u16,
        /// `indirect_grefs[..pages]`, pages = `ceil(nr_segments / 512)`.
        indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        /// Number of indirect pages used.
        pages: u8,
    },
}

impl BlkRequest {
    /// The request id.
    pub fn id(&self) -> u64 {
        match *self {
            BlkRequest::ReadWrite { id, .. }
            | BlkRequest::Discard { id, .. }
            | BlkRequest::Indirect { id, .. } => id,
        }
    }

    /// The grants of the indirect pages in use (empty for direct requests).
    pub fn indirect_grefs(&self) -> &[GrantRef] {
        match self {
            BlkRequest::Indirect {
                indirect_grefs,
                pages,
                ..
            } => &indirect_grefs[..*pages as usize],
            _ => &[],
        }
    }
}

/// What was wrong with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkifRequestErrorKind {
    /// `operation` is no [`BlkifOp`].
    UnknownOperation(u8),
    /// `BLKIF_OP_RESERVED_1`.
    ReservedOperation,
    /// A read or write without segments.
    NoSegments,
    /// More segments than the variant allows.
    TooManySegments {
        /// Segments claimed.
        nr: u32,
        /// The limit.
        max: u32,
    },
    /// Segment `index` does not lie within its page.
    BadSegment {
        /// Its index.
        index: u8,
        /// The range.
        error: SegmentError,
    },
    /// The request reads or writes past sector `u64::MAX`.
    SectorOverflow,
    /// An indirect request whose `indirect_op` is not read or write.
    BadIndirectOperation(u8),
    /// An indirect request, but the backend offers none.
    IndirectNotSupported,
    /// Discard `flag` bits other than `BLKIF_DISCARD_SECURE`.
    BadDiscardFlags(u8),
}

/// A request that failed [`decode_request`], with what is needed to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkifRequestError {
    /// The request's id (read from the common header).
    pub id: u64,
    /// The request's raw operation.
    pub operation: u8,
    /// The problem.
    pub kind: BlkifRequestErrorKind,
}

impl BlkifRequestError {
    /// The response a backend should send: `EOPNOTSUPP` for operations it cannot
    /// perform, `ERROR` for malformed ones.
    pub fn response(&self) -> BlkifResponse {
        let status = match self.kind {
            BlkifRequestErrorKind::UnknownOperation(_)
            | BlkifRequestErrorKind::ReservedOperation
            | BlkifRequestErrorKind::IndirectNotSupported => BlkifRsp::EOpNotSupp,
            _ => BlkifRsp::Error,
        };
        BlkifResponse::new(self.id, self.operation, status)
    }
}

impl fmt::Display for BlkifRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blkif request id {:#x} op {}: ", self.id, self.operation)?;
        match self.kind {
            BlkifRequestErrorKind::UnknownOperation(op) => write!(f, "unknown operation {op}"),
            BlkifRequestErrorKind::ReservedOperation => f.write_str("reserved operation"),
            BlkifRequestErrorKind::NoSegments => f.write_str("no segments"),
            BlkifRequestErrorKind::TooManySegments { nr, max } => {
                write!(f, "{nr} segments, at most {max} allowed")
            }
            BlkifRequestErrorKind::BadSegment { index, error } => {
                write!(f, "segment {index}: {error}")
            }
            BlkifRequestErrorKind::SectorOverflow => f.write_str("sector range overflows"),
            BlkifRequestErrorKind::BadIndirectOperation(op) => {
                write!(f, "indirect operation {op} is not read or write")
            }
            BlkifRequestErrorKind::IndirectNotSupported => {
                f.write_str("indirect requests not supported")
            }
            BlkifRequestErrorKind::BadDiscardFlags(fl) => write!(f, "discard flags {fl:#x}"),
        }
    }
}

impl core::error::Error for BlkifRequestError {}

/// Number of indirect pages `nr_segments` segments occupy.
pub const fn indirect_pages(nr_segments: u32) -> u32 {
    nr_segments.div_ceil(SEGMENTS_PER_INDIRECT_PAGE as u32)
}

/// Read the variant `operation` selects out of a ring slot and validate it: known
/// operation, segment count within the variant's limit (and `limits`), every direct
/// segment within its page, sector range not overflowing, discard flags, indirect
/// operation. Never panics; any failure carries the request's `id`.
pub fn decode_request(
    slot: &BlkifRequest,
    limits: &BlkifLimits,
) -> Result<BlkRequest, BlkifRequestError> {
    let bytes = slot.as_bytes();
    let err = |kind| BlkifRequestError {
        id: slot.id,
        operation: slot.operation,
        kind,
    };
    let op = BlkifOp::try_from(slot.operation)
        .map_err(|u| err(BlkifRequestErrorKind::UnknownOperation(u.value)))?;
    match op {
        BlkifOp::Reserved1 => Err(err(BlkifRequestErrorKind::ReservedOperation)),
        BlkifOp::Read | BlkifOp::Write | BlkifOp::WriteBarrier | BlkifOp::FlushDiskcache => {
            let nr = slot.nr_segments as usize;
            if nr > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(err(BlkifRequestErrorKind::TooManySegments {
                    nr: nr as u32,
                    max: BLKIF_MAX_SEGMENTS_PER_REQUEST as u32,
                }));
            }
            if nr == 0 && matches!(op, BlkifOp::Read | BlkifOp::Write) {
                return Err(err(BlkifRequestErrorKind::NoSegments));
            }
            let mut total: u64 = 0;
            for (i, s) in slot.seg[..nr].iter().enumerate() {
                s.validate().map_err(|error| {
                    err(BlkifRequestErrorKind::BadSegment {
                        index: i as u8,
                        error,
                    })
                })?;
                total += s.sectors();
            }
            if slot.sector_number.checked_add(total).is_none() {
                return Err(err(BlkifRequestErrorKind::SectorOverflow));
            }
            let mut seg = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            seg[..nr].copy_from_slice(&slot.seg[..nr]);
            Ok(BlkRequest::ReadWrite {
                op,
                id: slot.id,
                handle: slot.handle,
                sector_number: slot.sector_number,
                segments: Segments { seg, len: nr as u8 },
            })
        }
        BlkifOp::Discard => {
            // A slot is 112 bytes, every variant fits: the read cannot fail.
            let d = BlkifRequestDiscard::read_from_prefix(bytes)
                .map(|(d, _)| d)
                .unwrap_or_default();
            if d.flag & !BLKIF_DISCARD_SECURE != 0 {
                return Err(err(BlkifRequestErrorKind::BadDiscardFlags(d.flag)));
            }
            if d.sector_number.checked_add(d.nr_sectors).is_none() {
                return Err(err(BlkifRequestErrorKind::SectorOverflow));
            }
            Ok(BlkRequest::Discard {
                id: d.id,
                handle: d.handle,
                sector_number: d.sector_number,
                nr_sectors: d.nr_sectors,
                secure: d.flag & BLKIF_DISCARD_SECURE != 0,
            })
        }
        BlkifOp::Indirect => {
            let r = BlkifRequestIndirect::read_from_prefix(bytes)
                .map(|(r, _)| r)
                .unwrap_or_default();
            if limits.max_indirect_segments == 0 {
                return Err(err(BlkifRequestErrorKind::IndirectNotSupported));
            }
            let inner = match BlkifOp::try_from(r.indirect_op) {
                Ok(o @ (BlkifOp::Read | BlkifOp::Write)) => o,
                _ => {
                    return Err(err(BlkifRequestErrorKind::BadIndirectOperation(
                        r.indirect_op,
                    )))
                }
            };
            let max = (limits.max_indirect_segments as usize).min(BLKIF_MAX_INDIRECT_SEGMENTS);
            if r.nr_segments == 0 {
                return Err(err(BlkifRequestErrorKind::NoSegments));
            }
            if r.nr_segments as usize > max {
                return Err(err(BlkifRequestErrorKind::TooManySegments {
                    nr: r.nr_segments as u32,
                    max: max as u32,
                }));
            }
            // Each segment covers at most 8 sectors.
            let max_sectors = r.nr_segments as u64 * SECTORS_PER_PAGE as u64;
            if r.sector_number.checked_add(max_sectors).is_none() {
                return Err(err(BlkifRequestErrorKind::SectorOverflow));
            }
            Ok(BlkRequest::Indirect {
                op: inner,
                id: r.id,
                handle: r.handle,
                sector_number: r.sector_number,
                nr_segments: r.nr_segments,
                indirect_grefs: r.indirect_grefs,
                pages: indirect_pages(r.nr_segments as u32) as u8,
            })
        }
    }
}

/// Check the segments read from a request's indirect pages (segment `i` is entry
/// `i % 512` of page `i / 512`): every one within its page, the whole range not past
/// sector `u64::MAX`. Returns the total 512-byte sectors. `request` is the decoded
/// [`BlkRequest::Indirect`] the segments belong to; `segments` must be exactly its
/// `nr_segments` entries.
pub fn check_indirect_segments(
    request: &BlkRequest,
    segments: &[BlkifRequestSegment],
) -> Result<u64, BlkifRequestError> {
    let (id, sector_number, nr) = match *request {
        BlkRequest::Indirect {
            id,
            sector_number,
            nr_segments,
            ..
        } => (id, sector_number, nr_segments as usize),
        BlkRequest::ReadWrite { id, .. } | BlkRequest::Discard { id, .. } => (id, 0, 0),
    };
    let err = |kind| BlkifRequestError {
        id,
        operation: BlkifOp::Indirect.raw(),
        kind,
    };
    if segments.len() != nr {
        return Err(err(BlkifRequestErrorKind::TooManySegments {
            nr: segments.len() as u32,
            max: nr as u32,
        }));
    }
    let mut total: u64 = 0;
    for (i, s) in segments.iter().enumerate() {
        s.validate().map_err(|error| {
            err(BlkifRequestErrorKind::BadSegment {
                // Indirect requests have up to 4096 segments; the index saturates.
                index: i.min(u8::MAX as usize) as u8,
                error,
            })
        })?;
        total += s.sectors();
    }
    if sector_number.checked_add(total).is_none() {
        return Err(err(BlkifRequestErrorKind::SectorOverflow));
    }
    Ok(total)
}

/// Protocol ABI names for the frontend's `protocol` node (`io/protocols.h`).
pub mod protocols {
    /// `XEN_IO_PROTO_ABI_X86_32`
    pub const X86_32: &str = "x86_32-abi";
    /// `XEN_IO_PROTO_ABI_X86_64`: the native one here, and the default when absent.
    pub const X86_64: &str = "x86_64-abi";
    /// `XEN_IO_PROTO_ABI_ARM`
    pub const ARM: &str = "arm-abi";
    /// `XEN_IO_PROTO_ABI_NATIVE` on x86_64.
    pub const NATIVE: &str = X86_64;
}

/// xenstore keys of the blkif protocol (the header's "Feature and Parameter
/// Negotiation" section).
pub mod keys {
    /// Backend: maximum `ring-page-order` it supports.
    pub const MAX_RING_PAGE_ORDER: &str = "max-ring-page-order";
    /// Backend (legacy): maximum ring pages.
    pub const MAX_RING_PAGES: &str = "max-ring-pages";
    /// Frontend: ring pages used, as log2.
    pub const RING_PAGE_ORDER: &str = "ring-page-order";
    /// Frontend (legacy): ring pages used.
    pub const NUM_RING_PAGES: &str = "num-ring-pages";
    /// Frontend: grant of a one-page ring.
    pub const RING_REF: &str = "ring-ref";
    /// Frontend: grants of a multi-page ring are `ring-ref0`, `ring-ref1`, ...
    pub const RING_REF_PREFIX: &str = "ring-ref";
    /// Frontend: event channel.
    pub const EVENT_CHANNEL: &str = "event-channel";
    /// Frontend: request ABI ([`super::protocols`]).
    pub const PROTOCOL: &str = "protocol";
    /// Backend: maximum queues; frontend: `multi-queue-num-queues`.
    pub const MULTI_QUEUE_MAX_QUEUES: &str = "multi-queue-max-queues";
    /// Frontend: queues in use (each under `queue-N/`).
    pub const MULTI_QUEUE_NUM_QUEUES: &str = "multi-queue-num-queues";
    /// Backend: `BLKIF_OP_FLUSH_DISKCACHE` supported.
    pub const FEATURE_FLUSH_CACHE: &str = "feature-flush-cache";
    /// Backend: `BLKIF_OP_WRITE_BARRIER` supported.
    pub const FEATURE_BARRIER: &str = "feature-barrier";
    /// Backend: `BLKIF_OP_DISCARD` supported.
    pub const FEATURE_DISCARD: &str = "feature-discard";
    /// Backend: discard granularity in bytes.
    pub const DISCARD_GRANULARITY: &str = "discard-granularity";
    /// Backend: discard alignment in bytes.
    pub const DISCARD_ALIGNMENT: &str = "discard-alignment";
    /// Backend: `BLKIF_DISCARD_SECURE` honoured.
    pub const DISCARD_SECURE: &str = "discard-secure";
    /// Backend: `BLKIF_OP_INDIRECT` with at most this many segments.
    pub const FEATURE_MAX_INDIRECT_SEGMENTS: &str = "feature-max-indirect-segments";
    /// Both: persistent grants.
    pub const FEATURE_PERSISTENT: &str = "feature-persistent";
    /// Frontend: understands `sector-size` units (never set by this stack).
    pub const FEATURE_LARGE_SECTOR_SIZE: &str = "feature-large-sector-size";
    /// Backend: disk size in 512-byte sectors.
    pub const SECTORS: &str = "sectors";
    /// Backend: logical sector size in bytes.
    pub const SECTOR_SIZE: &str = "sector-size";
    /// Backend: physical sector size in bytes.
    pub const PHYSICAL_SECTOR_SIZE: &str = "physical-sector-size";
    /// Backend: [`super::VdiskInfo`] bits.
    pub const INFO: &str = "info";
    /// Backend: `r` or `w`.
    pub const MODE: &str = "mode";
    /// Backend: the backing path.
    pub const PARAMS: &str = "params";
    /// Backend: backing type (`file`, `phy`, ...).
    pub const TYPE: &str = "type";
    /// Frontend: `disk` or `cdrom`.
    pub const DEVICE_TYPE: &str = "device-type";
    /// Frontend: virtual device number.
    pub const VIRTUAL_DEVICE: &str = "virtual-device";
    /// Backend: `major:minor` of the backing device.
    pub const PHYSICAL_DEVICE: &str = "physical-device";
    /// Backend: path of the backing device.
    pub const PHYSICAL_DEVICE_PATH: &str = "physical-device-path";
    /// Frontend: the backend may trust this frontend's data.
    pub const TRUSTED: &str = "trusted";
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BlkifLimits = BlkifLimits {
        max_indirect_segments: 256,
    };

    fn rw(op: BlkifOp, segs: &[BlkifRequestSegment]) -> BlkifRequest {
        let mut r = BlkifRequest {
            operation: op.raw(),
            nr_segments: segs.len() as u8,
            id: 0xabc,
            sector_number: 8,
            ..Default::default()
        };
        r.seg[..segs.len()].copy_from_slice(segs);
        r
    }

    #[test]
    fn valid_write() {
        let r = rw(
            BlkifOp::Write,
            &[BlkifRequestSegment::new(GrantRef(5), 0, 7)],
        );
        match decode_request(&r, &LIMITS).unwrap() {
            BlkRequest::ReadWrite { op, segments, .. } => {
                assert_eq!(op, BlkifOp::Write);
                assert_eq!(segments.sectors(), 8);
                assert_eq!(segments.as_slice()[0].byte_len(), 4096);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn segment_outside_page() {
        let r = rw(
            BlkifOp::Read,
            &[BlkifRequestSegment::new(GrantRef(5), 0, 8)],
        );
        let e = decode_request(&r, &LIMITS).unwrap_err();
        assert_eq!(e.id, 0xabc);
        assert!(matches!(
            e.kind,
            BlkifRequestErrorKind::BadSegment { index: 0, .. }
        ));
        assert_eq!(e.response().status, BlkifRsp::Error.raw());
        let r = rw(
            BlkifOp::Read,
            &[BlkifRequestSegment::new(GrantRef(5), 3, 2)],
        );
        assert!(decode_request(&r, &LIMITS).is_err());
    }

    #[test]
    fn discard_variant() {
        let d = BlkifRequestDiscard {
            operation: BlkifOp::Discard.raw(),
            flag: BLKIF_DISCARD_SECURE,
            id: 9,
            sector_number: 100,
            nr_sectors: 50,
            ..Default::default()
        };
        let mut slot = BlkifRequest::default();
        slot.as_mut_bytes()[..32].copy_from_slice(d.as_bytes());
        assert_eq!(
            decode_request(&slot, &LIMITS),
            Ok(BlkRequest::Discard {
                id: 9,
                handle: 0,
                sector_number: 100,
                nr_sectors: 50,
                secure: true
            })
        );
    }

    #[test]
    fn indirect_limits() {
        let mut ind = BlkifRequestIndirect {
            operation: BlkifOp::Indirect.raw(),
            indirect_op: BlkifOp::Write.raw(),
            nr_segments: 513,
            id: 1,
            ..Default::default()
        };
        let big = BlkifLimits {
            max_indirect_segments: 4096,
        };
        let mut slot = BlkifRequest::default();
        slot.as_mut_bytes()[..64].copy_from_slice(ind.as_bytes());
        let req = decode_request(&slot, &big).unwrap();
        assert_eq!(req.indirect_grefs().len(), 2);
        assert!(matches!(
            decode_request(&slot, &LIMITS).unwrap_err().kind,
            BlkifRequestErrorKind::TooManySegments { nr: 513, max: 256 }
        ));
        ind.indirect_op = BlkifOp::Discard.raw();
        slot.as_mut_bytes()[..64].copy_from_slice(ind.as_bytes());
        assert!(matches!(
            decode_request(&slot, &big).unwrap_err().kind,
            BlkifRequestErrorKind::BadIndirectOperation(5)
        ));
    }

    #[test]
    fn indirect_segments_checked() {
        let ind = BlkifRequestIndirect {
            operation: BlkifOp::Indirect.raw(),
            indirect_op: BlkifOp::Read.raw(),
            nr_segments: 2,
            id: 5,
            sector_number: u64::MAX - 16,
            ..Default::default()
        };
        let mut slot = BlkifRequest::default();
        slot.as_mut_bytes()[..64].copy_from_slice(ind.as_bytes());
        let req = decode_request(&slot, &LIMITS).unwrap();
        let good = [BlkifRequestSegment::new(GrantRef(1), 0, 7); 2];
        assert_eq!(check_indirect_segments(&req, &good), Ok(16));
        let bad = [good[0], BlkifRequestSegment::new(GrantRef(1), 0, 9)];
        let e = check_indirect_segments(&req, &bad).unwrap_err();
        assert_eq!(e.id, 5);
        assert!(matches!(
            e.kind,
            BlkifRequestErrorKind::BadSegment { index: 1, .. }
        ));
        assert!(check_indirect_segments(&req, &good[..1]).is_err());
        let over = [good[0], good[0], good[0]];
        assert!(check_indirect_segments(&req, &over).is_err());
    }

    #[test]
    fn unknown_op_is_eopnotsupp() {
        let mut r = rw(BlkifOp::Read, &[]);
        r.operation = 42;
        let e = decode_request(&r, &LIMITS).unwrap_err();
        assert_eq!(e.response().status, BlkifRsp::EOpNotSupp.raw());
        assert_eq!(e.response().id, 0xabc);
    }
}
