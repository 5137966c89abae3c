//! `sluice-netfront.ko` on real Xen: a PV and a PVH domU (2 vCPUs) with one vif on
//! dom0's kernel netback; ping both ways, 64 MiB over TCP each way with sha256
//! compared, MTU 9000, unload + reload with the link idle, a clean kernel log
//! (`sluice_testbed::net`).
//!
//! Ignored by default and not yet a suite (not green yet: frontends/linux/README.md). By
//! hand: `cargo xtask test --suite linux-modules --no-static` builds the module for the
//! host kernel (which the guests boot), then
//! `SLUICE_NETFRONT_KO=$PWD/build/linux-modules/sluice-netfront/sluice-netfront.ko
//! cargo test -p sluice-testbed --test xen_netfront -- --ignored --nocapture`.

use sluice_testbed::{run_boot, Boot, ConsoleBackend, GuestStep, GuestType, Workload};
use std::path::PathBuf;

#[test]
#[ignore = "boots Xen in QEMU; not yet green: run by hand, see the module doc"]
fn sluice_netfront_against_kernel_netback_pv_and_pvh() {
    let ko = PathBuf::from(
        std::env::var("SLUICE_NETFRONT_KO")
            .expect("SLUICE_NETFRONT_KO names sluice-netfront.ko (see the module doc)"),
    );
    // PVH: `SLUICE_NETFRONT_PVH=1` adds the PVH step (not yet run: a run of both does
    // not fit the time the step watchdog gives under a loaded host).
    let mut kinds = vec![("pv-net", GuestType::Pv)];
    if std::env::var_os("SLUICE_NETFRONT_PVH").is_some() {
        kinds.push(("pvh-net", GuestType::Pvh));
    }
    let steps = kinds
        .into_iter()
        .map(|(name, t)| GuestStep::new(name, t, &[], &[Workload::Network]).with_vif(ko.clone()))
        .collect();
    let boot = Boot {
        name: "xen-netfront".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps,
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
