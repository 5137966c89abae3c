//! Guest steps run at once ([`GuestStep::with_together`]): the steps of a group follow
//! each other in [`Boot::steps`]; dom0 creates all their guests without a console
//! (`xl create`; xenconsoled logs each console to `/var/log/xen/console/`), samples the
//! block daemon (RSS, fds, threads) before, every 30 s and after, waits for every guest
//! to power off (bounded: the rest are destroyed at the limit), checks the daemon's log
//! and prints each guest's console log; the harness then judges each guest's checks as
//! for a step of its own, plus one check of dom0's: the daemon ran throughout and
//! logged no warning, error, panic or disconnect, each disk connected once.
//!
//! Flakes handled as for single steps (`run/drive.rs`): a guest whose `xl create` failed
//! because libxl timed out a hotplug script is created again (twice at most), and so is
//! a guest Xen reports triple-faulted before its init ran.

use crate::error::Failure;
use crate::images::step_daemons;
use crate::progress::note;
use crate::run::{judge_workloads, limit, start_step, BootReport, STEP_LIMIT_SECS};
use crate::scenario::{BlockBackend, Boot, ConsoleBackend, GuestStep, Workload};
use crate::serial::Machine;
use crate::soak::{soak_seconds, DaemonSample, SoakJob, SOAK_SLACK_SECS};
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::path::Path;

/// Every group: its name and its steps' indices in [`Boot::steps`].
pub fn groups(boot: &Boot) -> Vec<(String, Range<usize>)> {
    let mut out: Vec<(String, Range<usize>)> = vec![];
    for (i, s) in boot.steps.iter().enumerate() {
        let Some(g) = &s.together else { continue };
        match out.last_mut() {
            Some((name, r)) if name == g && r.end == i => r.end = i + 1,
            _ => out.push((g.clone(), i..i + 1)),
        }
    }
    out
}

/// The group step `i` starts (`None`: it is alone, or not its group's first).
pub fn group_at(boot: &Boot, i: usize) -> Option<(String, Range<usize>)> {
    groups(boot).into_iter().find(|(_, r)| r.start == i)
}

/// Workloads that need neither dom0 actions nor console input.
fn runs_unattended(w: &Workload) -> bool {
    matches!(
        w,
        Workload::Pattern { .. }
            | Workload::Ext4 { .. }
            | Workload::Fio { .. }
            | Workload::Soak { .. }
            | Workload::SeqRead { .. }
            | Workload::SectorSize { .. }
            | Workload::ReadOnly { .. }
    )
}

/// The rules for groups; a [`Workload::Soak`] only in a group.
pub fn validate(boot: &Boot) -> Result<()> {
    let gs = groups(boot);
    let mut seen = std::collections::HashSet::new();
    for (g, r) in &gs {
        if !seen.insert(g) {
            bail!("group {g}: its steps must follow each other in Boot::steps");
        }
        if boot.steps.iter().any(|s| &s.name == g) || g.is_empty() {
            bail!("group {g}: a non-empty name no step has");
        }
        if boot.console != ConsoleBackend::Xenconsoled {
            bail!("group {g}: guests run together need xenconsoled (it logs their consoles)");
        }
        let steps = &boot.steps[r.clone()];
        let first = &steps[0];
        for s in steps {
            if s.kernel.is_some() || s.vif.is_some() || s.passed_nic.is_some() {
                bail!("step {}: a guest run together has disks only (no custom kernel, vif or passed NIC)", s.name);
            }
            if !s.blkfront_at_boot {
                bail!(
                    "step {}: a guest run together loads its blkfront at boot",
                    s.name
                );
            }
            if let Some(w) = s.workloads.iter().find(|w| !runs_unattended(w)) {
                bail!(
                    "step {}: {} needs dom0 actions or console input: not in a group",
                    s.name,
                    w.id()
                );
            }
            if s.block_backend() != first.block_backend() || s.block_daemon != first.block_daemon {
                bail!("group {g}: every step is served by the same block backend");
            }
        }
    }
    for s in boot.steps.iter().filter(|s| s.together.is_none()) {
        if s.workloads
            .iter()
            .any(|w| matches!(w, Workload::Soak { .. }))
        {
            bail!(
                "step {}: a soak runs in guests run together (GuestStep::with_together)",
                s.name
            );
        }
    }
    Ok(())
}

