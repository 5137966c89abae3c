//! Byte rings (console, xenstore) against a `VecDeque` model, and a two-thread stream.

use proptest::prelude::*;
use sluice_abi::byte_ring::ByteRing;
use sluice_abi::shared::SharedPages;
use std::collections::VecDeque;

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<u8>),
    Read(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..3000).prop_map(Op::Write),
            (0usize..3000).prop_map(Op::Read),
        ],
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any interleaving of writes and reads, from any starting index (wrap included),
    /// moves exactly the bytes a FIFO of the ring's size would.
    #[test]
    fn matches_fifo_model(ops in ops(), start in any::<u32>(),
                          which in prop::sample::select(vec![
                              ByteRing::CONSOLE_IN, ByteRing::CONSOLE_OUT,
                              ByteRing::XENSTORE_REQ, ByteRing::XENSTORE_RSP])) {
        let page = SharedPages::new(1);
        let mem = page.mem();
        mem.store_u32_relaxed(which.cons, start).unwrap();
        mem.store_u32_relaxed(which.prod, start).unwrap();
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Write(data) => {
                    let n = which.write(&mem, &data).unwrap();
                    prop_assert_eq!(n, data.len().min(which.size - model.len()));
                    model.extend(&data[..n]);
                }
                Op::Read(want) => {
                    let mut out = vec![0u8; want];
                    let n = which.read(&mem, &mut out).unwrap();
                    prop_assert_eq!(n, want.min(model.len()));
                    let expect: Vec<u8> = model.drain(..n).collect();
                    prop_assert_eq!(&out[..n], &expect[..]);
                }
            }
            prop_assert_eq!(which.indices(&mem).unwrap().used(), model.len());
        }
    }

    /// Hostile indices (any pair) never panic and never move bytes when invalid.
    #[test]
    fn hostile_indices(cons in any::<u32>(), prod in any::<u32>()) {
        let page = SharedPages::new(1);
        let mem = page.mem();
        let ring = ByteRing::XENSTORE_RSP;
        mem.store_u32_relaxed(ring.cons, cons).unwrap();
        mem.store_u32_relaxed(ring.prod, prod).unwrap();
        let valid = prod.wrapping_sub(cons) as usize <= ring.size;
        let mut out = [0u8; 64];
        prop_assert_eq!(ring.read(&mem, &mut out).is_ok(), valid);
        prop_assert_eq!(ring.write(&mem, b"abc").is_ok(), valid);
        if !valid {
            prop_assert_eq!(mem.load_u32_relaxed(ring.cons).unwrap(), cons);
            prop_assert_eq!(mem.load_u32_relaxed(ring.prod).unwrap(), prod);
        }
    }
}

/// A producer and a consumer thread stream 4 MiB through the 2 KiB console ring; the
/// consumer must see every byte once, in order (checks the Acquire/Release pairing).
#[test]
fn two_thread_stream() {
    let page = SharedPages::new(1);
    let mem = page.mem();
    let ring = ByteRing::CONSOLE_OUT;
    const TOTAL: usize = 4 << 20;
    let byte = |i: usize| (i.wrapping_mul(2654435761) >> 7) as u8;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut sent = 0;
            let mut buf = [0u8; 700];
            while sent < TOTAL {
                let n = buf.len().min(TOTAL - sent);
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = byte(sent + k);
                }
                let w = ring.write(&mem, &buf[..n]).unwrap();
                sent += w;
                if w == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut got = 0;
        let mut buf = [0u8; 333];
        while got < TOTAL {
            let n = ring.read(&mem, &mut buf).unwrap();
            for (k, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, byte(got + k), "byte {}", got + k);
            }
            got += n;
            if n == 0 {
                std::thread::yield_now();
            }
        }
    });
}
