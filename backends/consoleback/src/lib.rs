//! Sluice's Xen console backend (replaces xenconsoled): each guest's console page to a
//! pty (`console/tty`, for `xl console`) and a log file; secondary consoles
//! (`device/console/<n>`, n >= 1) the same way ([`secondary`]).

#![deny(unsafe_code)]

pub mod buffer;
pub mod daemon;
pub mod log;
pub mod pty;
pub mod pump;
pub mod ring;
pub mod secondary;

pub use daemon::ConsoleBackend;
