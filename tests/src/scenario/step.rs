//! [`GuestStep`]: one domU of a boot, its disks, vif, frontend modules and workloads,
//! and its builder methods; [`CustomKernel`] for steps that boot a kernel of their own.

use super::{BlockBackend, Disk, GuestType, NetBackend, NetFrontend, Vif, Workload};
use std::path::PathBuf;

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
