//! The optional control ring (`XEN_NETIF_CTRL_*`): message types, status, hash
//! algorithms and types, the request/response entries, the grant-mapping entry, and the
//! control ring aliases.

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::xen_enum;
use crate::ring::{BackRing, FrontRing};
use crate::types::GrantRef;

xen_enum! {
    /// Control ring message types (`XEN_NETIF_CTRL_TYPE_*`).
    pub enum NetifCtrlType: u16 as "netif control type" {
        /// Invalid.
        Invalid = 0 => "XEN_NETIF_CTRL_TYPE_INVALID",
        /// Which hash types the backend supports.
        GetHashFlags = 1 => "XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS",
        /// Select hash types.
        SetHashFlags = 2 => "XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS",
        /// Set the hash key.
        SetHashKey = 3 => "XEN_NETIF_CTRL_TYPE_SET_HASH_KEY",
        /// Largest supported queue mapping table.
        GetHashMappingSize = 4 => "XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE",
        /// Set the mapping table size.
        SetHashMappingSize = 5 => "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE",
        /// Set mapping table entries.
        SetHashMapping = 6 => "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING",
        /// Select the hash algorithm.
        SetHashAlgorithm = 7 => "XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM",
        /// Largest grant mapping table.
        GetGrefMappingSize = 8 => "XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE",
        /// Map grants persistently.
        AddGrefMapping = 9 => "XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING",
        /// Unmap persistent grants.
        DelGrefMapping = 10 => "XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING",
    }
}

xen_enum! {
    /// Control ring response status (`XEN_NETIF_CTRL_STATUS_*`).
    pub enum NetifCtrlStatus: u32 as "netif control status" {
        /// Done.
        Success = 0 => "XEN_NETIF_CTRL_STATUS_SUCCESS",
        /// Type not supported.
        NotSupported = 1 => "XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED",
        /// Bad parameter.
        InvalidParameter = 2 => "XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER",
        /// A buffer was too small.
        BufferOverflow = 3 => "XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW",
    }
}

xen_enum! {
    /// Hash algorithms (`XEN_NETIF_CTRL_HASH_ALGORITHM_*`).
    pub enum NetifHashAlgorithm: u32 as "netif hash algorithm" {
        /// No hashing.
        None = 0 => "XEN_NETIF_CTRL_HASH_ALGORITHM_NONE",
        /// Toeplitz.
        Toeplitz = 1 => "XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ",
    }
}

bitflags! {
    /// Hash types (`XEN_NETIF_CTRL_HASH_TYPE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NetifHashTypes: u32 {
        /// IPv4 addresses.
        const IPV4 = 1 << 0;
        /// IPv4 addresses and TCP ports.
        const IPV4_TCP = 1 << 1;
        /// IPv6 addresses.
        const IPV6 = 1 << 2;
        /// IPv6 addresses and TCP ports.
        const IPV6_TCP = 1 << 3;
    }
}

/// A control ring request (`struct xen_netif_ctrl_request`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifCtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// [`NetifCtrlType`] (`type` in C).
    pub ctrl_type: u16,
    /// Type-specific parameters.
    pub data: [u32; 3],
}

/// A control ring response (`struct xen_netif_ctrl_response`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifCtrlResponse {
    /// The request's id.
    pub id: u16,
    /// The request's type (`type` in C).
    pub ctrl_type: u16,
    /// [`NetifCtrlStatus`].
    pub status: u32,
    /// Type-specific result.
    pub data: u32,
}

/// A grant mapping entry for `ADD/DEL_GREF_MAPPING` (`struct xen_netif_gref`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifGref {
    /// The grant.
    pub gref: GrantRef,
    /// [`XEN_NETIF_CTRLF_GREF_READONLY`].
    pub flags: u16,
    /// Per-entry [`NetifCtrlStatus`] (16-bit).
    pub status: u16,
}

/// [`NetifGref::flags`]: map read-only (`XEN_NETIF_CTRLF_GREF_readonly`).
pub const XEN_NETIF_CTRLF_GREF_READONLY: u16 = 1;

/// Frontend view of the control ring (`xen_netif_ctrl_front_ring_t`).
pub type NetifCtrlFrontRing<'a> = FrontRing<'a, NetifCtrlRequest, NetifCtrlResponse>;
/// Backend view of the control ring (`xen_netif_ctrl_back_ring_t`).
pub type NetifCtrlBackRing<'a> = BackRing<'a, NetifCtrlRequest, NetifCtrlResponse>;
