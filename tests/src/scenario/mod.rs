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

/// Who serves a guest's network interface (`vif`) in dom0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetBackend {
    /// A userspace daemon in dom0 (`sluice-netback`, a plain [`Dom0Daemon`]) that watches
    /// `backend/vif`; the vif line names the hotplug script
    /// `/etc/xen/scripts/vif-userspace` (puts the daemon's tap on the bridge, reports
    /// `hotplug-status connected`); `xen-netback.ko` is not loaded in that boot.
    Userspace,
    /// Linux's `xen-netback` with Xen's stock `vif-bridge` script. Both would watch
    /// `backend/vif`, so the two kinds take turns: a step with a kernel vif stops the
    /// [`Dom0Daemon::serves_net`] daemons and loads `xen-netback.ko`; a step with a
    /// userspace vif unloads it and starts them (same-boot A/B comparisons).
    Kernel,
}

/// Who drives a guest's vif in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFrontend {
    /// The kernel's `xen-netfront`, loaded at boot.
    Stock,
    /// A module file on the host (e.g. `sluice-netfront.ko`, built for the guest
    /// kernel), loaded at boot instead of `xen-netfront`; its module name is the file
    /// stem with `-` as `_`.
    Module(PathBuf),
}

/// A guest's one network interface: who serves it in dom0 and who drives it in the
/// guest ([`GuestStep::with_vif`], [`GuestStep::with_vif_frontend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vif {
    /// dom0's end.
    pub backend: NetBackend,
    /// The guest's end.
    pub frontend: NetFrontend,
}

impl Vif {
    /// The frontend module's file on the host and its module name, when the guest's end
    /// is a module of ours.
    pub fn module(&self) -> Option<(&PathBuf, String)> {
        match &self.frontend {
            NetFrontend::Stock => None,
            NetFrontend::Module(ko) => Some((
                ko,
                ko.file_stem()
                    .map(|n| n.to_string_lossy().replace('-', "_"))
                    .unwrap_or_default(),
            )),
        }
    }
}

