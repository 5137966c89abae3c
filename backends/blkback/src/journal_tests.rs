//! The journal against a ring in plain memory: requests answered out of order, the
//! process "killed" at each step of the protocol, then recovered.

use super::*;
use sluice_abi::blkif::{BlkifBackRing, BlkifFrontRing, BlkifOp, BlkifResponse, BlkifRsp};
use zerocopy::IntoBytes;

const ID: RingId = [5, 9, 1, 17];

fn req(id: u64) -> BlkifRequest {
    BlkifRequest {
        operation: BlkifOp::Write as u8,
        id,
        sector_number: id * 8,
        ..Default::default()
    }
}

struct World {
    ring: Vec<u64>,
    journal: Vec<u64>,
}

impl World {
    fn new() -> Self {
        World {
            ring: vec![0; 512],
            journal: vec![0; journal_len(32).div_ceil(8)],
        }
    }
}

/// The frontend publishes `n` requests (ids 100..); the backend takes them all.
fn take_all<'m>(
    front: &mut BlkifFrontRing<'_>,
    back: &mut BlkifBackRing<'_>,
    j: &mut Journal<'m>,
    n: u64,
) -> Vec<Entry> {
    for i in 0..n {
        front.push_request(&req(100 + i)).unwrap();
    }
    front.push_requests().unwrap();
    let mut out = Vec::new();
    while let Some(r) = back.pop_request().unwrap() {
        out.push(j.take(&r, back.req_cons().wrapping_sub(1)).unwrap());
    }
    out
}

fn answer(back: &mut BlkifBackRing<'_>, j: &mut Journal<'_>, e: Entry, id: u64) {
    j.answering(e, back.rsp_prod_pvt()).unwrap();
    back.push_response(&BlkifResponse::new(
        id,
        BlkifOp::Write as u8,
        BlkifRsp::Okay,
    ))
    .unwrap();
}

fn responses(front: &mut BlkifFrontRing<'_>) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(r) = front.pop_response().unwrap() {
        ids.push(r.id);
    }
    ids
}

/// Answers 3, 7, 1 (published), 5 and 9 (written, `publish_ring`: the ring's rsp_prod
/// stored, the journal not told), 2 (recorded as answering, not written), then
/// "dies": the recovered journal serves each unanswered request once.
fn crash_with_out_of_order_answers(publish_ring: bool) {
    let mut w = World::new();
    let ring_mem = SharedMem::from_mut_slice(w.ring.as_mut_bytes());
    let jmem = SharedMem::from_mut_slice(w.journal.as_mut_bytes());
    let mut front = BlkifFrontRing::init(ring_mem).unwrap();
    {
        let mut back = BlkifBackRing::new(ring_mem).unwrap();
        let mut j = Journal::create(jmem, back.size(), ID, 0).unwrap();
        let e = take_all(&mut front, &mut back, &mut j, 10);
        for k in [3, 7, 1] {
            answer(&mut back, &mut j, e[k], 100 + k as u64);
        }
        back.push_responses().unwrap();
        j.published(back.rsp_prod_pvt()).unwrap();
        for k in [5, 9] {
            answer(&mut back, &mut j, e[k], 100 + k as u64);
        }
        if publish_ring {
            back.push_responses().unwrap();
        }
        j.answering(e[2], back.rsp_prod_pvt()).unwrap();
    }
    let shared = if publish_ring { 5 } else { 3 };
    let (mut j, rec) = Journal::recover(jmem, 32, ID, shared).unwrap();
    assert_eq!((rec.rsp_prod, rec.req_cons), (shared, 10));
    let mut expect: Vec<u64> = vec![100, 102, 104, 105, 106, 108, 109];
    if publish_ring {
        expect.retain(|&id| id != 105 && id != 109);
    }
    let ids: Vec<u64> = rec.pending.iter().map(|(_, r)| r.id).collect();
    assert_eq!(ids, expect, "unanswered requests, oldest first");
    let mut back = BlkifBackRing::attach_at(ring_mem, rec.rsp_prod, rec.req_cons).unwrap();
    for (e, r) in &rec.pending {
        answer(&mut back, &mut j, *e, r.id);
    }
    back.push_responses().unwrap();
    j.published(back.rsp_prod_pvt()).unwrap();
    // One new request after the restart is taken from index 10 on.
    let e = take_all(&mut front, &mut back, &mut j, 1);
    assert_eq!(e.len(), 1);
    answer(&mut back, &mut j, e[0], 100);
    back.push_responses().unwrap();
    j.published(back.rsp_prod_pvt()).unwrap();
    let mut got = responses(&mut front);
    assert_eq!(got.pop(), Some(100), "the new request, answered last");
    got.sort();
    assert_eq!(
        got,
        (100..110).collect::<Vec<_>>(),
        "each request answered once"
    );
}

