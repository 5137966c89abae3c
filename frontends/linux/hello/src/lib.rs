//! sluice-hello.ko: the smallest Rust module of the build infrastructure. Its init logs,
//! allocates through the kernel heap (Vec, String), checks what it wrote, and its exit
//! logs again; the `linux-modules` suite loads and unloads it in the stock kernel.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use sluice_kernel::{pr_err, pr_info};

sluice_kernel::module_hooks!(sluice_hello_init => init, sluice_hello_exit => exit);

/// The C shim's `module_init` (through `sluice_hello_init`); 0 or a negative errno.
fn init() -> core::ffi::c_int {
    let squares: Vec<u64> = (0..1000u64).map(|i| i * i).collect();
    let sum: u64 = squares.iter().sum();
    let mut name = String::from("sluice");
    name.push_str("-hello");
    // sum of i^2 for i < 1000 = 999 * 1000 * 1999 / 6
    if sum != 332_833_500 {
        pr_err!("{name}: heap check failed: sum {sum}");
        return -22; // -EINVAL
    }
    pr_info!(
        "{name}: loaded (Rust, {} heap bytes checked)",
        squares.len() * 8
    );
    0
}

/// The C shim's `module_exit` (through `sluice_hello_exit`).
fn exit() {
    pr_info!("sluice-hello: unloaded");
}
