//! Event channels (`xen/event_channel.h`): Xen's virtual interrupts between domains,
//! from Xen itself (VIRQs), and between a domain's own vCPUs (IPIs).
//!
//! `HYPERVISOR_event_channel_op(cmd, arg)` takes one of the [`EvtchnOp`] commands and a
//! pointer to the matching argument struct below.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::{xen_enum, UnknownValue};
pub use crate::types::{RawDomId, RawEvtchnPort};

xen_enum! {
    /// The commands of `HYPERVISOR_event_channel_op` (`EVTCHNOP_*`).
    pub enum EvtchnOp: u32 as "event channel op" {
        /// Connect to a remote domain's unbound port ([`EvtchnBindInterdomain`]).
        BindInterdomain = 0 => "EVTCHNOP_bind_interdomain",
        /// Bind a virtual IRQ ([`EvtchnBindVirq`]).
        BindVirq = 1 => "EVTCHNOP_bind_virq",
        /// Bind a physical IRQ ([`EvtchnBindPirq`]).
        BindPirq = 2 => "EVTCHNOP_bind_pirq",
        /// Close a port ([`EvtchnClose`]).
        Close = 3 => "EVTCHNOP_close",
        /// Notify the other end of a port ([`EvtchnSend`]).
        Send = 4 => "EVTCHNOP_send",
        /// Query a port ([`EvtchnStatus`]).
        Status = 5 => "EVTCHNOP_status",
        /// Allocate a port a remote domain may bind to ([`EvtchnAllocUnbound`]).
        AllocUnbound = 6 => "EVTCHNOP_alloc_unbound",
        /// Bind an inter-vCPU IPI ([`EvtchnBindIpi`]).
        BindIpi = 7 => "EVTCHNOP_bind_ipi",
        /// Deliver a port's events to another vCPU ([`EvtchnBindVcpu`]).
        BindVcpu = 8 => "EVTCHNOP_bind_vcpu",
        /// Unmask a port, redelivering a pending event ([`EvtchnUnmask`]).
        Unmask = 9 => "EVTCHNOP_unmask",
        /// Close all of a domain's ports ([`EvtchnReset`]).
        Reset = 10 => "EVTCHNOP_reset",
        /// Switch to the FIFO ABI ([`EvtchnInitControl`]).
        InitControl = 11 => "EVTCHNOP_init_control",
        /// Add a page of FIFO event words ([`EvtchnExpandArray`]).
        ExpandArray = 12 => "EVTCHNOP_expand_array",
        /// Set a port's FIFO priority ([`EvtchnSetPriority`]).
        SetPriority = 13 => "EVTCHNOP_set_priority",
    }
}

xen_enum! {
    /// Virtual IRQs Xen raises (`VIRQ_*`, bind with [`EvtchnBindVirq`]).
    pub enum Virq: u32 as "virq" {
        /// Per-vCPU: timebase update and/or requested timeout.
        Timer = 0 => "VIRQ_TIMER",
        /// Per-vCPU: dump debug info.
        Debug = 1 => "VIRQ_DEBUG",
        /// Global (dom0): bytes received on the emergency console.
        Console = 2 => "VIRQ_CONSOLE",
        /// Global (dom0): exceptional event for some domain.
        DomExc = 3 => "VIRQ_DOM_EXC",
        /// Global (dom0): trace buffer has records.
        Tbuf = 4 => "VIRQ_TBUF",
        /// Global (dom0): a domain paused for debugging.
        Debugger = 6 => "VIRQ_DEBUGGER",
        /// Per-vCPU: XenOprofile sample available.
        Xenoprof = 7 => "VIRQ_XENOPROF",
        /// Global (dom0): bytes received on the console ring.
        ConRing = 8 => "VIRQ_CON_RING",
        /// Global (dom0): physical CPU state changed.
        PcpuState = 9 => "VIRQ_PCPU_STATE",
        /// Global (dom0): a memory event occurred.
        MemEvent = 10 => "VIRQ_MEM_EVENT",
        /// Global: Argo message notification.
        Argo = 11 => "VIRQ_ARGO",
        /// Global (dom0): Xen is low on heap memory.
        Enomem = 12 => "VIRQ_ENOMEM",
        /// Per-vCPU: PMC interrupt.
        Xenpmu = 13 => "VIRQ_XENPMU",
        /// Architecture-specific VIRQ 0.
        Arch0 = 16 => "VIRQ_ARCH_0",
        /// Architecture-specific VIRQ 1.
        Arch1 = 17 => "VIRQ_ARCH_1",
        /// Architecture-specific VIRQ 2.
        Arch2 = 18 => "VIRQ_ARCH_2",
        /// Architecture-specific VIRQ 3.
        Arch3 = 19 => "VIRQ_ARCH_3",
        /// Architecture-specific VIRQ 4.
        Arch4 = 20 => "VIRQ_ARCH_4",
        /// Architecture-specific VIRQ 5.
        Arch5 = 21 => "VIRQ_ARCH_5",
        /// Architecture-specific VIRQ 6.
        Arch6 = 22 => "VIRQ_ARCH_6",
        /// Architecture-specific VIRQ 7.
        Arch7 = 23 => "VIRQ_ARCH_7",
    }
}

