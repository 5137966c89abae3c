//! Request/response round trips between two threads: our Xen shared ring against a pair
//! of `rtrb` SPSC queues (one for requests, one for responses), in the same run.
//!
//! Both sides carry the same items: a 112-byte (blkif-sized) request and a 16-byte
//! response; both have 32 slots (a one-page Xen ring of 112-byte entries has 32), so at
//! most 32 requests are in flight. Both busy-poll (spin, yielding to the OS scheduler
//! after a while so that the benchmark survives a loaded machine); the ring publishes in
//! batches like a real Xen driver (push all that fit, then one `push_requests`), while
//! rtrb publishes every item (its natural API). One element = one request sent and its
//! response received and checked.
//!
//! `cargo xtask bench ring` (`cargo bench -p sluice-abi --bench ring`)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_abi::ring::{BackRing, FrontRing};
use sluice_abi::shared::SharedPages;
use std::hint::black_box;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, Immutable, IntoBytes};

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Req {
    seq: u64,
    words: [u64; 13],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rsp {
    seq: u64,
    status: u64,
}

const SLOTS: usize = 32;

fn req(seq: u64) -> Req {
    Req {
        seq,
        words: [seq; 13],
    }
}

/// Spins briefly, then yields: a busy-poll that does not starve the peer thread when
/// both share one core.
struct Backoff(u32);

impl Backoff {
    fn snooze(&mut self) {
        if self.0 < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        self.0 = self.0.saturating_add(1);
    }
    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn xen_ring_round_trips(n: u64, per_item: bool) -> Duration {
    let area = SharedPages::new(1);
    let mut front = FrontRing::<Req, Rsp>::init(area.mem()).unwrap();
    let mut back = BackRing::<Req, Rsp>::new(area.mem()).unwrap();
    assert_eq!(front.size() as usize, SLOTS);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut handled = 0;
            let mut b = Backoff(0);
            while handled < n {
                let mut any = false;
                while let Some(r) = back.pop_request().unwrap() {
                    back.push_response(&Rsp {
                        seq: r.seq,
                        status: r.words[12],
                    })
                    .unwrap();
                    handled += 1;
                    any = true;
                    if per_item {
                        back.push_responses().unwrap();
                    }
                }
                if any {
                    back.push_responses().unwrap();
                    b.reset();
                } else {
                    b.snooze();
                }
            }
        });
        let t = Instant::now();
        let (mut sent, mut received) = (0, 0);
        let mut b = Backoff(0);
        while received < n {
            let mut progress = false;
            while sent < n && !front.is_full() {
                front.push_request(&req(sent)).unwrap();
                sent += 1;
                progress = true;
                if per_item {
                    front.push_requests().unwrap();
                }
            }
            if progress {
                front.push_requests().unwrap();
            }
            while let Some(r) = front.pop_response().unwrap() {
                assert_eq!(r.seq, received);
                black_box(r.status);
                received += 1;
                progress = true;
            }
            if progress {
                b.reset();
            } else {
                b.snooze();
            }
        }
        t.elapsed()
    })
}

fn rtrb_round_trips(n: u64) -> Duration {
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Req>::new(SLOTS);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Rsp>::new(SLOTS);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut handled = 0;
            let mut b = Backoff(0);
            while handled < n {
                match req_rx.pop() {
                    Ok(r) => {
                        // Never full: at most SLOTS requests are outstanding.
                        rsp_tx
                            .push(Rsp {
                                seq: r.seq,
                                status: r.words[12],
                            })
                            .unwrap_or_else(|_| unreachable!());
                        handled += 1;
                        b.reset();
                    }
                    Err(_) => b.snooze(),
                }
            }
        });
        let t = Instant::now();
        let (mut sent, mut received) = (0, 0);
        let mut b = Backoff(0);
        while received < n {
            let mut progress = false;
            while sent < n && sent - received < SLOTS as u64 {
                if req_tx.push(req(sent)).is_err() {
                    break;
                }
                sent += 1;
                progress = true;
            }
            while let Ok(r) = rsp_rx.pop() {
                assert_eq!(r.seq, received);
                black_box(r.status);
                received += 1;
                progress = true;
            }
            if progress {
                b.reset();
            } else {
                b.snooze();
            }
        }
        t.elapsed()
    })
}

