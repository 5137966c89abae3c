//! The fake Xen world of `sluice_front_seams::fake` (grant table, event channels,
//! xenstore, pages: the frontend's `Platform`) and a block backend serving a `Vec<u8>`
//! disk through the real abi ring, with hostile variants.
//!
//! The fake checks the frontend's discipline as a hypervisor would: it panics when the
//! frontend frees a page that is still granted, grants a freed page, or touches freed
//! memory.

#![allow(dead_code)]

pub mod bed;

use sluice_abi::blkif::{
    decode_request, BlkRequest, BlkifBackRing, BlkifLimits, BlkifOp, BlkifRequestSegment,
    BlkifResponse, BlkifRsp, SECTOR_SIZE, SEGMENTS_PER_INDIRECT_PAGE,
};
use sluice_abi::ring::RSP_PROD_OFFSET;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{EvtchnPort, GrantRef};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

pub use sluice_front_seams::fake::{FrontPlatform, Pg, World, BACKEND_ID};
pub const FRONT: &str = "device/vbd/51712";
pub const BACK: &str = "backend/vbd/1/51712";

/// What the fake backend offers.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub max_queues: u32,
    pub max_ring_page_order: u32,
    pub persistent: bool,
    pub max_indirect_segments: u32,
    pub flush: Option<&'static str>,
    pub discard: bool,
    pub discard_secure: bool,
    pub readonly: bool,
}

impl Default for BackendConfig {
    /// Like Linux blkback: 4 queues, order 4, persistent, 256 indirect, flush, discard.
    fn default() -> Self {
        BackendConfig {
            max_queues: 4,
            max_ring_page_order: 4,
            persistent: true,
            max_indirect_segments: 256,
            flush: Some("feature-flush-cache"),
            discard: true,
            discard_secure: false,
            readonly: false,
        }
    }
}

/// Ways a hostile backend breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    None,
    /// Responses carry an id no request has.
    BogusId,
    /// Responses answer a slot with no request in flight.
    UnsentId,
    /// Every response of a batch answers the first request.
    DuplicateId,
    /// Responses carry another operation.
    WrongOperation,
    /// rsp_prod runs past the requests.
    OverflowRspProd,
    /// Never answers.
    Silent,
    /// Never unmaps data grants.
    KeepGrantsMapped,
    /// Answers every request with BLKIF_RSP_ERROR.
    ErrorStatus,
}

struct BackQueue {
    ring: BlkifBackRing<'static>,
    mem: SharedMem<'static>,
    ring_grefs: Vec<GrantRef>,
    port: EvtchnPort,
}

/// A block backend in "dom0", serving a `Vec<u8>` disk.
pub struct FakeBackend {
    world: Rc<RefCell<World>>,
    pub disk: Vec<u8>,
    pub cfg: BackendConfig,
    queues: Vec<BackQueue>,
    /// Grants kept mapped (persistent grants).
    persistent_maps: BTreeMap<GrantRef, Pg>,
    use_persistent: bool,
    pub misbehave: Misbehaviour,
    /// (operation, sector, sectors) of every request served.
    pub log: Vec<(u8, u64, u64)>,
    /// The distinct grants each queue's requests named (data and indirect pages): what
    /// a backend's per-ring cache of persistent grants would have to hold.
    pub seen: Vec<BTreeSet<GrantRef>>,
    serving: usize,
}

impl FakeBackend {
    /// A backend for a disk of `sectors` 512-byte sectors, published in state InitWait.
    pub fn new(world: Rc<RefCell<World>>, sectors: u64, cfg: BackendConfig) -> FakeBackend {
        let b = FakeBackend {
            world,
            disk: vec![0; (sectors * SECTOR_SIZE) as usize],
            cfg,
            queues: Vec::new(),
            persistent_maps: BTreeMap::new(),
            use_persistent: false,
            misbehave: Misbehaviour::None,
            log: Vec::new(),
            seen: Vec::new(),
            serving: 0,
        };
        b.init_wait();
        b
    }

