//! Moving bytes through a mapped console page (`struct xencons_interface`).

use sluice_abi::console::{RingIndices, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use sluice_abi::shared::{SharedMem, SharedMemError};

const IN_OFFSET: usize = 0;
const OUT_OFFSET: usize = XENCONS_IN_SIZE;
const IN_CONS: usize = XENCONS_IN_SIZE + XENCONS_OUT_SIZE;
const IN_PROD: usize = IN_CONS + 4;
const OUT_CONS: usize = IN_CONS + 8;
const OUT_PROD: usize = IN_CONS + 12;

/// A console ring the guest broke, or a page too small.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleRingError {
    /// The indices claim more bytes than the ring holds.
    #[error(transparent)]
    Indices(#[from] sluice_abi::console::ConsoleIndexError),
    /// The mapping is too small.
    #[error("console page: {0}")]
    Mem(#[from] SharedMemError),
}

/// The console page of one guest.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleRing<'a> {
    mem: SharedMem<'a>,
}

impl<'a> ConsoleRing<'a> {
    /// Wraps a mapped console page.
    pub fn new(mem: SharedMem<'a>) -> Self {
        Self { mem }
    }

    /// Bytes of output waiting (the indices checked, nothing taken).
    pub fn output_pending(&self) -> Result<usize, ConsoleRingError> {
        let prod = self.mem.load_u32_acquire(OUT_PROD)?;
        let cons = self.mem.load_u32_relaxed(OUT_CONS)?;
        Ok(RingIndices::check(cons, prod, XENCONS_OUT_SIZE)?.used())
    }

    /// Takes everything the guest wrote (appended to `out`); returns the byte count.
    pub fn take_output(&self, out: &mut Vec<u8>) -> Result<usize, ConsoleRingError> {
        let prod = self.mem.load_u32_acquire(OUT_PROD)?;
        let cons = self.mem.load_u32_relaxed(OUT_CONS)?;
        let idx = RingIndices::check(cons, prod, XENCONS_OUT_SIZE)?;
        for r in idx.readable() {
            let start = out.len();
            out.resize(start + r.len(), 0);
            self.mem
                .read_bytes(OUT_OFFSET + r.start, &mut out[start..])?;
        }
        // The bytes are copied before the guest may reuse them (Release).
        self.mem
            .store_u32_release(OUT_CONS, idx.consumed(idx.used()))?;
        Ok(idx.used())
    }

    /// Puts as much of `data` as fits into the guest's input ring; returns how much.
    pub fn give_input(&self, data: &[u8]) -> Result<usize, ConsoleRingError> {
        let cons = self.mem.load_u32_acquire(IN_CONS)?;
        let prod = self.mem.load_u32_relaxed(IN_PROD)?;
        let idx = RingIndices::check(cons, prod, XENCONS_IN_SIZE)?;
        let n = data.len().min(idx.free());
        let mut done = 0;
        for r in idx.writable() {
            let k = r.len().min(n - done);
            self.mem
                .write_bytes(IN_OFFSET + r.start, &data[done..done + k])?;
            done += k;
        }
        self.mem.store_u32_release(IN_PROD, idx.produced(n))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_abi::shared::SharedPages;

    #[test]
    fn output_wraps_and_hostile_indices_are_refused() {
        let page = SharedPages::new(1);
        let mem = page.mem();
        let ring = ConsoleRing::new(mem);
        // Guest wrote 5 bytes wrapping the end: cons = 2046, prod = 2051.
        mem.store_u32_relaxed(OUT_CONS, 2046).unwrap();
        mem.write_bytes(OUT_OFFSET + 2046, b"he").unwrap();
        mem.write_bytes(OUT_OFFSET, b"llo").unwrap();
        mem.store_u32_relaxed(OUT_PROD, 2051).unwrap();
        let mut out = vec![];
        assert_eq!(ring.take_output(&mut out).unwrap(), 5);
        assert_eq!(out, b"hello");
        assert_eq!(mem.load_u32_relaxed(OUT_CONS).unwrap(), 2051);
        mem.store_u32_relaxed(OUT_PROD, 2051 + 4000).unwrap();
        assert!(ring.take_output(&mut out).is_err());
        // Input: fills at most the free space.
        assert_eq!(ring.give_input(&[b'x'; 2000]).unwrap(), XENCONS_IN_SIZE);
        assert_eq!(ring.give_input(b"y").unwrap(), 0);
        mem.store_u32_relaxed(IN_CONS, 10).unwrap();
        assert_eq!(ring.give_input(b"abc").unwrap(), 3);
        assert_eq!(mem.load_u32_relaxed(IN_PROD).unwrap(), 1027);
        let mut b = [0u8; 3];
        mem.read_bytes(0, &mut b).unwrap();
        assert_eq!(&b, b"abc");
    }
}
