//! A pseudo-terminal per guest console, in raw mode, non-blocking on our side.

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

/// Our end of a pty, and the path `xl console` opens.
#[derive(Debug)]
pub struct Pty {
    /// The master side (non-blocking).
    pub master: File,
    /// The slave side, kept open so that the master never reads EIO while no client
    /// is attached.
    _slave: OwnedFd,
    /// `/dev/pts/N`.
    pub path: String,
}

impl Pty {
    /// Opens a new pty, puts it in raw mode, makes the master non-blocking.
    pub fn open() -> io::Result<Self> {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let name = rustix::pty::ptsname(&master, Vec::new())?;
        let path = name.to_string_lossy().into_owned();
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut t = rustix::termios::tcgetattr(&slave)?;
        t.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t)?;
        let fl = rustix::fs::fcntl_getfl(&master)?;
        rustix::fs::fcntl_setfl(&master, fl | OFlags::NONBLOCK)?;
        Ok(Self {
            master: File::from(master),
            _slave: slave,
            path,
        })
    }
}
