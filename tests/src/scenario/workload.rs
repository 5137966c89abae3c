//! [`Workload`]: what a guest does in a step (each one a check of its own), its check
//! ids, the disk it uses and the sectors it writes; [`vdev`] names the disks.

use super::{BackendMisbehaviour, NetMisbehaviour, HOSTILE_WRITE_BYTES};

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

impl Workload {
    /// Whether a step of such workloads can run again whole on the same images after
    /// its guest died mid-run (the QEMU TCG triple fault): each writes what it then
    /// checks within the step, or only reads, so the first run's writes change no
    /// result. Not: the crash-consistency steps (they carry records between steps),
    /// the hostile and misbehaving peers and the daemon restarts, detaches and reloads
    /// (their dom0 side is not made to repeat), the soak (its figures). The benches'
    /// fio jobs are: their first job writes the whole disk again, and only the
    /// rerun's figures are read (a PVH bench guest died so on 2026-12-07).
    pub fn rerun_safe(&self) -> bool {
        matches!(
            self,
            Workload::Pattern { .. }
                | Workload::Ext4 { .. }
                | Workload::ConsoleRoundTrip
                | Workload::SeqRead { .. }
                | Workload::SectorSize { .. }
                | Workload::ReadOnly { .. }
                | Workload::Fio { .. }
        )
    }

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

#[cfg(test)]
mod tests {
    use super::Workload;

    #[test]
    fn only_self_checking_workloads_are_rerun_safe() {
        // xen-userspace's PVH step: may run again after a mid-run triple fault.
        let pvh = [
            Workload::ConsoleRoundTrip,
            Workload::Pattern { disk: 0 },
            Workload::SectorSize { disk: 1 },
            Workload::Ext4 { disk: 1 },
        ];
        assert!(pvh.iter().all(Workload::rerun_safe));
        // A bench guest's fio jobs (the fill rewrites the disk; the rerun's figures count).
        assert!(Workload::Fio {
            disk: 0,
            seconds: 10
        }
        .rerun_safe());
        // Steps carrying state to later steps, or whose dom0 side acts once: never.
        for w in [
            Workload::CrashKill { disk: 0 },
            Workload::CrashDestroy { disk: 0 },
            Workload::CrashVerify { disk: 0 },
            Workload::RestartBackend { disk: 0 },
            Workload::DetachAttach { disk: 0 },
            Workload::HostileFrontend { disk: 0 },
        ] {
            assert!(!w.rerun_safe(), "{w:?}");
        }
    }
}
