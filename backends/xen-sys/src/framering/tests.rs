//! `FrameRing`'s tests: datagram socket pairs (and a pty, for a device that refuses
//! `RWF_NOWAIT`) stand in for the tap.
use super::*;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;

fn pair() -> (UnixDatagram, UnixDatagram) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn a_batch_of_writes_is_one_enter_and_reads_wait_for_frames() {
    let (a, b) = pair();
    let Ok(mut r) = FrameRing::new(a.as_fd(), None, 4, 100, 10) else {
        eprintln!("io_uring unavailable here; skipping");
        return;
    };
    let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 20 + usize::from(i)]).collect();
    let slices: Vec<[IoSlice<'_>; 2]> = frames
        .iter()
        .map(|f| [IoSlice::new(&f[..3]), IoSlice::new(&f[3..])])
        .collect();
    let refs: Vec<&[IoSlice<'_>]> = slices.iter().map(|s| &s[..]).collect();
    let before = r.enters();
    let res = r.write_batch(&refs);
    assert_eq!(r.enters() - before, 1, "one enter for the batch");
    for (k, x) in res.iter().enumerate() {
        assert_eq!(*x.as_ref().unwrap(), 20 + k);
    }
    let mut got = [0u8; 64];
    for f in &frames {
        let n = b.recv(&mut got).unwrap();
        assert_eq!(&got[..n], &f[..]);
    }
    // Reads armed on an empty socket finish when frames come, in order.
    for i in 0..4 {
        r.arm(i).unwrap();
        assert!(r.buf(i).is_none(), "an armed buffer is not handed out");
    }
    r.submit().unwrap();
    assert!(r.next_read().is_none());
    b.send(&[7; 30]).unwrap();
    b.send(&[8; 40]).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        r.wait(Duration::from_secs(5)).unwrap();
        while let Some((i, n)) = r.next_read() {
            let n = n.unwrap();
            seen.push(r.buf(i).unwrap()[..n].to_vec());
        }
    }
    assert_eq!(seen, vec![vec![7; 30], vec![8; 40]]);
    // Dropping with two reads in flight cancels them (no hang, no write after).
}

#[test]
fn one_read_waits_and_a_burst_of_frames_is_one_enter() {
    let (a, b) = pair();
    let Ok(mut r) = FrameRing::new(a.as_fd(), None, 8, 100, 0) else {
        return;
    };
    for i in 0..8 {
        r.arm(i).unwrap();
    }
    r.submit().unwrap();
    // Eight buffers armed, one read waiting on the socket (not eight: each waiting
    // read is woken by every frame).
    assert_eq!(r.reads_in_flight(), 1);
    b.send(&[1; 10]).unwrap();
    while r.peek_read().is_none() {
        r.wait(Duration::from_secs(5)).unwrap();
    }
    let (i, n) = r.next_read().unwrap();
    assert_eq!(n.unwrap(), 10);
    r.arm(i).unwrap();
    // Frames flow: five queued at once take fewer enters than frames (the batch
    // grows while its reads all find frames), and the reads that found nothing
    // stay inside the ring (no EAGAIN handed out).
    let burst = |r: &mut FrameRing<'_>, first: u8| {
        for k in first..first + 5 {
            b.send(&[k; 20]).unwrap();
        }
        let before = r.enters();
        let mut got = Vec::new();
        while got.len() < 5 {
            r.wait(Duration::from_secs(5)).unwrap();
            while let Some((i, n)) = r.next_read() {
                assert_eq!(n.unwrap(), 20);
                got.push(r.buf(i).unwrap()[0]);
                r.arm(i).unwrap();
            }
        }
        assert_eq!(got, (first..first + 5).collect::<Vec<_>>(), "in order");
        r.enters() - before
    };
    assert!(burst(&mut r, 2) < 5, "fewer enters than frames");
    assert!(burst(&mut r, 10) < 5, "again, from a parked read");
    r.submit().unwrap();
    assert_eq!(r.reads_in_flight(), 1, "one read waits again");
    // The flow is over: the next wait sleeps (no spinning on EAGAIN).
    let c = r.completions();
    r.wait(Duration::from_millis(50)).unwrap();
    assert_eq!(r.completions(), c);
}

/// A pty master in raw mode: a device whose reads may not take `RWF_NOWAIT` (as a tap
/// on dom0's 6.1 kernel); the second fd is the slave, to write frames with.
fn raw_pty() -> Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on descriptors this function opens and owns; the
    // termios struct is zero-initialised and then filled by tcgetattr.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK);
        if m < 0 || libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return None;
        }
        let master = std::os::fd::OwnedFd::from_raw_fd(m);
        let name = libc::ptsname(m);
        if name.is_null() {
            return None;
        }
        let sl = libc::open(name, libc::O_RDWR | libc::O_NOCTTY);
        if sl < 0 {
            return None;
        }
        let slave = std::os::fd::OwnedFd::from_raw_fd(sl);
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(sl, &mut t);
        libc::cfmakeraw(&mut t);
        libc::tcsetattr(sl, 0, &t);
        Some((master, slave))
    }
}

