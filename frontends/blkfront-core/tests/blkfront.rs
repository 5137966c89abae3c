//! The block-frontend core against a fake backend that serves a `Vec<u8>` disk through
//! the real abi ring, and against hostile backends.
//! Hostile backends, timeouts and failures: `blkfront_hostile.rs`.

mod fake;

use fake::bed::Bed;
use fake::{BackendConfig, Misbehaviour, Pg, BACK};
use proptest::prelude::*;
use sluice_abi::blkif::BlkifOp;
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    BlockIo, Event, FrontState, FrontendConfig, IoError, IoOp, IoSegment, ProtocolError,
    SubmitError,
};

const SECTORS: u64 = 8192; // 4 MiB

fn bed() -> Bed {
    let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default(), SECTORS);
    b.bring_up();
    b
}

#[test]
fn negotiation_multi_queue_multi_page() {
    let mut b = Bed::new(
        BackendConfig {
            max_queues: 2,
            max_ring_page_order: 2,
            ..Default::default()
        },
        FrontendConfig::default(),
        SECTORS,
    );
    assert_eq!(b.xs("state").as_deref(), Some("1"));
    let ev = b.changed(XenbusState::InitWait).unwrap();
    assert_eq!(
        ev,
        Event::Initialised {
            queues: 2,
            ring_pages: 4
        }
    );
    assert_eq!(b.xs("state").as_deref(), Some("3"));
    assert_eq!(b.xs("multi-queue-num-queues").as_deref(), Some("2"));
    assert_eq!(b.xs("ring-page-order").as_deref(), Some("2"));
    assert_eq!(b.xs("protocol").as_deref(), Some("x86_64-abi"));
    assert_eq!(b.xs("feature-persistent").as_deref(), Some("1"));
    for q in 0..2 {
        for i in 0..4 {
            assert!(b.xs(&format!("queue-{q}/ring-ref{i}")).is_some());
        }
        assert!(b.xs(&format!("queue-{q}/event-channel")).is_some());
    }
    assert!(b.xs("ring-ref").is_none());
    b.back.connect().unwrap();
    assert_eq!(b.back.queues(), 2);
    let Event::Connected(disk) = b.changed(XenbusState::Connected).unwrap() else {
        panic!()
    };
    assert_eq!(disk.sectors, SECTORS);
    assert_eq!(disk.sector_size, 512);
    assert_eq!(disk.physical_sector_size, 4096);
    assert!(disk.persistent);
    assert_eq!(disk.max_indirect_segments, 256);
    assert!(disk.discard.is_some());
    assert_eq!(b.xs("state").as_deref(), Some("4"));
    assert!(b.front.persistent());
    assert_eq!(b.front.max_segments(), 32); // the frontend's own limit
}

#[test]
fn negotiation_legacy_backend_single_page_ring() {
    let mut b = Bed::new(
        BackendConfig {
            max_queues: 1,
            max_ring_page_order: 0,
            persistent: false,
            max_indirect_segments: 0,
            flush: Some("feature-barrier"),
            discard: false,
            ..Default::default()
        },
        FrontendConfig::default(),
        SECTORS,
    );
    // A backend that never wrote multi-queue / ring-order nodes at all.
    b.world
        .borrow_mut()
        .xs
        .remove(&format!("{BACK}/multi-queue-max-queues"));
    b.world
        .borrow_mut()
        .xs
        .remove(&format!("{BACK}/max-ring-page-order"));
    b.bring_up();
    assert!(b.xs("ring-ref").is_some());
    assert!(b.xs("event-channel").is_some());
    assert!(b.xs("ring-page-order").is_none());
    assert!(b.xs("multi-queue-num-queues").is_none());
    assert!(!b.front.persistent());
    assert_eq!(b.front.max_segments(), 11);
    // 12 segments do not fit without indirect requests.
    let pages = b.pages(12, 1);
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Write, 0, &pages)),
        Err(SubmitError::BadSegmentCount { given: 12, max: 11 })
    );
    // Flush goes out as a barrier.
    let t = b.submit(0, Bed::io(IoOp::Flush, 0, &[])).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    assert_eq!(b.back.log.last().unwrap().0, BlkifOp::WriteBarrier.raw());
    assert_eq!(
        b.submit(
            0,
            BlockIo {
                op: IoOp::Discard {
                    nr_sectors: 8,
                    secure: false
                },
                sector: 0,
                segments: vec![]
            }
        ),
        Err(SubmitError::Unsupported)
    );
}

