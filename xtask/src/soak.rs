//! `cargo xtask soak [--minutes M] [--guests N]` (opt-in, never in `cargo xtask test`):
//! N domUs at once on the Xen 4.17 test bed, each running mixed fio jobs with crc32c
//! verification against `sluice-blkback` for M minutes (`tests/tests/xen_soak.rs`);
//! prints each guest's figures and the daemon's RSS and fds, stamped with the date,
//! commit and load average before and after, for docs/bench.md.

use crate::util::{cargo, run};
use anyhow::{bail, Result};

/// Runs the soak.
pub fn run_soak(minutes: u32, guests: u32) -> Result<()> {
    if minutes == 0 || !(1..=8).contains(&guests) {
        bail!("--minutes must be at least 1 and --guests 1 to 8");
    }
    eprintln!("soak: {guests} guest(s) x {minutes} min against sluice-blkback");
    eprintln!("start: {}", crate::bench::stamp());
    let r = run(cargo()
        .env("SLUICE_SOAK_MINUTES", minutes.to_string())
        .env("SLUICE_SOAK_GUESTS", guests.to_string())
        .args(["test", "-p", "sluice-testbed", "--test", "xen_soak", "--"])
        .args(["--ignored", "--nocapture", "--test-threads=1"]));
    eprintln!("end:   {}", crate::bench::stamp());
    r
}