/// dom0's bridge for guests' vifs, and its address (`/24`).
pub const NET_BRIDGE: &str = "xenbr0";
/// dom0's address on [`NET_BRIDGE`].
pub const NET_DOM0_IP: &str = "10.99.0.1";

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
    /// Attached read-only (`access=ro`: `mode` = `r` for the backend).
    pub readonly: bool,
    /// The dom0 device of an earlier step's disk `(step, disk)` instead of an image of
    /// its own ([`GuestStep::with_disk_of`]): a fresh guest reads what another left.
    pub of: Option<(usize, usize)>,
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
    /// A secondary console: dom0 adds `device/console/1` to the running guest
    /// (`sluice-console-add`, served by `sluice-consoleback`); the guest moves it from
    /// the kernel's hvc_xen to `sluice-consfront.ko` (sysfs unbind + bind), dom0 types a
    /// line into its pty and the guest answers on `/dev/sluicecons1` with its sha256.
    SecondaryConsole,
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
    /// A read-only disk ([`GuestStep::with_readonly`]): the guest sees it read-only,
    /// reads work, an O_DIRECT write fails; the host finds the image untouched.
    ReadOnly { disk: usize },
    /// fio on the raw disk (libaio, O_DIRECT): 1 MiB sequential writes filling it, then
    /// 4 KiB random reads and writes at queue depth 32 and 1 MiB sequential reads at
    /// depth 8, `seconds` each. Results in [`crate::BootReport::fio`]; a benchmark, it
    /// checks only that fio ran. Takes the whole disk.
    Fio { disk: usize, seconds: u32 },
    /// `sluice-hostile-blkfront` (`tests/hostile-blkfront`, a userspace frontend using
    /// `/dev/xen/gntalloc`, `/dev/xen/evtchn` and `/dev/xen/xenbus`) takes over the disk
    /// and attacks its backend: ungranted and read-only ring grants, garbage xenstore
    /// nodes, hostile requests (bad grants, sectors, segment counts and ranges, indirect
    /// pages, operations), one valid 80 KiB write read back, then a runaway `req_prod`.
    /// Meanwhile a well-behaved frontend in the same program keeps the step's next
    /// userspace disk ([`GuestStep::hostile_steady_disk`]) busy with 32 KiB write +
    /// read-back rounds, each exact, and hands it back (Initialising) at the end.
    /// Then dom0 checks that the backend idles (no spinning thread) and detaches the
    /// device (`xl block-detach`: the backend must let a device it gave up on go), and the
    /// guest loads its blkfront for its other disks, so later workloads on them prove the same
    /// daemon still serves its other devices. Host side: the image keeps its size and
    /// holds nothing but the valid write; dom0's step checks that the backend's log has
    /// its refusal lines. Userspace disks only; the step must not load blkfront at boot
    /// ([`GuestStep::without_blkfront_at_boot`]) and this disk has no other workload.
    HostileFrontend { disk: usize },
    /// The disk's backend misbehaves in `mode` (`sluice-hostile-blkback`,
    /// `tests/hostile-blkback`, named by [`GuestStep::with_block_daemon`]; the harness
    /// passes it `xvdX=MODE`). The guest reads the disk (served, except for
    /// [`BackendMisbehaviour::WrongRing`]), then an O_DIRECT write must fail within a
    /// bound (no hang), the kernel log must have the frontend's line naming the problem
    /// ([`BackendMisbehaviour::log_line`]), and a later read must fail too (the device
    /// failed). `sluice-blkfront` only (stock xen-blkfront has no I/O timeout); give the
    /// step a short `io_timeout` ([`GuestStep::with_blkfront_args`]).
    MisbehavingBackend {
        disk: usize,
        mode: BackendMisbehaviour,
    },
    /// Crash consistency with a backend crash: record writers (four, each writing
    /// 64 KiB records with O_DIRECT, each followed by an fsync, i.e. a flush request;
    /// a record is *acknowledged* when both completed) and fio random writes at queue
    /// depth 8 keep the disk busy while dom0 SIGKILLs the userspace block backend and
    /// starts it again. The guest's blkfront carries on (no I/O error; each writer
    /// acknowledges more records afterwards), and every acknowledged record reads back
    /// intact. Userspace disks only; takes the whole disk.
    CrashKill { disk: usize },
    /// Crash consistency with the guest destroyed: the guest asks dom0 to `xl destroy`
    /// it once its disk has taken 200 more writes, then runs the record writers and fio
    /// as in [`Workload::CrashKill`], printing `@@ACK WRITER RECORD` for each record
    /// acknowledged, until it is destroyed mid-write. Alone in its step (the guest never
    /// finishes); a later step's [`Workload::CrashVerify`] checks its disk.
    CrashDestroy { disk: usize },
    /// A fresh guest on the disk of an earlier step's [`Workload::CrashDestroy`]
    /// ([`GuestStep::with_disk_of`]): the harness types the number of records each
    /// writer had acknowledged (from the `@@ACK` lines of that step's console), and
    /// every one of them must read back intact.
    CrashVerify { disk: usize },
    /// The step's vif ([`GuestStep::with_vif`], either frontend): one transmit and one
    /// receive queue per guest vCPU, a static address (`10.99.0.<10 + step>`), ping dom0
    /// and be pinged by dom0, then a 64 MiB TCP transfer (busybox `nc`, random data)
    /// guest → dom0 and one dom0 → guest, each receiver's sha256 compared with the
    /// sender's (dom0 compares, through dom0 actions).
    Net,
    /// After [`Workload::Net`], for a vif driven by a module of ours
    /// ([`NetFrontend::Module`]): link down, the vif unbound (xenbus holds one module
    /// reference per bound device), the module's reference count back to 0, `rmmod`
    /// (bounded), no `eth0` left, a clean kernel log; then `insmod` again and
    /// [`Workload::Net`] once more with 8 MiB each way.
    NetReloadFrontend,
    /// After [`Workload::Net`]: dom0 SIGKILLs the userspace net backend daemon and starts
    /// it again with the guest running; the guest then pings dom0 (a bounded number of
    /// tries while the new daemon takes the vif over) and dom0 pings the guest.
    NetRestartBackend,
    /// After [`Workload::Net`] (the vif is up): `iperf3` TCP against dom0's `iperf3 -s`,
    /// `seconds` per run, guest → dom0 and dom0 → guest (`-R`), 1 and 4 streams; one
    /// `@@NETPERF DIR STREAMS MBIT/S` line per run ([`crate::net::NetPerfSample`]).
    /// Passes when every run reported; asserts no speed.
    NetPerf { seconds: u32 },
    /// After [`Workload::Net`]: dom0 hot-unplugs the vif (`xl network-detach`), eth0
    /// must go away, dom0 plugs it in again (`xl network-attach`, the same
    /// specification), and the new eth0 must carry traffic: ping both ways and 8 MiB
    /// each way with sha256 compared.
    NetDetachAttach,
    /// `sluice-hostile-netfront` (`tests/hostile-netfront`) attacks sluice-netback through
    /// the step's second vif (`device/vif/1`, unbound from xen-netfront), while the first
    /// vif pings dom0 every second (every ping must be answered); then dom0's check of
    /// the daemon's log ([`crate::hostile_net`]). Needs a userspace vif with the stock
    /// frontend.
    HostileNetfront,
    /// After [`Workload::Net`], where the frontend offers `feature-sg` (stock
    /// xen-netfront, sluice-netfront.ko): dom0 sets MTU 9000 on the vif's interface and
    /// the bridge, the guest on eth0; pings of 8972 data bytes both ways must cross
    /// unfragmented (the guest's IP fragment and reassembly counters unchanged, its eth0
    /// byte counters up by a 9000-byte packet per ping and answer), 8 MiB each way over
    /// TCP with sha256 compared; then MTU 1500 everywhere again: 1472-byte pings cross
    /// unfragmented, 8972-byte pings only in fragments (the counters' negative control).
    /// Guest and dom0 side in `src/net.rs`.
    NetJumbo,
    /// The step's vif is served by `sluice-hostile-netback` (`tests/hostile-netback`, a
    /// [`Dom0Daemon::serves_net`] daemon named by [`GuestStep::with_net_daemon`], started
    /// with the step's modes in order: one per connection) and misbehaves in `mode` at
    /// the guest's first packet. For a vif driven by a module of ours: the module loaded
    /// (again), eth0 up, packets sent, then within a bound the module's line
    /// ([`NetMisbehaviour::log_line`]) and, unless the mode only drops a packet
    /// ([`NetMisbehaviour::fails_device`]), carrier off; a clean kernel log; the vif
    /// unbound and the module unloaded (bounded), no eth0 left. One per connection: a
    /// step may hold several, each reloading the module.
    NetMisbehavingBackend { mode: NetMisbehaviour },
    /// The soak (`cargo xtask soak`, [`crate::soak`]): fio for `seconds` on the raw disk
    /// (libaio, O_DIRECT, `--verify=crc32c` with a verify backlog, fatal on a mismatch):
    /// 4 KiB random reads and writes at depth 16 on its first half and 64 KiB
    /// sequential writes, each read back and verified, on its second half, at once;
    /// then a short write + verify of 8 MiB (the backend still serves). One
    /// `@@SOAK` line per job ([`crate::soak::SoakJob`]). Takes the whole disk; for
    /// steps run together ([`GuestStep::with_together`]).
    Soak { disk: usize, seconds: u32 },
    /// Last in a step: the kernel log has no WARNING, BUG, Oops, call trace or hung
    /// task, and `rmmod` of the guest's blkfront succeeds (bounded) and takes every
    /// disk away, failed devices included.
    UnloadFrontend,
}

