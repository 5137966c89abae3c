//! The xenstore ring page (`struct xenstore_domain_interface`), its indices and its
//! `server_features`, `connection` and `error` fields.

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;

/// Bytes in each direction of the ring page (`XENSTORE_RING_SIZE`).
pub const XENSTORE_RING_SIZE: usize = 1024;

/// A ring index of the xenstore page (`XENSTORE_RING_IDX`): free-running, masked with
/// [`mask_xenstore_idx`] to address the ring.
pub type XenstoreRingIdx = u32;

/// `MASK_XENSTORE_IDX`: the byte of a 1024-byte ring that free-running index `idx` names.
pub const fn mask_xenstore_idx(idx: XenstoreRingIdx) -> usize {
    (idx as usize) & (XENSTORE_RING_SIZE - 1)
}

/// Validated (`cons`, `prod`) indices of one direction of the xenstore ring: the same
/// free-running byte-ring arithmetic as the console page, with
/// [`XENSTORE_RING_SIZE`] as the size (`RingIndices::check(cons, prod,
/// XENSTORE_RING_SIZE)` refuses indices claiming more than 1024 unread bytes).
pub type XenstoreRingIndices = crate::console::RingIndices;

/// The xenstore ring page shared between a guest and xenstored
/// (`struct xenstore_domain_interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to the daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Daemon's consumer index into `req`.
    pub req_cons: XenstoreRingIdx,
    /// Guest's producer index into `req`.
    pub req_prod: XenstoreRingIdx,
    /// Guest's consumer index into `rsp`.
    pub rsp_cons: XenstoreRingIdx,
    /// Daemon's producer index into `rsp`.
    pub rsp_prod: XenstoreRingIdx,
    /// [`XenstoreServerFeatures`] the daemon offers.
    pub server_features: u32,
    /// [`XenstoreConnection`].
    pub connection: u32,
    /// [`XenstoreRingError`].
    pub error: u32,
}

bitflags! {
    /// `server_features` bits (`XENSTORE_SERVER_FEATURE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct XenstoreServerFeatures: u32 {
        /// The ring can be reset through `connection` (`..._RECONNECTION`).
        const RECONNECTION = 1;
        /// The `error` field is present (`..._ERROR`).
        const ERROR = 2;
    }
}

xen_enum! {
    /// Values of the ring page's `connection` field (`XENSTORE_CONNECTED`, ...).
    pub enum XenstoreConnection: u32 as "xenstore connection state" {
        /// Steady state.
        Connected = 0 => "XENSTORE_CONNECTED",
        /// The guest asked for a reconnect; the daemon resets the ring and sets Connected.
        Reconnect = 1 => "XENSTORE_RECONNECT",
    }
}

xen_enum! {
    /// Values of the ring page's `error` field (`XENSTORE_ERROR_*`).
    pub enum XenstoreRingError: u32 as "xenstore ring error" {
        /// No error.
        None = 0 => "XENSTORE_ERROR_NONE",
        /// Communication problem.
        Comm = 1 => "XENSTORE_ERROR_COMM",
        /// Invalid ring index.
        RingIdx = 2 => "XENSTORE_ERROR_RINGIDX",
        /// Protocol violation (payload too long).
        Proto = 3 => "XENSTORE_ERROR_PROTO",
    }
}
