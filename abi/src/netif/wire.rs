//! The TX and RX ring entries of `io/netif.h` (requests, responses, `NETTXF_*`/`NETRXF_*`,
//! `NETIF_RSP_*`), the slot limits, and the TX/RX ring aliases. Byte-compatible with
//! the C header (`tests/layout/`).

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::{xen_enum, UnknownValue};
use crate::ring::{BackRing, FrontRing};
use crate::types::GrantRef;

/// Minimum number of slots a backend must accept for one packet
/// (`XEN_NETIF_NR_SLOTS_MIN`).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// Largest packet a TX request chain can describe (`XEN_NETIF_MAX_TX_SIZE`).
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xFFFF;

bitflags! {
    /// [`NetifTxRequest::flags`] (`NETTXF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NetTxFlags: u16 {
        /// The checksum is not filled in (`NETTXF_csum_blank`).
        const CSUM_BLANK = 1 << 0;
        /// The checksum is known to be good (`NETTXF_data_validated`).
        const DATA_VALIDATED = 1 << 1;
        /// Another request of the same packet follows (`NETTXF_more_data`).
        const MORE_DATA = 1 << 2;
        /// An extra-info slot follows (`NETTXF_extra_info`).
        const EXTRA_INFO = 1 << 3;
    }
}

bitflags! {
    /// [`NetifRxResponse::flags`] (`NETRXF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NetRxFlags: u16 {
        /// The checksum is known to be good (`NETRXF_data_validated`).
        const DATA_VALIDATED = 1 << 0;
        /// The checksum is not filled in (`NETRXF_csum_blank`).
        const CSUM_BLANK = 1 << 1;
        /// Another response of the same packet follows (`NETRXF_more_data`).
        const MORE_DATA = 1 << 2;
        /// An extra-info slot follows (`NETRXF_extra_info`).
        const EXTRA_INFO = 1 << 3;
        /// A GSO prefix descriptor precedes the packet (`NETRXF_gso_prefix`).
        const GSO_PREFIX = 1 << 4;
    }
}

xen_enum! {
    /// Response status (`NETIF_RSP_*`); for RX responses a non-negative `status` is
    /// the byte count instead.
    pub enum NetifRsp: i16 as "netif response status" {
        /// The packet was dropped.
        Dropped = -2 => "NETIF_RSP_DROPPED",
        /// Error.
        Error = -1 => "NETIF_RSP_ERROR",
        /// Done.
        Okay = 0 => "NETIF_RSP_OKAY",
        /// No response: the slot held an extra-info item (`NETIF_RSP_NULL`).
        Null = 1 => "NETIF_RSP_NULL",
    }
}

/// A TX request (`struct netif_tx_request`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifTxRequest {
    /// Grant of the page holding the data.
    pub gref: GrantRef,
    /// Offset of the data in the page.
    pub offset: u16,
    /// [`NetTxFlags`].
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Bytes in this slot; in the first slot of a packet, the whole packet's size.
    pub size: u16,
}

/// A TX response (`struct netif_tx_response`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifTxResponse {
    /// The request's id.
    pub id: u16,
    /// [`NetifRsp`].
    pub status: i16,
}

/// An RX request: an empty page for the backend to fill (`struct netif_rx_request`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Explicit padding in C.
    pub pad: u16,
    /// Grant of the page.
    pub gref: GrantRef,
}

/// An RX response (`struct netif_rx_response`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifRxResponse {
    /// The request's id.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// [`NetRxFlags`].
    pub flags: u16,
    /// Bytes received (`>= 0`) or a [`NetifRsp`] error (`< 0`).
    pub status: i16,
}

impl NetifRxResponse {
    /// The byte count, or the error status (unknown negative values as
    /// [`UnknownValue`]).
    pub fn byte_count(&self) -> Result<u16, Result<NetifRsp, UnknownValue<i16>>> {
        if self.status >= 0 {
            Ok(self.status as u16)
        } else {
            Err(NetifRsp::try_from(self.status))
        }
    }
}

/// Frontend view of a TX ring (`netif_tx_front_ring_t`).
pub type NetifTxFrontRing<'a> = FrontRing<'a, NetifTxRequest, NetifTxResponse>;
/// Backend view of a TX ring (`netif_tx_back_ring_t`).
pub type NetifTxBackRing<'a> = BackRing<'a, NetifTxRequest, NetifTxResponse>;
/// Frontend view of an RX ring (`netif_rx_front_ring_t`).
pub type NetifRxFrontRing<'a> = FrontRing<'a, NetifRxRequest, NetifRxResponse>;
/// Backend view of an RX ring (`netif_rx_back_ring_t`).
pub type NetifRxBackRing<'a> = BackRing<'a, NetifRxRequest, NetifRxResponse>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_status() {
        let r = NetifRxResponse {
            status: 1500,
            ..Default::default()
        };
        assert_eq!(r.byte_count(), Ok(1500));
        let r = NetifRxResponse {
            status: -2,
            ..Default::default()
        };
        assert_eq!(r.byte_count(), Err(Ok(NetifRsp::Dropped)));
    }
}
