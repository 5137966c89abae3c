//! `/dev/xen/evtchn`: bind, notify, unmask and read pending event-channel ports.
//!
//! Every open of the device is its own set of bindings; closing it unbinds them all.

use crate::ioc::ioc_none;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// Default device node.
pub const EVTCHN_DEVICE: &str = "/dev/xen/evtchn";

const IOCTL_EVTCHN_BIND_VIRQ: libc::c_ulong = ioc_none(b'E', 0, 4);
const IOCTL_EVTCHN_BIND_INTERDOMAIN: libc::c_ulong = ioc_none(b'E', 1, 8);
const IOCTL_EVTCHN_BIND_UNBOUND_PORT: libc::c_ulong = ioc_none(b'E', 2, 4);
const IOCTL_EVTCHN_UNBIND: libc::c_ulong = ioc_none(b'E', 3, 4);
const IOCTL_EVTCHN_NOTIFY: libc::c_ulong = ioc_none(b'E', 4, 4);
const IOCTL_EVTCHN_RESET: libc::c_ulong = ioc_none(b'E', 5, 0);
const IOCTL_EVTCHN_RESTRICT_DOMID: libc::c_ulong = ioc_none(b'E', 6, 2);

/// Failures of event-channel operations.
#[derive(Debug, thiserror::Error)]
pub enum EvtchnError {
    /// Opening the device failed (not in a Xen domain, or `xen-evtchn` not loaded).
    #[error("opening {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// An ioctl failed.
    #[error("{op}: {source}")]
    Ioctl {
        /// Which operation.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Reading pending ports or writing an unmask failed.
    #[error("{op}: {source}")]
    Io {
        /// Which operation.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// One open of `/dev/xen/evtchn` (non-blocking; poll it or use [`EvtchnDevice::wait`]).
#[derive(Debug)]
pub struct EvtchnDevice {
    file: File,
}

impl EvtchnDevice {
    /// Opens [`EVTCHN_DEVICE`].
    pub fn open() -> Result<Self, EvtchnError> {
        Self::open_path(Path::new(EVTCHN_DEVICE))
    }

    /// Opens the device at `path`.
    pub fn open_path(path: &Path) -> Result<Self, EvtchnError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| EvtchnError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { file })
    }

    /// Issues an ioctl whose argument is `arg` (a `repr(C)` struct of the right size);
    /// returns the ioctl's non-negative result.
    fn ioctl<T>(
        &self,
        op: &'static str,
        request: libc::c_ulong,
        arg: &mut T,
    ) -> Result<u32, EvtchnError> {
        // SAFETY: `request` is one of the evtchn ioctls above, whose size field is
        // `size_of::<T>()` for the `T` each caller passes; the kernel reads (and for
        // none of them writes more than) that many bytes at `arg`, which is a live,
        // exclusive borrow for the duration of the call.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), request, arg as *mut T) };
        if r < 0 {
            return Err(EvtchnError::Ioctl {
                op,
                source: io::Error::last_os_error(),
            });
        }
        Ok(r as u32)
    }

    /// Binds a local port to `remote_port` of domain `domid`; returns the local port.
    pub fn bind_interdomain(&self, domid: u16, remote_port: u32) -> Result<u32, EvtchnError> {
        let mut arg: [u32; 2] = [domid.into(), remote_port];
        self.ioctl("bind interdomain", IOCTL_EVTCHN_BIND_INTERDOMAIN, &mut arg)
    }

    /// Allocates a port that domain `domid` may bind to; returns it.
    pub fn bind_unbound_port(&self, domid: u16) -> Result<u32, EvtchnError> {
        let mut arg: u32 = domid.into();
        self.ioctl(
            "bind unbound port",
            IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            &mut arg,
        )
    }

    /// Binds a virtual IRQ (e.g. `VIRQ_DOM_EXC`); returns the local port.
    pub fn bind_virq(&self, virq: u32) -> Result<u32, EvtchnError> {
        let mut arg = virq;
        self.ioctl("bind virq", IOCTL_EVTCHN_BIND_VIRQ, &mut arg)
    }

    /// Unbinds a local port.
    pub fn unbind(&self, port: u32) -> Result<(), EvtchnError> {
        let mut arg = port;
        self.ioctl("unbind", IOCTL_EVTCHN_UNBIND, &mut arg)
            .map(drop)
    }

    /// Sends an event on a local port.
    pub fn notify(&self, port: u32) -> Result<(), EvtchnError> {
        let mut arg = port;
        self.ioctl("notify", IOCTL_EVTCHN_NOTIFY, &mut arg)
            .map(drop)
    }

    /// Unbinds every port of this open and clears the pending queue.
    pub fn reset(&self) -> Result<(), EvtchnError> {
        let mut arg = [0u8; 0];
        self.ioctl("reset", IOCTL_EVTCHN_RESET, &mut arg).map(drop)
    }

    /// Restricts this open to binding ports of `domid` only (irrevocable).
    pub fn restrict_domid(&self, domid: u16) -> Result<(), EvtchnError> {
        let mut arg = domid;
        self.ioctl("restrict domid", IOCTL_EVTCHN_RESTRICT_DOMID, &mut arg)
            .map(drop)
    }

    /// Reads the ports that fired since the last read (without blocking). Each port
    /// stays masked until [`EvtchnDevice::unmask`].
    pub fn read_pending(&self, out: &mut Vec<u32>) -> Result<(), EvtchnError> {
        let mut buf = [0u8; 4 * 64];
        loop {
            match (&self.file).read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    out.extend(
                        buf[..n - n % 4]
                            .chunks_exact(4)
                            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
                    );
                    if n < buf.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(EvtchnError::Io {
                        op: "read pending",
                        source,
                    })
                }
            }
        }
    }

    /// Unmasks a port so that it can fire again.
    pub fn unmask(&self, port: u32) -> Result<(), EvtchnError> {
        (&self.file)
            .write_all(&port.to_ne_bytes())
            .map_err(|source| EvtchnError::Io {
                op: "unmask",
                source,
            })
    }

    /// Waits until a port is pending or `timeout` passes; true if readable.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, EvtchnError> {
        poll_readable(self.file.as_fd(), timeout)
            .map_err(|source| EvtchnError::Io { op: "poll", source })
    }
}

impl AsFd for EvtchnDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// `poll(2)` one fd for input.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd` for the duration of the call; the fd is borrowed live.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}
