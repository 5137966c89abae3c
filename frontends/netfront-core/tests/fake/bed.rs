//! A netfront core, its fake platform and the fake netback in one test bed, with the
//! steps the tests share (negotiate, connect, transmit, poll, check a failed device).

use super::netback::{BackConfig, Netback};
use super::{FrontPlatform, World, BACK, BACKEND_ID, FRONT};
use sluice_abi::netif::NetRxFlags;
use sluice_abi::shared::SharedMem;
use sluice_abi::xenbus::XenbusState;
use sluice_netfront_core::{
    Event, FrontState, Frontend, FrontendConfig, NetifGsoType, ProtocolError, TxError, TxOffload,
};
use std::cell::RefCell;
use std::rc::Rc;

pub type Fe = Frontend<FrontPlatform>;

pub struct Bed {
    pub world: Rc<RefCell<World>>,
    pub p: FrontPlatform,
    pub fe: Fe,
    pub be: Netback,
}

pub fn bed_with(cfg: BackConfig, fcfg: FrontendConfig) -> Bed {
    let world = World::new();
    let be = Netback::new(world.clone(), cfg);
    let mut p = FrontPlatform(world.clone());
    let mut fe = Fe::new(FRONT, BACK, BACKEND_ID, fcfg).unwrap();
    assert_eq!(fe.start(&mut p).unwrap(), [0, 0x16, 0x3e, 0, 0, 1]);
    Bed { world, p, fe, be }
}

/// A connected bed: negotiation done, backend mapped the rings.
pub fn connected(cfg: BackConfig, queues: u32) -> Bed {
    connected_with(
        cfg,
        FrontendConfig {
            max_queues: queues,
            ..Default::default()
        },
    )
}

/// [`connected`] with the frontend's whole configuration.
pub fn connected_with(cfg: BackConfig, fcfg: FrontendConfig) -> Bed {
    let mut b = bed_with(cfg, fcfg);
    let ev =
        b.fe.backend_changed(&mut b.p, XenbusState::InitWait)
            .unwrap();
    assert!(matches!(ev, Event::Connected { .. }), "{ev:?}");
    b.be.connect();
    b.fe.backend_changed(&mut b.p, XenbusState::Connected)
        .unwrap();
    b
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub type Got = (Vec<u8>, NetRxFlags, Option<(NetifGsoType, u16)>);

/// Transmits `frags` (copied into mutable buffers: the core takes shared memory).
pub fn tx(b: &mut Bed, q: usize, frags: &[&[u8]], off: &TxOffload) -> Result<(), TxError> {
    let mut bufs: Vec<Vec<u8>> = frags.iter().map(|f| f.to_vec()).collect();
    let mems: Vec<SharedMem<'_>> = bufs
        .iter_mut()
        .map(|v| SharedMem::from_mut_slice(v))
        .collect();
    b.fe.transmit(&mut b.p, q, &mems, off)
}

pub fn poll(b: &mut Bed, q: usize) -> Result<Vec<Got>, ProtocolError> {
    let mut got = Vec::new();
    loop {
        let r = b.fe.poll(&mut b.p, q, 64, |pkt| {
            let mut v = vec![0; pkt.len];
            pkt.copy_to(&mut v).unwrap();
            got.push((v, pkt.flags, pkt.gso));
        })?;
        if !r.more {
            return Ok(got);
        }
    }
}

pub fn read(b: &Bed, key: &str) -> Option<String> {
    b.world.borrow().xs.get(&format!("{FRONT}/{key}")).cloned()
}

/// After a fatal error: failed, transmits refused, channels closed, grants ended
/// (ring pages the backend still maps quarantined, never freed).
pub fn assert_failed(b: &mut Bed) {
    assert_eq!(b.fe.state(), FrontState::Failed);
    assert_eq!(read(b, "state").as_deref(), Some("6"));
    assert_eq!(
        tx(b, 0, &[&[0u8; 60][..]], &TxOffload::default()),
        Err(TxError::NotConnected)
    );
    assert_eq!(b.world.borrow().open_ports(), 0);
    let mapped = b.world.borrow().mapped_grants();
    assert_eq!(
        b.world.borrow().live_grants(),
        mapped,
        "only mapped grants live"
    );
    assert_eq!(b.fe.stats().quarantined_pages, mapped as u64);
    // Polls after the failure do nothing.
    assert_eq!(b.fe.poll(&mut b.p, 0, 64, |_| panic!()).unwrap().rx, 0);
}
