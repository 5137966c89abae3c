//! Hypercall numbers, sub-commands and argument structs (`xen/xen.h`, `sched.h`,
//! `version.h`, `features.h`, `vcpu.h`, `memory.h`) and Xen's errno values
//! (`xen/errno.h`).
//!
//! On x86_64 a hypercall puts its number in `rax` and up to five arguments in `rdi`,
//! `rsi`, `rdx`, `r10`, `r8`; it returns in `rax`, `-errno` ([`XenErrno`]) on failure.
//! Argument structs are passed by guest address.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::{xen_enum, UnknownValue};
pub use crate::types::{GuestHandle, RawDomId, RawEvtchnPort, XenPfn};

xen_enum! {
    /// Hypercall numbers (`__HYPERVISOR_*`).
    pub enum Hypercall: u64 as "hypercall" {
        /// `__HYPERVISOR_set_trap_table`
        SetTrapTable = 0 => "__HYPERVISOR_set_trap_table",
        /// `__HYPERVISOR_mmu_update`
        MmuUpdate = 1 => "__HYPERVISOR_mmu_update",
        /// `__HYPERVISOR_set_gdt`
        SetGdt = 2 => "__HYPERVISOR_set_gdt",
        /// `__HYPERVISOR_stack_switch`
        StackSwitch = 3 => "__HYPERVISOR_stack_switch",
        /// `__HYPERVISOR_set_callbacks`
        SetCallbacks = 4 => "__HYPERVISOR_set_callbacks",
        /// `__HYPERVISOR_fpu_taskswitch`
        FpuTaskswitch = 5 => "__HYPERVISOR_fpu_taskswitch",
        /// `__HYPERVISOR_sched_op_compat` (obsolete)
        SchedOpCompat = 6 => "__HYPERVISOR_sched_op_compat",
        /// `__HYPERVISOR_platform_op`
        PlatformOp = 7 => "__HYPERVISOR_platform_op",
        /// `__HYPERVISOR_set_debugreg`
        SetDebugreg = 8 => "__HYPERVISOR_set_debugreg",
        /// `__HYPERVISOR_get_debugreg`
        GetDebugreg = 9 => "__HYPERVISOR_get_debugreg",
        /// `__HYPERVISOR_update_descriptor`
        UpdateDescriptor = 10 => "__HYPERVISOR_update_descriptor",
        /// `__HYPERVISOR_memory_op` ([`XenMemOp`])
        MemoryOp = 12 => "__HYPERVISOR_memory_op",
        /// `__HYPERVISOR_multicall`
        Multicall = 13 => "__HYPERVISOR_multicall",
        /// `__HYPERVISOR_update_va_mapping`
        UpdateVaMapping = 14 => "__HYPERVISOR_update_va_mapping",
        /// `__HYPERVISOR_set_timer_op`
        SetTimerOp = 15 => "__HYPERVISOR_set_timer_op",
        /// `__HYPERVISOR_event_channel_op_compat` (obsolete)
        EventChannelOpCompat = 16 => "__HYPERVISOR_event_channel_op_compat",
        /// `__HYPERVISOR_xen_version` ([`XenVer`])
        XenVersion = 17 => "__HYPERVISOR_xen_version",
        /// `__HYPERVISOR_console_io` ([`ConsoleIo`])
        ConsoleIo = 18 => "__HYPERVISOR_console_io",
        /// `__HYPERVISOR_physdev_op_compat` (obsolete)
        PhysdevOpCompat = 19 => "__HYPERVISOR_physdev_op_compat",
        /// `__HYPERVISOR_grant_table_op` ([`crate::grant_table::GntTabOp`])
        GrantTableOp = 20 => "__HYPERVISOR_grant_table_op",
        /// `__HYPERVISOR_vm_assist`
        VmAssist = 21 => "__HYPERVISOR_vm_assist",
        /// `__HYPERVISOR_update_va_mapping_otherdomain`
        UpdateVaMappingOtherdomain = 22 => "__HYPERVISOR_update_va_mapping_otherdomain",
        /// `__HYPERVISOR_iret`
        Iret = 23 => "__HYPERVISOR_iret",
        /// `__HYPERVISOR_vcpu_op` ([`VcpuOp`])
        VcpuOp = 24 => "__HYPERVISOR_vcpu_op",
        /// `__HYPERVISOR_set_segment_base`
        SetSegmentBase = 25 => "__HYPERVISOR_set_segment_base",
        /// `__HYPERVISOR_mmuext_op`
        MmuextOp = 26 => "__HYPERVISOR_mmuext_op",
        /// `__HYPERVISOR_xsm_op`
        XsmOp = 27 => "__HYPERVISOR_xsm_op",
        /// `__HYPERVISOR_nmi_op`
        NmiOp = 28 => "__HYPERVISOR_nmi_op",
        /// `__HYPERVISOR_sched_op` ([`SchedOp`])
        SchedOp = 29 => "__HYPERVISOR_sched_op",
        /// `__HYPERVISOR_callback_op`
        CallbackOp = 30 => "__HYPERVISOR_callback_op",
        /// `__HYPERVISOR_xenoprof_op`
        XenoprofOp = 31 => "__HYPERVISOR_xenoprof_op",
        /// `__HYPERVISOR_event_channel_op` ([`crate::event_channel::EvtchnOp`])
        EventChannelOp = 32 => "__HYPERVISOR_event_channel_op",
        /// `__HYPERVISOR_physdev_op`
        PhysdevOp = 33 => "__HYPERVISOR_physdev_op",
        /// `__HYPERVISOR_hvm_op`
        HvmOp = 34 => "__HYPERVISOR_hvm_op",
        /// `__HYPERVISOR_sysctl`
        Sysctl = 35 => "__HYPERVISOR_sysctl",
        /// `__HYPERVISOR_domctl`
        Domctl = 36 => "__HYPERVISOR_domctl",
        /// `__HYPERVISOR_kexec_op`
        KexecOp = 37 => "__HYPERVISOR_kexec_op",
        /// `__HYPERVISOR_tmem_op`
        TmemOp = 38 => "__HYPERVISOR_tmem_op",
        /// `__HYPERVISOR_argo_op`
        ArgoOp = 39 => "__HYPERVISOR_argo_op",
        /// `__HYPERVISOR_xenpmu_op`
        XenpmuOp = 40 => "__HYPERVISOR_xenpmu_op",
        /// `__HYPERVISOR_dm_op`
        DmOp = 41 => "__HYPERVISOR_dm_op",
        /// `__HYPERVISOR_hypfs_op`
        HypfsOp = 42 => "__HYPERVISOR_hypfs_op",
        /// `__HYPERVISOR_arch_0` (x86: `mca`)
        Arch0 = 48 => "__HYPERVISOR_arch_0",
        /// `__HYPERVISOR_arch_1` (x86: `paging_domctl_cont`)
        Arch1 = 49 => "__HYPERVISOR_arch_1",
        /// `__HYPERVISOR_arch_2`
        Arch2 = 50 => "__HYPERVISOR_arch_2",
        /// `__HYPERVISOR_arch_3`
        Arch3 = 51 => "__HYPERVISOR_arch_3",
        /// `__HYPERVISOR_arch_4`
        Arch4 = 52 => "__HYPERVISOR_arch_4",
        /// `__HYPERVISOR_arch_5`
        Arch5 = 53 => "__HYPERVISOR_arch_5",
        /// `__HYPERVISOR_arch_6`
        Arch6 = 54 => "__HYPERVISOR_arch_6",
        /// `__HYPERVISOR_arch_7`
        Arch7 = 55 => "__HYPERVISOR_arch_7",
    }
}

