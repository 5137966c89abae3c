//! The Debian packages installed as a user would: a real Debian 12 dom0 (systemd,
//! Debian's `xen-system-amd64` and libvirt, built from Debian's archive by
//! [`sluice_testbed::debian_dom0`]) booted by Debian's Xen 4.17 in QEMU TCG.
//!
//! Two QEMU runs, three dom0 boots, on one sparse copy of the root image (the cached image
//! itself is never written; the copy carries the installed packages from run to run):
//! 1. AMD CPU (`-cpu EPYC` with SVM: Xen runs PV and PVH guests). `install`: `apt install
//!    ./sluice-backends_*.deb` and the modules package (its `sluice-hello.ko` loads with
//!    `modprobe`), the opt-in blacklist copied, both units enabled; then `systemctl reboot`.
//! 2. `boot`: the units came up under systemd after xenstored (`xen.service`),
//!    xenconsoled stopped, `sluice doctor` clean, `sluice status` shows both daemons.
//!    `pv`: `xl create` a PV guest whose disk is `script=block-userspace`; its console
//!    (read from sluice-consoleback's log) reports phase 1; `sluice status` shows the
//!    disk Connected with requests; `systemctl restart sluice-blkback`; phase 2 of the
//!    same guest after the restart. `pvh`: the same guest as PVH (no restart).
//!    `domu`: a Debian 12 domU (a copy of the image, booted from a disk sluice-blkback
//!    serves, root through the kernel's xen-blkfront) installs the modules package with
//!    apt, loads sluice-blkfront beside xen-blkfront, moves its second disk to it through
//!    sysfs, writes and reads both patterns, gives the disk up and unloads it; dom0's
//!    `xl block-detach` and `xl block-attach` of that disk (the domU waits for dom0, the
//!    two consoles coordinated) give xen-blkfront a new xenbus device, and the domU
//!    rereads p2 through it (`tests/debian-dom0/domu-check.sh`). Then `systemctl poweroff`.
//! 3. The same dom0 on an Intel CPU (`-cpu Nehalem`, [`Cpu::Intel`]): `boot` again, then
//!    `virsh`: libvirt's libxl driver creates a PV guest whose disk (`<driver
//!    name='phy'/>`, libxl's default `block` script) the daemon serves, same guest phases.
//!    Debian's libvirt 9.0 cannot start its libxl driver on the AMD TCG CPU (no model of
//!    its `cpu_map` fits Xen's `hw_caps` there: Xen hides `sep` on AMD, TCG has no `vme`;
//!    docs/package-dom0.md); on Intel Xen keeps `sep`. `purge`: `apt purge` leaves no
//!    file, unit or process behind; the postrm brings xenconsoled back.
//!
//! After QEMU exits, the host reads the guests' disk images: both patterns where the
//! guests wrote them. The checks are in `tests/debian-dom0/dom0-check.sh` (dom0) and
//! `guest-init.sh` (the guests' `/init`).
//!
//! Needs `target/debian/*.deb` (`cargo xtask package`); `cargo xtask test --suite
//! package-dom0` builds them and runs this.

use anyhow::{bail, ensure, Context, Result};
use sluice_testbed::debian_dom0::{self, Dom0Image};
use sluice_testbed::initramfs::Initramfs;
use sluice_testbed::kernel::HostKernel;
use sluice_testbed::paths::{logs_dir, repo_root, run_dir};
use sluice_testbed::pattern::pattern;
use sluice_testbed::progress::{note, step};
use sluice_testbed::run::{limit, XEN_ARGS};
use sluice_testbed::serial::Machine;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BOOT: &str = "package-dom0";
const DOM0_CHECK: &str = include_str!("../debian-dom0/dom0-check.sh");
const GUEST_INIT: &str = include_str!("../debian-dom0/guest-init.sh");
const DOMU_CHECK: &str = include_str!("../debian-dom0/domu-check.sh");
const CHECK_LIB: &str = include_str!("../debian-dom0/lib.sh");
/// Where the guests write: 1 MiB and 3 MiB into their disk, 1 MiB each.
const WRITES: &[(&str, u64)] = &[("p1", 1 << 20), ("p2", 3 << 20)];
/// The guests' disks, by virtio serial (`/dev/disk/by-id/virtio-SERIAL` in dom0); each
/// gets both patterns. `domu-data` is the Debian domU's second disk (sluice-blkfront's).
const GUEST_DISKS: &[&str] = &["guest-pv", "guest-pvh", "guest-virsh", "domu-data"];
/// The phases after `install`, in order, with the CPU whose boot runs them. `virsh` and
/// `purge` run on the Intel CPU (libvirt's libxl driver needs it); `pvh` needs the AMD one
/// (SVM). `SLUICE_PACKAGE_DOM0_PHASES=virsh,purge` (a comma-separated subset, for a short
/// rerun of some phases: `install` and `boot` always run) selects some of them.
const PHASES: &[(&str, Cpu)] = &[
    ("pv", Cpu::Amd),
    ("pvh", Cpu::Amd),
    ("domu", Cpu::Amd),
    ("virsh", Cpu::Intel),
    ("purge", Cpu::Intel),
];