/// How `sluice-hostile-blkback` misbehaves on a disk ([`Workload::MisbehavingBackend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendMisbehaviour {
    /// Answers the first write with an id no slot has.
    BogusId,
    /// Pushes a response for a request never sent at the first write.
    Unsolicited,
    /// Answers the first write as a read.
    OpMismatch,
    /// Maps a grant that is not the ring: never answers (the frontend's I/O timeout).
    WrongRing,
    /// Serves reads, then stops answering at the first write without a state change.
    Vanish,
}

impl BackendMisbehaviour {
    /// Every mode.
    pub const ALL: [BackendMisbehaviour; 5] = [
        BackendMisbehaviour::BogusId,
        BackendMisbehaviour::Unsolicited,
        BackendMisbehaviour::OpMismatch,
        BackendMisbehaviour::WrongRing,
        BackendMisbehaviour::Vanish,
    ];

    /// The mode's name on `sluice-hostile-blkback`'s command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendMisbehaviour::BogusId => "bogus-id",
            BackendMisbehaviour::Unsolicited => "unsolicited",
            BackendMisbehaviour::OpMismatch => "op-mismatch",
            BackendMisbehaviour::WrongRing => "wrong-ring",
            BackendMisbehaviour::Vanish => "vanish",
        }
    }

    /// What `sluice-blkfront` logs (after `sluice-blkfront: xvdX: `).
    pub fn log_line(self) -> &'static str {
        match self {
            BackendMisbehaviour::BogusId => "response id 0xdeadbeef is out of range",
            BackendMisbehaviour::Unsolicited => "answers no request in flight",
            BackendMisbehaviour::OpMismatch => "has operation 0, the request 1",
            BackendMisbehaviour::WrongRing | BackendMisbehaviour::Vanish => "I/O timed out",
        }
    }
}

