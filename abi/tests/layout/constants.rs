//! The constant tables: every value of every typed enum (by its C name), flags and
//! limits, and the string constants, each paired with the C expression the probe
//! prints.

use sluice_abi::*;

/// Every typed enum: (C expression, Rust value), one per variant.
pub(super) fn enum_constants() -> Vec<(&'static str, i64)> {
    let mut v = Vec::new();
    macro_rules! all {
        ($($t:ty),* $(,)?) => {$(
            for x in <$t>::ALL {
                v.push((x.c_name(), x.raw() as i64));
            }
        )*};
    }
    all!(
        grant_table::GrantEntryType,
        grant_table::GntTabOp,
        grant_table::GrantStatus,
        event_channel::EvtchnOp,
        event_channel::Virq,
        event_channel::EvtchnStat,
        xenbus::XenbusState,
        xs_wire::XsMsgType,
        xs_wire::XsWatchField,
        xs_wire::XenstoreConnection,
        xs_wire::XenstoreRingError,
        blkif::BlkifOp,
        blkif::BlkifRsp,
        netif::NetifRsp,
        netif::NetifExtraType,
        netif::NetifGsoType,
        netif::NetifCtrlType,
        netif::NetifCtrlStatus,
        netif::NetifHashAlgorithm,
        start_info::HvmMemmapType,
        hypercall::Hypercall,
        hypercall::SchedOp,
        hypercall::ShutdownReason,
        hypercall::XenVer,
        hypercall::XenFeature,
        hypercall::ConsoleIo,
        hypercall::VcpuOp,
        hypercall::XenMemOp,
        hypercall::XenMapSpace,
        hypercall::XenErrno,
        hypercall::HvmOp,
        hypercall::HvmParam,
    );
    // xs_wire's error table names host errno macros: checked against <errno.h> here and
    // against the xsd_errors table itself in `xsd_errors_table`.
    for e in xs_wire::XsErrno::ALL {
        v.push((e.c_name(), e.raw() as i64));
    }
    v
}

