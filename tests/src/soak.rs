//! The soak ([`Workload::Soak`], `cargo xtask soak`): mixed fio jobs with crc32c
//! verification in guests run together ([`crate::together`]), the figures each guest
//! reports, and dom0's samples of the block daemon (RSS, fds, threads) meanwhile.

use crate::scenario::Workload;

/// The guest's side: `check_soak DEV SECONDS SLACK`, appended to the guests'
/// `/lib/sluice-checks.sh`.
///
/// fio on the raw disk (libaio, O_DIRECT) with `--verify=crc32c --verify_fatal=1` and a
/// verify backlog (every 32 blocks written are read back and checked while the job
/// runs, so a long time-based run verifies throughout; with a backlog of 1024, a 2-min
/// run under TCG at load 10 wrote too little to verify anything before the end): 4 KiB
/// random reads and writes at depth 16 on the first half of the disk, 64 KiB sequential writes at depth 4 on the
/// second half, both for SECONDS; then 8 MiB written and verified (the backend still
/// serves), and the kernel log must show no I/O error, warning, oops, hung task or
/// blkfront message (soft lockups and RCU stalls, vCPUs starved by a loaded TCG host, are
/// printed as `@@SOAK-KLOG`, not failed). Each fio run
/// is bounded (SECONDS + SLACK, SLACK): a hung disk fails the check instead of the
/// run's timer. `@@SOAK-BEGIN` / `@@SOAK-END` bracket the soak for dom0's samples; one
/// `@@SOAK JOB ...` line per job (fio's terse v3 fields: 5 error, 6 read KiB, 8 read
/// IOPS, 47 write KiB, 49 write IOPS).
pub const GUEST_CHECK_SOAK: &str = r#"
soak_lines() {
  awk -F';' -v s="$2" '$1 == "3" { printf "@@SOAK %s err=%s read_kib=%s read_iops=%s write_kib=%s write_iops=%s secs=%s\n", $3, $5, $6, $8, $47, $49, s }' "$1"
}
check_soak() {
  dev=$1; t=$2; slack=$3
  wait_dev "$dev" 60 || return 1
  common="--filename=$dev --ioengine=libaio --direct=1 --randrepeat=0 --verify=crc32c --verify_fatal=1 --output-format=terse --terse-version=3"
  dmesg -c > /dev/null
  t0=$(cut -d' ' -f1 /proc/uptime)
  echo "@@SOAK-BEGIN $t s"
  bounded $((t + slack)) x fio $common --time_based --runtime=$t --verify_backlog=32 \
    --name=randrw-4k --rw=randrw --bs=4k --iodepth=16 --offset=0 --size=50% \
    --name=seqwrite-64k --rw=write --bs=64k --iodepth=4 --offset=50% --size=50% \
    > /tmp/soak.out 2>&1
  rc=$?
  t1=$(cut -d' ' -f1 /proc/uptime)
  secs=$(awk "BEGIN { print $t1 - $t0 }")
  echo "@@SOAK-END rc=$rc secs=$secs"
  soak_lines /tmp/soak.out "$secs"
  [ $rc = 0 ] || { grep -v '^3;' /tmp/soak.out | tail -n 20; echo "soak fio exited with $rc (124: still running after $((t + slack)) s)"; return 1; }
  bounded $slack x fio $common --name=final-verify --rw=write --bs=64k --iodepth=8 --offset=0 --size=8M --do_verify=1 > /tmp/soak-final.out 2>&1
  rc=$?
  soak_lines /tmp/soak-final.out 0
  [ $rc = 0 ] || { grep -v '^3;' /tmp/soak-final.out | tail -n 20; echo "final write + verify exited with $rc"; return 1; }
  # vCPUs starved by a loaded TCG host: reported, not a failure of the disk path.
  dmesg | grep -E 'soft lockup|rcu.*stall' | head -n 5 | sed 's/^/@@SOAK-KLOG /'
  bad=$(dmesg | grep -v -E 'soft lockup|rcu.*stall' | grep -iE 'I/O error|blk_update_request|WARNING|BUG|Oops|call trace|hung task|blocked for more than|blkfront' | head -n 10)
  [ -z "$bad" ] || { echo "kernel log: $bad"; return 1; }
  echo "@@SUMMARY $id: fio ${secs} s, 4k randrw QD16 + 64k seq write, crc32c verified throughout; then 8 MiB written and verified"
}
"#;

/// Seconds each of the guest's bounded fio runs may take beyond its runtime.
pub const SOAK_SLACK_SECS: u64 = 300;

