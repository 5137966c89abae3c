//! `xen-console`: secondary consoles on real Xen 4.17. dom0 runs sluice-consoleback
//! (console 0 and the secondary ones); each guest (PV, PVH) gets `device/console/1` from
//! `sluice-console-add` while it runs, moves it from the kernel's hvc_xen to
//! `sluice-consfront.ko` (built by `cargo xtask test --suite linux-modules`), and a line
//! dom0 types into the console's pty comes back as its sha256 from `/dev/sluicecons1`.
//! The primary console's round trip runs in the same guests.

use sluice_testbed::sluice_backends::select;
use sluice_testbed::{run_boot, Boot, ConsoleBackend, GuestStep, GuestType, Workload};

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-console)"]
fn secondary_console_round_trip_pv_and_pvh() {
    let b = select().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        b.console,
        ConsoleBackend::Userspace,
        "sluice-consoleback serves the secondary consoles"
    );
    let daemons = b
        .daemons
        .into_iter()
        .filter(|d| d.name == "sluice-consoleback")
        .collect();
    let w = [Workload::ConsoleRoundTrip, Workload::SecondaryConsole];
    let boot = Boot {
        name: "xen-console".into(),
        console: ConsoleBackend::Userspace,
        daemons,
        steps: vec![
            GuestStep::new("pv-consfront", GuestType::Pv, &[], &w),
            GuestStep::new("pvh-consfront", GuestType::Pvh, &[], &w),
        ],
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
