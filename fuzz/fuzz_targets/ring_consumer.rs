//! Fuzz target: the shared-ring views against arbitrary shared memory and a peer that
//! scribbles on it.
//!
//! Input layout: byte 0 picks the geometry (1, 2, 4 or 8 pages; 112-byte or 16-byte
//! slots) and whether the front initialises the header or both views attach to whatever
//! bytes are there; bytes 1..9 are the two views' private start indices; bytes 9..11 a
//! length `h`, then `h` bytes that become the start of the shared area (header and
//! entries); the rest is a sequence of operations on both views, interleaved with
//! hostile writes to the header and entries.
//!
//! Checked: nothing panics or touches memory outside the area (ASan); each view's
//! private indices stay within one ring of each other; a count the ring reports never
//! exceeds what the protocol allows; and while the peer has not scribbled on an
//! initialised ring, the ring is an exact FIFO of what was pushed, with no errors other
//! than `Full` and `NoRequestToAnswer`.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sluice_abi::ring::{
    BackRing, FrontRing, RingError, REQ_EVENT_OFFSET, REQ_PROD_OFFSET, RSP_EVENT_OFFSET,
    RSP_PROD_OFFSET,
};
use sluice_abi::shared::SharedPages;
use std::collections::VecDeque;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// An entry type the target can stamp with a sequence number and read it back.
trait Entry: FromBytes + IntoBytes + Immutable + Copy + std::fmt::Debug {
    fn with_seq(seq: u64) -> Self;
    fn seq(&self) -> u64;
}

/// blkif-sized request.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Wide {
    seq: u64,
    body: [u8; 104],
}

