//! Nothing acknowledged is lost: crash consistency of `sluice-blkback` on real Xen 4.17
//! (suite `xen-blk-crash`), with the stock `xen-blkfront` in PV guests.
//!
//! `pv-crash-kill`: four record writers (256 KiB O_DIRECT writes, each followed by an
//! fsync, i.e. a flush request) and fio random writes at depth 8 keep a disk busy while
//! dom0 SIGKILLs `sluice-blkback` and starts it again; the guest carries on (no I/O
//! error, more records acknowledged after the restart) and every acknowledged record
//! reads back intact. `pv-crash-destroy` runs the same writers, printing each
//! acknowledgement on the console, until dom0 `xl destroy`s it after 200 more writes
//! reached its disk; `pv-crash-verify`, a fresh guest on that disk, reads back every
//! record acknowledged before the destroy.

use sluice_testbed::{run_boot, BlockBackend, Boot, GuestStep, GuestType, Workload};

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-blk-crash)"]
fn nothing_acknowledged_is_lost() {
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(b.block, BlockBackend::Userspace, "sluice-blkback is needed");
    let u = BlockBackend::Userspace;
    let mut kill = GuestStep::new(
        "pv-crash-kill",
        GuestType::Pv,
        std::slice::from_ref(&u),
        &[Workload::CrashKill { disk: 0 }],
    );
    let mut destroy = GuestStep::new(
        "pv-crash-destroy",
        GuestType::Pv,
        std::slice::from_ref(&u),
        &[Workload::CrashDestroy { disk: 0 }],
    );
    let mut verify = GuestStep::new(
        "pv-crash-verify",
        GuestType::Pv,
        &[u],
        &[Workload::CrashVerify { disk: 0 }],
    )
    .with_disk_of(0, 1, 0);
    // 4 writers x 96 records x 256 KiB, then 32 MiB for fio; fio and its libraries in
    // the guest's initramfs need more than the default memory.
    for s in [&mut kill, &mut destroy, &mut verify] {
        s.disks[0].size_mib = 128;
        s.memory_mib = 512;
    }
    let boot = Boot {
        name: "xen-blk-crash".into(),
        console: b.console,
        daemons: b.daemons,
        steps: vec![kill, destroy, verify],
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
