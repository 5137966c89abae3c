//! The typed description of one test-bed run: one Xen boot, the dom0 daemons it starts,
//! and a list of guest steps, each one domU with its disks and workloads.

use std::path::PathBuf;

/// Guest virtualisation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    Pv,
    /// PVH; under QEMU TCG it needs `tsc_mode="native"` (added automatically).
    Pvh,
}

impl GuestType {
    pub fn xl_type(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
        }
    }
}

/// Who serves a virtual disk in dom0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockBackend {
    /// Linux's `xen-blkback` with the stock `block` hotplug script.
    KernelBlkback,
    /// A userspace daemon in dom0 (e.g. `sluice-blkback`) that watches `backend/vbd`.
    /// The disk line keeps `backendtype=phy` but names the no-op hotplug script
    /// `/etc/xen/scripts/block-userspace` (it only reports `hotplug-status connected`),
    /// and `xen-blkback.ko` is not loaded, so the daemon is the only backend.
    Userspace,
}

/// Who serves guest consoles in dom0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleBackend {
    /// Xen's `xenconsoled`.
    Xenconsoled,
    /// A userspace daemon from [`Boot::daemons`] (e.g. `sluice-consoleback`);
    /// `xenconsoled` is not started.
    Userspace,
}

/// One virtual disk of a guest. Disk `i` is `xvd` + `a+i` in the guest; in dom0 it is
/// a QEMU virtio disk (a raw file on the host, read back after the run).
#[derive(Debug, Clone)]
pub struct Disk {
    pub size_mib: u64,
    pub backend: BlockBackend,
}

/// What a guest does, each one reported as a separate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// Writes a 1 MiB pseudo-random pattern at three sector offsets of the disk
    /// (start, an unaligned middle, near the end), reads it back uncached; the host
    /// then compares the image bytes and checks that the neighbouring sectors are zero.
    Pattern { disk: usize },
    /// mkfs.ext4, mount, write files, sync, umount, e2fsck -fn, remount, re-read with
    /// sha256; the host then runs e2fsck on the image and extracts files with debugfs.
    Ext4 { disk: usize },
    /// The host types a line into the guest console (through dom0's `xl console`) and
    /// the guest answers with its sha256.
    ConsoleRoundTrip,
    /// Sequential 1 MiB O_DIRECT reads of the first `mib` MiB of the disk, `rounds`
    /// times, each timed by the guest (for same-boot backend comparisons).
    SeqRead { disk: usize, mib: u32, rounds: u32 },
}

impl Workload {
    /// The check id printed by the guest, e.g. `pattern-xvda`.
    pub fn id(&self) -> String {
        match self {
            Workload::Pattern { disk } => format!("pattern-{}", vdev(*disk)),
            Workload::Ext4 { disk } => format!("ext4-{}", vdev(*disk)),
            Workload::ConsoleRoundTrip => "console-roundtrip".into(),
            Workload::SeqRead { disk, .. } => format!("read-{}", vdev(*disk)),
        }
    }
}

/// `xvda`, `xvdb`, ...
pub fn vdev(disk: usize) -> String {
    format!("xvd{}", (b'a' + disk as u8) as char)
}

/// One domU: created with `xl create -c`, runs its workloads, powers off.
#[derive(Debug, Clone)]
pub struct GuestStep {
    /// Domain name and step id: `[a-z0-9-]+`.
    pub name: String,
    pub guest_type: GuestType,
    pub memory_mib: u32,
    pub disks: Vec<Disk>,
    pub workloads: Vec<Workload>,
}

impl GuestStep {
    /// The backend serving this step's disks (`None` without disks). A step's disks all
    /// use one kind (checked when the images are built).
    pub fn block_backend(&self) -> Option<BlockBackend> {
        self.disks.first().map(|d| d.backend.clone())
    }

    /// A guest with one disk per entry of `disks` (64 MiB each) and these workloads.
    pub fn new(name: &str, guest_type: GuestType, disks: &[BlockBackend], w: &[Workload]) -> Self {
        GuestStep {
            name: name.into(),
            guest_type,
            memory_mib: 192,
            disks: disks
                .iter()
                .map(|b| Disk {
                    size_mib: 64,
                    backend: b.clone(),
                })
                .collect(),
            workloads: w.to_vec(),
        }
    }
}

/// A program started in dom0 after xenstored and before any guest.
#[derive(Debug, Clone)]
pub struct Dom0Daemon {
    /// Short name: the binary is `/sluice/bin/NAME` in dom0, its output goes to
    /// `/var/log/sluice/NAME.log` (dumped to the serial console at the end).
    pub name: String,
    /// The host binary (copied with its ldd libraries).
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// A userspace block backend: it runs only during steps whose disks are
    /// [`BlockBackend::Userspace`]; for kernel-blkback steps it is stopped and
    /// `xen-blkback.ko` is loaded (and unloaded again after), so both kinds of backend
    /// can take turns in one boot (same-boot A/B comparisons).
    pub serves_block: bool,
}

/// One Xen boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Names the run and log folders: `build/testbed-logs/NAME/`.
    pub name: String,
    pub console: ConsoleBackend,
    pub daemons: Vec<Dom0Daemon>,
    pub steps: Vec<GuestStep>,
}

impl Boot {
    /// True when some disk is served by the kernel's blkback (so it gets loaded).
    pub fn needs_kernel_blkback(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.disks)
            .any(|d| d.backend == BlockBackend::KernelBlkback)
    }
}
