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
/// a QEMU virtio disk (a raw file on the host, read back after the run; discards in
/// dom0 punch holes in it).
#[derive(Debug, Clone)]
pub struct Disk {
    pub size_mib: u64,
    pub backend: BlockBackend,
    /// Logical (and physical) sector size of dom0's virtio disk: 512 or 4096. The
    /// backend passes it on to the guest (`sector-size` in xenstore).
    pub sector_size: u32,
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
    /// Writes 5 MiB of pattern at a quarter of the disk and discards (`blkdiscard`) the
    /// first 4 MiB of it; the host then checks that those 4 MiB are a hole in the image
    /// (unallocated, reading as zeroes) and that the 5th MiB is intact.
    Discard { disk: usize },
    /// Writes 1 MiB at three quarters of the disk; with the disk idle dom0 detaches it
    /// (`xl block-detach`) and attaches it again (`xl block-attach`); the guest waits for
    /// it to vanish and come back, then reads the data back.
    DetachAttach { disk: usize },
    /// Writes 1 MiB; with the disk idle dom0 kills the userspace block backend
    /// (SIGKILL) and starts it again; the guest then reads the data back and writes and
    /// reads another 1 MiB. Userspace disks only.
    RestartBackend { disk: usize },
    /// Writes 1 MiB; with the disk idle the guest unloads its blkfront module (`rmmod`)
    /// and loads it again; the disk comes back and the data reads back.
    ReloadFrontend { disk: usize },
    /// The guest sees the disk's logical sector size ([`Disk::sector_size`]).
    SectorSize { disk: usize },
}

impl Workload {
    /// The check id printed by the guest, e.g. `pattern-xvda`.
    pub fn id(&self) -> String {
        match self {
            Workload::Pattern { disk } => format!("pattern-{}", vdev(*disk)),
            Workload::Ext4 { disk } => format!("ext4-{}", vdev(*disk)),
            Workload::ConsoleRoundTrip => "console-roundtrip".into(),
            Workload::SeqRead { disk, .. } => format!("read-{}", vdev(*disk)),
            Workload::Discard { disk } => format!("discard-{}", vdev(*disk)),
            Workload::DetachAttach { disk } => format!("reattach-{}", vdev(*disk)),
            Workload::RestartBackend { disk } => format!("backend-restart-{}", vdev(*disk)),
            Workload::ReloadFrontend { disk } => format!("frontend-reload-{}", vdev(*disk)),
            Workload::SectorSize { disk } => format!("sector-size-{}", vdev(*disk)),
        }
    }

    /// How many checks pass for this workload: the guest's, plus the host's checks of
    /// the image after the run (`images::prepare` registers them).
    pub fn checks(&self) -> usize {
        1 + match self {
            Workload::Pattern { .. }
            | Workload::Ext4 { .. }
            | Workload::DetachAttach { .. }
            | Workload::ReloadFrontend { .. } => 1,
            Workload::Discard { .. } | Workload::RestartBackend { .. } => 2,
            Workload::ConsoleRoundTrip | Workload::SeqRead { .. } | Workload::SectorSize { .. } => {
                0
            }
        }
    }

    /// The disk this workload uses, if any.
    pub fn disk(&self) -> Option<usize> {
        match self {
            Workload::ConsoleRoundTrip => None,
            Workload::Pattern { disk }
            | Workload::Ext4 { disk }
            | Workload::SeqRead { disk, .. }
            | Workload::Discard { disk }
            | Workload::DetachAttach { disk }
            | Workload::RestartBackend { disk }
            | Workload::ReloadFrontend { disk }
            | Workload::SectorSize { disk } => Some(*disk),
        }
    }

