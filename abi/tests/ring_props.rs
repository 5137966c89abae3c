//! Property tests of the shared ring against a reference model.
//!
//! * `honest_peers_match_the_model`: random operation sequences on a front and a back
//!   sharing one area (1-4 pages, start indices anywhere, including just below
//!   `u32::MAX` so they wrap) behave exactly like a plain-integer model of `ring.h`:
//!   same results, same entries in the same order, same header contents, same
//!   notification decisions, full/empty exactly when the model says so.
//! * `notify_rule_matches_brute_force`: `new - event < new - old` is "event lies in
//!   (old, new]", checked by enumeration.
//! * `hostile_req_prod` / `hostile_rsp_prod`: an impossible producer index is reported
//!   as `RingError` exactly when it is impossible, and a possible one yields exactly the
//!   entries it claims.
//! * `arbitrary_area_never_breaks_invariants`: arbitrary bytes in the whole area,
//!   arbitrary private start indices, and hostile header writes between operations:
//!   nothing panics and each view's private indices stay within one ring of each other.

use proptest::prelude::*;
use sluice_abi::ring::{
    needs_notify, BackRing, FrontRing, RingError, REQ_EVENT_OFFSET, REQ_PROD_OFFSET,
    RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};
use sluice_abi::shared::SharedPages;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// 64-byte request: 32 slots per page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Req {
    idx: u32,
    tag: u32,
    fill: [u64; 7],
}

/// 12-byte response (the slot is the request's 64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rsp {
    idx: u32,
    tag: u32,
    status: i32,
}

fn req(idx: u32) -> Req {
    Req {
        idx,
        tag: idx ^ 0x5a5a_5a5a,
        fill: [u64::from(idx); 7],
    }
}

fn rsp(idx: u32) -> Rsp {
    Rsp {
        idx,
        tag: !idx,
        status: idx as i32,
    }
}

/// "Does `event` lie in `(old, new]`?", by walking the published range.
fn notify_by_enumeration(old: u32, new: u32, event: u32) -> bool {
    let mut i = old;
    while i != new {
        i = i.wrapping_add(1);
        if i == event {
            return true;
        }
    }
    false
}

#[derive(Clone, Debug)]
enum Op {
    PushRequests(u32),
    PublishRequests { check_notify: bool },
    PopRequests(u32),
    PushResponses(u32),
    PublishResponses { check_notify: bool },
    PopResponses(u32),
    FinalCheckRequests,
    FinalCheckRequestsAtLeast(u32),
    FinalCheckResponses,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..80).prop_map(Op::PushRequests),
        any::<bool>().prop_map(|check_notify| Op::PublishRequests { check_notify }),
        (0u32..80).prop_map(Op::PopRequests),
        (0u32..80).prop_map(Op::PushResponses),
        any::<bool>().prop_map(|check_notify| Op::PublishResponses { check_notify }),
        (0u32..80).prop_map(Op::PopResponses),
        Just(Op::FinalCheckRequests),
        (0u32..20).prop_map(Op::FinalCheckRequestsAtLeast),
        Just(Op::FinalCheckResponses),
    ]
}

fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 200)..=u32::MAX, 0u32..200]
}

