//! Disks served by a userspace backend in dom0 (`BlockBackend::Userspace`).
//!
//! `unserved_userspace_disk_refused`: a kernel-blkback guest, then dom0 unloads
//! `xen-blkback` and starts a stand-in userspace backend that answers libxl's InitWait
//! wait and then refuses the disk. Proves the disk line and hotplug path libxl takes for
//! a userspace backend on Xen 4.17, the backend swap inside one boot, and that the
//! harness reports a failed check instead of a pass. It tests the test bed, not Sluice:
//! the opt-in suite `xen-blk` runs it (`xen-userspace` runs only the test below).
//!
//! `sluice_backends_pv_and_pvh`: with `sluice-blkfront` in the guests
//! (`SLUICE_TESTBED_BLKFRONT=sluice`), first `pv-bad-backend`: `sluice-hostile-blkback`
//! serves six disks, five misbehaving (bogus id, unsolicited response, wrong operation,
//! wrong ring, vanished) and one properly; the guest's I/O on each bad one must fail in
//! bounded time with the driver's log line, the good one must pass the pattern check,
//! and blkfront must unload cleanly. Then a PV guest without blkfront whose
//! `sluice-hostile-blkfront` attacks sluice-blkback on disk 0 (the daemon must refuse
//! everything hostile, keep running and idle, and leave the image alone but for one
//! valid write), after which blkfront serves disk 1 of the same daemon; then the
//! xen-blk scenarios with Sluice's `sluice-blkback` (and `sluice-consoleback`, when
//! present) in dom0, plus a blkback killed and restarted under an idle guest. It says
//! SKIPPED and returns while the backends are not in the workspace.

use sluice_testbed::cargo_bin::cargo_binary;
use sluice_testbed::scenario::{guest_blkfront_reloads, standard_steps};
use sluice_testbed::{
    run_boot, BackendMisbehaviour, BlockBackend, Boot, ConsoleBackend, Dom0Daemon, Failure,
    GuestStep, GuestType, Workload,
};

/// A stand-in backend that refuses every disk: it answers libxl's wait for InitWait
/// (`state = 2`, as a real backend does first), and once the hotplug script reported
/// `connected` it closes the backend (`state = 6`), so the frontend gives up at once
/// instead of blocking the guest's `insmod xen-blkfront` for 300 s.
const REFUSING_BACKEND: &str = r#"#!/bin/sh
while :; do
  for d in $(xenstore-list backend/vbd 2>/dev/null); do
    for v in $(xenstore-list backend/vbd/$d 2>/dev/null); do
      p=backend/vbd/$d/$v
      case "$(xenstore-read $p/state 2>/dev/null)" in
        1) xenstore-write $p/state 2 && echo "InitWait $p params=$(xenstore-read $p/params)" ;;
        2) if [ "$(xenstore-read $p/hotplug-status 2>/dev/null)" = connected ]; then
             xenstore-write $p/state 6 && echo "Closed $p"
           fi ;;
      esac
    done
  done
  sleep 0.5
done
"#;

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-blk)"]
fn unserved_userspace_disk_refused() {
    let dir = sluice_testbed::paths::build_dir().join("testbed-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("refusing-backend.sh");
    std::fs::write(&script, REFUSING_BACKEND).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let boot = Boot {
        name: "xen-userspace-unserved".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![Dom0Daemon {
            name: "refusing-backend".into(),
            binary: script,
            args: vec![],
            serves_block: true,
            serves_net: false,
        }],
        steps: vec![
            // Kernel blkback first: dom0 must unload it before the userspace step, or it
            // would take the userspace disk too.
            GuestStep::new(
                "pv-kernel-first",
                GuestType::Pv,
                &[BlockBackend::KernelBlkback],
                &[Workload::Pattern { disk: 0 }],
            ),
            GuestStep::new(
                "pv-unserved",
                GuestType::Pv,
                &[BlockBackend::Userspace],
                &[Workload::Pattern { disk: 0 }],
            ),
        ],
        fio_in_dom0: false,
    };
    let err = sluice_testbed::progress::expecting_failure(|| run_boot(&boot))
        .expect_err("a disk nobody serves must fail the run");
    let msg = format!("{err:#}");
    let Some(Failure::WithLogs { error, logs }) = err.downcast_ref::<Failure>() else {
        panic!("not a run failure: {msg}");
    };
    assert!(
        matches!(error.downcast_ref::<Failure>(), Some(Failure::Check(_))),
        "the guest should have reported a failed check (xl create accepted the disk): {msg}"
    );
    // The run stops at the first failure: reaching this step means the kernel one passed.
    assert!(msg.contains("pv-unserved/pattern-xvda"), "{msg}");
    eprintln!(
        "the unserved disk was refused as expected (detail: {})",
        logs.join("failure.txt").display()
    );
}

#[test]
#[ignore = "boots Xen in QEMU: run with --ignored (cargo xtask test --suite xen-userspace)"]
fn sluice_backends_pv_and_pvh() {
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    if b.block != BlockBackend::Userspace {
        eprintln!("SKIPPED: sluice-blkback is not in the workspace yet");
        return;
    }
    for n in &b.notes {
        eprintln!("{n}");
    }
    let (daemons, console) = (b.daemons, b.console);
    // The hostile frontend first: the standard steps after it then also prove that the
    // daemon it attacked serves new guests.
    let u = BlockBackend::Userspace;
    let mut steps = vec![GuestStep::new(
        "pv-hostile",
        GuestType::Pv,
        &[u.clone(), u.clone()],
        &[
            Workload::HostileFrontend { disk: 0 },
            Workload::Pattern { disk: 1 },
        ],
    )
    .without_blkfront_at_boot()];
    let mut daemons = daemons;
    if guest_blkfront_reloads() {
        // sluice-blkfront in the guests: misbehaving backends, one disk per mode, and a
        // disk served properly by the same daemon that must keep working.
        let bin = cargo_binary("sluice-hostile-blkback", "sluice-hostile-blkback")
            .unwrap_or_else(|e| panic!("{e:#}"));
        daemons.push(Dom0Daemon {
            name: "hostile-blkback".into(),
            binary: bin,
            args: vec![],
            serves_block: true,
            serves_net: false,
        });
        let modes = BackendMisbehaviour::ALL;
        let mut w: Vec<Workload> = modes
            .iter()
            .enumerate()
            .map(|(i, &mode)| Workload::MisbehavingBackend { disk: i + 1, mode })
            .collect();
        w.push(Workload::Pattern { disk: 0 });
        w.push(Workload::UnloadFrontend);
        let disks = vec![u.clone(); modes.len() + 1];
        // First: a failure here is reported without waiting for the other steps.
        steps.insert(
            0,
            GuestStep::new("pv-bad-backend", GuestType::Pv, &disks, &w)
                .with_block_daemon("hostile-blkback")
                .with_blkfront_args(&["io_timeout=10"]),
        );
    }
    steps.extend(standard_steps("sluice", u, true));
    let boot = Boot {
        name: "xen-blk-sluice".into(),
        console,
        daemons,
        steps,
        fio_in_dom0: false,
    };
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