/// Number of VIRQ numbers (`NR_VIRQS`).
pub const NR_VIRQS: u32 = 24;

/// `flags` bit of [`EvtchnBindPirq`]: the PIRQ may be shared (`BIND_PIRQ__WILL_SHARE`).
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// Number of ports of the 2-level event channel ABI on x86_64
/// (`EVTCHN_2L_NR_CHANNELS` = 64 * 64 bits).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;

/// `EVTCHNOP_alloc_unbound` argument (`struct evtchn_alloc_unbound`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    /// IN: the domain to allocate in (`DOMID_SELF` or, privileged, another).
    pub dom: RawDomId,
    /// IN: the domain that may bind to the port.
    pub remote_dom: RawDomId,
    /// OUT: the new port.
    pub port: RawEvtchnPort,
}

/// `EVTCHNOP_bind_interdomain` argument (`struct evtchn_bind_interdomain`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    /// IN: the remote domain.
    pub remote_dom: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: u16,
    /// IN: its unbound port.
    pub remote_port: RawEvtchnPort,
    /// OUT: the local end.
    pub local_port: RawEvtchnPort,
}

/// `EVTCHNOP_bind_virq` argument (`struct evtchn_bind_virq`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindVirq {
    /// IN: [`Virq`].
    pub virq: u32,
    /// IN: the vCPU to deliver to.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: RawEvtchnPort,
}

/// `EVTCHNOP_bind_pirq` argument (`struct evtchn_bind_pirq`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindPirq {
    /// IN: the physical IRQ.
    pub pirq: u32,
    /// IN: [`BIND_PIRQ_WILL_SHARE`] or 0.
    pub flags: u32,
    /// OUT: the new port.
    pub port: RawEvtchnPort,
}

/// `EVTCHNOP_bind_ipi` argument (`struct evtchn_bind_ipi`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindIpi {
    /// IN: the vCPU to deliver to.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: RawEvtchnPort,
}

/// `EVTCHNOP_close` argument (`struct evtchn_close`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnClose {
    /// IN: the port to close.
    pub port: RawEvtchnPort,
}

/// `EVTCHNOP_send` argument (`struct evtchn_send`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnSend {
    /// IN: the local port whose remote end to notify.
    pub port: RawEvtchnPort,
}

xen_enum! {
    /// What a port is bound to (`EVTCHNSTAT_*`, [`EvtchnStatus::status`]).
    pub enum EvtchnStat: u32 as "event channel status" {
        /// Not in use.
        Closed = 0 => "EVTCHNSTAT_closed",
        /// Waiting for a remote domain to bind.
        Unbound = 1 => "EVTCHNSTAT_unbound",
        /// Connected to a remote domain.
        Interdomain = 2 => "EVTCHNSTAT_interdomain",
        /// Bound to a physical IRQ.
        Pirq = 3 => "EVTCHNSTAT_pirq",
        /// Bound to a virtual IRQ.
        Virq = 4 => "EVTCHNSTAT_virq",
        /// Bound to an IPI.
        Ipi = 5 => "EVTCHNSTAT_ipi",
    }
}

