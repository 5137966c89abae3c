//! Suites and the demo on real Xen 4.17 in QEMU TCG (the test bed in `tests/`).
//!
//! The scenarios are ordinary `#[ignore]`d cargo tests of the `sluice-testbed` crate;
//! the suites run them with `--ignored`, one at a time (each boots Xen; two at once
//! would starve each other of the host's cores).

use crate::util::{cargo, run};
use anyhow::Result;

fn scenario_test(test: &str) -> Result<()> {
    scenario_tests(test, &[])
}

/// `cargo test -p sluice-testbed --test FILE -- --ignored ... NAMES --exact` (every
/// test of the file when `names` is empty).
fn scenario_tests(test: &str, names: &[&str]) -> Result<()> {
    let mut c = cargo();
    c.args(["test", "-p", "sluice-testbed", "--test", test, "--"])
        .args(["--ignored", "--nocapture", "--test-threads=1"]);
    if !names.is_empty() {
        c.args(names).arg("--exact");
    }
    run(&mut c)
}

/// `xen-blk` (opt-in, the test bed's own reference: no Sluice code): PV and PVH domUs
/// with disks served by dom0's kernel blkback (raw pattern, ext4, console round trip),
/// then the libxl path for a userspace backend with a stand-in that refuses the disk
/// (the harness must report the failed check, not a pass).
pub fn blk() -> Result<()> {
    scenario_test("xen_blk")?;
    scenario_tests("xen_userspace", &["unserved_userspace_disk_refused"])
}

/// `cargo xtask demo`.
pub fn demo() -> Result<()> {
    run(cargo().args([
        "run",
        "-q",
        "-p",
        "sluice-testbed",
        "--bin",
        "sluice-testbed",
        "--",
        "demo",
    ]))
}

/// `xen-userspace`: disks and consoles served by Sluice's backends in dom0 (PV + PVH,
/// the checks of `xen-blk` and more, a hostile blkfront in a domU). The
/// refusing stand-in of the same file runs in the opt-in `xen-blk` (it tests the test
/// bed, not Sluice).
pub fn userspace() -> Result<()> {
    scenario_tests("xen_userspace", &["sluice_backends_pv_and_pvh"])
}

/// `xen-blk-crash`: crash consistency of sluice-blkback (killed mid-write, a guest
/// destroyed mid-write): every write acknowledged before a completed flush reads back.
pub fn blk_crash() -> Result<()> {
    scenario_test("xen_blk_crash")
}

/// `xen-passthrough` (opt-in): QEMU's e1000e passed through by Xen 4.17 (VT-d in QEMU)
/// to a PV guest (`xen-pcifront`): DHCP, 16 MiB from the host, sha256.
pub fn passthrough() -> Result<()> {
    scenario_test("xen_passthrough")
}

/// `xen-net`: a PV guest's vif served by `sluice-netback` (stock xen-netfront) and a
/// hostile netfront (the PVH cell is the opt-in `xen-net-pvh`). Builds the module for
/// the installed Debian kernel (the guests' kernel) first.
pub fn net() -> Result<()> {
    net_tests(NetTests::Stock)
}

/// `xen-net-pvh` (opt-in): the PVH cell of `xen-net` (stock xen-netfront against
/// `sluice-netback`), a boot of its own.
pub fn net_pvh() -> Result<()> {
    net_tests(NetTests::StockPvh)
}

/// `xen-net-sluice-pair` (opt-in): `sluice-netfront.ko` against `sluice-netback`.
pub fn net_sluice_pair() -> Result<()> {
    net_tests(NetTests::SluicePair)
}

/// `xen-netfront-kernel` (opt-in): `sluice-netfront.ko` against the kernel's netback.
pub fn netfront_kernel() -> Result<()> {
    net_tests(NetTests::FrontendKernel)
}

/// `xen-netfront-hostile`: `sluice-netfront.ko` against `sluice-hostile-netback`
/// (`tests/tests/xen_net_hostile.rs`), one PV guest, one connection per misbehaviour.
pub fn netfront_hostile() -> Result<()> {
    let mut c = netfront_test("xen_net_hostile")?;
    run(c.args(["--ignored", "--nocapture", "--test-threads=1"]))
}

/// `cargo test -p sluice-testbed --test FILE --` with `SLUICE_NETFRONT_KO` naming the
/// module built for the guests' kernel.
fn netfront_test(file: &str) -> Result<std::process::Command> {
    let ko = crate::linux_modules::netfront_ko()?;
    let mut c = cargo();
    c.env("SLUICE_NETFRONT_KO", ko)
        .args(["test", "-p", "sluice-testbed", "--test", file, "--"]);
    Ok(c)
}

/// Which boots of `tests/tests/xen_net.rs` a suite runs.
#[derive(PartialEq)]
enum NetTests {
    Stock,
    StockPvh,
    SluicePair,
    FrontendKernel,
}

fn net_tests(which: NetTests) -> Result<()> {
    let mut c = netfront_test("xen_net")?;
    match which {
        NetTests::SluicePair => {
            c.env("SLUICE_NET_SLUICE_PAIR", "1")
                .args(["sluice_netfront_vs_sluice_netback", "--exact"]);
        }
        NetTests::FrontendKernel => {
            c.args(["sluice_netfront_vs_kernel_netback", "--exact"]);
        }
        NetTests::Stock => {
            c.args(["stock_netfront_vs_sluice_netback", "--exact"]);
        }
        NetTests::StockPvh => {
            c.args(["stock_netfront_pvh_vs_sluice_netback", "--exact"]);
        }
    }
    run(c.args(["--ignored", "--nocapture", "--test-threads=1"]))
}
