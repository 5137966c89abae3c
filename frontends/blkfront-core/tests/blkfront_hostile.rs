//! The block-frontend core against hostile backends (bogus, unsent, duplicate ids, a
//! wrong operation, a runaway `rsp_prod`, error statuses), a silent or vanished backend
//! and the driver's timeouts, grants kept mapped, bad backend nodes and out of memory.
//! The well-behaved cases are in `blkfront.rs`.

mod fake;

use fake::bed::{recorder, Bed};
use fake::{BackendConfig, Misbehaviour, BACK};
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    Event, FrontState, FrontendConfig, IoError, IoOp, NegotiationError, ProtocolError, SubmitError,
    Timeout,
};

const SECTORS: u64 = 8192; // 4 MiB

fn bed() -> Bed {
    let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default(), SECTORS);
    b.bring_up();
    b
}

fn hostile(m: Misbehaviour) -> (Bed, Vec<u64>, Result<usize, ProtocolError>) {
    let mut b = bed();
    let pages = b.pages(2, 1);
    let tags: Vec<u64> = (0..3)
        .map(|i| b.submit(0, Bed::io(IoOp::Write, i * 16, &pages)).unwrap())
        .collect();
    b.back.misbehave = m;
    let r = b.pump();
    (b, tags, r)
}

fn assert_failed_cleanly(mut b: Bed, tags: &[u64]) {
    assert_eq!(b.front.state(), FrontState::Failed);
    for t in tags {
        assert_eq!(b.result(*t), Some(Err(IoError::DeviceFailed)), "tag {t}");
    }
    let p = b.pages(1, 0);
    assert_eq!(
        b.submit(0, Bed::io(IoOp::Read, 0, &p)),
        Err(SubmitError::DeviceFailed)
    );
    assert_eq!(b.xs("state").as_deref(), Some("6"));
    // Unload: nothing left to complete, nothing held.
    let done = b.done.clone();
    b.front.shutdown(&mut b.plat, recorder(&done));
    assert_eq!(b.front.in_flight() + b.front.held(), 0);
    assert_eq!(b.world.borrow().open_ports(), 0);
}

#[test]
fn hostile_bogus_response_id() {
    let (b, tags, r) = hostile(Misbehaviour::BogusId);
    assert!(matches!(
        r,
        Err(ProtocolError::ResponseIdOutOfRange {
            id: 0xdead_beef,
            ..
        })
    ));
    assert_failed_cleanly(b, &tags);
}

#[test]
fn hostile_response_for_unsent_request() {
    let (b, tags, r) = hostile(Misbehaviour::UnsentId);
    assert!(
        matches!(
            r,
            Err(ProtocolError::ResponseForUnsentRequest { id: 3, .. })
        ),
        "{r:?}"
    );
    assert_failed_cleanly(b, &tags);
}

#[test]
fn hostile_duplicate_response() {
    let (b, tags, r) = hostile(Misbehaviour::DuplicateId);
    assert!(
        matches!(r, Err(ProtocolError::ResponseForUnsentRequest { .. })),
        "{r:?}"
    );
    // The first response was genuine: that I/O succeeded, the rest failed.
    assert_eq!(b.result(tags[0]), Some(Ok(())));
    assert_failed_cleanly(b, &tags[1..]);
}

#[test]
fn hostile_wrong_operation() {
    let (b, tags, r) = hostile(Misbehaviour::WrongOperation);
    assert!(
        matches!(r, Err(ProtocolError::OperationMismatch { .. })),
        "{r:?}"
    );
    assert_failed_cleanly(b, &tags);
}

#[test]
fn hostile_rsp_prod_overflow() {
    let (b, tags, r) = hostile(Misbehaviour::OverflowRspProd);
    assert!(matches!(r, Err(ProtocolError::Ring { .. })), "{r:?}");
    assert_failed_cleanly(b, &tags);
}

#[test]
fn error_status_fails_only_that_io() {
    let (mut b, tags, r) = hostile(Misbehaviour::ErrorStatus);
    assert_eq!(r, Ok(3));
    for t in &tags {
        assert_eq!(b.result(*t), Some(Err(IoError::Backend(-1))));
    }
    assert_eq!(b.front.state(), FrontState::Connected);
    b.back.misbehave = Misbehaviour::None;
    let p = b.pages(1, 2);
    let t = b.submit(0, Bed::io(IoOp::Write, 0, &p)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
}

#[test]
fn silent_backend_then_driver_timeout_fails_io() {
    let (mut b, tags, r) = hostile(Misbehaviour::Silent);
    assert_eq!(r, Ok(0));
    assert!(b.done.borrow().is_empty());
    // The driver's I/O timer for the second request expires: the device fails and
    // every outstanding I/O completes once (the recorder panics on a second time).
    let done = b.done.clone();
    assert!(b.front.outstanding(&tags[1]));
    assert_eq!(
        b.front
            .timed_out(&mut b.plat, &tags[1], &mut recorder(&done)),
        Timeout::DeviceFailed {
            in_flight: 3,
            held: 0
        }
    );
    // The timers of the others expire afterwards: nothing left to do.
    for t in &tags {
        assert!(!b.front.outstanding(t));
        assert_eq!(
            b.front.timed_out(&mut b.plat, t, &mut recorder(&done)),
            Timeout::NotOutstanding
        );
    }
    assert_failed_cleanly(b, &tags);
}

#[test]
fn timeout_of_a_completed_io_changes_nothing() {
    let mut b = bed();
    let p = b.pages(2, 5);
    let t = b.submit(0, Bed::io(IoOp::Write, 64, &p)).unwrap();
    let slow = b.pages(1, 6);
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    // The kernel's timer fired while the completion was on its way (the race of
    // blk-mq's timeout work with normal completion): the device stays up.
    let done = b.done.clone();
    assert_eq!(
        b.front.timed_out(&mut b.plat, &t, &mut recorder(&done)),
        Timeout::NotOutstanding
    );
    // A tag never submitted either.
    assert_eq!(
        b.front.timed_out(&mut b.plat, &999, &mut recorder(&done)),
        Timeout::NotOutstanding
    );
    assert_eq!(b.front.state(), FrontState::Connected);
    let t2 = b.submit(0, Bed::io(IoOp::Write, 128, &slow)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t2), Some(Ok(())));
}

