//! The paravirtual console page (`xen/io/console.h`): two byte rings in one shared page.
//!
//! `in` carries bytes to the guest (backend produces `in_prod`, guest consumes
//! `in_cons`), `out` bytes from the guest (guest produces `out_prod`, backend consumes
//! `out_cons`). Indices are free-running `u32`s that wrap; `MASK_XENCONS_IDX(idx, ring)`
//! (`idx & (sizeof(ring) - 1)`) is the byte they name. The page is shared with a peer
//! that may write anything, so [`RingIndices::check`] validates a pair of indices before
//! any byte is read: `prod - cons` (wrapping) may not exceed the ring size.

use core::fmt;
use core::ops::Range;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes in the `in` ring (to the guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Bytes in the `out` ring (from the guest).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// A console ring index (`XENCONS_RING_IDX`).
pub type XenconsRingIdx = u32;

/// The console page (`struct xencons_interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenconsInterface {
    /// Bytes to the guest (`in` in C).
    pub input: [u8; XENCONS_IN_SIZE],
    /// Bytes from the guest (`out` in C).
    pub output: [u8; XENCONS_OUT_SIZE],
    /// Guest's consumer index into `input`.
    pub in_cons: XenconsRingIdx,
    /// Backend's producer index into `input`.
    pub in_prod: XenconsRingIdx,
    /// Backend's consumer index into `output`.
    pub out_cons: XenconsRingIdx,
    /// Guest's producer index into `output`.
    pub out_prod: XenconsRingIdx,
}

/// `MASK_XENCONS_IDX(idx, ring)` for a ring of `ring_size` bytes (a power of two).
pub const fn mask_xencons_idx(idx: XenconsRingIdx, ring_size: usize) -> usize {
    (idx as usize) & (ring_size - 1)
}

/// The indices of one console ring claimed more bytes than the ring holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleIndexError {
    /// Consumer index.
    pub cons: XenconsRingIdx,
    /// Producer index.
    pub prod: XenconsRingIdx,
    /// Ring size.
    pub size: usize,
}

impl fmt::Display for ConsoleIndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "console ring indices cons {} prod {} claim more than {} bytes",
            self.cons, self.prod, self.size
        )
    }
}

impl core::error::Error for ConsoleIndexError {}

/// A validated (`cons`, `prod`) pair of one console ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingIndices {
    cons: XenconsRingIdx,
    prod: XenconsRingIdx,
    size: usize,
}

impl RingIndices {
    /// Validate indices read from the page for a ring of `size` bytes (1024 or 2048).
    pub fn check(
        cons: XenconsRingIdx,
        prod: XenconsRingIdx,
        size: usize,
    ) -> Result<Self, ConsoleIndexError> {
        if prod.wrapping_sub(cons) as usize > size {
            return Err(ConsoleIndexError { cons, prod, size });
        }
        Ok(RingIndices { cons, prod, size })
    }

    /// Bytes produced and not yet consumed.
    pub fn used(&self) -> usize {
        self.prod.wrapping_sub(self.cons) as usize
    }

    /// Bytes the producer may still write.
    pub fn free(&self) -> usize {
        self.size - self.used()
    }

    /// The ring offsets holding the unread bytes, in order: at most two ranges (the
    /// second when the data wraps past the end of the ring).
    pub fn readable(&self) -> [Range<usize>; 2] {
        self.split(self.cons, self.used())
    }

    /// The ring offsets the producer may write next, in order.
    pub fn writable(&self) -> [Range<usize>; 2] {
        self.split(self.prod, self.free())
    }

    fn split(&self, start_idx: XenconsRingIdx, len: usize) -> [Range<usize>; 2] {
        let start = mask_xencons_idx(start_idx, self.size);
        let first = len.min(self.size - start);
        [start..start + first, 0..len - first]
    }

    /// The consumer index after consuming `n` bytes (`n <= used()`).
    pub fn consumed(&self, n: usize) -> XenconsRingIdx {
        self.cons.wrapping_add(n.min(self.used()) as u32)
    }

    /// The producer index after producing `n` bytes (`n <= free()`).
    pub fn produced(&self, n: usize) -> XenconsRingIdx {
        self.prod.wrapping_add(n.min(self.free()) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_ranges() {
        let r = RingIndices::check(u32::MAX - 1, 3, XENCONS_OUT_SIZE).unwrap();
        assert_eq!(r.used(), 5);
        let [a, b] = r.readable();
        assert_eq!(a, 2046..2048);
        assert_eq!(b, 0..3);
        assert_eq!(r.consumed(5), 3);
        assert_eq!(r.free(), 2043);
    }

    #[test]
    fn hostile_indices() {
        assert!(RingIndices::check(0, 1025, XENCONS_IN_SIZE).is_err());
        assert!(RingIndices::check(5, 4, XENCONS_IN_SIZE).is_err());
        assert!(RingIndices::check(0, 1024, XENCONS_IN_SIZE).is_ok());
    }
}
