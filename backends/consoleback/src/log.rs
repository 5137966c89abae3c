//! A guest's console log file, capped: when the next write would take it past the cap,
//! the file is renamed to `<name>.1` (replacing the one before) and a new one started,
//! so a guest that writes forever costs at most twice the cap on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Default cap of one log file (`--log-max-bytes`): 4 MiB, so at most 8 MiB per guest.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 4 << 20;
/// The smallest cap taken (two console rings' worth).
pub const MIN_LOG_MAX_BYTES: u64 = 4096;

/// An append-only log file that rotates at a size cap.
#[derive(Debug)]
pub struct CappedLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    len: u64,
    /// 0: no cap.
    cap: u64,
    rotations: u64,
}

impl CappedLog {
    /// Opens (appends to) `path`; `cap` 0 means no cap, anything else is at least
    /// [`MIN_LOG_MAX_BYTES`].
    pub fn open(path: PathBuf, cap: u64) -> io::Result<Self> {
        let file = Self::append(&path)?;
        let len = file.metadata()?.len();
        let cap = if cap == 0 {
            0
        } else {
            cap.max(MIN_LOG_MAX_BYTES)
        };
        let mut log = Self {
            path,
            file,
            len,
            cap,
            rotations: 0,
        };
        if log.cap > 0 && log.len > log.cap {
            log.rotate()?;
        }
        Ok(log)
    }

    fn append(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// Appends `data`, rotating first if it would not fit under the cap (data longer
    /// than the cap keeps only its last `cap` bytes).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let data = if self.cap > 0 && data.len() as u64 > self.cap {
            &data[data.len() - self.cap as usize..]
        } else {
            data
        };
        if self.cap > 0 && self.len + data.len() as u64 > self.cap {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, old)?;
        self.file = Self::append(&self.path)?;
        self.len = 0;
        self.rotations += 1;
        Ok(())
    }

    /// Times the file was rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest-1.log");
        let mut log = CappedLog::open(path.clone(), 10_000).unwrap();
        for i in 0..100u32 {
            log.write(format!("line {i:05}\n").repeat(100).as_bytes())
                .unwrap();
        }
        // 100 writes of 1100 bytes: 9 per file.
        assert_eq!(log.rotations(), 11);
        let now = std::fs::read(&path).unwrap();
        let old = std::fs::read(dir.path().join("guest-1.log.1")).unwrap();
        assert_eq!(now.len(), 1100);
        assert_eq!(old.len(), 9900);
        assert!(now.ends_with(b"line 00099\n"));
        assert!(old.ends_with(b"line 00098\n"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // Reopened: continues the file, still capped.
        drop(log);
        let mut log = CappedLog::open(path.clone(), 10_000).unwrap();
        log.write(&[b'z'; 9000]).unwrap();
        assert_eq!(log.rotations(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 9000);
        // A cap below the minimum is raised; 0 is no cap.
        let mut small = CappedLog::open(dir.path().join("s.log"), 1).unwrap();
        small.write(&[b'a'; 5000]).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("s.log")).unwrap().len(),
            4096
        );
        let mut free = CappedLog::open(dir.path().join("f.log"), 0).unwrap();
        free.write(&[b'a'; 50_000]).unwrap();
        assert_eq!(free.rotations(), 0);
    }
}
