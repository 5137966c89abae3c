//! PCI passthrough on the test bed's real Xen: QEMU gets an IOMMU and an `e1000e` on a
//! user-mode network (`restrict=on`: nothing leaves QEMU; one `hostfwd` port on
//! 127.0.0.1), Xen gets its IOMMU options, dom0 loads `xen-pciback` and makes the NIC
//! assignable (`xl pci-assignable-add`), and one guest step gets it in its `xl` config
//! (`pci = [ ... ]`). The guest is Debian's Linux with [`guest_initramfs`]: it loads
//! `xen-pcifront` and `e1000e`, takes a DHCP lease from QEMU and receives what the host
//! sends it through the `hostfwd` port ([`spawn_sender`]), printing `@@XENPT` markers
//! on its console.

use crate::initramfs::Initramfs;
use crate::kernel::HostKernel;
use crate::scenario::{Boot, GuestStep, GuestType};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where QEMU puts the NIC (`addr=7` on q35's root bus), as `xl` and pciback name it.
pub const NIC_BDF: &str = "00:07.0";
/// The guest's listening port behind `hostfwd`.
pub const GUEST_PORT: u16 = 5555;

/// A QEMU NIC that Xen passes through to one guest step ([`GuestStep::with_passed_nic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedNic {
    /// QEMU's IOMMU device, e.g. `intel-iommu,intremap=on,caching-mode=on`.
    pub iommu: String,
    /// Words added to Xen's command line, e.g. `iommu=verbose`.
    pub xen_args: String,
    /// Options after the BDF in the guest's `pci = [ 'BDF,OPTIONS' ]` (may be empty),
    /// e.g. `permissive=1`.
    pub xl_options: String,
    /// The host's end of `hostfwd` (on 127.0.0.1).
    pub host_port: u16,
}

impl PassedNic {
    /// QEMU's arguments: the IOMMU, the user network, the NIC.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-device".into(),
            self.iommu.clone(),
            "-netdev".into(),
            format!(
                "user,id=xenpt0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:{GUEST_PORT}",
                self.host_port
            ),
            "-device".into(),
            format!("e1000e,netdev=xenpt0,addr={}", &NIC_BDF[3..5]),
        ]
    }

    /// The guest's `pci =` line.
    pub fn xl_pci_line(&self) -> String {
        if self.xl_options.is_empty() {
            format!("pci = [ '{NIC_BDF}' ]")
        } else {
            format!("pci = [ '{NIC_BDF},{}' ]", self.xl_options)
        }
    }

    /// dom0 init lines (after `xen-init-dom0`; `xen-pciback` is loaded by then): the NIC
    /// (no driver in dom0) bound to pciback, and what Xen said about its IOMMU.
    pub fn dom0_setup(&self) -> String {
        format!(
            r#"xl pci-assignable-add {NIC_BDF} || fail "xl pci-assignable-add {NIC_BDF}"
echo "@@DOM0-PCI-ASSIGNABLE $(xl pci-assignable-list | tr '\n' ' ')"
xl dmesg | grep -iE 'VT-d|IOMMU|I/O virt|remapping|DMAR|AMD-Vi|x2APIC' | sed 's/^/@@DOM0-XEN-IOMMU /'
"#
        )
    }
}

impl GuestStep {
    /// The same step with the passed-through NIC `nic` (`pci = [...]` in its config).
    pub fn with_passed_nic(mut self, nic: PassedNic) -> Self {
        self.passed_nic = Some(nic);
        self
    }

    /// The same step as a PV guest (a custom kernel step is PVH otherwise): Xen 4.17
    /// passes PCI devices through to PV guests with `xen-pcifront`, not to PVH ones.
    pub fn as_pv(mut self) -> Self {
        self.guest_type = GuestType::Pv;
        self
    }
}

impl Boot {
    /// The one step with a passed-through NIC, and its NIC.
    pub fn passed_nic(&self) -> Option<(usize, &PassedNic)> {
        self.steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.passed_nic.as_ref().map(|n| (i, n)))
    }
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
say() { echo "@@XENPT $*"; }
dmesg_tail() { dmesg | grep -iE "$1" | tail -n 40 | sed 's/^/@@XENPT-DMESG /'; }
say BEGIN
while read -r m; do insmod "$m" || say INSMOD-FAILED "$m"; done < /modules.list
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
say PCI $(ls /sys/bus/pci/devices 2>/dev/null)
if [ ! -e /sys/class/net/eth0 ]; then
  say NO-ETH0
  dmesg_tail 'pci|e1000|xen|swiotlb|msi|irq'
  say END
  poweroff -f
fi
say ETH0 $(cat /sys/class/net/eth0/address)
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -t 20 -s /udhcpc.sh 2>&1 | while read -r l; do say DHCP "$l"; done
say ADDR $(ip -4 addr show eth0 | grep inet)
(nc -l -p 5555 | sha256sum > /sum) &
sleep 1
say LISTENING "$xenpt_token"
wait
s=$(cat /sum)
say SHA "${s%% *}"
say IRQ $(grep -E 'eth0' /proc/interrupts | tr -s ' ' | tr '\n' ';')
dmesg_tail 'pcifront|e1000e|swiotlb|msi'
say END
poweroff -f
"#;

