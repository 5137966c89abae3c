//! The PASS/FAIL report every scenario writes to, and timeouts scaled by
//! `--timeout-scale`.

use std::time::Duration;

pub(crate) struct Report {
    pub(crate) passed: u32,
    pub(crate) failed: u32,
}

impl Report {
    pub(crate) fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
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
}

/// `n` seconds times `--timeout-scale` (the test bed passes its own scale).
pub(crate) fn secs(n: u64) -> Duration {
    static SCALE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        let a: Vec<String> = std::env::args().collect();
        a.iter()
            .position(|x| x == "--timeout-scale")
            .and_then(|i| a.get(i + 1))
            .and_then(|v| v.parse().ok())
            .filter(|&f: &f64| f > 0.0)
            .unwrap_or(1.0)
    });
    Duration::from_secs_f64(n as f64 * scale)
}
