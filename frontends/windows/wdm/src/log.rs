//! `DbgPrintEx` logging: `log!` formats into a 256-byte stack buffer (cut short, never
//! allocating, so it works at any IRQL up to DIRTY_LEVEL's rules for DbgPrintEx).

use crate::sys;
use core::fmt::{self, Write};

/// A fixed buffer `fmt::Write` fills, dropping what does not fit.
pub struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    /// An empty line.
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            // Keep the last byte for the NUL; drop NULs inside the text.
            if self.len + 1 < self.buf.len() && b != 0 {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Prints one line to the kernel debugger (`DPFLTR_IHVDRIVER_ID`, error level so it
/// shows without a debug filter).
pub fn print(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    let end = line.len.min(line.buf.len() - 1);
    line.buf[end] = 0;
    // SAFETY: both strings are NUL-terminated and live across the call; "%s" takes the
    // one argument we pass.
    unsafe {
        sys::DbgPrintEx(
            sys::DPFLTR_IHVDRIVER_ID,
            sys::DPFLTR_ERROR_LEVEL,
            c"%s".as_ptr(),
            line.buf.as_ptr(),
        );
    }
}

/// `log!("fmt", args..)`: one line to the kernel debugger.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::print(format_args!($($arg)*)) };
}