/// The longest [`Workload::Soak`] of `workloads`, in seconds (0: none).
pub fn soak_seconds<'a>(workloads: impl IntoIterator<Item = &'a Workload>) -> u64 {
    workloads
        .into_iter()
        .filter_map(|w| match w {
            Workload::Soak { seconds, .. } => Some(u64::from(*seconds)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// One fio job of a guest's soak (`@@SOAK` line).
#[derive(Debug, Clone, PartialEq)]
pub struct SoakJob {
    pub step: String,
    /// `randrw-4k`, `seqwrite-64k` or `final-verify`.
    pub job: String,
    /// fio's error number (0: none).
    pub error: u32,
    pub read_kib: u64,
    pub write_kib: u64,
    pub read_iops: f64,
    pub write_iops: f64,
    /// The soak's seconds as the guest measured them (0 for `final-verify`).
    pub seconds: f64,
}

impl SoakJob {
    /// Parses `@@SOAK JOB err=E read_kib=.. read_iops=.. write_kib=.. write_iops=.. secs=..`.
    pub fn parse(step: &str, line: &str) -> Option<Self> {
        let f: Vec<&str> = line
            .trim()
            .strip_prefix("@@SOAK ")?
            .split_whitespace()
            .collect();
        let field = |k: &str| f.iter().find_map(|x| x.strip_prefix(k));
        Some(SoakJob {
            step: step.into(),
            job: f.first()?.to_string(),
            error: field("err=")?.parse().ok()?,
            read_kib: field("read_kib=")?.parse().ok()?,
            write_kib: field("write_kib=")?.parse().ok()?,
            read_iops: field("read_iops=")?.parse().ok()?,
            write_iops: field("write_iops=")?.parse().ok()?,
            seconds: field("secs=")?.parse().ok()?,
        })
    }

    /// The job's block size in KiB (from its name: `-4k`, `-64k`; 64 otherwise).
    pub fn block_kib(&self) -> u64 {
        if self.job.ends_with("-4k") {
            4
        } else {
            64
        }
    }

    /// Requests completed (reads include verification reads).
    pub fn ios(&self) -> u64 {
        (self.read_kib + self.write_kib) / self.block_kib()
    }
}

/// dom0's sample of the block daemon during a group (`@@GROUP-SAMPLE` line).
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSample {
    /// `idle` (before the guests), `running` (every 30 s), `gone` (after them).
    pub tag: String,
    /// dom0's uptime.
    pub uptime: f64,
    /// Guests inside their soak (`@@SOAK-BEGIN` logged, `@@SOAK-END` not yet).
    pub soaking: u32,
    pub rss_kib: u64,
    pub fds: u32,
    pub threads: u32,
}

impl DaemonSample {
    /// Parses `@@GROUP-SAMPLE TAG t=.. soaking=.. rss_kib=.. fds=.. threads=..`.
    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line
            .trim()
            .strip_prefix("@@GROUP-SAMPLE ")?
            .split_whitespace()
            .collect();
        let field = |k: &str| f.iter().find_map(|x| x.strip_prefix(k));
        Some(DaemonSample {
            tag: f.first()?.to_string(),
            uptime: field("t=")?.parse().ok()?,
            soaking: field("soaking=")?.parse().ok()?,
            rss_kib: field("rss_kib=")?.parse().ok()?,
            fds: field("fds=")?.parse().ok()?,
            threads: field("threads=")?.parse().ok()?,
        })
    }
}

/// The samples that compare like with like: the first and the last taken while all
/// `guests` were inside their soak.
pub fn start_end(samples: &[DaemonSample], guests: u32) -> Option<(&DaemonSample, &DaemonSample)> {
    let mut all = samples.iter().filter(|s| s.soaking == guests);
    let first = all.next()?;
    Some((first, all.next_back().unwrap_or(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_lines_parse() {
        let j = SoakJob::parse(
            "soak-pv-1",
            "  @@SOAK randrw-4k err=0 read_kib=405632 read_iops=20269 write_kib=203948 write_iops=11110 secs=61.5\r",
        )
        .expect("parses");
        assert_eq!(j.job, "randrw-4k");
        assert_eq!((j.read_kib, j.write_kib, j.error), (405632, 203948, 0));
        assert_eq!(j.ios(), (405632 + 203948) / 4);
        assert_eq!(j.seconds, 61.5);
        let s = SoakJob::parse(
            "x",
            "@@SOAK seqwrite-64k err=84 read_kib=64 read_iops=0 write_kib=128 write_iops=3 secs=0",
        )
        .unwrap();
        assert_eq!((s.error, s.ios()), (84, 3));
        // A line cut short by other console output is not a sample.
        assert!(SoakJob::parse("x", "@@SOAK randrw-4k err=0 read_kib=1").is_none());
    }

    #[test]
    fn daemon_samples_compare_full_load_only() {
        let lines = [
            "@@GROUP-SAMPLE idle t=10.5 soaking=0 rss_kib=5000 fds=9 threads=2",
            "@@GROUP-SAMPLE running t=40 soaking=2 rss_kib=6000 fds=20 threads=4",
            "@@GROUP-SAMPLE running t=70 soaking=4 rss_kib=7000 fds=30 threads=6",
            "@@GROUP-SAMPLE running t=100 soaking=4 rss_kib=7100 fds=30 threads=6",
            "@@GROUP-SAMPLE running t=130 soaking=3 rss_kib=7200 fds=30 threads=6",
            "@@GROUP-SAMPLE gone t=160 soaking=0 rss_kib=5100 fds=9 threads=2",
        ];
        let s: Vec<DaemonSample> = lines
            .iter()
            .filter_map(|l| DaemonSample::parse(l))
            .collect();
        assert_eq!(s.len(), 6);
        let (a, b) = start_end(&s, 4).expect("full-load samples");
        assert_eq!((a.uptime, b.uptime), (70.0, 100.0));
        assert!(start_end(&s, 5).is_none());
        assert!(DaemonSample::parse("@@GROUP-SAMPLE idle t=1 none").is_none());
    }

    #[test]
    fn soak_seconds_is_the_longest() {
        let w = [
            Workload::Soak {
                disk: 0,
                seconds: 60,
            },
            Workload::Pattern { disk: 1 },
            Workload::Soak {
                disk: 2,
                seconds: 120,
            },
        ];
        assert_eq!(soak_seconds(&w), 120);
        assert_eq!(soak_seconds(&w[1..2]), 0);
    }
}
