//! The struct table: every `#[repr(C)]` wire struct of the crate, its C type, and its
//! `"c.member" => rust.field` pairs (nested members too) plus Rust-only padding fields,
//! written with the `layout!` macro of `main.rs`.

use super::{field_size, Field, Struct};
use sluice_abi::*;

/// Every struct this crate defines, field by field.
pub(super) fn structs() -> Vec<Struct> {
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
