//! `HYPERVISOR_hvm_op` (`xen/hvm/hvm_op.h`, `xen/hvm/params.h`): the `HVMOP_*`
//! commands, their argument structs, the `HVM_PARAM_*` indices and the callback-IRQ
//! encoding.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
use crate::types::RawDomId;

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
