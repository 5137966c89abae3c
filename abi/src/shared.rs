//! Memory that a peer (another domain, another process, another thread) may modify at
//! any moment: the one low layer of this crate allowed to use `unsafe`.
//!
//! A Xen shared ring or grant-mapped page is written by a peer we do not trust and do not
//! synchronise with except through the ring protocol. Forming a Rust reference (`&T`,
//! `&mut T`, `&[u8]`) into such memory would be undefined behaviour the moment the peer
//! writes, so [`SharedMem`] never does: every access goes through a raw pointer as an
//! *atomic* access of the natural width:
//!
//! * indices (`u32`) are loaded with `Acquire` / stored with `Release` (or `Relaxed` where
//!   the caller asks), see [`SharedMem::load_u32_acquire`], [`SharedMem::store_u32_release`];
//! * whole values are copied out ([`SharedMem::read`], any `zerocopy::FromBytes` type:
//!   every bit pattern is valid, so a torn or hostile value is still a value) or copied in
//!   ([`SharedMem::write`], any `IntoBytes + Immutable` type) as a sequence of `Relaxed`
//!   atomic loads/stores of 8, 4, 2 or 1 bytes chosen by address alignment. These compile
//!   to ordinary `mov`s on x86 but, unlike `read_volatile` of a racing location, they are
//!   data-race free in the Rust memory model (so Miri and the two-thread stress test can
//!   check our own side). Ordering with respect to the indices comes from the index
//!   accesses and the fences, exactly as Xen's `ring.h` does with `wmb`/`rmb`/`mb`;
//! * [`SharedMem::fence_full`] is `mb()`, [`SharedMem::fence_acquire`] and
//!   [`SharedMem::fence_release`] are the weaker one-sided fences.
//!
//! Every access is bounds-checked against the region's length and alignment-checked
//! where the access needs it, returning [`SharedMemError`] instead of touching memory
//! outside the region.
//!
//! Constructors: [`SharedMem::new`] (`unsafe`: for a mapping the caller vouches for, e.g.
//! a grant-mapped page or an `mmap`), [`SharedMem::from_mut_slice`] (safe: memory we
//! own exclusively for `'a`), and [`SharedPages`] (feature `alloc`: a zeroed,
//! page-aligned heap buffer for tests and host code).

#![allow(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Xen's page size for ring protocols and grant tables: always 4 KiB, whatever the
/// guest's own page size (`XEN_PAGE_SHIFT` = 12 in `io/ring.h`).
pub const XEN_PAGE_SIZE: usize = 4096;

/// Why an access to a [`SharedMem`] was refused. Nothing was read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedMemError {
    /// `offset..offset+len` does not lie inside the region of `region_len` bytes.
    OutOfBounds {
        offset: usize,
        len: usize,
        region_len: usize,
    },
    /// The access needs `align`-byte alignment and `offset` (plus the base) lacks it.
    Misaligned { offset: usize, align: usize },
}

impl fmt::Display for SharedMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfBounds {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "shared-memory access of {len} bytes at offset {offset} is outside the {region_len}-byte region"
            ),
            Self::Misaligned { offset, align } => write!(
                f,
                "shared-memory access at offset {offset} is not {align}-byte aligned"
            ),
        }
    }
}

impl core::error::Error for SharedMemError {}

/// A region of memory another party may read and write concurrently.
///
/// It is a `Copy` handle (pointer and length), like a `&'a` borrow of the region: several
/// handles, on several threads, may access the same region at once, because every access
/// is atomic. It never hands out a reference into the region.
#[derive(Clone, Copy)]
pub struct SharedMem<'a> {
    base: NonNull<u8>,
    len: usize,
    /// Borrows the region for `'a` as interior-mutable bytes.
    _region: PhantomData<&'a [AtomicU8]>,
}

// SAFETY: a `SharedMem` is a pointer and a length; every access through it is an atomic
// access (see the module docs), so using it from several threads at once is data-race
// free, like sharing a `&[AtomicU8]`.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as for `Send`: `&SharedMem` only allows atomic accesses.
unsafe impl Sync for SharedMem<'_> {}

