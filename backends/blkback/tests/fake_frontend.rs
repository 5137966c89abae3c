//! The backend's logic against a fake frontend over the fake transports (xenstore,
//! grants, event channels) and a real image file. Fast host tests, not the proof:
//! `tests/` (the real-Xen test bed) runs it against Linux's blkfront.
//!
//! The cases live in `fake_frontend/`: `io` (the data path), `lifecycle` (connect,
//! reconnect, restart, hostile xenstore and rings), `persistent` (persistent grants);
//! this file runs each with every I/O engine and grant mode.

mod common;
#[path = "fake_frontend/io.rs"]
mod io;
#[path = "fake_frontend/lifecycle.rs"]
mod lifecycle;
#[path = "fake_frontend/persistent.rs"]
mod persistent;

use common::*;
use io::*;
use lifecycle::*;
use persistent::*;

macro_rules! persistent_cases {
    ($($name:ident),*) => {
        mod persistent_sync_io {
            $(#[test] fn $name() { super::$name(sluice_blkback::IoEngine::Sync) })*
        }
        mod persistent_io_uring {
            $(#[test] fn $name() { super::$name(sluice_blkback::IoEngine::Uring) })*
        }
        mod persistent_io_uring_zero_copy {
            $(#[test] fn $name() {
                super::ZERO_COPY.with(|z| z.set(true));
                super::$name(sluice_blkback::IoEngine::Uring)
            })*
        }
    };
}

persistent_cases!(
    persistent_grants_are_reused_and_unmapped_on_close,
    grant_copy_without_agreement,
    persistent_grants_full_cache_copies,
    persistent_grants_across_reconnect,
    hostile_grefs_with_persistent_grants
);

/// Every case with both engines, with persistent grants (frontend agrees) and without
/// (frontend does not write `feature-persistent`: grant copy).
macro_rules! both_engines {
    ($($name:ident),*) => {
        mod sync_io {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Sync, false)) })*
        }
        mod io_uring {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Uring, false)) })*
        }
        mod sync_io_persistent {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Sync, true)) })*
        }
        mod io_uring_persistent {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Uring, true)) })*
        }
        mod io_uring_persistent_zero_copy {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Uring, true).zero_copy()) })*
        }
        // Zero copy without O_DIRECT (any segment alignment goes straight to the pages).
        mod io_uring_persistent_zero_copy_buffered {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() {
                super::$name(Cfg::new(IoEngine::Uring, true).zero_copy().buffered())
            })*
        }
        mod sync_io_buffered {
            use super::{Cfg, IoEngine};
            $(#[test] fn $name() { super::$name(Cfg::new(IoEngine::Sync, false).buffered()) })*
        }
    };
}

both_engines!(
    many_in_flight,
    barrier_orders_writes,
    restarted_backend_takes_over_live_rings,
    read_write_flush_discard_indirect,
    hostile_requests_get_errors_and_touch_nothing,
    read_only_disk,
    runaway_ring_disconnects_only_that_device,
    garbage_in_xenstore_is_refused,
    multi_page_multi_queue_and_reconnect
);
