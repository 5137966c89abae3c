//! Two threads, one shared ring, real notifications: the front thread produces
//! sequence-numbered requests and consumes responses, the back thread consumes requests
//! and answers each. Each side sleeps on an eventfd (our stand-in for an event channel)
//! only after `final_check_for_*` says the ring is empty, and the producer signals only
//! when `push_*_and_check_notify` says so. Every wait has a timeout: a timeout is a lost
//! wake-up and fails the test. Sequence numbers and a per-request checksum prove no
//! request or response is lost, duplicated, reordered or torn.
//!
//! `cheap_*` tests (10^5 requests) run in `cargo test`. The full 10^7-request run is
//! `#[ignore]`d because it takes tens of seconds in debug builds; run it with
//!
//! ```sh
//! cargo test --release -p sluice-abi --test ring_stress -- --ignored
//! ```
//!
//! (`cargo xtask test --suite abi-ring-stress` does exactly that).

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use sluice_abi::ring::{BackRing, FrontRing, RingError};
use sluice_abi::shared::SharedPages;
use std::time::Duration;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A blkif-sized (112-byte) request.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Req {
    seq: u64,
    words: [u64; 13],
}

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rsp {
    seq: u64,
    sum: u64,
}

fn word(seq: u64, k: usize) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(k as u32 * 5)
        ^ k as u64
}

fn make_req(seq: u64) -> Req {
    Req {
        seq,
        words: core::array::from_fn(|k| word(seq, k)),
    }
}

fn sum(req: &Req) -> u64 {
    req.words.iter().fold(req.seq, |a, w| a.rotate_left(7) ^ w)
}

/// An event channel between the two threads: a counter that a notify sets and a wait
/// consumes, so a notification sent before the wait still ends it (like an event
/// channel's pending bit).
struct Event(OwnedFd);

impl Event {
    fn new() -> Self {
        Self(eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd"))
    }

    fn notify(&self) {
        rustix::io::write(&self.0, &1u64.to_ne_bytes()).expect("eventfd write");
    }

    /// Waits for a notification; `Err` when none comes within `timeout`.
    fn wait(&self, timeout: Duration, who: &str) -> Result<(), String> {
        let ts = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        loop {
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => {
                    return Err(format!(
                        "{who}: lost wake-up (no notification in {timeout:?})"
                    ))
                }
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(format!("{who}: poll: {e}")),
            }
        }
        let mut buf = [0u8; 8];
        rustix::io::read(&self.0, &mut buf).map_err(|e| format!("{who}: read: {e}"))?;
        Ok(())
    }
}

/// How often each side slept and was notified (shows the protocol was exercised).
struct Stats {
    front_sleeps: u64,
    back_sleeps: u64,
    req_notifies: u64,
    rsp_notifies: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "front slept {} times, back slept {} times; {} request and {} response notifications",
            self.front_sleeps, self.back_sleeps, self.req_notifies, self.rsp_notifies
        )
    }
}

fn ring_err(who: &str) -> impl Fn(RingError) -> String + '_ {
    move |e| format!("{who}: {e}")
}

