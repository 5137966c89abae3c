//! A real Debian 12 dom0: a root file system built from Debian's archive with
//! `mmdebstrap` (systemd as init, Debian's `xen-system-amd64`, libvirt's libxl driver,
//! the host's Debian kernel ABI), as an ext4 image that QEMU boots under Debian's Xen.
//!
//! Cached in `build/debian-dom0/`: `rootfs.img` (sparse, about 1.3 GiB used), the
//! kernel, its initrd and the uncompressed Xen taken from the image's `/boot`. A stamp
//! names the package list, the kernel and the setup script; a change rebuilds it
//! (about 5 min with a warm apt cache), anything else reuses it. Runs never write the
//! image: each boots a qcow2 overlay of it.

use crate::kernel::HostKernel;
use crate::paths::build_dir;
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Installed with their dependencies (no Recommends), besides `linux-image-<ABI>`.
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "procps",
    "e2fsprogs",
    "logrotate",
    "initramfs-tools",
    "xen-system-amd64",
    "xen-utils-4.17",
    "xenstore-utils",
    "libvirt-clients",
    "libvirt-daemon",
    "libvirt-daemon-driver-xen",
    "libvirt-daemon-system",
];

/// Debian 12's archive: the kernel ABI the host runs may only be in bookworm-security.
const SOURCES: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];

/// Run once in the new tree (chroot, /proc and /dev mounted by mmdebstrap): a root
/// shell on Xen's console (`hvc0`) for the harness, a small initrd, no timers that
/// would run apt or fstrim in the middle of a test, and libvirtd started on demand
/// (each of these costs tens of seconds of a TCG boot).
const SETUP: &str = r#"set -e
echo sluice-dom0 > /etc/hostname
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > /etc/fstab
passwd -d root
# Under TCG on a loaded host udev takes minutes to announce devices and xen.service
# minutes to start: systemd's 90 s defaults would fail the boot, not the test.
mkdir -p /etc/systemd/system.conf.d
printf '[Manager]\nDefaultDeviceTimeoutSec=1200s\nDefaultTimeoutStartSec=1200s\n' \
  > /etc/systemd/system.conf.d/sluice-testbed.conf
# The root shell on hvc0: serial-getty@hvc0 binds to dev-hvc0.device (udev), this
# one does not.
systemctl mask serial-getty@hvc0.service
cat > /etc/systemd/system/sluice-testbed-shell.service <<'EOF'
[Unit]
Description=Root shell on hvc0 for the Sluice test bed
After=systemd-user-sessions.service
[Service]
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 hvc0 linux
Type=idle
Restart=always
UtmpIdentifier=hvc0
TTYPath=/dev/hvc0
TTYReset=yes
TTYVHangup=yes
[Install]
WantedBy=multi-user.target
EOF
systemctl enable sluice-testbed-shell.service
# login(1) gives up after LOGIN_TIMEOUT (60 s) when a loaded TCG dom0 is slow to reach the
# shell: its session scope then fails ("No PIDs left to attach") and the boot is degraded.
sed -i 's/^LOGIN_TIMEOUT.*/LOGIN_TIMEOUT\t0/' /etc/login.defs
cat > /root/.bash_profile <<'EOF'
set +o emacs +o vi
stty cols 4000 2>/dev/null
export PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive
PS1='dom0# '
echo "@@DOM0-SHELL-READY $(uname -r)"
EOF
# xen-blkfront: the domU boots the same image and initrd with its root on xvda.
printf 'virtio_pci\nvirtio_blk\next4\nxen_blkfront\n' >> /etc/initramfs-tools/modules
sed -i 's/^MODULES=.*/MODULES=list/' /etc/initramfs-tools/initramfs.conf
update-initramfs -u -k all
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  logrotate.timer systemd-tmpfiles-clean.timer e2scrub_reap.service systemd-binfmt.service
# Minutes under TCG at every boot; the test starts libvirtd when it uses virsh.
systemctl disable libvirtd.service libvirt-guests.service
apt-get clean
"#;

