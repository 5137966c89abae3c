//! The only layer with `unsafe`: boot, descriptor tables, serial, physical memory
//! access, the heap, the IOMMU HAL and the SVM backend. Everything above is safe Rust.

pub mod boot;
pub mod cpu;
pub mod heap;
pub mod iommu;
pub mod lapic;
pub mod phys;
pub mod serial;
pub mod smp;
pub mod svm;
pub mod svm_intercepts;
pub mod time;

/// Host CPUID, for the guest CPUID handler to filter.
pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}
