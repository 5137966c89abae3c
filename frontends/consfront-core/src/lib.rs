//! The Xen console frontend's logic for secondary consoles (`device/console/<n>`, n >= 1),
//! independent of any guest kernel (`no_std` + `alloc`).
//!
//! * Negotiation as Linux's `hvc_xen` does for its xenbus consoles: one granted page
//!   (`struct xencons_interface`), one event channel, `ring-ref` and `port` published,
//!   state Initialised, Connected once the backend is;
//! * the byte rings: output (`out`, 2048 bytes) produced by us, input (`in`, 1024 bytes)
//!   consumed by us. Our own indices (`out_prod`, `in_cons`) live in the core and are
//!   only ever written to the page, never read back; the backend's (`out_cons`,
//!   `in_prod`) are read once per call and checked before any byte moves;
//! * a misbehaving backend (runaway indices, a vanished backend, a bogus backend id)
//!   fails the device with a typed [`ConsoleError`]; its resources are released (a page
//!   the backend still maps is leaked, never reused).
//!
//! Everything the guest kernel provides goes through [`Platform`].

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod error;
mod frontend;

pub use error::{ConsoleError, RingSide};
pub use frontend::{Event, FrontState, Frontend, Stats};
pub use sluice_front_seams::{
    EventChannels, GrantInUse, Grants, Memory, Pages, Platform, SeamError, XenStore,
};
