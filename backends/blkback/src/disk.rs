//! The backing store: a raw image file or a block device, in 512-byte sectors.

use rustix::fs::FallocateFlags;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Bytes per protocol sector.
pub const SECTOR: u64 = 512;

/// Failures of the backing store.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Opening the image failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The path from `params`.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The image is empty or not a multiple of 512 bytes.
    #[error("{path}: size {bytes} is not a positive multiple of 512")]
    BadSize {
        /// The path.
        path: String,
        /// Its size.
        bytes: u64,
    },
    /// A read, write, flush or discard failed.
    #[error("{op} at sector {sector}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// Its first sector.
        sector: u64,
        /// The OS error.
        source: io::Error,
    },
}

/// An open image.
#[derive(Debug)]
pub struct Disk {
    file: Arc<File>,
    sectors: u64,
    readonly: bool,
}

impl Disk {
    /// Opens `path` read-write, or read-only when `readonly`.
    pub fn open(path: &Path, readonly: bool) -> Result<Self, DiskError> {
        let name = path.display().to_string();
        let mut file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: name.clone(),
                source,
            })?;
        // SEEK_END gives the size of block devices as well as files.
        let bytes = file
            .seek(SeekFrom::End(0))
            .map_err(|source| DiskError::Open {
                path: name.clone(),
                source,
            })?;
        if bytes == 0 || bytes % SECTOR != 0 {
            return Err(DiskError::BadSize { path: name, bytes });
        }
        Ok(Self {
            file: Arc::new(file),
            sectors: bytes / SECTOR,
            readonly,
        })
    }

    /// The open file (for asynchronous I/O).
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether writes are refused.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether `count` sectors from `sector` lie inside the image.
    pub fn contains(&self, sector: u64, count: u64) -> bool {
        sector
            .checked_add(count)
            .is_some_and(|end| end <= self.sectors)
    }

    /// Reads `buf.len()` bytes at `sector` (caller checked the range).
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.file
            .read_exact_at(buf, sector * SECTOR)
            .map_err(|source| DiskError::Io {
                op: "read",
                sector,
                source,
            })
    }

    /// Writes `buf` at `sector` (caller checked the range and read-only).
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.file
            .write_all_at(buf, sector * SECTOR)
            .map_err(|source| DiskError::Io {
                op: "write",
                sector,
                source,
            })
    }

    /// Makes written data durable.
    pub fn flush(&self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|source| DiskError::Io {
            op: "flush",
            sector: 0,
            source,
        })
    }

    /// Discards `count` sectors at `sector`: punches a hole (reads return zeroes).
    pub fn discard(&self, sector: u64, count: u64) -> Result<(), DiskError> {
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            sector * SECTOR,
            count * SECTOR,
        )
        .map_err(|e| DiskError::Io {
            op: "discard",
            sector,
            source: e.into(),
        })
    }
}
