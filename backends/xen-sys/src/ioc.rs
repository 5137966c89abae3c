//! Linux `_IOC` numbers for the Xen devices (direction `_IOC_NONE`, as the Xen uapi
//! headers declare every one of them).

/// `_IOC(_IOC_NONE, ty, nr, size)`: dir 0 in bits 30..32, size in 16..30, type in 8..16.
pub const fn ioc_none(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((size as libc::c_ulong) << 16) | ((ty as libc::c_ulong) << 8) | nr as libc::c_ulong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_headers() {
        // IOCTL_EVTCHN_BIND_INTERDOMAIN = _IOC(_IOC_NONE, 'E', 1, 8) = 0x00084501
        assert_eq!(ioc_none(b'E', 1, 8), 0x0008_4501);
        // IOCTL_GNTDEV_MAP_GRANT_REF = _IOC(_IOC_NONE, 'G', 0, 24) = 0x00184700
        assert_eq!(ioc_none(b'G', 0, 24), 0x0018_4700);
        // IOCTL_GNTDEV_GRANT_COPY = _IOC(_IOC_NONE, 'G', 8, 16) = 0x00104708
        assert_eq!(ioc_none(b'G', 8, 16), 0x0010_4708);
    }
}
