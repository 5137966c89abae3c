//! Byte-compatibility of every wire struct and constant with Xen's installed public
//! headers (`/usr/include/xen`, package libxen-dev).
//!
//! One table below drives both sides: for each struct it names the C type and, for
//! each field, the C member path and the Rust field path. From it the test writes a C
//! probe that prints `sizeof`/`_Alignof` of every struct and `offsetof`/`sizeof` of every
//! member, compiles it with the system `cc`, runs it, and compares each number with
//! `size_of`/`align_of`/`offset_of!` on the Rust side. Rust-only padding fields are
//! listed too, and the test checks that fields plus padding account for every byte of
//! the Rust struct, so a field missing from the table is caught as well.
//! Constants (every value of every typed enum, flags, limits) are checked the same way.
//!
//! Missing `cc` or headers fail the test (never skip it): `cargo xtask setup` installs
//! them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use sluice_abi::*;

struct Field {
    c: &'static str,
    rust: &'static str,
    offset: usize,
    size: usize,
}

struct Struct {
    c: &'static str,
    rust: &'static str,
    size: usize,
    align: usize,
    /// The Rust type models only a prefix of the C type (its size may be smaller).
    prefix_only: bool,
    fields: Vec<Field>,
    /// Rust-only padding fields: (name, size).
    pads: Vec<(&'static str, usize)>,
}

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    core::mem::size_of::<F>()
}

macro_rules! layout {
    ($(
        $c:literal => $ty:ty $([prefix $prefix:tt])? {
            $( $cf:literal => $($rf:ident).+ ),* $(,)?
        } $( pad { $($pf:ident),* $(,)? } )?
    );* $(;)?) => {
        vec![$(
            Struct {
                c: $c,
                rust: stringify!($ty),
                size: core::mem::size_of::<$ty>(),
                align: core::mem::align_of::<$ty>(),
                prefix_only: false $( || $prefix )?,
                fields: vec![$(
                    Field {
                        c: $cf,
                        rust: stringify!($($rf).+),
                        offset: core::mem::offset_of!($ty, $($rf).+),
                        size: field_size::<$ty, _>(|s| &s.$($rf).+),
                    }
                ),*],
                pads: vec![$($(
                    (stringify!($pf), field_size::<$ty, _>(|s| &s.$pf))
                ),*)?],
            }
        ),*]
    };
}