/// Memory QEMU gives beyond the usual, so that a group's guests fit beside dom0: the
/// largest group's guest memory (MiB).
pub fn extra_memory_mib(boot: &Boot) -> u32 {
    groups(boot)
        .into_iter()
        .map(|(_, r)| boot.steps[r].iter().map(|s| s.memory_mib).sum())
        .max()
        .unwrap_or(0)
}

/// Seconds a group may take from its first `xl create` to its last guest gone.
pub fn group_limit_secs(steps: &[GuestStep]) -> u64 {
    let soak = soak_seconds(steps.iter().flat_map(|s| &s.workloads));
    let slack = if soak > 0 { 2 * SOAK_SLACK_SECS } else { 0 };
    limit(STEP_LIMIT_SECS + soak + slack + 60 * steps.len() as u64).as_secs()
}

/// dom0's helpers for groups (appended to `/sluice/lib.sh`).
pub const DOM0_GROUP_LIB: &str = r#"
# group_sample TAG: the block daemon $blk's RSS, fds and threads, and how many of the
# group's guests ($guests) are inside their soak (their console logs say so).
group_sample() {
  p=$(cat /run/sluice-$blk.pid 2>/dev/null)
  [ -n "$p" ] && [ -d /proc/$p ] || { echo "@@GROUP-NO-DAEMON $1 $blk"; return 1; }
  rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$p/status)
  thr=$(awk '/^Threads:/ { print $2 }' /proc/$p/status)
  fds=$(ls /proc/$p/fd | wc -l)
  n=0
  for g in $guests; do
    f=/var/log/xen/console/guest-$g.log
    grep -q '@@SOAK-BEGIN' $f 2>/dev/null && ! grep -q '@@SOAK-END' $f && n=$((n+1))
  done
  echo "@@GROUP-SAMPLE $1 t=$(cut -d' ' -f1 /proc/uptime) soaking=$n rss_kib=$rss fds=$fds threads=$thr"
}
# group_create NAME: `xl create` without a console, bounded (300 s: a create that hangs
# must not hold group_wait past its limit); again (twice at most) when libxl timed out a
# hotplug script, or a disk (libxl gives the backend 10 s, LIBXL_INIT_TIMEOUT, to reach
# InitWait: "unable to add device") on the loaded host. A daemon that failed the device
# instead logs an ERROR, which group_log_check reports, so the retry hides no fault.
group_create() {
  for try in 1 2 3; do
    if timeout -s KILL 300 xl create /sluice/steps/$1.cfg > /tmp/create-$1.log 2>&1; then
      xl domid $1 > /tmp/domid-$1; echo "@@GROUP-CREATED $1 domid $(cat /tmp/domid-$1)"; return 0
    fi
    cat /tmp/create-$1.log
    xl destroy $1 2>/dev/null
    grep -qE 'async_exec_timeout: killing execution|unable to add device' /tmp/create-$1.log || break
    echo "@@GROUP-CREATE-AGAIN $1 (libxl timed out a hotplug script or a disk)"
    wait_guests_gone; sleep 2
  done
  echo "@@GROUP-CREATE-FAILED $1"; return 1
}
# group_wait SECS NAME...: until every guest is gone. A guest gone before its init ran
# whose domain Xen reports triple-faulted (QEMU TCG flake) is created again, twice at
# most (PVH guests of a loaded TCG host have done it twice in a row); after SECS the
# guests left are destroyed and it fails.
group_wait() {
  t=$1; shift; i=0
  while :; do
    left=0
    for g in "$@"; do
      xl domid $g > /dev/null 2>&1 && { left=$((left+1)); continue; }
      f=/var/log/xen/console/guest-$g.log
      d=$(cat /tmp/domid-$g 2>/dev/null)
      a=$(cat /tmp/again-$g 2>/dev/null || echo 0)
      if [ -n "$d" ] && [ "$a" -lt 2 ] && ! grep -q "@@GUEST-BEGIN $g" $f 2>/dev/null \
         && xl dmesg | grep -q "d${d}v[0-9]* Triple fault"; then
        a=$((a+1)); echo $a > /tmp/again-$g; mv $f $f.attempt$a 2> /dev/null
        echo "@@GROUP-AGAIN $g: triple fault before its init (QEMU TCG flake)"
        # The dead domain's devices go first (bounded; the other guests keep running).
        j=0; while xenstore-list /local/domain/0/backend/vbd/$d > /dev/null 2>&1 && [ $j -lt 60 ]; do sleep 0.5; j=$((j+1)); done
        group_create $g && left=$((left+1))
      fi
    done
    [ $left = 0 ] && return 0
    i=$((i+5))
    if [ $i -gt $t ]; then
      echo "@@GROUP-TIMEOUT $left guest(s) still running after $t s"
      for g in "$@"; do xl destroy $g 2>/dev/null; done
      return 1
    fi
    sleep 5
  done
}
# group_log_check NAME FROM: the block daemon's log after line FROM: no warning, error,
# panic or disconnect; how often a device connected.
group_log_check() {
  f=/var/log/sluice/$1.log
  tail -n +$(($2 + 1)) $f > /tmp/group-daemon.log
  grep -E 'WARN|ERROR|panic|disconnecting' /tmp/group-daemon.log | head -n 20 | sed 's/^/@@GROUP-LOG-BAD /'
  echo "@@GROUP-LOG lines=$(wc -l < /tmp/group-daemon.log) connected=$(grep -c ': connected (' /tmp/group-daemon.log) bad=$(grep -cE 'WARN|ERROR|panic|disconnecting' /tmp/group-daemon.log)"
}
"#;