impl Entry for Wide {
    fn with_seq(seq: u64) -> Self {
        Self {
            seq,
            body: [seq as u8; 104],
        }
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Entry for u64 {
    fn with_seq(seq: u64) -> Self {
        seq
    }
    fn seq(&self) -> u64 {
        *self
    }
}

/// 12-byte, 4-aligned response: with a `u64` request the slot is 16 bytes (size rounded
/// up to the larger alignment).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Narrow {
    lo: u32,
    hi: u32,
    tag: u32,
}

impl Entry for Narrow {
    fn with_seq(seq: u64) -> Self {
        Self {
            lo: seq as u32,
            hi: (seq >> 32) as u32,
            tag: !(seq as u32),
        }
    }
    fn seq(&self) -> u64 {
        u64::from(self.lo) | u64::from(self.hi) << 32
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    PushRequests(u8),
    PublishRequests { check_notify: bool },
    PopRequests(u8),
    PushResponses(u8),
    PublishResponses { check_notify: bool },
    PopResponses(u8),
    FinalCheckRequests,
    FinalCheckResponses,
    ScribbleIndex { field: u8, value: u32 },
    ScribbleEntry { offset: u16, bytes: [u8; 8] },
}

/// Errors an honest peer can cause: the caller's own flow control.
fn flow_control(e: &RingError) -> bool {
    matches!(e, RingError::Full | RingError::NoRequestToAnswer)
}

fn run<Req: Entry, Rsp: Entry>(
    pages: usize,
    init: bool,
    front_start: u32,
    back_start: u32,
    area_bytes: &[u8],
    u: &mut Unstructured<'_>,
) {
    let area = SharedPages::new(pages);
    let mem = area.mem();
    let n = area_bytes.len().min(mem.len());
    mem.write_bytes(0, &area_bytes[..n]).unwrap();
    let (mut front, mut back) = if init {
        (
            FrontRing::<Req, Rsp>::init_at(mem, front_start).unwrap(),
            BackRing::<Req, Rsp>::attach(mem, front_start).unwrap(),
        )
    } else {
        (
            FrontRing::<Req, Rsp>::attach(mem, front_start).unwrap(),
            BackRing::<Req, Rsp>::attach(mem, back_start).unwrap(),
        )
    };
    let size = front.size();
    assert_eq!(size, back.size());
    // The FIFO model, valid while `honest`.
    let mut honest = init;
    let mut next_seq = 0u64;
    let mut requests: VecDeque<u64> = VecDeque::new(); // pushed, not yet popped by back
    let mut unanswered: VecDeque<u64> = VecDeque::new(); // popped by back, not answered
    let mut responses: VecDeque<u64> = VecDeque::new(); // answered, not yet popped by front
    let mut published_requests = 0usize; // of `requests`, how many the back may see
    let mut published_responses = 0usize;

    let mut step = 0;
    while let Ok(op) = Op::arbitrary(u) {
        step += 1;
        if step > 2000 {
            break;
        }
        let result: Result<(), RingError> = match op {
            Op::PushRequests(k) => (0..k).try_for_each(|_| {
                front.push_request(&Req::with_seq(next_seq))?;
                requests.push_back(next_seq);
                next_seq += 1;
                Ok(())
            }),
            Op::PublishRequests { check_notify } => {
                let r = if check_notify {
                    front.push_requests_and_check_notify().map(drop)
                } else {
                    front.push_requests()
                };
                if r.is_ok() {
                    published_requests = requests.len();
                }
                r
            }
            Op::PopRequests(k) => (0..k).try_for_each(|_| {
                match back.pop_request()? {
                    Some(req) if honest => {
                        assert!(published_requests > 0, "popped an unpublished request");
                        let want = requests.pop_front().unwrap();
                        published_requests -= 1;
                        assert_eq!(req.seq(), want, "request out of order");
                        unanswered.push_back(want);
                    }
                    Some(_) => {}
                    None if honest => assert_eq!(published_requests, 0, "missed a request"),
                    None => {}
                }
                Ok(())
            }),
            Op::PushResponses(k) => (0..k).try_for_each(|_| {
                let seq = unanswered.front().copied().unwrap_or(u64::MAX);
                back.push_response(&Rsp::with_seq(seq))?;
                if honest {
                    responses.push_back(unanswered.pop_front().unwrap());
                }
                Ok(())
            }),
            Op::PublishResponses { check_notify } => {
                let r = if check_notify {
                    back.push_responses_and_check_notify().map(drop)
                } else {
                    back.push_responses()
                };
                if r.is_ok() {
                    published_responses = responses.len();
                }
                r
            }
            Op::PopResponses(k) => (0..k).try_for_each(|_| {
                match front.pop_response()? {
                    Some(rsp) if honest => {
                        assert!(published_responses > 0, "popped an unpublished response");
                        let want = responses.pop_front().unwrap();
                        published_responses -= 1;
                        assert_eq!(rsp.seq(), want, "response out of order");
                    }
                    Some(_) => {}
                    None if honest => assert_eq!(published_responses, 0, "missed a response"),
                    None => {}
                }
                Ok(())
            }),
            Op::FinalCheckRequests => back.final_check_for_requests().map(|pending| {
                if honest {
                    assert_eq!(pending, published_requests > 0);
                }
            }),
            Op::FinalCheckResponses => front.final_check_for_responses().map(|pending| {
                if honest {
                    assert_eq!(pending, published_responses > 0);
                }
            }),
            Op::ScribbleIndex { field, value } => {
                let off = [
                    REQ_PROD_OFFSET,
                    REQ_EVENT_OFFSET,
                    RSP_PROD_OFFSET,
                    RSP_EVENT_OFFSET,
                ][usize::from(field % 4)];
                mem.store_u32_relaxed(off, value).unwrap();
                // Writing an event index is harmless to the FIFO; a producer index is not.
                honest &= off == REQ_EVENT_OFFSET || off == RSP_EVENT_OFFSET;
                Ok(())
            }
            Op::ScribbleEntry { offset, bytes } => {
                // Anywhere in the area; out-of-range offsets must be refused, not panic.
                let r = mem.write_bytes(usize::from(offset) * 8, &bytes);
                if r.is_ok() {
                    honest = false;
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            assert!(!honest || flow_control(&e), "honest ring failed: {e}");
        }
        // The views' own invariants hold whatever the peer did.
        assert!(front.outstanding() <= size);
        assert!(front.free_requests() <= size);
        assert!(back.unanswered() <= size);
        if let Ok(n) = back.unconsumed_requests() {
            assert!(n <= size - back.unanswered());
        }
        if let Ok(n) = front.unconsumed_responses() {
            assert!(n <= front.outstanding());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let pages = 1usize << (data[0] & 3);
    let wide = data[0] & 4 != 0;
    let init = data[0] & 8 != 0;
    let front_start = u32::from_le_bytes(data[1..5].try_into().unwrap());
    let back_start = u32::from_le_bytes(data[5..9].try_into().unwrap());
    let h = usize::from(u16::from_le_bytes([data[9], data[10]]));
    let rest = &data[11..];
    let (area_bytes, ops) = rest.split_at(h.min(rest.len()));
    let mut u = Unstructured::new(ops);
    if wide {
        run::<Wide, Narrow>(pages, init, front_start, back_start, area_bytes, &mut u);
    } else {
        run::<u64, Narrow>(pages, init, front_start, back_start, area_bytes, &mut u);
    }
});
