//! Helpers the console backend's host tests share.

use std::io::Read;
use std::time::{Duration, Instant};

/// Reads the pty until `want` arrived (a 10 s hang guard, not a timing assertion).
pub fn read_until(tty: &mut std::fs::File, want: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = vec![];
    let mut b = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        assert!(
            Instant::now() < deadline,
            "pty gave {:?}",
            String::from_utf8_lossy(&got)
        );
        match tty.read(&mut b) {
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// Opens a pty's slave side, non-blocking.
pub fn open_tty(path: &str) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(
            rustix::fs::OFlags::NONBLOCK.bits() as i32 | rustix::fs::OFlags::NOCTTY.bits() as i32,
        )
        .open(path)
        .unwrap()
}

/// Waits until `f` holds (a 10 s hang guard).
#[allow(dead_code)]
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
