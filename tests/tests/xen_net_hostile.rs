//! `sluice-netfront.ko` against a misbehaving network backend on real Xen (suite
//! `xen-netfront-hostile`).
//!
//! `misbehaving_netback`: one PV Debian 6.1 guest whose vif is served by
//! `sluice-hostile-netback` (`tests/hostile-netback`) alone, started with the modes in
//! [`NetMisbehaviour::ALL`]'s order, one per connection. For each mode the guest loads
//! `sluice-netfront.ko`, brings eth0 up against the hostile backend and sends packets;
//! the module must log the problem within a bound and fail the device (carrier off), or,
//! for `bad-rx`, drop the packet and count it (as xen-netfront; netfront-core's
//! design), with a clean kernel log; then the vif unbinds and `rmmod` succeeds
//! ([`Workload::NetMisbehavingBackend`]). The next mode's connection comes with the next
//! `insmod`. The module comes from `SLUICE_NETFRONT_KO` (`cargo xtask test --suite
//! xen-netfront-hostile` builds it for the installed Debian kernel and sets it).

use sluice_testbed::cargo_bin::cargo_binary;
use sluice_testbed::{
    run_boot, Boot, ConsoleBackend, Dom0Daemon, GuestStep, GuestType, NetBackend, NetFrontend,
    NetMisbehaviour, Workload,
};
use std::path::PathBuf;

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-netfront-hostile)"]
fn misbehaving_netback() {
    let ko = PathBuf::from(std::env::var("SLUICE_NETFRONT_KO").expect(
        "SLUICE_NETFRONT_KO names sluice-netfront.ko (cargo xtask test --suite xen-netfront-hostile sets it)",
    ));
    let bin = cargo_binary("sluice-hostile-netback", "sluice-hostile-netback")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let modes = NetMisbehaviour::ALL;
    let w: Vec<Workload> = modes
        .iter()
        .map(|&mode| Workload::NetMisbehavingBackend { mode })
        .collect();
    let mut step = GuestStep::new("pv-hostile-netback", GuestType::Pv, &[], &w)
        .with_vif_frontend(NetBackend::Userspace, NetFrontend::Module(ko))
        .with_net_daemon("hostile-netback");
    step.vcpus = 1;
    let boot = Boot {
        name: "xen-netfront-hostile".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![Dom0Daemon {
            name: "hostile-netback".into(),
            binary: bin,
            args: modes.iter().map(|m| m.name().to_string()).collect(),
            serves_block: false,
            serves_net: true,
        }],
        steps: vec![step],
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
