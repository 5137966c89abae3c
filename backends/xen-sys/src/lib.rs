//! Raw access to Linux's Xen devices for dom0 daemons: `/dev/xen/evtchn` (event
//! channels) and `/dev/xen/gntdev` (grant mapping and grant copy); and, for Sluice's
//! userspace test frontends in a domU, `/dev/xen/gntalloc` (granting local pages); and
//! `/dev/net/tun` taps with vnet headers (sluice-netback's side of the host's network),
//! driven through io_uring in batches ([`framering`]).
//!
//! This crate holds all of the daemons' `unsafe`: ioctls with the structs of Linux's
//! `include/uapi/xen/{evtchn,gntdev,gntalloc}.h` (written from the documented layouts) and the
//! `mmap` of granted pages and of the daemons' crash journals, exposed as [`sluice_abi::shared::SharedMem`].

#![deny(unsafe_op_in_unsafe_fn)]

pub mod evtchn;
pub mod framering;
pub mod gntalloc;
pub mod gntdev;
pub mod iobuf;
mod ioc;
pub mod mapped_file;
pub mod tap;
pub mod uring;

pub use evtchn::{EvtchnDevice, EvtchnError};
pub use framering::FrameRing;
pub use gntalloc::{GntallocDevice, GntallocError, GrantedPages};
pub use gntdev::{CopyPtr, CopySegment, GntdevDevice, GntdevError, GrantMapping};
pub use iobuf::{IoBuf, IO_ALIGN};
pub use mapped_file::MappedFile;
pub use tap::{TapDevice, TapError, TapOffloads, VNET_HDR_LEN};
pub use uring::{Completion, IoQueue, IoSpan, StableMem};