/// The phases selected on this CPU.
fn phases_on(cpu: Cpu) -> Vec<&'static str> {
    let only = std::env::var("SLUICE_PACKAGE_DOM0_PHASES").ok();
    PHASES
        .iter()
        .filter(|(p, c)| {
            *c == cpu
                && only
                    .as_ref()
                    .is_none_or(|list| list.split(',').any(|x| x.trim() == *p))
        })
        .map(|(p, _)| *p)
        .collect()
}

/// The CPU QEMU gives the dom0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cpu {
    /// EPYC with SVM and NPT: Xen runs PV, PVH and HVM guests (the test bed's CPU).
    Amd,
    /// Nehalem (every feature emulated by QEMU 7.2's TCG, no VMX: Xen runs PV guests
    /// only). Debian's libvirt 9.0 names the host CPU from Xen's `hw_caps` with a model of
    /// its `cpu_map` whose features all appear there, and refuses to start its libxl
    /// driver when none does. On AMD Xen hides `sep` and TCG has no `vme`, which leaves
    /// no model; on Intel Xen keeps `sep` (`kvm64`, `Nehalem`... fit).
    Intel,
}

impl Cpu {
    fn qemu(self) -> &'static str {
        match self {
            Cpu::Amd => "EPYC,+svm,+npt,-monitor,-smap,-smep",
            Cpu::Intel => "Nehalem",
        }
    }

    /// Xen's options for this CPU. An emulated Nehalem looks vulnerable to Meltdown and
    /// L1TF (no `ARCH_CAPABILITIES`): Xen's default page-table isolation for PV guests
    /// costs a TLB flush on every guest kernel entry under TCG, and the test is not
    /// about speculation.
    fn xen_args(self) -> String {
        let a = XEN_ARGS.replace("dom0_mem=768M", "dom0_mem=1024M");
        match self {
            Cpu::Amd => a,
            Cpu::Intel => format!("{a} xpti=false pv-l1tf=false"),
        }
    }
}

#[test]
#[ignore = "builds a Debian dom0 image and boots Xen in QEMU: cargo xtask test --suite package-dom0"]
fn packages_in_a_debian_dom0() {
    if let Err(e) = run() {
        panic!("{e:#}");
    }
}

