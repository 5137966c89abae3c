//! The real blkfront core against the real blkback (`sluice-blkback`) in one process,
//! on the fake Xen world of `sluice_dom0` (feature `fake`): fake guest memory and
//! grants, an event-channel hub and an in-process xenstore. The backend serves a real
//! image file, so what the frontend wrote is checked in the file too.

use sluice_abi::types::DomId;
use sluice_abi::xenbus::XenbusState;
use sluice_blkback::Backend;
use sluice_blkfront_core::{
    BlockIo, FrontState, Frontend, FrontendConfig, IoError, IoOp, IoSegment, SeamError, SubmitError,
};
use sluice_dom0::evtchn::FakeEvtchnHub;
use sluice_dom0::fake::FakeFront;
use sluice_dom0::grant::FakeGrants;
use sluice_dom0::xenstore::{FakeXenStore, XBT_NULL};
use sluice_dom0::XenStore as _;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ROOT: &str = "/local/domain/0/backend/vbd";
const DOMID: DomId = DomId(5);
const DEVID: u32 = 51712;
const SECTORS: u64 = 4096; // 2 MiB
const PAGE: usize = 4096;
/// A guard against a hang, not a timing assertion: a step this slow is a bug.
const HANG: Duration = Duration::from_secs(30);

struct Rig {
    store: FakeXenStore,
    hub: FakeEvtchnHub,
    grants: FakeGrants,
    stop: Arc<AtomicBool>,
    backend: Option<JoinHandle<()>>,
    img: std::fs::File,
    _dir: tempfile::TempDir,
    fe: String,
    be: String,
}

impl Rig {
    /// A backend daemon on the fake world and the toolstack's nodes for one disk.
    fn new(max_queues: u32) -> Rig {
        let (store, hub, grants) = (FakeXenStore::new(), FakeEvtchnHub::new(), FakeGrants::new());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let img = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        img.write_all_at(&vec![0xeeu8; (SECTORS * 512) as usize], 0)
            .unwrap();
        let be = format!("{ROOT}/{}/{DEVID}", DOMID.0);
        let fe = format!("/local/domain/{}/device/vbd/{DEVID}", DOMID.0);
        let xs = store.connect();
        let frontend_id = DOMID.to_string();
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", frontend_id.as_str()),
            ("params", path.to_str().unwrap()),
            ("mode", "w"),
            ("online", "1"),
            ("state", "1"),
        ] {
            xs.write(XBT_NULL, &format!("{be}/{k}"), v.as_bytes())
                .unwrap();
        }
        xs.write(XBT_NULL, &format!("{fe}/backend"), be.as_bytes())
            .unwrap();
        xs.write(XBT_NULL, &format!("{fe}/backend-id"), b"0")
            .unwrap();
        xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (bxs, bg, h, s) = (
            Arc::new(store.connect()),
            Arc::new(grants.clone()),
            hub.clone(),
            stop.clone(),
        );
        let backend = std::thread::spawn(move || {
            Backend::new(bxs, bg, move || Ok(h.endpoint(0)), ROOT, max_queues)
                .run(&s)
                .unwrap();
        });
        Rig {
            store,
            hub,
            grants,
            stop,
            backend: Some(backend),
            img,
            _dir: dir,
            fe,
            be,
        }
    }

    fn guest(&self) -> FakeFront {
        FakeFront::new(DOMID, 512, &self.grants, &self.hub, &self.store)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.backend.take() {
            let _ = j.join();
        }
    }
}

type Done = Vec<(u64, Result<(), IoError>)>;

/// What xenbus does for the driver: calls `backend_changed` on each backend state
/// change until the frontend reaches `want`.
fn drive_to(front: &mut Frontend<FakeFront, u64>, p: &mut FakeFront, be: &str, want: FrontState) {
    let deadline = Instant::now() + HANG;
    let mut last = None;
    while front.state() != want {
        assert!(
            Instant::now() < deadline,
            "frontend stuck in {:?}",
            front.state()
        );
        let _ = p.xs().next_watch_event(Duration::from_millis(100));
        let raw = p.xs().read_opt(XBT_NULL, &format!("{be}/state")).unwrap();
        let Some(state) = raw
            .and_then(|s| s.parse::<u32>().ok())
            .and_then(|n| XenbusState::try_from(n).ok())
        else {
            continue;
        };
        if last == Some(state) {
            continue;
        }
        last = Some(state);
        let mut done = Done::new();
        front
            .backend_changed(p, state, |t, r| done.push((t, r)))
            .unwrap();
        assert!(done.is_empty());
    }
}

