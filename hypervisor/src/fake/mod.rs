//! A fake machine for the host build of the hypervisor's core (`src/lib.rs`): the same
//! interface as `arch/` (physical memory, the SVM backend, CPUs, serial, time), in
//! safe Rust over per-thread state, so each unit test has its own machine.

pub mod phys;
pub mod serial;
pub mod smp;
pub mod svm;
pub mod time;

/// Host CPUID as a guest sees it filtered: the fake CPU reports nothing.
pub fn cpuid(_leaf: u32, _sub: u32) -> [u32; 4] {
    [0; 4]
}
