//! Sluice's shared guest ABI: Xen's public wire structures and ring protocols.
//!
//! Every type here is byte-compatible with the matching struct in Xen's public headers
//! (`xen/include/public`); `tests/layout/` proves it against the installed headers.
//! `no_std`, no allocation. The only `unsafe` lives in [`shared`], which wraps access to
//! memory a peer can change at any time.

#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(test)]
extern crate std;

mod enums;

pub mod blkif;
pub mod byte_ring;
pub mod console;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall;
pub mod netif;
pub mod ring;
pub mod shared;
pub mod shared_info;
pub mod start_info;
pub mod types;
pub mod xenbus;
pub mod xs_wire;

pub use enums::UnknownValue;
