//! Sluice's real-Xen test bed: Debian's Xen 4.17 with a Debian dom0 and domUs, booted
//! in QEMU TCG, driven over the serial console.
//!
//! The pieces, in the order a run uses them:
//! - [`xenpkgs`] fetches and unpacks Xen's Debian packages into a cache (no host install);
//! - [`kernel`] finds the host's Debian kernel and resolves module dependencies;
//! - [`initramfs`] stages files (binaries with their ldd libraries) and packs a cpio;
//! - [`scenario`] is the typed description of one Xen boot and its guest steps;
//! - [`images`] turns a scenario into a dom0 and a domU initramfs and disk images;
//! - [`serial`] runs QEMU and offers an expect-style API on its serial console;
//! - [`run`] boots, drives every step, checks results in the guest and on the host;
//! - [`debian_dom0`] builds a real Debian 12 dom0 image (systemd, apt) for the package tests.
//!
//! Everything that can go wrong in the infrastructure (a timeout, a crash, a signal, a
//! missing marker) is a [`Failure`], never a pass.
#![deny(unsafe_code)]

pub mod cargo_bin;
pub mod debian_dom0;
pub mod demo;
pub mod error;
pub mod hostile_net;
pub mod images;
pub mod initramfs;
pub mod kernel;
pub mod net;
pub mod paths;
pub mod pattern;
pub mod pci_passthrough;
pub mod progress;
pub mod run;
pub mod scenario;
pub mod serial;
pub mod sluice_backends;
pub mod soak;
pub mod together;
pub mod xenpkgs;

pub use error::Failure;
pub use run::{run_boot, BootReport};
pub use scenario::{
    BackendMisbehaviour, BlockBackend, Boot, ConsoleBackend, Disk, Dom0Daemon, GuestStep,
    GuestType, NetBackend, NetFrontend, NetMisbehaviour, Vif, Workload,
};
