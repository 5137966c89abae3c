//! xenvbd's block path (`sluice_xenvbd_core::disk`): SRBs through the real
//! `blkfront-core` against the fake block backend of blkfront-core's own tests (a
//! `Vec<u8>` disk on the real abi ring, in the fake Xen world of `sluice_front_seams`),
//! well-behaved and hostile. Hostile backends fail the SRBs, never the test process.

#[path = "../../../blkfront-core/tests/fake/mod.rs"]
mod fake;

use fake::{BackendConfig, FakeBackend, FrontPlatform, Misbehaviour, Pg, World, BACK, FRONT};
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{Event, FrontState, Frontend, FrontendConfig};
use sluice_xenvbd_core::disk::{Disk, Outcome, Request};
use sluice_xenvbd_core::srb::{function, status, Completion};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

const SECTORS: u64 = 8192; // 4 MiB
const OP_WRITE: u8 = 1;
const OP_FLUSH: u8 = 3;
const OP_DISCARD: u8 = 5;

struct Bed {
    world: Rc<RefCell<World>>,
    plat: FrontPlatform,
    back: FakeBackend,
    disk: Disk<FrontPlatform, u32>,
    /// Completed SRBs by id (each exactly once).
    done: BTreeMap<u32, Completion>,
}

impl Bed {
    fn new(cfg: BackendConfig, front_cfg: FrontendConfig) -> Bed {
        let world = World::new();
        let back = FakeBackend::new(world.clone(), SECTORS, cfg);
        let mut plat = FrontPlatform(world.clone());
        let mut front = Frontend::new(FRONT, BACK, fake::BACKEND_ID, front_cfg).unwrap();
        front.start(&mut plat).unwrap();
        let mut b = Bed {
            world,
            plat,
            back,
            disk: Disk::new(front),
            done: BTreeMap::new(),
        };
        let (r, _) = b.disk.backend_changed(&mut b.plat, XenbusState::InitWait);
        assert!(matches!(r.unwrap(), Event::Initialised { .. }));
        b.back.connect().unwrap();
        let (r, _) = b.disk.backend_changed(&mut b.plat, XenbusState::Connected);
        assert!(matches!(r.unwrap(), Event::Connected(_)));
        b
    }

    fn record(&mut self, list: Vec<(u32, Completion)>) {
        for (id, c) in list {
            assert!(
                self.done.insert(id, c).is_none(),
                "SRB {id} completed twice"
            );
        }
    }

    /// The backend serves, the frontend's event callbacks run.
    fn pump(&mut self) {
        self.back.serve();
        let ports: Vec<_> = (0..self.disk.front().queues())
            .map(|q| self.disk.front().port(q).unwrap())
            .collect();
        for (q, port) in ports.into_iter().enumerate() {
            // (A failed device closed its ports: a late event has no queue any more.)
            if self.world.borrow_mut().take_front_events(port) > 0 {
                let (c, _) = self.disk.on_event(&mut self.plat, q);
                self.record(c);
            }
        }
    }

    /// HwStartIo for SRB `id` (an EXECUTE_SCSI at LUN 0).
    fn start(&mut self, id: u32, cdb: &[u8], sg: &[(Pg, usize, usize)], param: &[u8]) -> bool {
        let data_len = sg.iter().map(|s| s.2).sum::<usize>().max(param.len());
        let req = Request {
            function: function::EXECUTE_SCSI,
            address: (0, 0, 0),
            cdb,
            data_len,
            sg,
            param,
        };
        match self.disk.start_io(&mut self.plat, id, &req) {
            Outcome::Complete(s, c) => {
                self.record(vec![(s, c)]);
                false
            }
            Outcome::Sent => true,
        }
    }