/// How `sluice-hostile-netback` misbehaves at a connection
/// ([`Workload::NetMisbehavingBackend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMisbehaviour {
    /// A TX response with id 0xdead (never sent).
    BogusId,
    /// RX `rsp_prod` 8 past the posted requests.
    Unsolicited,
    /// Stops answering, state stays Connected (the TX watchdog's timeout).
    Vanish,
    /// An RX response with data past its page and a garbage extra-info slot.
    BadRx,
    /// TX `rsp_prod` 0x40000000 ahead.
    Runaway,
}

impl NetMisbehaviour {
    /// Every mode.
    pub const ALL: [NetMisbehaviour; 5] = [
        NetMisbehaviour::BogusId,
        NetMisbehaviour::Unsolicited,
        NetMisbehaviour::BadRx,
        NetMisbehaviour::Runaway,
        NetMisbehaviour::Vanish,
    ];

    /// The mode's name on `sluice-hostile-netback`'s command line.
    pub fn name(self) -> &'static str {
        match self {
            NetMisbehaviour::BogusId => "bogus-id",
            NetMisbehaviour::Unsolicited => "unsolicited",
            NetMisbehaviour::Vanish => "vanish",
            NetMisbehaviour::BadRx => "bad-rx",
            NetMisbehaviour::Runaway => "runaway",
        }
    }

    /// What `sluice-netfront` logs (after `sluice-netfront: eth0: `).
    pub fn log_line(self) -> &'static str {
        match self {
            NetMisbehaviour::BogusId => "tx response id 57005 out of range; device failed",
            NetMisbehaviour::Unsolicited | NetMisbehaviour::Runaway => {
                "ring: peer's rsp_prod [0-9]* is impossible"
            }
            NetMisbehaviour::Vanish => "backend not answering; device failed",
            NetMisbehaviour::BadRx => "malformed rx packet",
        }
    }

    /// Whether the device fails; a malformed RX packet is only dropped and counted,
    /// as xen-netfront does (netfront-core's design: PROOF.md).
    pub fn fails_device(self) -> bool {
        self != NetMisbehaviour::BadRx
    }
}

/// Bytes `sluice-hostile-blkfront` writes validly (its `VALID_BYTES`: 4 direct + 16
/// indirect pages), at [`Workload::regions`].
pub const HOSTILE_WRITE_BYTES: u64 = 20 * 4096;

/// Sectors the hostile frontend's steady device writes ([`GuestStep::hostile_steady_disk`];
/// its `STEADY_BYTES`).
pub const HOSTILE_STEADY_SECTORS: u64 = 8 * 4096 / crate::pattern::SECTOR;

/// Lines sluice-blkback logs when it refuses what the hostile frontend does; dom0 greps
/// its log for each after a [`Workload::HostileFrontend`] step.
pub const HOSTILE_LOG_LINES: &[&str] = &[
    "refusing request",
    "grant copy of gref",
    "lie outside the disk",
    "is not a number",
    "closing the device",
    "disconnecting this device",
    // The flood of bad requests: rate limited, the rest counted.
    "similar message(s) suppressed",
];

/// Most lines the block backend's log may hold after the hostile frontend's step: its
/// flood of 10^4 bad requests alone would be as many lines without the log rate limit
/// (the whole log held 341 lines after a flood of 10^5).
pub const HOSTILE_LOG_MAX_LINES: u64 = 2000;

impl Workload {
    /// The check id printed by the guest, e.g. `pattern-xvda`.
    pub fn id(&self) -> String {
        match self {
            Workload::Pattern { disk } => format!("pattern-{}", vdev(*disk)),
            Workload::Ext4 { disk } => format!("ext4-{}", vdev(*disk)),
            Workload::ConsoleRoundTrip => "console-roundtrip".into(),
            Workload::SecondaryConsole => "console-secondary".into(),
            Workload::SeqRead { disk, .. } => format!("read-{}", vdev(*disk)),
            Workload::Discard { disk } => format!("discard-{}", vdev(*disk)),
            Workload::DetachAttach { disk } => format!("reattach-{}", vdev(*disk)),
            Workload::RestartBackend { disk } => format!("backend-restart-{}", vdev(*disk)),
            Workload::ReloadFrontend { disk } => format!("frontend-reload-{}", vdev(*disk)),
            Workload::SectorSize { disk } => format!("sector-size-{}", vdev(*disk)),
            Workload::ReadOnly { disk } => format!("read-only-{}", vdev(*disk)),
            Workload::Fio { disk, .. } => format!("fio-{}", vdev(*disk)),
            Workload::Soak { disk, .. } => format!("soak-{}", vdev(*disk)),
            Workload::HostileFrontend { disk } => format!("hostile-{}", vdev(*disk)),
            Workload::MisbehavingBackend { disk, mode } => {
                format!("backend-{}-{}", mode.name(), vdev(*disk))
            }
            Workload::UnloadFrontend => "blkfront-unload".into(),
            Workload::CrashKill { disk } => format!("crash-kill-{}", vdev(*disk)),
            Workload::CrashDestroy { disk } => format!("crash-destroy-{}", vdev(*disk)),
            Workload::CrashVerify { disk } => format!("crash-verify-{}", vdev(*disk)),
            Workload::Net => "net".into(),
            Workload::NetRestartBackend => "net-backend-restart".into(),
            Workload::NetReloadFrontend => "net-frontend-reload".into(),
            Workload::NetPerf { .. } => "net-perf".into(),
            Workload::NetDetachAttach => "net-reattach".into(),
            Workload::HostileNetfront => "hostile-netfront".into(),
            Workload::NetJumbo => "net-jumbo".into(),
            Workload::NetMisbehavingBackend { mode } => format!("net-backend-{}", mode.name()),
        }
    }