fn round_trip(cfg: BackendConfig, front_cfg: FrontendConfig, nsegs: usize) {
    let mut b = Bed::new(cfg, front_cfg, SECTORS);
    b.bring_up();
    let data = b.pages(nsegs, 0x5a);
    let sector = 24;
    let t = b.submit(0, Bed::io(IoOp::Write, sector, &data)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    let want = b.bytes(&data);
    assert_eq!(b.disk(sector, want.len()), &want[..]);
    let back = b.pages(nsegs, 0);
    let t = b.submit(0, Bed::io(IoOp::Read, sector, &back)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    assert_eq!(b.bytes(&back), want);
    let indirect = nsegs > 11;
    let ops: Vec<u8> = b.back.log.iter().map(|l| l.0).collect();
    assert!(
        ops.iter()
            .all(|&o| (o == BlkifOp::Indirect.raw()) == indirect),
        "{ops:?}"
    );
}

#[test]
fn write_read_verify_direct_and_indirect() {
    for persistent in [true, false] {
        for nsegs in [1, 11, 12, 32] {
            round_trip(
                BackendConfig {
                    persistent,
                    ..Default::default()
                },
                FrontendConfig::default(),
                nsegs,
            );
        }
    }
    // More than one indirect page (512 segments each).
    round_trip(
        BackendConfig {
            max_indirect_segments: 1024,
            ..Default::default()
        },
        FrontendConfig {
            max_indirect_segments: 600,
            ..Default::default()
        },
        600,
    );
}

#[test]
fn partial_page_segments() {
    let mut b = bed();
    let pages = b.pages(2, 9);
    let io = BlockIo {
        op: IoOp::Write,
        sector: 100,
        segments: vec![
            IoSegment {
                page: pages[0],
                first_sect: 3,
                last_sect: 5,
            },
            IoSegment {
                page: pages[1],
                first_sect: 0,
                last_sect: 0,
            },
        ],
    };
    let t = b.submit(0, io).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    let p0 = b.world.borrow().page_bytes(pages[0]);
    let p1 = b.world.borrow().page_bytes(pages[1]);
    assert_eq!(b.disk(100, 1536), &p0[1536..3072]);
    assert_eq!(b.disk(103, 512), &p1[..512]);
    let bad = BlockIo {
        op: IoOp::Read,
        sector: 0,
        segments: vec![IoSegment {
            page: pages[0],
            first_sect: 5,
            last_sect: 8,
        }],
    };
    assert_eq!(b.submit(0, bad), Err(SubmitError::BadSegment(0)));
}

#[test]
fn flush_discard_range_and_readonly() {
    let mut b = bed();
    let pages = b.pages(2, 3);
    let t = b.submit(1, Bed::io(IoOp::Write, 16, &pages)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    // Linux leaves a bare flush's position at u64::MAX: it still goes out, as sector 0.
    let t = b.submit(1, Bed::io(IoOp::Flush, u64::MAX, &[])).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    assert_eq!(
        *b.back.log.last().unwrap(),
        (BlkifOp::FlushDiskcache.raw(), 0, 0)
    );
    let discard = |secure| BlockIo {
        op: IoOp::Discard {
            nr_sectors: 8,
            secure,
        },
        sector: 16,
        segments: vec![],
    };
    assert_eq!(b.submit(0, discard(true)), Err(SubmitError::Unsupported));
    let t = b.submit(0, discard(false)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    assert!(b.disk(16, 4096).iter().all(|&x| x == 0));
    assert_ne!(b.disk(24, 4096), &[0u8; 4096][..]);
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Read, SECTORS - 7, &pages[..1])),
        Err(SubmitError::OutOfRange)
    );
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Read, u64::MAX - 2, &pages[..1])),
        Err(SubmitError::OutOfRange)
    );
    assert_eq!(
        b.submit(9, Bed::io(IoOp::Read, 0, &pages[..1])),
        Err(SubmitError::NoSuchQueue(9))
    );

    let mut ro = Bed::new(
        BackendConfig {
            readonly: true,
            ..Default::default()
        },
        FrontendConfig::default(),
        SECTORS,
    );
    ro.bring_up();
    let p = ro.pages(1, 0);
    assert_eq!(
        ro.submit(0, Bed::io(IoOp::Write, 0, &p)),
        Err(SubmitError::ReadOnly)
    );
    assert!(ro.submit(0, Bed::io(IoOp::Read, 0, &p)).is_ok());
}

