//! The console frontend core against a fake console backend on the fake Xen world:
//! negotiation, round trips through both rings (wrapping), and hostile backends.

use proptest::prelude::*;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_consfront_core::{ConsoleError, Event, FrontState, Frontend, RingSide};
use sluice_front_seams::fake::{FrontPlatform, World, BACKEND_ID};
use std::cell::RefCell;
use std::rc::Rc;

const NODE: &str = "device/console/1";
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3076;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;

type Fe = Frontend<FrontPlatform>;

/// The backend's side: the mapped page and the event channel, its own indices.
struct Back {
    mem: SharedMem<'static>,
    gref: GrantRef,
    port: EvtchnPort,
    in_prod: u32,
    out_cons: u32,
}

impl Back {
    /// Maps the ring the frontend published, as a backend does from xenstore.
    fn connect(world: &Rc<RefCell<World>>) -> Back {
        let mut w = world.borrow_mut();
        let gref = GrantRef(w.xs[&format!("{NODE}/ring-ref")].parse().unwrap());
        let port = EvtchnPort(w.xs[&format!("{NODE}/port")].parse().unwrap());
        let pg = w.map(gref, true).expect("ring grant maps writable");
        Back {
            mem: w.mem(pg, 1),
            gref,
            port,
            in_prod: 0,
            out_cons: 0,
        }
    }

    /// Takes all output (indices as a good backend checks them).
    fn drain(&mut self) -> Vec<u8> {
        let prod = self.mem.load_u32_acquire(OUT_PROD).unwrap();
        let n = prod.wrapping_sub(self.out_cons) as usize;
        assert!(n <= 2048);
        let mut out = vec![0; n];
        for (i, b) in out.iter_mut().enumerate() {
            let mut one = [0u8];
            let at = 1024 + (self.out_cons.wrapping_add(i as u32) as usize & 2047);
            self.mem.read_bytes(at, &mut one).unwrap();
            *b = one[0];
        }
        self.out_cons = prod;
        self.mem.store_u32_release(OUT_CONS, prod).unwrap();
        out
    }

    /// Puts as much of `data` as fits into the input ring; returns how much.
    fn feed(&mut self, data: &[u8]) -> usize {
        let cons = self.mem.load_u32_acquire(IN_CONS).unwrap();
        let free = 1024 - self.in_prod.wrapping_sub(cons) as usize;
        let n = data.len().min(free);
        for (i, b) in data[..n].iter().enumerate() {
            let at = self.in_prod.wrapping_add(i as u32) as usize & 1023;
            self.mem.write_bytes(at, &[*b]).unwrap();
        }
        self.in_prod = self.in_prod.wrapping_add(n as u32);
        self.mem.store_u32_release(IN_PROD, self.in_prod).unwrap();
        n
    }
}

struct Bed {
    world: Rc<RefCell<World>>,
    p: FrontPlatform,
    fe: Fe,
}

/// A driver always shuts its device down at remove (pages the fake backend still maps
/// are then leaked, as the fake checks).
impl Drop for Bed {
    fn drop(&mut self) {
        self.fe.shutdown(&mut self.p);
    }
}

fn started() -> Bed {
    let world = World::new();
    let mut p = FrontPlatform(world.clone());
    let mut fe = Fe::new(NODE, BACKEND_ID).unwrap();
    fe.start(&mut p).unwrap();
    Bed { world, p, fe }
}

fn connected() -> (Bed, Back) {
    let mut b = started();
    let back = Back::connect(&b.world);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Connected),
        Ok(Event::Connected)
    );
    (b, back)
}

fn state(b: &Bed) -> String {
    b.world.borrow().xs[&format!("{NODE}/state")].clone()
}

/// The device failed with `why`, and everything it held is released.
fn assert_failed(b: &mut Bed, why: &ConsoleError) {
    assert_eq!(b.fe.state(), FrontState::Failed);
    assert_eq!(b.fe.failure(), Some(why));
    assert_eq!(state(b), "6", "state Closed published");
    let w = b.world.borrow();
    assert_eq!(w.open_ports(), 0, "event channel closed");
    drop(w);
    assert_eq!(b.fe.write(&mut b.p, b"x"), Err(why.clone()));
    assert_eq!(b.fe.read(&mut b.p, &mut [0; 4]), Err(why.clone()));
}