    /// How many checks pass for this workload: the guest's, plus the host's checks of
    /// the image after the run (`images::prepare` registers them), plus, for
    /// [`Workload::HostileFrontend`], dom0's check of the backend's log.
    pub fn checks(&self) -> usize {
        1 + match self {
            Workload::Pattern { .. }
            | Workload::Ext4 { .. }
            | Workload::DetachAttach { .. }
            | Workload::ReloadFrontend { .. } => 1,
            Workload::Discard { .. } | Workload::RestartBackend { .. } => 2,
            Workload::ReadOnly { .. } => 1,
            // The image check (host), and dom0's check of the backend's log.
            Workload::HostileFrontend { .. } => 2,
            // dom0's check of sluice-netback's log.
            Workload::HostileNetfront => 1,
            Workload::ConsoleRoundTrip
            | Workload::SecondaryConsole
            | Workload::SeqRead { .. }
            | Workload::SectorSize { .. }
            | Workload::Fio { .. }
            | Workload::Soak { .. }
            | Workload::MisbehavingBackend { .. }
            | Workload::CrashKill { .. }
            | Workload::CrashDestroy { .. }
            | Workload::CrashVerify { .. }
            | Workload::UnloadFrontend
            | Workload::Net
            | Workload::NetRestartBackend
            | Workload::NetReloadFrontend
            | Workload::NetPerf { .. }
            | Workload::NetDetachAttach
            | Workload::NetJumbo
            | Workload::NetMisbehavingBackend { .. } => 0,
        }
    }

