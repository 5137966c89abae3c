//! Payload arguments: decimal numbers, the NUL-terminated argument walker used by
//! the decoders, and [`StringList`].

use super::*;

/// Parse an unsigned decimal number (no sign, no spaces, at least one digit) `<= max`.
pub(super) fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    (v <= max).then_some(v)
}

/// Format `v` in decimal into `buf`, returning the digits.
pub(super) fn format_decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Walks the NUL-terminated arguments of a payload.
pub(super) struct Args<'a> {
    rest: &'a [u8],
    msg_type: XsMsgType,
}

impl<'a> Args<'a> {
    pub(super) fn new(msg: &RawMessage<'a>, msg_type: XsMsgType) -> Self {
        Args {
            rest: msg.payload,
            msg_type,
        }
    }

    /// Next NUL-terminated string, without the NUL.
    pub(super) fn string(&mut self, field: &'static str) -> Result<&'a [u8], XsWireError> {
        if self.rest.is_empty() {
            return Err(XsWireError::MissingField { field });
        }
        let nul = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(XsWireError::MissingNul { field })?;
        let s = &self.rest[..nul];
        self.rest = &self.rest[nul + 1..];
        Ok(s)
    }

    pub(super) fn path(
        &mut self,
        field: &'static str,
        allow_special: bool,
    ) -> Result<&'a str, XsWireError> {
        let p = self.string(field)?;
        validate_path(p, allow_special)?;
        // Valid paths are ASCII.
        core::str::from_utf8(p).map_err(|_| XsWireError::BadNumber { field })
    }

    pub(super) fn number(&mut self, field: &'static str, max: u64) -> Result<u64, XsWireError> {
        let s = self.string(field)?;
        parse_decimal(s, max).ok_or(XsWireError::BadNumber { field })
    }

    pub(super) fn boolean(&mut self) -> Result<bool, XsWireError> {
        match self.string("T/F")? {
            b"T" => Ok(true),
            b"F" => Ok(false),
            _ => Err(XsWireError::BadBool),
        }
    }

    /// All remaining bytes (a raw value).
    pub(super) fn remainder(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    pub(super) fn end(self) -> Result<(), XsWireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(XsWireError::TrailingData {
                msg_type: self.msg_type,
            })
        }
    }

    /// A no-argument request: empty, or one empty string.
    pub(super) fn no_args(self) -> Result<(), XsWireError> {
        match self.rest {
            b"" | b"\0" => Ok(()),
            _ => Err(XsWireError::TrailingData {
                msg_type: self.msg_type,
            }),
        }
    }
}

/// A validated sequence of NUL-terminated strings (directory listings, permission
/// lists, control arguments), borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StringList<'a> {
    bytes: &'a [u8],
}

impl<'a> StringList<'a> {
    /// Wrap `bytes`, which must be empty or end in NUL.
    pub fn new(bytes: &'a [u8]) -> Result<Self, XsWireError> {
        if bytes.last().is_some_and(|&b| b != 0) {
            return Err(XsWireError::MissingNul { field: "list" });
        }
        Ok(StringList { bytes })
    }

    /// Wrap `bytes` as a permission list: every element must parse as [`XsPermission`],
    /// and there must be at least one.
    pub fn new_perms(bytes: &'a [u8]) -> Result<Self, XsWireError> {
        let list = Self::new(bytes)?;
        if list.is_empty() {
            return Err(XsWireError::MissingField {
                field: "permission",
            });
        }
        for p in list.iter() {
            XsPermission::parse(p)?;
        }
        Ok(list)
    }

    /// The raw bytes, every element NUL-terminated.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The elements, without their NULs.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let b = self.bytes;
        let body = b.strip_suffix(&[0]).unwrap_or(b);
        let mut split = body.split(|&c| c == 0);
        if b.is_empty() {
            // `split` of an empty slice yields one empty element; a list of none has none.
            split.next();
        }
        split
    }

    /// The elements read as permissions (for a list built with
    /// [`StringList::new_perms`] every item is `Ok`).
    pub fn permissions(&self) -> impl Iterator<Item = Result<XsPermission, XsWireError>> + 'a {
        self.iter().map(XsPermission::parse)
    }
}
