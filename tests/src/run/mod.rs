//! Runs one [`Boot`]: builds the images, boots Xen + dom0 in QEMU, checks Xen's FPU
//! mode, drives each guest step over the serial console, powers off, then verifies the
//! disk images on the host. Logs go to `build/testbed-logs/BOOT/` and are kept (and
//! their folder printed) when anything fails.

use crate::error::Failure;
use crate::images::{prepare, HostCheck, Prepared};
use crate::kernel::HostKernel;
use crate::paths::{logs_dir, run_dir};
use crate::pattern::sha256_hex;
use crate::progress::{note, step};
use crate::scenario::{BlockBackend, Boot, GuestStep, Workload};
use crate::serial::{Machine, QemuConfig};
use crate::xenpkgs::XenTree;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Xen's command line. `spec-ctrl=eager-fpu`: lazy FPU switching is broken under QEMU
/// 7.2 TCG with XSAVE (random crashes and wrong checksums in dom0 and domUs).
/// `dom0_mem=768M`: dom0's initramfs (about 120 MiB with Sluice's daemons, the guest
/// kernel and the guests' initramfs) is unpacked into a tmpfs while its image is still in
/// memory; with 512 MiB that failed ("Initramfs unpacking failed: write error").
pub const XEN_ARGS: &str =
    "console=com1 com1=115200 dom0_mem=768M noreboot cpuidle=0 max_cstate=1 spec-ctrl=eager-fpu";
/// dom0's command line (no commas: QEMU splits the module list on them).
pub const DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen quiet";

/// Seconds a guest step may take, from `xl create` to its poweroff (before scaling).
pub const STEP_LIMIT_SECS: u64 = 900;

/// Time limits, generous because the host's 2 cores are shared and TCG is slow.
/// `SLUICE_TESTBED_TIMEOUT_SCALE` multiplies them.
pub fn limit(secs: u64) -> Duration {
    let scale: f64 = std::env::var("SLUICE_TESTBED_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs as f64 * scale)
}

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

/// Options that do not change what is tested.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Copy the serial console to stderr as it arrives.
    pub echo_console: bool,
}

/// Runs `boot`; on failure the error names the kept log folder.
pub fn run_boot(boot: &Boot) -> Result<BootReport> {
    run_boot_with(boot, RunOptions::default())
}

pub fn run_boot_with(boot: &Boot, opts: RunOptions) -> Result<BootReport> {
    // build/ is shared by everyone using this working tree: one run per boot name at a
    // time (the lock is released when the file closes, also on a crash).
    let lock_path = run_dir(&boot.name).with_extension("lock");
    fs::create_dir_all(lock_path.parent().expect("run dir has a parent"))?;
    let lock = fs::File::create(&lock_path)?;
    if lock.try_lock().is_err() {
        note(&format!(
            "another run of {} holds {}; waiting",
            boot.name,
            lock_path.display()
        ));
        lock.lock()?;
    }
    let logs = logs_dir(&boot.name);
    if logs.exists() {
        fs::remove_dir_all(&logs)?;
    }
    fs::create_dir_all(&logs)?;
    let result = run_inner(boot, opts, &logs);
    match result {
        Ok(r) => {
            // Disk images and staging trees are large; logs stay (they are small).
            let _ = fs::remove_dir_all(run_dir(&boot.name));
            note(&format!("logs: {}", logs.display()));
            Ok(r)
        }
        Err(e) => {
            let _ = fs::write(logs.join("failure.txt"), format!("{e:#}\n"));
            let what = if crate::progress::failure_expected() {
                "run stopped as expected"
            } else {
                "FAILED"
            };
            note(&format!(
                "{what}; logs and disk images kept: {} and {}",
                logs.display(),
                run_dir(&boot.name).display()
            ));
            Err(Failure::WithLogs {
                error: Box::new(e),
                logs,
            }
            .into())
        }
    }
}