    fn write(&self, key: &str, value: impl ToString) {
        self.world
            .borrow_mut()
            .xs
            .insert(format!("{BACK}/{key}"), value.to_string());
    }

    fn front(&self, key: &str) -> Option<String> {
        self.world
            .borrow()
            .xs
            .get(&format!("{FRONT}/{key}"))
            .cloned()
    }

    pub fn init_wait(&self) {
        self.write("multi-queue-max-queues", self.cfg.max_queues);
        self.write("max-ring-page-order", self.cfg.max_ring_page_order);
        self.write("state", 2);
    }

    /// Maps the frontend's rings and goes Connected (blkback's `connect`).
    pub fn connect(&mut self) -> Result<(), String> {
        if self.front("state").as_deref() != Some("3") {
            return Err(format!("frontend state is {:?}", self.front("state")));
        }
        if self.front("protocol").as_deref() != Some("x86_64-abi") {
            return Err("bad protocol".into());
        }
        let nq: usize = self
            .front("multi-queue-num-queues")
            .map_or(Ok(1), |v| v.parse())
            .map_err(|e| format!("multi-queue-num-queues: {e}"))?;
        if nq as u32 > self.cfg.max_queues {
            return Err("too many queues".into());
        }
        let order: u32 = self
            .front("ring-page-order")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|e| format!("ring-page-order: {e}"))?;
        if order > self.cfg.max_ring_page_order {
            return Err("ring too large".into());
        }
        for qi in 0..nq {
            let dir = if nq > 1 {
                format!("queue-{qi}/")
            } else {
                String::new()
            };
            let refs: Vec<GrantRef> = if order == 0 {
                vec![self
                    .front(&format!("{dir}ring-ref"))
                    .ok_or("no ring-ref")?
                    .parse()
                    .map_err(|_| "bad ring-ref")?]
            } else {
                (0..1u32 << order)
                    .map(|i| {
                        self.front(&format!("{dir}ring-ref{i}"))
                            .ok_or(format!("no ring-ref{i}"))?
                            .parse()
                            .map_err(|_| format!("bad ring-ref{i}"))
                    })
                    .collect::<Result<_, String>>()?
            };
            let port: EvtchnPort = self
                .front(&format!("{dir}event-channel"))
                .ok_or("no event-channel")?
                .parse()
                .map_err(|_| "bad event-channel")?;
            let mut w = self.world.borrow_mut();
            let mut pages = Vec::new();
            for g in &refs {
                pages.push(w.map(*g, true)?);
            }
            // A contiguous mapping of the ring pages, as the backend's vmap would give.
            let first = pages[0];
            for (i, pg) in pages.iter().enumerate() {
                if pg.alloc != first.alloc || pg.index != first.index + i {
                    return Err("ring pages are not one area".into());
                }
            }
            let mem = w.mem(first, pages.len());
            drop(w);
            let ring = BlkifBackRing::new(mem).map_err(|e| e.to_string())?;
            self.queues.push(BackQueue {
                ring,
                mem,
                ring_grefs: refs,
                port,
            });
        }
        self.use_persistent =
            self.cfg.persistent && self.front("feature-persistent").as_deref() == Some("1");
        self.write("sectors", self.disk.len() as u64 / SECTOR_SIZE);
        self.write("info", if self.cfg.readonly { 4 } else { 0 });
        self.write("sector-size", 512);
        self.write("physical-sector-size", 4096);
        if let Some(f) = self.cfg.flush {
            self.write(f, 1);
        }
        self.write("feature-discard", u8::from(self.cfg.discard));
        if self.cfg.discard {
            self.write("discard-granularity", 4096);
            self.write("discard-alignment", 0);
            self.write("discard-secure", u8::from(self.cfg.discard_secure));
        }
        self.write("feature-persistent", u8::from(self.cfg.persistent));
        self.write(
            "feature-max-indirect-segments",
            self.cfg.max_indirect_segments,
        );
        self.write("state", 4);
        Ok(())
    }

    /// Closes: unmaps everything, state Closed (what blkback does when the toolstack
    /// detaches or the backend restarts).
    pub fn close(&mut self) {
        let mut w = self.world.borrow_mut();
        for q in self.queues.drain(..) {
            for g in q.ring_grefs {
                w.unmap(g);
            }
        }
        for (g, _) in std::mem::take(&mut self.persistent_maps) {
            w.unmap(g);
        }
        drop(w);
        self.write("state", 6);
    }

    /// The backend's directory disappears (its domain died).
    pub fn vanish(&mut self) {
        self.queues.clear();
        self.world
            .borrow_mut()
            .xs
            .retain(|k, _| !k.starts_with(BACK));
    }

    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    fn map_data(&mut self, gref: GrantRef, write: bool) -> Result<Pg, String> {
        if self.seen.len() <= self.serving {
            self.seen.resize(self.serving + 1, BTreeSet::new());
        }
        self.seen[self.serving].insert(gref);
        if let Some(pg) = self.persistent_maps.get(&gref) {
            return Ok(*pg);
        }
        let pg = self.world.borrow_mut().map(gref, write)?;
        if self.use_persistent {
            self.persistent_maps.insert(gref, pg);
        }
        Ok(pg)
    }

    fn unmap_data(&mut self, gref: GrantRef) {
        if !self.use_persistent && self.misbehave != Misbehaviour::KeepGrantsMapped {
            self.world.borrow_mut().unmap(gref);
        }
    }

    fn rw(&mut self, op: BlkifOp, sector: u64, segs: &[BlkifRequestSegment]) -> BlkifRsp {
        let mut pos = sector * SECTOR_SIZE;
        for s in segs {
            let write_to_page = op == BlkifOp::Read;
            let pg = match self.map_data(s.gref, write_to_page) {
                Ok(pg) => pg,
                Err(_) => return BlkifRsp::Error,
            };
            let len = s.byte_len();
            let range = pos as usize..pos as usize + len;
            if range.end > self.disk.len() {
                self.unmap_data(s.gref);
                return BlkifRsp::Error;
            }
            let mem = self.world.borrow().mem(pg, 1);
            if write_to_page {
                mem.write_bytes(s.byte_offset(), &self.disk[range]).unwrap();
            } else {
                mem.read_bytes(s.byte_offset(), &mut self.disk[range])
                    .unwrap();
            }
            self.unmap_data(s.gref);
            pos += len as u64;
        }
        BlkifRsp::Okay
    }

    fn serve_one(&mut self, req: BlkRequest) -> BlkifRsp {
        match req {
            BlkRequest::ReadWrite {
                op,
                sector_number,
                segments,
                ..
            } => {
                self.log.push((op.raw(), sector_number, segments.sectors()));
                match op {
                    BlkifOp::Read | BlkifOp::Write => {
                        self.rw(op, sector_number, segments.as_slice())
                    }
                    BlkifOp::FlushDiskcache | BlkifOp::WriteBarrier => {
                        let ok = self.cfg.flush
                            == Some(if op == BlkifOp::FlushDiskcache {
                                "feature-flush-cache"
                            } else {
                                "feature-barrier"
                            });
                        if !ok {
                            return BlkifRsp::EOpNotSupp;
                        }
                        self.rw(BlkifOp::Write, sector_number, segments.as_slice())
                    }
                    _ => BlkifRsp::Error,
                }
            }
            BlkRequest::Discard {
                sector_number,
                nr_sectors,
                secure,
                ..
            } => {
                self.log
                    .push((BlkifOp::Discard.raw(), sector_number, nr_sectors));
                if !self.cfg.discard || (secure && !self.cfg.discard_secure) {
                    return BlkifRsp::EOpNotSupp;
                }
                let a = (sector_number * SECTOR_SIZE) as usize;
                let b = a + (nr_sectors * SECTOR_SIZE) as usize;
                if b > self.disk.len() {
                    return BlkifRsp::Error;
                }
                self.disk[a..b].fill(0);
                BlkifRsp::Okay
            }
            BlkRequest::Indirect {
                op,
                sector_number,
                nr_segments,
                ..
            } => {
                let mut segs = Vec::with_capacity(nr_segments as usize);
                for (pi, gref) in req.indirect_grefs().iter().enumerate() {
                    let pg = match self.map_data(*gref, false) {
                        Ok(pg) => pg,
                        Err(_) => return BlkifRsp::Error,
                    };
                    let mem = self.world.borrow().mem(pg, 1);
                    let n = (nr_segments as usize - pi * SEGMENTS_PER_INDIRECT_PAGE)
                        .min(SEGMENTS_PER_INDIRECT_PAGE);
                    for i in 0..n {
                        segs.push(mem.read::<BlkifRequestSegment>(i * 8).unwrap());
                    }
                    self.unmap_data(*gref);
                }
                if sluice_abi::blkif::check_indirect_segments(&req, &segs).is_err() {
                    return BlkifRsp::Error;
                }
                let sectors = segs.iter().map(|s| s.sectors()).sum();
                self.log
                    .push((BlkifOp::Indirect.raw(), sector_number, sectors));
                self.rw(op, sector_number, &segs)
            }
        }
    }

    /// Serves every queue the frontend notified; returns the requests answered.
    pub fn serve(&mut self) -> usize {
        let mut served = 0;
        let limits = BlkifLimits {
            max_indirect_segments: self.cfg.max_indirect_segments as u16,
        };
        for qi in 0..self.queues.len() {
            let port = self.queues[qi].port;
            if self.world.borrow_mut().take_back_events(port) == 0 {
                continue;
            }
            if self.misbehave == Misbehaviour::Silent {
                continue;
            }
            loop {
                let mut batch: Vec<BlkifResponse> = Vec::new();
                while let Some(slot) = self.queues[qi].ring.pop_request().expect("front ring") {
                    let rsp = match decode_request(&slot, &limits) {
                        Ok(req) => {
                            self.serving = qi;
                            let status = self.serve_one(req);
                            // Like Linux's blkback: an indirect request is answered with
                            // the operation it carries.
                            let op = match req {
                                BlkRequest::Indirect { op, .. } => op.raw(),
                                _ => slot.operation,
                            };
                            BlkifResponse::new(req.id(), op, status)
                        }
                        Err(e) => e.response(),
                    };
                    batch.push(rsp);
                }
                let first_id = batch.first().map(|r| r.id);
                for mut rsp in batch {
                    match self.misbehave {
                        Misbehaviour::BogusId => rsp.id = 0xdead_beef,
                        Misbehaviour::UnsentId => rsp.id += 3,
                        Misbehaviour::DuplicateId => rsp.id = first_id.unwrap(),
                        Misbehaviour::WrongOperation => rsp.operation ^= 0x40,
                        Misbehaviour::ErrorStatus => rsp.status = BlkifRsp::Error.raw(),
                        _ => {}
                    }
                    self.queues[qi].ring.push_response(&rsp).unwrap();
                    served += 1;
                }
                let notify = self.queues[qi]
                    .ring
                    .push_responses_and_check_notify()
                    .unwrap();
                if self.misbehave == Misbehaviour::OverflowRspProd {
                    let mem = self.queues[qi].mem;
                    let p = mem.load_u32_acquire(RSP_PROD_OFFSET).unwrap();
                    mem.store_u32_release(RSP_PROD_OFFSET, p.wrapping_add(50))
                        .unwrap();
                }
                if notify || self.misbehave == Misbehaviour::OverflowRspProd {
                    let mut w = self.world.borrow_mut();
                    w.notify_front(port);
                }
                if !self.queues[qi].ring.final_check_for_requests().unwrap() {
                    break;
                }
            }
        }
        served
    }
}