fn run() -> Result<()> {
    let kernel = HostKernel::discover()?;
    let img = step("Debian 12 dom0 image (build/debian-dom0, cached)", || {
        debian_dom0::ensure(&kernel)
    })?;
    let dir = run_dir(BOOT);
    let logs = logs_dir(BOOT);
    fs::create_dir_all(&logs)?;
    let payload = step("payload disk (debs, checks, guest initramfs)", || {
        payload(&kernel, &dir)
    })?;
    let mut disks = vec![];
    for serial in GUEST_DISKS {
        let p = dir.join(format!("{serial}.img"));
        let f = fs::File::create(&p)?;
        f.set_len(64 << 20)?;
        disks.push((p, *serial));
    }
    let root = step("dom0 root disk (sparse copy of the image)", || {
        root_copy(&img, &dir)
    })?;
    let amd = phases_on(Cpu::Amd);
    let intel = phases_on(Cpu::Intel);
    // Boots 1 and 2: install, reboot, the AMD phases; then power off for boot 3.
    let mut failed = {
        let mut m = start(Cpu::Amd, &img, &root, &payload, &disks, &logs)?;
        drive_amd(&mut m, &amd, !intel.is_empty())?
    };
    // Boot 3: the same dom0 (the same root disk) on the Intel CPU.
    if !intel.is_empty() {
        let mut m = start(Cpu::Intel, &img, &root, &payload, &disks, &logs)?;
        failed.extend(drive_intel(&mut m, &intel)?);
    }
    // A guest's disk holds both patterns when its phase passed.
    let phases = [amd, intel].concat();
    for (image, serial) in &disks {
        let owner = disk_phase(serial);
        if !phases.contains(&owner) || failed.iter().any(|(p, _)| *p == owner) {
            note(&format!(
                "host/{serial}: not checked (phase {owner} did not pass or run)"
            ));
            continue;
        }
        check_image(image).with_context(|| format!("host check of {serial}'s disk"))?;
        note(&format!("PASS host/{serial}: both patterns in the image"));
    }
    ensure!(failed.is_empty(), "failed phases: {failed:?}");
    Ok(())
}

/// dom0's root disk for this run: a sparse copy of the cached image (the image stays as
/// built; the installed packages go from one QEMU run to the next in the copy). A copy,
/// not a qcow2 overlay: `qemu-img` is in no package the test bed installs.
fn root_copy(img: &Dom0Image, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("dom0-root.img");
    let _ = fs::remove_file(&root);
    let st = Command::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(&img.rootfs)
        .arg(&root)
        .status()
        .context("running cp")?;
    ensure!(
        st.success(),
        "copying {} failed: {st}",
        img.rootfs.display()
    );
    Ok(root)
}

/// Starts QEMU on `cpu`; its console goes to `serial-<cpu>.log`.
fn start(
    cpu: Cpu,
    img: &Dom0Image,
    root: &Path,
    payload: &Path,
    disks: &[(PathBuf, &str)],
    logs: &Path,
) -> Result<Machine> {
    let name = format!("{cpu:?}").to_lowercase();
    let serial_log = logs.join(format!("serial-{name}.log"));
    let m = Machine::spawn_command(qemu(cpu, img, root, payload, disks), &serial_log, false)?;
    note(&format!(
        "QEMU started ({name} CPU: {}); console log {}",
        cpu.qemu(),
        serial_log.display()
    ));
    Ok(m)
}

/// The phase whose guest writes to the disk with this serial.
fn disk_phase(serial: &str) -> &'static str {
    match serial {
        "guest-pv" => "pv",
        "guest-pvh" => "pvh",
        "guest-virsh" => "virsh",
        _ => "domu",
    }
}

/// The payload disk: both packages, the dom0 checks, the guests' initramfs and patterns.
fn payload(kernel: &HostKernel, dir: &Path) -> Result<PathBuf> {
    let debs = repo_root().join("target/debian");
    let pick = |prefix: &str| -> Result<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(&debs)
            .with_context(|| format!("{}: run `cargo xtask package`", debs.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(prefix) && n.ends_with(".deb")
            })
            .collect();
        found.sort();
        found.pop().with_context(|| {
            format!(
                "no {prefix}*.deb in {}: run `cargo xtask package`",
                debs.display()
            )
        })
    };
    let tree = dir.join("payload");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    fs::create_dir_all(&tree)?;
    for prefix in [
        "sluice-backends_".to_string(),
        format!("sluice-frontends-modules-{}_", kernel.version),
    ] {
        let deb = pick(&prefix)?;
        fs::copy(&deb, tree.join(deb.file_name().unwrap()))?;
    }
    fs::write(tree.join("dom0-check.sh"), DOM0_CHECK)?;
    fs::write(tree.join("domu-check.sh"), DOMU_CHECK)?;
    fs::write(tree.join("lib.sh"), CHECK_LIB)?;
    let g = Initramfs::new(&dir.join("guest-root"))?;
    g.busybox()?;
    g.bytes("/init", GUEST_INIT.as_bytes(), 0o755)?;
    let mut list = String::new();
    for ko in kernel.modules_in_load_order(&["xen-blkfront"])? {
        let name = ko.file_name().unwrap().to_string_lossy().to_string();
        g.file(&ko, &format!("/lib/modules/{name}"))?;
        list += &format!("/lib/modules/{name}\n");
    }
    g.bytes("/modules.list", list.as_bytes(), 0o644)?;
    for (name, _) in WRITES {
        let data = pattern(name, 1 << 20);
        g.bytes(&format!("/{name}.bin"), &data, 0o644)?;
        fs::write(tree.join(format!("{name}.bin")), &data)?;
    }
    g.pack(&tree.join("guest.cpio"))?;
    let img = dir.join("payload.img");
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "payload", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("256M")
        .status()
        .context("running mkfs.ext4")?;
    ensure!(st.success(), "mkfs.ext4 of the payload failed: {st}");
    Ok(img)
}