/// Every struct this crate defines, field by field.
fn structs() -> Vec<Struct> {
    use blkif::*;
    use event_channel::*;
    use grant_table::*;
    use xs_wire::*;
    layout! {
        // grant_table.h
        "struct grant_entry_v1" => GrantEntryV1 { "flags" => flags, "domid" => domid, "frame" => frame };
        "struct gnttab_map_grant_ref" => GnttabMapGrantRef {
            "host_addr" => host_addr, "flags" => flags, "ref" => gref, "dom" => dom,
            "status" => status, "handle" => handle, "dev_bus_addr" => dev_bus_addr,
        };
        "struct gnttab_unmap_grant_ref" => GnttabUnmapGrantRef {
            "host_addr" => host_addr, "dev_bus_addr" => dev_bus_addr, "handle" => handle,
            "status" => status,
        } pad { _pad0 };
        "struct gnttab_setup_table" => GnttabSetupTable {
            "dom" => dom, "nr_frames" => nr_frames, "status" => status, "frame_list" => frame_list,
        } pad { _pad0, _pad1 };
        "struct gnttab_dump_table" => GnttabDumpTable { "dom" => dom, "status" => status };
        "struct gnttab_transfer" => GnttabTransfer {
            "mfn" => mfn, "domid" => domid, "ref" => gref, "status" => status,
        } pad { _pad0, _pad1 };
        "struct gnttab_copy_ptr" => GnttabCopyPtr {
            "u" => u, "domid" => domid, "offset" => offset,
        } pad { _pad0 };
        "struct gnttab_copy" => GnttabCopy {
            "source" => source, "source.u" => source.u, "source.domid" => source.domid,
            "source.offset" => source.offset,
            "dest" => dest, "dest.u" => dest.u, "dest.domid" => dest.domid,
            "dest.offset" => dest.offset,
            "len" => len, "flags" => flags, "status" => status,
        } pad { _pad0 };
        "struct gnttab_query_size" => GnttabQuerySize {
            "dom" => dom, "nr_frames" => nr_frames, "max_nr_frames" => max_nr_frames,
            "status" => status,
        } pad { _pad0, _pad1 };
        "struct gnttab_unmap_and_replace" => GnttabUnmapAndReplace {
            "host_addr" => host_addr, "new_addr" => new_addr, "handle" => handle,
            "status" => status,
        } pad { _pad0 };

        "struct gnttab_set_version" => GnttabSetVersion { "version" => version };
        "struct gnttab_get_version" => GnttabGetVersion {
            "dom" => dom, "pad" => pad, "version" => version,
        };

        // event_channel.h
        "struct evtchn_alloc_unbound" => EvtchnAllocUnbound {
            "dom" => dom, "remote_dom" => remote_dom, "port" => port,
        };
        "struct evtchn_bind_interdomain" => EvtchnBindInterdomain {
            "remote_dom" => remote_dom, "remote_port" => remote_port, "local_port" => local_port,
        } pad { _pad0 };
        "struct evtchn_bind_virq" => EvtchnBindVirq { "virq" => virq, "vcpu" => vcpu, "port" => port };
        "struct evtchn_bind_pirq" => EvtchnBindPirq { "pirq" => pirq, "flags" => flags, "port" => port };
        "struct evtchn_bind_ipi" => EvtchnBindIpi { "vcpu" => vcpu, "port" => port };
        "struct evtchn_close" => EvtchnClose { "port" => port };
        "struct evtchn_send" => EvtchnSend { "port" => port };
        "struct evtchn_status" => EvtchnStatus {
            "dom" => dom, "port" => port, "status" => status, "vcpu" => vcpu, "u" => u,
        } pad { _pad0 };
        "struct evtchn_bind_vcpu" => EvtchnBindVcpu { "port" => port, "vcpu" => vcpu };
        "struct evtchn_unmask" => EvtchnUnmask { "port" => port };
        "struct evtchn_reset" => EvtchnReset { "dom" => dom };
        "struct evtchn_init_control" => EvtchnInitControl {
            "control_gfn" => control_gfn, "offset" => offset, "vcpu" => vcpu,
            "link_bits" => link_bits, "_pad" => _pad,
        };
        "struct evtchn_expand_array" => EvtchnExpandArray { "array_gfn" => array_gfn };
        "struct evtchn_set_priority" => EvtchnSetPriority { "port" => port, "priority" => priority };

        // io/xs_wire.h
        "struct xsd_sockmsg" => XsdSockmsg {
            "type" => msg_type, "req_id" => req_id, "tx_id" => tx_id, "len" => len,
        };
        "struct xenstore_domain_interface" => XenstoreDomainInterface {
            "req" => req, "rsp" => rsp, "req_cons" => req_cons, "req_prod" => req_prod,
            "rsp_cons" => rsp_cons, "rsp_prod" => rsp_prod,
            "server_features" => server_features, "connection" => connection, "error" => error,
        };

        // io/blkif.h
        "struct blkif_request_segment" => BlkifRequestSegment {
            "gref" => gref, "first_sect" => first_sect, "last_sect" => last_sect,
        } pad { _pad0 };
        "struct blkif_request" => BlkifRequest {
            "operation" => operation, "nr_segments" => nr_segments, "handle" => handle,
            "id" => id, "sector_number" => sector_number, "seg" => seg,
        } pad { _pad0 };
        "struct blkif_request_discard" => BlkifRequestDiscard {
            "operation" => operation, "flag" => flag, "handle" => handle, "id" => id,
            "sector_number" => sector_number, "nr_sectors" => nr_sectors,
        } pad { _pad0 };
        "struct blkif_request_indirect" => BlkifRequestIndirect {
            "operation" => operation, "indirect_op" => indirect_op, "nr_segments" => nr_segments,
            "id" => id, "sector_number" => sector_number, "handle" => handle,
            "indirect_grefs" => indirect_grefs,
        } pad { _pad0, _pad1, _pad2 };
        // Linux's blkif_request_other is not in Xen's header: it is the common prefix of
        // every request variant, checked against struct blkif_request.
        "struct blkif_request" => BlkifRequestOther [prefix true] {
            "operation" => operation, "id" => id,
        } pad { _pad0, _pad1, _pad2 };
        "struct blkif_response" => BlkifResponse {
            "id" => id, "operation" => operation, "status" => status,
        } pad { _pad0, _pad1 };

        // io/netif.h
        "struct netif_tx_request" => netif::NetifTxRequest {
            "gref" => gref, "offset" => offset, "flags" => flags, "id" => id, "size" => size,
        };
        "struct netif_tx_response" => netif::NetifTxResponse { "id" => id, "status" => status };
        "struct netif_rx_request" => netif::NetifRxRequest { "id" => id, "pad" => pad, "gref" => gref };
        "struct netif_rx_response" => netif::NetifRxResponse {
            "id" => id, "offset" => offset, "flags" => flags, "status" => status,
        };
        "struct netif_extra_info" => netif::NetifExtraInfo {
            "type" => extra_type, "flags" => flags, "u" => u,
        };
        "struct xen_netif_ctrl_request" => netif::NetifCtrlRequest {
            "id" => id, "type" => ctrl_type, "data" => data,
        };
        "struct xen_netif_ctrl_response" => netif::NetifCtrlResponse {
            "id" => id, "type" => ctrl_type, "status" => status, "data" => data,
        };
        "struct xen_netif_gref" => netif::NetifGref { "ref" => gref, "flags" => flags, "status" => status };

        // io/console.h
        "struct xencons_interface" => console::XenconsInterface {
            "in" => input, "out" => output, "in_cons" => in_cons, "in_prod" => in_prod,
            "out_cons" => out_cons, "out_prod" => out_prod,
        };

        // arch-x86/hvm/start_info.h
        "struct hvm_start_info" => start_info::HvmStartInfo {
            "magic" => magic, "version" => version, "flags" => flags, "nr_modules" => nr_modules,
            "modlist_paddr" => modlist_paddr, "cmdline_paddr" => cmdline_paddr,
            "rsdp_paddr" => rsdp_paddr, "memmap_paddr" => memmap_paddr,
            "memmap_entries" => memmap_entries, "reserved" => reserved,
        };
        "struct hvm_modlist_entry" => start_info::HvmModlistEntry {
            "paddr" => paddr, "size" => size, "cmdline_paddr" => cmdline_paddr, "reserved" => reserved,
        };
        "struct hvm_memmap_table_entry" => start_info::HvmMemmapTableEntry {
            "addr" => addr, "size" => size, "type" => map_type, "reserved" => reserved,
        };

        // xen.h, arch-x86/xen.h, arch-x86/xen-x86_64.h
        "struct vcpu_time_info" => shared_info::VcpuTimeInfo {
            "version" => version, "pad0" => pad0, "tsc_timestamp" => tsc_timestamp,
            "system_time" => system_time, "tsc_to_system_mul" => tsc_to_system_mul,
            "tsc_shift" => tsc_shift, "flags" => flags, "pad1" => pad1,
        };
        "struct arch_vcpu_info" => shared_info::ArchVcpuInfo { "cr2" => cr2, "pad" => pad };
        "struct vcpu_info" => shared_info::VcpuInfo {
            "evtchn_upcall_pending" => evtchn_upcall_pending,
            "evtchn_upcall_mask" => evtchn_upcall_mask,
            "evtchn_pending_sel" => evtchn_pending_sel, "arch" => arch, "arch.cr2" => arch.cr2,
            "time" => time, "time.version" => time.version,
            "time.tsc_timestamp" => time.tsc_timestamp, "time.system_time" => time.system_time,
            "time.tsc_to_system_mul" => time.tsc_to_system_mul, "time.tsc_shift" => time.tsc_shift,
            "time.flags" => time.flags,
        } pad { _pad0 };
        "struct arch_shared_info" => shared_info::ArchSharedInfo {
            "max_pfn" => max_pfn, "pfn_to_mfn_frame_list_list" => pfn_to_mfn_frame_list_list,
            "nmi_reason" => nmi_reason, "p2m_cr3" => p2m_cr3, "p2m_vaddr" => p2m_vaddr,
            "p2m_generation" => p2m_generation,
        };
        "struct shared_info" => shared_info::SharedInfo {
            "vcpu_info" => vcpu_info, "evtchn_pending" => evtchn_pending,
            "evtchn_mask" => evtchn_mask, "wc_version" => wc_version, "wc_sec" => wc_sec,
            "wc_nsec" => wc_nsec, "wc_sec_hi" => wc_sec_hi, "arch" => arch,
            "arch.max_pfn" => arch.max_pfn, "arch.p2m_generation" => arch.p2m_generation,
        };

        // sched.h, version.h, vcpu.h, memory.h
        "struct sched_shutdown" => hypercall::SchedShutdown { "reason" => reason };
        "struct sched_poll" => hypercall::SchedPoll {
            "ports" => ports, "nr_ports" => nr_ports, "timeout" => timeout,
        } pad { _pad0 };
        "struct sched_remote_shutdown" => hypercall::SchedRemoteShutdown {
            "domain_id" => domain_id, "reason" => reason,
        } pad { _pad0 };
        "struct xen_feature_info" => hypercall::XenFeatureInfo {
            "submap_idx" => submap_idx, "submap" => submap,
        };
        "struct vcpu_set_periodic_timer" => hypercall::VcpuSetPeriodicTimer { "period_ns" => period_ns };
        "struct vcpu_set_singleshot_timer" => hypercall::VcpuSetSingleshotTimer {
            "timeout_abs_ns" => timeout_abs_ns, "flags" => flags,
        } pad { _pad0 };
        "struct vcpu_register_vcpu_info" => hypercall::VcpuRegisterVcpuInfo {
            "mfn" => mfn, "offset" => offset, "rsvd" => rsvd,
        };
        "struct xen_add_to_physmap" => hypercall::XenAddToPhysmap {
            "domid" => domid, "size" => size, "space" => space, "idx" => idx, "gpfn" => gpfn,
        };
        "struct xen_remove_from_physmap" => hypercall::XenRemoveFromPhysmap {
            "domid" => domid, "gpfn" => gpfn,
        } pad { _pad0 };
        "struct xen_memory_map" => hypercall::XenMemoryMap {
            "nr_entries" => nr_entries, "buffer" => buffer,
        } pad { _pad0 };
        "struct xen_hvm_param" => hypercall::XenHvmParam {
            "domid" => domid, "pad" => pad, "index" => index, "value" => value,
        };
        "struct xen_hvm_evtchn_upcall_vector" => hypercall::XenHvmEvtchnUpcallVector {
            "vcpu" => vcpu, "vector" => vector,
        } pad { _pad0 };
        "struct xen_memory_reservation" => hypercall::XenMemoryReservation {
            "extent_start" => extent_start, "nr_extents" => nr_extents,
            "extent_order" => extent_order, "mem_flags" => mem_flags, "domid" => domid,
        } pad { _pad0 };
    }
}