xen_enum! {
    /// `HYPERVISOR_sched_op` commands (`SCHEDOP_*`).
    pub enum SchedOp: u32 as "sched op" {
        /// Give up the CPU.
        Yield = 0 => "SCHEDOP_yield",
        /// Block until an event is pending.
        Block = 1 => "SCHEDOP_block",
        /// Shut down ([`SchedShutdown`]).
        Shutdown = 2 => "SCHEDOP_shutdown",
        /// Block on a set of ports with a timeout ([`SchedPoll`]).
        Poll = 3 => "SCHEDOP_poll",
        /// Shut down another domain ([`SchedRemoteShutdown`]).
        RemoteShutdown = 4 => "SCHEDOP_remote_shutdown",
        /// Set the shutdown code without shutting down ([`SchedShutdown`]).
        ShutdownCode = 5 => "SCHEDOP_shutdown_code",
        /// Arm a watchdog.
        Watchdog = 6 => "SCHEDOP_watchdog",
        /// Override CPU pinning.
        PinOverride = 7 => "SCHEDOP_pin_override",
    }
}

xen_enum! {
    /// Shutdown reasons (`SHUTDOWN_*`).
    pub enum ShutdownReason: u32 as "shutdown reason" {
        /// Normal exit.
        Poweroff = 0 => "SHUTDOWN_poweroff",
        /// Restart.
        Reboot = 1 => "SHUTDOWN_reboot",
        /// Suspend (save state).
        Suspend = 2 => "SHUTDOWN_suspend",
        /// Crashed.
        Crash = 3 => "SHUTDOWN_crash",
        /// Watchdog expired.
        Watchdog = 4 => "SHUTDOWN_watchdog",
        /// Soft reset.
        SoftReset = 5 => "SHUTDOWN_soft_reset",
    }
}

