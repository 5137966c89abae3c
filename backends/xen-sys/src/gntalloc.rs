//! `/dev/xen/gntalloc`: allocate pages in this domain and grant another domain access
//! to them. This is what a frontend in a domU shares with its backend (rings, data
//! pages); Sluice uses it for its own userspace test frontends.
//!
//! The ioctls follow the layouts of Linux's `include/uapi/xen/gntalloc.h`:
//! `IOCTL_GNTALLOC_ALLOC_GREF` takes a header (`domid`, `flags`, `count`, and the
//! `index` it returns) followed by the `count` grant references the kernel fills in;
//! the pages are then `mmap`ed at `index`. `IOCTL_GNTALLOC_DEALLOC_GREF` releases them
//! (deferred by the kernel while they are still mapped, here or by the other domain).

use crate::ioc::ioc_none;
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// Default device node.
pub const GNTALLOC_DEVICE: &str = "/dev/xen/gntalloc";

/// `struct ioctl_gntalloc_alloc_gref` without its trailing `gref_ids` array.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AllocGrefHeader {
    domid: u16,
    flags: u16,
    count: u32,
    index: u64,
}

/// `struct ioctl_gntalloc_dealloc_gref` (with its implicit tail padding).
#[repr(C)]
struct DeallocGref {
    index: u64,
    count: u32,
    pad: u32,
}

/// The C struct's size: the header plus its one-element `gref_ids` array, padded to
/// the struct's 8-byte alignment (24 bytes).
const ALLOC_GREF_SIZE: usize =
    (size_of::<AllocGrefHeader>() + size_of::<u32>()).next_multiple_of(align_of::<u64>());

const IOCTL_GNTALLOC_ALLOC_GREF: libc::c_ulong = ioc_none(b'G', 5, ALLOC_GREF_SIZE);
const IOCTL_GNTALLOC_DEALLOC_GREF: libc::c_ulong = ioc_none(b'G', 6, size_of::<DeallocGref>());

/// `GNTALLOC_FLAG_WRITABLE`: the other domain may write the pages.
const GNTALLOC_FLAG_WRITABLE: u16 = 1;

/// Failures of grant allocation.
#[derive(Debug, thiserror::Error)]
pub enum GntallocError {
    /// Opening the device failed (not in a Xen domain, or `xen-gntalloc` not loaded).
    #[error("opening {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// `IOCTL_GNTALLOC_ALLOC_GREF` failed (out of grants or memory, over the limit).
    #[error("granting {count} page(s) to domain {domid}: {source}")]
    Alloc {
        /// The domain given access.
        domid: u16,
        /// How many pages.
        count: usize,
        /// The OS error.
        source: io::Error,
    },
    /// Mapping the allocated pages into this process failed.
    #[error("mapping {count} granted page(s): {source}")]
    Mmap {
        /// How many pages.
        count: usize,
        /// The OS error.
        source: io::Error,
    },
    /// An allocation of no pages was asked for.
    #[error("a grant allocation needs at least one page")]
    Empty,
}

/// One open of `/dev/xen/gntalloc`. Closing it (the last clone) releases every page
/// still allocated through it.
#[derive(Debug, Clone)]
pub struct GntallocDevice {
    file: Arc<File>,
}

impl GntallocDevice {
    /// Opens [`GNTALLOC_DEVICE`].
    pub fn open() -> Result<Self, GntallocError> {
        Self::open_path(Path::new(GNTALLOC_DEVICE))
    }

