//! The fake world of the netback host tests: a fake toolstack, xenstore, grants and event
//! channels around a backend daemon on a thread, datagram sockets as taps, and a
//! minimal netfront that drives the rings directly.

#![allow(dead_code, unused_imports)]

pub use sluice_abi::netif::*;
pub use sluice_abi::ring::REQ_PROD_OFFSET;
pub use sluice_abi::shared::XEN_PAGE_SIZE;
pub use sluice_abi::types::{DomId, EvtchnPort};
pub use sluice_dom0::evtchn::{FakeEvtchn, FakeEvtchnHub};
pub use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
pub use sluice_dom0::xenstore::{FakeXenStore, FakeXsConn, XBT_NULL};
pub use sluice_dom0::{EventChannels, XenStore};
pub use sluice_netback::vnet::{self, VnetHdr};
pub use sluice_netback::Backend;
pub use std::collections::HashMap;
pub use std::os::unix::net::UnixDatagram;
pub use std::sync::atomic::{AtomicBool, Ordering};
pub use std::sync::{Arc, Mutex};
pub use std::thread::JoinHandle;
pub use std::time::{Duration, Instant};
pub use zerocopy::{FromBytes, IntoBytes};

pub const ROOT: &str = "/local/domain/0/backend/vif";

/// Host ends of the taps the backend opened, by interface name (one per queue).
pub type Taps = Arc<Mutex<HashMap<String, Vec<UnixDatagram>>>>;

pub struct World {
    pub store: FakeXenStore,
    pub hub: FakeEvtchnHub,
    pub grants: FakeGrants,
    pub taps: Taps,
    pub stop: Arc<AtomicBool>,
    pub backend: Option<JoinHandle<()>>,
    /// Start backends with TX by mapping (`Backend::with_tx_map`).
    pub tx_map: bool,
}

impl World {
    pub fn new(max_queues: u32) -> Self {
        Self::with(max_queues, false)
    }

    /// A world whose backend sends TX by mapping the guest's grants.
    pub fn tx_by_map(max_queues: u32) -> Self {
        Self::with(max_queues, true)
    }

    fn with(max_queues: u32, tx_map: bool) -> Self {
        let mut w = World {
            store: FakeXenStore::new(),
            hub: FakeEvtchnHub::new(),
            grants: FakeGrants::new(),
            taps: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            backend: None,
            tx_map,
        };
        w.start(max_queues);
        w
    }

    /// Stops the backend (as a crash would: rings, xenstore and guests stay) and starts
    /// a new one on the same world.
    pub fn restart(&mut self, max_queues: u32) {
        self.stop_backend();
        self.start(max_queues);
    }

    /// Stops the backend daemon; xenstore, rings and guests stay.
    pub fn stop_backend(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.backend.take() {
            j.join().unwrap();
        }
        self.stop = Arc::new(AtomicBool::new(false));
    }

    /// Starts a backend daemon on this world.
    pub fn start(&mut self, max_queues: u32) {
        let (xs, g, h, s, taps) = (
            Arc::new(self.store.connect()),
            Arc::new(self.grants.clone()),
            self.hub.clone(),
            self.stop.clone(),
            self.taps.clone(),
        );
        let tx_map = self.tx_map;
        self.backend = Some(std::thread::spawn(move || {
            let open = move |name: &str| -> Result<UnixDatagram, String> {
                let (ours, theirs) = UnixDatagram::pair().map_err(|e| e.to_string())?;
                ours.set_nonblocking(true).map_err(|e| e.to_string())?;
                taps.lock()
                    .unwrap()
                    .entry(name.into())
                    .or_default()
                    .push(theirs);
                Ok(ours)
            };
            let mut b = Backend::new(
                xs,
                g,
                move || Ok(h.endpoint(0)),
                Box::new(open),
                ROOT,
                max_queues,
            )
            .with_tx_map(tx_map)
            // SLUICE_NETBACK_URING=1 runs the tests on the io_uring path (the daemon's
            // default is the syscall-per-frame path).
            .with_uring(std::env::var_os("SLUICE_NETBACK_URING").is_some());
            b.run(&s).unwrap();
        }));
    }