#[test]
fn a_device_without_nowait_reads_falls_back_to_one_parked_read() {
    let Some((master, slave)) = raw_pty() else {
        eprintln!("no pty here; skipping");
        return;
    };
    let Ok(mut r) = FrameRing::new(master.as_fd(), None, 4, 100, 0) else {
        return;
    };
    for i in 0..4 {
        r.arm(i).unwrap();
    }
    let slave = std::fs::File::from(slave);
    for k in 0..6u8 {
        use std::io::Write;
        (&slave).write_all(&[k; 10]).unwrap();
        let mut got = None;
        while got.is_none() {
            r.wait(Duration::from_secs(5)).unwrap();
            while let Some((i, n)) = r.next_read() {
                // Every frame arrives, and no EOPNOTSUPP or EAGAIN is handed out.
                assert_eq!(n.unwrap(), 10, "frame {k}");
                got = Some(r.buf(i).unwrap()[0]);
                r.arm(i).unwrap();
            }
        }
        assert_eq!(got, Some(k));
    }
    if r.nowait_reads() {
        eprintln!("this kernel's pty takes RWF_NOWAIT: the fallback was not exercised");
    } else {
        r.submit().unwrap();
        assert!(r.reads_in_flight() <= 1, "one parked read at most");
    }
}

#[test]
fn a_read_left_in_line_does_not_stop_the_wait_from_sleeping() {
    let (a, b) = pair();
    let Ok(mut r) = FrameRing::new(a.as_fd(), None, 2, 100, 0) else {
        return;
    };
    r.arm(0).unwrap();
    r.arm(1).unwrap();
    b.send(&[1; 10]).unwrap();
    while r.peek_read().is_none() {
        r.wait(Duration::from_secs(5)).unwrap();
    }
    // The frame stays in line (as one waiting for RX requests): the next wait must
    // sleep its timeout, not return at once (a spinning queue thread).
    let t = std::time::Instant::now();
    let c = r.completions();
    r.wait(Duration::from_millis(100)).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.completions(), c);
    // A new frame wakes it at once.
    b.send(&[2; 10]).unwrap();
    let t = std::time::Instant::now();
    r.wait(Duration::from_secs(5)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(r.completions(), c + 1);
}

#[test]
fn with_deferred_task_running_a_frame_is_posted_at_the_next_wait() {
    let (a, b) = pair();
    let Ok(mut r) = FrameRing::new(a.as_fd(), None, 1, 100, 0) else {
        return;
    };
    if !r.deferred() {
        eprintln!("no DEFER_TASKRUN on this kernel; skipping");
        return;
    }
    r.arm(0).unwrap();
    r.submit().unwrap();
    b.send(&[5; 10]).unwrap();
    // The read finished in the kernel, but nothing interrupted us to post it...
    std::thread::sleep(Duration::from_millis(20));
    r.reap();
    assert!(r.peek_read().is_none(), "posted without a wait");
    // ...until the next wait, which returns at once with it.
    r.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(r.peek_read().map(|(i, n)| (i, n.ok())), Some((0, Some(10))));
}

#[test]
fn the_poll_descriptor_wakes_the_wait() {
    let (a, _b) = pair();
    let (c, d) = pair();
    let Ok(mut r) = FrameRing::new(a.as_fd(), Some(c.as_fd()), 1, 100, 0) else {
        return;
    };
    assert!(!r.wait(Duration::from_millis(10)).unwrap(), "timeout");
    d.send(&[1]).unwrap();
    assert!(r.wait(Duration::from_secs(5)).unwrap(), "poll fired");
}

#[test]
fn side_reads_give_the_bytes_and_side_writes_go_out_in_order() {
    let (a, _b) = pair();
    let (c, d) = pair();
    let Ok(r) = FrameRing::new(a.as_fd(), Some(c.as_fd()), 1, 100, 0) else {
        return;
    };
    let mut r = r.with_side_reads();
    assert!(!r.wait(Duration::from_millis(10)).unwrap(), "timeout");
    assert_eq!(
        r.side_bytes().unwrap(),
        &[] as &[u8],
        "nothing while in flight"
    );
    d.send(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert!(
        r.wait(Duration::from_secs(5)).unwrap(),
        "side read finished"
    );
    assert_eq!(r.side_bytes().unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    r.side_write(&[9, 9]).unwrap();
    r.side_write(&[8]).unwrap();
    r.submit().unwrap();
    let mut got = [0u8; 16];
    assert_eq!(d.recv(&mut got).unwrap(), 2);
    assert_eq!(&got[..2], &[9, 9]);
    assert_eq!(d.recv(&mut got).unwrap(), 1);
    // Dropped with the next side read in flight: cancelled, waited for.
    assert!(!r.wait(Duration::from_millis(10)).unwrap());
}