#[test]
fn timeout_of_io_held_for_a_reconnect_fails_the_device() {
    let mut b = bed();
    let p = b.pages(1, 9);
    let t0 = b.submit(0, Bed::io(IoOp::Write, 0, &p)).unwrap();
    // The backend closes and never comes back.
    b.back.close();
    assert_eq!(
        b.changed(XenbusState::Closed).unwrap(),
        Event::Disconnected { held: 1 }
    );
    let t1 = b.submit(0, Bed::io(IoOp::Write, 8, &p)).unwrap();
    let done = b.done.clone();
    assert_eq!(
        b.front.timed_out(&mut b.plat, &t0, &mut recorder(&done)),
        Timeout::DeviceFailed {
            in_flight: 0,
            held: 2
        }
    );
    assert_failed_cleanly(b, &[t0, t1]);
}

#[test]
fn vanished_backend_fails_io() {
    let mut b = bed();
    let p = b.pages(1, 1);
    let t = b.submit(0, Bed::io(IoOp::Write, 0, &p)).unwrap();
    b.back.vanish();
    assert_eq!(b.changed(XenbusState::Unknown).unwrap(), Event::Failed);
    // A later state change of a vanished device changes nothing.
    assert_eq!(b.changed(XenbusState::InitWait).unwrap(), Event::Nothing);
    assert_failed_cleanly(b, &[t]);
}

#[test]
fn backend_keeping_grants_mapped_gets_no_page_back() {
    let mut b = Bed::new(
        BackendConfig {
            persistent: false,
            ..Default::default()
        },
        FrontendConfig::default(),
        SECTORS,
    );
    b.bring_up();
    b.back.misbehave = Misbehaviour::KeepGrantsMapped;
    let p = b.pages(4, 1);
    let t = b.submit(0, Bed::io(IoOp::Write, 0, &p)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
    // The four bounce pages stay granted and are never reused (the fake panics if a
    // granted page is freed or regranted after free).
    assert_eq!(b.front.stats().quarantined_pages, 4);
    let done = b.done.clone();
    b.front.shutdown(&mut b.plat, recorder(&done));
}

#[test]
fn bad_backend_nodes_fail_negotiation() {
    for (key, value) in [
        ("sectors", None),
        ("sectors", Some("12abc")),
        ("sector-size", Some("1000")),
        ("info", Some("-1")),
        ("feature-max-indirect-segments", Some("99999999999")),
    ] {
        let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default(), SECTORS);
        b.changed(XenbusState::InitWait).unwrap();
        b.back.connect().unwrap();
        let path = format!("{BACK}/{key}");
        match value {
            None => b.world.borrow_mut().xs.remove(&path),
            Some(v) => b.world.borrow_mut().xs.insert(path, v.into()),
        };
        let e = b.changed(XenbusState::Connected).unwrap_err();
        assert!(
            matches!(
                e,
                NegotiationError::MissingNode { .. } | NegotiationError::BadNode { .. }
            ),
            "{key}: {e:?}"
        );
        assert_eq!(b.front.state(), FrontState::Failed);
        assert_eq!(b.world.borrow().open_ports(), 0);
        // The backend still mapped the rings when the frontend gave up: their pages are
        // quarantined (never freed or reused), their grants stay.
        assert_eq!(b.front.stats().quarantined_pages, 4 * 16, "{key}");
        b.back.close();
    }
    // A huge ring order is clamped to what the frontend supports.
    let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default(), SECTORS);
    b.world
        .borrow_mut()
        .xs
        .insert(format!("{BACK}/max-ring-page-order"), "99".into());
    assert_eq!(
        b.changed(XenbusState::InitWait).unwrap(),
        Event::Initialised {
            queues: 4,
            ring_pages: 16
        }
    );
    let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default(), SECTORS);
    b.world
        .borrow_mut()
        .xs
        .insert(format!("{BACK}/multi-queue-max-queues"), "many".into());
    assert!(b.changed(XenbusState::InitWait).is_err());
    assert_eq!(b.front.state(), FrontState::Failed);
}

#[test]
fn out_of_memory_during_setup_and_submit() {
    let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default(), SECTORS);
    b.world.borrow_mut().alloc_budget = Some(2); // rings for 2 of 4 queues
    let e = b.changed(XenbusState::InitWait).unwrap_err();
    assert!(matches!(e, NegotiationError::Platform(_)));
    assert_eq!(b.world.borrow().live_grants(), 0);
    assert_eq!(b.world.borrow().live_allocs(), 0);

    let mut b = bed();
    let p = b.pages(4, 1);
    b.world.borrow_mut().alloc_budget = Some(2); // two bounce pages
    assert!(matches!(
        b.submit(0, Bed::io(IoOp::Write, 0, &p)),
        Err(SubmitError::NoResources(_))
    ));
    b.world.borrow_mut().alloc_budget = None;
    let t = b.submit(0, Bed::io(IoOp::Write, 0, &p)).unwrap();
    b.pump().unwrap();
    assert_eq!(b.result(t), Some(Ok(())));
}