/// `SCHEDOP_shutdown` / `SCHEDOP_shutdown_code` argument (`struct sched_shutdown`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedShutdown {
    /// [`ShutdownReason`].
    pub reason: u32,
}

/// `SCHEDOP_poll` argument (`struct sched_poll`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest pointer to `nr_ports` [`RawEvtchnPort`]s.
    pub ports: GuestHandle,
    /// Number of ports.
    pub nr_ports: u32,
    /// Padding (implicit in C).
    pub _pad0: u32,
    /// Absolute system time timeout in ns (0: none).
    pub timeout: u64,
}

/// `SCHEDOP_remote_shutdown` argument (`struct sched_remote_shutdown`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    /// The domain.
    pub domain_id: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: u16,
    /// [`ShutdownReason`].
    pub reason: u32,
}

xen_enum! {
    /// `HYPERVISOR_xen_version` commands (`XENVER_*`).
    pub enum XenVer: u32 as "xen_version op" {
        /// Returns `major << 16 | minor`.
        Version = 0 => "XENVER_version",
        /// Extra version string (16 bytes).
        Extraversion = 1 => "XENVER_extraversion",
        /// Compiler information.
        CompileInfo = 2 => "XENVER_compile_info",
        /// Capabilities string (1024 bytes).
        Capabilities = 3 => "XENVER_capabilities",
        /// Changeset string (64 bytes).
        Changeset = 4 => "XENVER_changeset",
        /// Platform parameters (`virt_start`).
        PlatformParameters = 5 => "XENVER_platform_parameters",
        /// A 32-bit submap of features ([`XenFeatureInfo`]).
        GetFeatures = 6 => "XENVER_get_features",
        /// Page size.
        Pagesize = 7 => "XENVER_pagesize",
        /// The guest handle.
        GuestHandle = 8 => "XENVER_guest_handle",
        /// Xen's command line (1024 bytes).
        Commandline = 9 => "XENVER_commandline",
        /// Build id.
        BuildId = 10 => "XENVER_build_id",
    }
}

/// Length of the `XENVER_extraversion` buffer (`xen_extraversion_t`).
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Length of the `XENVER_capabilities` buffer (`XEN_CAPABILITIES_INFO_LEN`).
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;

/// `XENVER_get_features` argument (`struct xen_feature_info`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap.
    pub submap_idx: u32,
    /// OUT: the submap; bit `n` is feature `submap_idx * 32 + n` ([`XenFeature`]).
    pub submap: u32,
}

/// Number of 32-bit feature submaps (`XENFEAT_NR_SUBMAPS`).
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