fn qemu(
    cpu: Cpu,
    img: &Dom0Image,
    root: &Path,
    payload: &Path,
    guests: &[(PathBuf, &str)],
) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-M", "q35", "-accel", "tcg"])
        .args(["-cpu", cpu.qemu()])
        .args(["-m", "2048", "-smp", "2"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&img.xen)
        // dom0 runs systemd, libvirtd and two daemons: more than the initramfs dom0's.
        .args(["-append", &cpu.xen_args()])
        .arg("-initrd")
        // `nosoftlockup`: on a loaded 2-core TCG host dom0's vCPUs starve for tens of
        // seconds ("BUG: soft lockup - CPU#1 stuck for 26s! [cryptomgr_test:54]" during
        // the first boot, 2026-12-07, load 7), which the crash detector ends the run on;
        // hung tasks (blocked 120 s) are still reported, as for guests run together.
        .arg(format!(
            "{} root=/dev/vda rw console=hvc0 earlyprintk=xen quiet nosoftlockup,{}",
            img.vmlinuz.display(),
            img.initrd.display()
        ));
    // dom0's root: this run's copy (kept from boot to boot and CPU to CPU).
    let mut drives = vec![(root.to_path_buf(), "rootfs", "raw")];
    drives.push((payload.to_path_buf(), "payload", "raw,readonly=on"));
    for (p, serial) in guests {
        drives.push((p.clone(), serial, "raw"));
    }
    // The Debian domU's root: the cached image, its writes in a temporary overlay.
    drives.push((img.rootfs.clone(), "domu-root", "raw,snapshot=on"));
    for (i, (path, serial, format)) in drives.iter().enumerate() {
        c.arg("-drive").arg(format!(
            "file={},if=none,id=d{i},cache=unsafe,format={format}",
            path.display()
        ));
        c.arg("-device")
            .arg(format!("virtio-blk-pci,drive=d{i},serial={serial}"));
    }
    c
}

