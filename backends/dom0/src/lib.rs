//! dom0 client libraries for Sluice's daemons, each behind a trait with a real and an
//! in-process fake implementation:
//!
//! * [`evtchn::EventChannels`]: `/dev/xen/evtchn` ([`sluice_xen_sys::EvtchnDevice`]) or
//!   [`evtchn::FakeEvtchnHub`] endpoints;
//! * [`grant::GrantMapper`]: `/dev/xen/gntdev` ([`sluice_xen_sys::GntdevDevice`]) or
//!   [`grant::FakeGuestMemory`];
//! * [`xenstore::XenStore`]: [`xenstore::XsClient`] over the xenstored socket or
//!   `/dev/xen/xenbus`, or [`xenstore::FakeXenStore`] connections;
//!
//! and [`ratelimit`]: the rate limits both daemons put on what a guest can make them do
//! (log lines per device and class, console wakeups per guest).
//!
//! The fakes are the fake Xen world of host tests, behind the `fake` feature; with it,
//! [`fake::FakeFront`] gives a frontend core (`sluice_front_seams`) a fake guest on the
//! same world, so real frontends and real backends meet in one process.

#![deny(unsafe_code)]

pub mod evtchn;
#[cfg(feature = "fake")]
pub mod fake;
pub mod grant;
pub mod profile;
pub mod ratelimit;
pub mod xenstore;

pub use evtchn::{EventChannels, EvtchnError};
pub use grant::{GrantError, GrantMap, GrantMapper};
pub use ratelimit::{LimitClock, LogLimiter, Rate, Throttle};
pub use sluice_xen_sys::{CopyPtr, CopySegment};
pub use xenstore::{WatchEvent, XenStore, XsError};

#[doc(hidden)]
pub use tracing as __tracing;