xen_enum! {
    /// Feature bit numbers (`XENFEAT_*`) of [`XenFeatureInfo::submap`]. Bit 12
    /// (`XENFEAT_grant_map_identity`) is deprecated and commented out in the header.
    pub enum XenFeature: u32 as "xen feature" {
        /// PV: writable page tables.
        WritablePageTables = 0 => "XENFEAT_writable_page_tables",
        /// PV: writable descriptor tables.
        WritableDescriptorTables = 1 => "XENFEAT_writable_descriptor_tables",
        /// The guest sees pseudo-physical addresses (HVM, PVH).
        AutoTranslatedPhysmap = 2 => "XENFEAT_auto_translated_physmap",
        /// The guest kernel runs in ring 0.
        SupervisorModeKernel = 3 => "XENFEAT_supervisor_mode_kernel",
        /// PAE page directories may be above 4 GiB.
        PaePgdirAbove4gb = 4 => "XENFEAT_pae_pgdir_above_4gb",
        /// `MMU_PT_UPDATE_PRESERVE_AD` is supported.
        MmuPtUpdatePreserveAd = 5 => "XENFEAT_mmu_pt_update_preserve_ad",
        /// Highmem assist.
        HighmemAssist = 6 => "XENFEAT_highmem_assist",
        /// `GNTMAP` guest-available bits are honoured.
        GnttabMapAvailBits = 7 => "XENFEAT_gnttab_map_avail_bits",
        /// Event delivery through a callback vector (HVM).
        HvmCallbackVector = 8 => "XENFEAT_hvm_callback_vector",
        /// Safe pvclock for HVM.
        HvmSafePvclock = 9 => "XENFEAT_hvm_safe_pvclock",
        /// PIRQs for HVM.
        HvmPirqs = 10 => "XENFEAT_hvm_pirqs",
        /// This domain is dom0.
        Dom0 = 11 => "XENFEAT_dom0",
        /// vNUMA memory ops.
        MemoryOpVnodeSupported = 13 => "XENFEAT_memory_op_vnode_supported",
        /// ARM SMCCC.
        ArmSmcccSupported = 14 => "XENFEAT_ARM_SMCCC_supported",
        /// The RSDP may be anywhere.
        LinuxRsdpUnrestricted = 15 => "XENFEAT_linux_rsdp_unrestricted",
        /// Memory is not 1:1 mapped.
        NotDirectMapped = 16 => "XENFEAT_not_direct_mapped",
        /// Memory is 1:1 mapped.
        DirectMapped = 17 => "XENFEAT_direct_mapped",
    }
}

xen_enum! {
    /// `HYPERVISOR_console_io` commands (`CONSOLEIO_*`).
    pub enum ConsoleIo: u32 as "console_io op" {
        /// Write to Xen's console.
        Write = 0 => "CONSOLEIO_write",
        /// Read from Xen's console (privileged).
        Read = 1 => "CONSOLEIO_read",
    }
}

xen_enum! {
    /// `HYPERVISOR_vcpu_op` commands (`VCPUOP_*`).
    pub enum VcpuOp: u32 as "vcpu op" {
        /// Set a vCPU's initial context.
        Initialise = 0 => "VCPUOP_initialise",
        /// Start a vCPU.
        Up = 1 => "VCPUOP_up",
        /// Stop a vCPU.
        Down = 2 => "VCPUOP_down",
        /// Whether a vCPU is up.
        IsUp = 3 => "VCPUOP_is_up",
        /// Runstate information.
        GetRunstateInfo = 4 => "VCPUOP_get_runstate_info",
        /// Register a runstate area.
        RegisterRunstateMemoryArea = 5 => "VCPUOP_register_runstate_memory_area",
        /// Start the periodic timer ([`VcpuSetPeriodicTimer`]).
        SetPeriodicTimer = 6 => "VCPUOP_set_periodic_timer",
        /// Stop the periodic timer.
        StopPeriodicTimer = 7 => "VCPUOP_stop_periodic_timer",
        /// Arm the single-shot timer ([`VcpuSetSingleshotTimer`]).
        SetSingleshotTimer = 8 => "VCPUOP_set_singleshot_timer",
        /// Disarm the single-shot timer.
        StopSingleshotTimer = 9 => "VCPUOP_stop_singleshot_timer",
        /// Move the vCPU's [`crate::shared_info::VcpuInfo`] ([`VcpuRegisterVcpuInfo`]).
        RegisterVcpuInfo = 10 => "VCPUOP_register_vcpu_info",
        /// Send an NMI.
        SendNmi = 11 => "VCPUOP_send_nmi",
        /// Physical CPU id.
        GetPhysid = 12 => "VCPUOP_get_physid",
        /// Register a time info area.
        RegisterVcpuTimeMemoryArea = 13 => "VCPUOP_register_vcpu_time_memory_area",
    }
}

