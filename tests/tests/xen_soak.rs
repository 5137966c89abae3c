//! The soak (`cargo xtask soak [--minutes M] [--guests N]`, not in `cargo xtask test`):
//! N domUs at once (PV, 1 or 2 vCPUs; with `SLUICE_SOAK_PVH=1` PV and PVH alternating),
//! each with its own disk on
//! `sluice-blkback`, run mixed fio jobs with crc32c verification for M minutes
//! ([`Workload::Soak`], guests run together: `sluice_testbed::together`). Passes when
//! every guest's fio exited 0 with every verify passing, the final write + verify
//! worked, the guests' kernel logs are clean, and dom0's check of the daemon passed
//! (running throughout; no warning, error, panic or disconnect in its log; each disk
//! connected once). Prints each guest's figures and the daemon's RSS and fds with all
//! guests soaking, first sample vs last, for docs/bench.md.
//!
//! `SLUICE_SOAK_MINUTES` (default 30), `SLUICE_SOAK_GUESTS` (default 4),
//! `SLUICE_SOAK_MEMORY_MIB` (each guest's memory, default 512, as the bed's other fio guests:
//! with 160 MiB `xl create` fails and with 320 MiB the initramfs does not unpack; fio's
//! libraries make the guests' initramfs 88 MiB).
//!
//! PV only by default: on 2026-12-07 (4 guests, 30 min, quiet host) three of four PVH
//! launches triple-faulted under QEMU TCG (twice before init, once 6 minutes into its
//! fio after an RCU stall) while both PV guests soaked to the end; sluice-blkback serves
//! PV and PVH blkfront through the same protocol, and the PVH guests' disks are proven in
//! `xen-userspace` and `xen-blk-crash`.

use sluice_testbed::soak::start_end;
use sluice_testbed::{
    run_boot, BlockBackend, Boot, ConsoleBackend, GuestStep, GuestType, Workload,
};

fn var(k: &str, default: u32) -> u32 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

#[test]
#[ignore = "boots Xen in QEMU for tens of minutes: run with cargo xtask soak"]
fn soak_guests_at_once_on_sluice_blkback() {
    let minutes = var("SLUICE_SOAK_MINUTES", 30);
    let guests = var("SLUICE_SOAK_GUESTS", 4);
    let memory = var("SLUICE_SOAK_MEMORY_MIB", 512);
    let pvh = std::env::var("SLUICE_SOAK_PVH").is_ok_and(|v| v == "1");
    let b = sluice_testbed::sluice_backends::select().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(b.block, BlockBackend::Userspace, "sluice-blkback is needed");
    let steps: Vec<GuestStep> = (0..guests)
        .map(|i| {
            let t = if pvh && i % 2 == 1 {
                GuestType::Pvh
            } else {
                GuestType::Pv
            };
            let name = format!("soak-{}-{i}", t.xl_type());
            let mut s = GuestStep::new(
                &name,
                t,
                &[BlockBackend::Userspace],
                &[Workload::Soak {
                    disk: 0,
                    seconds: minutes * 60,
                }],
            )
            .with_together("soak");
            s.disks[0].size_mib = 128;
            s.memory_mib = memory;
            // 1, 2, 2, 1, 1, 2, ...: both kinds with both counts.
            s.vcpus = if (i / 2 + i) % 2 == 0 { 1 } else { 2 };
            s
        })
        .collect();
    let boot = Boot {
        name: "xen-soak".into(),
        // xenconsoled logs the consoles of guests run together; the block daemon only.
        console: ConsoleBackend::Xenconsoled,
        daemons: b.daemons.into_iter().filter(|d| d.serves_block).collect(),
        steps: steps.clone(),
        fio_in_dom0: false,
    };
    eprintln!(
        "soak: {guests} guest(s) at once, {minutes} min of fio each, {memory} MiB each, sluice-blkback"
    );
    let report = run_boot(&boot).unwrap_or_else(|e| panic!("{e:#}"));
    for (check, summary) in &report.passed {
        eprintln!("PASS {check}: {summary}");
    }
    println!("\n| guest | type, vCPUs | fio s | randrw-4k IOPS (r+w) | seqwrite-64k MiB/s (write + verify read) | MiB moved | final 8 MiB verify |");
    println!("|---|---|---|---|---|---|---|");
    for s in &steps {
        let job = |n: &str| {
            report
                .soak
                .iter()
                .find(|j| j.step == s.name && j.job == n)
                .cloned()
                .unwrap_or_else(|| panic!("{}: no {n} figures", s.name))
        };
        let (rr, sw, fv) = (job("randrw-4k"), job("seqwrite-64k"), job("final-verify"));
        let secs = rr.seconds.max(1.0);
        println!(
            "| {} | {}, {} | {:.0} | {:.0} | {:.1} | {} | {} |",
            s.name,
            s.guest_type.xl_type(),
            s.vcpus,
            rr.seconds,
            rr.read_iops + rr.write_iops,
            (sw.read_kib + sw.write_kib) as f64 / 1024.0 / secs,
            (rr.read_kib + rr.write_kib + sw.read_kib + sw.write_kib) >> 10,
            if fv.error == 0 { "ok" } else { "FAILED" },
        );
    }
    println!("\n| daemon sample | dom0 uptime s | guests soaking | RSS KiB | fds | threads |");
    println!("|---|---|---|---|---|---|");
    for d in &report.daemon_samples {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} |",
            d.tag, d.uptime, d.soaking, d.rss_kib, d.fds, d.threads
        );
    }
    if let Some((a, b)) = start_end(&report.daemon_samples, guests) {
        println!(
            "\nsluice-blkback with all {guests} guests soaking, {:.0} s apart: RSS {} -> {} KiB ({:+}), fds {} -> {} ({:+}), threads {} -> {}",
            b.uptime - a.uptime,
            a.rss_kib,
            b.rss_kib,
            b.rss_kib as i64 - a.rss_kib as i64,
            a.fds,
            b.fds,
            i64::from(b.fds) - i64::from(a.fds),
            a.threads,
            b.threads
        );
    } else {
        println!("\nno daemon sample had all {guests} guests soaking at once (guests too slow to overlap?)");
    }
    println!(
        "seconds to toolstack {:.0}, whole boot {:.0}",
        report.seconds_to_toolstack, report.seconds_total
    );
    assert_eq!(report.passed.len(), boot.checks(), "{:?}", report.passed);
}