/// Boots 1 and 2 (AMD CPU): `install`, reboot, `boot` and `phases`; returns the phases
/// whose checks failed, with what failed. A failed `install` or a harness error (no
/// answer from dom0's shell) ends the run; a later phase's failed checks do not (each
/// phase cleans up after its guest), so one run reports every phase. With `then_intel`,
/// dom0 powers off at the end (boot 3 follows on the Intel CPU).
fn drive_amd(
    m: &mut Machine,
    phases: &[&'static str],
    then_intel: bool,
) -> Result<Vec<(&'static str, String)>> {
    boot(m, "first boot")?;
    if let Some(f) = phase(m, "install")? {
        bail!("phase install: {f}");
    }
    let mut failed = vec![];
    if !phases.is_empty() {
        m.send_line("systemctl reboot")?;
        boot(m, "reboot")?;
        for p in ["boot"].iter().chain(phases) {
            if let Some(f) = phase(m, p)? {
                failed.push((*p, f));
            }
        }
    }
    if then_intel {
        // Xen powers the machine off after dom0 (ACPI S5): QEMU exits.
        let t = Instant::now();
        m.send_line("systemctl poweroff")?;
        let st = m.wait_exit(limit(1200))?;
        ensure!(st.success(), "QEMU exited with {st} after dom0's poweroff");
        note(&format!(
            "dom0 powered off after {:.0} s",
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(failed)
}

/// Boot 3 (Intel CPU), the installed dom0 again: `boot` and `phases`.
fn drive_intel(m: &mut Machine, phases: &[&'static str]) -> Result<Vec<(&'static str, String)>> {
    boot(m, "boot on the Intel CPU")?;
    let mut failed = vec![];
    for p in ["boot"].iter().chain(phases) {
        if let Some(f) = phase(m, p)? {
            failed.push((*p, f));
        }
    }
    Ok(failed)
}

/// Waits for the root shell on hvc0 and mounts the payload.
fn boot(m: &mut Machine, what: &str) -> Result<()> {
    let t = Instant::now();
    m.expect(r"@@DOM0-SHELL-READY", limit(1200), what)?;
    note(&format!(
        "dom0 {what}: shell after {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    // The shell comes before the boot ends; the checks want it ended (any state: the
    // `boot` phase judges it) and udev's by-id links there.
    shell(m, "systemctl is-system-running --wait", 1200)?;
    note(&format!(
        "dom0 {what}: boot finished after {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    let (rc, out) = shell(
        m,
        "udevadm settle -t 600; mkdir -p /mnt/payload; mount -o ro -L payload /mnt/payload",
        900,
    )?;
    ensure!(rc == 0, "mounting the payload disk failed: {out}");
    Ok(())
}

/// The longest line typed into dom0's hvc0: Xen keeps at most 128 bytes of serial input
/// (`SERIAL_RX_SIZE`) until dom0 reads them and drops the rest, and a loaded TCG dom0
/// does not always read in time (a 133-byte line lost its end on 2026-12-07).
const MAX_LINE: usize = 120;

/// Runs a shell line in dom0; returns its exit status and output.
fn shell(m: &mut Machine, cmd: &str, secs: u64) -> Result<(i32, String)> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let line = format!("{cmd}; printf '@@RC{n}%s=%d\\n' x $?");
    ensure!(
        line.len() < MAX_LINE,
        "{} bytes typed into dom0 (Xen drops input past 128): {line}",
        line.len()
    );
    m.send_line(&line)?;
    let r = m.expect(&format!(r"@@RC{n}x=(\d+)"), limit(secs), cmd)?;
    let rc: i32 = r.group(1).parse()?;
    Ok((rc, r.before))
}

/// Runs one phase's checks: `Ok(Some(what failed))` when a check failed.
fn phase(m: &mut Machine, name: &str) -> Result<Option<String>> {
    let t = Instant::now();
    // The longest phase, domu, took 1346 s under load (2026-12-07).
    let (rc, out) = shell(m, &format!("bash /mnt/payload/dom0-check.sh {name}"), 2700)?;
    let mut passed = 0;
    let mut failed = vec![];
    for line in out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("@@CHECK "))
    {
        eprintln!("  {line}");
        if line.split_whitespace().nth(1) == Some("PASS") {
            passed += 1;
        } else {
            failed.push(line.to_string());
        }
    }
    note(&format!(
        "phase {name}: {passed} passed, {} failed, {:.0} s",
        failed.len(),
        t.elapsed().as_secs_f64()
    ));
    if rc != 0 || !failed.is_empty() || passed == 0 {
        // What dom0 knows, into the serial log. No answer means dom0's shell is in an
        // unknown state: the run ends there (a lost diagnostics line once had the next
        // phase typed into an open quote).
        shell(
            m,
            &format!("bash /mnt/payload/dom0-check.sh diag {name}"),
            300,
        )?;
        return Ok(Some(format!(
            "exit {rc}, failed: {failed:?} (log: {})",
            m.log_path().display()
        )));
    }
    Ok(None)
}

/// Both patterns at their offsets in a guest's disk image.
fn check_image(image: &Path) -> Result<()> {
    let data = fs::read(image)?;
    for (name, off) in WRITES {
        let want = pattern(name, 1 << 20);
        let at = *off as usize;
        ensure!(
            data.get(at..at + want.len()) == Some(&want[..]),
            "{name} not found at byte {at}"
        );
    }
    Ok(())
}