/// `VCPUOP_set_periodic_timer` argument (`struct vcpu_set_periodic_timer`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    /// Period in ns.
    pub period_ns: u64,
}

/// `VCPUOP_set_singleshot_timer` argument (`struct vcpu_set_singleshot_timer`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time in ns.
    pub timeout_abs_ns: u64,
    /// [`VCPU_SSHOTTMR_FUTURE`] or 0.
    pub flags: u32,
    /// Padding (implicit in C).
    pub _pad0: u32,
}

/// Fail with `-ETIME` if the timeout has passed (`VCPU_SSHOTTMR_future`).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

/// `VCPUOP_register_vcpu_info` argument (`struct vcpu_register_vcpu_info`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame of the page to hold the `vcpu_info`.
    pub mfn: u64,
    /// Offset in the page.
    pub offset: u32,
    /// Unused.
    pub rsvd: u32,
}

xen_enum! {
    /// `HYPERVISOR_memory_op` commands (`XENMEM_*`) this crate models.
    pub enum XenMemOp: u32 as "memory op" {
        /// Add extents ([`XenMemoryReservation`]).
        IncreaseReservation = 0 => "XENMEM_increase_reservation",
        /// Remove extents ([`XenMemoryReservation`]).
        DecreaseReservation = 1 => "XENMEM_decrease_reservation",
        /// Highest machine frame.
        MaximumRamPage = 2 => "XENMEM_maximum_ram_page",
        /// Current reservation of a domain.
        CurrentReservation = 3 => "XENMEM_current_reservation",
        /// Maximum reservation of a domain.
        MaximumReservation = 4 => "XENMEM_maximum_reservation",
        /// The machine-to-phys table frames.
        MachphysMfnList = 5 => "XENMEM_machphys_mfn_list",
        /// Populate the physmap ([`XenMemoryReservation`]).
        PopulatePhysmap = 6 => "XENMEM_populate_physmap",
        /// Map a Xen page into the physmap ([`XenAddToPhysmap`]).
        AddToPhysmap = 7 => "XENMEM_add_to_physmap",
        /// The domain's E820 map ([`XenMemoryMap`]).
        MemoryMap = 9 => "XENMEM_memory_map",
        /// The machine E820 map (privileged, [`XenMemoryMap`]).
        MachineMemoryMap = 10 => "XENMEM_machine_memory_map",
        /// Exchange extents.
        Exchange = 11 => "XENMEM_exchange",
        /// Machine-to-phys mapping.
        MachphysMapping = 12 => "XENMEM_machphys_mapping",
        /// Set a domain's E820 map.
        SetMemoryMap = 13 => "XENMEM_set_memory_map",
        /// Highest guest frame.
        MaximumGpfn = 14 => "XENMEM_maximum_gpfn",
        /// Remove a page from the physmap ([`XenRemoveFromPhysmap`]).
        RemoveFromPhysmap = 15 => "XENMEM_remove_from_physmap",
        /// Batched add-to-physmap.
        AddToPhysmapBatch = 23 => "XENMEM_add_to_physmap_batch",
        /// Acquire a resource (grant table, ioreq server pages).
        AcquireResource = 28 => "XENMEM_acquire_resource",
    }
}

xen_enum! {
    /// What [`XenAddToPhysmap::space`] maps (`XENMAPSPACE_*`).
    pub enum XenMapSpace: u32 as "map space" {
        /// The shared info page.
        SharedInfo = 0 => "XENMAPSPACE_shared_info",
        /// A grant table frame (`idx`; `| XENMAPIDX_GRANT_TABLE_STATUS` for status frames).
        GrantTable = 1 => "XENMAPSPACE_grant_table",
        /// A guest frame.
        Gmfn = 2 => "XENMAPSPACE_gmfn",
        /// A range of guest frames (add_to_physmap only).
        GmfnRange = 3 => "XENMAPSPACE_gmfn_range",
        /// A frame of another domain.
        GmfnForeign = 4 => "XENMAPSPACE_gmfn_foreign",
        /// Device MMIO.
        DevMmio = 5 => "XENMAPSPACE_dev_mmio",
    }
}

