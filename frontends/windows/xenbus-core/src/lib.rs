//! Hardware-independent logic of Sluice's Windows xenbus driver (`frontends/windows/
//! xenbus`), `no_std` and host-tested over fakes: finding Xen ([`cpuid`]), the
//! emulated-device unplug protocol ([`unplug`]), event-channel dispatch ([`evtchn`]),
//! grant references ([`grants`]), the xenstore client ([`xenstore`]) and the child
//! devices ([`children`]), and the bus interface xenbus gives its children: its contract
//! ([`iface`]), the bus side ([`bus`]: one grant table, [`ports`], [`watches`]) and
//! the seams a child's frontend core runs on over it ([`platform`]). The driver supplies the hardware through small traits
//! (`PortIo`, `EventWords`, `GrantEntries`, `XsTransport`).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod bus;
pub mod children;
pub mod cpuid;
pub mod evtchn;
pub mod grants;
pub mod iface;
pub mod platform;
pub mod ports;
pub mod unplug;
pub mod unplug_request;
pub mod watches;
pub mod xenstore;

#[cfg(test)]
mod blk_tests;
#[cfg(test)]
mod bus_tests;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod platform_tests;
#[cfg(test)]
mod xenstore_tests;
