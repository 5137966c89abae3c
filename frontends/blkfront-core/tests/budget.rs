//! The per-ring budget of pages in flight (data + indirect pages of requests sent and
//! not yet answered): a request that would exceed it is refused with nothing taken,
//! completions give the pages back, a request never needs more than the whole budget,
//! and with persistent grants a ring never shows the backend more distinct grants than
//! its budget (the backend's per-ring cache, 1056 in Linux blkback and sluice-blkback).

mod fake;

use fake::bed::Bed;
use fake::BackendConfig;
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    request_pages, BlockIo, Event, FrontendConfig, IoOp, SubmitError, DEFAULT_PAGES_PER_RING,
    DEFAULT_PERSISTENT_PAGES_PER_RING,
};

const SECTORS: u64 = 32768; // 16 MiB
/// Sectors in a 1 MiB request.
const MIB: u64 = 2048;

/// A frontend connected to a fake backend with a 16 MiB disk.
fn up(back: BackendConfig, front: FrontendConfig) -> Bed {
    let mut b = Bed::new(back, front, SECTORS);
    b.bring_up();
    b
}

/// What a refused submit must leave unchanged.
fn snapshot(b: &Bed) -> (usize, usize, u64, usize, usize, usize) {
    let w = b.world.borrow();
    (
        w.live_grants(),
        w.live_allocs(),
        b.front.stats().sent,
        b.front.in_flight(),
        b.front.pages_in_flight(0),
        b.front.ring_pages(0),
    )
}

fn one_queue() -> BackendConfig {
    BackendConfig {
        max_queues: 1,
        ..Default::default()
    }
}

fn mib_requests(budget: usize) -> FrontendConfig {
    FrontendConfig {
        max_indirect_segments: 256,
        persistent_pages_per_ring: budget,
        ..Default::default()
    }
}

#[test]
fn a_request_past_the_budget_is_refused_without_side_effects() {
    // Two 1 MiB requests (2 x 257 pages) fit in 600, a third does not.
    let mut b = up(one_queue(), mib_requests(600));
    assert_eq!((b.front.page_budget(), b.front.max_segments()), (600, 256));
    let data = b.pages(256, 1);
    let first = b.submit(0, Bed::io(IoOp::Write, 0, &data)).unwrap();
    let second = b.submit(0, Bed::io(IoOp::Write, MIB, &data)).unwrap();
    assert_eq!(b.front.pages_in_flight(0), 514);
    let before = snapshot(&b);
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Write, 2 * MIB, &data)),
        Err(SubmitError::PageBudget {
            pages: 257,
            in_flight: 514,
            budget: 600
        })
    );
    assert_eq!(snapshot(&b), before, "a refused request took nothing");
    // 86 pages still fit (600 = 514 + 86), 87 do not (+1 indirect page).
    let small = b.submit(0, Bed::io(IoOp::Write, 3 * MIB, &data[..85]));
    assert!(small.is_ok());
    assert_eq!(b.front.pages_in_flight(0), 600);
    let before = snapshot(&b);
    assert!(matches!(
        b.submit(0, Bed::io(IoOp::Read, 0, &data[..1])),
        Err(SubmitError::PageBudget { pages: 1, .. })
    ));
    // A discard holds no pages: it still goes.
    let discard = BlockIo {
        op: IoOp::Discard {
            nr_sectors: 8,
            secure: false,
        },
        sector: 4 * MIB,
        segments: Vec::new(),
    };
    let d = b.submit(0, discard).unwrap();
    assert_eq!(snapshot(&b).4, before.4);
    // Completions give every page back, to the ring's pool.
    assert_eq!(b.pump().unwrap(), 4);
    for t in [first, second, small.unwrap(), d] {
        assert_eq!(b.done.borrow().get(&t), Some(&Ok(())));
    }
    assert_eq!(b.front.pages_in_flight(0), 0);
    assert_eq!(b.front.ring_pages(0), 600);
    // The refused request goes now, on pages from the pool (no new grants).
    let grants = b.world.borrow().live_grants();
    let third = b.submit(0, Bed::io(IoOp::Write, 2 * MIB, &data)).unwrap();
    assert_eq!(b.world.borrow().live_grants(), grants);
    assert_eq!(b.pump().unwrap(), 1);
    assert_eq!(b.done.borrow().get(&third), Some(&Ok(())));
    let want = b.bytes(&data);
    assert_eq!(b.disk(2 * MIB, want.len()), &want[..]);
}

#[test]
fn a_request_never_needs_more_than_the_whole_budget() {
    // A budget of 100 pages limits requests to 99 segments (+1 indirect page).
    let mut b = up(one_queue(), mib_requests(100));
    assert_eq!((b.front.page_budget(), b.front.max_segments()), (100, 99));
    assert_eq!(request_pages(99), 100);
    let data = b.pages(100, 2);
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Write, 0, &data)),
        Err(SubmitError::BadSegmentCount {
            given: 100,
            max: 99
        })
    );
    // The largest request takes the whole budget and goes on an idle ring.
    let t = b.submit(0, Bed::io(IoOp::Write, 0, &data[..99])).unwrap();
    assert_eq!(b.front.pages_in_flight(0), 100);
    assert!(matches!(
        b.submit(0, Bed::io(IoOp::Write, 0, &data[..1])),
        Err(SubmitError::PageBudget { .. })
    ));
    b.pump().unwrap();
    assert_eq!(b.done.borrow().get(&t), Some(&Ok(())));
    // A budget below a direct request's 11 pages is raised to 11.
    let b = up(one_queue(), mib_requests(3));
    assert_eq!((b.front.page_budget(), b.front.max_segments()), (11, 11));
}

