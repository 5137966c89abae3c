//! The fake world the blkback host tests share: a fake toolstack, xenstore, grants and
//! event channels around a backend daemon on a thread, and a minimal fake blkfront.

#![allow(dead_code)]

pub use sluice_abi::blkif::{
    BlkifFrontRing, BlkifOp, BlkifRequest, BlkifRequestSegment, BlkifResponse, BlkifRsp,
};
pub use sluice_abi::ring::REQ_PROD_OFFSET;
pub use sluice_abi::shared::XEN_PAGE_SIZE;
pub use sluice_abi::types::{DomId, EvtchnPort};
pub use sluice_blkback::persistent::PERSISTENT_GRANTS_PER_QUEUE;
pub use sluice_blkback::{Backend, IoEngine};
pub use sluice_dom0::evtchn::{FakeEvtchn, FakeEvtchnHub};
pub use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
pub use sluice_dom0::xenstore::{FakeXenStore, FakeXsConn, XBT_NULL};
pub use sluice_dom0::{EventChannels, LimitClock, Rate, XenStore};
pub use std::os::unix::fs::FileExt;
pub use std::sync::atomic::{AtomicBool, Ordering};
pub use std::sync::Arc;
pub use std::thread::JoinHandle;
pub use std::time::{Duration, Instant};
pub use zerocopy::{FromBytes, IntoBytes};

pub const ROOT: &str = "/local/domain/0/backend/vbd";
pub const SECTORS: u64 = 2048; // 1 MiB images

thread_local! {
    /// Cfg::new's default for `zero_copy` on this test's thread (the persistent-grant
    /// cases set it to run once more with zero copy).
    pub static ZERO_COPY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How a test runs: the backend's I/O engine, whether the fake frontend writes
/// `feature-persistent` = 1 (and, like Linux's blkfront then, grants every data page
/// writable), and the backend's persistent-grant limit per queue (0: it offers none).
#[derive(Debug, Clone, Copy)]
pub struct Cfg {
    pub engine: IoEngine,
    pub persistent: bool,
    pub limit: usize,
    /// The backend opens images with O_DIRECT (where the file system takes it).
    pub direct: bool,
    /// io_uring I/O straight into persistently mapped pages.
    pub zero_copy: bool,
}

impl Cfg {
    pub fn new(engine: IoEngine, persistent: bool) -> Self {
        Cfg {
            engine,
            persistent,
            limit: PERSISTENT_GRANTS_PER_QUEUE,
            direct: true,
            zero_copy: ZERO_COPY.with(|z| z.get()),
        }
    }

    pub fn zero_copy(self) -> Self {
        Cfg {
            zero_copy: true,
            ..self
        }
    }

    pub fn buffered(self) -> Self {
        Cfg {
            direct: false,
            ..self
        }
    }
}

pub struct World {
    pub cfg: Cfg,
    pub store: FakeXenStore,
    pub hub: FakeEvtchnHub,
    pub grants: FakeGrants,
    pub stop: Arc<AtomicBool>,
    pub backend: Option<JoinHandle<()>>,
    pub _dir: tempfile::TempDir,
    pub dir: std::path::PathBuf,
    /// The backend's log rate limit and its clock.
    pub log: (Rate, LimitClock),
}

impl World {
    pub fn new(max_queues: u32, cfg: Cfg) -> Self {
        Self::with_log(max_queues, cfg, (Rate::LOG, LimitClock::real()))
    }

    /// A world whose backend limits log lines at `log`.
    pub fn with_log(max_queues: u32, cfg: Cfg, log: (Rate, LimitClock)) -> Self {
        let store = FakeXenStore::new();
        let hub = FakeEvtchnHub::new();
        let grants = FakeGrants::new();
        let stop = Arc::new(AtomicBool::new(false));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut w = World {
            cfg,
            store,
            hub,
            grants,
            stop,
            backend: None,
            _dir: dir,
            dir: path,
            log,
        };
        w.start_backend(max_queues);
        w
    }

    /// Starts a backend daemon (its own xenstore connection and event channels).
    pub fn start_backend(&mut self, max_queues: u32) {
        let cfg = self.cfg;
        let log = self.log.clone();
        let status = self.status_file();
        let journal = self.dir.join("run/sluice/blkback");
        std::fs::create_dir_all(&journal).unwrap();
        self.stop = Arc::new(AtomicBool::new(false));
        let (xs, g, h, s) = (
            Arc::new(self.store.connect()),
            Arc::new(self.grants.clone()),
            self.hub.clone(),
            self.stop.clone(),
        );
        self.backend = Some(std::thread::spawn(move || {
            let mut b = Backend::new(xs, g, move || Ok(h.endpoint(0)), ROOT, max_queues)
                .with_engine(cfg.engine)
                .with_persistent_grants(cfg.limit)
                .with_direct_io(cfg.direct)
                .with_zero_copy(cfg.zero_copy)
                .with_log_rate(log.0, log.1)
                .with_status_file(status)
                .with_journal_dir(journal);
            b.run(&s).unwrap();
        }));
    }

    /// Where the backend writes its per-device counts (`sluice status` reads it).
    pub fn status_file(&self) -> std::path::PathBuf {
        self.dir.join("run/sluice/blkback.json")
    }

    /// Stops the backend daemon; the xenstore nodes and the frontend's rings stay.
    pub fn stop_backend(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.backend.take() {
            j.join().unwrap();
        }
    }

    /// The toolstack's part: an image, the backend and frontend directories.
    pub fn add_disk(
        &self,
        domid: u16,
        devid: u32,
        mode: &str,
    ) -> (String, String, std::path::PathBuf) {
        let img = self.dir.join(format!("d{domid}-{devid}.img"));
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(SECTORS * 512).unwrap();
        // Non-zero content so that discard is visible.
        f.write_all_at(&vec![0xeeu8; (SECTORS * 512) as usize], 0)
            .unwrap();
        let xs = self.store.connect();
        let be = format!("{ROOT}/{domid}/{devid}");
        let fe = format!("/local/domain/{domid}/device/vbd/{devid}");
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", &domid.to_string()),
            ("params", img.to_str().unwrap()),
            ("mode", mode),
            ("online", "1"),
        ] {
            xs.write(XBT_NULL, &format!("{be}/{k}"), v.as_bytes())
                .unwrap();
        }
        xs.write(XBT_NULL, &format!("{fe}/backend"), be.as_bytes())
            .unwrap();
        xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
        xs.write(XBT_NULL, &format!("{be}/state"), b"1").unwrap();
        (be, fe, img)
    }

    pub fn guest(&self, domid: u16) -> Arc<FakeGuestMemory> {
        let g = FakeGuestMemory::new(domid, 128);
        self.grants.add_guest(g.clone());
        g
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.backend.take() {
            let _ = j.join();
        }
    }
}

