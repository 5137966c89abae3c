//! The Xen network frontend's logic, independent of any guest kernel (`no_std` + `alloc`).
//!
//! * xenbus negotiation as Linux's xen-netfront 6.1 (`netif.h`): `request-rx-copy`,
//!   `feature-sg`, `feature-gso-tcpv4/v6`, `feature-ipv6-csum-offload`,
//!   `feature-rx-notify`, `multi-queue-num-queues`, split event channels;
//! * TX: a packet's bytes are copied into frontend-owned pages, persistently granted
//!   read-only (one per TX id), as up to 18 full-page slots with a GSO extra slot;
//! * RX: one persistently granted page per ring slot, always posted; responses are
//!   assembled into packets (extra info for GSO), checked, copied out once;
//! * a misbehaving backend (bogus or unsent ids, impossible ring indices, a vanished
//!   backend) fails the device with a typed [`ProtocolError`]; malformed received
//!   packets are dropped and counted, as Linux does.
//!
//! Everything the guest kernel provides goes through [`Platform`].

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod datapath;
pub mod error;
pub mod features;
mod frontend;
mod queue;

pub use datapath::DataQueue;
pub use error::{NegotiationError, ProtocolError, TxError};
pub use features::{parse_mac, BackendFeatures, FrontendConfig};
pub use frontend::{Event, FrontState, Frontend, Offloads, Poll, Stats};
pub use queue::{RxPacket, TxCsum, TxOffload, MAX_SLOTS, MIN_PACKET};
pub use sluice_abi::netif::NetifGsoType;
pub use sluice_front_seams::{
    EventChannels, GrantInUse, Grants, Memory, Pages, Platform, SeamError, XenStore,
};
