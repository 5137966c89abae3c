//! The paravirtual network protocol (`xen/io/netif.h`): the TX and RX rings, their
//! "extra info" slots, the optional control ring, and the xenstore keys that negotiate
//! features.
//!
//! TX (guest → backend): a packet is one or more [`NetifTxRequest`]s chained with
//! [`NetTxFlags::MORE_DATA`]; the first may be followed by [`NetifExtraInfo`] slots
//! ([`NetTxFlags::EXTRA_INFO`]). RX (backend → guest): the guest posts
//! [`NetifRxRequest`]s (empty granted pages); the backend fills them and answers with
//! [`NetifRxResponse`]s whose `status` is the byte count, or an error.
//!
//! [`parse_tx_packet`] validates a guest's TX chain before a backend touches any grant.

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::enums::{xen_enum, UnknownValue};
use crate::ring::{BackRing, FrontRing};
pub use crate::types::GrantRef;

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
        /// [`NetifHashAlgorithm`] raw value.
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

/// Frontend view of a TX ring (`netif_tx_front_ring_t`).
pub type NetifTxFrontRing<'a> = FrontRing<'a, NetifTxRequest, NetifTxResponse>;
/// Backend view of a TX ring (`netif_tx_back_ring_t`).
pub type NetifTxBackRing<'a> = BackRing<'a, NetifTxRequest, NetifTxResponse>;
/// Frontend view of an RX ring (`netif_rx_front_ring_t`).
pub type NetifRxFrontRing<'a> = FrontRing<'a, NetifRxRequest, NetifRxResponse>;
/// Backend view of an RX ring (`netif_rx_back_ring_t`).
pub type NetifRxBackRing<'a> = BackRing<'a, NetifRxRequest, NetifRxResponse>;
/// Frontend view of the control ring (`xen_netif_ctrl_front_ring_t`).
pub type NetifCtrlFrontRing<'a> = FrontRing<'a, NetifCtrlRequest, NetifCtrlResponse>;
/// Backend view of the control ring (`xen_netif_ctrl_back_ring_t`).
pub type NetifCtrlBackRing<'a> = BackRing<'a, NetifCtrlRequest, NetifCtrlResponse>;

/// Most data slots (first included) a TX packet may use: the header's
/// `XEN_NETIF_NR_SLOTS_MIN`, which is also what Linux's netfront never exceeds.
pub const TX_MAX_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN;
/// Beyond this many data slots a TX chain is a protocol violation to disconnect for
/// (Linux netback's `fatal_skb_slots` default); between [`TX_MAX_SLOTS`] and this the
/// packet is only dropped.
pub const TX_FATAL_SLOTS: usize = 20;
/// Smallest packet a backend accepts: an Ethernet header (`ETH_HLEN`).
pub const TX_MIN_PACKET: u16 = 14;
/// Bytes in a granted page.
pub const PAGE_SIZE: usize = 4096;

/// A TX packet whose chain of ring slots passed [`parse_tx_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPacket {
    /// The data slots in order; `slots[0]` is the first request of the packet.
    slots: [NetifTxRequest; TX_MAX_SLOTS],
    nr_slots: u8,
    /// Ring slots the packet used, extra-info slots included.
    pub ring_slots: usize,
    /// Whole packet length (the first request's `size`).
    pub len: u16,
    /// Bytes in the first slot: `len` minus the other slots' sizes.
    pub first_len: u16,
    /// The first request's flags.
    pub flags: NetTxFlags,
    /// GSO extra info, if sent.
    pub gso: Option<NetifExtra>,
    /// Hash extra info, if sent.
    pub hash: Option<NetifExtra>,
    /// Multicast add/remove extra info, if sent.
    pub mcast: Option<NetifExtra>,
}

impl TxPacket {
    /// The data slots (first included); each lies within its page.
    pub fn slots(&self) -> &[NetifTxRequest] {
        &self.slots[..self.nr_slots as usize]
    }

    /// Bytes of data in data slot `i` (`first_len` for slot 0).
    pub fn slot_len(&self, i: usize) -> u16 {
        if i == 0 {
            self.first_len
        } else {
            self.slots[i].size
        }
    }
}

/// What was wrong with a TX chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxPacketErrorKind {
    /// A slot's `offset + size` passes the end of its page (data slot index).
    SlotCrossesPage {
        /// Data slot index.
        index: usize,
    },
    /// More data slots than [`TX_MAX_SLOTS`] (or, if `fatal`, [`TX_FATAL_SLOTS`]).
    TooManySlots {
        /// Data slots counted so far.
        slots: usize,
    },
    /// The later slots hold more bytes than the first request's total `size`.
    SizeMismatch {
        /// The first request's `size`.
        total: u16,
        /// Sum of the later slots' sizes.
        rest: u32,
    },
    /// The packet is shorter than an Ethernet header.
    TooShort(u16),
    /// An extra-info slot is invalid.
    BadExtra(NetifExtraError),
    /// A GSO extra info with `size` 0 or type `NONE`.
    BadGso,
}