/// The cached image and what boots it.
#[derive(Debug, Clone)]
pub struct Dom0Image {
    /// ext4 root file system (dom0's `/dev/vda`).
    pub rootfs: PathBuf,
    /// The image's `/boot/vmlinuz-<ABI>` and `/boot/initrd.img-<ABI>`.
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    /// The image's `/boot/xen-4.17-amd64.gz`, uncompressed (QEMU's multiboot loader).
    pub xen: PathBuf,
}

/// `build/debian-dom0/`.
pub fn cache_dir() -> PathBuf {
    build_dir().join("debian-dom0")
}

fn stamp_text(kernel: &HostKernel) -> String {
    format!(
        "packages: {} linux-image-{}\nsources:\n{}\nsetup:\n{SETUP}",
        PACKAGES.join(" "),
        kernel.version,
        SOURCES.join("\n")
    )
}

/// Builds the image unless the cache already holds this package list, kernel and setup.
pub fn ensure(kernel: &HostKernel) -> Result<Dom0Image> {
    let dir = cache_dir();
    let img = Dom0Image {
        rootfs: dir.join("rootfs.img"),
        vmlinuz: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        xen: dir.join("xen"),
    };
    let stamp = dir.join("stamp");
    let want = stamp_text(kernel);
    let complete = [&img.rootfs, &img.vmlinuz, &img.initrd, &img.xen]
        .iter()
        .all(|p| p.is_file());
    if complete && fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(img);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    let tree = dir.join("tree");
    bootstrap(kernel, &dir, &tree)?;
    let boot = tree.join("boot");
    fs::copy(
        boot.join(format!("vmlinuz-{}", kernel.version)),
        &img.vmlinuz,
    )?;
    fs::copy(
        boot.join(format!("initrd.img-{}", kernel.version)),
        &img.initrd,
    )?;
    gunzip(&boot.join("xen-4.17-amd64.gz"), &img.xen)?;
    // Sparse 4 GiB ext4 filled from the tree (owners and modes as in the tree).
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "sluice-dom0", "-d"])
        .arg(&tree)
        .arg(&img.rootfs)
        .arg("4G")
        .status()
        .context("running mkfs.ext4")?;
    ensure!(st.success(), "mkfs.ext4 -d {} failed: {st}", tree.display());
    fs::remove_dir_all(&tree)?;
    fs::write(&stamp, want)?;
    Ok(img)
}

fn bootstrap(kernel: &HostKernel, dir: &Path, tree: &Path) -> Result<()> {
    let which = Command::new("sh")
        .args(["-c", "command -v mmdebstrap"])
        .output()?;
    if !which.status.success() {
        bail!("mmdebstrap not found: run `cargo xtask setup` (apt-get install mmdebstrap)");
    }
    let setup = dir.join("setup.sh");
    fs::write(&setup, SETUP)?;
    let include = format!("{},linux-image-{}", PACKAGES.join(","), kernel.version);
    let mut c = Command::new("mmdebstrap");
    c.args(["--variant=minbase", "--mode=root", "--quiet"])
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg(format!("--include={include}"))
        .arg(format!("--customize-hook=copy-in {} /tmp", setup.display()))
        .arg("--customize-hook=chroot \"$1\" sh /tmp/setup.sh")
        .arg("--customize-hook=rm -f \"$1/tmp/setup.sh\"")
        .arg("bookworm")
        .arg(tree)
        .args(SOURCES);
    let st = c.status().context("running mmdebstrap")?;
    ensure!(st.success(), "mmdebstrap failed: {st}");
    Ok(())
}

fn gunzip(src: &Path, dst: &Path) -> Result<()> {
    let out = fs::File::create(dst)?;
    let st = Command::new("gzip")
        .arg("-dc")
        .arg(src)
        .stdout(out)
        .status()
        .context("running gzip")?;
    ensure!(st.success(), "gzip -dc {} failed: {st}", src.display());
    Ok(())
}
