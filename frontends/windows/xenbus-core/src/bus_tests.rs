//! The bus interface with several children on one bus: one grant table (no reference
//! collides, no child ends or notifies another's), ports routed to their owner's
//! callback, watches routed by token, hostile watch events dropped, a child that goes
//! away cleaned up; child info read and checked.

use crate::bus::child_info;
use crate::children::{Child, Kind};
use crate::fake::World;
use crate::iface::{BusInterface, EventCallback, WatchCallback};
use crate::platform_tests::{child, record_event, EVENTS};
use crate::watches::{WatchId, MAX_PER_OWNER};
use crate::xenstore::WatchEvent;
use alloc::vec::Vec;
use sluice_abi::grant_table::GrantEntryFlags;
use sluice_abi::types::{DomId, GrantRef};
use sluice_front_seams::{GrantInUse, SeamError};
use std::sync::Mutex;

static WATCHED: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

extern "C" fn record_watch(ctx: usize, id: u64) {
    WATCHED.lock().unwrap().push((ctx, id));
}

fn watched(ctx: usize) -> Vec<u64> {
    WATCHED
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| *c == ctx)
        .map(|(_, id)| *id)
        .collect()
}

#[test]
fn two_children_share_one_grant_table_without_collisions() {
    let world = World::new(128, 40);
    let (a, b) = (child(&world, 1, 768), child(&world, 2, 832));
    let mut refs = Vec::new();
    for i in 0..40 {
        refs.push(a.grant_access(DomId(0), 0x100 + i, false).unwrap().0);
        refs.push(b.grant_access(DomId(0), 0x900 + i, true).unwrap().0);
    }
    let mut sorted = refs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 80, "every reference handed out once");
    // Quota: a holds 40, gets no more though 40 entries are free.
    assert_eq!(
        a.grant_access(DomId(0), 1, false),
        Err(SeamError::NoResources)
    );
    // b cannot end a's grant; the entry stays granted to a's frame.
    let ar = GrantRef(refs[0]);
    assert_eq!(b.end_access(ar), Err(GrantInUse(ar)));
    assert_eq!(
        world.borrow().hw.entries.0[ar.0 as usize].2.get(),
        0x100,
        "a's entry untouched"
    );
    assert_eq!(a.end_access(ar), Ok(()));
}

#[test]
fn ports_belong_to_their_child() {
    let world = World::new(64, 64);
    let (a, b) = (child(&world, 1, 768), child(&world, 2, 832));
    let pa = a.evtchn_alloc_unbound(DomId(0)).unwrap();
    let pb = b.evtchn_alloc_unbound(DomId(0)).unwrap();
    let cb = |ctx| EventCallback {
        func: record_event,
        ctx,
    };
    a.evtchn_bind(pa, cb(2001)).unwrap();
    assert!(
        b.evtchn_bind(pa, cb(2002)).is_err(),
        "b cannot take a's events"
    );
    b.evtchn_bind(pb, cb(2002)).unwrap();
    b.evtchn_notify(pa);
    b.evtchn_close(pa);
    {
        let w = world.borrow();
        assert!(w.hw.sent.borrow().is_empty(), "b cannot notify a's port");
        assert!(w.hw.closed.borrow().is_empty(), "nor close it");
        assert!(w.fire_port(pa.0) && w.fire_port(pb.0));
        assert!(!w.fire_port(999), "an unknown port goes nowhere");
    }
    let ev = EVENTS.lock().unwrap().clone();
    assert!(ev.contains(&(2001, pa.0)) && ev.contains(&(2002, pb.0)));
    assert!(!ev.contains(&(2002, pa.0)));
    a.evtchn_close(pa);
    assert_eq!(*world.borrow().hw.closed.borrow(), [pa.0]);
    assert!(!world.borrow().fire_port(pa.0), "closed: no route");
}

#[test]
fn port_quota_and_release_of_a_child_that_went_away() {
    let world = World::new(64, 64);
    let a = child(&world, 1, 768);
    let mut ports = Vec::new();
    while let Ok(p) = a.evtchn_alloc_unbound(DomId(0)) {
        ports.push(p);
    }
    assert_eq!(ports.len(), crate::ports::MAX_PER_OWNER);
    let g1 = a.grant_access(DomId(0), 5, false).unwrap();
    let g2 = a.grant_access(DomId(0), 6, false).unwrap();
    // The backend still maps g2.
    world.borrow().hw.entries.0[g2.0 as usize]
        .0
        .set(1 | GrantEntryFlags::WRITING.bits());
    let w = &mut *world.borrow_mut();
    let (closed, kept) = w.fast.release(&w.hw, 1);
    assert_eq!(closed, ports);
    assert_eq!(kept, 1, "a mapped grant is kept for good");
    assert_eq!(w.hw.entries.0[g1.0 as usize].0.get(), 0, "g1 ended");
    assert_eq!(w.fast.grants.held_by(1), 1);
}