fn run_inner(boot: &Boot, opts: RunOptions, logs: &Path) -> Result<BootReport> {
    let t0 = Instant::now();
    let mut report = BootReport::default();
    let xen = step(
        "Xen 4.17 packages (apt-get download, cached)",
        XenTree::ensure,
    )?;
    let kernel = HostKernel::discover()?;
    note(&format!(
        "kernel {} ({})",
        kernel.version,
        kernel.vmlinuz.display()
    ));
    let prepared = step("dom0 and domU images", || prepare(boot, &xen, &kernel))?;
    note(&format!(
        "dom0 initramfs {} MiB",
        fs::metadata(&prepared.dom0_initrd)?.len() >> 20
    ));
    let cfg = QemuConfig {
        xen: prepared.xen.clone(),
        // fio and its libraries (in dom0 and in the guests' initramfs it carries) need
        // more than the usual 768 MiB.
        xen_args: {
            let a = if boot.first_fio().is_some() || !crate::together::groups(boot).is_empty() {
                XEN_ARGS.replace("dom0_mem=768M", "dom0_mem=1024M")
            } else {
                XEN_ARGS.into()
            };
            match boot.passed_nic() {
                Some((_, nic)) => format!("{a} {}", nic.xen_args),
                None => a,
            }
        },
        dom0_kernel: prepared.kernel.vmlinuz.clone(),
        dom0_args: DOM0_ARGS.into(),
        dom0_initrd: prepared.dom0_initrd.clone(),
        // Guests run together need room beside dom0 (1 GiB with fio).
        memory_mib: 2048 + crate::together::extra_memory_mib(boot),
        cpus: 2,
        disks: prepared.disks.clone(),
        extra: boot
            .passed_nic()
            .map(|(_, n)| n.qemu_args())
            .unwrap_or_default(),
    };
    let t_boot = Instant::now();
    let mut m = step("boot Xen + dom0 to the toolstack", || {
        boot_dom0(&cfg, logs, opts)
    })?;
    report.seconds_to_toolstack = t_boot.elapsed().as_secs_f64();
    let r = drive(boot, &prepared, &mut m, &mut report, logs);
    if let Err(e) = r {
        // Best effort: ask dom0 for its view, then stop.
        if !matches!(
            e.downcast_ref::<Failure>(),
            Some(Failure::QemuExited { .. })
        ) {
            // Leave a guest console (Ctrl-]) and interrupt a hung command (Ctrl-C).
            let _ = m.send_line("\x1d");
            let _ = m.send_line("\x03");
            let _ = m.send_line("sh /sluice/diag.sh");
            let _ = m.expect("@@DIAG-END", limit(60), "diagnostics");
        }
        return Err(e);
    }
    let status = m.wait_exit(limit(120))?;
    if !status.success() {
        bail!(Failure::Infrastructure(format!(
            "QEMU exited with {status} after dom0's poweroff"
        )));
    }
    drop(m);
    step("host-side checks of the disk images", || {
        host_checks(&prepared, &mut report)
    })?;
    report.seconds_total = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Starts QEMU and waits for dom0's toolstack. Xen + dom0 reach it in 11-25 s on the
/// quiet 2-core VM and within about 60 s when it is shared; a dom0 kernel that has
/// printed nothing for [`DOM0_BOOT_SECS`] (once seen in CI: silent after "Poking KASLR",
/// before dom0's init printed `@@DOM0-INIT`, a QEMU TCG hang; nothing of Sluice runs
/// before the toolstack is up) is booted once more in a fresh QEMU, with a note; the
/// first attempt's console stays in `serial-boot1.log`.
fn boot_dom0(cfg: &QemuConfig, logs: &Path, opts: RunOptions) -> Result<Machine> {
    let serial_log = logs.join("serial.log");
    let mut attempt = 1;
    loop {
        let mut m = Machine::spawn(cfg, &serial_log, opts.echo_console)?;
        note(&format!(
            "QEMU started; console log {}",
            serial_log.display()
        ));
        let waited = m.expect(
            r"@@DOM0-TOOLSTACK-READY|@@DOM0-FAIL ([^\n]*)",
            limit(DOM0_BOOT_SECS),
            "Xen + dom0 boot",
        );
        match waited {
            Ok(r) if r.groups[1].is_some() => bail!(Failure::Infrastructure(format!(
                "dom0 init failed: {}",
                r.group(1)
            ))),
            Ok(_) => return Ok(m),
            Err(e)
                if attempt == 1
                    && matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) =>
            {
                drop(m);
                let kept = logs.join("serial-boot1.log");
                fs::rename(&serial_log, &kept)?;
                note(&format!(
                    "Xen + dom0 did not reach the toolstack in {DOM0_BOOT_SECS} s (TCG hang?); \
                     booting once more (first console: {}): {e:#}",
                    kept.display()
                ));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// See [`boot_dom0`].
const DOM0_BOOT_SECS: u64 = 180;

fn drive(
    boot: &Boot,
    prepared: &Prepared,
    m: &mut Machine,
    report: &mut BootReport,
    logs: &Path,
) -> Result<()> {
    step("xl dmesg shows eager FPU switching", || {
        let out = dom0_run(m, "xl dmesg | grep 'Support for PV VMs'", limit(120))?;
        let line = out
            .lines()
            .find(|l| l.starts_with("(XEN)") && l.contains("Support for PV VMs:"))
            .unwrap_or("");
        if !line.contains("EAGER_FPU") {
            bail!(Failure::Infrastructure(format!(
                "Xen does not switch FPU state eagerly (spec-ctrl=eager-fpu missing?): {out:?}"
            )));
        }
        report.xen_pv_line = line.trim().to_string();
        Ok(())
    })?;

    // Records acknowledged per writer before a guest was destroyed mid-write
    // (`Workload::CrashDestroy`), by (step, disk): what a later `CrashVerify` checks.
    let mut acked: std::collections::HashMap<(usize, usize), [u32; 4]> = Default::default();
    for (si, (s, (name, _))) in boot.steps.iter().zip(&prepared.host_checks).enumerate() {
        if s.together.is_some() {
            // Steps run together: the group's first step runs them all.
            if let Some((g, range)) = crate::together::group_at(boot, si) {
                let t = Instant::now();
                let label = format!("guests {} at once (group {g})", range.len());
                step(&label, || {
                    crate::together::run_group(m, boot, &g, range.clone(), report, logs)
                })?;
                report.step_seconds.push((g, t.elapsed().as_secs_f64()));
            }
            continue;
        }
        let label = format!(
            "guest {name} ({}, {} disk(s))",
            s.guest_type.xl_type(),
            s.disks.len()
        );
        let t = Instant::now();
        step(&label, || {
            // A PVH Linux guest under QEMU TCG now and then triple-faults in early boot,
            // before its init (and so any workload) runs: twice in some twenty PVH boots
            // on 2026-12-01, at different kernel addresses, whatever the backends. Such a
            // step runs once more (once only); the first attempt's console is kept.
            let mut attempt = 0;
            let (end, text) = loop {
                attempt += 1;
                start_step(m, name)?;
                let begin = m.cursor();
                // The guest's requests, in whatever order its workloads make them, until
                // dom0 reports the step's end.
                let deadline = Instant::now() + limit(STEP_LIMIT_SECS);
                // Group 4 of the match that ends the loop: `xl create -c`'s exit status.
                let end = loop {
                    let r = m.expect(
                        // Whole lines only: the console arrives in pieces, and `\S+` would
                        // match a word cut short ("x" of "xvda").
                        &format!(
                            r"@@RT-READY|@@ACKS-READY|@@ACTION (\S+) (\S+) (\S+)\r?\n|@@STEP-END {name} rc=(\d+)\r?\n"
                        ),
                        deadline.saturating_duration_since(Instant::now()),
                        "guest run to its poweroff",
                    )?;
                    if r.group(0) == "@@RT-READY" {
                        console_round_trip(m, boot, name)?;
                    } else if r.group(0) == "@@ACKS-READY" {
                        let from = s.workloads.iter().find_map(|w| match w {
                            Workload::CrashVerify { disk } => s.disks[*disk].of,
                            _ => None,
                        });
                        let Some(n) = from.and_then(|k| acked.get(&k)) else {
                            bail!(Failure::Infrastructure(format!(
                                "{name}: the guest asked for acknowledged records, but no earlier \
                                 step destroyed a guest on its disk"
                            )));
                        };
                        m.send_line(&format!("acked {} {} {} {}", n[0], n[1], n[2], n[3]))?;
                    } else if !r.group(1).is_empty() {
                        dom0_action(m, boot, si, s, r.group(1), r.group(2), r.group(3))?;
                    } else {
                        break r;
                    }
                };
                let text = m.text_from(begin);
                let text = text
                    .split(&format!("@@STEP-END {name}"))
                    .next()
                    .unwrap_or("")
                    .to_string();
                // The same triple fault comes mid-run too, in PVH guests moving network
                // traffic (xen-net, with stock xen-netfront vs sluice-netback and with
                // sluice-netfront vs kernel netback; twice in one step in a quiet CI run
                // of 2026-12-06, once with the guest in an x2APIC EOI write, RCX 0x80b).
                // A step without disks leaves nothing behind that a rerun would trip on
                // (dom0's listener is reset by `net_listen`), so it runs again, four
                // times at most (CI of 2026-12-06 saw three in a row); a step with disks
                // runs again only when its init had not run (its images would hold the
                // first run's writes).
                let before_init = !text.contains(&format!("@@GUEST-BEGIN {name}"));
                if (attempt == 1 || (attempt <= 4 && s.disks.is_empty()))
                    && s.kernel.is_none()
                    && (before_init || s.disks.is_empty())
                    && text.contains("Triple fault")
                {
                    fs::write(
                        logs.join(format!("guest-{name}-attempt{attempt}.log")),
                        &text,
                    )?;
                    note(&format!(
                        "{name}: the guest kernel triple-faulted {} (QEMU TCG flake); running the step again",
                        if before_init { "before its init ran" } else { "while its workloads ran" }
                    ));
                    continue;
                }
                // libxl gives a hotplug script a fixed 10 s; on a loaded 2-core host under
                // TCG dom0's `block add` can take longer, and `xl create` fails before the
                // guest exists (seen in two runs on 2026-12-06 with other QEMUs running).
                // That step too runs again (twice at most: seen twice in a row with four
                // QEMUs on the VM), the first console kept.
                if attempt <= 2
                    && !text.contains(&format!("@@GUEST-BEGIN {name}"))
                    && text.contains("async_exec_timeout: killing execution of /etc/xen/scripts/")
                {
                    fs::write(
                        logs.join(format!("guest-{name}-attempt{attempt}.log")),
                        &text,
                    )?;
                    note(&format!(
                        "{name}: libxl timed out a hotplug script before the guest existed (host load); running the step again"
                    ));
                    continue;
                }
                break (end, text);
            };
            let text = text.as_str();
            fs::write(logs.join(format!("guest-{name}.log")), text)?;
            for l in text.lines() {
                let Some(rest) = l.trim().strip_prefix("@@READ ") else {
                    continue;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                let field = |k: &str| {
                    f.iter()
                        .find_map(|x| x.strip_prefix(k))
                        .and_then(|v| v.parse::<f64>().ok())
                };
                match (f.first(), field("mib="), field("t0="), field("t1=")) {
                    (Some(vdev), Some(mib), Some(t0), Some(t1)) => report.reads.push(ReadSample {
                        step: name.clone(),
                        vdev: vdev.to_string(),
                        backend: s.block_backend().unwrap_or(BlockBackend::KernelBlkback),
                        mib: mib as u32,
                        seconds: t1 - t0,
                    }),
                    _ => bail!(Failure::Infrastructure(format!(
                        "{name}: bad read line {l:?}"
                    ))),
                }
            }
            for l in text.lines().filter(|l| l.trim().starts_with("@@FIO ")) {
                let sample = FioSample::parse(name, s.block_backend(), l).ok_or_else(|| {
                    Failure::Infrastructure(format!("{name}: bad fio line {l:?}"))
                })?;
                report.fio.push(sample);
            }
            if let Some(vif) = &s.vif {
                for l in text.lines().filter(|l| l.trim().starts_with("@@NETPERF ")) {
                    let sample = crate::net::NetPerfSample::parse(name, vif.backend, l)
                        .ok_or_else(|| {
                            Failure::Infrastructure(format!("{name}: bad iperf3 line {l:?}"))
                        })?;
                    report.net_perf.push(sample);
                }
            }
            if let Some(l) = text.lines().find(|l| l.contains("@@DAEMON-DEAD")) {
                bail!(Failure::Crash(format!("dom0 daemon died: {l}")));
            }
            // Group 4 of the loop's pattern: the rc of `@@STEP-END` (1-3 are @@ACTION's).
            if end.group(4) != "0" {
                bail!(Failure::Infrastructure(format!(
                    "{name}: xl create -c exited with {}",
                    end.group(4)
                )));
            }
            let destroyed = s.workloads.iter().find_map(|w| match w {
                Workload::CrashDestroy { disk } => Some((*disk, w.id())),
                _ => None,
            });
            if let Some((disk, id)) = &destroyed {
                let n = crash_destroyed(name, id, text)?;
                report.passed.push((
                    format!("{name}/{id}"),
                    format!(
                        "dom0 destroyed the guest (xl destroy) mid-write, after records {n:?} \
                         per writer were acknowledged (O_DIRECT write + fsync)"
                    ),
                ));
                acked.insert((si, *disk), n);
            }
            judge_workloads(name, s, text, logs, report)?;
            if s.workloads
                .iter()
                .any(|w| matches!(w, Workload::HostileFrontend { .. }))
            {
                if let Some(l) = text.lines().find(|l| l.contains("@@DOM0-LOG-LACKS")) {
                    bail!(Failure::Check(format!(
                        "{name}: the block backend did not log a refusal: {}",
                        l.trim()
                    )));
                }
                let has = text
                    .lines()
                    .filter(|l| l.contains("@@DOM0-LOG-HAS"))
                    .count();
                // The flood of bad requests left a bounded log.
                let mut sizes = vec![];
                for l in text.lines().filter(|l| l.contains("@@DOM0-LOG-SIZE ")) {
                    let lines: u64 = l
                        .rsplit(": ")
                        .next()
                        .and_then(|v| v.trim().strip_suffix(" lines"))
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| {
                            Failure::Infrastructure(format!("{name}: bad log size line {l:?}"))
                        })?;
                    if lines > crate::scenario::HOSTILE_LOG_MAX_LINES {
                        bail!(Failure::Check(format!(
                            "{name}: the block backend's log grew to {lines} lines under the \
                             flood (at most {})",
                            crate::scenario::HOSTILE_LOG_MAX_LINES
                        )));
                    }
                    sizes.push(lines);
                }
                if sizes.is_empty() {
                    bail!(Failure::Infrastructure(format!(
                        "{name}: dom0 reported no block backend log size"
                    )));
                }
                for w in &s.workloads {
                    if let Workload::HostileFrontend { .. } = w {
                        report.passed.push((
                            format!("{name}/{}/dom0-log", w.id()),
                            format!(
                                "the block backend logged each kind of refusal ({has} line kinds); \
                                 its whole log after a flood of 10^4 bad requests: {sizes:?} line(s)"
                            ),
                        ));
                    }
                }
            }
            if let Some(c) = crate::hostile_net::dom0_check(name, s, text)? {
                report.passed.push(c);
            }
            if s.kernel.is_some() {
                report.consoles.push((name.clone(), text.to_string()));
            } else if destroyed.is_none() && !text.contains(&format!("@@GUEST-END {name}")) {
                bail!(Failure::Infrastructure(format!(
                    "{name}: guest did not finish"
                )));
            }
            Ok(())
        })?;
        report
            .step_seconds
            .push((name.clone(), t.elapsed().as_secs_f64()));
    }

    if let (true, Some((si, disk, seconds))) = (boot.fio_in_dom0, boot.first_fio()) {
        step("fio in dom0 on the disk image (ceiling)", || {
            let dev = format!("/dev/{}", crate::images::disk_serial(si, disk));
            // The guests' block backends must not hold the disk meanwhile: all guests
            // are gone by now.
            let out = dom0_run(
                m,
                &format!(". /sluice/fio.sh; fio_jobs {dev} {seconds}"),
                limit(120 + 8 * u64::from(seconds)),
            )?;
            for l in out.lines().filter(|l| l.trim().starts_with("@@FIO ")) {
                report.fio.push(
                    FioSample::parse("dom0", None, l).ok_or_else(|| {
                        Failure::Infrastructure(format!("dom0: bad fio line {l:?}"))
                    })?,
                );
            }
            Ok(())
        })?;
    }

    step("dom0 poweroff", || {
        let begin = m.cursor();
        m.send_line("sh /sluice/finish.sh")?;
        m.expect("@@DOM0-POWEROFF", limit(120), "dom0 finish")?;
        let text = m.text_from(begin);
        for d in &boot.daemons {
            let tag = format!("@@DAEMON-LOG-BEGIN {}.log", d.name);
            if let Some(rest) = text.split(&tag).nth(1) {
                let body = rest.split("@@DAEMON-LOG-END").next().unwrap_or("");
                fs::write(logs.join(format!("daemon-{}.log", d.name)), body)?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// The verdict on each of step `s`'s workloads from its guest's console `text` (its
/// `@@CHECK` and `@@SUMMARY` lines); passes go to `report`.
pub(crate) fn judge_workloads(
    name: &str,
    s: &GuestStep,
    text: &str,
    logs: &Path,
    report: &mut BootReport,
) -> Result<()> {
    for w in &s.workloads {
        if matches!(w, Workload::CrashDestroy { .. }) {
            continue;
        }
        let id = w.id();
        let verdict = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("@@CHECK {id} ")))
            .map(str::to_string);
        match verdict.as_deref() {
            Some("PASS") => {
                let summary = text
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix(&format!("@@SUMMARY {id}: "))
                            .map(str::to_string)
                    })
                    .as_deref()
                    .unwrap_or(if *w == Workload::ConsoleRoundTrip {
                        "a line typed on the serial console reached the guest through dom0's console backend; its sha256 came back"
                    } else {
                        ""
                    })
                    .to_string();
                report.passed.push((format!("{name}/{id}"), summary));
            }
            Some(v) if v.starts_with("CRASH") => {
                bail!(Failure::Crash(format!("{name}/{id}: {v}")))
            }
            Some(v) => bail!(Failure::Check(format!(
                "{name}/{id}: {v} (guest log: {})",
                logs.join(format!("guest-{name}.log")).display()
            ))),
            None => bail!(Failure::Infrastructure(format!(
                "{name}/{id}: the guest never reported (crashed or hung? see {})",
                logs.join(format!("guest-{name}.log")).display()
            ))),
        }
    }
    Ok(())
}

/// Types the command that runs step `name`'s script in dom0's shell. The script says
/// `@@STEP-BEGIN` at once; a line that Xen's serial input garbled (see [`dom0_command`])
/// only makes the shell complain, so after 45 s without it the line is killed (Ctrl-U)
/// and typed again, twice at most.
pub(crate) fn start_step(m: &mut Machine, name: &str) -> Result<()> {
    for attempt in 1.. {
        m.send_line(&format!("sh /sluice/steps/{name}.sh"))?;
        match m.expect(&format!("@@STEP-BEGIN {name}"), limit(45), "step start") {
            Err(e)
                if attempt < 3
                    && matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) =>
            {
                note(&format!(
                    "{name}: the step did not start; typing its command again"
                ));
                m.send_raw(b"\x15")?;
            }
            r => return r.map(|_| ()),
        }
    }
    unreachable!("the loop returns")
}

/// The verdict on a [`Workload::CrashDestroy`] step from its console: the guest was
/// writing, dom0 destroyed it, its writers never failed (no `@@CHECK`); returns the
/// records acknowledged per writer (`@@ACK W R` lines, R counting from 0).
fn crash_destroyed(name: &str, id: &str, text: &str) -> Result<[u32; 4]> {
    if let Some(l) = text.lines().find(|l| l.contains(&format!("@@CHECK {id} "))) {
        bail!(Failure::Check(format!(
            "{name}/{id}: the guest stopped writing before it was destroyed: {}",
            l.trim()
        )));
    }
    if !text.contains(&format!("@@CRASH-WRITING {id}"))
        || !text.contains(&format!("@@DOM0-DESTROYED {name}"))
    {
        bail!(Failure::Infrastructure(format!(
            "{name}/{id}: the guest did not start writing, or dom0 did not destroy it"
        )));
    }
    let mut n = [0u32; 4];
    for l in text.lines() {
        let Some(rest) = l.trim().strip_prefix("@@ACK ") else {
            continue;
        };
        let mut f = rest.split_whitespace().map(str::parse::<u32>);
        match (f.next(), f.next(), f.next()) {
            (Some(Ok(w)), Some(Ok(r)), None) if w < 4 => n[w as usize] = n[w as usize].max(r + 1),
            // A line cut by dom0's own console output: that record is not counted
            // (fewer records checked, never a false pass).
            _ => {}
        }
    }
    if n.iter().sum::<u32>() == 0 {
        bail!(Failure::Infrastructure(format!(
            "{name}/{id}: no record was acknowledged before the guest was destroyed"
        )));
    }
    Ok(n)
}

/// Carries out a guest's request for a dom0 action on one of its disks (`@@ACTION TOKEN
/// VERB DISK`, printed by the guest's `dom0` shell function, which then waits): leaves
/// the guest console (Ctrl-]), types the command for dom0's step script to run,
/// reattaches, and types the answer `@@GO TOKEN rc=N` for the guest.
fn dom0_action(
    m: &mut Machine,
    boot: &Boot,
    step_idx: usize,
    step: &GuestStep,
    token: &str,
    verb: &str,
    disk: &str,
) -> Result<()> {
    let name = &step.name;
    if let Some(cmd) = net_action(verb, disk, name) {
        return dom0_command(m, name, token, &cmd);
    }
    // Workload::NetJumbo's MTU changes and sized pings.
    if let Some(cmd) = crate::net::jumbo_action(verb, disk) {
        return dom0_command(m, name, token, &cmd);
    }
    // Workload::NetDetachAttach: the step's one vif, by its MAC.
    if let (Some(v), "vif") = (&step.vif, disk) {
        let cmd = match verb {
            "net-detach" => Some(format!(
                "xl network-detach {name} {}",
                crate::images::vif_mac(step_idx)
            )),
            "net-attach" => Some(format!(
                "xl network-attach {name} '{}'",
                crate::images::vif_spec(step_idx, v.backend)
            )),
            _ => None,
        };
        if let Some(cmd) = cmd {
            return dom0_command(m, name, token, &cmd);
        }
    }
    // Secondary consoles (Workload::SecondaryConsole): `disk` is the console number.
    if let (Some(verb), Ok(n)) = (
        match verb {
            "console-add" => Some("/sluice/bin/sluice-console-add $(xl domid NAME) N"),
            "console-rt" => Some("console_rt NAME N"),
            _ => None,
        },
        disk.parse::<u32>(),
    ) {
        let cmd = verb.replace("NAME", name).replace('N', &n.to_string());
        return dom0_command(m, name, token, &cmd);
    }
    let di = (0..step.disks.len())
        .find(|&i| crate::scenario::vdev(i) == disk)
        .ok_or_else(|| {
            Failure::Infrastructure(format!("{name}: dom0 action {verb} on unknown disk {disk}"))
        })?;
    let cmd = match verb {
        "detach" => format!("xl block-detach {name} {disk}"),
        "attach" => format!(
            "xl block-attach {name} '{}'",
            crate::images::disk_spec(step_idx, di, &step.disks[di])
        ),
        "restart-backend-midwrite" => {
            let daemons: Vec<String> = boot
                .block_daemons(step)
                .into_iter()
                .map(|d| {
                    format!(
                        "restart_midwrite {} {}",
                        d.name,
                        crate::images::daemon_args(d)
                    )
                })
                .collect();
            if daemons.len() != 1 || step.disks[di].backend != BlockBackend::Userspace {
                bail!(Failure::Infrastructure(format!(
                    "{name}: restart-backend-midwrite needs one userspace block backend daemon"
                )));
            }
            daemons.join(" && ")
        }
        "restart-backend" => {
            let daemons: Vec<String> = boot
                .block_daemons(step)
                .into_iter()
                .map(|d| {
                    format!(
                        "kill_daemon {n} && start_daemon {n} {}",
                        crate::images::daemon_args(d),
                        n = d.name
                    )
                })
                .collect();
            if daemons.is_empty() || step.disks[di].backend != BlockBackend::Userspace {
                bail!(Failure::Infrastructure(format!(
                    "{name}: restart-backend needs a userspace block backend daemon"
                )));
            }
            daemons.join(" && ")
        }
        "destroy-after-writes" => format!(
            "destroy_after_writes {name} {}",
            match step.disks[di].of {
                Some((s, k)) => crate::images::disk_serial(s, k),
                None => crate::images::disk_serial(step_idx, di),
            }
        ),
        "backend-idle" => {
            let daemons: Vec<String> = boot
                .block_daemons(step)
                .into_iter()
                .map(|d| format!("backend_idle {}", d.name))
                .collect();
            if daemons.is_empty() {
                bail!(Failure::Infrastructure(format!(
                    "{name}: backend-idle needs a userspace block backend daemon"
                )));
            }
            daemons.join(" && ")
        }
        _ => bail!(Failure::Infrastructure(format!(
            "{name}: unknown dom0 action {verb:?}"
        ))),
    };
    dom0_command(m, name, token, &cmd)
}

/// The dom0 command of a network action ([`crate::Workload::Net`]); `arg` is an address
/// or a sha256 (checked here: it is typed into dom0's shell); the transfers also get the
/// guest's name (`domain`), to stop when it is gone.
fn net_action(verb: &str, arg: &str, domain: &str) -> Option<String> {
    if !arg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.') {
        return None;
    }
    Some(match verb {
        "net-ping" => format!("ping -c 3 -W 10 {arg}"),
        "net-listen" => format!("net_listen {arg}"),
        "net-received" => format!("net_received {arg} {domain}"),
        "net-send" => format!("net_send {arg} {domain}"),
        "net-sent" => format!("net_sent {arg}"),
        "net-restart" => format!("restart_daemon {arg}"),
        _ => return None,
    })
}

/// Leaves the guest console of step `name`, runs `cmd` in dom0's step script, answers
/// the guest's action `token` with its status.
fn dom0_command(m: &mut Machine, name: &str, token: &str, cmd: &str) -> Result<()> {
    note(&format!("{name}: dom0 action: {cmd}"));
    let start = m.cursor();
    m.send_raw(b"\x1d")?;
    m.expect(
        &format!("@@DOM0-ACTION-READY {name}"),
        limit(60),
        "dom0's step script after leaving the guest console",
    )?;
    // Xen's serial input now and then garbles a typed byte under TCG (seen in CI: dom0
    // read `net_9eceived` for `net_received`): dom0 runs the line only if its checksum
    // matches (`action_or_gone`), else it answers GARBLED and the line is typed again.
    let sum = &crate::pattern::sha256_hex(cmd.as_bytes())[..16];
    for attempt in 1.. {
        m.send_line(&format!("{cmd} @@SUM {sum}"))?;
        let r = m.expect(
            &format!("@@DOM0-ACTION-(RUN|GARBLED) {name}"),
            limit(30),
            "dom0 taking the typed action",
        );
        match r {
            Ok(r) if r.group(1) == "RUN" => break,
            Err(e) if !matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) => {
                return Err(e)
            }
            _ if attempt < 4 => {
                // A lost newline leaves the line unfinished: finish it (dom0 refuses it).
                note(&format!(
                    "{name}: dom0 did not take the typed action intact; typing it again"
                ));
                m.send_line("")?;
                let _ = m.expect(
                    &format!("@@DOM0-ACTION-GARBLED {name}"),
                    limit(5),
                    "dom0 refusing the unfinished line",
                );
            }
            Ok(_) => bail!(Failure::Infrastructure(format!(
                "{name}: dom0 refused the typed action {cmd:?} {attempt} times (garbled)"
            ))),
            Err(e) => return Err(e),
        }
    }
    let r = m.expect(
        &format!(r"@@DOM0-ACTION-DONE {name} rc=(\d+)\r?\n"),
        limit(300),
        cmd,
    )?;
    let rc = r.group(1).to_string();
    m.expect(
        &format!("@@DOM0-CONSOLE-AGAIN {name}"),
        limit(60),
        "dom0 reattaching the guest console",
    )?;
    // `xl console` takes a moment to attach; what is typed before may be lost, so type
    // the answer again until the guest acknowledges it (it ignores repeats).
    for attempt in 1.. {
        std::thread::sleep(Duration::from_secs(2));
        m.send_line(&format!("@@GO {token} rc={rc}"))?;
        match m.expect(
            &format!("@@ACTION-ACK {token}"),
            limit(20),
            "guest taking dom0's answer",
        ) {
            Ok(_) => break,
            // The guest is gone (it crashed, e.g. the TCG triple fault): nobody will take
            // the answer; the step's end, left for the caller, says what happened.
            Err(e)
                if matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. }))
                    && m.text_from(start).contains(&format!("@@STEP-END {name} ")) =>
            {
                note(&format!("{name}: the guest is gone; its step ends"));
                break;
            }
            Err(e)
                if attempt < 6
                    && matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs a shell command in dom0 and returns its output. The end marker is printed with
/// printf so the echoed command line cannot match it.
pub fn dom0_run(m: &mut Machine, cmd: &str, timeout: Duration) -> Result<String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    m.send_line(&format!("{cmd}; printf '@@RC{n}%s=%d\\n' x $?"))?;
    let r = m.expect(&format!(r"@@RC{n}x=(\d+)"), timeout, cmd)?;
    // Drop the echoed command line.
    let out = r
        .before
        .split_once('\n')
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    if r.group(1) != "0" {
        bail!(Failure::Infrastructure(format!(
            "dom0 command `{cmd}` exited with {}: {out}",
            r.group(1)
        )));
    }
    Ok(out)
}

fn host_checks(prepared: &Prepared, report: &mut BootReport) -> Result<()> {
    for (step_name, checks) in &prepared.host_checks {
        for (id, c) in checks {
            match c {
                HostCheck::Pattern {
                    image,
                    data,
                    sectors,
                } => {
                    crate::pattern::verify_pattern(image, data, sectors)
                        .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?;
                }
                HostCheck::Ext4 { image, data } => host_ext4(image, data)
                    .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?,
                HostCheck::Hole {
                    image,
                    sector,
                    count,
                } => crate::pattern::verify_hole(image, *sector, *count)
                    .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?,
                HostCheck::OnlyWritten {
                    image,
                    size,
                    sector,
                    data,
                } => crate::pattern::verify_only_written(image, *size, *sector, data)
                    .map_err(|e| Failure::Check(format!("{step_name}/{id}: {e:#}")))?,
            }
            report
                .passed
                .push((format!("{step_name}/{id} (host)"), "image verified".into()));
        }
    }
    Ok(())
}

/// e2fsck on the image must be clean, and the files read with debugfs must be what the
/// guest wrote.
fn host_ext4(image: &Path, data: &[u8]) -> Result<()> {
    let e2fsck = ["/usr/sbin/e2fsck", "/sbin/e2fsck"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("e2fsck not on the host: run `cargo xtask setup` (installs e2fsprogs)")?;
    let o = Command::new(e2fsck).arg("-fn").arg(image).output()?;
    if !o.status.success() {
        bail!(
            "host e2fsck -fn {}: {}\n{}",
            image.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let debugfs = ["/usr/sbin/debugfs", "/sbin/debugfs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("debugfs not on the host: run `cargo xtask setup` (installs e2fsprogs)")?;
    let cat = |path: &str| -> Result<Vec<u8>> {
        let o = Command::new(debugfs)
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(image)
            .output()?;
        if !o.status.success() {
            bail!("debugfs cat {path} failed");
        }
        Ok(o.stdout)
    };
    if cat("/pattern.bin")? != data {
        bail!("/pattern.bin in the image differs from what the guest wrote");
    }
    if cat("/dir/big.bin")? != data[..128 * 4096] {
        bail!("/dir/big.bin in the image differs from what the guest wrote");
    }
    for n in [0, 7, 15] {
        if cat(&format!("/dir/file-{n}.txt"))? != format!("sluice file {n}\n").as_bytes() {
            bail!("/dir/file-{n}.txt in the image differs");
        }
    }
    trimmed_to_used(image, debugfs)
}

/// After the guest's fstrim (`check_ext4` wrote 16 MiB of random data, deleted it and
/// ran fstrim) the image, sparse when created, may hold at most the file system's used
/// blocks plus 8 MiB of allocated data: without the discards reaching the image the
/// deleted file's 16 MiB would still be allocated.
fn trimmed_to_used(image: &Path, debugfs: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let o = Command::new(debugfs)
        .arg("-R")
        .arg("stats")
        .arg(image)
        .output()?;
    if !o.status.success() {
        bail!("debugfs stats failed");
    }
    let stats = String::from_utf8_lossy(&o.stdout);
    let field = |name: &str| -> Result<u64> {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("debugfs stats has no '{name}'"))
    };
    let (blocks, free, size) = (
        field("Block count:")?,
        field("Free blocks:")?,
        field("Block size:")?,
    );
    let used = (blocks - free.min(blocks)) * size;
    let allocated = std::fs::metadata(image)?.blocks() * 512;
    const SLACK: u64 = 8 << 20;
    if allocated > used + SLACK {
        bail!(
            "{}: {allocated} bytes allocated but the file system uses only {used}: the fstrim \
             of the deleted 16 MiB did not punch holes in the image",
            image.display()
        );
    }
    Ok(())
}

/// The guest printed `@@RT-READY`: types a line through dom0's console path and checks
/// the sha256 the guest answers with.
///
/// With Xen's own console daemon (xenconsoled: a peer, not ours) a typed line was once
/// lost on the way (the CI run of stop 11: no answer in 120 s from a PVH guest); there the line is
/// typed once more (after Ctrl-U, which empties the guest tty's line) when no answer came
/// in 60 s, and the note says whether the guest's tty had echoed it. A console Sluice
/// serves gets no second chance: a lost line is its defect.
fn console_round_trip(m: &mut Machine, boot: &Boot, name: &str) -> Result<()> {
    const ECHO: &str = r"@@RT-ECHO ([0-9a-f]{64})";
    let line = format!("sluice-roundtrip-{}-{}", name, std::process::id());
    let from = m.cursor();
    m.send_line(&line)?;
    let retype = boot.console == crate::scenario::ConsoleBackend::Xenconsoled;
    let first = m.expect(
        ECHO,
        limit(if retype { 60 } else { 120 }),
        "guest answer to the typed line",
    );
    let r = match first {
        Err(e)
            if retype && matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) =>
        {
            let echoed = m.text_from(from).contains(&line);
            note(&format!(
                "{name}: no answer to the typed line in 60 s (the guest's tty echoed it: {echoed}); \
                 typing it again (console served by xenconsoled)"
            ));
            m.send_raw(b"\x15")?;
            m.send_line(&line)?;
            m.expect(ECHO, limit(120), "guest answer to the line typed again")?
        }
        other => other?,
    };
    if r.group(1) != sha256_hex(line.as_bytes()) {
        bail!(Failure::Check(format!(
            "{name}: console round trip: typed {line:?}, guest hashed something else ({})",
            r.group(1)
        )));
    }
    Ok(())
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
