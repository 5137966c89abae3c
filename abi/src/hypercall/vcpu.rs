//! `HYPERVISOR_vcpu_op` (`xen/vcpu.h`): the `VCPUOP_*` commands and the timer and
//! `vcpu_info` registration argument structs.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;

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
