//! dom0's initramfs (Xen's toolstack, kernel modules, daemons, the guest kernel and
//! initramfs), its /init, and its script for each guest step (which daemons serve the
//! step, `xl create`, dom0's checks after the guest).

use super::dom0_sh::{
    DOM0_DIAG, DOM0_FINISH, DOM0_LIB, USERSPACE_BLOCK_SCRIPT_TEXT, USERSPACE_VIF_SCRIPT_TEXT,
};
use super::guest_sh::FIO_JOBS;
use super::staging::{find_libgcc_s, stage_modules, which};
use super::xl::{guest_cfg, USERSPACE_BLOCK_SCRIPT, USERSPACE_VIF_SCRIPT};
use crate::initramfs::{Initramfs, LIB_DIR};
use crate::kernel::HostKernel;
use crate::paths::kernel_cache_dir;
use crate::scenario::{vdev, BlockBackend, Boot, ConsoleBackend, GuestStep, NetBackend, Workload};
use crate::serial::VirtioDisk;
use crate::xenpkgs::XenTree;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// Xen tools dom0 needs, from the tools dir of the package tree.
const XEN_TOOLS: &[&str] = &[
    "xl",
    "xenstored",
    "xenconsoled",
    "xenconsole",
    "xen-init-dom0",
    "libxl-save-helper",
    "lsevtchn",
];

/// xenstore-utils programs (one binary under several names).
const XENSTORE_TOOLS: &[&str] = &[
    "xenstore",
    "xenstore-read",
    "xenstore-write",
    "xenstore-list",
    "xenstore-ls",
    "xenstore-rm",
    "xenstore-exists",
    "xenstore-chmod",
    "xenstore-watch",
];

/// dom0 kernel modules, in load order (dependencies are added from modules.dep).
const DOM0_MODULES: &[&str] = &[
    "xen-privcmd",
    "xenfs",
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "loop",
    "virtio_pci",
    "virtio_blk",
];

/// dom0 modules for guests' vifs: the taps sluice-netback makes and the bridge.
const DOM0_NET_MODULES: &[&str] = &["tun", "bridge"];

