//! A frontend flooding the backend with bad requests gets each one refused, and the
//! daemon's log stays bounded: per device and message class, `Rate::burst` lines, then
//! counts of what was suppressed. The log lines are the real `tracing` output, captured.
//! The rate limit goes by a fake clock that never moves, so the bound is exact whatever
//! the speed of the machine.

mod common;

use common::*;
use sluice_dom0::ratelimit::FakeRelativeClock;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Every log line of this test binary.
fn captured() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_target(false)
            .with_writer(move || Sink(buf))
            .init();
        buf
    })
}

struct Sink(&'static Mutex<Vec<u8>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines_about(who: &str) -> Vec<String> {
    let log = captured().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(who))
        .map(str::to_string)
        .collect()
}

/// The count in "... N similar message(s) suppressed ...", if the line has one.
fn suppressed_in(line: &str) -> u64 {
    let Some(at) = line.find(" similar message(s) suppressed") else {
        return 0;
    };
    let digits: String = line[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

const BAD_REQUESTS: u64 = 100_000;
const BURST: u32 = 10;

fn flood(engine: IoEngine, domid: u16) {
    captured();
    let clock = FakeRelativeClock::default();
    let rate = Rate {
        burst: BURST,
        every: Duration::from_secs(3600),
    };
    let w = World::with_log(1, Cfg::new(engine, false), (rate, LimitClock::Fake(clock)));
    let (be, fe, img) = w.add_disk(domid, 51712, "w");
    let mut f = Front::connect(&w, w.guest(domid), &be, &fe, 0, 1);
    let (page, _) = f.data_page(0, Some(0x66), true);
    // Three classes of bad request, in turn: an operation that does not exist, sectors
    // past the end of the disk, a grant reference never granted.
    let mut sent = 0u64;
    let mut refused = 0u64;
    while sent < BAD_REQUESTS {
        let n = (BAD_REQUESTS - sent).min(32);
        let reqs: Vec<BlkifRequest> = (0..n)
            .map(|i| {
                let kind = (sent + i) % 3;
                let mut r = BlkifRequest {
                    operation: BlkifOp::Write as u8,
                    nr_segments: 1,
                    id: sent + i,
                    sector_number: 0,
                    ..Default::default()
                };
                match kind {
                    0 => r.operation = 0xee,
                    1 => {
                        r.sector_number = SECTORS;
                        r.seg[0] = BlkifRequestSegment::new(page, 0, 7);
                    }
                    _ => r.seg[0] = BlkifRequestSegment::new(9999, 0, 7),
                }
                r
            })
            .collect();
        for r in f.submit_batch(&reqs) {
            assert_ne!(status(r), BlkifRsp::Okay, "request {} refused", r.id);
            refused += 1;
        }
        sent += n;
    }
    assert_eq!(refused, BAD_REQUESTS);
    assert_eq!(
        image_bytes(&img, 0, 4096),
        vec![0xee; 4096],
        "nothing written"
    );
    // Disconnecting reports what was suppressed.
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"5").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "5");
    let who = format!("vbd {domid}:51712");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines_about(&who).iter().any(|l| l.contains("disconnected")) {
        assert!(Instant::now() < deadline, "no disconnect line");
        std::thread::sleep(Duration::from_millis(10));
    }
    let warnings: Vec<String> = lines_about(&who)
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    let summaries = warnings
        .iter()
        .filter(|l| l.contains("similar message(s) suppressed ("))
        .count();
    // One class per kind of bad request: BURST lines each, then one count each.
    assert!(
        warnings.len() <= 3 * BURST as usize + 3,
        "{} warning lines for {BAD_REQUESTS} bad requests:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    assert_eq!(summaries, 3, "{}", warnings.join("\n"));
    // Every bad request is accounted for: a line of its own, or counted in one.
    let counted: u64 = warnings.iter().map(|l| suppressed_in(l)).sum();
    assert_eq!(
        warnings.len() as u64 - summaries as u64 + counted,
        BAD_REQUESTS,
        "{}",
        warnings.join("\n")
    );
    eprintln!(
        "{BAD_REQUESTS} bad requests -> {} warning lines ({summaries} with suppressed counts)",
        warnings.len()
    );
}

#[test]
fn flood_of_bad_requests_logs_a_bounded_number_of_lines_sync() {
    flood(IoEngine::Sync, 31);
}

#[test]
fn flood_of_bad_requests_logs_a_bounded_number_of_lines_uring() {
    flood(IoEngine::Uring, 32);
}