/// `EVTCHNOP_status` argument (`struct evtchn_status`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnStatus {
    /// IN: the domain owning the port.
    pub dom: RawDomId,
    /// Padding (implicit in C).
    pub _pad0: u16,
    /// IN: the port.
    pub port: RawEvtchnPort,
    /// OUT: [`EvtchnStat`].
    pub status: u32,
    /// OUT: the vCPU the port delivers to.
    pub vcpu: u32,
    /// OUT: the C union `u`, meaning chosen by `status`; read it with
    /// [`EvtchnStatus::binding`].
    pub u: [u32; 2],
}

/// The decoded `u` of an [`EvtchnStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnBinding {
    /// The port is closed.
    Closed,
    /// Unbound, waiting for domain `dom` (`u.unbound.dom`).
    Unbound {
        /// The domain allowed to bind.
        dom: RawDomId,
    },
    /// Connected to `port` of domain `dom` (`u.interdomain`).
    Interdomain {
        /// The remote domain.
        dom: RawDomId,
        /// The remote port.
        port: RawEvtchnPort,
    },
    /// Bound to physical IRQ `pirq` (`u.pirq`).
    Pirq(u32),
    /// Bound to virtual IRQ `virq` (`u.virq`; raw, since Xen may add VIRQs).
    Virq(u32),
    /// Bound to an IPI.
    Ipi,
}

impl EvtchnStatus {
    /// Decode `status` and the union `u`.
    pub fn binding(&self) -> Result<EvtchnBinding, UnknownValue<u32>> {
        let low16 = (self.u[0] & 0xFFFF) as RawDomId;
        Ok(match EvtchnStat::try_from(self.status)? {
            EvtchnStat::Closed => EvtchnBinding::Closed,
            EvtchnStat::Unbound => EvtchnBinding::Unbound { dom: low16 },
            EvtchnStat::Interdomain => EvtchnBinding::Interdomain {
                dom: low16,
                port: self.u[1],
            },
            EvtchnStat::Pirq => EvtchnBinding::Pirq(self.u[0]),
            EvtchnStat::Virq => EvtchnBinding::Virq(self.u[0]),
            EvtchnStat::Ipi => EvtchnBinding::Ipi,
        })
    }
}

/// `EVTCHNOP_bind_vcpu` argument (`struct evtchn_bind_vcpu`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    /// IN: the port.
    pub port: RawEvtchnPort,
    /// IN: the vCPU to deliver to from now on.
    pub vcpu: u32,
}

/// `EVTCHNOP_unmask` argument (`struct evtchn_unmask`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnUnmask {
    /// IN: the port to unmask.
    pub port: RawEvtchnPort,
}

/// `EVTCHNOP_reset` argument (`struct evtchn_reset`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnReset {
    /// IN: the domain whose ports to close (`DOMID_SELF`, or another if privileged).
    pub dom: RawDomId,
}

/// `EVTCHNOP_init_control` argument (`struct evtchn_init_control`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnInitControl {
    /// IN: frame of the FIFO control block.
    pub control_gfn: u64,
    /// IN: offset of the control block in that frame.
    pub offset: u32,
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: bits of the LINK field in an event word.
    pub link_bits: u8,
    /// Explicit padding in C.
    pub _pad: [u8; 7],
}

/// `EVTCHNOP_expand_array` argument (`struct evtchn_expand_array`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnExpandArray {
    /// IN: frame of the new event array page.
    pub array_gfn: u64,
}

/// `EVTCHNOP_set_priority` argument (`struct evtchn_set_priority`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnSetPriority {
    /// IN: the port.
    pub port: RawEvtchnPort,
    /// IN: 0 (highest) ..= 15 (lowest).
    pub priority: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_union() {
        let s = EvtchnStatus {
            status: EvtchnStat::Interdomain.raw(),
            u: [7, 42],
            ..Default::default()
        };
        assert_eq!(
            s.binding(),
            Ok(EvtchnBinding::Interdomain { dom: 7, port: 42 })
        );
        let bad = EvtchnStatus {
            status: 9,
            ..Default::default()
        };
        assert_eq!(bad.binding().unwrap_err().value, 9);
    }

    #[test]
    fn virq_numbers() {
        assert_eq!(Virq::try_from(5).unwrap_err().value, 5);
        assert_eq!(Virq::ConRing.raw(), 8);
    }
}
