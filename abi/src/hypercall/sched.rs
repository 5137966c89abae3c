//! `HYPERVISOR_sched_op` (`xen/sched.h`): the `SCHEDOP_*` commands, shutdown reasons,
//! and the shutdown, poll and remote-shutdown argument structs.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
use crate::types::{GuestHandle, RawDomId};

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
    /// Guest pointer to `nr_ports` [`RawEvtchnPort`](crate::types::RawEvtchnPort)s.
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