    /// `n` fresh pages as an SG list of whole pages.
    fn pages(&self, n: usize) -> Vec<(Pg, usize, usize)> {
        let first = self.world.borrow_mut().alloc(n);
        (0..n)
            .map(|i| {
                (
                    Pg {
                        alloc: first.alloc,
                        index: i,
                    },
                    0,
                    4096,
                )
            })
            .collect()
    }
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn no_indirect() -> BackendConfig {
    BackendConfig {
        max_indirect_segments: 0,
        persistent: false,
        ..BackendConfig::default()
    }
}

fn good(c: &Completion) -> bool {
    c.srb_status == status::SUCCESS
}

fn sense_key(c: &Completion) -> u8 {
    c.sense.expect("sense data")[2] & 0xf
}

#[test]
fn writes_and_reads_split_to_the_backend_limit_round_trip() {
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    assert_eq!(b.disk.front().max_segments(), 11, "no indirect segments");
    // 64 KiB = 16 pages = 128 sectors at LBA 100: two blkif requests (11 + 5).
    let src = b.pages(16);
    for (i, (pg, _, _)) in src.iter().enumerate() {
        b.world.borrow().fill_page(*pg, &[i as u8 + 1; 4096]);
    }
    assert!(b.start(1, &rw10(0x2a, 100, 128), &src, &[]));
    b.pump();
    assert!(good(&b.done[&1]), "{:?}", b.done[&1]);
    let writes: Vec<_> = b.back.log.iter().filter(|l| l.0 == OP_WRITE).collect();
    assert_eq!(
        writes.iter().map(|l| (l.1, l.2)).collect::<Vec<_>>(),
        [(100, 88), (188, 40)],
        "split at 11 segments, sectors contiguous"
    );
    assert_eq!(b.back.disk[100 * 512], 1);
    assert_eq!(b.back.disk[(100 + 127) * 512], 16);
    // READ(16) it back into other pages.
    let dst = b.pages(16);
    assert!(b.start(2, &rw16(0x88, 100, 128), &dst, &[]));
    b.pump();
    assert!(good(&b.done[&2]));
    for (i, (pg, _, _)) in dst.iter().enumerate() {
        assert_eq!(b.world.borrow().page_bytes(*pg), vec![i as u8 + 1; 4096]);
    }
    assert_eq!(b.disk.in_flight(), 0);
}

#[test]
fn synchronize_cache_flushes_and_unmap_discards() {
    let mut b = Bed::new(BackendConfig::default(), FrontendConfig::default());
    let mut sync = [0u8; 10];
    sync[0] = 0x35;
    assert!(b.start(1, &sync, &[], &[]));
    b.pump();
    assert!(good(&b.done[&1]));
    assert!(b.back.log.iter().any(|l| l.0 == OP_FLUSH));
    // UNMAP two ranges: LBA 8 x 16, LBA 4000 x 1.
    let mut list = vec![0u8; 8 + 32];
    list[2..4].copy_from_slice(&32u16.to_be_bytes());
    list[8..16].copy_from_slice(&8u64.to_be_bytes());
    list[16..20].copy_from_slice(&16u32.to_be_bytes());
    list[24..32].copy_from_slice(&4000u64.to_be_bytes());
    list[32..36].copy_from_slice(&1u32.to_be_bytes());
    let mut unmap = [0u8; 10];
    unmap[0] = 0x42;
    unmap[7..9].copy_from_slice(&(list.len() as u16).to_be_bytes());
    assert!(b.start(2, &unmap, &[], &list));
    b.pump();
    assert!(good(&b.done[&2]), "{:?}", b.done[&2]);
    let discards: Vec<_> = b
        .back
        .log
        .iter()
        .filter(|l| l.0 == OP_DISCARD)
        .map(|l| (l.1, l.2))
        .collect();
    assert_eq!(discards, [(8, 16), (4000, 1)]);
}

#[test]
fn without_flush_or_discard_nothing_is_sent() {
    let cfg = BackendConfig {
        flush: None,
        discard: false,
        ..BackendConfig::default()
    };
    let mut b = Bed::new(cfg, FrontendConfig::default());
    let mut sync = [0u8; 10];
    sync[0] = 0x35;
    assert!(!b.start(1, &sync, &[], &[]), "answered at once");
    assert!(good(&b.done[&1]));
    let mut unmap = [0u8; 10];
    unmap[0] = 0x42;
    assert!(!b.start(2, &unmap, &[], &[0u8; 8]));
    assert_eq!(sense_key(&b.done[&2]), 0x5, "ILLEGAL REQUEST");
    assert!(b.back.log.is_empty());
}

#[test]
fn backend_error_status_fails_the_srb_with_medium_error() {
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    b.back.misbehave = Misbehaviour::ErrorStatus;
    let pages = b.pages(2);
    assert!(b.start(1, &rw10(0x28, 0, 16), &pages, &[]));
    b.pump();
    assert_eq!(sense_key(&b.done[&1]), 0x3, "MEDIUM ERROR");
    assert_eq!(
        b.disk.front().state(),
        FrontState::Connected,
        "device stays up"
    );
}

fn hostile(m: Misbehaviour) {
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    b.back.misbehave = m;
    let (p1, p2) = (b.pages(2), b.pages(16));
    assert!(b.start(1, &rw10(0x28, 0, 16), &p1, &[]));
    assert!(b.start(2, &rw10(0x2a, 64, 128), &p2, &[]));
    b.pump();
    // Every SRB completed exactly once, the device failed. The split write never
    // succeeds; the read only where a hostile batch answered it first and rightly
    // (DuplicateId repeats the first answer: the repeat is the violation).
    assert_eq!(b.done.len(), 2, "{m:?}: {:?}", b.done);
    assert!(!good(&b.done[&2]), "{m:?}: {:?}", b.done);
    assert_eq!(
        good(&b.done[&1]),
        m == Misbehaviour::DuplicateId,
        "{m:?}: {:?}",
        b.done
    );
    assert_eq!(b.disk.front().state(), FrontState::Failed, "{m:?}");
    assert_eq!(b.disk.in_flight(), 0);
    // Later SRBs are answered at once: no disk any more.
    assert!(!b.start(3, &rw10(0x28, 0, 16), &p1, &[]));
    assert_eq!(b.done[&3].srb_status, status::NO_DEVICE);
}

#[test]
fn bogus_response_ids_fail_the_srbs_not_the_system() {
    hostile(Misbehaviour::BogusId);
}

#[test]
fn duplicate_and_unsent_ids_fail_the_srbs_not_the_system() {
    hostile(Misbehaviour::DuplicateId);
    hostile(Misbehaviour::UnsentId);
}

#[test]
fn a_runaway_rsp_prod_fails_the_srbs_not_the_system() {
    hostile(Misbehaviour::OverflowRspProd);
}

#[test]
fn a_full_ring_answers_busy_and_the_backlog_is_bounded() {
    let front = FrontendConfig {
        max_queues: 1,
        max_ring_page_order: 0,
        ..FrontendConfig::default()
    };
    let mut b = Bed::new(no_indirect(), front);
    b.back.misbehave = Misbehaviour::Silent;
    let page = b.pages(1);
    let mut sent = 0;
    let mut id = 0;
    while b.start(id, &rw10(0x28, 0, 8), &page, &[]) {
        sent += 1;
        id += 1;
        assert!(sent <= 64, "the ring never fills");
    }
    assert_eq!(sent, 32, "one-page ring: 32 slots");
    assert_eq!(b.done[&id].srb_status, status::BUSY);
    // A 2-part SRB cannot go out either: BUSY, nothing parked.
    let big = b.pages(16);
    assert!(!b.start(100, &rw10(0x28, 0, 128), &big, &[]));
    assert_eq!(b.done[&100].srb_status, status::BUSY);
    assert_eq!(b.disk.in_flight(), 32);
}

#[test]
fn the_rest_of_a_split_srb_waits_for_ring_room() {
    let front = FrontendConfig {
        max_queues: 1,
        max_ring_page_order: 0,
        ..FrontendConfig::default()
    };
    let mut b = Bed::new(no_indirect(), front);
    let page = b.pages(1);
    // Fill 31 of the 32 slots while the backend is silent...
    b.back.misbehave = Misbehaviour::Silent;
    for id in 0..31 {
        assert!(b.start(id, &rw10(0x28, 0, 8), &page, &[]));
    }
    // ...then a 2-part write: part 1 takes the last slot, part 2 waits.
    let big = b.pages(16);
    assert!(b.start(100, &rw10(0x2a, 0, 128), &big, &[]));
    // Meanwhile a new SRB is BUSY (one SRB's parts in the backlog at most).
    assert!(!b.start(101, &rw10(0x28, 0, 8), &page, &[]));
    assert_eq!(b.done[&101].srb_status, status::BUSY);
    b.back.misbehave = Misbehaviour::None;
    for _ in 0..4 {
        b.pump();
    }
    assert!(good(&b.done[&100]), "{:?}", b.done.get(&100));
    assert_eq!(b.disk.in_flight(), 0);
    assert_eq!(b.done.len(), 33);
}

#[test]
fn a_closing_backend_holds_then_a_shutdown_fails_the_srbs() {
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    b.back.misbehave = Misbehaviour::Silent;
    let page = b.pages(1);
    assert!(b.start(1, &rw10(0x28, 0, 8), &page, &[]));
    let done = b.disk.shutdown(&mut b.plat);
    b.record(done);
    assert_eq!(sense_key(&b.done[&1]), 0x2, "NOT READY");
    assert_eq!(b.disk.in_flight(), 0);
}

#[test]
fn short_of_pages_or_grants_is_busy_not_an_error() {
    let cfg = BackendConfig {
        persistent: false,
        ..no_indirect()
    };
    let front = FrontendConfig {
        persistent: false,
        ..FrontendConfig::default()
    };
    let mut b = Bed::new(cfg, front);
    let pages = b.pages(16);
    b.world.borrow_mut().alloc_budget = Some(0);
    let sent = b.start(1, &rw10(0x2a, 0, 128), &pages, &[]);
    // No bounce page can be had (blkfront keeps no pool without persistent grants).
    assert!(!sent);
    assert_eq!(b.done[&1].srb_status, status::BUSY, "{:?}", b.done[&1]);
    // Memory back: the retry goes through.
    b.world.borrow_mut().alloc_budget = None;
    assert!(b.start(2, &rw10(0x2a, 0, 128), &pages, &[]));
    b.pump();
    assert!(good(&b.done[&2]));
}

#[test]
fn a_reset_fails_a_dead_backend_and_completes_every_srb_once() {
    let front = FrontendConfig {
        max_queues: 1,
        max_ring_page_order: 0,
        ..FrontendConfig::default()
    };
    let mut b = Bed::new(no_indirect(), front);
    b.back.misbehave = Misbehaviour::Silent;
    let page = b.pages(1);
    for id in 0..31 {
        assert!(b.start(id, &rw10(0x28, 0, 8), &page, &[]));
    }
    // A 2-part write: part 1 on the ring, part 2 in the backlog.
    let big = b.pages(16);
    assert!(b.start(100, &rw10(0x2a, 0, 128), &big, &[]));
    let done = b.disk.reset(&mut b.plat);
    b.record(done);
    assert_eq!(b.done.len(), 32, "every SRB completed");
    assert_eq!(sense_key(&b.done[&0]), 0x2, "ring I/O: NOT READY");
    assert_eq!(
        b.done[&100].srb_status,
        status::BUS_RESET,
        "backlog: retried"
    );
    assert_eq!(b.disk.in_flight(), 0);
    assert_eq!(b.disk.front().state(), FrontState::Failed);
    // The rings are gone (no late response can reach a completed SRB's buffer);
    // Storport's retry meets the failed device.
    assert_eq!(b.disk.front().queues(), 0);
    assert!(!b.start(101, &rw10(0x28, 0, 8), &page, &[]));
    assert_eq!(b.done[&101].srb_status, status::NO_DEVICE);
    assert!(b.disk.failure_unpublished());
}

#[test]
fn a_reset_with_nothing_in_flight_changes_nothing() {
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    assert!(b.disk.reset(&mut b.plat).is_empty());
    assert_eq!(b.disk.front().state(), FrontState::Connected);
    assert!(!b.disk.failure_unpublished());
    let page = b.pages(1);
    assert!(b.start(1, &rw10(0x28, 0, 8), &page, &[]));
    b.pump();
    assert!(good(&b.done[&1]));
}

#[test]
fn a_failure_in_the_event_dpc_publishes_closed_later_at_passive() {
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    b.back.misbehave = Misbehaviour::BogusId;
    let page = b.pages(2);
    assert!(b.start(1, &rw10(0x28, 0, 16), &page, &[]));
    b.pump();
    assert_eq!(b.disk.front().state(), FrontState::Failed);
    assert!(b.disk.failure_unpublished());
    // At DISPATCH_LEVEL xenbus refuses xenstore: the state write of the DPC did not
    // happen (the node is put back as the backend last saw it).
    let state = format!("{FRONT}/state");
    b.world.borrow_mut().xs.insert(state.clone(), "4".into());
    assert!(b.disk.publish_failure(&mut b.plat).is_empty());
    assert_eq!(b.world.borrow().xs[&state], "6", "Closed published");
    assert!(!b.disk.failure_unpublished());
    // Once only.
    b.world.borrow_mut().xs.insert(state.clone(), "4".into());
    b.disk.publish_failure(&mut b.plat);
    assert_eq!(b.world.borrow().xs[&state], "4");
}

#[test]
fn a_backend_reset_reconnects_and_the_held_srbs_complete_with_their_data() {
    // The backend restarts with a write and a read in flight (sluice-blkback killed and
    // started again, or a toolstack detach/attach): Closed, then InitWait again.
    let mut b = Bed::new(no_indirect(), FrontendConfig::default());
    let wpage = b.pages(1);
    let pattern: Vec<u8> = (0..4096).map(|i| (i * 7 + 1) as u8).collect();
    b.world
        .borrow_mut()
        .mem(wpage[0].0, 1)
        .write_bytes(0, &pattern)
        .unwrap();
    b.back.misbehave = Misbehaviour::Silent;
    assert!(b.start(1, &rw10(0x2a, 16, 8), &wpage, &[]));
    b.pump();
    assert!(b.done.is_empty());
    b.back.close();
    let (r, done) = b.disk.backend_changed(&mut b.plat, XenbusState::Closed);
    assert!(r.is_ok(), "{r:?}");
    assert!(done.is_empty(), "held for the reconnect, not failed");
    // A new SRB while the backend is away: BUSY (Storport retries it later).
    let rpage = b.pages(1);
    assert!(!b.start(2, &rw10(0x28, 16, 8), &rpage, &[]));
    assert_eq!(b.done[&2].srb_status, 8, "SRB_STATUS_BUSY");
    b.back.misbehave = Misbehaviour::None;
    b.back.init_wait();
    let (r, _) = b.disk.backend_changed(&mut b.plat, XenbusState::InitWait);
    assert!(matches!(r.unwrap(), Event::Initialised { .. }));
    b.back.connect().unwrap();
    let (r, done) = b.disk.backend_changed(&mut b.plat, XenbusState::Connected);
    assert!(matches!(r.unwrap(), Event::Connected(_)));
    b.record(done);
    for _ in 0..4 {
        b.pump();
    }
    // The held write went again on the new rings; the retried read sees its data.
    assert!(good(&b.done[&1]), "{:?}", b.done);
    assert!(b.start(3, &rw10(0x28, 16, 8), &rpage, &[]));
    for _ in 0..4 {
        b.pump();
    }
    assert!(good(&b.done[&3]), "{:?}", b.done);
    let mut back = vec![0u8; 4096];
    b.world
        .borrow_mut()
        .mem(rpage[0].0, 1)
        .read_bytes(0, &mut back)
        .unwrap();
    assert_eq!(back, pattern);
    assert_eq!(b.disk.in_flight(), 0);
}
