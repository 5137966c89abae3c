//! CPU per frame of `FrameRing`'s reads on the host, by how many buffers are armed:
//! `cargo run --release -p sluice-xen-sys --example framering_reads`.
//!
//! A sender thread puts 1500-byte datagrams on a socket pair in bursts of four; the
//! receiving thread reads them through a `FrameRing` with N buffers, re-arming each at
//! once, and reports its own CPU time (user + system, `RUSAGE_THREAD`) and enters per
//! frame. With one parked read and adaptive `RWF_NOWAIT` batches the cost per frame
//! should not grow with N (a read parked per buffer made it double at N = 32: every
//! parked read is woken by every frame). Host figures, not a PV dom0's.

use sluice_xen_sys::FrameRing;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage` for the call's duration.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime))
}

fn main() {
    const FRAMES: usize = 20_000;
    for n in [1usize, 2, 4, 8, 32] {
        let (a, b) = UnixDatagram::pair().expect("socket pair");
        a.set_nonblocking(true).expect("non-blocking");
        let Ok(mut ring) = FrameRing::new(a.as_fd(), None, n, 2048, 0) else {
            eprintln!("io_uring unavailable here");
            return;
        };
        for i in 0..n {
            ring.arm(i).expect("arm");
        }
        let sender = std::thread::spawn(move || {
            let frame = [7u8; 1500];
            let mut sent = 0;
            while sent < FRAMES {
                match b.send(&frame) {
                    Ok(_) => sent += 1,
                    Err(_) => std::thread::yield_now(),
                }
                if sent % 4 == 0 {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        });
        let (t0, c0, e0) = (Instant::now(), thread_cpu(), ring.enters());
        let (mut got, mut failed) = (0, 0);
        while got < FRAMES {
            ring.wait(Duration::from_millis(100)).expect("wait");
            while let Some((i, r)) = ring.next_read() {
                match r {
                    Ok(_) => got += 1,
                    Err(_) => failed += 1,
                }
                ring.arm(i).expect("arm");
            }
        }
        let (wall, cpu, enters) = (t0.elapsed(), thread_cpu() - c0, ring.enters() - e0);
        sender.join().expect("sender");
        println!(
            "{n:2} buffers: {FRAMES} frames in {wall:.2?}, receiver CPU {:.2} us/frame, \
             {:.2} enters/frame, {failed} reads failed",
            cpu.as_secs_f64() * 1e6 / FRAMES as f64,
            enters as f64 / FRAMES as f64
        );
    }
}
