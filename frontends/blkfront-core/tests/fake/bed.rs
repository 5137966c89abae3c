//! A frontend core, its fake platform and a fake backend in one test bed, with the
//! steps every test takes (negotiate, make caller pages, submit, pump the rings).

use super::{BackendConfig, FakeBackend, FrontPlatform, Pg, World, BACK, FRONT};
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    BlockIo, Event, FrontState, Frontend, FrontendConfig, IoError, IoOp, IoSegment,
    NegotiationError, ProtocolError, SubmitError,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub type Done = Rc<RefCell<BTreeMap<u64, Result<(), IoError>>>>;

pub struct Bed {
    pub world: Rc<RefCell<World>>,
    pub plat: FrontPlatform,
    pub back: FakeBackend,
    pub front: Frontend<FrontPlatform, u64>,
    pub done: Done,
    pub next_tag: u64,
}

pub fn recorder(done: &Done) -> impl FnMut(u64, Result<(), IoError>) + '_ {
    move |tag, r| {
        let prev = done.borrow_mut().insert(tag, r);
        assert!(prev.is_none(), "I/O {tag} completed twice");
    }
}

impl Bed {
    /// A frontend started against a fake backend with a disk of `sectors`, not yet
    /// connected ([`Bed::bring_up`]).
    pub fn new(cfg: BackendConfig, front_cfg: FrontendConfig, sectors: u64) -> Bed {
        let world = World::new();
        let back = FakeBackend::new(world.clone(), sectors, cfg);
        let mut plat = FrontPlatform(world.clone());
        let mut front = Frontend::new(FRONT, BACK, super::BACKEND_ID, front_cfg).unwrap();
        front.start(&mut plat).unwrap();
        Bed {
            world,
            plat,
            back,
            front,
            done: Rc::default(),
            next_tag: 0,
        }
    }

    pub fn changed(&mut self, s: XenbusState) -> Result<Event, NegotiationError> {
        let done = self.done.clone();
        self.front
            .backend_changed(&mut self.plat, s, recorder(&done))
    }

    /// InitWait -> Initialised -> backend connect -> Connected.
    pub fn bring_up(&mut self) {
        assert!(matches!(
            self.changed(XenbusState::InitWait).unwrap(),
            Event::Initialised { .. }
        ));
        self.back.connect().unwrap();
        assert!(matches!(
            self.changed(XenbusState::Connected).unwrap(),
            Event::Connected(_)
        ));
        assert_eq!(self.front.state(), FrontState::Connected);
    }

    pub fn xs(&self, key: &str) -> Option<String> {
        self.world
            .borrow()
            .xs
            .get(&format!("{FRONT}/{key}"))
            .cloned()
    }

    /// `n` caller pages filled with a pattern derived from `seed`.
    pub fn pages(&self, n: usize, seed: u8) -> Vec<Pg> {
        let mut w = self.world.borrow_mut();
        (0..n)
            .map(|i| {
                let p = w.alloc(1);
                let bytes: Vec<u8> = (0..4096)
                    .map(|b| (b as u8).wrapping_mul(31) ^ seed ^ (i as u8).wrapping_mul(7))
                    .collect();
                w.fill_page(p, &bytes);
                p
            })
            .collect()
    }

    pub fn io(op: IoOp, sector: u64, pages: &[Pg]) -> BlockIo<Pg> {
        BlockIo {
            op,
            sector,
            segments: pages
                .iter()
                .map(|&page| IoSegment {
                    page,
                    first_sect: 0,
                    last_sect: 7,
                })
                .collect(),
        }
    }

    pub fn submit(&mut self, queue: usize, io: BlockIo<Pg>) -> Result<u64, SubmitError> {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.front
            .submit(&mut self.plat, queue, tag, io)
            .map(|()| tag)
            .map_err(|(e, _, _)| e)
    }

    /// Backend serves; frontend handles every queue's pending events.
    pub fn pump(&mut self) -> Result<usize, ProtocolError> {
        self.back.serve();
        let mut n = 0;
        for q in 0..self.front.queues() {
            let port = self.front.port(q).unwrap();
            if self.world.borrow_mut().take_front_events(port) > 0 {
                let done = self.done.clone();
                n += self
                    .front
                    .handle_event(&mut self.plat, q, recorder(&done))?;
            }
        }
        Ok(n)
    }

    pub fn result(&self, tag: u64) -> Option<Result<(), IoError>> {
        self.done.borrow().get(&tag).copied()
    }

    pub fn bytes(&self, pages: &[Pg]) -> Vec<u8> {
        let w = self.world.borrow();
        pages.iter().flat_map(|p| w.page_bytes(*p)).collect()
    }

    pub fn disk(&self, sector: u64, len: usize) -> &[u8] {
        let a = sector as usize * 512;
        &self.back.disk[a..a + len]
    }
}
