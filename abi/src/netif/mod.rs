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

mod ctrl;
mod extra;
pub mod keys;
mod tx;
mod wire;

pub use self::ctrl::{
    NetifCtrlBackRing, NetifCtrlFrontRing, NetifCtrlRequest, NetifCtrlResponse, NetifCtrlStatus,
    NetifCtrlType, NetifGref, NetifHashAlgorithm, NetifHashTypes, XEN_NETIF_CTRLF_GREF_READONLY,
};
pub use self::extra::{
    extra_offsets, NetifExtra, NetifExtraError, NetifExtraInfo, NetifExtraType, NetifGsoType,
    XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_MAX,
};
pub use self::tx::{
    parse_tx_packet, TxPacket, TxPacketError, TxPacketErrorKind, PAGE_SIZE, TX_FATAL_SLOTS,
    TX_MAX_SLOTS, TX_MIN_PACKET,
};
pub use self::wire::{
    NetRxFlags, NetTxFlags, NetifRsp, NetifRxBackRing, NetifRxFrontRing, NetifRxRequest,
    NetifRxResponse, NetifTxBackRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse,
    XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_NR_SLOTS_MIN,
};
pub use crate::types::GrantRef;