#[test]
fn negotiation_publishes_ring_and_follows_backend() {
    let mut b = started();
    {
        let w = b.world.borrow();
        assert_eq!(w.xs[&format!("{NODE}/state")], "3", "Initialised");
        assert!(w.xs.contains_key(&format!("{NODE}/ring-ref")));
        assert_eq!(w.live_grants(), 1);
        assert_eq!(w.open_ports(), 1);
    }
    assert_eq!(b.fe.state(), FrontState::Initialised);
    assert_eq!(b.fe.number(), 1);
    Back::connect(&b.world);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait),
        Ok(Event::Nothing)
    );
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Connected),
        Ok(Event::Connected)
    );
    assert_eq!(state(&b), "4");
}

#[test]
fn console_zero_and_bad_names_are_refused() {
    assert_eq!(
        Fe::new("device/console/0", BACKEND_ID).err(),
        Some(ConsoleError::BadNodename)
    );
    assert_eq!(
        Fe::new("device/console/x", BACKEND_ID).err(),
        Some(ConsoleError::BadNodename)
    );
}

#[test]
fn bogus_backend_id_is_refused_before_anything_is_allocated() {
    let world = World::new();
    assert_eq!(
        Fe::new(NODE, DomId(0x7FF0)).err(),
        Some(ConsoleError::BadBackendId(0x7FF0))
    );
    assert_eq!(world.borrow().live_allocs(), 0);
}

#[test]
fn bytes_round_trip_both_ways_across_many_wraps() {
    let (mut b, mut back) = connected();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    while sent < data.len() {
        let n =
            b.fe.write(&mut b.p, &data[sent..sent + 700.min(data.len() - sent)]);
        sent += n.unwrap();
        got.extend(back.drain());
    }
    got.extend(back.drain());
    assert_eq!(got, data);
    assert!(b.world.borrow_mut().take_back_events(back.port) > 0);

    let mut fed = 0;
    let mut read = Vec::new();
    while read.len() < data.len() {
        fed += back.feed(&data[fed..]);
        let mut buf = [0u8; 333];
        let n = b.fe.read(&mut b.p, &mut buf).unwrap();
        read.extend_from_slice(&buf[..n]);
    }
    assert_eq!(read, data);
    let s = b.fe.stats();
    assert_eq!((s.bytes_out, s.bytes_in), (20_000, 20_000));
}

#[test]
fn full_output_ring_takes_nothing_until_drained() {
    let (mut b, mut back) = connected();
    assert_eq!(b.fe.write(&mut b.p, &[1; 3000]), Ok(2048));
    assert_eq!(b.fe.write_room(&mut b.p), Ok(0));
    assert_eq!(b.fe.write(&mut b.p, &[2; 10]), Ok(0));
    assert_eq!(back.drain().len(), 2048);
    assert_eq!(b.fe.write_room(&mut b.p), Ok(2048));
}

#[test]
fn runaway_out_cons_fails_the_device() {
    let (mut b, back) = connected();
    b.fe.write(&mut b.p, b"hello").unwrap();
    back.mem.store_u32_release(OUT_CONS, 6).unwrap(); // consumed past our producer
    let why = ConsoleError::RunawayIndex {
        ring: RingSide::Output,
        cons: 6,
        prod: 5,
    };
    assert_eq!(b.fe.write(&mut b.p, b"more"), Err(why.clone()));
    assert_failed(&mut b, &why);
}

#[test]
fn runaway_in_prod_fails_the_device() {
    let (mut b, back) = connected();
    back.mem.store_u32_release(IN_PROD, 1025).unwrap(); // more than the ring holds
    let why = ConsoleError::RunawayIndex {
        ring: RingSide::Input,
        cons: 0,
        prod: 1025,
    };
    assert_eq!(b.fe.read(&mut b.p, &mut [0; 64]), Err(why.clone()));
    assert_failed(&mut b, &why);
}

#[test]
fn our_indices_on_the_page_are_never_read_back() {
    let (mut b, mut back) = connected();
    b.fe.write(&mut b.p, b"abc").unwrap();
    // The backend scribbles over the indices that are ours.
    back.mem.store_u32_release(OUT_PROD, 9999).unwrap();
    back.mem.store_u32_release(IN_CONS, 4242).unwrap();
    back.mem.store_u32_release(OUT_PROD, 3).unwrap();
    b.fe.write(&mut b.p, b"def").unwrap();
    assert_eq!(back.mem.load_u32_acquire(OUT_PROD).unwrap(), 6);
    assert_eq!(back.drain(), b"abcdef");
    back.in_prod = 0;
    back.mem.store_u32_release(IN_CONS, 0).unwrap();
    back.feed(b"xy");
    back.mem.store_u32_release(IN_CONS, 4242).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.fe.read(&mut b.p, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"xy");
    assert_eq!(back.mem.load_u32_acquire(IN_CONS).unwrap(), 2);
}