/// `idx` flag selecting grant table status frames (`XENMAPIDX_grant_table_status`).
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `XENMEM_add_to_physmap` argument (`struct xen_add_to_physmap`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenAddToPhysmap {
    /// The domain whose physmap changes.
    pub domid: RawDomId,
    /// Pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// [`XenMapSpace`].
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Guest frame to map it at.
    pub gpfn: XenPfn,
}

/// `XENMEM_remove_from_physmap` argument (`struct xen_remove_from_physmap`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenRemoveFromPhysmap {
    /// The domain.
    pub domid: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: [u16; 3],
    /// Guest frame to unmap.
    pub gpfn: XenPfn,
}

/// `XENMEM_memory_map` / `XENMEM_machine_memory_map` argument (`struct xen_memory_map`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryMap {
    /// IN: entries the buffer holds; OUT: entries written.
    pub nr_entries: u32,
    /// Padding (implicit in C).
    pub _pad0: u32,
    /// Guest pointer to an array of E820 entries (20 bytes each).
    pub buffer: GuestHandle,
}

/// `XENMEM_{increase,decrease}_reservation` / `populate_physmap` argument
/// (`struct xen_memory_reservation`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryReservation {
    /// Guest pointer to `nr_extents` [`XenPfn`]s.
    pub extent_start: GuestHandle,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    /// The domain.
    pub domid: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: [u16; 3],
}

xen_enum! {
    /// `HYPERVISOR_hvm_op` commands (`HVMOP_*`, `hvm/hvm_op.h`) this crate models
    /// (2..=4, the old interrupt-level ops, are tools-only in current headers).
    pub enum HvmOp: u32 as "hvm op" {
        /// Set an HVM parameter ([`XenHvmParam`]).
        SetParam = 0 => "HVMOP_set_param",
        /// Read an HVM parameter ([`XenHvmParam`]).
        GetParam = 1 => "HVMOP_get_param",
        /// Flush all guest TLBs.
        FlushTlbs = 5 => "HVMOP_flush_tlbs",
        /// A page table is about to be freed.
        PagetableDying = 9 => "HVMOP_pagetable_dying",
        /// System time.
        GetTime = 10 => "HVMOP_get_time",
        /// Trace record.
        Xentrace = 11 => "HVMOP_xentrace",
        /// Memory type of a frame.
        GetMemType = 15 => "HVMOP_get_mem_type",
        /// Per-vCPU event channel upcall vector ([`XenHvmEvtchnUpcallVector`]).
        SetEvtchnUpcallVector = 23 => "HVMOP_set_evtchn_upcall_vector",
        /// Guest-requested vm_event.
        GuestRequestVmEvent = 24 => "HVMOP_guest_request_vm_event",
        /// Alternate p2m operations.
        Altp2m = 25 => "HVMOP_altp2m",
    }
}

/// `HVMOP_set_param` / `HVMOP_get_param` argument (`struct xen_hvm_param`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenHvmParam {
    /// The domain (`DOMID_SELF`).
    pub domid: RawDomId,
    /// Explicit padding in C.
    pub pad: u16,
    /// [`HvmParam`].
    pub index: u32,
    /// IN (set) / OUT (get).
    pub value: u64,
}

/// `HVMOP_set_evtchn_upcall_vector` argument (`struct xen_hvm_evtchn_upcall_vector`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenHvmEvtchnUpcallVector {
    /// The vCPU.
    pub vcpu: u32,
    /// The interrupt vector.
    pub vector: u8,
    /// Padding (implicit in C).
    pub _pad0: [u8; 3],
}

