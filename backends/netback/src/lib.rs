//! Sluice's Xen network backend (netif) for dom0: serves `backend/vif` devices from
//! userspace, one tap device (`vif<domid>.<handle>`, vnet headers) per vif, data moved
//! by batched grant copy, tap reads and writes batched through io_uring.

#![deny(unsafe_code)]

pub mod backend;
pub mod pages;
pub mod profile;
pub mod queue;
mod rx;
pub mod tx;
pub mod vnet;

pub use backend::{Backend, VifError};
pub use queue::{Features, Frames, NetStats, Queue, QueueError};