    /// Opens the device at `path`.
    pub fn open_path(path: &Path) -> Result<Self, GntallocError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| GntallocError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            file: Arc::new(file),
        })
    }

    /// Allocates `count` zeroed pages, grants domain `domid` access to them (read-only
    /// unless `writable`) and maps them here, read-write, as consecutive pages.
    pub fn alloc(
        &self,
        domid: u16,
        count: usize,
        writable: bool,
    ) -> Result<GrantedPages, GntallocError> {
        if count == 0 {
            return Err(GntallocError::Empty);
        }
        let alloc_err = |source| GntallocError::Alloc {
            domid,
            count,
            source,
        };
        let count32 = u32::try_from(count)
            .map_err(|_| alloc_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // Header then `count` refs, in u64 words so that it is 8-aligned and at least
        // as large as the C struct the ioctl's size names.
        let words = (size_of::<AllocGrefHeader>() + count * size_of::<u32>())
            .max(ALLOC_GREF_SIZE)
            .div_ceil(8);
        let mut buf = vec![0u64; words];
        let base = buf.as_mut_ptr().cast::<u8>();
        let header = AllocGrefHeader {
            domid,
            flags: if writable { GNTALLOC_FLAG_WRITABLE } else { 0 },
            count: count32,
            index: 0,
        };
        // SAFETY: `buf` holds at least `size_of::<AllocGrefHeader>()` bytes and is
        // 8-aligned, as the header needs.
        unsafe { base.cast::<AllocGrefHeader>().write(header) };
        // SAFETY: the kernel reads the header at `base` and writes the header's `index`
        // and `count` refs right after it; all of that lies in `buf` (sized above),
        // which is live and exclusively ours for the call.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_GNTALLOC_ALLOC_GREF, base) };
        if r < 0 {
            return Err(alloc_err(io::Error::last_os_error()));
        }
        // SAFETY: reads back the header and the refs the kernel filled in: in bounds of
        // `buf`, aligned (refs are 4-byte values at offset 16 of an 8-aligned buffer).
        let (index, grefs) = unsafe {
            let h = base.cast::<AllocGrefHeader>().read();
            let refs = base.add(size_of::<AllocGrefHeader>()).cast::<u32>();
            let grefs: Vec<u32> = (0..count).map(|i| refs.add(i).read()).collect();
            (h.index, grefs)
        };
        let len = count * XEN_PAGE_SIZE;
        // SAFETY: a fresh shared mapping of the device at the offset the kernel gave
        // for exactly these pages; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                index as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            let source = io::Error::last_os_error();
            self.dealloc_index(index, count);
            return Err(GntallocError::Mmap { count, source });
        }
        let Some(ptr) = NonNull::new(ptr.cast::<u8>()) else {
            self.dealloc_index(index, count);
            return Err(GntallocError::Mmap {
                count,
                source: io::Error::from(io::ErrorKind::AddrNotAvailable),
            });
        };
        Ok(GrantedPages {
            ptr,
            len,
            index,
            grefs,
            dev: self.clone(),
        })
    }

    fn dealloc_index(&self, index: u64, count: usize) {
        let mut arg = DeallocGref {
            index,
            count: count as u32,
            pad: 0,
        };
        // SAFETY: the struct the ioctl's size names, live for the call. A failure
        // leaves the pages to be released when the device is closed.
        unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_GNTALLOC_DEALLOC_GREF, &mut arg) };
    }
}

/// Pages of this domain granted to another one and mapped here; unmapped and their
/// grants released on drop (the kernel defers the release while the other domain
/// still maps them).
#[derive(Debug)]
pub struct GrantedPages {
    ptr: NonNull<u8>,
    len: usize,
    index: u64,
    grefs: Vec<u32>,
    dev: GntallocDevice,
}

// SAFETY: the mapping is plain memory (shared with another domain); it is only ever
// accessed through `SharedMem`, whose accesses are atomic.
unsafe impl Send for GrantedPages {}
// SAFETY: as for `Send`.
unsafe impl Sync for GrantedPages {}

impl GrantedPages {
    /// The pages as shared memory, for as long as they are borrowed.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `ptr..ptr+len` is our live MAP_SHARED mapping, unmapped only in
        // `drop`, which the borrow of `self` excludes; we never create references into
        // it. The other domain writing it is expected.
        unsafe { SharedMem::new(self.ptr, self.len) }
    }

    /// Page `n` as shared memory.
    pub fn page(&self, n: usize) -> Option<SharedMem<'_>> {
        self.mem()
            .slice(n.checked_mul(XEN_PAGE_SIZE)?, XEN_PAGE_SIZE)
            .ok()
    }

    /// The grant reference of each page, in order.
    pub fn grefs(&self) -> &[u32] {
        &self.grefs
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.grefs.len()
    }
}

impl Drop for GrantedPages {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; no `SharedMem` borrowing it outlives
        // `self` (they borrow `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        self.dev.dealloc_index(self.index, self.grefs.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_header() {
        // sizeof(struct ioctl_gntalloc_alloc_gref) = 24, of ..._dealloc_gref = 16.
        assert_eq!(ALLOC_GREF_SIZE, 24);
        assert_eq!(size_of::<DeallocGref>(), 16);
        // IOCTL_GNTALLOC_ALLOC_GREF = _IOC(_IOC_NONE, 'G', 5, 24)
        assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x0018_4705);
        // IOCTL_GNTALLOC_DEALLOC_GREF = _IOC(_IOC_NONE, 'G', 6, 16)
        assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x0010_4706);
    }

    #[test]
    fn missing_device_is_a_typed_error() {
        let e = GntallocDevice::open_path(Path::new("/nonexistent/gntalloc")).unwrap_err();
        assert!(matches!(e, GntallocError::Open { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/gntalloc"));
    }

    #[test]
    fn empty_allocation_is_refused_before_any_ioctl() {
        // /dev/null accepts the open; the count check comes before the ioctl.
        let dev = GntallocDevice::open_path(Path::new("/dev/null")).unwrap();
        assert!(matches!(dev.alloc(0, 0, true), Err(GntallocError::Empty)));
        // A real ioctl on a non-gntalloc file fails cleanly.
        assert!(matches!(
            dev.alloc(0, 1, true),
            Err(GntallocError::Alloc { .. })
        ));
    }
}