/// busybox udhcpc's script: the leased address and the default route (also the
/// Sluice guest's in `passthrough-linux`).
pub const UDHCPC: &str = r#"#!/bin/busybox sh
if [ "$1" = bound ]; then
  ip addr add $ip/${mask:-24} dev $interface
  [ -n "$router" ] && ip route add default via ${router%% *}
fi
"#;

/// The guest's initramfs in `dir`: busybox, [`INIT`], `xen-pcifront` and `e1000e` with
/// their dependencies from Debian's kernel.
pub fn guest_initramfs(kernel: &HostKernel, dir: &Path) -> Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir.join("staging"));
    let ir = Initramfs::new(&dir.join("staging"))?;
    ir.busybox()?;
    ir.bytes("/init", INIT.as_bytes(), 0o755)?;
    ir.bytes("/udhcpc.sh", UDHCPC.as_bytes(), 0o755)?;
    let mut list = String::new();
    for (i, m) in kernel
        .modules_in_load_order(&["xen-pcifront", "e1000e"])?
        .iter()
        .enumerate()
    {
        let name = m.file_name().context("module name")?.to_string_lossy();
        let dst = format!("/lib/modules/{i:02}-{name}");
        ir.file(m, &dst)?;
        list.push_str(&dst);
        list.push('\n');
    }
    ir.bytes("/modules.list", list.as_bytes(), 0o644)?;
    let out = dir.join("xenpt-initramfs.cpio");
    ir.pack(&out)?;
    Ok(out)
}

/// `bytes` of xorshift data written to `path`, and their sha256 (hex).
pub fn payload(path: &Path, bytes: usize) -> Result<String> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut data = Vec::with_capacity(bytes + 8);
    while data.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(bytes);
    std::fs::write(path, &data)?;
    Ok(crate::pattern::sha256_hex(&data))
}

/// Sends `payload` to 127.0.0.1:`port`; a refused or reset connection (the guest's
/// `nc` not listening yet) is retried, 30 times at most, a second apart. Returns the
/// time the successful send took.
pub fn send(port: u16, payload: &Path) -> Result<Duration> {
    send_counting(port, payload, &AtomicUsize::new(0))
}

/// [`send`], adding to `progress` each 64 KiB the host's socket took (a watchdog can
/// tell a stalled transfer from a slow one).
pub fn send_counting(port: u16, payload: &Path, progress: &AtomicUsize) -> Result<Duration> {
    let data = std::fs::read(payload)?;
    let mut last = None;
    for _ in 0..30 {
        let ts = Instant::now();
        let r = (|| -> std::io::Result<()> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            for chunk in data.chunks(64 << 10) {
                s.write_all(chunk)?;
                progress.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            s.flush()?;
            s.shutdown(std::net::Shutdown::Write)
        })();
        match r {
            Ok(()) => return Ok(ts.elapsed()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("cannot send to the guest: {last:?}")
}

/// A free TCP port on 127.0.0.1 (for `hostfwd`).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Watches the serial log `log` (rewritten by each run) for the guest's
/// `@@XENPT LISTENING <token>` and then sends `payload` to `port`. Ends with `None`
/// when `stop` is set before the guest listened.
pub fn spawn_sender(
    log: PathBuf,
    token: String,
    port: u16,
    payload: PathBuf,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Option<Result<Duration>>> {
    let needle = format!("@@XENPT LISTENING {token}");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let seen = std::fs::read(&log)
                .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false);
            if seen {
                return Some(send(port, &payload));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(opts: &str) -> PassedNic {
        PassedNic {
            iommu: "intel-iommu,intremap=on".into(),
            xen_args: "iommu=verbose".into(),
            xl_options: opts.into(),
            host_port: 4567,
        }
    }

    #[test]
    fn qemu_and_xl_lines() {
        let a = nic("").qemu_args();
        assert_eq!(a[1], "intel-iommu,intremap=on");
        assert!(a[3].contains("restrict=on,hostfwd=tcp:127.0.0.1:4567-:5555"));
        assert_eq!(a[5], "e1000e,netdev=xenpt0,addr=07");
        assert_eq!(nic("").xl_pci_line(), "pci = [ '00:07.0' ]");
        assert_eq!(
            nic("permissive=1").xl_pci_line(),
            "pci = [ '00:07.0,permissive=1' ]"
        );
    }

    #[test]
    fn payload_is_deterministic_and_hashed() {
        let dir = std::env::temp_dir().join(format!("sluice-xenpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("p.bin");
        let a = payload(&p, 1000).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1000);
        assert_eq!(a, payload(&p, 1000).unwrap());
        assert_ne!(a, payload(&p, 1001).unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }
}
