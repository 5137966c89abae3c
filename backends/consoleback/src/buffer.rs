//! A bounded byte queue that drops its oldest bytes when full, counting them: a
//! stalled reader costs memory up to the bound and never blocks the guest.

use std::collections::VecDeque;

/// Bounded FIFO of bytes with drop-oldest overflow.
#[derive(Debug)]
pub struct DropOldest {
    buf: VecDeque<u8>,
    cap: usize,
    dropped: u64,
}

impl DropOldest {
    /// At most `cap` bytes are kept.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Appends, dropping the oldest bytes beyond the bound.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.cap {
            self.dropped += (data.len() - self.cap) as u64;
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        if over > 0 {
            self.buf.drain(..over);
            self.dropped += over as u64;
        }
        self.buf.extend(data);
    }

    /// The oldest contiguous bytes.
    pub fn front(&self) -> &[u8] {
        self.buf.as_slices().0
    }

    /// Removes `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_and_counts() {
        let mut b = DropOldest::new(4);
        b.push(b"ab");
        b.push(b"cdef");
        assert_eq!(b.len(), 4);
        assert_eq!(b.dropped(), 2);
        let mut got: Vec<u8> = vec![];
        while !b.is_empty() {
            let f = b.front().to_vec();
            got.extend(&f);
            b.consume(f.len());
        }
        assert_eq!(got, b"cdef");
        b.push(b"0123456789");
        assert_eq!(b.dropped(), 8);
        assert_eq!(b.front(), b"6789");
    }
}
