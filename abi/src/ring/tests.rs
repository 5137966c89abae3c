//! Unit tests of the ring views: geometry against `io/ring.h`, the notification rule,
//! round trips, full rings, resumed views, and hostile producer indices. (Miri runs
//! them: `cargo xtask test --suite abi-ring-miri` filters on `ring::tests`.)

use super::*;
use crate::shared::{SharedMem, SharedPages};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

#[test]
fn front_resume_keeps_private_indices_and_refuses_impossible_ones() {
    let pages = SharedPages::new(1);
    let mut f = FrontRing::<u64, u64>::init(pages.mem()).unwrap();
    f.push_request(&1).unwrap();
    let at = f.indices();
    let g = FrontRing::<u64, u64>::resume(pages.mem(), at).unwrap();
    assert_eq!(
        (g.req_prod_pvt(), g.free_requests()),
        (1, f.free_requests())
    );
    let bad = FrontIndices {
        req_prod_pvt: 1000,
        ..FrontIndices::default()
    };
    assert!(matches!(
        FrontRing::<u64, u64>::resume(pages.mem(), bad),
        Err(RingError::Full)
    ));
    let bad = FrontIndices {
        rsp_prod_seen: 1,
        ..FrontIndices::default()
    };
    assert!(FrontRing::<u64, u64>::resume(pages.mem(), bad).is_err());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Req {
    id: u64,
    body: [u8; 104],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rsp {
    id: u64,
    status: i16,
    _pad: [u8; 6],
}

fn req(id: u64) -> Req {
    Req {
        id,
        body: [id as u8; 104],
    }
}

fn rsp(id: u64) -> Rsp {
    Rsp {
        id,
        status: 0,
        _pad: [0; 6],
    }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[test]
fn geometry_matches_ring_h() {
    // 112-byte blkif-sized entries: (4096 - 64) / 112 = 36 -> 32.
    assert_eq!(entry_size::<Req, Rsp>(), 112);
    assert_eq!(ring_size(4096, 112), Ok(32));
    assert_eq!(ring_size(2 * 4096, 112), Ok(64));
    assert_eq!(ring_size(4096, 8), Ok(256)); // 504 -> 256
    assert_eq!(ring_size(64 + 12, 12), Ok(1));
    assert!(ring_size(64 + 11, 12).is_err());
    assert!(ring_size(4096, 0).is_err());
    // union { [u8; 12]; u64 } is 16 bytes: size rounded up to the larger alignment.
    assert_eq!(entry_size::<[u8; 12], u64>(), 16);
    assert_eq!(entry_size::<u16, [u8; 3]>(), 4);
}

#[test]
fn notify_rule() {
    assert!(needs_notify(0, 1, 1));
    assert!(!needs_notify(1, 2, 1));
    assert!(needs_notify(0, 5, 3));
    assert!(!needs_notify(0, 5, 6));
    assert!(needs_notify(u32::MAX - 1, 2, 0));
    assert!(!needs_notify(3, 3, 3)); // nothing published: never notify
}

#[test]
fn round_trip_with_notifications() {
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0);
    let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
    let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
    assert_eq!(front.size(), 32);
    assert_eq!(front.free_requests(), 32);

    // A fresh ring has req_event = 1: the first request notifies.
    front.push_request(&req(7)).unwrap();
    assert_eq!(back.unconsumed_requests(), Ok(0), "not yet published");
    assert!(front.push_requests_and_check_notify().unwrap());
    // The back has not re-armed (req_event still 1): further pushes do not notify.
    front.push_request(&req(8)).unwrap();
    assert!(!front.push_requests_and_check_notify().unwrap());

    assert_eq!(back.pop_request().unwrap(), Some(req(7)));
    assert_eq!(back.pop_request().unwrap(), Some(req(8)));
    assert_eq!(back.pop_request().unwrap(), None);
    assert!(!back.final_check_for_requests().unwrap());
    assert_eq!(back.header().unwrap().req_event, 3);

    back.push_response(&rsp(7)).unwrap();
    back.push_response(&rsp(8)).unwrap();
    assert_eq!(
        back.push_response(&rsp(9)),
        Err(RingError::NoRequestToAnswer)
    );
    // rsp_event is still 1 from init: response 0 (index 0 -> 1) crosses it.
    assert!(back.push_responses_and_check_notify().unwrap());
    assert_eq!(front.pop_response().unwrap(), Some(rsp(7)));
    assert_eq!(front.pop_response().unwrap(), Some(rsp(8)));
    assert_eq!(front.pop_response().unwrap(), None);
    assert!(!front.final_check_for_responses().unwrap());

    // Now the back sleeps with req_event = 3: the next request notifies.
    front.push_request(&req(9)).unwrap();
    assert!(front.push_requests_and_check_notify().unwrap());
}

#[test]
fn resumed_back_serves_only_unanswered_requests() {
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0);
    let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
    // 40 round trips (past one lap of the 32-slot ring), then the back dies.
    {
        let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
        for i in 0..40 {
            front.push_request(&req(i)).unwrap();
            front.push_requests_and_check_notify().unwrap();
            assert_eq!(back.pop_request().unwrap(), Some(req(i)));
            back.push_response(&rsp(i)).unwrap();
            back.push_responses_and_check_notify().unwrap();
            assert_eq!(front.pop_response().unwrap(), Some(rsp(i)));
        }
    }
    // One request published while no back end ran.
    front.push_request(&req(40)).unwrap();
    front.push_requests_and_check_notify().unwrap();
    // A fresh back at index 0 would take 41 "requests" from a 32-slot ring.
    assert!(BackRing::<Req, Rsp>::new(mem)
        .unwrap()
        .pop_request()
        .is_err());
    let mut back = BackRing::<Req, Rsp>::resume(mem).unwrap();
    assert_eq!(back.pop_request().unwrap(), Some(req(40)));
    assert_eq!(back.pop_request().unwrap(), None);
    back.push_response(&rsp(40)).unwrap();
    back.push_responses_and_check_notify().unwrap();
    assert_eq!(front.pop_response().unwrap(), Some(rsp(40)));
}

#[test]
fn full_ring_refuses_and_recovers() {
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0);
    let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
    let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
    for i in 0..32 {
        front.push_request(&req(i)).unwrap();
    }
    assert!(front.is_full());
    assert_eq!(front.push_request(&req(99)), Err(RingError::Full));
    front.push_requests().unwrap();
    for i in 0..32 {
        assert_eq!(back.pop_request().unwrap(), Some(req(i)));
        back.push_response(&rsp(i)).unwrap();
    }
    back.push_responses().unwrap();
    assert_eq!(front.pop_response().unwrap(), Some(rsp(0)));
    assert_eq!(front.free_requests(), 1);
    front.push_request(&req(32)).unwrap();
}

