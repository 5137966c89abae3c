//! The Xen block frontend's logic, independent of any guest kernel (`no_std` + `alloc`).
//!
//! * xenbus negotiation as in `blkif.h`: multi-queue, multi-page rings, persistent
//!   grants, indirect segments, flush/barrier, discard ([`features`]);
//! * request building: data copied through frontend-owned bounce pages (a backend never
//!   gets access to the block layer's pages), indirect pages beyond 11 segments;
//! * completion matched by id: a response with a bogus id, for a request never sent, or
//!   with the wrong operation, and impossible ring indices, fail the device with a typed
//!   [`ProtocolError`] and complete every outstanding I/O with an error;
//! * recovery: when the backend closes and comes back, in-flight I/O is held and sent
//!   again, oldest first, on the new rings;
//! * a budget of pages in flight per ring (data + indirect): a request that would exceed
//!   it is refused ([`SubmitError::PageBudget`]) until completions give pages back, so
//!   a ring's pool of persistently granted pages stays within the backend's cache.
//!
//! Everything the guest kernel provides goes through [`Platform`]. The host tests run it
//! against a fake backend serving a `Vec<u8>` disk, and hostile variants of it.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod error;
pub mod features;
mod frontend;
pub mod platform;

pub use error::{IoError, NegotiationError, ProtocolError, SubmitError};
pub use features::{
    request_pages, DiscardInfo, DiskInfo, FlushKind, FrontendConfig, RingLimits,
    DEFAULT_PAGES_PER_RING, DEFAULT_PERSISTENT_PAGES_PER_RING,
};
pub use frontend::{BlockIo, Event, FrontState, Frontend, IoOp, IoSegment, Polled, Stats, Timeout};
pub use platform::{
    EventChannels, GrantInUse, Grants, Memory, Pages, Platform, SeamError, XenStore,
};