#[test]
fn eopnotsupp_turns_the_feature_off() {
    let mut b = bed();
    // The backend advertised flush but refuses it.
    b.back.cfg.flush = Some("feature-barrier");
    let t = b.submit(0, Bed::io(IoOp::Flush, 0, &[])).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Err(IoError::NotSupported)));
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Flush, 0, &[])),
        Err(SubmitError::Unsupported)
    );
}

#[test]
fn ring_full_then_drains() {
    let mut b = Bed::new(
        BackendConfig {
            max_queues: 1,
            max_ring_page_order: 0,
            ..Default::default()
        },
        FrontendConfig::default(),
        SECTORS,
    );
    b.bring_up();
    let page = b.pages(1, 4);
    let mut tags = Vec::new();
    loop {
        match b.submit(0, Bed::io(IoOp::Write, tags.len() as u64 * 8, &page)) {
            Ok(t) => tags.push(t),
            Err(e) => {
                assert_eq!(e, SubmitError::RingFull);
                break;
            }
        }
    }
    assert_eq!(tags.len(), 32); // one page holds 32 blkif slots
    b.pump().unwrap();
    for t in &tags {
        assert_eq!(b.result(*t), Some(Ok(())));
    }
    assert!(b.submit(0, Bed::io(IoOp::Write, 0, &page)).is_ok());
}

