//! `Frontend::poll`, the interrupt-context completion path: a budget per call, and a
//! protocol violation that marks the frontend broken without tearing anything down
//! (the driver fails the device later, from process context).

mod fake;

use fake::{BackendConfig, FakeBackend, FrontPlatform, Misbehaviour, World, BACK, FRONT};
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    BlockIo, Event, FrontState, Frontend, FrontendConfig, IoError, IoOp, IoSegment, Polled,
    ProtocolError, SubmitError,
};
use std::cell::RefCell;
use std::rc::Rc;

type Front = Frontend<FrontPlatform, u64>;

fn up() -> (Rc<RefCell<World>>, FrontPlatform, FakeBackend, Front) {
    let world = World::new();
    let mut back = FakeBackend::new(
        world.clone(),
        8192,
        BackendConfig {
            max_queues: 1,
            ..Default::default()
        },
    );
    let mut plat = FrontPlatform(world.clone());
    let mut front =
        Frontend::new(FRONT, BACK, fake::BACKEND_ID, FrontendConfig::default()).unwrap();
    front.start(&mut plat).unwrap();
    let mut none = |_: u64, _: Result<(), IoError>| panic!("nothing to complete yet");
    assert!(matches!(
        front.backend_changed(&mut plat, XenbusState::InitWait, &mut none),
        Ok(Event::Initialised { .. })
    ));
    back.connect().unwrap();
    assert!(matches!(
        front.backend_changed(&mut plat, XenbusState::Connected, &mut none),
        Ok(Event::Connected(_))
    ));
    (world, plat, back, front)
}

fn write(world: &Rc<RefCell<World>>, sector: u64) -> BlockIo<fake::Pg> {
    let page = world.borrow_mut().alloc(1);
    BlockIo {
        op: IoOp::Write,
        sector,
        segments: vec![IoSegment {
            page,
            first_sect: 0,
            last_sect: 7,
        }],
    }
}

#[test]
fn poll_stops_at_its_budget_and_finishes_on_the_next_call() {
    let (world, mut plat, mut back, mut front) = up();
    for t in 0..10u64 {
        front.submit(&mut plat, 0, t, write(&world, t * 8)).unwrap();
    }
    assert_eq!(back.serve(), 10);
    let mut done = Vec::new();
    let mut rec = |t: u64, r: Result<(), IoError>| done.push((t, r));
    let first = front.poll(&mut plat, 0, 4, &mut rec).unwrap();
    assert_eq!(
        first,
        Polled {
            completed: 4,
            more: true
        }
    );
    assert_eq!(front.in_flight(), 6);
    let second = front.poll(&mut plat, 0, 32, &mut rec).unwrap();
    assert_eq!(
        second,
        Polled {
            completed: 6,
            more: false
        }
    );
    assert_eq!(done.len(), 10);
    assert!(done.iter().all(|(_, r)| r.is_ok()));
    let tags: Vec<u64> = done.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, (0..10).collect::<Vec<_>>());
    assert_eq!(front.in_flight(), 0);
}

#[test]
fn poll_marks_a_protocol_violation_broken_without_tearing_down() {
    let (world, mut plat, mut back, mut front) = up();
    for t in 0..3u64 {
        front.submit(&mut plat, 0, t, write(&world, t * 8)).unwrap();
    }
    back.misbehave = Misbehaviour::BogusId;
    back.serve();
    let ports = world.borrow().open_ports();
    let mut done = Vec::new();
    let r = front.poll(&mut plat, 0, 32, &mut |t, r| done.push((t, r)));
    assert!(matches!(r, Err(ProtocolError::ResponseIdOutOfRange { .. })));
    // Interrupt context: nothing torn down, nothing completed, our state untouched.
    assert!(front.broken());
    assert_eq!(front.state(), FrontState::Connected);
    assert_eq!(world.borrow().open_ports(), ports);
    assert_eq!(front.in_flight(), 3);
    assert!(done.is_empty());
    // Everything new is refused; polling again does nothing.
    let io = write(&world, 0);
    assert!(matches!(
        front.submit(&mut plat, 0, 99, io),
        Err((SubmitError::DeviceFailed, 99, _))
    ));
    assert_eq!(
        front.poll(&mut plat, 0, 32, &mut |t, r| done.push((t, r))),
        Ok(Polled::default())
    );
    // The driver's process-context fail: every outstanding I/O once, with an error.
    front.fail(&mut plat, &mut |t, r| done.push((t, r)));
    assert_eq!(front.state(), FrontState::Failed);
    done.sort_by_key(|(t, _)| *t);
    assert_eq!(
        done,
        vec![
            (0, Err(IoError::DeviceFailed)),
            (1, Err(IoError::DeviceFailed)),
            (2, Err(IoError::DeviceFailed)),
        ]
    );
    assert_eq!(world.borrow().open_ports(), 0);
}
