//! Secondary consoles (`device/console/<n>`): the real backend daemon and the real
//! console frontend core (`sluice-consfront-core`) in one process on `sluice_dom0`'s
//! fake Xen world, nodes made by `add_console`, bytes through a real pty and log.

mod common;

use common::{open_tty, read_until, wait_until};
use sluice_abi::types::DomId;
use sluice_abi::xenbus::XenbusState;
use sluice_abi::xs_wire::XsPermAccess;
use sluice_consfront_core::{EventChannels as _, Frontend};
use sluice_consoleback::pump::PumpCounters;
use sluice_consoleback::secondary::{add_console, BACKEND_ROOT};
use sluice_consoleback::ConsoleBackend;
use sluice_dom0::evtchn::FakeEvtchnHub;
use sluice_dom0::fake::{wait_for, FakeFront};
use sluice_dom0::grant::FakeGrants;
use sluice_dom0::ratelimit::FakeRelativeClock;
use sluice_dom0::xenstore::{FakeXenStore, XBT_NULL};
use sluice_dom0::{LimitClock, Rate, XenStore as _};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const D: u16 = 5;
const OUT_PROD: usize = 3084;

struct Rig {
    store: FakeXenStore,
    hub: FakeEvtchnHub,
    grants: FakeGrants,
    stop: Arc<AtomicBool>,
    daemon: Option<JoinHandle<()>>,
    logs: tempfile::TempDir,
    board: Arc<sluice_consoleback::daemon::SecondaryBoard>,
}

impl Rig {
    fn new(consoles: &[u32], burst: Option<(u32, FakeRelativeClock)>) -> Rig {
        let (store, hub, grants) = (FakeXenStore::new(), FakeEvtchnHub::new(), FakeGrants::new());
        for &n in consoles {
            add_console(&store.connect(), D, n, "test").unwrap();
        }
        let logs = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (xs, g, h, s) = (
            Arc::new(store.connect()),
            Arc::new(grants.clone()),
            hub.clone(),
            stop.clone(),
        );
        let mut backend = ConsoleBackend::new(
            xs,
            g,
            move || Ok(h.endpoint(0)),
            Some(logs.path().to_path_buf()),
        );
        if let Some((burst, clock)) = burst {
            backend = backend.with_wake_rate(
                Rate {
                    burst,
                    every: Duration::from_secs(3600),
                },
                LimitClock::Fake(clock),
            );
        }
        let board = backend.secondary_counters();
        let daemon = std::thread::spawn(move || backend.run(&s).unwrap());
        Rig {
            store,
            hub,
            grants,
            stop,
            daemon: Some(daemon),
            logs,
            board,
        }
    }

    /// A guest kernel with the console frontend core started on console `n`.
    fn front(&self, n: u32) -> (FakeFront, Frontend<FakeFront>) {
        let mut p = FakeFront::new(DomId(D), 4, &self.grants, &self.hub, &self.store);
        let mut fe = Frontend::new(&fe_dir(n), DomId(0)).unwrap();
        fe.start(&mut p).unwrap();
        (p, fe)
    }

    /// Waits for the backend to serve console `n`, connects the frontend, opens the pty.
    fn connect(&self, p: &mut FakeFront, fe: &mut Frontend<FakeFront>, n: u32) -> std::fs::File {
        wait_for(&self.store.connect(), &format!("{}/state", be_dir(n)), "4");
        fe.backend_changed(p, XenbusState::Connected).unwrap();
        let tty = self
            .store
            .connect()
            .read_opt(XBT_NULL, &format!("{}/tty", fe_dir(n)))
            .unwrap()
            .unwrap();
        open_tty(&tty)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(d) = self.daemon.take() {
            d.join().unwrap();
        }
    }
}

fn fe_dir(n: u32) -> String {
    format!("/local/domain/{D}/device/console/{n}")
}

fn be_dir(n: u32) -> String {
    format!("{BACKEND_ROOT}/{D}/{n}")
}

