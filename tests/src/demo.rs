//! `cargo xtask demo`: real Xen in QEMU, a Debian domU formatting its PV disk, writing
//! files, re-reading them after a remount, and a short summary.

use crate::progress::note;
use crate::run::{run_boot_with, RunOptions};
use crate::scenario::{Boot, GuestStep, GuestType, Workload};
use anyhow::Result;

pub fn run() -> Result<()> {
    note("Sluice demo: Xen 4.17 + Debian dom0 in QEMU TCG (no KVM: expect 1-4 minutes)");
    // SLUICE_DEMO_BACKENDS=stock runs the stock backends even when Sluice's exist.
    let b = if std::env::var("SLUICE_DEMO_BACKENDS").as_deref() == Ok("stock") {
        crate::sluice_backends::stock("SLUICE_DEMO_BACKENDS=stock")
    } else {
        crate::sluice_backends::select()?
    };
    for n in &b.notes {
        note(n);
    }
    let boot = Boot {
        name: "demo".into(),
        console: b.console.clone(),
        daemons: b.daemons.clone(),
        steps: vec![GuestStep::new(
            "demo-pv",
            GuestType::Pv,
            std::slice::from_ref(&b.block),
            &[Workload::ConsoleRoundTrip, Workload::Ext4 { disk: 0 }],
        )],
        fio_in_dom0: false,
    };
    let echo = std::env::var_os("SLUICE_DEMO_CONSOLE").is_some();
    let r = run_boot_with(&boot, RunOptions { echo_console: echo })?;
    println!("\nSluice demo summary");
    for n in &b.notes {
        println!("  {n}");
    }
    println!("  Xen: {}", r.xen_pv_line);
    println!("  Xen + dom0 to toolstack: {:.0} s", r.seconds_to_toolstack);
    for (s, secs) in &r.step_seconds {
        println!("  guest {s}: {secs:.0} s from xl create to poweroff");
    }
    for (check, summary) in &r.passed {
        println!("  PASS {check}: {summary}");
    }
    println!("  total {:.0} s", r.seconds_total);
    Ok(())
}
