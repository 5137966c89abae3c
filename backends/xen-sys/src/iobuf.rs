//! Page-aligned owned I/O buffers: what `O_DIRECT` needs (buffer address aligned to the
//! device's DMA alignment; 4096 covers every logical sector size blkif carries), and
//! reusable: the capacity stays allocated while the length changes.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment (and capacity granule) of every [`IoBuf`].
pub const IO_ALIGN: usize = 4096;

/// A heap buffer aligned to [`IO_ALIGN`], zeroed when allocated, with a length up to
/// its capacity (a multiple of [`IO_ALIGN`]).
pub struct IoBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: IoBuf owns its allocation exclusively (like Vec<u8>).
unsafe impl Send for IoBuf {}
// SAFETY: shared access only reads (through &[u8]).
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// A zeroed buffer of `len` bytes (capacity rounded up to [`IO_ALIGN`], at least one
    /// granule).
    pub fn new(len: usize) -> Self {
        let cap = len.max(1).div_ceil(IO_ALIGN) * IO_ALIGN;
        let layout = Layout::from_size_align(cap, IO_ALIGN).expect("I/O buffer layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Self { ptr, cap, len }
    }

    /// Bytes it can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the length (at most the capacity). The bytes keep whatever they held (zero
    /// or earlier data: this type never exposes uninitialised memory).
    ///
    /// # Panics
    /// If `len` exceeds the capacity.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.cap,
            "IoBuf length {len} over capacity {}",
            self.cap
        );
        self.len = len;
    }

    /// The start of the buffer (for the kernel).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl std::ops::Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` holds `cap` >= `len` initialised (zeroed at allocation) bytes
        // owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, IO_ALIGN).expect("I/O buffer layout");
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_resizable_within_capacity() {
        let mut b = IoBuf::new(5000);
        assert_eq!((b.len(), b.capacity()), (5000, 8192));
        assert_eq!(b.as_mut_ptr() as usize % IO_ALIGN, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[4999] = 7;
        b.set_len(8192);
        assert_eq!(b[4999], 7);
        b.set_len(0);
        assert!(b.is_empty());
        assert_eq!(IoBuf::new(0).capacity(), IO_ALIGN);
    }

    #[test]
    #[should_panic(expected = "over capacity")]
    fn length_beyond_capacity_panics() {
        IoBuf::new(4096).set_len(4097);
    }
}
