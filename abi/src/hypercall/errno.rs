//! Xen's errno values (`xen/errno.h`) and [`hypercall_result`], which turns a
//! hypercall's return value into success or a typed [`XenErrno`].

use crate::enums::{xen_enum, UnknownValue};

xen_enum! {
    /// Xen's error numbers (`xen/errno.h`, guest-visible ones); hypercalls return their
    /// negation. Aliases: `EWOULDBLOCK` = `EAGAIN`, `EDEADLOCK` = `EDEADLK`.
    pub enum XenErrno: i32 as "xen errno" {
        /// Operation not permitted.
        Eperm = 1 => "XEN_EPERM",
        /// No such file or directory.
        Enoent = 2 => "XEN_ENOENT",
        /// No such process.
        Esrch = 3 => "XEN_ESRCH",
        /// I/O error.
        Eio = 5 => "XEN_EIO",
        /// No such device or address.
        Enxio = 6 => "XEN_ENXIO",
        /// Argument list too long.
        E2big = 7 => "XEN_E2BIG",
        /// Exec format error.
        Enoexec = 8 => "XEN_ENOEXEC",
        /// Bad file number.
        Ebadf = 9 => "XEN_EBADF",
        /// No child processes.
        Echild = 10 => "XEN_ECHILD",
        /// Try again.
        Eagain = 11 => "XEN_EAGAIN",
        /// Out of memory.
        Enomem = 12 => "XEN_ENOMEM",
        /// Permission denied.
        Eacces = 13 => "XEN_EACCES",
        /// Bad address.
        Efault = 14 => "XEN_EFAULT",
        /// Device or resource busy.
        Ebusy = 16 => "XEN_EBUSY",
        /// Exists.
        Eexist = 17 => "XEN_EEXIST",
        /// Cross-device link.
        Exdev = 18 => "XEN_EXDEV",
        /// No such device.
        Enodev = 19 => "XEN_ENODEV",
        /// Not a directory.
        Enotdir = 20 => "XEN_ENOTDIR",
        /// Is a directory.
        Eisdir = 21 => "XEN_EISDIR",
        /// Invalid argument.
        Einval = 22 => "XEN_EINVAL",
        /// File table overflow.
        Enfile = 23 => "XEN_ENFILE",
        /// Too many open files.
        Emfile = 24 => "XEN_EMFILE",
        /// No space left.
        Enospc = 28 => "XEN_ENOSPC",
        /// Read-only.
        Erofs = 30 => "XEN_EROFS",
        /// Too many links.
        Emlink = 31 => "XEN_EMLINK",
        /// Argument out of domain.
        Edom = 33 => "XEN_EDOM",
        /// Result not representable.
        Erange = 34 => "XEN_ERANGE",
        /// Deadlock would occur.
        Edeadlk = 35 => "XEN_EDEADLK",
        /// Name too long.
        Enametoolong = 36 => "XEN_ENAMETOOLONG",
        /// No locks available.
        Enolck = 37 => "XEN_ENOLCK",
        /// Not implemented.
        Enosys = 38 => "XEN_ENOSYS",
        /// Directory not empty.
        Enotempty = 39 => "XEN_ENOTEMPTY",
        /// No data.
        Enodata = 61 => "XEN_ENODATA",
        /// Timer expired.
        Etime = 62 => "XEN_ETIME",
        /// Not a data message.
        Ebadmsg = 74 => "XEN_EBADMSG",
        /// Value too large.
        Eoverflow = 75 => "XEN_EOVERFLOW",
        /// Illegal byte sequence.
        Eilseq = 84 => "XEN_EILSEQ",
        /// Not a socket.
        Enotsock = 88 => "XEN_ENOTSOCK",
        /// Message too large.
        Emsgsize = 90 => "XEN_EMSGSIZE",
        /// Not supported.
        Eopnotsupp = 95 => "XEN_EOPNOTSUPP",
        /// Address in use.
        Eaddrinuse = 98 => "XEN_EADDRINUSE",
        /// Address not available.
        Eaddrnotavail = 99 => "XEN_EADDRNOTAVAIL",
        /// No buffer space.
        Enobufs = 105 => "XEN_ENOBUFS",
        /// Already connected.
        Eisconn = 106 => "XEN_EISCONN",
        /// Not connected.
        Enotconn = 107 => "XEN_ENOTCONN",
        /// Timed out.
        Etimedout = 110 => "XEN_ETIMEDOUT",
        /// Connection refused.
        Econnrefused = 111 => "XEN_ECONNREFUSED",
    }
}

impl XenErrno {
    /// The value a hypercall returns for this error (`-errno`).
    pub const fn to_ret(self) -> i64 {
        -(self as i64)
    }
}

/// A failed hypercall: the (negated) return value, typed if Xen defines it.
pub type HypercallError = Result<XenErrno, UnknownValue<i32>>;

/// Interpret a hypercall's return value: non-negative is success, negative a
/// `-errno`.
pub fn hypercall_result(ret: i64) -> Result<u64, HypercallError> {
    if ret >= 0 {
        return Ok(ret as u64);
    }
    let errno = ret.checked_neg().and_then(|e| i32::try_from(e).ok());
    match errno {
        Some(e) => Err(XenErrno::try_from(e)),
        None => Err(Err(UnknownValue {
            kind: "xen errno",
            value: i32::MIN,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::Hypercall;

    #[test]
    fn results() {
        assert_eq!(hypercall_result(3), Ok(3));
        assert_eq!(hypercall_result(-22), Err(Ok(XenErrno::Einval)));
        assert_eq!(hypercall_result(-4).unwrap_err().unwrap_err().value, 4);
        assert!(hypercall_result(i64::MIN).is_err());
        assert_eq!(XenErrno::Enosys.to_ret(), -38);
        assert_eq!(Hypercall::try_from(11).unwrap_err().value, 11);
    }
}
