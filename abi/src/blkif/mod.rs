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

mod error;
pub mod keys;
mod request;
mod wire;

pub use self::error::{BlkifRequestError, BlkifRequestErrorKind};
pub use self::request::{
    check_indirect_segments, decode_request, indirect_pages, BlkRequest, BlkifLimits, Segments,
};
pub use self::wire::{
    BlkifBackRing, BlkifFrontRing, BlkifIndirectPage, BlkifOp, BlkifRequest, BlkifRequestDiscard,
    BlkifRequestIndirect, BlkifRequestOther, BlkifRequestSegment, BlkifResponse, BlkifRsp,
    SegmentError, VdiskInfo, BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
    BLKIF_MAX_INDIRECT_SEGMENTS, BLKIF_MAX_SEGMENTS_PER_REQUEST, PAGE_SIZE, SECTORS_PER_PAGE,
    SECTOR_SIZE, SEGMENTS_PER_INDIRECT_PAGE,
};
pub use crate::types::GrantRef;

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
