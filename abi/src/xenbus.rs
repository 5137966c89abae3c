//! XenBus device states (`xen/io/xenbus.h`).
//!
//! Each split driver publishes its state as a decimal number in xenstore
//! (`<frontend or backend path>/state`); the two ends walk each other through
//! Initialising → InitWait → Initialised → Connected, and Closing → Closed on teardown.

use core::fmt;
use core::str::FromStr;

use crate::enums::{xen_enum, UnknownValue};

xen_enum! {
    /// A XenBus driver state (`enum xenbus_state`).
    pub enum XenbusState: u32 as "xenbus state" {
        /// Not yet published, or unreadable.
        Unknown = 0 => "XenbusStateUnknown",
        /// The driver is setting up.
        Initialising = 1 => "XenbusStateInitialising",
        /// Backend only: waiting for information from the peer (hotplug done, feature
        /// nodes written); the frontend may read them now.
        InitWait = 2 => "XenbusStateInitWait",
        /// Waiting for the peer to connect (our ring and event channel are published).
        Initialised = 3 => "XenbusStateInitialised",
        /// Ready for I/O.
        Connected = 4 => "XenbusStateConnected",
        /// The device is being torn down.
        Closing = 5 => "XenbusStateClosing",
        /// Torn down.
        Closed = 6 => "XenbusStateClosed",
        /// Reconfiguration requested (e.g. PCI hotplug).
        Reconfiguring = 7 => "XenbusStateReconfiguring",
        /// Reconfiguration done.
        Reconfigured = 8 => "XenbusStateReconfigured",
    }
}

impl XenbusState {
    /// The human name used in logs (`Connected`, `InitWait`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }

    /// The state as written to xenstore: its decimal number (`"4"` for Connected).
    pub const fn xenstore_value(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }
}

/// Why a xenstore `state` value could not be read as a [`XenbusState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseXenbusStateError {
    /// Not a decimal number.
    NotANumber,
    /// A number, but no defined state.
    Unknown(UnknownValue<u32>),
}

impl fmt::Display for ParseXenbusStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseXenbusStateError::NotANumber => f.write_str("xenbus state is not a number"),
            ParseXenbusStateError::Unknown(u) => u.fmt(f),
        }
    }
}

impl core::error::Error for ParseXenbusStateError {}

impl FromStr for XenbusState {
    type Err = ParseXenbusStateError;

    /// Parse a xenstore `state` node's value (decimal; surrounding whitespace and a
    /// trailing NUL, which some writers include, are ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim_end_matches('\0').trim();
        let n: u32 = s.parse().map_err(|_| ParseXenbusStateError::NotANumber)?;
        XenbusState::try_from(n).map_err(ParseXenbusStateError::Unknown)
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parse_and_display() {
        for s in XenbusState::ALL {
            assert_eq!(s.xenstore_value().parse::<XenbusState>(), Ok(*s));
            assert_eq!(XenbusState::try_from(s.raw()), Ok(*s));
        }
        assert_eq!("4\0".parse::<XenbusState>(), Ok(XenbusState::Connected));
        assert_eq!(
            "9".parse::<XenbusState>(),
            Err(ParseXenbusStateError::Unknown(UnknownValue {
                kind: "xenbus state",
                value: 9
            }))
        );
        assert_eq!(
            "x".parse::<XenbusState>(),
            Err(ParseXenbusStateError::NotANumber)
        );
        assert_eq!(XenbusState::InitWait.to_string(), "InitWait");
    }
}