xen_enum! {
    /// HVM parameter indices (`HVM_PARAM_*`, `hvm/params.h`) a PVH/HVM guest and its
    /// toolstack use.
    pub enum HvmParam: u32 as "hvm param" {
        /// How event channel upcalls reach vCPU 0 (see [`HVM_PARAM_CALLBACK_TYPE_VECTOR`]).
        CallbackIrq = 0 => "HVM_PARAM_CALLBACK_IRQ",
        /// Frame of the xenstore ring page.
        StorePfn = 1 => "HVM_PARAM_STORE_PFN",
        /// xenstore event channel port.
        StoreEvtchn = 2 => "HVM_PARAM_STORE_EVTCHN",
        /// PAE enabled.
        PaeEnabled = 4 => "HVM_PARAM_PAE_ENABLED",
        /// ioreq page frame.
        IoreqPfn = 5 => "HVM_PARAM_IOREQ_PFN",
        /// Buffered ioreq page frame.
        BufioreqPfn = 6 => "HVM_PARAM_BUFIOREQ_PFN",
        /// Viridian enlightenments.
        Viridian = 9 => "HVM_PARAM_VIRIDIAN",
        /// Timer mode.
        TimerMode = 10 => "HVM_PARAM_TIMER_MODE",
        /// HPET enabled.
        HpetEnabled = 11 => "HVM_PARAM_HPET_ENABLED",
        /// Identity page table.
        IdentPt = 12 => "HVM_PARAM_IDENT_PT",
        /// Device model domain.
        DmDomain = 13 => "HVM_PARAM_DM_DOMAIN",
        /// ACPI S-state.
        AcpiSState = 14 => "HVM_PARAM_ACPI_S_STATE",
        /// VPT alignment.
        VptAlign = 16 => "HVM_PARAM_VPT_ALIGN",
        /// Frame of the PV console page.
        ConsolePfn = 17 => "HVM_PARAM_CONSOLE_PFN",
        /// PV console event channel port.
        ConsoleEvtchn = 18 => "HVM_PARAM_CONSOLE_EVTCHN",
    }
}

/// Number of HVM parameters (`HVM_NR_PARAMS`).
pub const HVM_NR_PARAMS: u32 = 39;
/// `HVM_PARAM_CALLBACK_IRQ` value type field: bits 56..64 (`HVM_PARAM_CALLBACK_IRQ_TYPE_MASK`).
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xFF00_0000_0000_0000;
/// Callback type: a GSI in bits 0..56 (`HVM_PARAM_CALLBACK_TYPE_GSI`).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u64 = 0;
/// Callback type: a PCI INTx line (`HVM_PARAM_CALLBACK_TYPE_PCI_INTX`).
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u64 = 1;
/// Callback type: an x86 vector in bits 0..8 (`HVM_PARAM_CALLBACK_TYPE_VECTOR`).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;

