//! Why the console failed or refused a transfer.

use core::fmt;
use sluice_front_seams::SeamError;

/// Which of the two console rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSide {
    /// `in`: bytes to the guest (the backend produces).
    Input,
    /// `out`: bytes from the guest (the backend consumes).
    Output,
}

/// Why the console cannot carry bytes. All but [`ConsoleError::NotConnected`] fail the
/// device for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The ring is not set up (before [`start`](crate::Frontend::start), or after the
    /// backend closed): not a failure.
    NotConnected,
    /// The nodename does not end in a console number >= 1 (`device/console/<n>`;
    /// console 0 is the toolstack's, not a xenbus device).
    BadNodename,
    /// The backend domain id is a reserved one (`DOMID_FIRST_RESERVED` and above).
    BadBackendId(u16),
    /// The backend's index claims more bytes than its ring holds (or runs backwards).
    RunawayIndex {
        /// The ring.
        ring: RingSide,
        /// Consumer index (the backend's for output, ours for input).
        cons: u32,
        /// Producer index (ours for output, the backend's for input).
        prod: u32,
    },
    /// The backend's xenstore directory went away (state Unknown).
    BackendVanished,
    /// The kernel refused memory, a grant, an event channel or a xenstore write, or a
    /// copy was out of bounds.
    Platform(SeamError),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::NotConnected => f.write_str("console not connected"),
            ConsoleError::BadNodename => f.write_str("nodename is not device/console/<n>, n >= 1"),
            ConsoleError::BadBackendId(d) => write!(f, "backend domain {d} is reserved"),
            ConsoleError::RunawayIndex { ring, cons, prod } => write!(
                f,
                "{} ring indices cons {cons} prod {prod} claim more than the ring holds",
                match ring {
                    RingSide::Input => "input",
                    RingSide::Output => "output",
                }
            ),
            ConsoleError::BackendVanished => f.write_str("backend vanished"),
            ConsoleError::Platform(e) => write!(f, "{e}"),
        }
    }
}

impl From<SeamError> for ConsoleError {
    fn from(e: SeamError) -> Self {
        ConsoleError::Platform(e)
    }
}
