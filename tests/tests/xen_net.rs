//! Guests' network served by Sluice's `sluice-netback` in dom0 (suite `xen-net`).
//!
//! `stock_netfront_vs_sluice_netback`: a PV and a PVH Debian 6.1 guest, each with one
//! vif (`script=vif-userspace`, on dom0's bridge `xenbr0`) and the stock `xen-netfront`;
//! `xen-netback.ko` is never loaded, so sluice-netback is the only backend. In each
//! guest: a static address, ping dom0 and be pinged by dom0, then 64 MiB of random
//! data over TCP guest → dom0 and 64 MiB dom0 → guest, each receiver's sha256 compared
//! with the sender's ([`Workload::Net`]); then dom0 SIGKILLs sluice-netback and starts
//! it again, and the guest's vif must come back by itself (ping both ways,
//! [`Workload::NetRestartBackend`]).
//!
//! `kernel_netback_reference` (only with `SLUICE_NET_REFERENCE=1`): the same PV step
//! against Linux's `xen-netback` and the stock `vif-bridge` script, for the transfer
//! times (`@@NET` lines) of the same workload; a separate boot, so not a same-boot A/B.

use sluice_testbed::cargo_bin::cargo_binary;
use sluice_testbed::{
    run_boot, Boot, ConsoleBackend, Dom0Daemon, GuestStep, GuestType, NetBackend, Workload,
};

fn net_step(name: &str, t: GuestType) -> GuestStep {
    net_step_with(name, t, NetBackend::Userspace)
}

fn net_step_with(name: &str, t: GuestType, backend: NetBackend) -> GuestStep {
    let mut w = vec![Workload::Net];
    if backend == NetBackend::Userspace {
        w.push(Workload::NetRestartBackend);
    }
    let mut s = GuestStep::new(name, t, &[], &w).with_vif(backend);
    // The 64 MiB files live in the guest's initramfs (RAM).
    s.memory_mib = 384;
    s
}

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-net)"]
fn stock_netfront_vs_sluice_netback() {
    let bin = cargo_binary("sluice-netback", "sluice-netback").unwrap_or_else(|e| panic!("{e:#}"));
    let boot = Boot {
        name: "xen-net".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![Dom0Daemon {
            name: "netback".into(),
            binary: bin,
            args: vec![],
            serves_block: false,
        }],
        steps: vec![
            net_step("pv-net", GuestType::Pv),
            net_step("pvh-net", GuestType::Pvh),
        ],
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{report:?}");
}

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored and SLUICE_NET_REFERENCE=1"]
fn kernel_netback_reference() {
    if std::env::var("SLUICE_NET_REFERENCE").map_or(true, |v| v != "1") {
        eprintln!("SKIPPED: set SLUICE_NET_REFERENCE=1 for the kernel-netback reference boot");
        return;
    }
    let boot = Boot {
        name: "xen-net-kernel".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps: vec![net_step_with(
            "pv-net-kernel",
            GuestType::Pv,
            NetBackend::Kernel,
        )],
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{report:?}");
}
