//! A small file mapped `MAP_SHARED` (on tmpfs: `/run`), as [`SharedMem`]: state a daemon
//! keeps across its own crash (stores land in the page cache, which outlives the
//! process), without a system call per update.

use sluice_abi::shared::SharedMem;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

/// A file of a fixed length, mapped read-write and shared; unmapped on drop (the file
/// stays).
#[derive(Debug)]
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
    _file: File,
}

// SAFETY: the mapping is plain memory only ever accessed through `SharedMem`, whose
// accesses are atomic.
unsafe impl Send for MappedFile {}
// SAFETY: as for `Send`.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Creates (or truncates) `path` (mode 0600) to `len` zero bytes and maps it.
    pub fn create(path: &Path, len: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_len(len as u64)?;
        Self::map(file, len)
    }

    /// Maps an existing `path`, which must be exactly `len` bytes long.
    pub fn open(path: &Path, len: usize) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let actual = file.metadata()?.len();
        if actual != len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is {actual} bytes, expected {len}", path.display()),
            ));
        }
        Self::map(file, len)
    }

    fn map(file: File, len: usize) -> io::Result<Self> {
        if len == 0 || len > isize::MAX as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad length"));
        }
        // SAFETY: a fresh shared read-write mapping of our open file; the kernel picks
        // the address, so nothing of ours is overlapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            ptr,
            len,
            _file: file,
        })
    }

    /// The mapping, for as long as it is borrowed.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `ptr..ptr+len` (len <= isize::MAX, checked in `map`) is our live
        // MAP_SHARED mapping, unmapped only in `drop`, which the borrow of `self`
        // excludes; we never create references into it. Other processes writing the
        // file are harmless to `SharedMem`.
        unsafe { SharedMem::new(self.ptr, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; no `SharedMem` borrowing it outlives
        // `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_outlive_the_mapping() {
        let p = std::env::temp_dir().join(format!("sluice-mapped-{}", std::process::id()));
        {
            let m = MappedFile::create(&p, 8192).unwrap();
            m.mem().store_u32_release(4096, 0xfeed).unwrap();
        }
        assert!(MappedFile::open(&p, 4096).is_err(), "length checked");
        let m = MappedFile::open(&p, 8192).unwrap();
        assert_eq!(m.mem().load_u32_acquire(4096).unwrap(), 0xfeed);
        assert_eq!(m.mem().load_u32_acquire(0).unwrap(), 0);
        std::fs::remove_file(&p).unwrap();
    }
}
