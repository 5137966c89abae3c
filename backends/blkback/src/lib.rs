//! Sluice's Xen block backend: a dom0 userspace daemon serving blkif rings from raw
//! images or block devices (io_uring or synchronous pread/pwrite; grant copy for the data,
//! or persistently mapped grants when the frontend agrees to `feature-persistent`).

#![deny(unsafe_code)]

pub mod backend;
pub mod buffers;
pub mod coalesce;
pub mod disk;
pub mod journal;
pub mod persistent;
pub mod profile;
pub mod ring_server;
pub mod status;
mod transfer;
pub mod uring_server;

pub use backend::{Backend, DeviceError, IoEngine};
