//! What a boot reports: [`BootReport`] with its timed reads ([`ReadSample`]) and fio
//! jobs ([`FioSample`], parsed from the guests' `@@FIO` lines).

use crate::scenario::BlockBackend;

/// One timed sequential read of [`Workload::SeqRead`].
#[derive(Debug, Clone)]
pub struct ReadSample {
    pub step: String,
    pub vdev: String,
    pub backend: BlockBackend,
    pub mib: u32,
    /// Guest-measured (`/proc/uptime`, 10 ms resolution).
    pub seconds: f64,
}

impl ReadSample {
    pub fn mib_per_s(&self) -> f64 {
        self.mib as f64 / self.seconds.max(0.01)
    }
}

/// One fio job's result ([`Workload::Fio`]).
#[derive(Debug, Clone)]
pub struct FioSample {
    /// The guest step, or `dom0` for the ceiling run in dom0.
    pub step: String,
    /// Who served the disk (`None`: dom0 itself, no backend).
    pub backend: Option<BlockBackend>,
    /// `seqwrite-1m`, `randread-4k`, `randwrite-4k`, `seqread-1m`.
    pub job: String,
    pub iops: f64,
    pub kib_per_s: f64,
}

impl FioSample {
    /// Parses `@@FIO JOB read_kibs=.. read_iops=.. write_kibs=.. write_iops=..`; the
    /// figures are the job's direction (reads for read jobs, writes for write jobs).
    pub fn parse(step: &str, backend: Option<BlockBackend>, line: &str) -> Option<Self> {
        let f: Vec<&str> = line
            .trim()
            .strip_prefix("@@FIO ")?
            .split_whitespace()
            .collect();
        let field = |k: &str| -> Option<f64> {
            f.iter()
                .find_map(|x| x.strip_prefix(k))
                .and_then(|v| v.parse().ok())
        };
        let job = f.first()?.to_string();
        let dir = if job.contains("write") {
            "write"
        } else {
            "read"
        };
        Some(FioSample {
            step: step.into(),
            backend,
            iops: field(&format!("{dir}_iops="))?,
            kib_per_s: field(&format!("{dir}_kibs="))?,
            job,
        })
    }
}

/// What one boot produced.
#[derive(Debug, Default)]
pub struct BootReport {
    /// `step/check` -> the guest's summary line (when it printed one).
    pub passed: Vec<(String, String)>,
    pub seconds_to_toolstack: f64,
    pub seconds_total: f64,
    /// Per step: seconds from `xl create` to the guest's poweroff.
    pub step_seconds: Vec<(String, f64)>,
    /// The "Support for PV VMs" line of `xl dmesg`.
    pub xen_pv_line: String,
    /// Every timed read, in the order they ran.
    pub reads: Vec<ReadSample>,
    /// Every fio job, in the order they ran (guests, then dom0's ceiling).
    pub fio: Vec<FioSample>,
    /// Every iperf3 run ([`Workload::NetPerf`]), in the order they ran.
    pub net_perf: Vec<crate::net::NetPerfSample>,
    /// Per custom-kernel step: its console output.
    pub consoles: Vec<(String, String)>,
    /// Every soak job ([`Workload::Soak`]), per guest.
    pub soak: Vec<crate::soak::SoakJob>,
    /// dom0's samples of the block daemon during groups ([`crate::together`]).
    pub daemon_samples: Vec<crate::soak::DaemonSample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_lines_parse_in_the_job_direction() {
        let r = FioSample::parse(
            "a0",
            Some(BlockBackend::KernelBlkback),
            "@@FIO randread-4k read_kibs=900 read_iops=225 write_kibs=0 write_iops=0",
        )
        .unwrap();
        assert_eq!(
            (r.job.as_str(), r.iops, r.kib_per_s),
            ("randread-4k", 225.0, 900.0)
        );
        let w = FioSample::parse(
            "dom0",
            None,
            "@@FIO seqwrite-1m read_kibs=0 read_iops=0 write_kibs=2048 write_iops=2",
        )
        .unwrap();
        assert_eq!((w.iops, w.kib_per_s), (2.0, 2048.0));
        assert!(FioSample::parse("x", None, "@@FIO randread-4k read_kibs=x").is_none());
        assert!(FioSample::parse("x", None, "@@READ xvda").is_none());
    }
}