#[test]
fn final_check_sees_late_request() {
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0);
    let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
    let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
    assert!(!back.final_check_for_requests().unwrap());
    front.push_request(&req(1)).unwrap();
    front.push_requests().unwrap(); // published without looking at req_event
    assert!(back.final_check_for_requests().unwrap());
}

#[test]
fn hostile_req_prod_is_an_error() {
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0);
    let _front = FrontRing::<Req, Rsp>::init(mem).unwrap();
    let mut back = BackRing::<Req, Rsp>::new(mem).unwrap();
    mem.store_u32_relaxed(REQ_PROD_OFFSET, 33).unwrap();
    assert!(matches!(
        back.pop_request(),
        Err(RingError::RequestOverflow { req_prod: 33, .. })
    ));
    mem.store_u32_relaxed(REQ_PROD_OFFSET, u32::MAX).unwrap(); // "behind" req_cons
    assert!(back.unconsumed_requests().is_err());
    mem.store_u32_relaxed(REQ_PROD_OFFSET, 32).unwrap();
    assert_eq!(back.unconsumed_requests(), Ok(32));
    assert!(back.pop_request().unwrap().is_some());
    assert_eq!(back.req_cons(), 1);
}

#[test]
fn hostile_rsp_prod_is_an_error() {
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0);
    let mut front = FrontRing::<Req, Rsp>::init(mem).unwrap();
    front.push_request(&req(1)).unwrap();
    // One request pushed but unpublished: no response can exist yet.
    mem.store_u32_relaxed(RSP_PROD_OFFSET, 1).unwrap();
    assert!(matches!(
        front.pop_response(),
        Err(RingError::ResponseOverflow { rsp_prod: 1, .. })
    ));
    front.push_requests().unwrap();
    assert!(front.pop_response().unwrap().is_some());
    assert_eq!(front.pop_response(), Ok(None));
}

#[test]
fn rejects_bad_areas() {
    let mut small = [0u32; 19]; // 76 bytes < 64 + 112
    let mem = SharedMem::from_mut_slice(small.as_mut_bytes());
    assert!(matches!(
        FrontRing::<Req, Rsp>::init(mem),
        Err(RingError::AreaTooSmall {
            len: 76,
            needed: 176
        })
    ));
    let mut page = Page([0; 4096]);
    let mem = SharedMem::from_mut_slice(&mut page.0[1..]);
    assert!(matches!(
        BackRing::<Req, Rsp>::new(mem),
        Err(RingError::Misaligned { .. })
    ));
    let _ = Req::new_zeroed();
}