#[test]
fn small_requests_fill_the_queue_depth_large_ones_the_budget() {
    let mut b = up(
        BackendConfig {
            max_queues: 1,
            max_ring_page_order: 0,
            ..Default::default()
        },
        mib_requests(DEFAULT_PERSISTENT_PAGES_PER_RING),
    );
    assert_eq!(b.front.ring_slots(), 32);
    let data = b.pages(256, 3);
    // 32 x 4 KiB: limited by the ring's 32 slots, not by pages.
    for i in 0..32 {
        b.submit(0, Bed::io(IoOp::Write, i * 8, &data[..1]))
            .unwrap();
    }
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Write, 0, &data[..1])),
        Err(SubmitError::RingFull)
    );
    b.pump().unwrap();
    // 1 MiB: four (4 x 257 = 1028 of 1056 pages).
    for i in 0..4 {
        b.submit(0, Bed::io(IoOp::Read, i * MIB, &data)).unwrap();
    }
    assert!(matches!(
        b.submit(0, Bed::io(IoOp::Read, 4 * MIB, &data)),
        Err(SubmitError::PageBudget {
            pages: 257,
            in_flight: 1028,
            budget: 1056
        })
    ));
    b.pump().unwrap();
    assert_eq!(b.done.borrow().len(), 36);
    assert!(b.done.borrow().values().all(|r| r.is_ok()));
}

#[test]
fn without_persistent_grants_the_other_budget_applies() {
    let mut b = up(
        BackendConfig {
            max_queues: 1,
            persistent: false,
            ..Default::default()
        },
        FrontendConfig {
            max_indirect_segments: 256,
            ..Default::default()
        },
    );
    assert!(!b.front.persistent());
    assert_eq!(b.front.page_budget(), DEFAULT_PAGES_PER_RING);
    let data = b.pages(256, 4);
    let rings = b.world.borrow().live_grants();
    for i in 0..8 {
        b.submit(0, Bed::io(IoOp::Write, i * MIB, &data)).unwrap();
    }
    assert!(matches!(
        b.submit(0, Bed::io(IoOp::Write, 0, &data)),
        Err(SubmitError::PageBudget { .. })
    ));
    assert_eq!(b.world.borrow().live_grants(), rings + 8 * 257);
    b.pump().unwrap();
    // Every grant ended at completion (the ring's own grants stay).
    assert_eq!(b.world.borrow().live_grants(), rings);
    assert_eq!(b.front.pages_in_flight(0), 0);
}

#[test]
fn a_ring_shows_its_backend_no_more_grants_than_its_budget() {
    // Two rings, 1 MiB requests, both kept as full as the budget allows for many
    // rounds: each ring's pages come from its own pool, so the grants a ring's backend
    // sees (and would cache persistently) stay within the budget.
    let mut b = up(
        BackendConfig {
            max_queues: 2,
            ..Default::default()
        },
        mib_requests(DEFAULT_PERSISTENT_PAGES_PER_RING),
    );
    assert_eq!(b.front.queues(), 2);
    let data = b.pages(256, 5);
    let mut sent = 0;
    for round in 0..12u64 {
        // Alternate which ring fills first, so pages freed by one ring are free while
        // the other takes more.
        for k in 0..2 {
            let q = ((round + k) % 2) as usize;
            loop {
                let sector = (sent % 14) * MIB;
                match b.submit(q, Bed::io(IoOp::Write, sector, &data)) {
                    Ok(_) => sent += 1,
                    Err(SubmitError::PageBudget { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(b.front.pages_in_flight(q), 4 * 257);
        }
        // Answer one ring only, then the next round refills it while the other waits.
        b.back.serve();
        if round % 3 == 2 {
            b.pump().unwrap();
        } else {
            // Complete only ring (round % 2).
            let q = (round % 2) as usize;
            let port = b.front.port(q).unwrap();
            if b.world.borrow_mut().take_front_events(port) > 0 {
                let done = b.done.clone();
                b.front
                    .handle_event(&mut b.plat, q, |t, r| {
                        done.borrow_mut().insert(t, r);
                    })
                    .unwrap();
            }
        }
    }
    while b.done.borrow().len() < sent as usize {
        assert!(b.pump().unwrap() > 0, "no progress");
    }
    assert!(sent >= 48);
    assert!(b.done.borrow().values().all(|r| r.is_ok()));
    for q in 0..2 {
        let seen = b.back.seen[q].len();
        assert!(
            seen <= DEFAULT_PERSISTENT_PAGES_PER_RING,
            "ring {q}: {seen} distinct grants"
        );
        assert!(b.front.ring_pages(q) <= DEFAULT_PERSISTENT_PAGES_PER_RING);
    }
}

#[test]
fn held_io_is_sent_as_the_budget_allows_after_a_reconnect() {
    let mut b = up(one_queue(), mib_requests(DEFAULT_PERSISTENT_PAGES_PER_RING));
    let data = b.pages(256, 6);
    b.back.close();
    assert!(matches!(
        b.changed(XenbusState::Closed).unwrap(),
        Event::Disconnected { .. }
    ));
    let tags: Vec<u64> = (0..6)
        .map(|i| b.submit(0, Bed::io(IoOp::Write, i * MIB, &data)).unwrap())
        .collect();
    assert_eq!(b.front.held(), 6);
    b.back.init_wait();
    b.changed(XenbusState::InitWait).unwrap();
    b.back.connect().unwrap();
    b.changed(XenbusState::Connected).unwrap();
    // Four fit; two wait for completions.
    assert_eq!((b.front.in_flight(), b.front.held()), (4, 2));
    while b.done.borrow().len() < tags.len() {
        assert!(b.pump().unwrap() > 0, "no progress");
    }
    assert!(tags.iter().all(|t| b.done.borrow().get(t) == Some(&Ok(()))));
    assert_eq!(b.front.held(), 0);
}
