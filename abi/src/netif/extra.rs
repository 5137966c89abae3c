//! Extra-info slots (`struct netif_extra_info`): the GSO, multicast and hash items a
//! TX chain's first request may be followed by, their union offsets, and
//! [`NetifExtraInfo::decode`]/[`NetifExtraInfo::encode`] to and from [`NetifExtra`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;

xen_enum! {
    /// Kind of an extra-info slot (`XEN_NETIF_EXTRA_TYPE_*`).
    pub enum NetifExtraType: u8 as "netif extra info type" {
        /// Never used: invalid.
        None = 0 => "XEN_NETIF_EXTRA_TYPE_NONE",
        /// Segmentation offload (`u.gso`).
        Gso = 1 => "XEN_NETIF_EXTRA_TYPE_GSO",
        /// Add a multicast address (`u.mcast`).
        McastAdd = 2 => "XEN_NETIF_EXTRA_TYPE_MCAST_ADD",
        /// Remove a multicast address (`u.mcast`).
        McastDel = 3 => "XEN_NETIF_EXTRA_TYPE_MCAST_DEL",
        /// Packet hash (`u.hash`).
        Hash = 4 => "XEN_NETIF_EXTRA_TYPE_HASH",
    }
}

/// One past the largest extra type (`XEN_NETIF_EXTRA_TYPE_MAX`).
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// [`NetifExtraInfo::flags`]: another extra-info slot follows (`XEN_NETIF_EXTRA_FLAG_MORE`).
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1;

xen_enum! {
    /// Segmentation offload type (`XEN_NETIF_GSO_TYPE_*`).
    pub enum NetifGsoType: u8 as "netif gso type" {
        /// None.
        None = 0 => "XEN_NETIF_GSO_TYPE_NONE",
        /// TCP over IPv4.
        TcpV4 = 1 => "XEN_NETIF_GSO_TYPE_TCPV4",
        /// TCP over IPv6.
        TcpV6 = 2 => "XEN_NETIF_GSO_TYPE_TCPV6",
    }
}

/// Offsets of the union members inside [`NetifExtraInfo::u`], checked against the C
/// header by the layout test.
pub mod extra_offsets {
    /// `u.gso.size`
    pub const GSO_SIZE: usize = 0;
    /// `u.gso.type`
    pub const GSO_TYPE: usize = 2;
    /// `u.gso.features`
    pub const GSO_FEATURES: usize = 4;
    /// `u.mcast.addr`
    pub const MCAST_ADDR: usize = 0;
    /// `u.hash.type`
    pub const HASH_TYPE: usize = 0;
    /// `u.hash.algorithm`
    pub const HASH_ALGORITHM: usize = 1;
    /// `u.hash.value`
    pub const HASH_VALUE: usize = 2;
}

/// An extra-info slot (`struct netif_extra_info`); occupies a request or response slot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifExtraInfo {
    /// [`NetifExtraType`] (`type` in C).
    pub extra_type: u8,
    /// [`XEN_NETIF_EXTRA_FLAG_MORE`].
    pub flags: u8,
    /// The C union `u` (gso / mcast / hash / `pad[3]`): 6 bytes, 2-aligned. Read it
    /// with [`NetifExtraInfo::decode`].
    pub u: [u16; 3],
}