    /// The 512-byte sectors this workload writes, as `(first, count)` ranges, so that
    /// workloads sharing a disk stay apart (see [`crate::pattern::pattern_sectors`] for
    /// [`Workload::Pattern`]). `None`: the whole disk (ext4) or nothing written.
    pub fn regions(&self, disk_sectors: u64) -> Option<Vec<(u64, u64)>> {
        const MIB: u64 = (1 << 20) / crate::pattern::SECTOR;
        let q = disk_sectors / 4 / MIB * MIB;
        match self {
            Workload::Pattern { .. } => Some(
                crate::pattern::pattern_sectors(disk_sectors / MIB)
                    .iter()
                    .map(|&s| (s, MIB))
                    .collect(),
            ),
            Workload::Discard { .. } => Some(vec![(q, 5 * MIB)]),
            Workload::DetachAttach { .. } => Some(vec![(3 * q, MIB)]),
            Workload::RestartBackend { .. } => Some(vec![(3 * q + 4 * MIB, 2 * MIB)]),
            Workload::ReloadFrontend { .. } => Some(vec![(q / 2, MIB)]),
            Workload::Ext4 { .. } | Workload::SeqRead { .. } | Workload::SectorSize { .. } => None,
            Workload::ConsoleRoundTrip => None,
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
                    sector_size: 512,
                })
                .collect(),
            workloads: w.to_vec(),
        }
    }

    /// The same step with disk `disk` using `bytes`-byte sectors.
    pub fn with_sector_size(mut self, disk: usize, bytes: u32) -> Self {
        self.disks[disk].sector_size = bytes;
        self
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
    /// Checks a passing run reports (guest and host), see [`Workload::checks`].
    pub fn checks(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.workloads)
            .map(Workload::checks)
            .sum()
    }

    /// True when some disk is served by the kernel's blkback (so it gets loaded).
    pub fn needs_kernel_blkback(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.disks)
            .any(|d| d.backend == BlockBackend::KernelBlkback)
    }
}

/// Whether the guests' block frontend can be unloaded and loaded again with its disks
/// attached ([`Workload::ReloadFrontend`]): `SLUICE_TESTBED_BLKFRONT=sluice` (set by
/// `cargo xtask` when the guests run `sluice-blkfront.ko`). Stock `xen-blkfront` cannot:
/// xenbus pins its module while a device is bound, and after an unbind its device
/// stays Closed (its probe does not announce Initialising again), so the backend never
/// offers the disk anew without the toolstack.
pub fn guest_blkfront_reloads() -> bool {
    std::env::var("SLUICE_TESTBED_BLKFRONT").is_ok_and(|v| v == "sluice")
}

/// PV: console, raw pattern, discard, detach/re-attach (and a blkfront reload, see
/// [`guest_blkfront_reloads`]) on disk 0, ext4 on disk 1. PVH: console, raw pattern on disk 0, ext4 on a disk with 4096-byte
/// sectors.
pub fn standard_steps(suffix: &str, backend: BlockBackend, restart: bool) -> Vec<GuestStep> {
    let disks = [backend.clone(), backend];
    let mut pv = vec![
        Workload::ConsoleRoundTrip,
        Workload::Pattern { disk: 0 },
        Workload::Discard { disk: 0 },
        Workload::DetachAttach { disk: 0 },
        Workload::Ext4 { disk: 1 },
    ];
    if restart {
        pv.push(Workload::RestartBackend { disk: 0 });
    }
    if guest_blkfront_reloads() {
        // Last: it takes every disk away for a moment.
        pv.push(Workload::ReloadFrontend { disk: 0 });
    }
    let pvh = [
        Workload::ConsoleRoundTrip,
        Workload::Pattern { disk: 0 },
        Workload::SectorSize { disk: 1 },
        Workload::Ext4 { disk: 1 },
    ];
    vec![
        GuestStep::new(&format!("pv-{suffix}"), GuestType::Pv, &disks, &pv),
        GuestStep::new(&format!("pvh-{suffix}"), GuestType::Pvh, &disks, &pvh)
            .with_sector_size(1, 4096),
    ]
}
