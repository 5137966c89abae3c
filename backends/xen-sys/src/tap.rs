//! `/dev/net/tun` tap devices with a `virtio_net_hdr` before every frame
//! (`IFF_VNET_HDR`), so checksum and segmentation offloads cross the device; several
//! queues of one device with `IFF_MULTI_QUEUE` (one open file each).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The clone device.
pub const TUN_DEVICE: &str = "/dev/net/tun";
/// Bytes of the `virtio_net_hdr` before each frame (the kernel's default size).
pub const VNET_HDR_LEN: usize = 10;
/// Most bytes of an interface name, without its NUL (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// Offloads the reader accepts (`TUNSETOFFLOAD`): frames with partial checksums
/// (`CSUM`) and TCP segmentation (`TSO4`, `TSO6`; these need `CSUM`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapOffloads {
    /// `TUN_F_CSUM`.
    pub csum: bool,
    /// `TUN_F_TSO4`.
    pub tso4: bool,
    /// `TUN_F_TSO6`.
    pub tso6: bool,
}

/// `struct ifreq` with the `ifr_flags` member of its union (40 bytes on x86_64).
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Why a tap could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name is empty, too long or holds a NUL or `/`.
    #[error("bad interface name {0:?}")]
    BadName(String),
    /// Opening the clone device failed.
    #[error("opening {TUN_DEVICE}: {0}")]
    Open(#[source] io::Error),
    /// An ioctl failed.
    #[error("{op} on tap {name}: {source}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// The interface.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

/// One queue (open file) of a tap device; the device goes away when its last queue is
/// closed. Non-blocking: reads answer `WouldBlock` when no frame waits.
#[derive(Debug)]
pub struct TapDevice {
    file: File,
    name: String,
}

impl TapDevice {
    /// Opens (creating if needed) queue of tap `name` with `IFF_TAP | IFF_NO_PI |
    /// IFF_VNET_HDR | IFF_MULTI_QUEUE`. A device of that name that exists with other
    /// flags (or is not a tap) is refused by the kernel.
    pub fn open_queue(name: &str) -> Result<Self, TapError> {
        if name.is_empty()
            || name.len() > IFNAME_MAX
            || name
                .bytes()
                .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return Err(TapError::BadName(name.into()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(TapError::Open)?;
        let mut req = IfreqFlags {
            name: [0; 16],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE)
                as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes, name then the
        // flags union member); `req` is that layout, live and exclusively borrowed.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if r < 0 {
            return Err(TapError::Ioctl {
                op: "TUNSETIFF",
                name: name.into(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(Self {
            file,
            name: name.into(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which offloaded frames the kernel may hand us (device-wide).
    pub fn set_offloads(&self, o: TapOffloads) -> Result<(), TapError> {
        let mut bits: libc::c_uint = 0;
        if o.csum {
            bits |= libc::TUN_F_CSUM;
            if o.tso4 {
                bits |= libc::TUN_F_TSO4;
            }
            if o.tso6 {
                bits |= libc::TUN_F_TSO6;
            }
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int); no memory
        // is passed.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                bits as libc::c_ulong,
            )
        };
        if r < 0 {
            return Err(TapError::Ioctl {
                op: "TUNSETOFFLOAD",
                name: self.name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Reads one frame (vnet header first) into `buf`; `WouldBlock` when none waits.
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame (vnet header first) from `parts`.
    pub fn write_frame(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.file).write_vectored(parts)
    }

    /// Writes one frame from `head` (our own bytes: the vnet header, the frame's first
    /// bytes) followed by `tail`, pieces of shared memory (another domain's pages mapped
    /// here), in one `writev`: the kernel copies the tail straight from those pages.
    /// Another domain changing them meanwhile changes only the bytes the kernel copies.
    pub fn write_frame_shared(
        &self,
        head: &[IoSlice<'_>],
        tail: &[sluice_abi::shared::SharedMem<'_>],
    ) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = head
            .iter()
            .map(|h| libc::iovec {
                iov_base: h.as_ptr().cast_mut().cast(),
                iov_len: h.len(),
            })
            .collect();
        iov.extend(tail.iter().map(|m| libc::iovec {
            iov_base: m.addr() as *mut libc::c_void,
            iov_len: m.len(),
        }));
        let count = libc::c_int::try_from(iov.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: every iovec names live memory for the whole call: `head`'s slices are
        // borrowed, and each `SharedMem` of `tail` guarantees its region stays mapped
        // for its lifetime, which outlasts this call. The kernel only reads them
        // (copy_from_user tolerates concurrent writes by another domain); `iov` itself
        // is a live, initialised array of `count` entries.
        let n = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), count) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_the_kernel() {
        for bad in ["", "0123456789abcdef", "a/b", "a b", "a\0"] {
            assert!(matches!(
                TapDevice::open_queue(bad),
                Err(TapError::BadName(_))
            ));
        }
    }
}
