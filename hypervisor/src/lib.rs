//! The hypervisor's core built for the host, for unit tests (`cargo xtask test` runs
//! them in its static phase): domains, the frame allocator, grant tables, event channels
//! and hypercalls, compiled from the same files as the hypervisor binary (`main.rs`) but
//! over `fake/` (a fake machine: per-thread physical memory, a backend whose vCPUs are
//! plain structs) instead of `arch/`. Empty when built for the hypervisor's target.

#![no_std]
#![cfg(not(target_os = "none"))]
#![deny(unsafe_code)]

extern crate alloc;
extern crate std;

#[macro_use]
mod log;
pub mod addr;
#[path = "fake/mod.rs"]
pub mod arch;
pub mod console_in;
pub mod domain;
pub mod dump;
pub mod emulate;
pub mod evtchn;
pub mod grant;
pub mod guest_acpi;
pub mod hvm;
pub mod hypercall;
pub mod mm;
pub mod multiboot;
pub mod multiboot2;
pub mod time;
pub mod virt;
pub mod vlapic;
pub mod vpci;
pub mod vsmp;

/// The host build has no IOMMU: a domain's IOMMU domain is never made.
pub mod iommu {
    pub struct IommuDomain;
}

/// The test harness (a machine of domains over the fake, hypercall helpers), also for
/// other crates' tests with the `test-utils` feature; the unit tests themselves with
/// cfg(test).
#[cfg(any(test, feature = "test-utils"))]
pub mod tests;

/// The hypervisor's real `arch::phys`, compiled for the host tests to check that every
/// safe accessor refuses the image before it dereferences anything (`tests::phys`);
/// `boot` stands in for `arch::boot`, naming a fake image range.
#[cfg(test)]
#[allow(unsafe_code)]
#[path = "arch/phys.rs"]
mod real_phys;
#[cfg(test)]
mod boot {
    /// Where the tests' fake hypervisor image is.
    pub const IMAGE: (u64, u64) = (0x20_0000, 0x40_0000);
    pub fn image_range() -> (u64, u64) {
        IMAGE
    }
}
