//! Hardware-independent logic of Sluice's Windows xenbus driver (`frontends/windows/
//! xenbus`), `no_std` and host-tested over fakes: finding Xen ([`cpuid`]), the
//! emulated-device unplug protocol ([`unplug`]), event-channel dispatch ([`evtchn`]),
//! grant references ([`grants`]), the xenstore client ([`xenstore`]) and the child
//! devices ([`children`]). The driver supplies the hardware through small traits
//! (`PortIo`, `EventWords`, `GrantEntries`, `XsTransport`).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod children;
pub mod cpuid;
pub mod evtchn;
pub mod grants;
pub mod platform;
pub mod unplug;
pub mod xenstore;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod platform_tests;
#[cfg(test)]
mod xenstore_tests;
