//! `sluice-hostile-blkfront`: a hostile blkif frontend for a domU whose own
//! `xen-blkfront` is not loaded. It takes over `device/vbd/<devid>` and attacks the
//! block backend in dom0 through the real xenbus protocol: pages granted with
//! `/dev/xen/gntalloc`, an event channel from `/dev/xen/evtchn`, xenstore over
//! `/dev/xen/xenbus`.
//!
//! Scenarios, each printing `@@HOSTILE PASS|FAIL name: detail`:
//! * ring grants it never made (or read-only ones), garbage in its xenstore nodes
//!   (non-numeric, overflowing, absurd ring-page-order and queue counts, a foreign
//!   protocol, non-UTF-8): the backend must refuse (state Closing/Closed, an `error`
//!   node) and offer the device again (InitWait) once the frontend resets to
//!   Initialising;
//! * once connected properly: requests with ungranted or freed grants, a read-only
//!   grant for a read, sectors past the end or overflowing, 0 or more than 11
//!   segments, bad sector ranges in a page, bad indirect requests, unknown operations:
//!   each must be answered `BLKIF_RSP_ERROR` / `BLKIF_RSP_EOPNOTSUPP` with its id;
//! * a valid write (direct and indirect), flush and read back: the device still works;
//!   the host checks that the image holds exactly these bytes and nothing else;
//! * a flood of bad requests ([`FLOOD_REQUESTS`](flood::FLOOD_REQUESTS), or `--flood N`) (unknown operation, past the end,
//!   never-granted page, in turn): each refused; dom0 checks the daemon's log stays
//!   bounded;
//! * a runaway `req_prod` far ahead of the backend: the backend must disconnect the
//!   device (Closing/Closed) without answering garbage.
//!
//! * with `--steady-devid`, meanwhile, a well-behaved frontend on another device of
//!   the same backend writes and reads back 32 KiB over and over: every round must be
//!   exact while the attack runs (the backend's other devices keep working); then it
//!   closes that device and resets it to Initialising, so that a blkfront loaded
//!   afterwards can take it.
//!
//! Usage: `sluice-hostile-blkfront --devid 51712 --data FILE --sector S
//! [--steady-devid 51728 [--steady-sector T]] [--flood N] [--timeout-scale F]`: the valid write puts
//! the first [`VALID_BYTES`](attack::VALID_BYTES) of FILE at 512-byte sector S (the steady device writes at T
//! of its own disk, default S); every wait (20 s for a backend state, 10 s for responses) is multiplied
//! by F. Exit status: the number of failed checks (at most 100).

#![deny(unsafe_code)]
mod attack;
mod flood;
mod front;
mod requests;
mod ring;
mod steady;

use crate::attack::run;
use crate::flood::FLOOD_REQUESTS;
use crate::steady::{steady_device, STEADY_BYTES, STEADY_MIN_ROUNDS};
use anyhow::{Context, Result};
use sluice_hostile_common::{secs, Report};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    devid: u32,
    data: std::path::PathBuf,
    sector: u64,
    steady_devid: Option<u32>,
    steady_sector: Option<u64>,
    flood: u64,
}

fn args() -> Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| -> Result<String> {
        let i = a
            .iter()
            .position(|x| x == k)
            .with_context(|| format!("{k} is required"))?;
        a.get(i + 1)
            .cloned()
            .with_context(|| format!("{k} needs a value"))
    };
    let steady_devid = match a.iter().position(|x| x == "--steady-devid") {
        Some(_) => Some(get("--steady-devid")?.parse().context("--steady-devid")?),
        None => None,
    };
    let steady_sector = match a.iter().position(|x| x == "--steady-sector") {
        Some(_) => Some(get("--steady-sector")?.parse().context("--steady-sector")?),
        None => None,
    };
    Ok(Args {
        devid: get("--devid")?.parse().context("--devid")?,
        data: get("--data")?.into(),
        sector: get("--sector")?.parse().context("--sector")?,
        steady_devid,
        steady_sector,
        flood: match a.iter().position(|x| x == "--flood") {
            Some(_) => get("--flood")?.parse().context("--flood")?,
            None => FLOOD_REQUESTS,
        },
    })
}

fn main() {
    let mut r = Report {
        passed: 0,
        failed: 0,
    };
    match args() {
        Err(e) => r.check("arguments", false, format!("{e:#}")),
        Ok(a) => {
            let stop = AtomicBool::new(false);
            let started = AtomicBool::new(false);
            std::thread::scope(|sc| {
                let steady = a.steady_devid.map(|devid| {
                    let sector = a.steady_sector.unwrap_or(a.sector);
                    let (stop, started) = (&stop, &started);
                    sc.spawn(move || steady_device(devid, sector, started, stop))
                });
                // The attack starts once the steady device is connected (or failed to).
                let t = Instant::now();
                while steady.is_some() && !started.load(Ordering::Acquire) {
                    if t.elapsed() > secs(60) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Err(e) = run(&mut r, &a) {
                    r.check("run", false, format!("{e:#}"));
                }
                stop.store(true, Ordering::Release);
                if let (Some(h), Some(devid)) = (steady, a.steady_devid) {
                    let (ok, detail) = match h.join() {
                        Ok(Ok(rounds)) if rounds >= STEADY_MIN_ROUNDS => (
                            true,
                            format!(
                                "{rounds} rounds of a {STEADY_BYTES}-byte write + read-back on device {devid} while the attack ran, all exact; device reset to Initialising"
                            ),
                        ),
                        Ok(Ok(rounds)) => (
                            false,
                            format!("only {rounds} rounds on device {devid} during the attack (want >= {STEADY_MIN_ROUNDS})"),
                        ),
                        Ok(Err(e)) => (false, format!("device {devid}: {e:#}")),
                        Err(_) => (false, "the steady thread panicked".into()),
                    };
                    r.check("other-device-keeps-working", ok, detail);
                }
            });
        }
    }
    r.finish();
}