#[test]
fn bogus_ring_ref_and_port_in_xenstore_change_nothing() {
    let (mut b, mut back) = connected();
    {
        let mut w = b.world.borrow_mut();
        w.xs.insert(format!("{NODE}/ring-ref"), "4294967295".into());
        w.xs.insert(format!("{NODE}/port"), "-1".into());
    }
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Connected),
        Ok(Event::Nothing)
    );
    assert_eq!(b.fe.write(&mut b.p, b"still"), Ok(5));
    assert_eq!(back.drain(), b"still");
    assert_eq!(b.fe.ring_ref(), Some(back.gref));
    assert_eq!(b.fe.port(), Some(back.port));
}

#[test]
fn vanished_backend_fails_the_device() {
    let (mut b, back) = connected();
    b.world.borrow_mut().unmap(back.gref);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Unknown),
        Err(ConsoleError::BackendVanished)
    );
    assert_failed(&mut b, &ConsoleError::BackendVanished);
    assert_eq!(b.world.borrow().live_grants(), 0);
    assert_eq!(
        b.world.borrow().live_allocs(),
        0,
        "page freed once unmapped"
    );
}

#[test]
fn page_still_mapped_at_failure_is_leaked_not_freed() {
    let (mut b, _back) = connected();
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Unknown),
        Err(ConsoleError::BackendVanished)
    );
    assert_eq!(b.fe.stats().quarantined_pages, 1);
    assert_eq!(b.world.borrow().live_grants(), 1, "grant kept while mapped");
}

#[test]
fn backend_close_and_return_gives_a_new_ring() {
    let (mut b, back) = connected();
    b.world.borrow_mut().unmap(back.gref);
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::Closing),
        Ok(Event::Disconnected)
    );
    assert_eq!(b.fe.write(&mut b.p, b"x"), Err(ConsoleError::NotConnected));
    assert_eq!(b.fe.state(), FrontState::Closed, "not a failure");
    assert_eq!(
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait),
        Ok(Event::Reopened)
    );
    let mut back = Back::connect(&b.world);
    b.fe.backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
    assert_eq!(b.fe.write(&mut b.p, b"again"), Ok(5));
    assert_eq!(back.drain(), b"again");
    assert_eq!(b.fe.stats().connects, 2);
}

#[test]
fn shutdown_releases_everything() {
    let (mut b, back) = connected();
    b.world.borrow_mut().unmap(back.gref);
    b.fe.shutdown(&mut b.p);
    let w = b.world.borrow();
    assert_eq!(
        (w.open_ports(), w.live_grants(), w.live_allocs()),
        (0, 0, 0)
    );
    assert_eq!(w.xs[&format!("{NODE}/state")], "6");
}

#[test]
fn allocation_failure_at_start_fails_cleanly() {
    let world = World::new();
    world.borrow_mut().alloc_budget = Some(0);
    let mut p = FrontPlatform(world.clone());
    let mut fe = Fe::new(NODE, BACKEND_ID).unwrap();
    assert!(matches!(fe.start(&mut p), Err(ConsoleError::Platform(_))));
    assert_eq!(fe.state(), FrontState::Failed);
    assert_eq!(world.borrow().open_ports(), 0);
}

proptest! {
    /// Any interleaving of chunk sizes carries both byte streams intact.
    #[test]
    fn streams_survive_any_chunking(
        chunks in proptest::collection::vec((1usize..3000, 1usize..1500, any::<bool>()), 1..40)
    ) {
        let (mut b, mut back) = connected();
        let mut out_sent = Vec::new();
        let mut out_got = Vec::new();
        let mut in_sent = Vec::new();
        let mut in_got = Vec::new();
        let mut seed = 0u8;
        for (w, r, drain) in chunks {
            let data: Vec<u8> = (0..w).map(|i| seed.wrapping_add(i as u8)).collect();
            seed = seed.wrapping_add(1);
            let n = b.fe.write(&mut b.p, &data).unwrap();
            out_sent.extend_from_slice(&data[..n]);
            let fed = back.feed(&data[..r.min(data.len())]);
            in_sent.extend_from_slice(&data[..fed]);
            let mut buf = vec![0u8; r];
            let k = b.fe.read(&mut b.p, &mut buf).unwrap();
            in_got.extend_from_slice(&buf[..k]);
            if drain {
                out_got.extend(back.drain());
            }
        }
        out_got.extend(back.drain());
        let mut buf = [0u8; 1024];
        let k = b.fe.read(&mut b.p, &mut buf).unwrap();
        in_got.extend_from_slice(&buf[..k]);
        prop_assert_eq!(out_got, out_sent);
        prop_assert_eq!(in_got, in_sent);
    }
}