/// Interleaved rounds of the three two-thread variants, `n` round trips each: on a busy
/// machine the load changes from second to second, so the ratio of runs taken back to
/// back is steadier than the ratio of two criterion groups taken a minute apart.
/// Prints, per variant, the median throughput and the median of the per-round ratios
/// to rtrb.
fn paired_rounds() {
    // SLUICE_BENCH_SMOKE=1 (`cargo xtask test`): one short round, to prove it runs.
    let smoke = std::env::var("SLUICE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let (rounds, n) = if smoke { (1, 1_000) } else { (15, 100_000) };
    let mut ratio_batched = Vec::new();
    let mut ratio_per_item = Vec::new();
    let (mut batched, mut per_item, mut rtrb) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = xen_ring_round_trips(n, false).as_secs_f64();
        let p = xen_ring_round_trips(n, true).as_secs_f64();
        let r = rtrb_round_trips(n).as_secs_f64();
        ratio_batched.push(r / b);
        ratio_per_item.push(r / p);
        batched.push(n as f64 / b / 1e6);
        per_item.push(n as f64 / p / 1e6);
        rtrb.push(n as f64 / r / 1e6);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("paired rounds ({rounds} x {n} round trips each, interleaved):");
    let (b, rb) = (median(&mut batched), median(&mut ratio_batched));
    let (p, rp) = (median(&mut per_item), median(&mut ratio_per_item));
    let r = median(&mut rtrb);
    println!("  xen_ring_batched  median {b:6.2} M round trips/s, median ratio to rtrb {rb:.2}");
    println!("  xen_ring_per_item median {p:6.2} M round trips/s, median ratio to rtrb {rp:.2}");
    println!("  rtrb_pair         median {r:6.2} M round trips/s");
    println!("docs/bench.md row (ours / rtrb; criterion's groups follow):");
    println!(
        "| two threads, paired rounds, per-item / batched | 1 | {p:.1} / {b:.1} M/s | {r:.1} M/s | {rp:.2} / {rb:.2} |"
    );
}

fn bench(c: &mut Criterion) {
    paired_rounds();
    let mut g = c.benchmark_group("ring_round_trip_112B");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("xen_ring_batched", |b| {
        b.iter_custom(|n| xen_ring_round_trips(n, false))
    });
    g.bench_function("xen_ring_per_item", |b| {
        b.iter_custom(|n| xen_ring_round_trips(n, true))
    });
    g.bench_function("rtrb_pair", |b| b.iter_custom(rtrb_round_trips));
    g.finish();
}

/// The same round trips on one thread, in bursts of 32: no cache-line transfers between
/// cores, so this isolates the code's own cost (bounds checks, atomic copies, index
/// validation) from the Xen layout's coherence traffic.
fn bench_single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_single_thread_112B");
    g.throughput(Throughput::Elements(SLOTS as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let area = SharedPages::new(1);
    let mut front = FrontRing::<Req, Rsp>::init(area.mem()).unwrap();
    let mut back = BackRing::<Req, Rsp>::new(area.mem()).unwrap();
    let mut seq = 0u64;
    g.bench_function("xen_ring", |b| {
        b.iter(|| {
            for i in 0..SLOTS as u64 {
                front.push_request(&req(seq + i)).unwrap();
            }
            front.push_requests().unwrap();
            while let Some(r) = back.pop_request().unwrap() {
                back.push_response(&Rsp {
                    seq: r.seq,
                    status: r.words[12],
                })
                .unwrap();
            }
            back.push_responses().unwrap();
            while let Some(r) = front.pop_response().unwrap() {
                assert_eq!(r.seq, seq);
                seq += 1;
            }
        })
    });
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Req>::new(SLOTS);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Rsp>::new(SLOTS);
    let mut seq = 0u64;
    g.bench_function("rtrb_pair", |b| {
        b.iter(|| {
            for i in 0..SLOTS as u64 {
                req_tx.push(req(seq + i)).unwrap();
            }
            while let Ok(r) = req_rx.pop() {
                rsp_tx
                    .push(Rsp {
                        seq: r.seq,
                        status: r.words[12],
                    })
                    .unwrap();
            }
            while let Ok(r) = rsp_rx.pop() {
                assert_eq!(r.seq, seq);
                seq += 1;
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_single_thread);
criterion_main!(benches);
