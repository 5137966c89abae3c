//! Scalar types and reserved values shared by every Xen interface (`xen.h`).
//!
//! [`DomId`], [`GrantRef`] and [`EvtchnPort`] are `#[repr(transparent)]` newtypes so a
//! domain id, a grant reference and a port cannot be mixed up across a seam; they derive
//! the zerocopy traits, so ring structures carry them with the C layout. The hypercall
//! argument structs the hypervisor decodes (`grant_table`, `event_channel`,
//! `hypercall`) keep the raw integers ([`RawDomId`] and friends) for now.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `domid_t` as a raw integer (hypercall argument structs).
pub type RawDomId = u16;
/// `evtchn_port_t` as a raw integer (hypercall argument structs).
pub type RawEvtchnPort = u32;
/// `grant_ref_t` as a raw integer (hypercall argument structs).
pub type RawGrantRef = u32;

macro_rules! scalar {
    ($(#[$doc:meta])* $name:ident($raw:ty)) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            FromBytes, IntoBytes, KnownLayout, Immutable,
        )]
        #[repr(transparent)]
        pub struct $name(pub $raw);

        impl $name {
            /// The raw value.
            pub const fn get(self) -> $raw {
                self.0
            }
        }

        impl From<$raw> for $name {
            fn from(v: $raw) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $raw {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        // Printed as the bare number: that is how xenstore and logs spell them.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl core::str::FromStr for $name {
            type Err = core::num::ParseIntError;
            /// Parses the decimal form xenstore uses.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse::<$raw>().map($name)
            }
        }
    };
}

scalar! {
    /// A domain id (`domid_t`).
    DomId(u16)
}
scalar! {
    /// An event channel port (`evtchn_port_t`).
    EvtchnPort(u32)
}
scalar! {
    /// An index into a domain's grant table (`grant_ref_t`).
    GrantRef(u32)
}

/// A handle for a grant mapping, returned by `GNTTABOP_map_grant_ref` (`grant_handle_t`).
pub type GrantHandle = u32;
/// A guest frame number (`xen_pfn_t`; `unsigned long`, 64 bits on x86_64).
pub type XenPfn = u64;
/// A guest pointer passed in a hypercall argument struct (`XEN_GUEST_HANDLE(...)`): a
/// guest virtual address, 64 bits on x86_64.
pub type GuestHandle = u64;

/// The calling domain, where an interface accepts "myself" (`DOMID_SELF`).
pub const DOMID_SELF: RawDomId = 0x7FF0;
/// Domain ids at or above this are reserved and name no ordinary domain
/// (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: RawDomId = 0x7FF0;
/// Pseudo-domain for I/O mappings (`DOMID_IO`).
pub const DOMID_IO: RawDomId = 0x7FF1;
/// Pseudo-domain owning Xen's own pages (`DOMID_XEN`).
pub const DOMID_XEN: RawDomId = 0x7FF2;
/// Pseudo-domain owning shared copy-on-write pages (`DOMID_COW`).
pub const DOMID_COW: RawDomId = 0x7FF3;
/// Pages with no known owner (`DOMID_INVALID`).
pub const DOMID_INVALID: RawDomId = 0x7FF4;
/// The idle domain (`DOMID_IDLE`).
pub const DOMID_IDLE: RawDomId = 0x7FFF;
/// Mask of the bits a valid domain id may use (`DOMID_MASK`).
pub const DOMID_MASK: RawDomId = 0x7FFF;

impl DomId {
    /// dom0.
    pub const DOM0: DomId = DomId(0);
    /// `DOMID_SELF`.
    pub const SELF: DomId = DomId(DOMID_SELF);
    /// `DOMID_INVALID`.
    pub const INVALID: DomId = DomId(DOMID_INVALID);

    /// Whether this names an ordinary domain (not one of the reserved pseudo-domains).
    pub const fn is_ordinary(self) -> bool {
        is_ordinary_domid(self.0)
    }
}

/// Whether `dom` names an ordinary domain (not one of the reserved pseudo-domains).
pub const fn is_ordinary_domid(dom: RawDomId) -> bool {
    dom < DOMID_FIRST_RESERVED
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn transparent_layout_and_text() {
        assert_eq!(
            (size_of::<DomId>(), align_of::<DomId>()),
            (size_of::<u16>(), align_of::<u16>())
        );
        assert_eq!(size_of::<GrantRef>(), 4);
        assert_eq!(size_of::<EvtchnPort>(), 4);
        assert_eq!(GrantRef(7).as_bytes(), 7u32.as_bytes());
        assert_eq!(std::format!("{}", EvtchnPort(12)), "12");
        assert_eq!(std::format!("{:?}", DomId(3)), "DomId(3)");
        assert_eq!("42".parse::<GrantRef>(), Ok(GrantRef(42)));
        assert!("-1".parse::<GrantRef>().is_err());
        assert!("65536".parse::<DomId>().is_err());
        assert!(DomId(5).is_ordinary() && !DomId::SELF.is_ordinary());
    }
}