/// `ring.h` on plain integers: what each index and event is after each operation.
struct Model {
    size: u32,
    req_prod_pvt: u32,
    req_prod: u32,
    req_event: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    rsp_prod: u32,
    rsp_event: u32,
    rsp_cons: u32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn honest_peers_match_the_model(
        pages in 1usize..=4,
        start in start_index(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let area = SharedPages::new(pages);
        let mut front = FrontRing::<Req, Rsp>::init_at(area.mem(), start).unwrap();
        let mut back = BackRing::<Req, Rsp>::attach(area.mem(), start).unwrap();
        // 64-byte slots: 63 per page fit, rounded down to a power of two.
        let size = ((pages * 4096 - 64) / 64).next_power_of_two() as u32 / 2;
        prop_assert_eq!(front.size(), size);
        prop_assert_eq!(back.size(), size);
        let s1 = start.wrapping_add(1);
        let mut m = Model {
            size, req_prod_pvt: start, req_prod: start, req_event: s1, req_cons: start,
            rsp_prod_pvt: start, rsp_prod: start, rsp_event: s1, rsp_cons: start,
        };
        for op in ops {
            match op {
                Op::PushRequests(k) => for _ in 0..k {
                    let full = m.req_prod_pvt.wrapping_sub(m.rsp_cons) == m.size;
                    prop_assert_eq!(front.is_full(), full);
                    let r = front.push_request(&req(m.req_prod_pvt));
                    if full {
                        prop_assert_eq!(r, Err(RingError::Full));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        m.req_prod_pvt = m.req_prod_pvt.wrapping_add(1);
                    }
                },
                Op::PublishRequests { check_notify } => {
                    let (old, new) = (m.req_prod, m.req_prod_pvt);
                    m.req_prod = new;
                    if check_notify {
                        prop_assert_eq!(
                            front.push_requests_and_check_notify(),
                            Ok(notify_by_enumeration(old, new, m.req_event))
                        );
                    } else {
                        front.push_requests().unwrap();
                    }
                }
                Op::PopRequests(k) => for _ in 0..k {
                    let got = back.pop_request().unwrap();
                    if m.req_prod == m.req_cons {
                        prop_assert_eq!(got, None);
                    } else {
                        prop_assert_eq!(got, Some(req(m.req_cons)));
                        m.req_cons = m.req_cons.wrapping_add(1);
                    }
                },
                Op::PushResponses(k) => for _ in 0..k {
                    let r = back.push_response(&rsp(m.rsp_prod_pvt));
                    if m.rsp_prod_pvt == m.req_cons {
                        prop_assert_eq!(r, Err(RingError::NoRequestToAnswer));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        m.rsp_prod_pvt = m.rsp_prod_pvt.wrapping_add(1);
                    }
                },
                Op::PublishResponses { check_notify } => {
                    let (old, new) = (m.rsp_prod, m.rsp_prod_pvt);
                    m.rsp_prod = new;
                    if check_notify {
                        prop_assert_eq!(
                            back.push_responses_and_check_notify(),
                            Ok(notify_by_enumeration(old, new, m.rsp_event))
                        );
                    } else {
                        back.push_responses().unwrap();
                    }
                }
                Op::PopResponses(k) => for _ in 0..k {
                    let got = front.pop_response().unwrap();
                    if m.rsp_prod == m.rsp_cons {
                        prop_assert_eq!(got, None);
                    } else {
                        prop_assert_eq!(got, Some(rsp(m.rsp_cons)));
                        m.rsp_cons = m.rsp_cons.wrapping_add(1);
                    }
                },
                Op::FinalCheckRequests => {
                    let pending = m.req_prod != m.req_cons;
                    if !pending {
                        m.req_event = m.req_cons.wrapping_add(1);
                    }
                    prop_assert_eq!(back.final_check_for_requests(), Ok(pending));
                }
                Op::FinalCheckRequestsAtLeast(n) => {
                    let n = n.max(1);
                    let enough = m.req_prod.wrapping_sub(m.req_cons) >= n;
                    if !enough {
                        m.req_event = m.req_cons.wrapping_add(n);
                    }
                    prop_assert_eq!(back.final_check_for_requests_at_least(n), Ok(enough));
                }
                Op::FinalCheckResponses => {
                    let pending = m.rsp_prod != m.rsp_cons;
                    if !pending {
                        m.rsp_event = m.rsp_cons.wrapping_add(1);
                    }
                    prop_assert_eq!(front.final_check_for_responses(), Ok(pending));
                }
            }
            let h = front.header().unwrap();
            prop_assert_eq!(
                (h.req_prod, h.req_event, h.rsp_prod, h.rsp_event),
                (m.req_prod, m.req_event, m.rsp_prod, m.rsp_event)
            );
            prop_assert_eq!(front.free_requests(), m.size - m.req_prod_pvt.wrapping_sub(m.rsp_cons));
            prop_assert_eq!(
                (front.req_prod_pvt(), front.rsp_cons(), back.req_cons(), back.rsp_prod_pvt()),
                (m.req_prod_pvt, m.rsp_cons, m.req_cons, m.rsp_prod_pvt)
            );
        }
    }

    #[test]
    fn notify_rule_matches_brute_force(
        old in any::<u32>(),
        published in prop_oneof![0u32..4, 0u32..2048],
        which in 0usize..8,
        event_offset in 0u32..2060,
        random_event in any::<u32>(),
    ) {
        let new = old.wrapping_add(published);
        // The boundaries of (old, new] on either side, plus anything.
        let event = [
            old.wrapping_sub(1), old, old.wrapping_add(1), new.wrapping_sub(1), new,
            new.wrapping_add(1), old.wrapping_add(event_offset), random_event,
        ][which];
        prop_assert_eq!(needs_notify(old, new, event), notify_by_enumeration(old, new, event));
    }

    #[test]
    fn hostile_req_prod(
        start in start_index(),
        consumed in 0u32..=32,
        answered_frac in 0u32..=32,
        claimed in prop_oneof![any::<u32>(), 0u32..40],
    ) {
        let area = SharedPages::new(1);
        let mut front = FrontRing::<Req, Rsp>::init_at(area.mem(), start).unwrap();
        let mut back = BackRing::<Req, Rsp>::attach(area.mem(), start).unwrap();
        let answered = answered_frac.min(consumed);
        for i in 0..consumed {
            front.push_request(&req(start.wrapping_add(i))).unwrap();
        }
        front.push_requests().unwrap();
        for _ in 0..consumed {
            prop_assert!(back.pop_request().unwrap().is_some());
        }
        for i in 0..answered {
            back.push_response(&rsp(i)).unwrap();
        }
        // The hostile front now claims `req_prod = req_cons + claimed` (wrapping).
        let req_cons = back.req_cons();
        let req_prod = req_cons.wrapping_add(claimed);
        area.mem().store_u32_release(REQ_PROD_OFFSET, req_prod).unwrap();
        let room = 32 - (consumed - answered);
        if claimed <= room {
            prop_assert_eq!(back.unconsumed_requests(), Ok(claimed));
            for _ in 0..claimed {
                prop_assert!(back.pop_request().unwrap().is_some());
            }
            prop_assert_eq!(back.pop_request(), Ok(None));
        } else {
            let err = RingError::RequestOverflow {
                req_prod,
                req_cons,
                rsp_prod_pvt: back.rsp_prod_pvt(),
                size: 32,
            };
            prop_assert_eq!(back.unconsumed_requests(), Err(err));
            prop_assert_eq!(back.pop_request(), Err(err));
            prop_assert_eq!(back.final_check_for_requests(), Err(err));
            prop_assert_eq!(back.req_cons(), req_cons, "state unchanged by the error");
        }
    }

    #[test]
    fn hostile_rsp_prod(
        start in start_index(),
        published in 0u32..=32,
        unpublished_frac in 0u32..=32,
        consumed_frac in 0u32..=32,
        claimed in prop_oneof![any::<u32>(), 0u32..40],
    ) {
        let area = SharedPages::new(1);
        let mut front = FrontRing::<Req, Rsp>::init_at(area.mem(), start).unwrap();
        let mut back = BackRing::<Req, Rsp>::attach(area.mem(), start).unwrap();
        let consumed = consumed_frac.min(published);
        let unpublished = unpublished_frac.min(32 - published);
        for i in 0..published {
            front.push_request(&req(i)).unwrap();
        }
        front.push_requests().unwrap();
        for _ in 0..consumed {
            back.pop_request().unwrap().unwrap();
            back.push_response(&rsp(0)).unwrap();
        }
        back.push_responses().unwrap();
        for _ in 0..consumed {
            prop_assert!(front.pop_response().unwrap().is_some());
        }
        for i in 0..unpublished {
            front.push_request(&req(i)).unwrap();
        }
        // The hostile back now claims `rsp_prod = rsp_cons + claimed`.
        let rsp_cons = front.rsp_cons();
        let rsp_prod = rsp_cons.wrapping_add(claimed);
        area.mem().store_u32_release(RSP_PROD_OFFSET, rsp_prod).unwrap();
        let outstanding = published - consumed; // only published requests can be answered
        if claimed <= outstanding {
            prop_assert_eq!(front.unconsumed_responses(), Ok(claimed));
            for _ in 0..claimed {
                prop_assert!(front.pop_response().unwrap().is_some());
            }
            prop_assert_eq!(front.pop_response(), Ok(None));
        } else {
            let err = RingError::ResponseOverflow {
                rsp_prod,
                rsp_cons,
                req_prod: start.wrapping_add(published),
            };
            prop_assert_eq!(front.unconsumed_responses(), Err(err));
            prop_assert_eq!(front.pop_response(), Err(err));
            prop_assert_eq!(front.final_check_for_responses(), Err(err));
            prop_assert_eq!(front.rsp_cons(), rsp_cons, "state unchanged by the error");
        }
    }
}

#[derive(Clone, Debug)]
enum HostileOp {
    Honest(Op),
    /// The peer writes `value` into header word `field` (req_prod, req_event, rsp_prod,
    /// rsp_event).
    Scribble {
        field: usize,
        value: u32,
    },
}

fn hostile_op() -> impl Strategy<Value = HostileOp> {
    prop_oneof![
        3 => op().prop_map(HostileOp::Honest),
        1 => (0usize..4, prop_oneof![any::<u32>(), 0u32..70])
            .prop_map(|(field, value)| HostileOp::Scribble { field, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_area_never_breaks_invariants(
        area_bytes in prop::collection::vec(any::<u8>(), 4096),
        front_start in start_index(),
        back_start in start_index(),
        ops in prop::collection::vec(hostile_op(), 0..120),
    ) {
        let area = SharedPages::new(1);
        let mem = area.mem();
        mem.write_bytes(0, &area_bytes).unwrap();
        // Neither view initialises the header: both attach to whatever is there.
        let mut front = FrontRing::<Req, Rsp>::attach(mem, front_start).unwrap();
        let mut back = BackRing::<Req, Rsp>::attach(mem, back_start).unwrap();
        let size = front.size();
        for op in ops {
            match op {
                HostileOp::Scribble { field, value } => {
                    let off = [REQ_PROD_OFFSET, REQ_EVENT_OFFSET, RSP_PROD_OFFSET, RSP_EVENT_OFFSET][field];
                    mem.store_u32_relaxed(off, value).unwrap();
                }
                HostileOp::Honest(op) => {
                    // Results may be errors (the header is garbage); they must be typed
                    // errors, never panics, and never break the views' own invariants.
                    let _ = match op {
                        Op::PushRequests(k) => (0..k).try_for_each(|i| front.push_request(&req(i))),
                        Op::PublishRequests { check_notify: true } => front.push_requests_and_check_notify().map(drop),
                        Op::PublishRequests { check_notify: false } => front.push_requests(),
                        Op::PopRequests(k) => (0..k).try_for_each(|_| back.pop_request().map(drop)),
                        Op::PushResponses(k) => (0..k).try_for_each(|i| back.push_response(&rsp(i))),
                        Op::PublishResponses { check_notify: true } => back.push_responses_and_check_notify().map(drop),
                        Op::PublishResponses { check_notify: false } => back.push_responses(),
                        Op::PopResponses(k) => (0..k).try_for_each(|_| front.pop_response().map(drop)),
                        Op::FinalCheckRequests => back.final_check_for_requests().map(drop),
                        Op::FinalCheckRequestsAtLeast(n) => back.final_check_for_requests_at_least(n).map(drop),
                        Op::FinalCheckResponses => front.final_check_for_responses().map(drop),
                    };
                }
            }
            prop_assert!(front.outstanding() <= size);
            prop_assert!(front.free_requests() <= size);
            prop_assert!(back.unanswered() <= size);
            if let Ok(n) = back.unconsumed_requests() {
                prop_assert!(n <= size - back.unanswered());
            }
            if let Ok(n) = front.unconsumed_responses() {
                prop_assert!(n <= front.outstanding());
            }
        }
    }
}