/// Reads input until `want` arrived, waiting on the event channel between reads.
fn read_input(p: &mut FakeFront, fe: &mut Frontend<FakeFront>, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    wait_until("input in the guest", || {
        let mut buf = [0u8; 256];
        let n = fe.read(p, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        if n == 0 {
            p.wait_events(Duration::from_millis(20));
        }
        got.windows(want.len()).any(|w| w == want)
    });
    got
}

#[test]
fn add_console_writes_the_nodes_a_frontend_needs() {
    let store = FakeXenStore::new();
    let xs = store.connect();
    add_console(&xs, 7, 2, "chan").unwrap();
    let r = |p: &str| xs.read_opt(XBT_NULL, p).unwrap();
    assert_eq!(
        r("/local/domain/7/device/console/2/backend-id").as_deref(),
        Some("0")
    );
    assert_eq!(
        r("/local/domain/7/device/console/2/backend").as_deref(),
        Some("/local/domain/0/backend/console/7/2")
    );
    assert_eq!(
        r("/local/domain/0/backend/console/7/2/frontend-id").as_deref(),
        Some("7")
    );
    assert_eq!(
        r("/local/domain/0/backend/console/7/2/state").as_deref(),
        Some("1")
    );
    let perms = xs
        .get_perms(XBT_NULL, "/local/domain/7/device/console/2")
        .unwrap();
    assert_eq!(perms[0].domid, 7, "the guest owns its frontend directory");
    // Every node has its own permissions (a node made before its parent's set_perms
    // would keep dom0-only ones: the guest could neither write its state nor read the
    // backend's, as the first run on Xen showed).
    let owner = |p: &str| xs.get_perms(XBT_NULL, p).unwrap();
    let st = owner("/local/domain/7/device/console/2/state");
    assert_eq!(st[0].domid, 7, "the guest writes its state");
    let bst = owner("/local/domain/0/backend/console/7/2/state");
    assert_eq!(bst[0].domid, 0);
    assert!(
        bst.iter()
            .any(|p| p.domid == 7 && p.access == XsPermAccess::Read),
        "the guest reads the backend's state: {bst:?}"
    );
    let ty = owner("/local/domain/7/device/console/2/type");
    assert_eq!(ty[0].domid, 0, "read-only for the guest");
    assert!(add_console(&xs, 0, 1, "x").is_err(), "not dom0");
    assert!(
        add_console(&xs, 7, 0, "x").is_err(),
        "console 0 is the toolstack's"
    );
    assert!(add_console(&xs, 0x7FF0, 1, "x").is_err(), "reserved domain");
}

#[test]
fn round_trip_through_pty_and_log_and_reconnect() {
    let rig = Rig::new(&[1], None);
    let (mut p, mut fe) = rig.front(1);
    let mut tty = rig.connect(&mut p, &mut fe, 1);
    assert_eq!(fe.write(&mut p, b"hello from console 1\r\n"), Ok(22));
    read_until(&mut tty, b"hello from console 1");
    tty.write_all(b"typed at dom0\n").unwrap();
    read_input(&mut p, &mut fe, b"typed at dom0\n");
    let log = std::fs::read_to_string(rig.logs.path().join("guest-5-console1.log")).unwrap();
    assert!(log.contains("hello from console 1"), "{log:?}");

    // The frontend goes away (driver unbound): the backend waits for a new ring.
    fe.shutdown(&mut p);
    wait_for(&rig.store.connect(), &format!("{}/state", be_dir(1)), "2");
    let (mut p2, mut fe2) = rig.front(1);
    let mut tty2 = rig.connect(&mut p2, &mut fe2, 1);
    fe2.write(&mut p2, b"second ring\r\n").unwrap();
    read_until(&mut tty2, b"second ring");
    tty2.write_all(b"again\n").unwrap();
    read_input(&mut p2, &mut fe2, b"again\n");
    fe2.shutdown(&mut p2);
}

#[test]
fn bogus_ring_ref_or_port_is_refused_and_other_consoles_served() {
    let rig = Rig::new(&[1, 2, 3], None);
    let xs = rig.store.connect();
    // Console 1: a ring-ref that is no number; console 2: a grant never made.
    for (n, rr, port) in [(1, "junk", "1"), (2, "4000", "1")] {
        xs.write(XBT_NULL, &format!("{}/ring-ref", fe_dir(n)), rr.as_bytes())
            .unwrap();
        xs.write(XBT_NULL, &format!("{}/port", fe_dir(n)), port.as_bytes())
            .unwrap();
        xs.write(XBT_NULL, &format!("{}/state", fe_dir(n)), b"3")
            .unwrap();
    }
    wait_for(&xs, &format!("{}/state", be_dir(1)), "6");
    wait_for(&xs, &format!("{}/state", be_dir(2)), "6");
    let (mut p, mut fe) = rig.front(3);
    let mut tty = rig.connect(&mut p, &mut fe, 3);
    fe.write(&mut p, b"console 3 fine\r\n").unwrap();
    read_until(&mut tty, b"console 3 fine");
    fe.shutdown(&mut p);
}

#[test]
fn hostile_ring_indices_stop_only_that_console() {
    let rig = Rig::new(&[1, 2], None);
    let (mut p1, mut fe1) = rig.front(1);
    let mut tty1 = rig.connect(&mut p1, &mut fe1, 1);
    let (mut p2, mut fe2) = rig.front(2);
    let mut tty2 = rig.connect(&mut p2, &mut fe2, 2);
    fe1.write(&mut p1, b"abc").unwrap();
    read_until(&mut tty1, b"abc");
    let page = p1.guest().mem();
    assert_eq!(
        page.load_u32_acquire(OUT_PROD),
        Ok(3),
        "guest 1's ring is its first page"
    );
    // Guest 1 claims a million bytes of output.
    page.store_u32_release(OUT_PROD, 1_000_000).unwrap();
    p1.notify(fe1.port().unwrap());
    fe2.write(&mut p2, b"console 2 fine\r\n").unwrap();
    read_until(&mut tty2, b"console 2 fine");
    let c1 = rig.board.lock().unwrap()[&(D, 1)].clone();
    assert_eq!(
        PumpCounters::get(&c1.bytes),
        3,
        "nothing taken from the broken ring"
    );
    fe2.shutdown(&mut p2);
    fe1.shutdown(&mut p1);
}

/// A secondary console that notifies without end is budgeted exactly as console 0.
#[test]
fn a_flooding_secondary_console_gets_the_same_budget() {
    const BURST: u64 = 30;
    let clock = FakeRelativeClock::default();
    let rig = Rig::new(&[1], Some((BURST as u32, clock.clone())));
    let (mut p, mut fe) = rig.front(1);
    let _tty = rig.connect(&mut p, &mut fe, 1);
    let c = rig.board.lock().unwrap()[&(D, 1)].clone();
    let port = fe.port().unwrap();
    let mut sent = 0;
    while PumpCounters::get(&c.throttled) == 0 {
        for _ in 0..100 {
            fe.write(&mut p, b"f").unwrap();
            p.notify(port);
        }
        sent += 100;
        assert!(sent < 1_000_000, "never throttled");
    }
    for _ in sent..100_000 {
        fe.write(&mut p, b"f").unwrap();
        p.notify(port);
    }
    assert_eq!(PumpCounters::get(&c.serviced), BURST);
    assert!(PumpCounters::get(&c.wakeups) <= BURST + 1);
    assert_eq!(fe.write_room(&mut p), Ok(0), "the ring waits, full");
    clock.advance(Duration::from_secs(3600));
    wait_until("the full ring read", || fe.write_room(&mut p) == Ok(2048));
    assert_eq!(PumpCounters::get(&c.serviced), BURST + 1);
    fe.shutdown(&mut p);
}