#[test]
fn reconnect_resubmits_in_flight_io() {
    let mut b = bed();
    let data: Vec<Vec<Pg>> = (0..6).map(|i| b.pages(3, i as u8)).collect();
    let mut tags = Vec::new();
    for (i, d) in data.iter().enumerate() {
        tags.push(
            b.submit(i % 2, Bed::io(IoOp::Write, i as u64 * 24, d))
                .unwrap(),
        );
    }
    // The backend restarts before answering anything.
    b.back.close();
    let ev = b.changed(XenbusState::Closed).unwrap();
    assert_eq!(ev, Event::Disconnected { held: 6 });
    assert_eq!(b.front.state(), FrontState::Disconnected);
    assert_eq!(b.xs("state").as_deref(), Some("6"));
    assert_eq!(b.world.borrow().live_grants(), 0, "every grant ended");
    assert_eq!(b.world.borrow().open_ports(), 0);
    // I/O submitted meanwhile is held too.
    let late = b.pages(1, 0x77);
    tags.push(b.submit(0, Bed::io(IoOp::Write, 500, &late)).unwrap());
    assert!(b.done.borrow().is_empty());
    // Back again.
    b.back.init_wait();
    assert!(matches!(
        b.changed(XenbusState::InitWait).unwrap(),
        Event::Initialised { .. }
    ));
    b.back.connect().unwrap();
    assert!(matches!(
        b.changed(XenbusState::Connected).unwrap(),
        Event::Connected(_)
    ));
    assert_eq!(b.front.stats().resubmitted, 7);
    b.pump().unwrap();
    for t in &tags {
        assert_eq!(b.result(*t), Some(Ok(())), "tag {t}");
    }
    for (i, d) in data.iter().enumerate() {
        let want = b.bytes(d);
        assert_eq!(b.disk(i as u64 * 24, want.len()), &want[..]);
    }
    assert_eq!(b.disk(500, 4096), &b.bytes(&late)[..]);
    assert_eq!(b.front.stats().connects, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random reads and writes on random queues, with a reconnect in the middle, agree
    /// with a model disk; every I/O completes exactly once.
    #[test]
    fn random_io_matches_model(
        ops in prop::collection::vec((any::<bool>(), 0u64..(SECTORS / 8 - 40), 1usize..40, 0usize..4, any::<u8>()), 1..30),
        reconnect_at in 0usize..30,
        persistent in any::<bool>(),
    ) {
        let mut b = Bed::new(BackendConfig { persistent, ..Default::default() }, FrontendConfig::default(), SECTORS);
        b.bring_up();
        let mut model = vec![0u8; (SECTORS * 512) as usize];
        for (i, (write, page_no, n, q, seed)) in ops.into_iter().enumerate() {
            let n = n.min(b.front.max_segments());
            let sector = page_no * 8;
            let pages = b.pages(n, seed);
            let op = if write { IoOp::Write } else { IoOp::Read };
            let t = b.submit(q, Bed::io(op, sector, &pages)).unwrap();
            if i == reconnect_at {
                b.back.close();
                b.changed(XenbusState::Closed).unwrap();
                b.back.init_wait();
                b.changed(XenbusState::InitWait).unwrap();
                b.back.connect().unwrap();
                b.changed(XenbusState::Connected).unwrap();
            }
            b.pump().unwrap();
            prop_assert_eq!(b.result(t), Some(Ok(())));
            let a = sector as usize * 512;
            let len = n * 4096;
            if write {
                model[a..a + len].copy_from_slice(&b.bytes(&pages));
            } else {
                prop_assert_eq!(&b.bytes(&pages)[..], &model[a..a + len]);
            }
        }
        prop_assert_eq!(&b.back.disk, &model);
    }
}

#[test]
fn held_io_keeps_its_order_when_the_new_ring_is_too_small() {
    let cfg = BackendConfig {
        max_queues: 1,
        max_ring_page_order: 0,
        ..Default::default()
    };
    let mut b = Bed::new(cfg, FrontendConfig::default(), SECTORS);
    b.bring_up();
    let page = b.pages(1, 8);
    let mut tags = Vec::new();
    for i in 0..32 {
        tags.push(b.submit(0, Bed::io(IoOp::Write, i * 8, &page)).unwrap());
    }
    b.back.close();
    b.changed(XenbusState::Closed).unwrap();
    for i in 32..42 {
        tags.push(b.submit(0, Bed::io(IoOp::Write, i * 8, &page)).unwrap());
    }
    b.back.init_wait();
    b.changed(XenbusState::InitWait).unwrap();
    b.back.connect().unwrap();
    b.changed(XenbusState::Connected).unwrap();
    assert_eq!(b.front.in_flight(), 32);
    assert_eq!(b.front.held(), 10);
    // New I/O queues behind the held I/O instead of overtaking it.
    tags.push(b.submit(0, Bed::io(IoOp::Flush, 0, &[])).unwrap());
    assert_eq!(b.front.held(), 11);
    while b.done.borrow().len() < tags.len() {
        assert!(b.pump().unwrap() > 0, "no progress");
    }
    for t in &tags {
        assert_eq!(b.result(*t), Some(Ok(())));
    }
    let sectors: Vec<u64> = b.back.log.iter().map(|l| l.1).collect();
    let mut want: Vec<u64> = (0..42).map(|i| i * 8).collect();
    want.push(0); // the flush, last
    assert_eq!(sectors, want);
}

#[test]
fn indirect_answers_with_either_operation_but_not_another() {
    // The fake answers indirect requests with the inner operation (as blkback does);
    // `write_read_verify_direct_and_indirect` covers that. A wrong inner operation is
    // still a protocol error.
    let mut b = bed();
    let pages = b.pages(20, 1);
    b.back.misbehave = Misbehaviour::WrongOperation;
    let t = b.submit(0, Bed::io(IoOp::Write, 0, &pages)).unwrap();
    assert!(matches!(
        b.pump(),
        Err(ProtocolError::OperationMismatch { .. })
    ));
    assert_eq!(b.result(t), Some(Err(IoError::DeviceFailed)));
}
