//! The fake Xen world of `sluice_front_seams::fake` (grant table, event channels,
//! xenstore, pages: the frontend's `Platform`) and a network backend over the real abi
//! rings (`netback.rs`), with hostile variants.

#![allow(dead_code)]

pub use sluice_front_seams::fake::{FrontPlatform, World, BACKEND_ID};
pub const FRONT: &str = "device/vif/0";
pub const BACK: &str = "backend/vif/1/0";

pub mod bed;
pub mod netback;
