//! `cargo xtask fuzz --minutes N`: every cargo-fuzz target in `fuzz/` for an equal share
//! of N minutes, each seeded from the corpus kept in the repository
//! (`fuzz/seeds/<target>/`) and writing what it finds to the scratch corpus
//! (`fuzz/corpus/<target>/`, ignored by git); `--merge` then folds the inputs that add
//! coverage into `fuzz/seeds/`. Prints one line per target (executions, coverage,
//! crashes) and the total, stamped with the date and commit, for docs/fuzz.md.

use crate::abi_suites::{fuzz_targets, nightly_cargo};
use crate::util::root;
use anyhow::{bail, Context, Result};
use std::process::Stdio;

/// libFuzzer's final statistic `name` (`-print_final_stats=1`) in `log`.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("stat::{name}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// One target's result: executions, coverage edges, whether it ended without a crash.
struct Row {
    runs: u64,
    edges: String,
    ok: bool,
}

/// Runs `target` for `seconds`, seeded from its kept corpus; `merge`: then folds what it
/// found into the seeds.
fn run_target(fuzz: &std::path::Path, t: &str, seconds: u64, merge: bool) -> Result<Row> {
    let seeds = fuzz.join("seeds").join(t);
    let scratch = fuzz.join("corpus").join(t);
    std::fs::create_dir_all(&seeds)?;
    std::fs::create_dir_all(&scratch)?;
    eprintln!("==> fuzz {t}: {seconds} s, seeds {}", seeds.display());
    let out = nightly_cargo()
        .args(["fuzz", "run", t])
        .arg(&scratch)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cargo +nightly fuzz run {t}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let runs = stat(&log, "number_of_executed_units").unwrap_or(0);
    let edges = log
        .lines()
        .rev()
        .find_map(|l| l.split("cov: ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let ok = out.status.success();
    // The whole log is kept: a sanitizer's report (a leak's allocation stack, say) is
    // often longer than the tail printed here.
    let logs = fuzz.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{t}.log"));
    std::fs::write(&log_path, log.as_bytes())?;
    if !ok {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        eprintln!("whole log of {t}: {}", log_path.display());
    }
    if merge && ok {
        let status = nightly_cargo()
            .args(["fuzz", "run", t])
            .arg(&seeds)
            .arg(&scratch)
            .args(["--", "-merge=1"])
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("merging the corpus of {t} failed");
        }
    }
    Ok(Row { runs, edges, ok })
}

/// Runs every target for an equal share of `minutes` of wall clock, `jobs` targets at
/// once (one libFuzzer process each, so `jobs` cores); `merge`: fold new coverage into
/// the seeds.
pub fn run(minutes: f64, jobs: usize, merge: bool) -> Result<()> {
    let targets = fuzz_targets()?;
    let jobs = jobs.clamp(1, targets.len().max(1));
    let seconds = ((minutes * 60.0 * jobs as f64) / targets.len() as f64).max(1.0) as u64;
    let fuzz = root().join("fuzz");
    // The commit whose code is built and fuzzed (HEAD may move during a long run).
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // Build once before the workers start, so they do not queue on cargo's lock.
    let status = nightly_cargo()
        .args(["fuzz", "build"])
        .status()
        .context("cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("cargo +nightly fuzz build failed");
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<Row>>>> =
        std::sync::Mutex::new(targets.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(t) = targets.get(i) else { break };
                let r = run_target(&fuzz, t, seconds, merge);
                results.lock().expect("no worker panics holding it")[i] = Some(r);
            });
        }
    });
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let results = results.into_inner().expect("workers joined");
    for (t, r) in targets.iter().zip(results) {
        let row = r.context("every target ran")??;
        if !row.ok {
            failed.push(t.clone());
        }
        rows.push((t.clone(), row.runs, row.edges, row.ok));
    }
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let load = load.join(" ");
    println!(
        "\nfuzz run {date}, commit {commit}, {seconds} s per target, {jobs} at once, load {load}"
    );
    println!("| target | executions | coverage (cov) | result |");
    println!("|---|---:|---:|---|");
    let mut total = 0u64;
    for (t, runs, edges, ok) in &rows {
        total += runs;
        println!(
            "| `{t}` | {runs} | {edges} | {} |",
            if *ok { "0 crashes" } else { "FAILED" }
        );
    }
    println!("| total | {total} | | |");
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs in fuzz/artifacts/<target>/)",
            failed.join(", ")
        );
    }
    Ok(())
}