/// Every typed enum: (C expression, Rust value), one per variant.
fn enum_constants() -> Vec<(&'static str, i64)> {
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
fn other_constants() -> Vec<(&'static str, i64)> {
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
fn string_constants() -> Vec<(&'static str, &'static str)> {
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

const PROBE_PRELUDE: &str = r#"
/* Generated by sluice-abi tests/layout.rs. */
#define __XEN_TOOLS__ 1
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>
#include <xen/io/xs_wire.h>
#include <xen/io/xenbus.h>
#include <xen/io/netif.h>
#include <xen/io/console.h>
#include <xen/arch-x86/hvm/start_info.h>
#include <xen/elfnote.h>
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/features.h>
#include <xen/vcpu.h>
#include <xen/memory.h>
#include <xen/errno.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#define MEMBER_SIZE(t, m) sizeof(((t *)0)->m)
int main(void) {
"#;

fn probe_source(structs: &[Struct], ints: &[(&str, i64)], strs: &[(&str, &str)]) -> String {
    let mut c = String::from(PROBE_PRELUDE);
    for (i, s) in structs.iter().enumerate() {
        writeln!(
            c,
            "  printf(\"S {i} %zu %zu\\n\", sizeof({t}), _Alignof({t}));",
            t = s.c
        )
        .unwrap();
        for (j, f) in s.fields.iter().enumerate() {
            writeln!(
                c,
                "  printf(\"F {i} {j} %zu %zu\\n\", offsetof({t}, {m}), MEMBER_SIZE({t}, {m}));",
                t = s.c,
                m = f.c
            )
            .unwrap();
        }
    }
    for (i, (expr, _)) in ints.iter().enumerate() {
        writeln!(c, "  printf(\"C {i} %lld\\n\", (long long)({expr}));").unwrap();
    }
    for (i, (expr, _)) in strs.iter().enumerate() {
        writeln!(c, "  printf(\"T {i} %s\\n\", {expr});").unwrap();
    }
    c.push_str(
        "  for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)\n\
         \x20   printf(\"E %zu %d %s\\n\", i, xsd_errors[i].errnum, xsd_errors[i].errstring);\n",
    );
    c.push_str("  return 0;\n}\n");
    c
}

/// Compile and run the probe; returns its output lines.
fn run_probe(source: &str) -> String {
    assert!(
        Path::new("/usr/include/xen/xen.h").exists(),
        "Xen public headers not found at /usr/include/xen: install libxen-dev \
         (`cargo xtask setup` does)"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("layout-probe");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, source).unwrap();
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler `cc` ({e}): install gcc (`cargo xtask setup` does)")
        });
    assert!(
        out.status.success(),
        "compiling the layout probe {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run layout probe");
    assert!(run.status.success(), "layout probe failed");
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn layouts_and_constants_match_xen_headers() {
    let structs = structs();
    let ints: Vec<(&str, i64)> = enum_constants()
        .into_iter()
        .chain(other_constants())
        .collect();
    let strs = string_constants();
    let output = run_probe(&probe_source(&structs, &ints, &strs));

    let mut errors = Vec::new();
    let mut seen = BTreeMap::new();
    for line in output.lines() {
        let w: Vec<&str> = line.splitn(5, ' ').collect();
        let num = |k: usize| -> i64 { w[k].parse().unwrap() };
        match w[0] {
            "S" => {
                let s = &structs[num(1) as usize];
                let (size, align) = (num(2) as usize, num(3) as usize);
                *seen.entry("struct").or_insert(0) += 1;
                let size_ok = if s.prefix_only {
                    s.size <= size
                } else {
                    s.size == size
                };
                if !size_ok || s.align != align {
                    errors.push(format!(
                        "{} vs {}: C size {size} align {align}, Rust size {} align {}",
                        s.c, s.rust, s.size, s.align
                    ));
                }
            }
            "F" => {
                let s = &structs[num(1) as usize];
                let f = &s.fields[num(2) as usize];
                let (offset, size) = (num(3) as usize, num(4) as usize);
                *seen.entry("field").or_insert(0) += 1;
                if f.offset != offset || f.size != size {
                    errors.push(format!(
                        "{}.{} vs {}.{}: C offset {offset} size {size}, Rust offset {} size {}",
                        s.c, f.c, s.rust, f.rust, f.offset, f.size
                    ));
                }
            }
            "C" => {
                let (expr, rust) = ints[num(1) as usize];
                *seen.entry("constant").or_insert(0) += 1;
                if num(2) != rust {
                    errors.push(format!("{expr}: C {} Rust {rust}", num(2)));
                }
            }
            "T" => {
                let (expr, rust) = strs[num(1) as usize];
                *seen.entry("string").or_insert(0) += 1;
                let c = w[2..].join(" ");
                if c != rust {
                    errors.push(format!("{expr}: C {c:?} Rust {rust:?}"));
                }
            }
            "E" => {
                let i = num(1) as usize;
                let (errnum, name) = (num(2), w[3]);
                *seen.entry("xsd_error").or_insert(0) += 1;
                match xs_wire::XsErrno::ALL.get(i) {
                    Some(e) if e.name() == name && e.raw() as i64 == errnum => {}
                    other => errors.push(format!(
                        "xsd_errors[{i}] = {{{errnum}, {name}}}, Rust {other:?}"
                    )),
                }
            }
            _ => errors.push(format!("unexpected probe output {line:?}")),
        }
    }
    if seen.get("xsd_error").copied().unwrap_or(0) != xs_wire::XsErrno::ALL.len() {
        errors.push(format!(
            "xsd_errors has {:?} entries, Rust XsErrno has {}",
            seen.get("xsd_error"),
            xs_wire::XsErrno::ALL.len()
        ));
    }
    // Fields plus padding must cover each Rust struct exactly: a Rust field missing from
    // the table would leave bytes unaccounted for.
    for s in &structs {
        let covered: usize = s
            .fields
            .iter()
            .filter(|f| !f.rust.contains('.'))
            .map(|f| f.size)
            .chain(s.pads.iter().map(|p| p.1))
            .sum();
        if !s.fields.is_empty() && covered != s.size {
            errors.push(format!(
                "{}: table lists {covered} bytes of fields and padding, struct has {}",
                s.rust, s.size
            ));
        }
    }
    // Every `#[repr(C)]` struct defined in this crate's protocol modules is in the
    // table (ring.rs and shared.rs are layout-tested by tests/ring_layout.rs).
    let listed: Vec<&str> = structs
        .iter()
        .map(|s| s.rust.rsplit("::").next().unwrap().trim())
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // A module may be a folder (`xs_wire/`): every file below src/, named by its path
    // relative to src/.
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for path in files {
        let name = path
            .strip_prefix(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if name == "ring.rs" || name == "shared.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut repr_c = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[repr(C") {
                repr_c = true;
            } else if let Some(rest) = line.strip_prefix("pub struct ") {
                let ty: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if repr_c && !listed.contains(&ty.as_str()) {
                    errors.push(format!(
                        "{name}: #[repr(C)] struct {ty} is not in the layout table"
                    ));
                }
                repr_c = false;
            } else if !line.starts_with("#[")
                && !line.starts_with("///")
                && !line.starts_with(')')
                && !line.is_empty()
                && !line.starts_with("Clone")
            {
                repr_c = false;
            }
        }
    }
    let expected_lines = structs.len()
        + structs.iter().map(|s| s.fields.len()).sum::<usize>()
        + ints.len()
        + strs.len()
        + xs_wire::XsErrno::ALL.len();
    if output.lines().count() != expected_lines {
        errors.push(format!(
            "probe printed {} lines, expected {expected_lines}",
            output.lines().count()
        ));
    }
    assert!(
        errors.is_empty(),
        "{} mismatches with /usr/include/xen:\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
    eprintln!(
        "checked {} structs, {} fields, {} constants, {} strings, {} xsd_errors against /usr/include/xen",
        seen.get("struct").unwrap_or(&0),
        seen.get("field").unwrap_or(&0),
        seen.get("constant").unwrap_or(&0),
        seen.get("string").unwrap_or(&0),
        seen.get("xsd_error").unwrap_or(&0)
    );
}