/// A decoded [`NetifExtraInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetifExtra {
    /// Segmentation offload.
    Gso {
        /// Maximum segment size.
        size: u16,
        /// Protocol.
        gso_type: NetifGsoType,
        /// `XEN_NETIF_GSO_FEAT_*` (none defined yet).
        features: u16,
    },
    /// Add a multicast address.
    McastAdd([u8; 6]),
    /// Remove a multicast address.
    McastDel([u8; 6]),
    /// Packet hash.
    Hash {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*` bit number.
        hash_type: u8,
        /// [`NetifHashAlgorithm`](super::NetifHashAlgorithm) raw value.
        algorithm: u8,
        /// The hash, little-endian.
        value: [u8; 4],
    },
}

/// Why an extra-info slot could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetifExtraError {
    /// Unknown or `NONE` type.
    BadType(u8),
    /// Unknown GSO type.
    BadGsoType(u8),
}

impl core::fmt::Display for NetifExtraError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetifExtraError::BadType(t) => write!(f, "invalid netif extra info type {t}"),
            NetifExtraError::BadGsoType(t) => write!(f, "invalid netif gso type {t}"),
        }
    }
}

impl core::error::Error for NetifExtraError {}

impl NetifExtraInfo {
    /// Whether another extra-info slot follows.
    pub fn more(&self) -> bool {
        self.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0
    }

    /// Decode the union by `extra_type`.
    pub fn decode(&self) -> Result<NetifExtra, NetifExtraError> {
        use extra_offsets::*;
        let u = self.u.as_bytes();
        let u16_at = |o: usize| u16::from_ne_bytes([u[o], u[o + 1]]);
        let mut six = [0u8; 6];
        six.copy_from_slice(&u[MCAST_ADDR..MCAST_ADDR + 6]);
        match NetifExtraType::from_raw(self.extra_type) {
            Some(NetifExtraType::Gso) => Ok(NetifExtra::Gso {
                size: u16_at(GSO_SIZE),
                gso_type: NetifGsoType::from_raw(u[GSO_TYPE])
                    .ok_or(NetifExtraError::BadGsoType(u[GSO_TYPE]))?,
                features: u16_at(GSO_FEATURES),
            }),
            Some(NetifExtraType::McastAdd) => Ok(NetifExtra::McastAdd(six)),
            Some(NetifExtraType::McastDel) => Ok(NetifExtra::McastDel(six)),
            Some(NetifExtraType::Hash) => Ok(NetifExtra::Hash {
                hash_type: u[HASH_TYPE],
                algorithm: u[HASH_ALGORITHM],
                value: [
                    u[HASH_VALUE],
                    u[HASH_VALUE + 1],
                    u[HASH_VALUE + 2],
                    u[HASH_VALUE + 3],
                ],
            }),
            Some(NetifExtraType::None) | None => Err(NetifExtraError::BadType(self.extra_type)),
        }
    }

    /// Encode `extra`, with the MORE flag if `more`.
    pub fn encode(extra: &NetifExtra, more: bool) -> Self {
        use extra_offsets::*;
        let mut out = NetifExtraInfo {
            flags: if more { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 },
            ..Default::default()
        };
        let u = out.u.as_mut_bytes();
        out.extra_type = match *extra {
            NetifExtra::Gso {
                size,
                gso_type,
                features,
            } => {
                u[GSO_SIZE..GSO_SIZE + 2].copy_from_slice(&size.to_ne_bytes());
                u[GSO_TYPE] = gso_type.raw();
                u[GSO_FEATURES..GSO_FEATURES + 2].copy_from_slice(&features.to_ne_bytes());
                NetifExtraType::Gso.raw()
            }
            NetifExtra::McastAdd(a) => {
                u[MCAST_ADDR..MCAST_ADDR + 6].copy_from_slice(&a);
                NetifExtraType::McastAdd.raw()
            }
            NetifExtra::McastDel(a) => {
                u[MCAST_ADDR..MCAST_ADDR + 6].copy_from_slice(&a);
                NetifExtraType::McastDel.raw()
            }
            NetifExtra::Hash {
                hash_type,
                algorithm,
                value,
            } => {
                u[HASH_TYPE] = hash_type;
                u[HASH_ALGORITHM] = algorithm;
                u[HASH_VALUE..HASH_VALUE + 4].copy_from_slice(&value);
                NetifExtraType::Hash.raw()
            }
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_round_trip() {
        for e in [
            NetifExtra::Gso {
                size: 1448,
                gso_type: NetifGsoType::TcpV6,
                features: 0,
            },
            NetifExtra::McastAdd([1, 2, 3, 4, 5, 6]),
            NetifExtra::McastDel([6, 5, 4, 3, 2, 1]),
            NetifExtra::Hash {
                hash_type: 1,
                algorithm: 1,
                value: [9, 8, 7, 6],
            },
        ] {
            let slot = NetifExtraInfo::encode(&e, true);
            assert!(slot.more());
            assert_eq!(slot.decode(), Ok(e));
        }
        let bad = NetifExtraInfo::default();
        assert_eq!(bad.decode(), Err(NetifExtraError::BadType(0)));
    }
}
