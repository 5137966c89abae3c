//! Building messages in a caller buffer: [`MessageWriter`] and [`encode_strings`].

use super::payload::format_decimal;
use super::*;

use zerocopy::IntoBytes;

/// Encode a message whose payload is `fields`, each NUL-terminated (`"a\0b\0"`), into
/// `out`; returns the message length. For payloads with a raw tail (`XS_WRITE`'s value)
/// use [`MessageWriter`] or [`Request::encode`].
pub fn encode_strings(
    out: &mut [u8],
    msg_type: XsMsgType,
    req_id: u32,
    tx_id: u32,
    fields: &[&[u8]],
) -> Result<usize, XsWireError> {
    let mut w = MessageWriter::new(out, msg_type, req_id, tx_id)?;
    for f in fields {
        w.string(f)?;
    }
    Ok(w.finish())
}

/// Builds one message in a caller buffer: header first, then arguments; `finish`
/// writes the payload length. Every append checks [`XENSTORE_PAYLOAD_MAX`] and the
/// buffer's size.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl<'b> MessageWriter<'b> {
    /// Start a message of `msg_type` in `out`.
    pub fn new(
        out: &'b mut [u8],
        msg_type: XsMsgType,
        req_id: u32,
        tx_id: u32,
    ) -> Result<Self, XsWireError> {
        let header = XsdSockmsg {
            msg_type: msg_type.raw(),
            req_id,
            tx_id,
            len: 0,
        };
        header
            .write_to_prefix(out)
            .map_err(|_| XsWireError::BufferTooSmall {
                needed: XSD_SOCKMSG_SIZE,
                available: out.len(),
            })?;
        Ok(MessageWriter {
            out,
            len: XSD_SOCKMSG_SIZE,
        })
    }

    /// Append raw bytes (no terminator).
    pub fn bytes(&mut self, b: &[u8]) -> Result<&mut Self, XsWireError> {
        let payload = self.len - XSD_SOCKMSG_SIZE + b.len();
        if payload > XENSTORE_PAYLOAD_MAX {
            return Err(XsWireError::PayloadTooLarge { len: payload });
        }
        let end = self.len + b.len();
        let available = self.out.len();
        let dst = self
            .out
            .get_mut(self.len..end)
            .ok_or(XsWireError::BufferTooSmall {
                needed: end,
                available,
            })?;
        dst.copy_from_slice(b);
        self.len = end;
        Ok(self)
    }

    /// Append a string and its NUL terminator; the string may not contain NUL.
    pub fn string(&mut self, s: &[u8]) -> Result<&mut Self, XsWireError> {
        if s.contains(&0) {
            return Err(XsWireError::FieldContainsNul);
        }
        let payload = self.len - XSD_SOCKMSG_SIZE + s.len() + 1;
        if payload > XENSTORE_PAYLOAD_MAX {
            return Err(XsWireError::PayloadTooLarge { len: payload });
        }
        let end = self.len + s.len() + 1;
        if end > self.out.len() {
            return Err(XsWireError::BufferTooSmall {
                needed: end,
                available: self.out.len(),
            });
        }
        self.bytes(s)?;
        self.bytes(&[0])
    }

    /// Append a validated path and its NUL.
    pub fn path(&mut self, p: &str, allow_special: bool) -> Result<&mut Self, XsWireError> {
        validate_path(p.as_bytes(), allow_special)?;
        self.string(p.as_bytes())
    }

    /// Append a decimal number and its NUL.
    pub fn number(&mut self, n: u64) -> Result<&mut Self, XsWireError> {
        let mut digits = [0u8; 20];
        let d = format_decimal(n, &mut digits);
        self.string(d)
    }

    /// Write the payload length into the header; returns the whole message's length.
    pub fn finish(self) -> usize {
        let payload_len = (self.len - XSD_SOCKMSG_SIZE) as u32;
        // The header is at the front of `out` (checked in `new`); `len` is its last field.
        let len_at = core::mem::offset_of!(XsdSockmsg, len);
        self.out[len_at..len_at + 4].copy_from_slice(&payload_len.to_ne_bytes());
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_strings_matches_typed_encoder() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let n = encode_strings(&mut a, XsMsgType::Watch, 5, 0, &[b"/x", b"tok"]).unwrap();
        let m = Request::Watch {
            path: "/x",
            token: b"tok",
        }
        .encode(5, 0, &mut b)
        .unwrap();
        assert_eq!(&a[..n], &b[..m]);
        let ring = XenstoreRingIndices::check(10, 10 + 1024, XENSTORE_RING_SIZE).unwrap();
        assert_eq!(ring.free(), 0);
        assert!(XenstoreRingIndices::check(10, 10 + 1025, XENSTORE_RING_SIZE).is_err());
    }
}
