//! The seams to the guest kernel: memory, grants, event channels and xenstore, shared
//! with every frontend core (`sluice-front-seams`).
//!
//! `sluice-blkfront.ko` implements them over Linux's Xen APIs (`frontends/linux/kernel`);
//! the host tests over a hand-written fake backend (`tests/fake`) and over the fake Xen
//! world of `sluice_dom0` with the real blkback (`tests/with_blkback.rs`).

pub use sluice_front_seams::{
    EventChannels, GrantInUse, Grants, Memory, Pages, Platform, SeamError, XenStore,
};
