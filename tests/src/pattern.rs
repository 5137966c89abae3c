//! Test data and host-side verification of disk images.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const SECTOR: u64 = 512;
/// Bytes written by one pattern write.
pub const PATTERN_LEN: usize = 1 << 20;

/// Deterministic pseudo-random bytes (xorshift64*), distinct per `seed`. Not random
/// quality: only needs to make misplaced or stale sectors detectable.
pub fn pattern(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in seed.bytes() {
        x = (x ^ b as u64).wrapping_mul(0x100_0000_01B3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sectors where [`crate::Workload::Pattern`] writes, for a disk of `size_mib`:
/// the first sector, an odd sector in the middle (not 4 KiB aligned), and one that
/// ends one sector before the end of the disk.
pub fn pattern_sectors(size_mib: u64) -> [u64; 3] {
    let total = size_mib * (1 << 20) / SECTOR;
    let len = PATTERN_LEN as u64 / SECTOR;
    [0, total / 2 + 7, total - len - 1]
}

/// Checks that `image` holds `data` at each sector of `sectors`, and that the sector
/// just before and just after each copy is still zero (the image starts all zero).
pub fn verify_pattern(image: &Path, data: &[u8], sectors: &[u64]) -> Result<()> {
    let mut f = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let size = f.metadata()?.len();
    let mut buf = vec![0u8; data.len()];
    for &s in sectors {
        f.seek(SeekFrom::Start(s * SECTOR))?;
        f.read_exact(&mut buf)?;
        if buf != data {
            let first = buf.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
            bail!(
                "{}: bytes at sector {s} differ from the pattern (first difference at byte {first} of the write)",
                image.display()
            );
        }
        let after = s * SECTOR + data.len() as u64;
        let mut guards = vec![after];
        if s > 0 {
            guards.push((s - 1) * SECTOR);
        }
        for g in guards {
            if g + SECTOR > size {
                continue;
            }
            let mut sec = [0u8; SECTOR as usize];
            f.seek(SeekFrom::Start(g))?;
            f.read_exact(&mut sec)?;
            if sec.iter().any(|&b| b != 0) {
                bail!(
                    "{}: sector at byte {g}, next to the pattern at sector {s}, was written",
                    image.display()
                );
            }
        }
    }
    Ok(())
}

/// Checks that `count` sectors at `sector` of `image` are a hole: no data allocated in
/// the file there (`SEEK_DATA` from the start of the range lands at or past its end)
/// and every byte reads as zero. What a discard that reached the image leaves behind.
pub fn verify_hole(image: &Path, sector: u64, count: u64) -> Result<()> {
    use rustix::fs::{seek, SeekFrom as RxSeek};
    let f = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let (start, end) = (sector * SECTOR, (sector + count) * SECTOR);
    // ENXIO: no data at or after `start` at all.
    match seek(&f, RxSeek::Data(start)) {
        Ok(next) if next < end => bail!(
            "{}: bytes {next}..{end} of the discarded range {start}..{end} are still allocated (the discard did not punch a hole)",
            image.display()
        ),
        Ok(_) | Err(rustix::io::Errno::NXIO) => {}
        Err(e) => bail!("{}: SEEK_DATA: {e}", image.display()),
    }
    let mut buf = vec![0u8; (end - start) as usize];
    let mut f = f;
    f.seek(SeekFrom::Start(start))?;
    f.read_exact(&mut buf)?;
    if let Some(i) = buf.iter().position(|&b| b != 0) {
        bail!(
            "{}: byte {} of the discarded range is not zero",
            image.display(),
            start + i as u64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image_with(writes: &[(u64, &[u8])], size: u64) -> tempfile_path::TempImage {
        let t = tempfile_path::TempImage::new(size);
        let mut f = std::fs::OpenOptions::new().write(true).open(&t.0).unwrap();
        for (off, d) in writes {
            f.seek(SeekFrom::Start(*off)).unwrap();
            f.write_all(d).unwrap();
        }
        t
    }

    mod tempfile_path {
        pub struct TempImage(pub std::path::PathBuf);
        impl TempImage {
            pub fn new(size: u64) -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir()
                    .join(format!("sluice-pattern-{}-{n}.img", std::process::id()));
                let f = std::fs::File::create(&p).unwrap();
                f.set_len(size).unwrap();
                TempImage(p)
            }
        }
        impl Drop for TempImage {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn pattern_is_deterministic_and_seeded() {
        assert_eq!(pattern("a", 4096), pattern("a", 4096));
        assert_ne!(pattern("a", 4096), pattern("b", 4096));
    }

    #[test]
    fn verify_accepts_exact_writes_and_rejects_errors() {
        let data = pattern("t", 8192);
        let size = 64 * 1024;
        let secs = [0u64, 33];
        let good = image_with(&[(0, &data), (33 * 512, &data)], size);
        verify_pattern(&good.0, &data, &secs).unwrap();

        let mut flipped = data.clone();
        flipped[4000] ^= 1;
        let bad = image_with(&[(0, &data), (33 * 512, &flipped)], size);
        assert!(verify_pattern(&bad.0, &data, &secs).is_err());

        let missing = image_with(&[(0, &data)], size);
        assert!(verify_pattern(&missing.0, &data, &secs).is_err());

        // Written one sector too far: the guard before it and the content both differ.
        let shifted = image_with(&[(0, &data), (34 * 512, &data)], size);
        assert!(verify_pattern(&shifted.0, &data, &secs).is_err());

        // A stray write next to a correct copy.
        let stray = image_with(&[(0, &data), (33 * 512, &data), (32 * 512, b"x")], size);
        assert!(verify_pattern(&stray.0, &data, &secs).is_err());
    }

    #[test]
    fn hole_check_sees_allocated_and_nonzero_ranges() {
        let size = 4 << 20;
        // Sparse everywhere except 4 KiB at 1 MiB.
        let img = image_with(&[(1 << 20, &[7u8; 4096])], size);
        verify_hole(&img.0, 0, 2048).unwrap();
        verify_hole(&img.0, 2048 + 8, 2048).unwrap();
        let err = verify_hole(&img.0, 1024, 2048).unwrap_err();
        assert!(format!("{err}").contains("still allocated"), "{err}");
        // Allocated zeroes are not a hole either.
        let zeros = image_with(&[(0, &[0u8; 8192])], size);
        assert!(verify_hole(&zeros.0, 0, 16).is_err());
    }

    #[test]
    fn sectors_fit_the_disk() {
        let s = pattern_sectors(64);
        let total = 64 * 2048;
        assert!(s[2] + (PATTERN_LEN as u64 / SECTOR) < total);
        assert_ne!(s[1] % 8, 0);
    }
}