#[test]
fn watches_are_routed_to_their_callback_by_token() {
    let world = World::new(64, 64);
    let (a, b) = (child(&world, 1, 768), child(&world, 2, 832));
    let wa = a
        .watch(
            "/local/domain/0/backend/vbd/5/768/state",
            WatchCallback {
                func: record_watch,
                ctx: 3001,
            },
        )
        .unwrap();
    let wb = b
        .watch(
            "/local/domain/0/backend/vbd/5/832/state",
            WatchCallback {
                func: record_watch,
                ctx: 3002,
            },
        )
        .unwrap();
    assert_ne!(wa, wb);
    // xenstored fires each new watch once at registration.
    assert_eq!(World::run_watches(&world), 2);
    assert_eq!(
        (watched(3001), watched(3002)),
        ([wa.0].into(), [wb.0].into())
    );
    // The backend of a changes state: only a's callback runs.
    world
        .borrow_mut()
        .xs
        .set("/local/domain/0/backend/vbd/5/768/state", "4");
    assert_eq!(World::run_watches(&world), 1);
    assert_eq!(watched(3001), [wa.0, wa.0]);
    assert_eq!(watched(3002), [wb.0]);
    // b cannot remove a's watch; a can.
    b.unwatch(wa);
    assert_eq!(world.borrow().xs.watches.len(), 2);
    a.unwatch(wa);
    assert_eq!(world.borrow().xs.watches.len(), 1);
    world
        .borrow_mut()
        .xs
        .set("/local/domain/0/backend/vbd/5/768/state", "5");
    assert_eq!(World::run_watches(&world), 0, "removed: no delivery");
}

#[test]
fn events_read_while_serving_a_request_are_kept_for_the_bus() {
    let world = World::new(64, 64);
    let a = child(&world, 1, 768);
    let id = a
        .watch(
            "device/vbd/768",
            WatchCallback {
                func: record_watch,
                ctx: 3101,
            },
        )
        .unwrap();
    // The registration event and the one for this write arrive around the write's
    // reply; the request returns, the events wait for the bus' poll.
    a.xs_write(0, "device/vbd/768/state", "1").unwrap();
    assert!(watched(3101).is_empty());
    assert_eq!(World::run_watches(&world), 2);
    assert_eq!(watched(3101), [id.0, id.0]);
}

#[test]
fn hostile_watch_events_are_dropped_and_watches_bounded() {
    let world = World::new(64, 64);
    let a = child(&world, 1, 768);
    let cb = WatchCallback {
        func: record_watch,
        ctx: 3201,
    };
    let id = a.watch("device/vbd/768/x", cb).unwrap();
    World::run_watches(&world);
    // Events with tokens we never gave out, or of a removed watch.
    let routes = |token: &[u8]| {
        world.borrow().store.watches.route(&WatchEvent {
            path: "device/vbd/768/x".into(),
            token: token.to_vec(),
        })
    };
    for bad in [
        &b"sluice:"[..],
        b"sluice:99",
        b"other:1",
        b"sluice:-1",
        b"sluice:1x",
        b"sluice:99999999999999999999999",
    ] {
        assert!(routes(bad).is_none(), "{bad:?}");
    }
    assert!(routes(id.token().as_bytes()).is_some());
    assert_eq!(WatchId::from_token(id.token().as_bytes()), Some(id));
    // At most MAX_PER_OWNER watches per child.
    for i in 1..MAX_PER_OWNER {
        a.watch(&alloc::format!("device/vbd/768/w{i}"), cb).unwrap();
    }
    assert_eq!(
        a.watch("device/vbd/768/one-more", cb),
        Err(SeamError::NoResources)
    );
    assert!(a.watch("", cb).is_err(), "empty path");
}

#[test]
fn child_info_is_read_and_checked() {
    let world = World::new(8, 8);
    let w = &mut *world.borrow_mut();
    let c = Child {
        kind: Kind::Vbd,
        id: 768,
    };
    let info = |w: &mut World| child_info(&mut w.store.xs, &mut w.xs, &c);
    assert_eq!(info(w), Err(SeamError::Xenstore(22)), "no backend node");
    w.xs.store.insert(
        "device/vbd/768/backend".into(),
        "/local/domain/0/backend/vbd/5/768".into(),
    );
    for bad in ["", "x", "-1", "32752", "99999999999"] {
        w.xs.store
            .insert("device/vbd/768/backend-id".into(), bad.into());
        assert_eq!(info(w), Err(SeamError::Xenstore(22)), "domid {bad:?}");
    }
    w.xs.store
        .insert("device/vbd/768/backend-id".into(), "3".into());
    let got = info(w).unwrap();
    assert_eq!(
        (got.frontend.as_str(), got.domid),
        ("device/vbd/768", DomId(3))
    );
    w.xs.store
        .insert("device/vbd/768/backend".into(), "backend/vbd/5/768".into());
    assert!(info(w).is_err(), "a relative backend path");
}

#[test]
fn a_port_given_twice_is_refused_and_left_to_its_owner() {
    let world = World::new(8, 8);
    let a = child(&world, 1, 768);
    let p = a.evtchn_alloc_unbound(DomId(0)).unwrap();
    // A broken hypervisor hands out the same port again.
    world.borrow().hw.next_port.set(p.0 - 1);
    let b = child(&world, 2, 832);
    assert!(b.evtchn_alloc_unbound(DomId(0)).is_err());
    assert!(
        world.borrow().hw.closed.borrow().is_empty(),
        "a's port stays open"
    );
    assert!(world.borrow().fast.ports.owns(1, p));
}
