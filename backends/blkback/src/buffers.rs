//! A queue's pool of page-aligned data buffers ([`IoBuf`]), reused from request to
//! request instead of allocating (and, in a PV dom0, page-faulting through Xen) a fresh
//! one each time. Size classes are powers of two pages (4 KiB .. 1 MiB); at most
//! [`POOL_BYTES`] are kept idle, the rest freed.
//!
//! A reused buffer holds an earlier request's bytes; callers overwrite all of it before
//! anything reaches a guest (a read answers only after the disk filled every byte, a
//! write only after the guest's pages filled every byte).

use sluice_xen_sys::{IoBuf, IO_ALIGN};
use std::cell::RefCell;

/// Most idle bytes a pool keeps (more than a full ring of 128 KiB requests: 32 x 128 KiB).
pub const POOL_BYTES: usize = 8 << 20;

/// Size classes: 1, 2, 4, ... 256 pages.
const CLASSES: usize = 9;

/// One queue's buffers (one thread; no locking).
#[derive(Default)]
pub struct BufPool {
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    free: [Vec<IoBuf>; CLASSES],
    idle_bytes: usize,
    allocated: u64,
    reused: u64,
}

/// The class of a buffer of `len` bytes, and its capacity; `None` beyond the largest.
fn class(len: usize) -> Option<(usize, usize)> {
    let pages = len.max(1).div_ceil(IO_ALIGN).next_power_of_two();
    let c = pages.trailing_zeros() as usize;
    (c < CLASSES).then_some((c, pages * IO_ALIGN))
}

impl BufPool {
    /// A buffer of exactly `len` bytes: an idle one of its class, or a new one.
    pub fn take(&self, len: usize) -> IoBuf {
        let mut inner = self.inner.borrow_mut();
        let Some((c, cap)) = class(len) else {
            inner.allocated += 1;
            return IoBuf::new(len);
        };
        let mut buf = match inner.free[c].pop() {
            Some(b) => {
                inner.idle_bytes -= b.capacity();
                inner.reused += 1;
                b
            }
            None => {
                inner.allocated += 1;
                IoBuf::new(cap)
            }
        };
        buf.set_len(len);
        buf
    }

    /// Gives `buf` back (freed if the pool is full or it fits no class exactly).
    pub fn put(&self, buf: IoBuf) {
        let mut inner = self.inner.borrow_mut();
        let Some((c, cap)) = class(buf.capacity()) else {
            return;
        };
        if cap != buf.capacity() || inner.idle_bytes + cap > POOL_BYTES {
            return;
        }
        inner.idle_bytes += cap;
        inner.free[c].push(buf);
    }

    /// (buffers allocated, takes served from idle buffers).
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.inner.borrow();
        (inner.allocated, inner.reused)
    }

    /// Idle bytes held now.
    pub fn idle_bytes(&self) -> usize {
        self.inner.borrow().idle_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_by_class_and_bounds_idle_memory() {
        let p = BufPool::default();
        let a = p.take(512);
        let b = p.take(128 << 10);
        assert_eq!((a.len(), a.capacity()), (512, 4096));
        assert_eq!((b.len(), b.capacity()), (128 << 10, 128 << 10));
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        p.put(a);
        p.put(b);
        assert_eq!(p.idle_bytes(), 4096 + (128 << 10));
        // Same class: the same allocation back, at the new length.
        let b2 = p.take(96 << 10);
        assert_eq!(
            (b2.as_ptr(), b2.len(), b2.capacity()),
            (pb, 96 << 10, 128 << 10)
        );
        let a2 = p.take(4096);
        assert_eq!(a2.as_ptr(), pa);
        assert_eq!(p.counts(), (2, 2));
        assert_eq!(p.idle_bytes(), 0);
        // Beyond the largest class: allocated, never pooled.
        let big = p.take((1 << 20) + 512);
        p.put(big);
        assert_eq!(p.idle_bytes(), 0);
        // Bounded: more than POOL_BYTES of idle 1 MiB buffers are freed.
        let many: Vec<IoBuf> = (0..(POOL_BYTES >> 20) + 3)
            .map(|_| p.take(1 << 20))
            .collect();
        for b in many {
            p.put(b);
        }
        assert_eq!(p.idle_bytes(), POOL_BYTES);
        drop((a2, b2));
    }
}