pub use sluice_dom0::fake::wait_for;

/// A minimal blkfront: ring pages at the start of its memory, data pages after them.
pub struct Front {
    pub guest: Arc<FakeGuestMemory>,
    pub xs: FakeXsConn,
    pub ev: FakeEvtchn,
    pub fe: String,
    pub be: String,
    pub rings: Vec<(u32, usize)>, // (local port, first ring page)
    pub order: u32,
    pub next_id: u64,
    pub persistent: bool,
}

impl Front {
    pub fn connect(
        w: &World,
        guest: Arc<FakeGuestMemory>,
        be: &str,
        fe: &str,
        order: u32,
        queues: u32,
    ) -> Front {
        let feature = w.cfg.persistent.then_some("1");
        Front::connect_with(w, guest, be, fe, order, queues, feature)
    }

    /// `connect` writing `feature-persistent` = `feature` (None: no node).
    pub fn connect_with(
        w: &World,
        guest: Arc<FakeGuestMemory>,
        be: &str,
        fe: &str,
        order: u32,
        queues: u32,
        feature: Option<&str>,
    ) -> Front {
        let xs = w.store.connect();
        wait_for(&xs, &format!("{be}/state"), "2");
        let ev = w.hub.endpoint(guest.domid());
        let pages = 1usize << order;
        let mut rings = vec![];
        for q in 0..queues as usize {
            let first = q * pages;
            let dir = if queues == 1 {
                fe.to_string()
            } else {
                format!("{fe}/queue-{q}")
            };
            // SHARED_RING_INIT on zeroed pages.
            guest
                .mem()
                .fill(first * XEN_PAGE_SIZE, pages * XEN_PAGE_SIZE, 0)
                .unwrap();
            let mem = guest
                .mem()
                .slice(first * XEN_PAGE_SIZE, pages * XEN_PAGE_SIZE)
                .unwrap();
            BlkifFrontRing::init(mem).unwrap();
            for p in 0..pages {
                let r = guest.grant(first + p, false);
                let key = if order == 0 {
                    "ring-ref".to_string()
                } else {
                    format!("ring-ref{p}")
                };
                xs.write(XBT_NULL, &format!("{dir}/{key}"), r.to_string().as_bytes())
                    .unwrap();
            }
            let port = ev.bind_unbound_port(DomId(0)).unwrap().0;
            xs.write(
                XBT_NULL,
                &format!("{dir}/event-channel"),
                port.to_string().as_bytes(),
            )
            .unwrap();
            rings.push((port, first));
        }
        if order > 0 {
            xs.write(
                XBT_NULL,
                &format!("{fe}/ring-page-order"),
                order.to_string().as_bytes(),
            )
            .unwrap();
        }
        if queues > 1 {
            xs.write(
                XBT_NULL,
                &format!("{fe}/multi-queue-num-queues"),
                queues.to_string().as_bytes(),
            )
            .unwrap();
        }
        xs.write(XBT_NULL, &format!("{fe}/protocol"), b"x86_64-abi")
            .unwrap();
        if let Some(v) = feature {
            xs.write(XBT_NULL, &format!("{fe}/feature-persistent"), v.as_bytes())
                .unwrap();
        } else {
            let _ = xs.rm(XBT_NULL, &format!("{fe}/feature-persistent"));
        }
        xs.write(XBT_NULL, &format!("{fe}/state"), b"3").unwrap();
        wait_for(&xs, &format!("{be}/state"), "4");
        xs.write(XBT_NULL, &format!("{fe}/state"), b"4").unwrap();
        Front {
            guest,
            xs,
            ev,
            fe: fe.into(),
            be: be.into(),
            rings,
            order,
            next_id: 1,
            persistent: feature == Some("1"),
        }
    }

