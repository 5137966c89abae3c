//! What the hostile frontends (`tests/hostile-blkfront`, `tests/hostile-netfront`: static
//! binaries run inside Xen domUs by the test bed) share: the report every scenario
//! writes its `@@HOSTILE PASS|FAIL name: detail` lines to, timeouts scaled by
//! `--timeout-scale`, and the frontend's side of xenbus for one device (its nodes, its
//! state, waiting for the backend's). Each binary keeps its own protocol on top.

#![deny(unsafe_code)]

mod report;
mod xenbus;

pub use report::{arg, secs, Report};
pub use xenbus::XenbusFront;
