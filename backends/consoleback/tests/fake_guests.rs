//! The console backend against fake guests (fake xenstore, grants, event channels)
//! with real ptys and log files.

use sluice_abi::console::{XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use sluice_abi::shared::SharedMem;
use sluice_consoleback::pump::PumpCounters;
use sluice_consoleback::ConsoleBackend;
use sluice_dom0::evtchn::{FakeEvtchn, FakeEvtchnHub};
use sluice_dom0::grant::{FakeGrants, FakeGuestMemory};
use sluice_dom0::ratelimit::FakeRelativeClock;
use sluice_dom0::xenstore::{FakeXenStore, XBT_NULL};
use sluice_dom0::{EventChannels, XenStore};
use sluice_dom0::{LimitClock, Rate};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{open_tty, read_until, wait_until};

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
    let backend = ConsoleBackend::new(xs, g, move || Ok(h.endpoint(0)), Some(dir))
        .with_log_max_bytes(LOG_CAP)
        .with_log_rate(
            Rate {
                burst: 10,
                every: Duration::from_secs(3600),
            },
            LimitClock::Fake(FakeRelativeClock::default()),
        );
    let counters = backend.counters();
    let daemon = std::thread::spawn(move || {
        let mut backend = backend;
        backend.run(&s).unwrap()
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
    // Domain 4's log was rotated at the cap: the newest bytes in two files, each within
    // the cap, nothing else on disk.
    let size = |n: &str| std::fs::metadata(logs.path().join(n)).unwrap().len();
    let (now, old) = (size("guest-4.log"), size("guest-4.log.1"));
    assert!(
        now <= LOG_CAP && old <= LOG_CAP && old > LOG_CAP - 2048,
        "{now} {old}"
    );
    let b4 = counters.lock().unwrap()[&4].clone();
    assert_eq!(PumpCounters::get(&b4.bytes), 1 << 20, "every byte taken");
    // Each file filled to within one ring (2 KiB) of the cap before the next.
    let rotations = PumpCounters::get(&b4.rotations);
    assert!(
        (3..=(1 << 20) / (LOG_CAP - 2048)).contains(&rotations),
        "{rotations}"
    );
    assert_eq!(std::fs::read_dir(logs.path()).unwrap().count(), 3);
    // The stalled pty's warnings: at most the burst, the rest counted.
    let (lines, suppressed) = (
        PumpCounters::get(&b4.log_lines),
        PumpCounters::get(&b4.log_suppressed),
    );
    assert!(
        lines <= 10 && suppressed > 0,
        "{lines} logged, {suppressed} suppressed"
    );
    eprintln!(
        "1 MiB to an unread pty: log {now} + {old} bytes (cap {LOG_CAP}), {} rotations, \
         {lines} warnings logged, {suppressed} suppressed",
        rotations
    );
}

const LOG_CAP: u64 = 256 << 10;

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

/// Output waiting in a guest's ring.
fn unread(g: &Guest) -> u32 {
    let m = g.page();
    m.load_u32_acquire(OUT_PROD)
        .unwrap()
        .wrapping_sub(m.load_u32_acquire(OUT_CONS).unwrap())
}

/// The flooding guest: one byte (if there is room) and a notification, `n` times.
fn spam(g: &Guest, n: u32) {
    let m = g.page();
    for _ in 0..n {
        let prod = m.load_u32_relaxed(OUT_PROD).unwrap();
        if unread(g) < XENCONS_OUT_SIZE as u32 {
            let at = XENCONS_IN_SIZE + prod as usize % XENCONS_OUT_SIZE;
            m.write_bytes(at, b"f").unwrap();
            m.store_u32_release(OUT_PROD, prod.wrapping_add(1)).unwrap();
        }
        g.ev.notify(sluice_abi::types::EvtchnPort(g.port)).unwrap();
    }
}

/// A guest that writes and notifies without end gets `burst` serviced turns and then
/// none until its budget refills (the clock here is fake and moved by hand, so every
/// count is exact): its notifications wake nothing, its ring waits full, and when a
/// turn is due again one read takes the whole ring. A quiet guest beside it is served.
#[test]
fn a_flooding_guest_costs_bounded_turns_and_a_quiet_one_is_served() {
    const BURST: u64 = 30;
    let store = FakeXenStore::new();
    let hub = FakeEvtchnHub::new();
    let grants = FakeGrants::new();
    let logs = tempfile::tempdir().unwrap();
    let flood = Guest::new(&store, &hub, &grants, 7);
    let quiet = Guest::new(&store, &hub, &grants, 8);
    let clock = FakeRelativeClock::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (xs, g, h, s) = (
        Arc::new(store.connect()),
        Arc::new(grants.clone()),
        hub.clone(),
        stop.clone(),
    );
    let backend = ConsoleBackend::new(
        xs,
        g,
        move || Ok(h.endpoint(0)),
        Some(logs.path().to_path_buf()),
    )
    .with_wake_rate(
        Rate {
            burst: BURST as u32,
            every: Duration::from_secs(3600),
        },
        LimitClock::Fake(clock.clone()),
    );
    let board = backend.counters();
    let daemon = std::thread::spawn(move || {
        let mut backend = backend;
        backend.run(&s).unwrap()
    });
    let _ = wait_tty(&store, 7);
    let mut tty_q = open_tty(&wait_tty(&store, 8));
    let c = board.lock().unwrap()[&7].clone();
    let get = PumpCounters::get;

    // Spend the budget, then flood on: 100 000 notifications in all.
    let mut sent = 0;
    while get(&c.throttled) == 0 {
        spam(&flood, 100);
        sent += 100;
        assert!(sent < 1_000_000, "never throttled");
    }
    spam(&flood, 100_000 - sent);
    assert_eq!(get(&c.serviced), BURST, "serviced turns within the budget");
    // A woken turn needs the port unmasked, which only a serviced turn does.
    assert!(get(&c.wakeups) <= BURST + 1, "{} wakeups", get(&c.wakeups));
    assert!(get(&c.reads) <= BURST);
    assert_eq!(
        unread(&flood),
        XENCONS_OUT_SIZE as u32,
        "the ring waits, full"
    );

    // The quiet guest has its own budget.
    assert!(quiet.write(b"quiet guest here\r\n", Duration::from_secs(5)));
    read_until(&mut tty_q, b"quiet guest here");

    // One more cell: one turn, one read of the whole ring.
    let (reads, bytes) = (get(&c.reads), get(&c.bytes));
    clock.advance(Duration::from_secs(3600));
    wait_until("the full ring read", || unread(&flood) == 0);
    assert_eq!(get(&c.serviced), BURST + 1);
    assert_eq!(get(&c.reads), reads + 1);
    assert_eq!(get(&c.bytes), bytes + XENCONS_OUT_SIZE as u64);
    eprintln!(
        "100000 notifications: {} serviced turns, {} wakeups, {} reads, {} bytes, {} throttled \
         turns (each of those slept first)",
        get(&c.serviced),
        get(&c.wakeups),
        get(&c.reads),
        get(&c.bytes),
        get(&c.throttled)
    );
    stop.store(true, Ordering::Release);
    daemon.join().unwrap();
    let log = std::fs::read(logs.path().join("guest-7.log")).unwrap();
    assert_eq!(log.len() as u64, get(&c.bytes));
}