    /// The host end of queue `q` of tap `name` (waits for the backend to open it).
    pub fn tap(&self, name: &str, q: usize) -> UnixDatagram {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(t) = self.taps.lock().unwrap().get(name).and_then(|v| v.get(q)) {
                let t = t.try_clone().unwrap();
                t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "tap {name} queue {q} never opened"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The toolstack's part: backend and frontend directories of vif `domid`.`handle`,
    /// and the hotplug script's `connected`.
    pub fn add_vif(&self, domid: u16, handle: u32) -> (String, String) {
        let xs = self.store.connect();
        let be = format!("{ROOT}/{domid}/{handle}");
        let fe = format!("/local/domain/{domid}/device/vif/{handle}");
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", &domid.to_string()),
            ("handle", &handle.to_string()),
            ("online", "1"),
            ("hotplug-status", "connected"),
        ] {
            xs.write(XBT_NULL, &format!("{be}/{k}"), v.as_bytes())
                .unwrap();
        }
        xs.write(XBT_NULL, &format!("{fe}/backend"), be.as_bytes())
            .unwrap();
        xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
        xs.write(XBT_NULL, &format!("{be}/state"), b"1").unwrap();
        (be, fe)
    }

    pub fn guest(&self, domid: u16) -> Arc<FakeGuestMemory> {
        let g = FakeGuestMemory::new(domid, 256);
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

/// Pages of the fake netfront: TX ring, RX ring, then data pages.
pub const TX_PAGE: usize = 0;
pub const RX_PAGE: usize = 1;
pub const DATA: usize = 2;

/// A minimal netfront: one queue, split event channels.
pub struct Front {
    pub guest: Arc<FakeGuestMemory>,
    pub xs: FakeXsConn,
    pub ev: FakeEvtchn,
    pub fe: String,
    pub be: String,
    pub tx_port: u32,
    pub rx_port: u32,
}

/// What the fake netfront writes before Connected (key, value); a test may change any.
pub fn front_nodes(tx_ref: u32, rx_ref: u32, tx_port: u32, rx_port: u32) -> Vec<(String, String)> {
    [
        ("tx-ring-ref", tx_ref.to_string()),
        ("rx-ring-ref", rx_ref.to_string()),
        ("event-channel-tx", tx_port.to_string()),
        ("event-channel-rx", rx_port.to_string()),
        ("request-rx-copy", "1".into()),
        ("feature-rx-notify", "1".into()),
        ("feature-sg", "1".into()),
        ("feature-gso-tcpv4", "1".into()),
        ("feature-gso-tcpv6", "1".into()),
        ("feature-ipv6-csum-offload", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Front {
    /// Initialises both rings, writes the nodes (`edit` may change them), Connected.
    /// Returns once the backend answered with a state (`expect`).
    pub fn connect(
        w: &World,
        guest: Arc<FakeGuestMemory>,
        be: &str,
        fe: &str,
        edit: impl FnOnce(&mut Vec<(String, String)>),
        expect: &str,
    ) -> Front {
        let xs = w.store.connect();
        wait_for(&xs, &format!("{be}/state"), "2");
        let ev = w.hub.endpoint(guest.domid());
        for p in [TX_PAGE, RX_PAGE] {
            guest
                .mem()
                .fill(p * XEN_PAGE_SIZE, XEN_PAGE_SIZE, 0)
                .unwrap();
        }
        NetifTxFrontRing::init(guest.page(TX_PAGE)).unwrap();
        NetifRxFrontRing::init(guest.page(RX_PAGE)).unwrap();
        let tx_ref = guest.grant(TX_PAGE, false);
        let rx_ref = guest.grant(RX_PAGE, false);
        let tx_port = ev.bind_unbound_port(DomId(0)).unwrap().0;
        let rx_port = ev.bind_unbound_port(DomId(0)).unwrap().0;
        let mut nodes = front_nodes(tx_ref, rx_ref, tx_port, rx_port);
        edit(&mut nodes);
        for (k, v) in nodes {
            xs.write(XBT_NULL, &format!("{fe}/{k}"), v.as_bytes())
                .unwrap();
        }
        xs.write(XBT_NULL, &format!("{fe}/state"), b"4").unwrap();
        wait_for(&xs, &format!("{be}/state"), expect);
        Front {
            guest,
            xs,
            ev,
            fe: fe.into(),
            be: be.into(),
            tx_port,
            rx_port,
        }
    }

    pub fn tx_ring(&self) -> NetifTxFrontRing<'_> {
        NetifTxFrontRing::attach(self.guest.page(TX_PAGE), self.tx_at()).unwrap()
    }

    fn tx_at(&self) -> u32 {
        self.guest
            .page(TX_PAGE)
            .load_u32_acquire(REQ_PROD_OFFSET)
            .unwrap()
    }

    /// Publishes TX requests (raw slots, extra-info slots included) and notifies.
    /// Returns the responses once all are answered.
    pub fn send(&self, slots: &[NetifTxRequest]) -> Vec<NetifTxResponse> {
        let mut ring = self.tx_ring();
        let start = ring.rsp_cons();
        for s in slots {
            ring.push_request(s).unwrap();
        }
        ring.push_requests().unwrap();
        self.ev.notify(EvtchnPort(self.tx_port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = vec![];
        let _ = start;
        while out.len() < slots.len() {
            match ring.pop_response().unwrap() {
                Some(r) => out.push(r),
                None => {
                    assert!(Instant::now() < deadline, "tx responses: {out:?}");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        out
    }

    /// Posts `n` RX requests on data pages `first..first + n` (ids = page numbers).
    pub fn post_rx(&self, first: usize, n: usize) {
        let mut ring = self.rx_ring();
        for p in first..first + n {
            let gref = GrantRef(self.guest.grant(p, false));
            ring.push_request(&NetifRxRequest {
                id: p as u16,
                pad: 0,
                gref,
            })
            .unwrap();
        }
        ring.push_requests().unwrap();
        self.ev.notify(EvtchnPort(self.rx_port)).unwrap();
    }

    pub fn rx_ring(&self) -> NetifRxFrontRing<'_> {
        let mem = self.guest.page(RX_PAGE);
        let at = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
        NetifRxFrontRing::attach(mem, at).unwrap()
    }

    /// Waits for `n` RX responses after `from` (the ring's response index).
    pub fn rx_responses(&self, from: u32, n: usize) -> Vec<NetifRxResponse> {
        let mem = self.guest.page(RX_PAGE);
        let deadline = Instant::now() + Duration::from_secs(20);
        while mem
            .load_u32_acquire(sluice_abi::ring::RSP_PROD_OFFSET)
            .unwrap()
            .wrapping_sub(from)
            < n as u32
        {
            assert!(Instant::now() < deadline, "rx responses never came");
            std::thread::sleep(Duration::from_millis(2));
        }
        let size = 256u32;
        (0..n as u32)
            .map(|i| mem.read(64 + ((from + i) % size) as usize * 8).unwrap())
            .collect()
    }

    /// Bytes of data page `p`.
    pub fn page_bytes(&self, p: usize, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.guest.page(p).read_bytes(0, &mut b).unwrap();
        b
    }

    /// Writes `bytes` at `offset` of data page `p`, granted read-only; returns the grant.
    pub fn fill(&self, p: usize, offset: usize, bytes: &[u8]) -> GrantRef {
        self.guest.page(p).write_bytes(offset, bytes).unwrap();
        GrantRef(self.guest.grant(p, true))
    }
}

/// An IPv4 UDP frame of `len` bytes (Ethernet included), payload bytes counting up.
pub fn udp_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[23] = 17;
    for (i, b) in f.iter_mut().enumerate().skip(42) {
        *b = i as u8;
    }
    f
}

/// An IPv4 TCP frame of `len` bytes.
pub fn tcp_frame(len: usize) -> Vec<u8> {
    let mut f = udp_frame(len);
    f[23] = 6;
    f[34 + 12] = 5 << 4;
    f
}

pub fn tx(gref: GrantRef, offset: u16, flags: NetTxFlags, id: u16, size: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref,
        offset,
        flags: flags.bits(),
        id,
        size,
    }
}

/// The tap of domain 5's vif 0.
pub const VIF: &str = "vif5.0";

/// Domain `domid`'s vif 0, connected with one queue.
pub fn connected(w: &World, domid: u16) -> Front {
    let (be, fe) = w.add_vif(domid, 0);
    Front::connect(w, w.guest(domid), &be, &fe, |_| {}, "4")
}

/// An extra-info item in a TX request slot (the union's first 8 bytes).
pub fn extra_slot(e: &NetifExtraInfo) -> NetifTxRequest {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(e.as_bytes());
    NetifTxRequest::read_from_bytes(&b).unwrap()
}

/// The next frame on a tap: its vnet header and bytes.
pub fn read_frame(tap: &UnixDatagram) -> (VnetHdr, Vec<u8>) {
    let mut buf = vec![0u8; 70000];
    let n = tap.recv(&mut buf).expect("a frame on the tap");
    let (h, rest) = buf[..n].split_at(10);
    (VnetHdr::read_from_bytes(h).unwrap(), rest.to_vec())
}
