//! Sluice's Xen console backend (replaces xenconsoled): each guest's console page to a
//! pty (`console/tty`, for `xl console`) and a log file.

#![deny(unsafe_code)]

pub mod buffer;
pub mod daemon;
pub mod log;
pub mod pty;
pub mod pump;
pub mod ring;

pub use daemon::ConsoleBackend;
