//! The PASS/FAIL report every scenario writes to, the summary line and exit status that
//! end a run, and the command line: a flag's value and timeouts scaled by
//! `--timeout-scale` (the test bed passes its own scale).

use std::time::Duration;

/// Counts of passed and failed checks; each check prints one line.
pub struct Report {
    pub passed: u32,
    pub failed: u32,
}

impl Report {
    /// Prints `@@HOSTILE PASS|FAIL name: detail` and counts it.
    pub fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        println!(
            "@@HOSTILE {} {name}: {detail}",
            if ok { "PASS" } else { "FAIL" }
        );
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Prints `@@HOSTILE-SUMMARY` and exits with the number of failed checks (at most
    /// 100).
    pub fn finish(&self) -> ! {
        println!(
            "@@HOSTILE-SUMMARY {} passed, {} failed",
            self.passed, self.failed
        );
        std::process::exit(self.failed.min(100) as i32);
    }
}

/// `n` seconds times `--timeout-scale`.
pub fn secs(n: u64) -> Duration {
    static SCALE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        arg("--timeout-scale")
            .and_then(|v| v.parse().ok())
            .filter(|&f: &f64| f > 0.0)
            .unwrap_or(1.0)
    });
    Duration::from_secs_f64(n as f64 * scale)
}

/// The word after the first `k` on the command line, if any.
pub fn arg(k: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == k)
        .and_then(|i| a.get(i + 1))
        .cloned()
}
