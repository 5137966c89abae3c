//! `HYPERVISOR_xen_version` (`xen/version.h`, `xen/features.h`): the `XENVER_*`
//! commands, their buffer sizes, the feature-submap argument and the `XENFEAT_*` bits.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;

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