#[test]
fn out_of_order_answers_then_a_crash_before_publishing() {
    crash_with_out_of_order_answers(false);
}

#[test]
fn out_of_order_answers_then_a_crash_between_publishing_and_the_journal() {
    crash_with_out_of_order_answers(true);
}

/// A crash between an entry's record and the header's `req_cons`: the request is
/// served from the journal, and not taken from the ring again.
#[test]
fn crash_between_the_entry_and_the_header() {
    let mut w = World::new();
    let ring_mem = SharedMem::from_mut_slice(w.ring.as_mut_bytes());
    let jmem = SharedMem::from_mut_slice(w.journal.as_mut_bytes());
    let mut front = BlkifFrontRing::init(ring_mem).unwrap();
    {
        let mut back = BlkifBackRing::new(ring_mem).unwrap();
        let mut j = Journal::create(jmem, 32, ID, 0).unwrap();
        take_all(&mut front, &mut back, &mut j, 2);
        jmem.store_u32_relaxed(H_REQ_CONS, 1).unwrap();
    }
    let (_, rec) = Journal::recover(jmem, 32, ID, 0).unwrap();
    assert_eq!(rec.req_cons, 2);
    assert_eq!(rec.pending.len(), 2);
}

/// A restart with nothing in flight (the daemon stopped cleanly, or idle).
#[test]
fn idle_restart_carries_on_at_the_same_indices() {
    let mut w = World::new();
    let ring_mem = SharedMem::from_mut_slice(w.ring.as_mut_bytes());
    let jmem = SharedMem::from_mut_slice(w.journal.as_mut_bytes());
    let mut front = BlkifFrontRing::init(ring_mem).unwrap();
    let mut back = BlkifBackRing::new(ring_mem).unwrap();
    let mut j = Journal::create(jmem, 32, ID, 0).unwrap();
    for _ in 0..5 {
        let e = take_all(&mut front, &mut back, &mut j, 20);
        for (k, e) in e.into_iter().enumerate().rev() {
            answer(&mut back, &mut j, e, 100 + k as u64);
        }
        back.push_responses().unwrap();
        j.published(back.rsp_prod_pvt()).unwrap();
        assert_eq!(responses(&mut front).len(), 20);
    }
    let (_, rec) = Journal::recover(jmem, 32, ID, 100).unwrap();
    assert_eq!(
        (rec.rsp_prod, rec.req_cons, rec.pending.len()),
        (100, 100, 0)
    );
}

/// What the journal refuses: another ring's, another size, a `rsp_prod` the guest
/// moved beyond the responses written, an entry in no known state.
#[test]
fn a_journal_that_does_not_add_up_is_refused() {
    let mut w = World::new();
    let ring_mem = SharedMem::from_mut_slice(w.ring.as_mut_bytes());
    let jmem = SharedMem::from_mut_slice(w.journal.as_mut_bytes());
    let mut front = BlkifFrontRing::init(ring_mem).unwrap();
    let mut back = BlkifBackRing::new(ring_mem).unwrap();
    let mut j = Journal::create(jmem, 32, ID, 0).unwrap();
    let e = take_all(&mut front, &mut back, &mut j, 4);
    answer(&mut back, &mut j, e[1], 101);
    let mismatch = |r: Result<_, JournalError>| matches!(r, Err(JournalError::Mismatch(_)));
    assert!(mismatch(Journal::recover(jmem, 32, [5, 9, 2, 17], 0)));
    assert!(mismatch(Journal::recover(jmem, 16, ID, 0)));
    assert!(
        mismatch(Journal::recover(jmem, 32, ID, 2)),
        "rsp_prod too far"
    );
    assert!(mismatch(Journal::recover(jmem, 32, ID, u32::MAX)), "behind");
    assert!(Journal::recover(jmem, 32, ID, 1).is_ok());
    jmem.store_u32_relaxed(HEADER + E_STATE, 7).unwrap();
    assert!(mismatch(Journal::recover(jmem, 32, ID, 1)));
    assert!(matches!(
        Journal::create(jmem, 64, ID, 0),
        Err(JournalError::Mem(_))
    ));
}

/// More requests taken than the ring holds cannot be recorded.
#[test]
fn the_journal_holds_one_ring() {
    let mut w = World::new();
    let jmem = SharedMem::from_mut_slice(w.journal.as_mut_bytes());
    let mut j = Journal::create(jmem, 32, ID, 0).unwrap();
    for i in 0..32 {
        j.take(&req(i), i as u32).unwrap();
    }
    assert!(matches!(j.take(&req(33), 33), Err(JournalError::Full)));
}
