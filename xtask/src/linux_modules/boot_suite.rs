//! The `linux-modules` suite itself: the built modules packed into a busybox initramfs,
//! the stock kernel booted in QEMU TCG, each module loaded, listed and removed, and the
//! serial log checked (the modules' messages present; no warning, oops or unexpected
//! taint).

use super::{build, out_dir, ALLOWED_TAINT, MODULES};
use crate::util::run;
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a newc cpio of `dir` (gzip'd) with busybox's cpio-compatible host tools.
fn pack_initramfs(dir: &Path, out: &Path) -> Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            dir.display(),
            out.display()
        ))
        .status()?;
    ensure!(status.success(), "packing the initramfs failed");
    Ok(())
}

/// The `linux-modules` suite: build, then load and unload each module in the stock
/// kernel under QEMU TCG.
pub fn run_suite() -> Result<()> {
    let (kernel, kos) = build()?;
    let busybox = Path::new("/bin/busybox");
    ensure!(busybox.is_file(), "busybox-static is not installed");
    let dir = out_dir().join("initramfs");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    for d in ["bin", "proc", "sys", "dev", "modules"] {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::copy(busybox, dir.join("bin/busybox"))?;
    let mut script = String::from(
        "#!/bin/busybox sh\n/bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\nmount -t sysfs sys /sys\n\
         echo \"SLUICE taint-before $(cat /proc/sys/kernel/tainted)\"\n",
    );
    for (ko, m) in kos.iter().zip(MODULES) {
        let file = ko.file_name().unwrap().to_string_lossy().into_owned();
        let modname = file.trim_end_matches(".ko").replace('-', "_");
        fs::copy(ko, dir.join("modules").join(&file))?;
        if m.xen_only {
            script.push_str(&format!(
                "if insmod /modules/{file} 2>/insmod.err; then echo 'SLUICE insmod-ok {modname}'; \
                 else echo \"SLUICE insmod-refused {modname}: $(cat /insmod.err)\"; fi\n\
                 grep -q '^{modname} ' /proc/modules || echo 'SLUICE gone {modname}'\n"
            ));
            continue;
        }
        script.push_str(&format!(
            "if insmod /modules/{file}; then echo 'SLUICE insmod-ok {modname}'; else echo 'SLUICE insmod-failed {modname}'; fi\n\
             grep -q '^{modname} ' /proc/modules && echo 'SLUICE listed {modname}'\n\
             echo \"SLUICE taint-loaded {modname} $(cat /proc/sys/kernel/tainted)\"\n\
             if rmmod {modname}; then echo 'SLUICE rmmod-ok {modname}'; else echo 'SLUICE rmmod-failed {modname}'; fi\n\
             grep -q '^{modname} ' /proc/modules || echo 'SLUICE gone {modname}'\n"
        ));
    }
    script.push_str(
        "echo \"SLUICE taint-after $(cat /proc/sys/kernel/tainted)\"\n\
         echo SLUICE dmesg-begin\ndmesg\necho SLUICE dmesg-end\n\
         echo SLUICE done\npoweroff -f\n",
    );
    fs::write(dir.join("init"), script)?;
    run(Command::new("chmod").arg("755").arg(dir.join("init")))?;
    let initrd = out_dir().join("initramfs.cpio.gz");
    pack_initramfs(&dir, &initrd)?;
    let out = Command::new("timeout")
        .args(["300", "qemu-system-x86_64", "-M", "q35", "-accel", "tcg"])
        .args(["-m", "512", "-smp", "1", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
        .output()
        .context("cannot run qemu-system-x86_64")?;
    let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    fs::write(out_dir().join("serial.log"), &log)?;
    let verdict = check_log(&log, &kos);
    if let Err(e) = &verdict {
        eprintln!(
            "--- serial log ({}) ---\n{log}",
            out_dir().join("serial.log").display()
        );
        bail!("{e:#}");
    }
    Ok(())
}

/// The verdict from the serial log: each module loaded, listed and removed; the kernel
/// log has its messages and no warning, oops or unexpected taint.
fn check_log(log: &str, kos: &[PathBuf]) -> Result<()> {
    // The console's terminal escapes can precede a marker on its line.
    let log: String = log
        .lines()
        .map(|l| l.find("SLUICE ").map_or(l, |i| &l[i..]))
        .collect::<Vec<_>>()
        .join("\n");
    let log = log.as_str();
    ensure!(
        log.lines().any(|l| l == "SLUICE done"),
        "the guest did not finish its script"
    );
    let taint = |key: &str| -> Result<u64> {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("SLUICE {key} ")))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no '{key}' line"))
    };
    let before = taint("taint-before")?;
    for (ko, m) in kos.iter().zip(MODULES) {
        let modname = ko.file_stem().unwrap().to_string_lossy().replace('-', "_");
        if m.xen_only {
            let refused = format!("SLUICE insmod-refused {modname}: ");
            let line = log
                .lines()
                .find(|l| l.starts_with(&refused))
                .with_context(|| format!("{modname} loaded outside Xen (or no verdict)"))?;
            ensure!(
                line.contains("No such device"),
                "{modname} outside Xen: expected ENODEV from its init, got: {line}"
            );
            let gone = format!("SLUICE gone {modname}");
            ensure!(log.lines().any(|l| l == gone), "{modname} stayed loaded");
            eprintln!("linux-modules: {modname} resolved its symbols and refused to load outside Xen (ENODEV)");
            continue;
        }
        for step in ["insmod-ok", "listed", "rmmod-ok", "gone"] {
            let want = format!("SLUICE {step} {modname}");
            ensure!(log.lines().any(|l| l == want), "missing '{want}'");
        }
        let loaded = taint(&format!("taint-loaded {modname}"))?;
        ensure!(
            (loaded & !before) & !ALLOWED_TAINT == 0,
            "{modname} tainted the kernel beyond O/E: {before:#x} -> {loaded:#x}"
        );
        eprintln!("linux-modules: {modname} loaded and removed; taint {before} -> {loaded}");
    }
    let dmesg: Vec<&str> = log
        .lines()
        .skip_while(|l| *l != "SLUICE dmesg-begin")
        .take_while(|l| *l != "SLUICE dmesg-end")
        .collect();
    ensure!(!dmesg.is_empty(), "no dmesg in the log");
    for bad in [
        "WARNING:",
        "BUG:",
        "Oops",
        "Call Trace",
        "Unknown symbol",
        "disagrees about version",
        "Unknown rela relocation",
        "Rust panic",
        "unknown relocation",
    ] {
        if let Some(l) = dmesg.iter().find(|l| l.contains(bad)) {
            bail!("kernel log has '{bad}': {l}");
        }
    }
    for needle in ["sluice-hello: loaded", "sluice-hello: unloaded"] {
        ensure!(
            dmesg.iter().any(|l| l.contains(needle)),
            "kernel log lacks '{needle}'"
        );
    }
    Ok(())
}
