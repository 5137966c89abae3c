//! Sluice's PCI passthrough core (no_std + alloc): what a function is
//! ([`inventory`]), whether it may be given to a guest and with what
//! ([`assign`]), the guest's view of its config space ([`vcfg`]), and its reset
//! and quarantine sequence ([`reset`]). All hardware access goes through
//! [`ConfigSpace`]; a fake ([`fake`], feature `test-utils`) describes devices as data.
//! The `std` feature adds [`host`]: the `sluice pci list` view of a Linux sysfs.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod assign;
pub mod config;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
#[cfg(feature = "std")]
pub mod host;
pub mod inventory;
pub mod reset;
pub mod vcfg;

pub use config::ConfigSpace;
pub use sluice_iommu::Bdf;
