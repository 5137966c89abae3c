//! Scenarios on real Xen: PV and PVH domUs whose disks are served by dom0's kernel
//! blkback and whose consoles by xenconsoled. One Xen boot runs every guest step.
//!
//! Ignored by default (minutes of QEMU TCG); `cargo xtask test --suite xen-blk` runs
//! them, or `cargo test -p sluice-testbed --test xen_blk -- --ignored --nocapture`.

use sluice_testbed::{
    run_boot, BlockBackend, Boot, ConsoleBackend, GuestStep, GuestType, Workload,
};

fn workloads() -> Vec<Workload> {
    vec![
        Workload::ConsoleRoundTrip,
        Workload::Pattern { disk: 0 },
        Workload::Ext4 { disk: 1 },
    ]
}

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-blk)"]
fn kernel_blkback_pv_and_pvh() {
    let kernel = [BlockBackend::KernelBlkback, BlockBackend::KernelBlkback];
    let boot = Boot {
        name: "xen-blk-kernel".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps: vec![
            GuestStep::new("pv-kblk", GuestType::Pv, &kernel, &workloads()),
            GuestStep::new("pvh-kblk", GuestType::Pvh, &kernel, &workloads()),
        ],
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    // 3 guest checks + 2 host checks per step.
    assert_eq!(report.passed.len(), 10, "{:?}", report.passed);
}
