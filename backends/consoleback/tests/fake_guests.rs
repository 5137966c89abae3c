//! The console backend against fake guests (fake xenstore, grants, event channels)
//! with real ptys and log files.

use sluice_abi::console::{XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use sluice_abi::shared::SharedMem;
use sluice_consoleback::ConsoleBackend;
use sluice_dom0::evtchn::{FakeEvtchn, FakeEvtchnHub};
use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
use sluice_dom0::xenstore::{FakeXenStore, XBT_NULL};
use sluice_dom0::{EventChannels, XenStore};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IN_CONS: usize = XENCONS_IN_SIZE + XENCONS_OUT_SIZE;
const IN_PROD: usize = IN_CONS + 4;
const OUT_CONS: usize = IN_CONS + 8;
const OUT_PROD: usize = IN_CONS + 12;

struct Guest {
    mem: Arc<FakeGuestMemory>,
    ev: FakeEvtchn,
    port: u32,
}

impl Guest {
    fn new(store: &FakeXenStore, hub: &FakeEvtchnHub, grants: &FakeGrants, domid: u16) -> Guest {
        let mem = FakeGuestMemory::new(domid, 1);
        mem.grant_at(0, 0, false);
        grants.add_guest(mem.clone());
        let ev = hub.endpoint(domid);
        let port = ev.bind_unbound_port(sluice_abi::types::DomId(0)).unwrap().0;
        let xs = store.connect();
        let base = format!("/local/domain/{domid}/console");
        xs.write(XBT_NULL, &format!("{base}/ring-ref"), b"123456")
            .unwrap();
        xs.write(
            XBT_NULL,
            &format!("{base}/port"),
            port.to_string().as_bytes(),
        )
        .unwrap();
        Guest { mem, ev, port }
    }

    fn page(&self) -> SharedMem<'_> {
        self.mem.mem()
    }

    /// The guest's console driver writing output; false if it had to give up waiting.
    fn write(&self, data: &[u8], patience: Duration) -> bool {
        let m = self.page();
        let deadline = Instant::now() + patience;
        let mut rest = data;
        while !rest.is_empty() {
            let cons = m.load_u32_acquire(OUT_CONS).unwrap();
            let prod = m.load_u32_relaxed(OUT_PROD).unwrap();
            let free = XENCONS_OUT_SIZE - prod.wrapping_sub(cons) as usize;
            if free == 0 {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let n = free.min(rest.len());
            for (i, &b) in rest[..n].iter().enumerate() {
                let at =
                    XENCONS_IN_SIZE + (prod.wrapping_add(i as u32) as usize % XENCONS_OUT_SIZE);
                m.write_bytes(at, &[b]).unwrap();
            }
            m.store_u32_release(OUT_PROD, prod.wrapping_add(n as u32))
                .unwrap();
            self.ev
                .notify(sluice_abi::types::EvtchnPort(self.port))
                .unwrap();
            rest = &rest[n..];
        }
        true
    }

    /// Reads what arrived on the input ring.
    fn read_input(&self) -> Vec<u8> {
        let m = self.page();
        let prod = m.load_u32_acquire(IN_PROD).unwrap();
        let cons = m.load_u32_relaxed(IN_CONS).unwrap();
        let mut out = vec![];
        for i in cons..prod {
            let mut b = [0u8];
            m.read_bytes(i as usize % XENCONS_IN_SIZE, &mut b).unwrap();
            out.push(b[0]);
        }
        m.store_u32_release(IN_CONS, prod).unwrap();
        out
    }
}

fn wait_tty(store: &FakeXenStore, domid: u16) -> String {
    let xs = store.connect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = xs
            .read_opt(XBT_NULL, &format!("/local/domain/{domid}/console/tty"))
            .unwrap()
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "no console/tty for domain {domid}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_until(tty: &mut std::fs::File, want: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = vec![];
    let mut b = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        assert!(
            Instant::now() < deadline,
            "pty gave {:?}",
            String::from_utf8_lossy(&got)
        );
        match tty.read(&mut b) {
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn open_tty(path: &str) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(
            rustix::fs::OFlags::NONBLOCK.bits() as i32 | rustix::fs::OFlags::NOCTTY.bits() as i32,
        )
        .open(path)
        .unwrap()
}

#[test]
fn output_input_logs_and_a_stalled_reader() {
    let store = FakeXenStore::new();
    let hub = FakeEvtchnHub::new();
    let grants = FakeGrants::new();
    let logs = tempfile::tempdir().unwrap();
    let a = Guest::new(&store, &hub, &grants, 3);
    let b = Guest::new(&store, &hub, &grants, 4);
    store
        .connect()
        .write(XBT_NULL, "/local/domain/0/name", b"Domain-0")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (xs, g, h, s, dir) = (
        Arc::new(store.connect()),
        Arc::new(grants.clone()),
        hub.clone(),
        stop.clone(),
        logs.path().to_path_buf(),
    );
    let daemon = std::thread::spawn(move || {
        ConsoleBackend::new(xs, g, move || Ok(h.endpoint(0)), Some(dir))
            .run(&s)
            .unwrap();
    });
    let mut tty_a = open_tty(&wait_tty(&store, 3));
    let _tty_b_unread = wait_tty(&store, 4);
    assert!(store
        .connect()
        .read_opt(XBT_NULL, "/local/domain/0/console/tty")
        .unwrap()
        .is_none());

    // Output reaches the pty and the log.
    assert!(a.write(b"hello from 3\r\n", Duration::from_secs(5)));
    read_until(&mut tty_a, b"hello from 3");
    // Input reaches the guest.
    tty_a.write_all(b"ping\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = vec![];
    while !got.ends_with(b"ping\n") {
        assert!(Instant::now() < deadline, "input ring got {got:?}");
        got.extend(a.read_input());
        std::thread::sleep(Duration::from_millis(5));
    }

    // Domain 4's pty is never read: 1 MiB of output must still drain (oldest dropped)...
    let big = vec![b'x'; 1 << 20];
    assert!(
        b.write(&big, Duration::from_secs(20)),
        "a stalled pty reader blocked the guest"
    );
    // ...and domain 3 is unaffected.
    assert!(a.write(b"still here\r\n", Duration::from_secs(5)));
    read_until(&mut tty_a, b"still here");

    stop.store(true, Ordering::Release);
    daemon.join().unwrap();
    let log_a = std::fs::read_to_string(logs.path().join("guest-3.log")).unwrap();
    assert!(
        log_a.contains("hello from 3") && log_a.contains("still here"),
        "{log_a:?}"
    );
    let log_b = std::fs::metadata(logs.path().join("guest-4.log"))
        .unwrap()
        .len();
    assert_eq!(log_b, 1 << 20, "the log keeps everything");
}

#[test]
fn hostile_console_indices_stop_only_that_console() {
    let store = FakeXenStore::new();
    let hub = FakeEvtchnHub::new();
    let grants = FakeGrants::new();
    let a = Guest::new(&store, &hub, &grants, 5);
    let b = Guest::new(&store, &hub, &grants, 6);
    let stop = Arc::new(AtomicBool::new(false));
    let (xs, g, h, s) = (
        Arc::new(store.connect()),
        Arc::new(grants.clone()),
        hub.clone(),
        stop.clone(),
    );
    let daemon = std::thread::spawn(move || {
        ConsoleBackend::new(xs, g, move || Ok(h.endpoint(0)), None)
            .run(&s)
            .unwrap();
    });
    let _ = wait_tty(&store, 5);
    let mut tty_b = open_tty(&wait_tty(&store, 6));
    a.page().store_u32_release(OUT_PROD, 1_000_000).unwrap();
    a.ev.notify(sluice_abi::types::EvtchnPort(a.port)).unwrap();
    assert!(b.write(b"fine\r\n", Duration::from_secs(5)));
    read_until(&mut tty_b, b"fine");
    stop.store(true, Ordering::Release);
    daemon.join().unwrap();
}
