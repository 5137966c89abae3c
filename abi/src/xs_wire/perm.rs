//! Permission strings (`r0`, `b65535`, ...).

use super::payload::{format_decimal, parse_decimal};
use super::*;

use crate::types::RawDomId;

/// A permission letter (`n`, `r`, `w`, `b`) of a xenstore permission string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsPermAccess {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl XsPermAccess {
    /// The letter on the wire.
    pub const fn as_char(self) -> u8 {
        match self {
            XsPermAccess::None => b'n',
            XsPermAccess::Read => b'r',
            XsPermAccess::Write => b'w',
            XsPermAccess::Both => b'b',
        }
    }

    /// The access a letter names.
    pub const fn from_char(c: u8) -> Option<Self> {
        match c {
            b'n' => Some(XsPermAccess::None),
            b'r' => Some(XsPermAccess::Read),
            b'w' => Some(XsPermAccess::Write),
            b'b' => Some(XsPermAccess::Both),
            _ => None,
        }
    }
}

/// One permission of a node: access letter and domain (`"r5"`). The first permission
/// of a node names its owner, and its letter is the access of every domain not listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsPermission {
    /// What `domid` may do.
    pub access: XsPermAccess,
    /// The domain.
    pub domid: RawDomId,
}

impl XsPermission {
    /// Parse `"r5"` (without NUL).
    pub fn parse(s: &[u8]) -> Result<Self, XsWireError> {
        let (&c, digits) = s.split_first().ok_or(XsWireError::BadPermission)?;
        let access = XsPermAccess::from_char(c).ok_or(XsWireError::BadPermission)?;
        let domid = parse_decimal(digits, u16::MAX as u64).ok_or(XsWireError::BadPermission)?;
        Ok(XsPermission {
            access,
            domid: domid as RawDomId,
        })
    }

    /// Format into `buf` (at least 6 bytes), returning the bytes written (no NUL).
    pub fn format<'b>(&self, buf: &'b mut [u8; 6]) -> &'b [u8] {
        buf[0] = self.access.as_char();
        let mut digits = [0u8; 20];
        let d = format_decimal(self.domid as u64, &mut digits);
        buf[1..1 + d.len()].copy_from_slice(d);
        &buf[..1 + d.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms() {
        let p = XsPermission::parse(b"b65535").unwrap();
        assert_eq!(p.access, XsPermAccess::Both);
        assert_eq!(p.domid, 65535);
        assert_eq!(
            XsPermission::parse(b"r65536"),
            Err(XsWireError::BadPermission)
        );
        assert_eq!(XsPermission::parse(b"x1"), Err(XsWireError::BadPermission));
        assert_eq!(XsPermission::parse(b"r"), Err(XsWireError::BadPermission));
        let mut buf = [0; 6];
        assert_eq!(p.format(&mut buf), b"b65535");
    }
}