/// dom0's script for group `name` (`/sluice/steps/NAME.sh`).
pub fn dom0_script(boot: &Boot, name: &str, steps: &[GuestStep]) -> String {
    let limit_s = group_limit_secs(steps);
    let watchdog = limit_s + 60;
    let guests: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let blk = boot
        .block_daemons(&steps[0])
        .first()
        .map(|d| d.name.clone())
        .unwrap_or_default();
    let mut s = format!(
        ". /sluice/lib.sh\necho \"@@STEP-BEGIN {name}\"\nwait_guests_gone\n{}",
        step_daemons(boot, &steps[0])
    );
    let _ = write!(
        s,
        r#"guests="{g}"; blk={blk}; rc=0
(sleep {watchdog}; echo "@@STEP-WATCHDOG {name}"; sh /sluice/diag.sh) &
wd=$!
from=$(cat /var/log/sluice/$blk.log 2>/dev/null | wc -l)
[ -n "$blk" ] && group_sample idle
for g in $guests; do group_create $g || rc=1; done
if [ -n "$blk" ]; then (while :; do sleep 30; group_sample running; done) & smp=$!; fi
group_wait {limit_s} $guests || rc=1
[ -n "$smp" ] && kill $smp
[ -n "$blk" ] && group_sample gone
kill $wd 2>/dev/null
check_daemons
[ -n "$blk" ] && group_log_check $blk $from
for g in $guests; do
  echo "@@GUEST-LOG-BEGIN $g"; cat /var/log/xen/console/guest-$g.log; echo; echo "@@GUEST-LOG-END $g"
done
echo "@@STEP-END {name} rc=$rc"
"#,
        g = guests.join(" ")
    );
    s
}

