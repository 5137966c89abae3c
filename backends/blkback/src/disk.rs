//! The backing store: a raw image file or a block device. Addresses are in 512-byte
//! protocol sectors whatever the device's own sector size (blkif's rule, as Linux does).

use rustix::fs::FallocateFlags;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
    /// The image is empty or not a multiple of its sector size.
    #[error("{path}: size {bytes} is not a positive multiple of its {sector_size}-byte sectors")]
    BadSize {
        /// The path.
        path: String,
        /// Its size.
        bytes: u64,
        /// Its logical sector size.
        sector_size: u32,
    },
    /// A block device reports a sector size blkif cannot carry.
    #[error("{path}: logical sector size {logical}, physical {physical} (need powers of two from 512 to 4096, physical >= logical)")]
    BadSectorSize {
        /// The path.
        path: String,
        /// Logical sector size.
        logical: u32,
        /// Physical sector size.
        physical: u32,
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
    sector_size: u32,
    physical_sector_size: u32,
    direct: bool,
}

impl Disk {
    /// Opens `path` read-write, or read-only when `readonly`, with `O_DIRECT` where the
    /// file system or device takes it (buffered otherwise: [`Disk::direct`] says which).
    /// With `O_DIRECT` every read and write needs a buffer aligned to the logical sector
    /// size (an [`sluice_xen_sys::IoBuf`] is) and sector-aligned offsets and lengths
    /// (the request checks guarantee them).
    pub fn open(path: &Path, readonly: bool) -> Result<Self, DiskError> {
        Self::open_with(path, readonly, true)
    }

    /// As [`Disk::open`]; `direct` = false: buffered I/O through the page cache.
    pub fn open_with(path: &Path, readonly: bool, direct: bool) -> Result<Self, DiskError> {
        if direct {
            match Self::open_inner(path, readonly, true) {
                Ok(d) => match d.probe_direct() {
                    Ok(()) => return Ok(d),
                    Err(e) => {
                        tracing::info!("{}: O_DIRECT refused ({e}); buffered I/O", path.display())
                    }
                },
                Err(DiskError::Open { source, .. })
                    if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                {
                    tracing::info!(
                        "{}: O_DIRECT refused ({source}); buffered I/O",
                        path.display()
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Self::open_inner(path, readonly, false)
    }

    /// Reads the first logical sector the way requests will (an aligned buffer): some
    /// file systems accept `O_DIRECT` at open and refuse the I/O.
    fn probe_direct(&self) -> io::Result<()> {
        let mut buf = sluice_xen_sys::IoBuf::new(self.sector_size as usize);
        self.file.read_exact_at(&mut buf, 0)
    }

    fn open_inner(path: &Path, readonly: bool, direct: bool) -> Result<Self, DiskError> {
        let name = path.display().to_string();
        let mut opts = OpenOptions::new();
        opts.read(true).write(!readonly);
        if direct {
            opts.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        let mut file = opts.open(path).map_err(|source| DiskError::Open {
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
        // A block device has its own sector sizes (BLKSSZGET, BLKPBSZGET); an image
        // file is addressed in 512-byte sectors.
        let is_block = file
            .metadata()
            .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
            .unwrap_or(false);
        let (logical, physical) = if is_block {
            let get = |r: rustix::io::Result<u32>| {
                r.map_err(|e| DiskError::Open {
                    path: name.clone(),
                    source: e.into(),
                })
            };
            (
                get(rustix::fs::ioctl_blksszget(&file))?,
                get(rustix::fs::ioctl_blkpbszget(&file))?,
            )
        } else {
            (SECTOR as u32, SECTOR as u32)
        };
        let good = |s: u32| s.is_power_of_two() && (512..=4096).contains(&s);
        if !good(logical) || !good(physical) || physical < logical {
            return Err(DiskError::BadSectorSize {
                path: name,
                logical,
                physical,
            });
        }
        if bytes == 0 || bytes % u64::from(logical) != 0 {
            return Err(DiskError::BadSize {
                path: name,
                bytes,
                sector_size: logical,
            });
        }
        Ok(Self {
            file: Arc::new(file),
            sectors: bytes / SECTOR,
            readonly,
            sector_size: logical,
            physical_sector_size: physical,
            direct,
        })
    }

    /// Whether I/O bypasses the page cache (`O_DIRECT`).
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// The device's logical sector size in bytes (`sector-size`): requests must start
    /// and end on its boundaries.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// The device's physical sector size in bytes (`physical-sector-size`).
    pub fn physical_sector_size(&self) -> u32 {
        self.physical_sector_size
    }

    /// Whether `count` 512-byte sectors from `sector` start and end on logical sector
    /// boundaries.
    pub fn aligned(&self, sector: u64, count: u64) -> bool {
        let per = u64::from(self.sector_size) / SECTOR;
        (sector | count).is_multiple_of(per)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: u64) -> (std::path::PathBuf, Disk) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sluice-disk-{}-{n}.img", std::process::id()));
        File::create(&p).unwrap().set_len(bytes).unwrap();
        let d = Disk::open(&p, false).unwrap();
        (p, d)
    }

    #[test]
    fn files_have_512_byte_sectors_and_sizes_are_checked() {
        let (p, d) = image(1 << 20);
        assert_eq!((d.sector_size(), d.physical_sector_size()), (512, 512));
        assert_eq!(d.sectors(), 2048);
        assert!(d.aligned(7, 3));
        assert!(d.contains(2040, 8) && !d.contains(2041, 8) && !d.contains(u64::MAX, 2));
        std::fs::remove_file(&p).unwrap();
        let (p, _) = image(4096);
        File::create(&p).unwrap().set_len(1000).unwrap();
        assert!(matches!(
            Disk::open(&p, false),
            Err(DiskError::BadSize { bytes: 1000, .. })
        ));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn four_k_sectors_need_aligned_requests() {
        let (p, mut d) = image(1 << 20);
        std::fs::remove_file(&p).unwrap();
        d.sector_size = 4096;
        assert!(d.aligned(0, 8) && d.aligned(16, 64));
        assert!(!d.aligned(1, 8) && !d.aligned(8, 7) && !d.aligned(4, 4));
    }
}
