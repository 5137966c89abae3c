//! `/dev/xen/gntdev`: map another domain's grant references into this process, and
//! copy between local memory and granted pages without mapping them (grant copy).

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
pub const GNTDEV_DEVICE: &str = "/dev/xen/gntdev";

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GntdevGrantRef {
    domid: u32,
    gref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref` without its trailing `refs` array.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapGrantRefHeader {
    count: u32,
    pad: u32,
    index: u64,
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
struct UnmapGrantRef {
    index: u64,
    count: u32,
    pad: u32,
}

/// `struct ioctl_gntdev_grant_copy_segment`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawCopySegment {
    /// `void *virt` or `{u32 ref; u16 offset; u16 domid}`.
    source: u64,
    dest: u64,
    len: u16,
    flags: u16,
    status: i16,
    _pad: u16,
}

/// `struct ioctl_gntdev_grant_copy`.
#[repr(C)]
struct GrantCopy {
    count: u32,
    pad: u32,
    segments: *mut RawCopySegment,
}

const IOCTL_GNTDEV_MAP_GRANT_REF: libc::c_ulong = ioc_none(
    b'G',
    0,
    size_of::<MapGrantRefHeader>() + size_of::<GntdevGrantRef>(),
);
const IOCTL_GNTDEV_UNMAP_GRANT_REF: libc::c_ulong = ioc_none(b'G', 1, size_of::<UnmapGrantRef>());
const IOCTL_GNTDEV_SET_MAX_GRANTS: libc::c_ulong = ioc_none(b'G', 3, 4);
const IOCTL_GNTDEV_GRANT_COPY: libc::c_ulong = ioc_none(b'G', 8, size_of::<GrantCopy>());

/// `GNTCOPY_source_gref`, `GNTCOPY_dest_gref`.
const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// Failures of grant operations.
#[derive(Debug, thiserror::Error)]
pub enum GntdevError {
    /// Opening the device failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// `IOCTL_GNTDEV_MAP_GRANT_REF` failed (bad count, too many grants mapped).
    #[error("reserving {count} grant(s) of domain {domid}: {source}")]
    Map {
        /// The granting domain.
        domid: u16,
        /// How many.
        count: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The `mmap` failed: typically a bad or revoked grant reference.
    #[error("mapping grant(s) {refs:?} of domain {domid}: {source}")]
    Mmap {
        /// The granting domain.
        domid: u16,
        /// The references.
        refs: Vec<u32>,
        /// The OS error.
        source: io::Error,
    },
    /// A mapping of no pages was asked for.
    #[error("a grant mapping needs at least one reference")]
    Empty,
    /// A copy segment does not fit in one page.
    #[error("copy segment {index}: offset {offset} + length {len} crosses the page")]
    SegmentOutOfPage {
        /// Its index.
        index: usize,
        /// Offset in the granted page.
        offset: u16,
        /// Length.
        len: usize,
    },
    /// Another ioctl failed.
    #[error("{op}: {source}")]
    Ioctl {
        /// Which operation.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Local side of one grant-copy segment.
#[derive(Debug)]
pub enum CopyPtr<'a> {
    /// Copy these bytes into the granted page.
    ToGuest(&'a [u8]),
    /// Copy from the granted page into these bytes.
    FromGuest(&'a mut [u8]),
}

impl CopyPtr<'_> {
    /// Bytes to copy.
    pub fn len(&self) -> usize {
        match self {
            CopyPtr::ToGuest(b) => b.len(),
            CopyPtr::FromGuest(b) => b.len(),
        }
    }

    /// Whether nothing is copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One grant-copy segment: local bytes and a range of a granted page. `status` is
/// Xen's `GNTST_*` result after the copy (0: ok).
#[derive(Debug)]
pub struct CopySegment<'a> {
    /// The local buffer and direction.
    pub local: CopyPtr<'a>,
    /// The granting domain.
    pub domid: u16,
    /// Its grant reference.
    pub gref: u32,
    /// Byte offset in the granted page.
    pub offset: u16,
    /// `GNTST_*` of this segment after [`GntdevDevice::grant_copy`].
    pub status: i16,
}

/// One open of `/dev/xen/gntdev`.
#[derive(Debug, Clone)]
pub struct GntdevDevice {
    file: Arc<File>,
}

impl GntdevDevice {
    /// Opens [`GNTDEV_DEVICE`].
    pub fn open() -> Result<Self, GntdevError> {
        Self::open_path(Path::new(GNTDEV_DEVICE))
    }

    /// Opens the device at `path`.
    pub fn open_path(path: &Path) -> Result<Self, GntdevError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| GntdevError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            file: Arc::new(file),
        })
    }

    /// Limits how many grants this open may map (older kernels; newer ones ignore it).
    pub fn set_max_grants(&self, count: u32) -> Result<(), GntdevError> {
        let mut arg = count;
        // SAFETY: IOCTL_GNTDEV_SET_MAX_GRANTS takes a 4-byte struct; `arg` is live.
        let r =
            unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_GNTDEV_SET_MAX_GRANTS, &mut arg) };
        if r < 0 {
            return Err(GntdevError::Ioctl {
                op: "set max grants",
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Maps `refs` of domain `domid` as consecutive pages (read-only unless
    /// `writable`). A bad reference fails here, at `mmap`, with [`GntdevError::Mmap`].
    pub fn map(
        &self,
        domid: u16,
        refs: &[u32],
        writable: bool,
    ) -> Result<GrantMapping, GntdevError> {
        if refs.is_empty() {
            return Err(GntdevError::Empty);
        }
        // The ioctl struct is a header followed by `count` refs; build it in u64 words
        // so that it is 8-aligned.
        let words =
            (size_of::<MapGrantRefHeader>() + refs.len() * size_of::<GntdevGrantRef>()).div_ceil(8);
        let mut buf = vec![0u64; words];
        let header = MapGrantRefHeader {
            count: refs.len() as u32,
            ..Default::default()
        };
        let base = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: `buf` holds `words * 8` bytes, enough for the header and every ref
        // (computed above); it is 8-aligned, which both structs need; the writes are
        // to disjoint, in-bounds offsets.
        unsafe {
            base.cast::<MapGrantRefHeader>().write(header);
            let refs_at = base
                .add(size_of::<MapGrantRefHeader>())
                .cast::<GntdevGrantRef>();
            for (i, &r) in refs.iter().enumerate() {
                refs_at.add(i).write(GntdevGrantRef {
                    domid: domid.into(),
                    gref: r,
                });
            }
        }
        // SAFETY: the kernel reads the header and `count` refs from `base` and writes
        // the header's `index`; all of it lies in `buf`, which is live and exclusive.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, base) };
        if r < 0 {
            return Err(GntdevError::Map {
                domid,
                count: refs.len(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: reads back the header the kernel filled in, in bounds and aligned.
        let index = unsafe { base.cast::<MapGrantRefHeader>().read() }.index;
        let len = refs.len() * XEN_PAGE_SIZE;
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping of the device at the offset the kernel gave
        // for exactly these pages; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                index as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            let source = io::Error::last_os_error();
            self.unmap_index(index, refs.len());
            return Err(GntdevError::Mmap {
                domid,
                refs: refs.to_vec(),
                source,
            });
        }
        Ok(GrantMapping {
            ptr: NonNull::new(ptr.cast()).ok_or(GntdevError::Empty)?,
            len,
            index,
            pages: refs.len(),
            dev: self.clone(),
        })
    }

    fn unmap_index(&self, index: u64, count: usize) {
        let mut arg = UnmapGrantRef {
            index,
            count: count as u32,
            pad: 0,
        };
        // SAFETY: the struct the ioctl's size names, live for the call. A failure
        // leaves the reservation to be released when the device is closed.
        unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IOCTL_GNTDEV_UNMAP_GRANT_REF,
                &mut arg,
            )
        };
    }

    /// Copies each segment between local memory and a granted page (one hypercall
    /// batch). Per-segment results land in `status` (`GNTST_okay` = 0); the call
    /// fails only when the batch could not be issued.
    pub fn grant_copy(&self, segs: &mut [CopySegment<'_>]) -> Result<(), GntdevError> {
        let mut raw = Vec::with_capacity(segs.len());
        for (index, s) in segs.iter_mut().enumerate() {
            let len = s.local.len();
            if s.offset as usize + len > XEN_PAGE_SIZE {
                return Err(GntdevError::SegmentOutOfPage {
                    index,
                    offset: s.offset,
                    len,
                });
            }
            let foreign = u64::from(s.gref) | u64::from(s.offset) << 32 | u64::from(s.domid) << 48;
            let (source, dest, flags) = match &mut s.local {
                CopyPtr::ToGuest(b) => (b.as_ptr() as u64, foreign, GNTCOPY_DEST_GREF),
                CopyPtr::FromGuest(b) => (foreign, b.as_mut_ptr() as u64, GNTCOPY_SOURCE_GREF),
            };
            raw.push(RawCopySegment {
                source,
                dest,
                len: len as u16,
                flags,
                status: 0,
                _pad: 0,
            });
        }
        let mut arg = GrantCopy {
            count: raw.len() as u32,
            pad: 0,
            segments: raw.as_mut_ptr(),
        };
        // SAFETY: `arg` points at `count` live segments. Each local pointer comes from
        // a borrow in `segs` (held for this call): `ToGuest` bytes are only read,
        // `FromGuest` bytes are exclusively borrowed and written within their length.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_GNTDEV_GRANT_COPY, &mut arg) };
        if r < 0 {
            return Err(GntdevError::Ioctl {
                op: "grant copy",
                source: io::Error::last_os_error(),
            });
        }
        for (s, r) in segs.iter_mut().zip(&raw) {
            s.status = r.status;
        }
        Ok(())
    }
}

/// Granted pages mapped into this process; unmapped on drop.
#[derive(Debug)]
pub struct GrantMapping {
    ptr: NonNull<u8>,
    len: usize,
    index: u64,
    pages: usize,
    dev: GntdevDevice,
}

// SAFETY: the mapping is plain memory (shared with another domain); it is only ever
// accessed through `SharedMem`, whose accesses are atomic.
unsafe impl Send for GrantMapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for GrantMapping {}

impl GrantMapping {
    /// The mapped pages as shared memory, for as long as the mapping is borrowed.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `ptr..ptr+len` is our live MAP_SHARED mapping, unmapped only in
        // `drop`, which the borrow of `self` excludes; we never create references into
        // it. The other domain writing it is expected.
        unsafe { SharedMem::new(self.ptr, self.len) }
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }
}

impl Drop for GrantMapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; no `SharedMem` borrowing it outlives
        // `self` (they borrow `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        self.dev.unmap_index(self.index, self.pages);
    }
}
