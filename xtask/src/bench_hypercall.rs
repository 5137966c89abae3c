//! `cargo xtask bench hypercall`: the test guest's `role=bench` alone on Sluice's
//! hypervisor, then as a PVH domU on real Xen 4.17 (the test bed: same QEMU, same CPU
//! model), alternating; prints each round in docs/bench.md's table and the median ratio.

use crate::hypervisor::{boot, build};
use crate::util::cargo;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The guest's `bench:` lines: (hypercall, cpuid exit) round trips in TSC cycles.
fn bench_figures(log: &str) -> Option<(u64, u64)> {
    let figure = |what: &str| {
        log.lines().find_map(|l| {
            l.split_once(&format!("bench: {what} round trip "))
                .and_then(|(_, r)| r.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        })
    };
    Some((figure("hypercall")?, figure("cpuid exit")?))
}

/// `rounds` rounds. `smoke`: (hypervisor, guest, the Xen console of a smoke boot that
/// already ran the guest on Xen): one Sluice boot, no Xen boot of its own.
pub fn run(rounds: usize, smoke: Option<(&Path, &Path, &str)>) -> Result<()> {
    let built;
    let (hv, guest) = match smoke {
        Some((hv, guest, _)) => (hv, guest),
        None => {
            built = build()?;
            (built.0.as_path(), built.1.as_path())
        }
    };
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let modules = format!("{} name=bench role=bench", guest.display());
        let (status, log) = boot(hv, &modules, &[], "")?;
        let sluice = bench_figures(&log)
            .with_context(|| format!("no bench lines from Sluice (exit {status}):\n{log}"))?;
        let text = match smoke {
            Some((_, _, text)) => text.to_string(),
            None => {
                let out = cargo()
                    .env("SLUICE_TESTGUEST", guest)
                    .args(["test", "-p", "sluice-testbed", "--test", "xen_bench", "--"])
                    .args(["--ignored", "--nocapture", "--exact"])
                    .arg("hypercall_round_trip_on_xen")
                    .output()
                    .context("running the test bed")?;
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                if !out.status.success() {
                    bail!("the Xen run failed:\n{text}");
                }
                text
            }
        };
        let xen =
            bench_figures(&text).with_context(|| format!("no bench lines from Xen:\n{text}"))?;
        eprintln!(
            "round {round}: Sluice hypercall {} / cpuid {} cycles; Xen 4.17 hypercall {} / cpuid {} cycles",
            sluice.0, sluice.1, xen.0, xen.1
        );
        rows.push((sluice, xen));
    }
    if smoke.is_some() {
        eprintln!("hypercall: SMOKE RUN (one round; the Xen figures come from the shared smoke boot): the figures below mean nothing");
    }
    eprintln!("| round | Sluice hypercall | Xen 4.17 hypercall | Sluice / Xen | Sluice CPUID exit | Xen CPUID exit |");
    eprintln!("|---|---|---|---|---|---|");
    for (i, (s, x)) in rows.iter().enumerate() {
        eprintln!(
            "| {} | {} | {} | {:.2} | {} | {} |",
            i + 1,
            s.0,
            x.0,
            s.0 as f64 / x.0 as f64,
            s.1,
            x.1
        );
    }
    let mut ratios: Vec<f64> = rows.iter().map(|(s, x)| s.0 as f64 / x.0 as f64).collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    eprintln!(
        "hypercall round trip, Sluice / Xen 4.17: median {:.2} (rounds {:.2}-{:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(())
}