/// Runs `n` requests through a ring of `pages` pages starting at index `start`.
/// `notify_requests = false` breaks the protocol on purpose (the front never signals):
/// the harness must then report a lost wake-up.
fn run_pair(
    n: u64,
    pages: usize,
    start: u32,
    timeout: Duration,
    notify_requests: bool,
) -> Result<Stats, String> {
    let area = SharedPages::new(pages);
    let req_evt = Event::new();
    let rsp_evt = Event::new();
    let mut front = FrontRing::<Req, Rsp>::init_at(area.mem(), start).map_err(ring_err("front"))?;
    let mut back = BackRing::<Req, Rsp>::attach(area.mem(), start).map_err(ring_err("back"))?;

    let (front_res, back_res) = std::thread::scope(|s| {
        let front_thread = s.spawn(|| -> Result<(u64, u64), String> {
            let e = ring_err("front");
            if !notify_requests {
                // Let the back find the ring empty and go to sleep first, so the
                // missing notification is certain to be needed.
                std::thread::sleep(Duration::from_millis(200));
            }
            let (mut sent, mut received) = (0u64, 0u64);
            let (mut sleeps, mut notifies) = (0u64, 0u64);
            while received < n {
                let mut pushed = false;
                while sent < n && !front.is_full() {
                    front.push_request(&make_req(sent)).map_err(&e)?;
                    sent += 1;
                    pushed = true;
                }
                if pushed {
                    if notify_requests {
                        if front.push_requests_and_check_notify().map_err(&e)? {
                            req_evt.notify();
                            notifies += 1;
                        }
                    } else {
                        front.push_requests().map_err(&e)?;
                    }
                }
                let mut got = false;
                while let Some(rsp) = front.pop_response().map_err(&e)? {
                    if rsp.seq != received || rsp.sum != sum(&make_req(received)) {
                        return Err(format!(
                            "front: response {rsp:?} where seq {received} was due"
                        ));
                    }
                    received += 1;
                    got = true;
                }
                if !got && received < n && (front.is_full() || sent == n) {
                    // Blocked: nothing to send, nothing received. Sleep only if the
                    // final check (which arms rsp_event) still finds nothing.
                    if !front.final_check_for_responses().map_err(&e)? {
                        sleeps += 1;
                        rsp_evt.wait(timeout, "front")?;
                    }
                }
            }
            Ok((sleeps, notifies))
        });
        let back_thread = s.spawn(|| -> Result<(u64, u64), String> {
            let e = ring_err("back");
            let mut handled = 0u64;
            let (mut sleeps, mut notifies) = (0u64, 0u64);
            while handled < n {
                let mut any = false;
                while let Some(req) = back.pop_request().map_err(&e)? {
                    if req.seq != handled
                        || req
                            .words
                            .iter()
                            .enumerate()
                            .any(|(k, &w)| w != word(handled, k))
                    {
                        return Err(format!("back: request {req:?} where seq {handled} was due"));
                    }
                    back.push_response(&Rsp {
                        seq: req.seq,
                        sum: sum(&req),
                    })
                    .map_err(&e)?;
                    handled += 1;
                    any = true;
                }
                if any && back.push_responses_and_check_notify().map_err(&e)? {
                    rsp_evt.notify();
                    notifies += 1;
                }
                if !any && handled < n && !back.final_check_for_requests().map_err(&e)? {
                    sleeps += 1;
                    req_evt.wait(timeout, "back")?;
                }
            }
            Ok((sleeps, notifies))
        });
        (front_thread.join(), back_thread.join())
    });
    let (front_sleeps, req_notifies) = front_res.map_err(|_| "front thread panicked")??;
    let (back_sleeps, rsp_notifies) = back_res.map_err(|_| "back thread panicked")??;
    // Both sides agree on the final indices.
    let h = front.header().map_err(ring_err("front"))?;
    let end = start.wrapping_add(n as u32);
    if (h.req_prod, h.rsp_prod) != (end, end) {
        return Err(format!(
            "final header {h:?}, expected both producers at {end}"
        ));
    }
    Ok(Stats {
        front_sleeps,
        back_sleeps,
        req_notifies,
        rsp_notifies,
    })
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn cheap_one_page_wrapping() {
    let stats = run_pair(100_000, 1, u32::MAX - 5_000, TIMEOUT, true).unwrap();
    eprintln!("{stats}");
}

#[test]
fn cheap_four_pages() {
    let stats = run_pair(100_000, 4, 0, TIMEOUT, true).unwrap();
    eprintln!("{stats}");
}

/// The harness can fail: a front that never notifies leaves the back asleep, and the
/// timed wait reports it as a lost wake-up instead of hanging.
#[test]
fn harness_detects_a_lost_wakeup() {
    let err = match run_pair(1_000, 1, 0, Duration::from_secs(1), false) {
        Ok(stats) => panic!("a protocol without request notifications completed: {stats}"),
        Err(e) => e,
    };
    assert!(err.contains("lost wake-up"), "{err}");
}

/// 10^7 requests through a one-page ring, indices wrapping past u32::MAX.
#[test]
#[ignore = "10^7 requests: run in release, `cargo test --release -p sluice-abi --test ring_stress -- --ignored`"]
fn stress_ten_million() {
    let t = std::time::Instant::now();
    let stats = run_pair(10_000_000, 1, u32::MAX - 1_000_000, TIMEOUT, true).unwrap();
    eprintln!(
        "10^7 requests in {:.1} s: {stats}",
        t.elapsed().as_secs_f64()
    );
}

/// Busy-polling version (no eventfd): small enough to run under Miri, whose data-race
/// detector and weak-memory emulation then check that the entry copies never race and
/// that the Release/Acquire index protocol orders them:
/// `cargo +nightly miri test -p sluice-abi --test ring_stress spin`.
#[test]
fn spin_two_threads() {
    let n: u64 = if cfg!(miri) { 150 } else { 100_000 };
    let area = SharedPages::new(1);
    let mut front = FrontRing::<Req, Rsp>::init_at(area.mem(), u32::MAX - 40).unwrap();
    let mut back = BackRing::<Req, Rsp>::attach(area.mem(), u32::MAX - 40).unwrap();
    std::thread::scope(|s| {
        let back_thread = s.spawn(|| {
            let mut handled = 0;
            while handled < n {
                let mut any = false;
                while let Some(req) = back.pop_request().unwrap() {
                    assert_eq!(req.seq, handled);
                    assert!(req
                        .words
                        .iter()
                        .enumerate()
                        .all(|(k, &w)| w == word(handled, k)));
                    back.push_response(&Rsp {
                        seq: req.seq,
                        sum: sum(&req),
                    })
                    .unwrap();
                    handled += 1;
                    any = true;
                }
                if any {
                    back.push_responses().unwrap();
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let (mut sent, mut received) = (0, 0);
        while received < n {
            let mut any = false;
            while sent < n && !front.is_full() {
                front.push_request(&make_req(sent)).unwrap();
                sent += 1;
                any = true;
            }
            front.push_requests().unwrap();
            while let Some(rsp) = front.pop_response().unwrap() {
                assert_eq!((rsp.seq, rsp.sum), (received, sum(&make_req(received))));
                received += 1;
                any = true;
            }
            if !any {
                if back_thread.is_finished() {
                    break; // the back stopped early (a failed check): report it below
                }
                std::thread::yield_now();
            }
        }
        if let Err(panic) = back_thread.join() {
            std::panic::resume_unwind(panic);
        }
        // The back ended after publishing its last responses; take any not seen yet.
        while let Some(rsp) = front.pop_response().unwrap() {
            assert_eq!((rsp.seq, rsp.sum), (received, sum(&make_req(received))));
            received += 1;
        }
        assert_eq!(
            received, n,
            "the back stopped before answering every request"
        );
    });
}