/// A TX chain that failed [`parse_tx_packet`]. The backend answers each data request
/// among the first `ring_slots` slots with `NETIF_RSP_ERROR` (extra-info slots with
/// `NETIF_RSP_NULL`) and, if `fatal`, disconnects the frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPacketError {
    /// The problem.
    pub kind: TxPacketErrorKind,
    /// Ring slots to consume for this packet (0 when fatal: the ring can no longer be
    /// trusted).
    pub ring_slots: usize,
    /// Whether the frontend violated the protocol badly enough to disconnect.
    pub fatal: bool,
}

impl core::fmt::Display for TxPacketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "netif tx packet ")?;
        match self.kind {
            TxPacketErrorKind::SlotCrossesPage { index } => {
                write!(f, "slot {index} crosses its page")
            }
            TxPacketErrorKind::TooManySlots { slots } => write!(f, "uses {slots} slots"),
            TxPacketErrorKind::SizeMismatch { total, rest } => {
                write!(f, "size {total} smaller than its later slots ({rest})")
            }
            TxPacketErrorKind::TooShort(n) => write!(f, "of {n} bytes is too short"),
            TxPacketErrorKind::BadExtra(e) => e.fmt(f),
            TxPacketErrorKind::BadGso => f.write_str("has an invalid GSO extra"),
        }?;
        if self.fatal {
            f.write_str(" (fatal)")?;
        }
        Ok(())
    }
}

impl core::error::Error for TxPacketError {}

/// Parse the TX packet starting at `slots[0]`, where `slots` are the unconsumed request
/// slots the frontend has published, in ring order. Returns `Ok(None)` if the chain
/// continues past the published slots (wait for more), the packet otherwise.
///
/// Checks, after Linux netback: extra-info slots decode; every data slot lies within
/// its page; the later slots' sizes do not exceed the first's total; the packet is at
/// least an Ethernet header; at most [`TX_MAX_SLOTS`] data slots (drop beyond, fatal
/// beyond [`TX_FATAL_SLOTS`]).
pub fn parse_tx_packet(slots: &[NetifTxRequest]) -> Result<Option<TxPacket>, TxPacketError> {
    let fatal = |kind| TxPacketError {
        kind,
        ring_slots: 0,
        fatal: true,
    };
    let Some(first) = slots.first() else {
        return Ok(None);
    };
    let flags = NetTxFlags::from_bits_retain(first.flags);
    let mut i = 1;
    let (mut gso, mut hash, mut mcast) = (None, None, None);
    if flags.contains(NetTxFlags::EXTRA_INFO) {
        loop {
            let Some(slot) = slots.get(i) else {
                return Ok(None);
            };
            i += 1;
            let (extra, _) = NetifExtraInfo::read_from_prefix(slot.as_bytes())
                .map_err(|_| fatal(TxPacketErrorKind::BadExtra(NetifExtraError::BadType(0))))?;
            let decoded = extra
                .decode()
                .map_err(|e| fatal(TxPacketErrorKind::BadExtra(e)))?;
            match decoded {
                NetifExtra::Gso { size, gso_type, .. } => {
                    if size == 0 || gso_type == NetifGsoType::None {
                        return Err(fatal(TxPacketErrorKind::BadGso));
                    }
                    gso = Some(decoded);
                }
                NetifExtra::Hash { .. } => hash = Some(decoded),
                NetifExtra::McastAdd(_) | NetifExtra::McastDel(_) => mcast = Some(decoded),
            }
            if !extra.more() {
                break;
            }
        }
    }
    let mut data = [NetifTxRequest::default(); TX_MAX_SLOTS];
    data[0] = *first;
    let mut nr = 1usize;
    let mut rest: u32 = 0;
    let mut more = flags.contains(NetTxFlags::MORE_DATA);
    while more {
        let Some(slot) = slots.get(i) else {
            return Ok(None);
        };
        i += 1;
        if nr >= TX_FATAL_SLOTS {
            return Err(fatal(TxPacketErrorKind::TooManySlots { slots: nr + 1 }));
        }
        if slot.offset as usize + slot.size as usize > PAGE_SIZE {
            return Err(fatal(TxPacketErrorKind::SlotCrossesPage { index: nr }));
        }
        if nr < TX_MAX_SLOTS {
            data[nr] = *slot;
        }
        nr += 1;
        rest += slot.size as u32;
        more = NetTxFlags::from_bits_retain(slot.flags).contains(NetTxFlags::MORE_DATA);
    }
    let drop = |kind| TxPacketError {
        kind,
        ring_slots: i,
        fatal: false,
    };
    if nr > TX_MAX_SLOTS {
        return Err(drop(TxPacketErrorKind::TooManySlots { slots: nr }));
    }
    if rest > first.size as u32 {
        return Err(drop(TxPacketErrorKind::SizeMismatch {
            total: first.size,
            rest,
        }));
    }
    let first_len = first.size - rest as u16;
    if first.offset as usize + first_len as usize > PAGE_SIZE {
        return Err(fatal(TxPacketErrorKind::SlotCrossesPage { index: 0 }));
    }
    if first.size < TX_MIN_PACKET {
        return Err(drop(TxPacketErrorKind::TooShort(first.size)));
    }
    Ok(Some(TxPacket {
        slots: data,
        nr_slots: nr as u8,
        ring_slots: i,
        len: first.size,
        first_len,
        flags,
        gso,
        hash,
        mcast,
    }))
}

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