/// dom0's initramfs at `dom0_initrd`, with the guests' initramfs `guest_initrd` and
/// links for the virtio `disks`.
pub(super) fn dom0_initramfs(
    boot: &Boot,
    xen: &XenTree,
    kernel: &HostKernel,
    dir: &Path,
    guest_initrd: &Path,
    disks: &[VirtioDisk],
    dom0_initrd: &Path,
) -> Result<()> {
    let r = Initramfs::new(&dir.join("dom0-root"))?;
    r.busybox()?;
    let libs = [xen.lib_dir()];
    let tools = xen.tools_dir()?;
    let tools_in = xen.tools_dir_in_guest()?;
    for t in XEN_TOOLS {
        r.elf(&tools.join(t), &format!("{tools_in}/{t}"), &libs)?;
    }
    for t in XENSTORE_TOOLS {
        r.elf(
            &xen.root.join("usr/bin").join(t),
            &format!("/usr/bin/{t}"),
            &libs,
        )?;
    }
    // The hotplug scripts are bash and take a lock with flock.
    r.elf(Path::new("/bin/bash"), "/bin/bash", &[])?;
    r.elf(&which("flock")?, "/usr/bin/flock", &[])?;
    if boot.fio_in_dom0 {
        r.elf(&which("fio")?, "/usr/bin/fio", &[])?;
        r.bytes("/sluice/fio.sh", FIO_JOBS.as_bytes(), 0o644)?;
    }
    if dom0_perf() {
        // The host's perf (Debian's linux-perf): dom0's steps sample themselves.
        r.elf(&which("perf")?, "/usr/bin/perf", &[])?;
    }
    // glibc dlopens libgcc_s for pthread_cancel; without it `xl create` aborts.
    r.file(&find_libgcc_s()?, &format!("{LIB_DIR}/libgcc_s.so.1"))?;
    r.tree(&xen.root.join("etc/xen"), "/etc/xen")?;
    r.bytes(
        &format!("/etc/xen/scripts/{USERSPACE_BLOCK_SCRIPT}"),
        USERSPACE_BLOCK_SCRIPT_TEXT.as_bytes(),
        0o755,
    )?;
    r.bytes(
        &format!("/etc/xen/scripts/{USERSPACE_VIF_SCRIPT}"),
        USERSPACE_VIF_SCRIPT_TEXT.as_bytes(),
        0o755,
    )?;
    for d in [
        "/var/lib/xen",
        "/var/lib/xenstored",
        "/var/log/xen/console",
        "/var/log/sluice",
        "/var/lock",
        "/sluice/bin",
        "/sluice/steps",
        "/sluice/guest",
    ] {
        r.dir(d)?;
    }
    r.symlink("/run", "/var/run")?;
    let mut mods = DOM0_MODULES.to_vec();
    if boot.has_vifs() {
        mods.extend_from_slice(DOM0_NET_MODULES);
    }
    if boot.passed_nic().is_some() {
        mods.push("xen-pciback");
    }
    stage_modules(&r, kernel, &mods, "/sluice/modules.list")?;
    // xen-blkback and xen-netback are loaded by the steps that use them (DOM0_LIB's
    // use_kernel_blkback, use_kernel_netback).
    let blkback: &[&str] = if boot.needs_kernel_blkback() {
        &["xen-blkback"]
    } else {
        &[]
    };
    stage_modules(&r, kernel, blkback, "/sluice/blkback.list")?;
    let netback: &[&str] = if boot.needs_kernel_netback() {
        &["xen-netback"]
    } else {
        &[]
    };
    stage_modules(&r, kernel, netback, "/sluice/netback.list")?;
    if boot.has_net_perf() {
        r.elf(&which("iperf3")?, "/usr/bin/iperf3", &[])?;
    }
    r.bytes(
        "/sluice/lib.sh",
        format!(
            "{DOM0_LIB}{}{}",
            crate::net::DOM0_NET_MTU,
            crate::together::DOM0_GROUP_LIB
        )
        .as_bytes(),
        0o644,
    )?;
    for d in &boot.daemons {
        r.elf(&d.binary, &format!("/sluice/bin/{}", d.name), &[])?;
    }
    if boot.has_secondary_console() {
        let tool = crate::cargo_bin::cargo_binary("sluice-consoleback", "sluice-console-add")?;
        r.elf(&tool, "/sluice/bin/sluice-console-add", &[])?;
    }
    r.file(
        &kernel.vmlinux(&kernel_cache_dir())?,
        "/sluice/guest/vmlinux",
    )?;
    r.file(guest_initrd, "/sluice/guest/initrd.cpio")?;
    for step in &boot.steps {
        if let Some(k) = &step.kernel {
            r.file(&k.image, &format!("/sluice/guest/{}.elf", step.name))?;
            if let Some(rd) = &k.ramdisk {
                r.file(rd, &format!("/sluice/guest/{}.ramdisk", step.name))?;
            }
        }
    }
    let serials: Vec<&str> = disks.iter().map(|d| d.serial.as_str()).collect();
    r.bytes(
        "/init",
        dom0_init(boot, &tools_in, &serials).as_bytes(),
        0o755,
    )?;
    for (si, step) in boot.steps.iter().enumerate() {
        r.bytes(
            &format!("/sluice/steps/{}.cfg", step.name),
            guest_cfg(si, step).as_bytes(),
            0o644,
        )?;
        r.bytes(
            &format!("/sluice/steps/{}.sh", step.name),
            dom0_step(boot, step).as_bytes(),
            0o644,
        )?;
    }
    for (g, range) in crate::together::groups(boot) {
        r.bytes(
            &format!("/sluice/steps/{g}.sh"),
            crate::together::dom0_script(boot, &g, &boot.steps[range]).as_bytes(),
            0o644,
        )?;
    }
    r.bytes("/sluice/finish.sh", DOM0_FINISH.as_bytes(), 0o644)?;
    r.bytes("/sluice/diag.sh", DOM0_DIAG.as_bytes(), 0o644)?;
    r.pack(dom0_initrd)?;
    Ok(())
}