    /// Submits one raw slot on queue `q` and waits for its response.
    /// Queue `q`'s event-channel port and its ring, re-attached at the current indices
    /// (everything earlier was answered).
    fn ring(&self, q: usize) -> (u32, BlkifFrontRing<'_>) {
        let (port, first) = self.rings[q];
        let pages = 1usize << self.order;
        let mem = self
            .guest
            .mem()
            .slice(first * XEN_PAGE_SIZE, pages * XEN_PAGE_SIZE)
            .unwrap();
        let prod = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
        (port, BlkifFrontRing::attach(mem, prod).unwrap())
    }

    pub fn submit(&mut self, q: usize, req: BlkifRequest) -> BlkifResponse {
        let (port, mut ring) = self.ring(q);
        ring.push_request(&req).unwrap();
        ring.push_requests().unwrap();
        self.ev.notify(EvtchnPort(port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = ring.pop_response().unwrap() {
                assert_eq!(r.id, req.id, "response id");
                // For indirect requests Linux's blkfront wants the inner operation.
                let op = if req.operation == BlkifOp::Indirect as u8 {
                    req.nr_segments
                } else {
                    req.operation
                };
                assert_eq!(r.operation, op, "response operation");
                return r;
            }
            assert!(Instant::now() < deadline, "no response");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Submits `reqs` on queue 0 at once (at most a ring's worth) and waits for all
    /// their responses.
    pub fn submit_batch(&mut self, reqs: &[BlkifRequest]) -> Vec<BlkifResponse> {
        let (port, mut ring) = self.ring(0);
        for r in reqs {
            ring.push_request(r).unwrap();
        }
        ring.push_requests().unwrap();
        self.ev.notify(EvtchnPort(port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::with_capacity(reqs.len());
        while out.len() < reqs.len() {
            match ring.pop_response().unwrap() {
                Some(r) => out.push(r),
                None => {
                    assert!(Instant::now() < deadline, "no response");
                    std::thread::yield_now();
                }
            }
        }
        out
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Data page `n` (after the ring pages), granted (always writable with persistent
    /// grants, as the protocol asks of the frontend).
    pub fn data_page(&self, n: usize, fill: Option<u8>, readonly: bool) -> (u32, usize) {
        let readonly = readonly && !self.persistent;
        let page = 64 + n;
        if let Some(b) = fill {
            self.guest
                .mem()
                .fill(page * XEN_PAGE_SIZE, XEN_PAGE_SIZE, b)
                .unwrap();
        }
        (self.guest.grant(page, readonly), page)
    }

    pub fn rw(&mut self, op: BlkifOp, sector: u64, segs: &[BlkifRequestSegment]) -> BlkifRsp {
        let mut req = BlkifRequest {
            operation: op as u8,
            nr_segments: segs.len() as u8,
            id: self.id(),
            sector_number: sector,
            ..Default::default()
        };
        req.seg[..segs.len()].copy_from_slice(segs);
        status(self.submit(0, req))
    }
}

pub fn status(r: BlkifResponse) -> BlkifRsp {
    BlkifRsp::try_from(r.status).unwrap()
}

pub fn as_slot<T: IntoBytes + zerocopy::Immutable>(v: &T) -> BlkifRequest {
    let mut b = [0u8; size_of::<BlkifRequest>()];
    b[..size_of::<T>()].copy_from_slice(v.as_bytes());
    BlkifRequest::read_from_bytes(&b).unwrap()
}

pub fn image_bytes(img: &std::path::Path, sector: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    std::fs::File::open(img)
        .unwrap()
        .read_exact_at(&mut v, sector * 512)
        .unwrap();
    v
}