/// xenstore keys of the netif protocol (see the header's "Feature and Parameter
/// Negotiation" section).
pub mod keys {
    /// Backend/frontend: TX ring grant (`tx-ring-ref`).
    pub const TX_RING_REF: &str = "tx-ring-ref";
    /// RX ring grant (`rx-ring-ref`).
    pub const RX_RING_REF: &str = "rx-ring-ref";
    /// Control ring grant (`ctrl-ring-ref`).
    pub const CTRL_RING_REF: &str = "ctrl-ring-ref";
    /// Single event channel (`event-channel`).
    pub const EVENT_CHANNEL: &str = "event-channel";
    /// Split TX event channel (`event-channel-tx`).
    pub const EVENT_CHANNEL_TX: &str = "event-channel-tx";
    /// Split RX event channel (`event-channel-rx`).
    pub const EVENT_CHANNEL_RX: &str = "event-channel-rx";
    /// Control ring event channel (`event-channel-ctrl`).
    pub const EVENT_CHANNEL_CTRL: &str = "event-channel-ctrl";
    /// MAC address of the interface (`mac`).
    pub const MAC: &str = "mac";
    /// Backend: supports split event channels.
    pub const FEATURE_SPLIT_EVENT_CHANNELS: &str = "feature-split-event-channels";
    /// Backend: offers a control ring.
    pub const FEATURE_CTRL_RING: &str = "feature-ctrl-ring";
    /// Backend: maximum queues.
    pub const MULTI_QUEUE_MAX_QUEUES: &str = "multi-queue-max-queues";
    /// Frontend: queues in use.
    pub const MULTI_QUEUE_NUM_QUEUES: &str = "multi-queue-num-queues";
    /// Backend: accepts scatter-gather (`feature-sg`).
    pub const FEATURE_SG: &str = "feature-sg";
    /// Backend/frontend: TCPv4 segmentation offload.
    pub const FEATURE_GSO_TCPV4: &str = "feature-gso-tcpv4";
    /// Backend/frontend: TCPv6 segmentation offload.
    pub const FEATURE_GSO_TCPV6: &str = "feature-gso-tcpv6";
    /// Backend/frontend: checksum offload disabled for IPv4.
    pub const FEATURE_NO_CSUM_OFFLOAD: &str = "feature-no-csum-offload";
    /// Backend/frontend: IPv6 checksum offload.
    pub const FEATURE_IPV6_CSUM_OFFLOAD: &str = "feature-ipv6-csum-offload";
    /// Backend: supports RX copy (the only mode Linux uses).
    pub const FEATURE_RX_COPY: &str = "feature-rx-copy";
    /// Frontend: requests RX copy.
    pub const REQUEST_RX_COPY: &str = "request-rx-copy";
    /// Frontend: sends notifications when posting RX requests.
    pub const FEATURE_RX_NOTIFY: &str = "feature-rx-notify";
    /// Backend: supports multicast control.
    pub const FEATURE_MULTICAST_CONTROL: &str = "feature-multicast-control";
    /// Backend: multicast control may change at any time.
    pub const FEATURE_DYNAMIC_MULTICAST_CONTROL: &str = "feature-dynamic-multicast-control";
    /// Frontend: requests multicast control.
    pub const REQUEST_MULTICAST_CONTROL: &str = "request-multicast-control";
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
