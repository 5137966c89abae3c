//! Scenarios on real Xen: PV and PVH domUs whose disks are served by dom0's kernel
//! blkback and whose consoles by xenconsoled. One Xen boot runs every guest step.
//! `xen_userspace.rs` runs the same steps against Sluice's backends
//! ([`sluice_testbed::scenario::standard_steps`]).
//!
//! Ignored by default (minutes of QEMU TCG); `cargo xtask test --suite xen-blk` runs
//! them, or `cargo test -p sluice-testbed --test xen_blk -- --ignored --nocapture`.

use sluice_testbed::scenario::standard_steps;
use sluice_testbed::{run_boot, BlockBackend, Boot, ConsoleBackend};

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-blk)"]
fn kernel_blkback_pv_and_pvh() {
    let boot = Boot {
        name: "xen-blk-kernel".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps: standard_steps("kblk", BlockBackend::KernelBlkback, false),
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
