//! Runs one [`Boot`]: builds the images, boots Xen + dom0 in QEMU, checks Xen's FPU
//! mode, drives each guest step over the serial console, powers off, then verifies the
//! disk images on the host. Logs go to `build/testbed-logs/BOOT/` and are kept (and
//! their folder printed) when anything fails.

mod dom0;
mod drive;
mod host;
mod report;

use crate::error::Failure;
use crate::images::prepare;
use crate::kernel::HostKernel;
use crate::paths::{logs_dir, run_dir};
use crate::progress::{note, step};
use crate::scenario::Boot;
use crate::serial::{Machine, QemuConfig};
use crate::xenpkgs::XenTree;
use anyhow::{bail, Result};
use drive::drive;
use host::host_checks;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

pub use dom0::dom0_run;
pub(crate) use drive::{judge_workloads, start_step};
pub use report::{BootReport, FioSample, ReadSample};

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
