//! Framing: splitting messages off a byte stream ([`decode_frame`]) or off ring
//! chunks ([`XsReader`]), with the header's `len` checked first.

use super::*;
use core::fmt;

use zerocopy::FromBytes;

/// One framed message, payload borrowed from the input.
///
/// The type is kept raw: a message of a type this side does not know is still a
/// well-framed message (xenstored answers it with `ENOSYS` and carries on), so framing
/// accepts it and [`RawMessage::msg_type`] / the decoders report
/// [`XsWireError::UnknownType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMessage<'a> {
    /// The message type as sent ([`XsMsgType`] if known).
    pub raw_type: u32,
    /// Request id.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// The payload, at most [`XENSTORE_PAYLOAD_MAX`] bytes.
    pub payload: &'a [u8],
}

impl RawMessage<'_> {
    /// The typed message type.
    pub fn msg_type(&self) -> Result<XsMsgType, XsWireError> {
        XsMsgType::try_from(self.raw_type).map_err(XsWireError::UnknownType)
    }
}

/// The result of [`decode_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message, and the bytes of input it used.
    Complete(RawMessage<'a>, usize),
    /// The input is a valid prefix; this many bytes in total are needed.
    Incomplete {
        /// Total bytes (from the start of the input) needed for the next step.
        needed: usize,
    },
}

/// Check a header: payload within the limit. (The type is checked by the decoders, so
/// that an unknown type can be answered without losing the stream.)
pub fn check_header(h: &XsdSockmsg) -> Result<(), XsWireError> {
    if h.len as usize > XENSTORE_PAYLOAD_MAX {
        return Err(XsWireError::PayloadTooLarge {
            len: h.len as usize,
        });
    }
    Ok(())
}

/// Split the first message off `input`. The header's `len` is checked as soon as its 16
/// bytes are present, so an oversized `len` is refused before any payload arrives.
pub fn decode_frame(input: &[u8]) -> Result<Frame<'_>, XsWireError> {
    let Ok((header, rest)) = XsdSockmsg::read_from_prefix(input) else {
        return Ok(Frame::Incomplete {
            needed: XSD_SOCKMSG_SIZE,
        });
    };
    check_header(&header)?;
    let len = header.len as usize;
    let Some(payload) = rest.get(..len) else {
        return Ok(Frame::Incomplete {
            needed: XSD_SOCKMSG_SIZE + len,
        });
    };
    Ok(Frame::Complete(
        RawMessage {
            raw_type: header.msg_type,
            req_id: header.req_id,
            tx_id: header.tx_id,
            payload,
        },
        XSD_SOCKMSG_SIZE + len,
    ))
}

/// Incremental decoder: feed it bytes in chunks of any size (e.g. whatever the ring
/// holds), take whole messages out. Holds at most one message in a fixed buffer.
///
/// After an error the stream cannot be re-synchronised (a bad header's `len` is not to
/// be trusted): the caller should drop the connection, or [`XsReader::reset`] after a
/// ring reset.
#[derive(Clone)]
pub struct XsReader {
    buf: [u8; XS_MESSAGE_MAX],
    filled: usize,
    delivered: bool,
}

impl Default for XsReader {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for XsReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XsReader")
            .field("filled", &self.filled)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl XsReader {
    /// An empty reader.
    pub const fn new() -> Self {
        XsReader {
            buf: [0; XS_MESSAGE_MAX],
            filled: 0,
            delivered: false,
        }
    }

    /// Forget any partial message.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.delivered = false;
    }

    /// Bytes of the current message buffered so far.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// Take bytes from `data`, never past the end of the current message. Returns how
    /// many were used; call again with the rest after taking the message out with
    /// [`XsReader::message`]. Returns 0 while a complete message is waiting.
    pub fn push(&mut self, data: &[u8]) -> Result<usize, XsWireError> {
        if self.delivered {
            self.reset();
        }
        let mut used = 0;
        loop {
            let needed = match decode_frame(&self.buf[..self.filled])? {
                Frame::Complete(..) => return Ok(used),
                Frame::Incomplete { needed } => needed,
            };
            let take = (needed - self.filled).min(data.len() - used);
            if take == 0 {
                return Ok(used);
            }
            self.buf[self.filled..self.filled + take].copy_from_slice(&data[used..used + take]);
            self.filled += take;
            used += take;
        }
    }

    /// The complete message, if one is buffered. The next [`XsReader::push`] discards it.
    pub fn message(&mut self) -> Option<RawMessage<'_>> {
        match decode_frame(&self.buf[..self.filled]) {
            Ok(Frame::Complete(m, _)) => {
                self.delivered = true;
                Some(m)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn reader_in_tiny_chunks() {
        let mut out = [0u8; 128];
        let n1 = Request::Read { path: "/a" }.encode(1, 0, &mut out).unwrap();
        let n2 = Request::TransactionStart
            .encode(2, 0, &mut out[n1..])
            .unwrap();
        let stream = &out[..n1 + n2];
        let mut r = XsReader::new();
        let mut ids = [0u32; 2];
        let mut got = 0;
        for chunk in stream.chunks(3) {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let used = r.push(chunk).unwrap();
                chunk = &chunk[used..];
                if let Some(m) = r.message() {
                    ids[got] = m.req_id;
                    got += 1;
                }
            }
        }
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn oversized_header_refused_before_payload() {
        let h = XsdSockmsg {
            msg_type: 2,
            req_id: 0,
            tx_id: 0,
            len: 4097,
        };
        assert_eq!(
            decode_frame(h.as_bytes()),
            Err(XsWireError::PayloadTooLarge { len: 4097 })
        );
    }
}