/// Submits `io` on `queue` and handles events until it completes.
fn run(
    front: &mut Frontend<FakeFront, u64>,
    p: &mut FakeFront,
    queue: usize,
    tag: u64,
    io: BlockIo<usize>,
) -> Result<(), IoError> {
    front.submit(p, queue, tag, io).map_err(|e| e.0).unwrap();
    let deadline = Instant::now() + HANG;
    let mut done = Done::new();
    loop {
        if let Some(i) = done.iter().position(|(t, _)| *t == tag) {
            return done.remove(i).1;
        }
        assert!(Instant::now() < deadline, "I/O {tag} never completed");
        for q in p.wait_events(Duration::from_millis(100)) {
            front.handle_event(p, q, |t, r| done.push((t, r))).unwrap();
        }
    }
}

fn whole_pages(op: IoOp, sector: u64, pages: &[usize]) -> BlockIo<usize> {
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

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn blkfront_core_against_blkback() {
    let rig = Rig::new(2);
    let mut p = rig.guest();
    p.xs().watch(&format!("{}/state", rig.be), "be").unwrap();
    let mut front =
        Frontend::<FakeFront, u64>::new(&rig.fe, &rig.be, DomId::DOM0, FrontendConfig::default())
            .unwrap();
    front.start(&mut p).unwrap();
    drive_to(&mut front, &mut p, &rig.be, FrontState::Connected);
    let disk = *front.disk().unwrap();
    assert_eq!(disk.sectors, SECTORS);
    assert_eq!(front.queues(), 2, "min(our 4, blkback's 2) queues");
    assert!(
        front.max_segments() > 11,
        "blkback offers indirect segments"
    );

    // 24 pages: more than a slot's 11 segments, so an indirect request (if offered).
    let n = 24;
    let src = p.alloc_data(n);
    let data = pattern(7, n * PAGE);
    for (i, &pg) in src.iter().enumerate() {
        p.guest()
            .page(pg)
            .write_bytes(0, &data[i * PAGE..(i + 1) * PAGE])
            .unwrap();
    }
    let sector = 64;
    run(
        &mut front,
        &mut p,
        0,
        1,
        whole_pages(IoOp::Write, sector, &src),
    )
    .unwrap();
    let mut file = vec![0u8; n * PAGE];
    rig.img.read_exact_at(&mut file, sector * 512).unwrap();
    assert!(file == data, "the image holds what the frontend wrote");

    let dst = p.alloc_data(n);
    run(
        &mut front,
        &mut p,
        1,
        2,
        whole_pages(IoOp::Read, sector, &dst),
    )
    .unwrap();
    for (i, &pg) in dst.iter().enumerate() {
        let mut got = vec![0u8; PAGE];
        p.guest().page(pg).read_bytes(0, &mut got).unwrap();
        assert!(got == data[i * PAGE..(i + 1) * PAGE], "page {i} read back");
    }

    // Partial pages: sectors 2..=5 of one page.
    let one = p.alloc_data(1);
    p.guest()
        .page(one[0])
        .write_bytes(0, &pattern(9, PAGE))
        .unwrap();
    let io = BlockIo {
        op: IoOp::Write,
        sector: 1000,
        segments: vec![IoSegment {
            page: one[0],
            first_sect: 2,
            last_sect: 5,
        }],
    };
    run(&mut front, &mut p, 0, 3, io).unwrap();
    let mut file = vec![0u8; 4 * 512];
    rig.img.read_exact_at(&mut file, 1000 * 512).unwrap();
    assert!(file == pattern(9, PAGE)[1024..3072]);

    if disk.flush.is_some() {
        run(&mut front, &mut p, 1, 4, whole_pages(IoOp::Flush, 0, &[])).unwrap();
    }
    assert!(front.stats().sent >= 3);

    // A data page outside the guest's memory: the copy is refused whole, the I/O is
    // not sent (no silent truncation).
    let bad = whole_pages(IoOp::Write, 0, &[1 << 20]);
    let sent = front.stats().sent;
    match front.submit(&mut p, 0, 5, bad) {
        Err((SubmitError::Copy(SeamError::OutOfBounds { .. }), 5, _)) => {}
        other => panic!(
            "expected a copy bounds error, got {:?}",
            other.map_err(|e| e.0)
        ),
    }
    assert_eq!(front.stats().sent, sent);

    // Shutdown ends the grants; the backend sees Closed and unmaps everything.
    let mut done = Done::new();
    front.shutdown(&mut p, |t, r| done.push((t, r)));
    assert!(done.is_empty(), "nothing was outstanding");
    assert_eq!(front.state(), FrontState::Failed);
    let deadline = Instant::now() + HANG;
    while rig.grants.live_mappings() > 0 {
        assert!(Instant::now() < deadline, "blkback kept the rings mapped");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Grants blkback still mapped when they were ended stay, their pages leaked (the
    // fake panics on a granted page being freed); every other grant ended.
    let left = p.guest().live_grants() as u64;
    assert!(
        left <= front.stats().quarantined_pages,
        "{left} grants left, {} pages quarantined",
        front.stats().quarantined_pages
    );
}
