//! Byte rings in a shared page: the transport of the PV console (`io/console.h`) and of
//! xenstore (`io/xs_wire.h`).
//!
//! Both pages hold plain byte arrays with a pair of free-running `u32` indices each; the
//! producer copies bytes in at `prod & (size - 1)` and advances `prod`, the consumer
//! copies them out and advances `cons`. [`ByteRing`] names one direction of one page
//! (data area, size, index offsets, all taken from the `#[repr(C)]` structs with
//! `offset_of!`), and [`ByteRing::write`] / [`ByteRing::read`] move bytes through a
//! [`SharedMem`] with Xen's barriers:
//!
//! * producer: read `cons` (`Acquire`: the consumer is done with the bytes it freed),
//!   copy, then `Release`-store `prod` (`wmb(); prod = ...`);
//! * consumer: read `prod` (`Acquire`, i.e. `rmb()` before reading bytes), copy, then
//!   `Release`-store `cons` (`mb(); cons = ...`: our reads finish before the producer
//!   may overwrite).
//!
//! The peer's index is validated ([`RingIndices::check`]) before any byte moves, so a
//! hostile peer gets a [`ByteRingError`], never an out-of-range copy. Notification (the
//! event channel) is the caller's job.

use core::fmt;
use core::mem::offset_of;

use crate::console::{RingIndices, XenconsInterface, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use crate::shared::{SharedMem, SharedMemError};
use crate::xs_wire::{XenstoreDomainInterface, XENSTORE_RING_SIZE};

/// Where one direction of a byte ring lives in its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRing {
    /// Offset of the data array.
    pub data: usize,
    /// Bytes in the data array (a power of two).
    pub size: usize,
    /// Offset of the consumer index.
    pub cons: usize,
    /// Offset of the producer index.
    pub prod: usize,
}

/// Why a byte ring operation failed. Nothing was moved and no index changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRingError {
    /// The indices claim more unread bytes than the ring holds: the peer is broken or
    /// hostile.
    BadIndices(crate::console::ConsoleIndexError),
    /// The shared region does not contain the ring.
    Mem(SharedMemError),
}

impl fmt::Display for ByteRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRingError::BadIndices(e) => e.fmt(f),
            ByteRingError::Mem(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ByteRingError {}

impl From<SharedMemError> for ByteRingError {
    fn from(e: SharedMemError) -> Self {
        ByteRingError::Mem(e)
    }
}

impl ByteRing {
    /// Console, backend → guest (`in`, `in_cons`, `in_prod`).
    pub const CONSOLE_IN: ByteRing = ByteRing {
        data: offset_of!(XenconsInterface, input),
        size: XENCONS_IN_SIZE,
        cons: offset_of!(XenconsInterface, in_cons),
        prod: offset_of!(XenconsInterface, in_prod),
    };
    /// Console, guest → backend (`out`, `out_cons`, `out_prod`).
    pub const CONSOLE_OUT: ByteRing = ByteRing {
        data: offset_of!(XenconsInterface, output),
        size: XENCONS_OUT_SIZE,
        cons: offset_of!(XenconsInterface, out_cons),
        prod: offset_of!(XenconsInterface, out_prod),
    };
    /// xenstore requests, guest → daemon (`req`, `req_cons`, `req_prod`).
    pub const XENSTORE_REQ: ByteRing = ByteRing {
        data: offset_of!(XenstoreDomainInterface, req),
        size: XENSTORE_RING_SIZE,
        cons: offset_of!(XenstoreDomainInterface, req_cons),
        prod: offset_of!(XenstoreDomainInterface, req_prod),
    };
    /// xenstore replies and watch events, daemon → guest (`rsp`, `rsp_cons`, `rsp_prod`).
    pub const XENSTORE_RSP: ByteRing = ByteRing {
        data: offset_of!(XenstoreDomainInterface, rsp),
        size: XENSTORE_RING_SIZE,
        cons: offset_of!(XenstoreDomainInterface, rsp_cons),
        prod: offset_of!(XenstoreDomainInterface, rsp_prod),
    };

    /// Current indices, validated. `Acquire` on both, so bytes the peer published (or
    /// freed) before its index store are visible afterwards.
    pub fn indices(&self, mem: &SharedMem<'_>) -> Result<RingIndices, ByteRingError> {
        let cons = mem.load_u32_acquire(self.cons)?;
        let prod = mem.load_u32_acquire(self.prod)?;
        RingIndices::check(cons, prod, self.size).map_err(ByteRingError::BadIndices)
    }

    /// Producer side: copy as much of `data` as fits, publish it, return the count.
    pub fn write(&self, mem: &SharedMem<'_>, data: &[u8]) -> Result<usize, ByteRingError> {
        let idx = self.indices(mem)?;
        let n = data.len().min(idx.free());
        let [a, b] = idx.writable();
        let first = n.min(a.len());
        mem.write_bytes(self.data + a.start, &data[..first])?;
        mem.write_bytes(self.data + b.start, &data[first..n])?;
        // wmb(); prod += n
        mem.store_u32_release(self.prod, idx.produced(n))?;
        Ok(n)
    }

    /// Consumer side: copy up to `out.len()` unread bytes out, free them, return the count.
    pub fn read(&self, mem: &SharedMem<'_>, out: &mut [u8]) -> Result<usize, ByteRingError> {
        let idx = self.indices(mem)?;
        let n = out.len().min(idx.used());
        let [a, b] = idx.readable();
        let first = n.min(a.len());
        mem.read_bytes(self.data + a.start, &mut out[..first])?;
        mem.read_bytes(self.data + b.start, &mut out[first..n])?;
        // mb(); cons += n: the copies above complete before the producer may reuse them.
        SharedMem::fence_full();
        mem.store_u32_release(self.cons, idx.consumed(n))?;
        Ok(n)
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::shared::SharedPages;

    #[test]
    fn console_wraps_and_refuses_bad_indices() {
        let page = SharedPages::new(1);
        let mem = page.mem();
        let ring = ByteRing::CONSOLE_OUT;
        // Start near the u32 wrap point and near the end of the array.
        mem.store_u32_relaxed(ring.cons, u32::MAX - 5).unwrap();
        mem.store_u32_relaxed(ring.prod, u32::MAX - 5).unwrap();
        let msg: std::vec::Vec<u8> = (0..2048u32).map(|i| i as u8).collect();
        assert_eq!(ring.write(&mem, &msg[..100]).unwrap(), 100);
        let mut out = [0u8; 100];
        assert_eq!(ring.read(&mem, &mut out).unwrap(), 100);
        assert_eq!(&out[..], &msg[..100]);
        assert_eq!(ring.write(&mem, &msg).unwrap(), 2048);
        assert_eq!(ring.write(&mem, b"x").unwrap(), 0);
        // A hostile producer index.
        mem.store_u32_relaxed(ring.prod, 5000).unwrap();
        mem.store_u32_relaxed(ring.cons, 0).unwrap();
        assert!(matches!(
            ring.read(&mem, &mut out),
            Err(ByteRingError::BadIndices(_))
        ));
        assert_eq!(mem.load_u32_relaxed(ring.cons).unwrap(), 0);
    }

    #[test]
    fn too_small_region_is_an_error() {
        let mut small = [0u8; 64];
        let mem = SharedMem::from_mut_slice(&mut small);
        assert!(matches!(
            ByteRing::XENSTORE_RSP.read(&mem, &mut [0u8; 4]),
            Err(ByteRingError::Mem(_))
        ));
    }
}
