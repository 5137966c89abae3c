//! The shared ring area: the 64-byte header's layout, the slot geometry (`__RD32`
//! sizing, the stride of the request/response union), the notification rule, and the
//! [`Geometry`] both views use for typed slot addressing and header snapshots.

use super::RingError;
use crate::shared::SharedMem;
use core::mem::{align_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Offset of `req_prod` in the shared ring header.
pub const REQ_PROD_OFFSET: usize = 0;
/// Offset of `req_event`.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Offset of `rsp_prod`.
pub const RSP_PROD_OFFSET: usize = 8;
/// Offset of `rsp_event`.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Offset of the 4-byte protocol-private union `pvt`.
pub const PVT_OFFSET: usize = 16;
/// Offset of the first entry (`ring[0]`): the header is 64 bytes.
pub const ENTRIES_OFFSET: usize = 64;

/// The 64-byte header of a shared ring (`struct *_sring` up to `ring[]`), for snapshots
/// ([`FrontRing::header`](super::FrontRing::header)) and layout tests. Never accessed in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SringHeader {
    pub req_prod: u32,
    pub req_event: u32,
    pub rsp_prod: u32,
    pub rsp_event: u32,
    /// `union { netif.smartpoll_active; tapif_user.msg; pvt_pad[4] } pvt`.
    pub pvt: [u8; 4],
    pub pad: [u8; 44],
}

const _: () = assert!(size_of::<SringHeader>() == ENTRIES_OFFSET);

/// Size in bytes of one ring slot, `sizeof(union { Req req; Rsp rsp; })`: the larger
/// size rounded up to the larger alignment.
pub const fn entry_size<Req, Rsp>() -> usize {
    let size = if size_of::<Req>() > size_of::<Rsp>() {
        size_of::<Req>()
    } else {
        size_of::<Rsp>()
    };
    let align = if align_of::<Req>() > align_of::<Rsp>() {
        align_of::<Req>()
    } else {
        align_of::<Rsp>()
    };
    size.div_ceil(align) * align
}

/// Number of entries of a ring whose area (header included) is `area_len` bytes and
/// whose slots are `entry_size` bytes: the largest power of two that fits (`__RD32`).
pub fn ring_size(area_len: usize, entry_size: usize) -> Result<u32, RingError> {
    let needed = ENTRIES_OFFSET + entry_size;
    if entry_size == 0 || area_len < needed {
        return Err(RingError::AreaTooSmall {
            len: area_len,
            needed,
        });
    }
    let fitting = (area_len - ENTRIES_OFFSET) / entry_size;
    let fitting = u32::try_from(fitting).map_err(|_| RingError::AreaTooLarge { len: area_len })?;
    // `fitting >= 1`, so this is the top set bit: the largest power of two <= fitting.
    Ok(1u32 << (31 - fitting.leading_zeros()))
}

/// The event-threshold rule of `RING_PUSH_*_AND_CHECK_NOTIFY`: having moved the producer
/// index from `old` to `new`, notify iff the consumer's `event` is in `(old, new]`.
pub fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// What the two views share: the area, its geometry, and typed slot access.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry<'a> {
    pub(super) mem: SharedMem<'a>,
    pub(super) size: u32,
    pub(super) stride: usize,
}

impl<'a> Geometry<'a> {
    pub(super) fn new<Req, Rsp>(mem: SharedMem<'a>) -> Result<Self, RingError> {
        const {
            assert!(
                entry_size::<Req, Rsp>() > 0,
                "ring entries cannot be zero-sized"
            );
            assert!(
                align_of::<Req>() <= ENTRIES_OFFSET && align_of::<Rsp>() <= ENTRIES_OFFSET,
                "ring entries aligned beyond 64 bytes would move ring[0]"
            );
        }
        if !mem.addr().is_multiple_of(4) {
            return Err(RingError::Misaligned { addr: mem.addr() });
        }
        let stride = entry_size::<Req, Rsp>();
        let size = ring_size(mem.len(), stride)?;
        Ok(Self { mem, size, stride })
    }

    /// Byte offset of the slot of index `idx`. In bounds: `size * stride + 64 <= len`.
    #[inline]
    pub(super) fn slot(&self, idx: u32) -> usize {
        ENTRIES_OFFSET + (idx & (self.size - 1)) as usize * self.stride
    }

    pub(super) fn header(&self) -> Result<SringHeader, RingError> {
        // Index words as `u32` atomics, like every other access to them.
        let mut h = SringHeader {
            req_prod: self.mem.load_u32_acquire(REQ_PROD_OFFSET)?,
            req_event: self.mem.load_u32_acquire(REQ_EVENT_OFFSET)?,
            rsp_prod: self.mem.load_u32_acquire(RSP_PROD_OFFSET)?,
            rsp_event: self.mem.load_u32_acquire(RSP_EVENT_OFFSET)?,
            pvt: [0; 4],
            pad: [0; 44],
        };
        self.mem.read_bytes(PVT_OFFSET, &mut h.pvt)?;
        self.mem.read_bytes(PVT_OFFSET + 4, &mut h.pad)?;
        Ok(h)
    }
}