/// Flags and plain constants: (C expression, Rust value).
pub(super) fn other_constants() -> Vec<(&'static str, i64)> {
    use blkif::*;
    use grant_table::*;
    use xs_wire::*;
    vec![
        ("GTF_type_mask", GTF_TYPE_MASK as i64),
        ("GTF_readonly", GrantEntryFlags::READONLY.bits() as i64),
        ("GTF_reading", GrantEntryFlags::READING.bits() as i64),
        ("GTF_writing", GrantEntryFlags::WRITING.bits() as i64),
        ("GTF_PWT", GrantEntryFlags::PWT.bits() as i64),
        ("GTF_PCD", GrantEntryFlags::PCD.bits() as i64),
        ("GTF_PAT", GrantEntryFlags::PAT.bits() as i64),
        ("GTF_sub_page", GrantEntryFlags::SUB_PAGE.bits() as i64),
        (
            "GTF_transfer_committed",
            GrantEntryFlags::TRANSFER_COMMITTED.bits() as i64,
        ),
        (
            "GTF_transfer_completed",
            GrantEntryFlags::TRANSFER_COMPLETED.bits() as i64,
        ),
        ("GNTMAP_device_map", GntMapFlags::DEVICE_MAP.bits() as i64),
        ("GNTMAP_host_map", GntMapFlags::HOST_MAP.bits() as i64),
        ("GNTMAP_readonly", GntMapFlags::READONLY.bits() as i64),
        (
            "GNTMAP_application_map",
            GntMapFlags::APPLICATION_MAP.bits() as i64,
        ),
        (
            "GNTMAP_contains_pte",
            GntMapFlags::CONTAINS_PTE.bits() as i64,
        ),
        (
            "GNTMAP_guest_avail_mask",
            GntMapFlags::GUEST_AVAIL_MASK.bits() as i64,
        ),
        (
            "GNTCOPY_source_gref",
            GntCopyFlags::SOURCE_GREF.bits() as i64,
        ),
        ("GNTCOPY_dest_gref", GntCopyFlags::DEST_GREF.bits() as i64),
        (
            "GNTTAB_NR_RESERVED_ENTRIES",
            GNTTAB_NR_RESERVED_ENTRIES as i64,
        ),
        ("GNTTAB_RESERVED_CONSOLE", GNTTAB_RESERVED_CONSOLE as i64),
        ("GNTTAB_RESERVED_XENSTORE", GNTTAB_RESERVED_XENSTORE as i64),
        ("DOMID_SELF", types::DOMID_SELF as i64),
        ("DOMID_FIRST_RESERVED", types::DOMID_FIRST_RESERVED as i64),
        ("DOMID_IO", types::DOMID_IO as i64),
        ("DOMID_XEN", types::DOMID_XEN as i64),
        ("DOMID_COW", types::DOMID_COW as i64),
        ("DOMID_INVALID", types::DOMID_INVALID as i64),
        ("DOMID_IDLE", types::DOMID_IDLE as i64),
        ("DOMID_MASK", types::DOMID_MASK as i64),
        ("NR_VIRQS", event_channel::NR_VIRQS as i64),
        (
            "BIND_PIRQ__WILL_SHARE",
            event_channel::BIND_PIRQ_WILL_SHARE as i64,
        ),
        (
            "EVTCHN_2L_NR_CHANNELS",
            event_channel::EVTCHN_2L_NR_CHANNELS as i64,
        ),
        ("XENSTORE_PAYLOAD_MAX", XENSTORE_PAYLOAD_MAX as i64),
        ("XENSTORE_ABS_PATH_MAX", XENSTORE_ABS_PATH_MAX as i64),
        ("XENSTORE_REL_PATH_MAX", XENSTORE_REL_PATH_MAX as i64),
        ("XENSTORE_RING_SIZE", XENSTORE_RING_SIZE as i64),
        ("XS_INVALID", XS_INVALID as i64),
        ("XS_TYPE_COUNT", XS_TYPE_COUNT as i64),
        ("XS_DEBUG", XsMsgType::Control.raw() as i64),
        (
            "XENSTORE_SERVER_FEATURE_RECONNECTION",
            XenstoreServerFeatures::RECONNECTION.bits() as i64,
        ),
        (
            "XENSTORE_SERVER_FEATURE_ERROR",
            XenstoreServerFeatures::ERROR.bits() as i64,
        ),
        (
            "MASK_XENSTORE_IDX(0x12345)",
            mask_xenstore_idx(0x12345) as i64,
        ),
        (
            "BLKIF_MAX_SEGMENTS_PER_REQUEST",
            BLKIF_MAX_SEGMENTS_PER_REQUEST as i64,
        ),
        (
            "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST",
            BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST as i64,
        ),
        ("BLKIF_DISCARD_SECURE", BLKIF_DISCARD_SECURE as i64),
        ("VDISK_CDROM", VdiskInfo::CDROM.bits() as i64),
        ("VDISK_REMOVABLE", VdiskInfo::REMOVABLE.bits() as i64),
        ("VDISK_READONLY", VdiskInfo::READONLY.bits() as i64),
        (
            "(4096 / sizeof(struct blkif_request_segment))",
            SEGMENTS_PER_INDIRECT_PAGE as i64,
        ),
        ("XEN_NETIF_NR_SLOTS_MIN", netif::XEN_NETIF_NR_SLOTS_MIN as i64),
        ("XEN_NETIF_MAX_TX_SIZE", netif::XEN_NETIF_MAX_TX_SIZE as i64),
        ("XEN_NETIF_EXTRA_TYPE_MAX", netif::XEN_NETIF_EXTRA_TYPE_MAX as i64),
        ("XEN_NETIF_EXTRA_FLAG_MORE", netif::XEN_NETIF_EXTRA_FLAG_MORE as i64),
        ("XEN_NETIF_CTRLF_GREF_readonly", netif::XEN_NETIF_CTRLF_GREF_READONLY as i64),
        ("NETTXF_csum_blank", netif::NetTxFlags::CSUM_BLANK.bits() as i64),
        ("NETTXF_data_validated", netif::NetTxFlags::DATA_VALIDATED.bits() as i64),
        ("NETTXF_more_data", netif::NetTxFlags::MORE_DATA.bits() as i64),
        ("NETTXF_extra_info", netif::NetTxFlags::EXTRA_INFO.bits() as i64),
        ("NETRXF_data_validated", netif::NetRxFlags::DATA_VALIDATED.bits() as i64),
        ("NETRXF_csum_blank", netif::NetRxFlags::CSUM_BLANK.bits() as i64),
        ("NETRXF_more_data", netif::NetRxFlags::MORE_DATA.bits() as i64),
        ("NETRXF_extra_info", netif::NetRxFlags::EXTRA_INFO.bits() as i64),
        ("NETRXF_gso_prefix", netif::NetRxFlags::GSO_PREFIX.bits() as i64),
        ("XEN_NETIF_CTRL_HASH_TYPE_IPV4", netif::NetifHashTypes::IPV4.bits() as i64),
        ("XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP", netif::NetifHashTypes::IPV4_TCP.bits() as i64),
        ("XEN_NETIF_CTRL_HASH_TYPE_IPV6", netif::NetifHashTypes::IPV6.bits() as i64),
        ("XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP", netif::NetifHashTypes::IPV6_TCP.bits() as i64),
        (
            "offsetof(struct netif_extra_info, u.gso.size) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::GSO_SIZE as i64,
        ),
        (
            "offsetof(struct netif_extra_info, u.gso.type) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::GSO_TYPE as i64,
        ),
        (
            "offsetof(struct netif_extra_info, u.gso.features) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::GSO_FEATURES as i64,
        ),
        (
            "offsetof(struct netif_extra_info, u.mcast.addr) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::MCAST_ADDR as i64,
        ),
        (
            "offsetof(struct netif_extra_info, u.hash.type) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::HASH_TYPE as i64,
        ),
        (
            "offsetof(struct netif_extra_info, u.hash.algorithm) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::HASH_ALGORITHM as i64,
        ),
        (
            "offsetof(struct netif_extra_info, u.hash.value) - offsetof(struct netif_extra_info, u)",
            netif::extra_offsets::HASH_VALUE as i64,
        ),
        (
            "sizeof(union netif_tx_sring_entry)",
            ring::entry_size::<netif::NetifTxRequest, netif::NetifTxResponse>() as i64,
        ),
        (
            "sizeof(union netif_rx_sring_entry)",
            ring::entry_size::<netif::NetifRxRequest, netif::NetifRxResponse>() as i64,
        ),
        (
            "sizeof(union xen_netif_ctrl_sring_entry)",
            ring::entry_size::<netif::NetifCtrlRequest, netif::NetifCtrlResponse>() as i64,
        ),
        ("sizeof(((struct xencons_interface *)0)->in)", console::XENCONS_IN_SIZE as i64),
        ("sizeof(((struct xencons_interface *)0)->out)", console::XENCONS_OUT_SIZE as i64),
        ("XEN_HVM_START_MAGIC_VALUE", start_info::XEN_HVM_START_MAGIC_VALUE as i64),
        ("XEN_ELFNOTE_PHYS32_ENTRY", start_info::XEN_ELFNOTE_PHYS32_ENTRY as i64),
        ("SIF_PRIVILEGED", start_info::StartInfoFlags::PRIVILEGED.bits() as i64),
        ("SIF_INITDOMAIN", start_info::StartInfoFlags::INITDOMAIN.bits() as i64),
        ("SIF_MULTIBOOT_MOD", start_info::StartInfoFlags::MULTIBOOT_MOD.bits() as i64),
        ("SIF_MOD_START_PFN", start_info::StartInfoFlags::MOD_START_PFN.bits() as i64),
        ("SIF_VIRT_P2M_4TOOLS", start_info::StartInfoFlags::VIRT_P2M_4TOOLS.bits() as i64),
        ("XEN_LEGACY_MAX_VCPUS", shared_info::XEN_LEGACY_MAX_VCPUS as i64),
        ("(sizeof(xen_ulong_t) * 8)", shared_info::EVTCHN_WORDS as i64),
        ("XEN_PVCLOCK_TSC_STABLE_BIT", shared_info::XEN_PVCLOCK_TSC_STABLE_BIT as i64),
        ("XEN_PVCLOCK_GUEST_STOPPED", shared_info::XEN_PVCLOCK_GUEST_STOPPED as i64),
        ("XENFEAT_NR_SUBMAPS", hypercall::XENFEAT_NR_SUBMAPS as i64),
        ("VCPU_SSHOTTMR_future", hypercall::VCPU_SSHOTTMR_FUTURE as i64),
        ("XENMAPIDX_grant_table_status", hypercall::XENMAPIDX_GRANT_TABLE_STATUS as i64),
        ("sizeof(xen_extraversion_t)", hypercall::XEN_EXTRAVERSION_LEN as i64),
        ("XEN_CAPABILITIES_INFO_LEN", hypercall::XEN_CAPABILITIES_INFO_LEN as i64),
        ("HVM_NR_PARAMS", hypercall::HVM_NR_PARAMS as i64),
        ("HVM_PARAM_CALLBACK_IRQ_TYPE_MASK", hypercall::HVM_PARAM_CALLBACK_IRQ_TYPE_MASK as i64),
        ("HVM_PARAM_CALLBACK_TYPE_GSI", hypercall::HVM_PARAM_CALLBACK_TYPE_GSI as i64),
        ("HVM_PARAM_CALLBACK_TYPE_PCI_INTX", hypercall::HVM_PARAM_CALLBACK_TYPE_PCI_INTX as i64),
        ("HVM_PARAM_CALLBACK_TYPE_VECTOR", hypercall::HVM_PARAM_CALLBACK_TYPE_VECTOR as i64),
        ("XEN_EWOULDBLOCK", hypercall::XenErrno::Eagain.raw() as i64),
        ("XEN_EDEADLOCK", hypercall::XenErrno::Edeadlk.raw() as i64),
        // The ring slot of abi-ring's generic ring instantiated for blkif.
        (
            "sizeof(union blkif_sring_entry)",
            ring::entry_size::<BlkifRequest, BlkifResponse>() as i64,
        ),
    ]
}

/// String constants: (C expression, Rust value).
pub(super) fn string_constants() -> Vec<(&'static str, &'static str)> {
    use xs_wire::*;
    vec![
        ("XS_WRITE_NONE", XS_WRITE_NONE),
        ("XS_WRITE_CREATE", XS_WRITE_CREATE),
        ("XS_WRITE_CREATE_EXCL", XS_WRITE_CREATE_EXCL),
        ("XEN_IO_PROTO_ABI_X86_32", blkif::protocols::X86_32),
        ("XEN_IO_PROTO_ABI_X86_64", blkif::protocols::X86_64),
        ("XEN_IO_PROTO_ABI_ARM", blkif::protocols::ARM),
        ("XEN_IO_PROTO_ABI_NATIVE", blkif::protocols::NATIVE),
    ]
}