/// Runs the group `name` (steps `range` of `boot`) on the booted machine and judges it.
pub fn run_group(
    m: &mut Machine,
    boot: &Boot,
    name: &str,
    range: Range<usize>,
    report: &mut BootReport,
    logs: &Path,
) -> Result<()> {
    let steps = &boot.steps[range];
    start_step(m, name)?;
    let begin = m.cursor();
    // The group's own bound, a re-create's bounded `xl create` (300 s), then the end.
    let wait = std::time::Duration::from_secs(group_limit_secs(steps)) + limit(180 + 300);
    let end = m.expect(
        &format!(r"@@STEP-END {name} rc=(\d+)\r?\n"),
        wait,
        "guests run together to their poweroff",
    )?;
    let rc = end.group(1).to_string();
    let text = m.text_from(begin);
    let text = text
        .split(&format!("@@STEP-END {name}"))
        .next()
        .unwrap_or("")
        .to_string();
    fs::write(logs.join(format!("group-{name}.log")), &text)?;
    for l in text
        .lines()
        .filter(|l| l.contains("@@GROUP-AGAIN") || l.contains("@@GROUP-CREATE-AGAIN"))
    {
        note(&format!("{name}: {}", l.trim()));
    }
    if let Some(l) = text.lines().find(|l| l.contains("@@DAEMON-DEAD")) {
        bail!(Failure::Crash(format!("dom0 daemon died: {l}")));
    }
    if let Some(l) = text.lines().find(|l| l.contains("@@GROUP-CREATE-FAILED")) {
        bail!(Failure::Infrastructure(format!("{name}: {}", l.trim())));
    }
    // Each guest's console, judged as for a step of its own.
    for s in steps {
        let g = &s.name;
        let log = text
            .split(&format!("@@GUEST-LOG-BEGIN {g}"))
            .nth(1)
            .and_then(|t| t.split(&format!("@@GUEST-LOG-END {g}")).next())
            .ok_or_else(|| {
                Failure::Infrastructure(format!("{name}: dom0 printed no console log of {g}"))
            })?;
        fs::write(logs.join(format!("guest-{g}.log")), log)?;
        for l in log.lines().filter(|l| l.trim().starts_with("@@SOAK ")) {
            let job = SoakJob::parse(g, l)
                .ok_or_else(|| Failure::Infrastructure(format!("{g}: bad soak line {l:?}")))?;
            report.soak.push(job);
        }
        judge_workloads(g, s, log, logs, report)?;
        if !log.contains(&format!("@@GUEST-END {g}")) {
            bail!(Failure::Infrastructure(format!(
                "{g}: guest did not finish"
            )));
        }
    }
    if let Some(l) = text.lines().find(|l| l.contains("@@GROUP-TIMEOUT")) {
        bail!(Failure::Check(format!("{name}: {}", l.trim())));
    }
    if rc != "0" {
        bail!(Failure::Infrastructure(format!(
            "{name}: dom0's group script ended with rc={rc}"
        )));
    }
    // dom0's check of the block daemon, when one served the group.
    if steps[0].block_backend() == Some(BlockBackend::Userspace) {
        let samples: Vec<DaemonSample> = text
            .lines()
            .filter(|l| l.contains("@@GROUP-SAMPLE "))
            .filter_map(|l| l.find("@@GROUP-SAMPLE ").map(|i| &l[i..]))
            .filter_map(DaemonSample::parse)
            .collect();
        if let Some(l) = text.lines().find(|l| l.contains("@@GROUP-NO-DAEMON")) {
            bail!(Failure::Check(format!("{name}: {}", l.trim())));
        }
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("@@GROUP-LOG-BAD "))
            .map(str::trim)
            .collect();
        if !bad.is_empty() {
            bail!(Failure::Check(format!(
                "{name}: the block daemon logged trouble:\n{}",
                bad.join("\n")
            )));
        }
        let connected = text
            .lines()
            .find_map(|l| l.split("@@GROUP-LOG ").nth(1))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("connected="))
            })
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| {
                Failure::Infrastructure(format!("{name}: dom0 did not check the daemon's log"))
            })?;
        // A guest created again may have connected its disks once more each time.
        let again = steps
            .iter()
            .map(|s| text.matches(&format!("@@GROUP-AGAIN {}:", s.name)).count() * s.disks.len())
            .sum::<usize>();
        let disks: usize = steps.iter().map(|s| s.disks.len()).sum();
        if connected < disks || connected > disks + again {
            bail!(Failure::Check(format!(
                "{name}: the block daemon connected devices {connected} times for {disks} disk(s) \
                 (a reconnect mid-run?)"
            )));
        }
        let soaking = steps
            .iter()
            .filter(|s| {
                s.workloads
                    .iter()
                    .any(|w| matches!(w, Workload::Soak { .. }))
            })
            .count() as u32;
        let blk = boot
            .block_daemons(&steps[0])
            .first()
            .map(|d| d.name.clone())
            .unwrap_or_default();
        let summary = match crate::soak::start_end(&samples, soaking) {
            Some((a, b)) => format!(
                "{blk} served {disks} disk(s) of {n} guests at once, no warning, error, panic or \
                 disconnect in its log; with all {soaking} soaking: RSS {} -> {} KiB, fds {} -> {}, \
                 threads {} -> {} ({:.0} s apart)",
                a.rss_kib,
                b.rss_kib,
                a.fds,
                b.fds,
                a.threads,
                b.threads,
                b.uptime - a.uptime,
                n = steps.len(),
            ),
            None => format!(
                "{blk} served {disks} disk(s) of {} guests at once, no warning, error, \
                 panic or disconnect in its log",
                steps.len()
            ),
        };
        report.daemon_samples.extend(samples);
        report.passed.push((format!("{name}/dom0-daemon"), summary));
    } else {
        report.passed.push((
            format!("{name}/dom0-daemon"),
            "kernel blkback served the group".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::GuestType;

    fn soak_step(name: &str, t: GuestType) -> GuestStep {
        GuestStep::new(
            name,
            t,
            &[BlockBackend::Userspace],
            &[Workload::Soak {
                disk: 0,
                seconds: 60,
            }],
        )
    }

    fn boot(steps: Vec<GuestStep>) -> Boot {
        Boot {
            name: "t".into(),
            console: ConsoleBackend::Xenconsoled,
            daemons: vec![],
            steps,
            fio_in_dom0: false,
        }
    }

    #[test]
    fn groups_are_runs_of_steps() {
        let b = boot(vec![
            soak_step("a", GuestType::Pv).with_together("g"),
            soak_step("b", GuestType::Pvh).with_together("g"),
            GuestStep::new(
                "c",
                GuestType::Pv,
                &[BlockBackend::Userspace],
                &[Workload::Pattern { disk: 0 }],
            ),
            soak_step("d", GuestType::Pv).with_together("h"),
        ]);
        assert_eq!(groups(&b), vec![("g".into(), 0..2), ("h".into(), 3..4)]);
        assert_eq!(group_at(&b, 0), Some(("g".into(), 0..2)));
        assert_eq!(group_at(&b, 1), None);
        assert_eq!(b.group_checks(), 2);
        // Three soaks, the pattern (guest + host), one dom0 check per group.
        assert_eq!(b.checks(), 3 + 2 + 2);
        validate(&b).expect("valid");
    }

    #[test]
    fn validation_refuses_what_a_group_cannot_do() {
        // A group split by another step.
        let split = boot(vec![
            soak_step("a", GuestType::Pv).with_together("g"),
            GuestStep::new(
                "c",
                GuestType::Pv,
                &[BlockBackend::Userspace],
                &[Workload::Pattern { disk: 0 }],
            ),
            soak_step("b", GuestType::Pv).with_together("g"),
        ]);
        assert!(validate(&split).is_err());
        // Console input or dom0 actions.
        let rt = boot(vec![GuestStep::new(
            "a",
            GuestType::Pv,
            &[BlockBackend::Userspace],
            &[Workload::ConsoleRoundTrip],
        )
        .with_together("g")]);
        assert!(validate(&rt).is_err());
        // A soak alone.
        assert!(validate(&boot(vec![soak_step("a", GuestType::Pv)])).is_err());
        // Mixed backends.
        let mixed = boot(vec![
            soak_step("a", GuestType::Pv).with_together("g"),
            GuestStep::new(
                "b",
                GuestType::Pv,
                &[BlockBackend::KernelBlkback],
                &[Workload::Pattern { disk: 0 }],
            )
            .with_together("g"),
        ]);
        assert!(validate(&mixed).is_err());
        // A group named as a step.
        assert!(validate(&boot(
            vec![soak_step("a", GuestType::Pv).with_together("a")]
        ))
        .is_err());
        // xenconsoled logs the consoles.
        let mut uc = boot(vec![soak_step("a", GuestType::Pv).with_together("g")]);
        uc.console = ConsoleBackend::Userspace;
        assert!(validate(&uc).is_err());
    }

    #[test]
    fn group_script_creates_all_then_waits_bounded() {
        let steps = vec![
            soak_step("a", GuestType::Pv).with_together("g"),
            soak_step("b", GuestType::Pvh).with_together("g"),
        ];
        let b = boot(steps.clone());
        let s = dom0_script(&b, "g", &steps);
        let create = s
            .find("for g in $guests; do group_create")
            .expect("creates");
        let wait = s.find("group_wait ").expect("waits");
        assert!(create < wait);
        assert!(s.contains("guests=\"a b\""));
        assert!(s.contains(&format!("group_wait {} $guests", group_limit_secs(&steps))));
        assert!(group_limit_secs(&steps) >= 60 + 2 * SOAK_SLACK_SECS);
        assert!(s.ends_with("echo \"@@STEP-END g rc=$rc\"\n"));
    }
}