    /// The disk this workload uses, if any.
    pub fn disk(&self) -> Option<usize> {
        match self {
            Workload::ConsoleRoundTrip
            | Workload::SecondaryConsole
            | Workload::UnloadFrontend
            | Workload::Net
            | Workload::NetRestartBackend
            | Workload::NetReloadFrontend
            | Workload::NetPerf { .. }
            | Workload::NetDetachAttach
            | Workload::HostileNetfront
            | Workload::NetJumbo
            | Workload::NetMisbehavingBackend { .. } => None,
            Workload::Pattern { disk }
            | Workload::Ext4 { disk }
            | Workload::SeqRead { disk, .. }
            | Workload::Discard { disk }
            | Workload::DetachAttach { disk }
            | Workload::RestartBackend { disk }
            | Workload::ReloadFrontend { disk }
            | Workload::SectorSize { disk }
            | Workload::ReadOnly { disk }
            | Workload::Fio { disk, .. }
            | Workload::Soak { disk, .. }
            | Workload::HostileFrontend { disk }
            | Workload::MisbehavingBackend { disk, .. }
            | Workload::CrashKill { disk }
            | Workload::CrashDestroy { disk }
            | Workload::CrashVerify { disk } => Some(*disk),
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
            Workload::HostileFrontend { .. } => Some(vec![(
                2 * q + 4 * MIB,
                HOSTILE_WRITE_BYTES / crate::pattern::SECTOR,
            )]),
            Workload::Ext4 { .. }
            | Workload::SeqRead { .. }
            | Workload::SectorSize { .. }
            | Workload::ReadOnly { .. }
            | Workload::Fio { .. }
            | Workload::Soak { .. }
            | Workload::CrashKill { .. }
            | Workload::CrashDestroy { .. }
            | Workload::CrashVerify { .. }
            | Workload::MisbehavingBackend { .. } => None,
            Workload::ConsoleRoundTrip
            | Workload::SecondaryConsole
            | Workload::UnloadFrontend
            | Workload::Net
            | Workload::NetRestartBackend
            | Workload::NetReloadFrontend
            | Workload::NetPerf { .. }
            | Workload::NetDetachAttach
            | Workload::HostileNetfront
            | Workload::NetJumbo
            | Workload::NetMisbehavingBackend { .. } => None,
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
    /// Whether the guest loads its blkfront module at boot (true unless
    /// [`GuestStep::without_blkfront_at_boot`]).
    pub blkfront_at_boot: bool,
    /// A block frontend module on the host loaded instead of the kernel's
    /// `xen-blkfront` (e.g. `sluice-blkfront.ko`, built against the guest kernel's
    /// headers), see [`GuestStep::with_blkfront_module`]. `None`: the kernel's.
    pub blkfront_module: Option<PathBuf>,
    /// A kernel of our own instead of Debian's Linux with the test initramfs: a PVH
    /// ELF booted without ramdisk. It has no workloads; its console output is returned
    /// in [`crate::BootReport::consoles`] and the step ends when the domain does.
    pub kernel: Option<CustomKernel>,
    /// The [`Dom0Daemon::serves_block`] daemon that serves this step's userspace disks
    /// ([`GuestStep::with_block_daemon`]); `None`: every block daemon no step names.
    pub block_daemon: Option<String>,
    /// The [`Dom0Daemon::serves_net`] daemon that serves this step's userspace vif
    /// ([`GuestStep::with_net_daemon`]); `None`: every net daemon no step names.
    pub net_daemon: Option<String>,
    /// Arguments for the guest's blkfront module at boot (`insmod KO ARGS`).
    pub blkfront_args: Vec<String>,
    /// One vif ([`GuestStep::with_vif`], [`GuestStep::with_vif_frontend`]).
    pub vif: Option<Vif>,
    /// The guest's vCPUs (`vcpus =` in its config; 1 unless a step asks for more).
    pub vcpus: u32,
    /// A QEMU NIC passed through to this guest by Xen ([`GuestStep::with_passed_nic`]).
    pub passed_nic: Option<crate::pci_passthrough::PassedNic>,
    /// The group of steps started at once ([`GuestStep::with_together`]); `None`: alone.
    pub together: Option<String>,
}

/// A guest kernel other than the test bed's Linux ([`GuestStep::kernel`]).
#[derive(Debug, Clone)]
pub struct CustomKernel {
    /// The ELF on the host (copied into dom0).
    pub image: PathBuf,
    /// Its command line (PVH start info).
    pub cmdline: String,
    /// An initramfs on the host passed as the domain's ramdisk (copied into dom0);
    /// `None`: none.
    pub ramdisk: Option<PathBuf>,
}

impl GuestStep {
    /// A PVH guest running `image` with `cmdline`, no disks.
    pub fn custom_kernel(name: &str, image: PathBuf, cmdline: &str) -> Self {
        GuestStep {
            name: name.into(),
            guest_type: GuestType::Pvh,
            memory_mib: 64,
            disks: vec![],
            workloads: vec![],
            blkfront_at_boot: false,
            blkfront_module: None,
            block_daemon: None,
            net_daemon: None,
            blkfront_args: vec![],
            vif: None,
            vcpus: 1,
            passed_nic: None,
            together: None,
            kernel: Some(CustomKernel {
                image,
                cmdline: cmdline.into(),
                ramdisk: None,
            }),
        }
    }

    /// A custom-kernel step's ramdisk and memory (e.g. Debian's Linux with an initramfs
    /// of the caller's, as a PVH domU).
    pub fn with_ramdisk(mut self, ramdisk: PathBuf, memory_mib: u32) -> Self {
        if let Some(k) = &mut self.kernel {
            k.ramdisk = Some(ramdisk);
        }
        self.memory_mib = memory_mib;
        self
    }

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
                    readonly: false,
                    of: None,
                })
                .collect(),
            workloads: w.to_vec(),
            kernel: None,
            blkfront_at_boot: true,
            blkfront_module: None,
            block_daemon: None,
            net_daemon: None,
            blkfront_args: vec![],
            vif: None,
            vcpus: 1,
            passed_nic: None,
            together: None,
        }
    }

    /// The same step started at once with the other steps of group `group` (they must
    /// follow each other in [`Boot::steps`]): dom0 creates every guest of the group
    /// without a console (`xl create`, xenconsoled logs each console), waits for all
    /// of them to power off (bounded), and the harness then judges each guest's
    /// checks from its console log ([`crate::together`]). Such steps take no dom0
    /// actions and no console input, so only workloads that need neither are allowed
    /// (checked when the images are built).
    pub fn with_together(mut self, group: &str) -> Self {
        self.together = Some(group.into());
        self
    }

    /// Gives the guest one vif served by `backend` (MAC `00:16:3e:00:99:<step>`, on
    /// [`NET_BRIDGE`]); the guest loads stock `xen-netfront`.
    pub fn with_vif(self, backend: NetBackend) -> Self {
        self.with_vif_frontend(backend, NetFrontend::Stock)
    }

    /// Gives the guest one vif served by `backend` and driven by `frontend` (a module
    /// of ours is loaded at boot instead of `xen-netfront`).
    pub fn with_vif_frontend(mut self, backend: NetBackend, frontend: NetFrontend) -> Self {
        self.vif = Some(Vif { backend, frontend });
        self
    }

    /// The same step with `ko` (a module file on the host) as the guest's block
    /// frontend instead of the kernel's `xen-blkfront`: steps of one boot can use
    /// different frontends (same-run frontend comparisons, `tests/xen_bench.rs`).
    pub fn with_blkfront_module(mut self, ko: PathBuf) -> Self {
        self.blkfront_module = Some(ko);
        self
    }

    /// The same step with the guest's blkfront left unloaded at boot, so that its disks
    /// stay free for a userspace frontend ([`Workload::HostileFrontend`], which loads it
    /// afterwards).
    pub fn without_blkfront_at_boot(mut self) -> Self {
        self.blkfront_at_boot = false;
        self
    }

    /// The disk a [`Workload::HostileFrontend`] on `hostile` keeps busy meanwhile with
    /// a well-behaved frontend (the first other writable disk with a userspace
    /// backend), writing [`HOSTILE_STEADY_SECTORS`] at [`Workload::regions`] of it.
    pub fn hostile_steady_disk(&self, hostile: usize) -> Option<usize> {
        self.disks
            .iter()
            .enumerate()
            .find(|(i, d)| *i != hostile && !d.readonly && d.backend == BlockBackend::Userspace)
            .map(|(i, _)| i)
    }

    /// The same step with its userspace disks served by the block daemon `name` alone
    /// (one of [`Boot::daemons`] with [`Dom0Daemon::serves_block`]): dom0 stops the
    /// others before the step. A daemon some step names runs only for such steps. It
    /// is started with its [`Dom0Daemon::args`] plus `xvdX=MODE` for each
    /// [`Workload::MisbehavingBackend`] of the step.
    pub fn with_block_daemon(mut self, name: &str) -> Self {
        self.block_daemon = Some(name.into());
        self
    }

    /// The same step with its userspace vif served by the net daemon `name` alone (one
    /// of [`Boot::daemons`] with [`Dom0Daemon::serves_net`]), e.g. two builds of
    /// sluice-netback taking turns in one boot; a daemon some step names runs only for
    /// such steps.
    pub fn with_net_daemon(mut self, name: &str) -> Self {
        self.net_daemon = Some(name.into());
        self
    }

    /// The same step with these arguments for the guest's blkfront module at boot
    /// (e.g. `io_timeout=10` for `sluice-blkfront`).
    pub fn with_blkfront_args(mut self, args: &[&str]) -> Self {
        self.blkfront_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The same step with disk `disk` attached read-only.
    pub fn with_readonly(mut self, disk: usize) -> Self {
        self.disks[disk].readonly = true;
        self
    }

    /// The same step with disk `disk` being earlier step `step`'s disk `of_disk` (the
    /// same dom0 device and image; its size and sector size are that disk's).
    pub fn with_disk_of(mut self, disk: usize, step: usize, of_disk: usize) -> Self {
        self.disks[disk].of = Some((step, of_disk));
        self
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
    /// A userspace net backend (`sluice-netback`): it runs only during steps whose vif
    /// is [`NetBackend::Userspace`]; for kernel-vif steps it is stopped and
    /// `xen-netback.ko` is loaded (and unloaded again after), as for block.
    pub serves_net: bool,
}

/// One Xen boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Names the run and log folders: `build/testbed-logs/NAME/`.
    pub name: String,
    pub console: ConsoleBackend,
    pub daemons: Vec<Dom0Daemon>,
    pub steps: Vec<GuestStep>,
    /// After the guest steps, dom0 runs the first [`Workload::Fio`]'s jobs directly on
    /// that disk's device: the ceiling the guests' numbers compare with (step `dom0`).
    pub fio_in_dom0: bool,
}