impl fmt::Debug for SharedMem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMem")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a> SharedMem<'a> {
    /// Wraps `len` bytes at `ptr` as shared memory.
    ///
    /// # Safety
    ///
    /// For the whole of `'a`:
    /// * `ptr..ptr+len` is one allocated, readable and writable region (e.g. a mapped
    ///   grant or an `mmap(MAP_SHARED)`), not freed or unmapped while `'a` lasts;
    /// * within this program it is accessed only through `SharedMem` handles (or other
    ///   atomic accesses): no Rust reference to any of it exists or is created. Writes by
    ///   *another* domain or process, of any kind, are expected and harmless;
    /// * `len <= isize::MAX as usize`.
    ///
    /// Alignment is not required here; each access checks the alignment it needs.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        Self {
            base: ptr,
            len,
            _region: PhantomData,
        }
    }

    /// Shared memory over bytes we own exclusively for `'a` (tests, host-side rings):
    /// the `&mut` borrow guarantees nothing else references them meanwhile.
    pub fn from_mut_slice(bytes: &'a mut [u8]) -> Self {
        let len = bytes.len();
        // SAFETY: the slice is one live allocation of `len` (<= isize::MAX) bytes, readable
        // and writable; the exclusive borrow for `'a` means no other reference to it exists
        // while this handle (or its copies, which share `'a`) can be used.
        unsafe { Self::new(NonNull::from(bytes).cast::<u8>(), len) }
    }

    /// Length of the region in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte (for alignment checks and logging; never dereference).
    #[inline]
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// The sub-region `offset..offset+len`, borrowed for the same `'a`.
    pub fn slice(&self, offset: usize, len: usize) -> Result<SharedMem<'a>, SharedMemError> {
        let p = self.check(offset, len, 1)?;
        Ok(SharedMem {
            base: p,
            len,
            _region: PhantomData,
        })
    }

    /// Checks `offset..offset+len` lies in the region and `base+offset` is `align`-aligned;
    /// returns the pointer to `base+offset`.
    #[inline]
    fn check(
        &self,
        offset: usize,
        len: usize,
        align: usize,
    ) -> Result<NonNull<u8>, SharedMemError> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.len) {
            return Err(SharedMemError::OutOfBounds {
                offset,
                len,
                region_len: self.len,
            });
        }
        let addr = self.addr().wrapping_add(offset);
        if !addr.is_multiple_of(align) {
            return Err(SharedMemError::Misaligned { offset, align });
        }
        // SAFETY: `offset + len <= self.len`, so `base + offset` stays inside (or one past
        // the end of) the region, which `new`'s contract says is one allocation; the
        // result is non-null because it is derived in-bounds from a non-null pointer.
        Ok(unsafe { self.base.add(offset) })
    }

    /// The `u32` at `offset` as an atomic. `offset` must be in bounds and 4-aligned.
    #[inline]
    fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, SharedMemError> {
        let p = self.check(offset, 4, 4)?;
        // SAFETY: `p` is in bounds, 4-aligned (checked) and valid for `'a` (contract of
        // `new`). All accesses to the region from this program are atomic (contract of
        // `new`), which is what `AtomicU32::from_ptr` requires. An `&AtomicU32` is a
        // reference to an `UnsafeCell`-based type, so the peer's concurrent writes do not
        // violate its aliasing rules. The reference does not outlive `&self`.
        Ok(unsafe { AtomicU32::from_ptr(p.as_ptr().cast::<u32>()) })
    }

    /// Loads the `u32` at `offset` with `Acquire` ordering: later reads of this thread
    /// (e.g. of ring entries) see at least what the peer wrote before its `Release` store
    /// of this value. This is "read the producer index, then `rmb()`".
    #[inline]
    pub fn load_u32_acquire(&self, offset: usize) -> Result<u32, SharedMemError> {
        Ok(self.atomic_u32(offset)?.load(Ordering::Acquire))
    }

    /// Loads the `u32` at `offset` with `Relaxed` ordering (no ordering of other accesses).
    #[inline]
    pub fn load_u32_relaxed(&self, offset: usize) -> Result<u32, SharedMemError> {
        Ok(self.atomic_u32(offset)?.load(Ordering::Relaxed))
    }

    /// Stores `value` at `offset` with `Release` ordering: every earlier write of this
    /// thread (e.g. ring entries) is visible to a peer that reads this value with
    /// `Acquire`. This is "`wmb()`, then write the producer index".
    #[inline]
    pub fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), SharedMemError> {
        self.atomic_u32(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Stores `value` at `offset` with `Relaxed` ordering.
    #[inline]
    pub fn store_u32_relaxed(&self, offset: usize, value: u32) -> Result<(), SharedMemError> {
        self.atomic_u32(offset)?.store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Copies a `T` out of the region at `offset`. The peer may be writing meanwhile: the
    /// result may then mix old and new bytes, which is still a valid `T` because `T:
    /// FromBytes`; callers validate it like any untrusted input. No alignment needed.
    #[inline]
    pub fn read<T: FromBytes>(&self, offset: usize) -> Result<T, SharedMemError> {
        let src = self.check(offset, size_of::<T>(), 1)?;
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `src..src+size_of::<T>()` is inside the region (checked) and valid for
        // reads for `'a`; `out` is a local of exactly `size_of::<T>()` writable bytes that
        // cannot overlap the region.
        unsafe { copy_from_shared(src.as_ptr(), out.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
        // SAFETY: all `size_of::<T>()` bytes of `out` were initialised just above, and
        // `T: FromBytes` means every initialised byte pattern is a valid `T`.
        Ok(unsafe { out.assume_init() })
    }

    /// Copies `value` into the region at `offset`. No alignment needed.
    #[inline]
    pub fn write<T: IntoBytes + Immutable>(
        &self,
        offset: usize,
        value: &T,
    ) -> Result<(), SharedMemError> {
        self.write_bytes(offset, value.as_bytes())
    }

    /// Copies `bytes` into the region at `offset`.
    #[inline]
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), SharedMemError> {
        let dst = self.check(offset, bytes.len(), 1)?;
        // SAFETY: `dst..dst+bytes.len()` is inside the region (checked) and valid for
        // writes for `'a`; `bytes` is ordinary memory of this program, which the contract
        // of `new` says cannot be part of the region.
        unsafe { copy_to_shared(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        Ok(())
    }

    /// Copies `out.len()` bytes from the region at `offset` into `out`.
    #[inline]
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), SharedMemError> {
        let src = self.check(offset, out.len(), 1)?;
        // SAFETY: as in `read`: in-bounds source, disjoint local destination.
        unsafe { copy_from_shared(src.as_ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), SharedMemError> {
        let dst = self.check(offset, len, 1)?;
        let mut done = 0;
        while done < len {
            // SAFETY: `dst + done` is inside the checked range and the region is only
            // accessed atomically (contract of `new`).
            unsafe { AtomicU8::from_ptr(dst.as_ptr().add(done)) }.store(byte, Ordering::Relaxed);
            done += 1;
        }
        Ok(())
    }

    /// A full fence (Xen `mb()`): no load or store of this thread moves across it in
    /// either direction, and two threads that each store, fence, then load cannot both
    /// miss the other's store (the pattern of `RING_FINAL_CHECK_*` against
    /// `RING_PUSH_*_AND_CHECK_NOTIFY`). `mfence` (or a locked op) on x86.
    #[inline]
    pub fn fence_full() {
        fence(Ordering::SeqCst);
    }

    /// An acquire fence: earlier loads are ordered before later loads and stores (`rmb()`
    /// when paired with a relaxed index load).
    pub fn fence_acquire() {
        fence(Ordering::Acquire);
    }

    /// A release fence: earlier loads and stores are ordered before later stores (`wmb()`
    /// when paired with a relaxed index store).
    pub fn fence_release() {
        fence(Ordering::Release);
    }
}

/// Copies `len` bytes from shared memory at `src` to private memory at `dst`, as relaxed
/// atomic loads of the widest naturally aligned size (8, 4, 2 or 1 bytes) at each
/// address: runs of 8-byte loads once aligned. The widths depend only on the address
/// and length, so our own writer and reader of a slot use the same access sizes.
///
/// # Safety
/// `src..src+len` is valid for reads and accessed in this program only atomically;
/// `dst..dst+len` is valid for writes and does not overlap it.
#[inline]
unsafe fn copy_from_shared(src: *const u8, dst: *mut u8, len: usize) {
    // Fast path with a trip count known at compile time for a fixed `len` (ring slots are
    // 8-aligned with sizes multiple of 8): LLVM unrolls it and keeps the words in
    // registers. The widths are the ones the general loop below would pick.
    // The words are stored to `dst` in 16-byte pairs: the caller usually moves the
    // result right away with 16-byte loads, which a pair of 8-byte stores would stall
    // (no store-to-load forwarding across two stores).
    if (src as usize).is_multiple_of(8) && len.is_multiple_of(8) {
        let load = |w: usize| {
            // SAFETY: callers pass `w < len / 8`, so `8 * w + 8 <= len`: in the source
            // range and 8-aligned (caller contract).
            unsafe {
                AtomicU64::from_ptr(src.add(8 * w).cast_mut().cast::<u64>()).load(Ordering::Relaxed)
            }
        };
        let words = len / 8;
        for p in 0..words / 2 {
            let (first, second) = (u128::from(load(2 * p)), u128::from(load(2 * p + 1)));
            // The first word goes to the lower address: the low half on little-endian.
            let pair = if cfg!(target_endian = "little") {
                first | second << 64
            } else {
                first << 64 | second
            };
            // SAFETY: `16 * p + 16 <= len`: in the private destination range, written
            // unaligned.
            unsafe { dst.add(16 * p).cast::<u128>().write_unaligned(pair) };
        }
        if words % 2 == 1 {
            // SAFETY: the last 8 bytes of the destination range, written unaligned.
            unsafe {
                dst.add(len - 8)
                    .cast::<u64>()
                    .write_unaligned(load(words - 1))
            };
        }
        return;
    }
    let mut i = 0;
    while i < len {
        let rest = len - i;
        let addr = (src as usize).wrapping_add(i);
        if rest >= 8 && addr.is_multiple_of(8) {
            let words = rest / 8;
            for w in 0..words {
                let at = i + 8 * w;
                // SAFETY: `at + 8 <= len`, so the 8 bytes at `src + at` are in the
                // source range (valid, only atomically accessed: caller contract) and
                // 8-aligned (`addr` is, and `at - i` is a multiple of 8); `dst + at` is
                // in the private destination range, written unaligned.
                unsafe {
                    let v = AtomicU64::from_ptr(src.add(at).cast_mut().cast::<u64>())
                        .load(Ordering::Relaxed);
                    dst.add(at).cast::<u64>().write_unaligned(v);
                }
            }
            i += 8 * words;
            continue;
        }
        // SAFETY (all three arms): the access at `src + i` is aligned for its width
        // (checked on `addr`) and `width <= rest` keeps it within `src..src+len`, which
        // is valid and only atomically accessed (caller contract); `dst + i` is in the
        // private destination range, written unaligned.
        let width = unsafe {
            let s = src.add(i);
            if rest >= 4 && addr.is_multiple_of(4) {
                let v = AtomicU32::from_ptr(s.cast_mut().cast::<u32>()).load(Ordering::Relaxed);
                dst.add(i).cast::<u32>().write_unaligned(v);
                4
            } else if rest >= 2 && addr.is_multiple_of(2) {
                let v = AtomicU16::from_ptr(s.cast_mut().cast::<u16>()).load(Ordering::Relaxed);
                dst.add(i).cast::<u16>().write_unaligned(v);
                2
            } else {
                let v = AtomicU8::from_ptr(s.cast_mut()).load(Ordering::Relaxed);
                dst.add(i).write(v);
                1
            }
        };
        i += width;
    }
}

/// Copies `len` bytes from private memory at `src` into shared memory at `dst`, as
/// relaxed atomic stores with the same choice of widths as [`copy_from_shared`].
///
/// # Safety
/// `dst..dst+len` is valid for writes and accessed in this program only atomically;
/// `src..src+len` is valid for reads and does not overlap it.
#[inline]
unsafe fn copy_to_shared(src: *const u8, dst: *mut u8, len: usize) {
    // Fast path: see `copy_from_shared`.
    if (dst as usize).is_multiple_of(8) && len.is_multiple_of(8) {
        for w in 0..len / 8 {
            // SAFETY: `8 * w + 8 <= len`: in the destination range, 8-aligned, only
            // atomically accessed; source private, read unaligned (caller contract).
            unsafe {
                let v = src.add(8 * w).cast::<u64>().read_unaligned();
                AtomicU64::from_ptr(dst.add(8 * w).cast::<u64>()).store(v, Ordering::Relaxed);
            }
        }
        return;
    }
    let mut i = 0;
    while i < len {
        let rest = len - i;
        let addr = (dst as usize).wrapping_add(i);
        if rest >= 8 && addr.is_multiple_of(8) {
            let words = rest / 8;
            for w in 0..words {
                let at = i + 8 * w;
                // SAFETY: mirror of `copy_from_shared`: `dst + at` is 8-aligned and its
                // 8 bytes lie in the destination range (only atomically accessed); the
                // private source is read unaligned.
                unsafe {
                    let v = src.add(at).cast::<u64>().read_unaligned();
                    AtomicU64::from_ptr(dst.add(at).cast::<u64>()).store(v, Ordering::Relaxed);
                }
            }
            i += 8 * words;
            continue;
        }
        // SAFETY (all three arms): mirror of `copy_from_shared`: `dst + i` aligned for
        // the width, within the destination range which is only atomically accessed;
        // the private source is read unaligned.
        let width = unsafe {
            let d = dst.add(i);
            if rest >= 4 && addr.is_multiple_of(4) {
                let v = src.add(i).cast::<u32>().read_unaligned();
                AtomicU32::from_ptr(d.cast::<u32>()).store(v, Ordering::Relaxed);
                4
            } else if rest >= 2 && addr.is_multiple_of(2) {
                let v = src.add(i).cast::<u16>().read_unaligned();
                AtomicU16::from_ptr(d.cast::<u16>()).store(v, Ordering::Relaxed);
                2
            } else {
                AtomicU8::from_ptr(d).store(src.add(i).read(), Ordering::Relaxed);
                1
            }
        };
        i += width;
    }
}

#[cfg(feature = "alloc")]
pub use pages::SharedPages;

#[cfg(feature = "alloc")]
mod pages {
    use super::{SharedMem, XEN_PAGE_SIZE};
    use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
    use core::ptr::NonNull;

    /// A zeroed, page-aligned heap buffer of whole 4 KiB pages, to put a shared ring in
    /// (tests, host-side rings, benchmarks). Hand out views with [`SharedPages::mem`];
    /// they borrow the buffer, so it outlives them.
    pub struct SharedPages {
        base: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: the buffer is owned heap memory only accessed through `SharedMem` handles,
    // i.e. atomically; moving the owner to another thread moves nothing but the pointer.
    unsafe impl Send for SharedPages {}
    // SAFETY: `&SharedPages` only creates `SharedMem` handles, whose accesses are atomic.
    unsafe impl Sync for SharedPages {}

    impl SharedPages {
        /// `pages` zeroed pages (at least one), aligned to 4 KiB.
        ///
        /// # Panics
        /// If `pages * 4096` overflows `isize` (a caller bug, not peer input); aborts via
        /// `handle_alloc_error` when the allocator fails, like `Vec`.
        pub fn new(pages: usize) -> Self {
            let size = pages
                .max(1)
                .checked_mul(XEN_PAGE_SIZE)
                .expect("SharedPages size overflows usize");
            let layout = Layout::from_size_align(size, XEN_PAGE_SIZE)
                .expect("SharedPages size overflows isize");
            // SAFETY: `layout` has non-zero size (at least one page).
            let p = unsafe { alloc_zeroed(layout) };
            let Some(base) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            Self { base, layout }
        }

        /// Number of 4 KiB pages.
        pub fn pages(&self) -> usize {
            self.layout.size() / XEN_PAGE_SIZE
        }

        /// A view of the whole buffer, borrowed from `self`.
        pub fn mem(&self) -> SharedMem<'_> {
            // SAFETY: `base..base+size` is one live allocation owned by `self`, freed only
            // in `drop`, which cannot run while the returned borrow of `self` lives. Nothing
            // in this program forms a reference into it: `SharedPages` exposes the memory
            // only through `SharedMem`.
            unsafe { SharedMem::new(self.base, self.layout.size()) }
        }
    }

    impl Drop for SharedPages {
        fn drop(&mut self) {
            // SAFETY: `base` came from `alloc_zeroed(self.layout)` and is freed only here.
            unsafe { dealloc(self.base.as_ptr(), self.layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_round_trip_and_bounds() {
        let mut buf = [0u32; 4];
        let mem = SharedMem::from_mut_slice(buf.as_mut_bytes());
        mem.store_u32_release(4, 0xdead_beef).unwrap();
        assert_eq!(mem.load_u32_acquire(4).unwrap(), 0xdead_beef);
        assert_eq!(mem.load_u32_relaxed(0).unwrap(), 0);
        assert_eq!(
            mem.load_u32_acquire(13),
            Err(SharedMemError::OutOfBounds {
                offset: 13,
                len: 4,
                region_len: 16
            })
        );
        assert_eq!(
            mem.load_u32_acquire(2),
            Err(SharedMemError::Misaligned {
                offset: 2,
                align: 4
            })
        );
        assert!(mem.load_u32_acquire(usize::MAX - 1).is_err());
        let _ = buf;
    }

    #[test]
    fn copies_at_every_alignment() {
        #[derive(
            zerocopy::FromBytes,
            zerocopy::IntoBytes,
            zerocopy::Immutable,
            PartialEq,
            Debug,
            Clone,
            Copy,
        )]
        #[repr(C)]
        struct Odd {
            a: [u8; 3],
            b: [u8; 14],
        }
        let v = Odd {
            a: [1, 2, 3],
            b: core::array::from_fn(|i| 10 + i as u8),
        };
        let mut buf = [0u64; 8];
        let mem = SharedMem::from_mut_slice(buf.as_mut_bytes());
        for off in 0..=(64 - size_of::<Odd>()) {
            mem.fill(0, 64, 0xaa).unwrap();
            mem.write(off, &v).unwrap();
            assert_eq!(mem.read::<Odd>(off).unwrap(), v, "offset {off}");
            let mut raw = [0u8; 64];
            mem.read_bytes(0, &mut raw).unwrap();
            assert!(raw[..off].iter().all(|&b| b == 0xaa));
            assert!(raw[off + size_of::<Odd>()..].iter().all(|&b| b == 0xaa));
        }
        assert!(mem.read::<Odd>(64 - size_of::<Odd>() + 1).is_err());
        assert!(mem.write(usize::MAX, &v).is_err());
    }

    /// Every length and offset, both copy paths (the aligned 8-byte fast path and the
    /// general loop), against a plain byte model.
    #[test]
    fn byte_copies_match_a_model() {
        let mut buf = [0u64; 16];
        let mem = SharedMem::from_mut_slice(buf.as_mut_bytes());
        let pattern: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5c);
        for off in 0..24 {
            for len in 0..=64 {
                let mut model = [0xeeu8; 128];
                model[off..off + len].copy_from_slice(&pattern[..len]);
                mem.fill(0, 128, 0xee).unwrap();
                mem.write_bytes(off, &pattern[..len]).unwrap();
                let mut all = [0u8; 128];
                mem.read_bytes(0, &mut all).unwrap();
                assert_eq!(all, model, "write at {off}, len {len}");
                let mut part = [0u8; 64];
                mem.read_bytes(off, &mut part[..len]).unwrap();
                assert_eq!(&part[..len], &pattern[..len], "read at {off}, len {len}");
            }
        }
        let words: [u64; 14] = core::array::from_fn(|i| 0x0102_0304_0506_0708 * (i as u64 + 1));
        for off in [0, 8, 4, 1] {
            mem.write(off, &words).unwrap();
            assert_eq!(mem.read::<[u64; 14]>(off).unwrap(), words, "offset {off}");
            assert_eq!(
                mem.read::<[u64; 3]>(off).unwrap(),
                [words[0], words[1], words[2]]
            );
        }
    }

    #[test]
    fn slice_is_bounded() {
        let mut buf = [0u8; 32];
        let mem = SharedMem::from_mut_slice(&mut buf);
        let sub = mem.slice(8, 8).unwrap();
        sub.write_bytes(0, &[7; 8]).unwrap();
        assert!(sub.write_bytes(1, &[7; 8]).is_err());
        assert!(mem.slice(30, 3).is_err());
        let mut out = [0u8; 32];
        mem.read_bytes(0, &mut out).unwrap();
        assert_eq!(&out[8..16], &[7; 8]);
        assert_eq!(out.iter().filter(|&&b| b == 7).count(), 8);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn pages_are_aligned_and_zeroed() {
        let p = SharedPages::new(2);
        assert_eq!(p.pages(), 2);
        let m = p.mem();
        assert_eq!(m.addr() % XEN_PAGE_SIZE, 0);
        assert_eq!(m.len(), 2 * XEN_PAGE_SIZE);
        let mut out = [1u8; 64];
        m.read_bytes(8192 - 64, &mut out).unwrap();
        assert_eq!(out, [0; 64]);
    }
}