/// dom0's /init: mounts, modules, xenstored, dom0 registration, daemons, console
/// daemon, disk links, then an interactive shell on the console the harness drives.
fn dom0_init(boot: &Boot, tools: &str, serials: &[&str]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"#!/bin/sh
export PATH={tools}:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH={LIB_DIR}
fail() {{ echo "@@DOM0-FAIL $*"; exec sh; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
# devtmpfs has no fd links; the hotplug lock (stat -L /dev/stdin) spins without them.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /run/xen /run/xenstored
echo "@@DOM0-INIT"
while read -r ko; do insmod "$ko" || fail "insmod $ko"; done < /sluice/modules.list
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
xenstored --pid-file /run/xenstored.pid || fail "xenstored"
i=0
until xenstore-read -s / >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 300 ] && fail "xenstored does not answer"; sleep 0.2
done
xen-init-dom0 >/dev/null || fail "xen-init-dom0"
. /sluice/lib.sh
"#
    );
    if let Some((_, nic)) = boot.passed_nic() {
        s.push_str(&nic.dom0_setup());
    }
    if boot.has_vifs() {
        let _ = write!(
            s,
            r#"ip link set lo up
ip link add name {br} type bridge 2>/dev/null || brctl addbr {br} || fail "bridge {br}"
ip addr add {ip}/24 dev {br} || fail "address of {br}"
ip link set {br} up || fail "{br} up"
"#,
            br = crate::scenario::NET_BRIDGE,
            ip = crate::scenario::NET_DOM0_IP
        );
    }
    if boot.has_net_perf() {
        let _ = writeln!(
            s,
            "iperf3 -s -D --logfile /var/log/sluice/iperf3.log || fail iperf3"
        );
    }
    for d in boot
        .daemons
        .iter()
        .filter(|d| !d.serves_block && !d.serves_net)
    {
        let _ = writeln!(s, "start_daemon {} {}", d.name, daemon_args(d));
    }
    if boot.console == ConsoleBackend::Xenconsoled {
        let _ = writeln!(
            s,
            "xenconsoled --log=guest --log-dir=/var/log/xen/console || fail xenconsoled"
        );
    }
    let _ = write!(
        s,
        r#"for want in {serials}; do
  i=0
  until [ -e /dev/$want ]; do
    for d in /sys/block/vd*; do
      [ -e "$d/serial" ] && [ "$(cat $d/serial)" = "$want" ] && ln -sf /dev/${{d##*/}} /dev/$want
    done
    [ -e /dev/$want ] && break
    i=$((i+1)); [ $i -gt 100 ] && fail "no virtio disk with serial $want"; sleep 0.1
  done
done
echo "@@DOM0-TOOLSTACK-READY"
# A session with the console as controlling tty, so the harness can interrupt a hung
# command with Ctrl-C (init is not a process-group leader, so setsid does not fork).
PS1='dom0# ' setsid cttyhack sh
poweroff -f
"#,
        serials = serials.join(" ")
    );
    s
}

/// `SLUICE_DOM0_PERF=1` (a diagnosis, for the benches): dom0 samples its CPUs with
/// `perf record` while each step's guest runs and prints the hottest symbols
/// (`@@PERF STEP ...` lines on the serial console, so in `serial.log`).
pub fn dom0_perf() -> bool {
    std::env::var("SLUICE_DOM0_PERF").is_ok_and(|v| v == "1")
}

pub fn daemon_args(d: &crate::scenario::Dom0Daemon) -> String {
    d.args
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', r"'\''"))
}

/// dom0's script for one step: create the guest with its console attached (the guest's
/// output streams to the serial console; the harness can type into it), then check
/// that every dom0 daemon survived.
///
/// When the guest asks for a dom0 action (`@@ACTION`, [`Workload::DetachAttach`]...), the
/// harness leaves the console with Ctrl-]; the script then reads one command line from
/// the console, runs it, reports its status and attaches the console again, until the
/// domain is gone.
pub(super) fn dom0_step(boot: &Boot, step: &GuestStep) -> String {
    // A watchdog prints dom0's diagnostics to the console before the harness gives up
    // (a hung `xl create` holds the shell, so the harness cannot ask afterwards).
    let watchdog = crate::run::limit(crate::run::STEP_LIMIT_SECS).as_secs() * 4 / 5;
    let n = &step.name;
    let mut s = format!(
        ". /sluice/lib.sh\necho \"@@STEP-BEGIN {n}\"\nwait_guests_gone\n{}",
        step_daemons(boot, step)
    );
    let _ = write!(
        s,
        "(sleep {watchdog}; echo \"@@STEP-WATCHDOG {n}\"; sh /sluice/diag.sh) &\nwd=$!\n\
         dom0_cpu {n} begin\n\
         perf_begin\n\
         xl create -c /sluice/steps/{n}.cfg\nrc=$?\n\
         while xl domid {n} >/dev/null 2>&1; do\n\
         \x20 echo \"@@DOM0-ACTION-READY {n}\"\n\
         \x20 action_or_gone {n} || break\n\
         \x20 echo \"@@DOM0-CONSOLE-AGAIN {n}\"\n\
         \x20 xl console {n}\n\
         done\n\
         [ -n \"$destroyer\" ] && wait $destroyer\n\
         dom0_cpu {n} end\n\
         perf_end {n}\n\
         kill $wd 2>/dev/null\n\
         check_daemons\n"
    );
    dom0_step_end(boot, step, s)
}

/// dom0's lines that stop and start the block and net daemons (and load or unload the
/// kernel's backends) so that `step`'s disks and vif are served by the right ones.
pub fn step_daemons(boot: &Boot, step: &GuestStep) -> String {
    let mut s = String::new();
    let block_daemons = boot.daemons.iter().filter(|d| d.serves_block);
    match step.block_backend() {
        Some(BlockBackend::KernelBlkback) => {
            for d in block_daemons {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            let _ = writeln!(s, "use_kernel_blkback");
        }
        Some(BlockBackend::Userspace) => {
            let _ = writeln!(s, "drop_kernel_blkback");
            let serving = boot.block_daemons(step);
            // Only this step's daemons watch backend/vbd.
            for d in block_daemons.filter(|d| !serving.iter().any(|x| x.name == d.name)) {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            // The misbehaviours go to the daemon the step names.
            let modes: Vec<String> = step
                .workloads
                .iter()
                .filter_map(|w| match w {
                    Workload::MisbehavingBackend { disk, mode } => {
                        Some(shell_quote(&format!("{}={}", vdev(*disk), mode.name())))
                    }
                    _ => None,
                })
                .collect();
            for d in serving {
                let mut args = daemon_args(d);
                if step.block_daemon.is_some() && !modes.is_empty() {
                    args = format!("{args} {}", modes.join(" "));
                }
                // A daemon another step started with other arguments starts afresh.
                if step.block_daemon.is_some() {
                    let _ = writeln!(s, "stop_daemon {}", d.name);
                }
                let _ = writeln!(s, "start_daemon {} {args}", d.name);
            }
        }
        None => {}
    }
    let net_daemons = boot.daemons.iter().filter(|d| d.serves_net);
    match step.vif.as_ref().map(|v| v.backend) {
        Some(NetBackend::Kernel) => {
            for d in net_daemons {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            let _ = writeln!(s, "use_kernel_netback");
        }
        Some(NetBackend::Userspace) => {
            let _ = writeln!(s, "drop_kernel_netback");
            let serving = boot.net_daemons(step);
            // Only this step's daemons watch backend/vif.
            for d in net_daemons.filter(|d| !serving.iter().any(|x| x.name == d.name)) {
                let _ = writeln!(s, "stop_daemon {}", d.name);
            }
            for d in serving {
                let _ = writeln!(s, "start_daemon {} {}", d.name, daemon_args(d));
            }
        }
        None => {}
    }
    s
}

/// The end of [`dom0_step`]'s script: dom0's checks after the guest.
fn dom0_step_end(boot: &Boot, step: &GuestStep, mut s: String) -> String {
    let n = &step.name;
    if step
        .workloads
        .iter()
        .any(|w| matches!(w, Workload::HostileFrontend { .. }))
    {
        // The block backend must have logged each kind of refusal.
        for d in boot.block_daemons(step) {
            for l in crate::scenario::HOSTILE_LOG_LINES {
                let _ = writeln!(
                    s,
                    "if grep -q '{l}' /var/log/sluice/{n}.log; then echo \"@@DOM0-LOG-HAS {n}: {l}\"; else echo \"@@DOM0-LOG-LACKS {n}: {l}\"; fi",
                    n = d.name
                );
            }
            let _ = writeln!(
                s,
                "echo \"@@DOM0-LOG-SIZE {n}: $(wc -l < /var/log/sluice/{n}.log) lines\"",
                n = d.name
            );
        }
    }
    crate::hostile_net::dom0_script(boot, step, &mut s);
    let _ = writeln!(s, "echo \"@@STEP-END {n} rc=$rc\"");
    s
}
