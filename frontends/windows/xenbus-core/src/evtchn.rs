//! 2-level event-channel dispatch from the platform interrupt (or the upcall vector):
//! take vCPU 0's `evtchn_pending_sel`, then each selected word's pending-and-unmasked
//! bits, clear each port's pending bit before its handler runs (an event that arrives
//! meanwhile sets it again and is seen on the next scan). Bounded: at most
//! [`MAX_ROUNDS`] selector rounds per interrupt; the caller queues another pass when
//! work is left (a backend flooding a port cannot hold the CPU).

use sluice_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use sluice_abi::types::EvtchnPort;

/// The shared_info words dispatch reads and changes; atomic in the driver (`lock xchg`,
/// `lock btr` on the mapped page), plain cells in host tests.
pub trait EventWords {
    /// Atomically takes vCPU 0's `evtchn_pending_sel` (exchange with 0), after clearing
    /// its `evtchn_upcall_pending`.
    fn take_selector(&self) -> u64;
    /// `evtchn_pending[word]`.
    fn pending(&self, word: usize) -> u64;
    /// `evtchn_mask[word]`.
    fn mask(&self, word: usize) -> u64;
    /// Atomically clears `port`'s pending bit.
    fn clear_pending(&self, port: u32);
}

/// Selector rounds per call.
pub const MAX_ROUNDS: usize = 4;

/// Delivers pending, unmasked ports to `handler`; returns whether events may be left
/// (the last round still found some), for the caller to queue another pass.
pub fn dispatch(words: &impl EventWords, mut handler: impl FnMut(EvtchnPort)) -> bool {
    for _ in 0..MAX_ROUNDS {
        let sel = words.take_selector();
        if sel == 0 {
            return false;
        }
        for word in BitIter(sel) {
            let bits = words.pending(word) & !words.mask(word);
            for bit in BitIter(bits) {
                let port = (word * 64 + bit) as u32;
                if port >= EVTCHN_2L_NR_CHANNELS {
                    continue;
                }
                words.clear_pending(port);
                handler(EvtchnPort(port));
            }
        }
    }
    true
}

/// Set bits of a word, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use core::cell::Cell;

    struct Fake {
        sel: Cell<u64>,
        pending: [Cell<u64>; 64],
        mask: [Cell<u64>; 64],
        /// A port the "backend" raises again each time it is cleared.
        flood: Option<u32>,
    }

    impl Fake {
        fn new() -> Self {
            Fake {
                sel: Cell::new(0),
                pending: core::array::from_fn(|_| Cell::new(0)),
                mask: core::array::from_fn(|_| Cell::new(0)),
                flood: None,
            }
        }
        fn raise(&self, port: u32) {
            let w = (port / 64) as usize;
            self.pending[w].set(self.pending[w].get() | 1 << (port % 64));
            self.sel.set(self.sel.get() | 1 << w);
        }
    }

    impl EventWords for Fake {
        fn take_selector(&self) -> u64 {
            self.sel.replace(0)
        }
        fn pending(&self, w: usize) -> u64 {
            self.pending[w].get()
        }
        fn mask(&self, w: usize) -> u64 {
            self.mask[w].get()
        }
        fn clear_pending(&self, port: u32) {
            let w = (port / 64) as usize;
            self.pending[w].set(self.pending[w].get() & !(1 << (port % 64)));
            if self.flood == Some(port) {
                self.raise(port);
            }
        }
    }

    #[test]
    fn delivers_pending_unmasked_ports_once() {
        let f = Fake::new();
        for p in [1, 63, 64, 4095] {
            f.raise(p);
        }
        f.raise(200);
        f.mask[3].set(1 << (200 % 64));
        let mut got = Vec::new();
        assert!(!dispatch(&f, |p| got.push(p.0)));
        assert_eq!(got, [1, 63, 64, 4095]);
        // Cleared: a second interrupt delivers nothing; the masked port stays pending.
        assert!(!dispatch(&f, |_| panic!("delivered twice")));
        assert_ne!(f.pending[3].get(), 0);
    }

    #[test]
    fn a_flooding_port_is_bounded() {
        let mut f = Fake::new();
        f.flood = Some(5);
        f.raise(5);
        let mut n = 0;
        assert!(dispatch(&f, |_| n += 1), "work left");
        assert_eq!(n, MAX_ROUNDS);
    }
}
