//! `blkfront-core`'s negotiation over `WinPlatform` over the bus interface (the fake
//! bus, two children): the ring pages are granted from the bus' one table to the
//! backend's domain with their frames, the event channel is bound to the child's
//! callback, the keys land in the child's xenstore node, a watch on the backend's
//! state drives the state changes, and the disk connects.

use crate::fake::World;
use crate::iface::{BusInterface, WatchCallback};
use crate::platform::WinPlatform;
use crate::platform_tests::{child, child_of, FakeKernel, EVENTS};
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use sluice_abi::shared::SharedPages;
use sluice_abi::types::DomId;
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{Event, FrontState, Frontend, FrontendConfig};
use std::sync::Mutex;

static SEEN: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

extern "C" fn seen(ctx: usize, id: u64) {
    SEEN.lock().unwrap().push((ctx, id));
}

#[test]
fn blkfront_negotiates_over_the_bus_interface() {
    let world = World::new(256, 64);
    // Another child holds grants already: ours must not collide with them.
    let other = child(&world, 2, 832);
    let theirs: Vec<u32> = (0..5)
        .map(|i| other.grant_access(DomId(0), 0x9000 + i, false).unwrap().0)
        .collect();
    let bus = child_of(&world, 1, 768, DomId(3));
    let be = bus.backend_path().to_string();
    let fe = bus.frontend_path().to_string();
    let domid = bus.backend_domid();
    let mut plat = WinPlatform::new(FakeKernel {
        bus: child_of(&world, 1, 768, DomId(3)),
        next_frame: 0x1000,
        data: (0..1).map(|_| SharedPages::new(1)).collect(),
    });
    let set = |k: &str, v: &str| world.borrow_mut().xs.set(&format!("{be}/{k}"), v);
    set("state", "2");
    let mut front: Frontend<_, u32> =
        Frontend::new(&fe, &be, domid, FrontendConfig::default()).unwrap();
    front.start(&mut plat).unwrap();
    let w = bus
        .watch(
            &format!("{be}/state"),
            WatchCallback {
                func: seen,
                ctx: 4001,
            },
        )
        .unwrap();
    assert_eq!(World::run_watches(&world), 1, "fired at registration");
    let state = |b: &crate::fake::FakeChild| -> XenbusState {
        b.xs_read(0, &format!("{be}/state"))
            .unwrap()
            .unwrap()
            .parse()
            .unwrap()
    };
    let ev = front
        .backend_changed(&mut plat, state(&bus), |_, _| {})
        .unwrap();
    assert!(matches!(ev, Event::Initialised { queues: 1, .. }), "{ev:?}");
    // What the frontend published, through the bus' xenstore.
    let rd = |k: &str| bus.xs_read(0, &format!("{fe}/{k}")).unwrap();
    assert_eq!(rd("state").as_deref(), Some("3"));
    let gref: u32 = rd("ring-ref").unwrap().parse().unwrap();
    let port: u32 = rd("event-channel").unwrap().parse().unwrap();
    {
        let w = world.borrow();
        let e = &w.hw.entries.0[gref as usize];
        assert_eq!(e.1.get(), domid.0, "granted to the backend's domain");
        assert_eq!(e.2.get(), 0x1000, "the ring page's frame");
        assert!(!theirs.contains(&gref), "no collision with the other child");
        assert_eq!(w.fast.grants.held_by(1) + w.fast.grants.held_by(2), 6);
        assert!(
            w.fire_port(port),
            "the port is bound to the child's callback"
        );
    }
    assert!(EVENTS.lock().unwrap().contains(&(1000, port)));
    assert_eq!(plat.queue_of(sluice_abi::types::EvtchnPort(port)), Some(0));
    // The backend connects: the watch fires, the state is read and handed on.
    for (k, v) in [("sectors", "2048"), ("info", "0"), ("sector-size", "512")] {
        set(k, v);
    }
    set("state", "4");
    assert!(World::run_watches(&world) >= 1);
    assert!(
        SEEN.lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == 4001)
            .count()
            >= 2
    );
    let ev = front
        .backend_changed(&mut plat, state(&bus), |_, _| {})
        .unwrap();
    assert!(
        matches!(ev, Event::Connected(d) if d.sectors == 2048),
        "{ev:?}"
    );
    assert_eq!(front.state(), FrontState::Connected);
    bus.unwatch(w);
    // Shutdown ends our grants in the bus' table and closes our port.
    front.shutdown(&mut plat, |_, _| {});
    let w = world.borrow();
    assert_eq!(w.fast.grants.held_by(1), 0);
    assert_eq!(
        w.fast.grants.held_by(2),
        5,
        "the other child's grants untouched"
    );
    assert!(w.hw.closed.borrow().contains(&port));
}