xen_enum! {
    /// Xen's error numbers (`xen/errno.h`, guest-visible ones); hypercalls return their
    /// negation. Aliases: `EWOULDBLOCK` = `EAGAIN`, `EDEADLOCK` = `EDEADLK`.
    pub enum XenErrno: i32 as "xen errno" {
        /// Operation not permitted.
        Eperm = 1 => "XEN_EPERM",
        /// No such file or directory.
        Enoent = 2 => "XEN_ENOENT",
        /// No such process.
        Esrch = 3 => "XEN_ESRCH",
        /// I/O error.
        Eio = 5 => "XEN_EIO",
        /// No such device or address.
        Enxio = 6 => "XEN_ENXIO",
        /// Argument list too long.
        E2big = 7 => "XEN_E2BIG",
        /// Exec format error.
        Enoexec = 8 => "XEN_ENOEXEC",
        /// Bad file number.
        Ebadf = 9 => "XEN_EBADF",
        /// No child processes.
        Echild = 10 => "XEN_ECHILD",
        /// Try again.
        Eagain = 11 => "XEN_EAGAIN",
        /// Out of memory.
        Enomem = 12 => "XEN_ENOMEM",
        /// Permission denied.
        Eacces = 13 => "XEN_EACCES",
        /// Bad address.
        Efault = 14 => "XEN_EFAULT",
        /// Device or resource busy.
        Ebusy = 16 => "XEN_EBUSY",
        /// Exists.
        Eexist = 17 => "XEN_EEXIST",
        /// Cross-device link.
        Exdev = 18 => "XEN_EXDEV",
        /// No such device.
        Enodev = 19 => "XEN_ENODEV",
        /// Not a directory.
        Enotdir = 20 => "XEN_ENOTDIR",
        /// Is a directory.
        Eisdir = 21 => "XEN_EISDIR",
        /// Invalid argument.
        Einval = 22 => "XEN_EINVAL",
        /// File table overflow.
        Enfile = 23 => "XEN_ENFILE",
        /// Too many open files.
        Emfile = 24 => "XEN_EMFILE",
        /// No space left.
        Enospc = 28 => "XEN_ENOSPC",
        /// Read-only.
        Erofs = 30 => "XEN_EROFS",
        /// Too many links.
        Emlink = 31 => "XEN_EMLINK",
        /// Argument out of domain.
        Edom = 33 => "XEN_EDOM",
        /// Result not representable.
        Erange = 34 => "XEN_ERANGE",
        /// Deadlock would occur.
        Edeadlk = 35 => "XEN_EDEADLK",
        /// Name too long.
        Enametoolong = 36 => "XEN_ENAMETOOLONG",
        /// No locks available.
        Enolck = 37 => "XEN_ENOLCK",
        /// Not implemented.
        Enosys = 38 => "XEN_ENOSYS",
        /// Directory not empty.
        Enotempty = 39 => "XEN_ENOTEMPTY",
        /// No data.
        Enodata = 61 => "XEN_ENODATA",
        /// Timer expired.
        Etime = 62 => "XEN_ETIME",
        /// Not a data message.
        Ebadmsg = 74 => "XEN_EBADMSG",
        /// Value too large.
        Eoverflow = 75 => "XEN_EOVERFLOW",
        /// Illegal byte sequence.
        Eilseq = 84 => "XEN_EILSEQ",
        /// Not a socket.
        Enotsock = 88 => "XEN_ENOTSOCK",
        /// Message too large.
        Emsgsize = 90 => "XEN_EMSGSIZE",
        /// Not supported.
        Eopnotsupp = 95 => "XEN_EOPNOTSUPP",
        /// Address in use.
        Eaddrinuse = 98 => "XEN_EADDRINUSE",
        /// Address not available.
        Eaddrnotavail = 99 => "XEN_EADDRNOTAVAIL",
        /// No buffer space.
        Enobufs = 105 => "XEN_ENOBUFS",
        /// Already connected.
        Eisconn = 106 => "XEN_EISCONN",
        /// Not connected.
        Enotconn = 107 => "XEN_ENOTCONN",
        /// Timed out.
        Etimedout = 110 => "XEN_ETIMEDOUT",
        /// Connection refused.
        Econnrefused = 111 => "XEN_ECONNREFUSED",
    }
}

impl XenErrno {
    /// The value a hypercall returns for this error (`-errno`).
    pub const fn to_ret(self) -> i64 {
        -(self as i64)
    }
}

/// A failed hypercall: the (negated) return value, typed if Xen defines it.
pub type HypercallError = Result<XenErrno, UnknownValue<i32>>;

/// Interpret a hypercall's return value: non-negative is success, negative a
/// `-errno`.
pub fn hypercall_result(ret: i64) -> Result<u64, HypercallError> {
    if ret >= 0 {
        return Ok(ret as u64);
    }
    let errno = ret.checked_neg().and_then(|e| i32::try_from(e).ok());
    match errno {
        Some(e) => Err(XenErrno::try_from(e)),
        None => Err(Err(UnknownValue {
            kind: "xen errno",
            value: i32::MIN,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results() {
        assert_eq!(hypercall_result(3), Ok(3));
        assert_eq!(hypercall_result(-22), Err(Ok(XenErrno::Einval)));
        assert_eq!(hypercall_result(-4).unwrap_err().unwrap_err().value, 4);
        assert!(hypercall_result(i64::MIN).is_err());
        assert_eq!(XenErrno::Enosys.to_ret(), -38);
        assert_eq!(Hypercall::try_from(11).unwrap_err().value, 11);
    }
}