impl Boot {
    /// Checks a passing run reports (guest and host), see [`Workload::checks`].
    pub fn checks(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.workloads)
            .map(Workload::checks)
            .sum::<usize>()
            + self.group_checks()
    }

    /// Checks a passing run reports beyond its workloads' (one per group of steps run
    /// together: dom0's check of the block daemon, [`crate::together`]).
    pub fn group_checks(&self) -> usize {
        crate::together::groups(self).len()
    }

    /// Whether a guest runs fio ([`Workload::Fio`], [`Workload::Soak`], the crash
    /// workloads): the guests' initramfs then carries it.
    pub fn guests_run_fio(&self) -> bool {
        self.steps.iter().flat_map(|s| &s.workloads).any(|w| {
            matches!(
                w,
                Workload::Fio { .. }
                    | Workload::Soak { .. }
                    | Workload::CrashKill { .. }
                    | Workload::CrashDestroy { .. }
            )
        })
    }

    /// Whether a step runs [`Workload::SecondaryConsole`] (the guests then get
    /// `sluice-consfront.ko`, dom0 `sluice-console-add`).
    pub fn has_secondary_console(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.workloads.contains(&Workload::SecondaryConsole))
    }

    /// The first fio workload: (step index, disk, seconds).
    pub fn first_fio(&self) -> Option<(usize, usize, u32)> {
        self.steps.iter().enumerate().find_map(|(i, s)| {
            s.workloads.iter().find_map(|w| match w {
                Workload::Fio { disk, seconds } => Some((i, *disk, *seconds)),
                _ => None,
            })
        })
    }

    /// The block daemons that serve `step`'s userspace disks: the one it names
    /// ([`GuestStep::with_block_daemon`]), or else every [`Dom0Daemon::serves_block`]
    /// daemon that no step names.
    pub fn block_daemons(&self, step: &GuestStep) -> Vec<&Dom0Daemon> {
        let named = |d: &Dom0Daemon| {
            self.steps
                .iter()
                .any(|s| s.block_daemon.as_deref() == Some(&d.name))
        };
        self.daemons
            .iter()
            .filter(|d| d.serves_block)
            .filter(|d| match &step.block_daemon {
                Some(n) => &d.name == n,
                None => !named(d),
            })
            .collect()
    }

    /// The net daemons that serve `step`'s userspace vif: the one it names
    /// ([`GuestStep::with_net_daemon`]), or else every [`Dom0Daemon::serves_net`] daemon
    /// that no step names.
    pub fn net_daemons(&self, step: &GuestStep) -> Vec<&Dom0Daemon> {
        let named = |d: &Dom0Daemon| {
            self.steps
                .iter()
                .any(|s| s.net_daemon.as_deref() == Some(&d.name))
        };
        self.daemons
            .iter()
            .filter(|d| d.serves_net)
            .filter(|d| match &step.net_daemon {
                Some(n) => &d.name == n,
                None => !named(d),
            })
            .collect()
    }

    /// True when some disk is served by the kernel's blkback (so it gets loaded).
    /// Whether any step has a vif (dom0 then loads `tun` and `bridge` and makes
    /// [`NET_BRIDGE`]).
    pub fn has_vifs(&self) -> bool {
        self.steps.iter().any(|s| s.vif.is_some())
    }

    /// Whether a step measures its vif with iperf3 (guests and dom0 then get `iperf3`,
    /// dom0 runs `iperf3 -s`).
    pub fn has_net_perf(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.workloads)
            .any(|w| matches!(w, Workload::NetPerf { .. }))
    }

    /// Whether any step's vif is served by Linux's netback.
    pub fn needs_kernel_netback(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.vif.as_ref().map(|v| v.backend) == Some(NetBackend::Kernel))
    }

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
/// [`guest_blkfront_reloads`]) on disk 0, ext4 on disk 1, a read-only disk 2. PVH: console, raw pattern on disk 0, ext4 on a disk with 4096-byte
/// sectors.
pub fn standard_steps(suffix: &str, backend: BlockBackend, restart: bool) -> Vec<GuestStep> {
    let disks = [backend.clone(), backend.clone()];
    let mut pv = vec![
        Workload::ReadOnly { disk: 2 },
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
        GuestStep::new(
            &format!("pv-{suffix}"),
            GuestType::Pv,
            &[backend.clone(), backend.clone(), backend],
            &pv,
        )
        .with_readonly(2),
        GuestStep::new(&format!("pvh-{suffix}"), GuestType::Pvh, &disks, &pvh)
            .with_sector_size(1, 4096),
    ]
}
