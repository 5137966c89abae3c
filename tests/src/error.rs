//! The ways a test-bed run fails. Every variant is a failure: a run passes only when
//! every check reported PASS and every host-side verification agreed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The machinery did not work (QEMU, Xen, dom0 tools, a missing marker).
    #[error("infrastructure failure: {0}")]
    Infrastructure(String),
    /// A process crashed or the kernel reported a fatal error on the console.
    #[error("crash on the serial console (infrastructure failure): {0}")]
    Crash(String),
    /// A pattern did not appear on the console in time.
    #[error("timed out after {secs} s waiting for /{pattern}/ ({context}); the console's last lines since the previous match:\n{tail}")]
    Timeout {
        pattern: String,
        secs: u64,
        context: String,
        /// The end of what the console printed after the cursor (CI keeps only the
        /// test's output, not the logs: this is what tells a failure's cause there).
        tail: String,
    },
    /// QEMU exited while a pattern was still awaited.
    #[error("QEMU exited while waiting for /{pattern}/ ({context})")]
    QemuExited { pattern: String, context: String },
    /// The system under test produced a wrong result.
    #[error("check failed: {0}")]
    Check(String),
    /// A run failed; its logs were kept.
    #[error("{error:#}\n    logs kept in {}", logs.display())]
    WithLogs {
        error: Box<anyhow::Error>,
        logs: PathBuf,
    },
}
