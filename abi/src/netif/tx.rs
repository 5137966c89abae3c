//! Validating a guest's TX chain: [`parse_tx_packet`] walks the published request
//! slots of one packet (extra-info slots, then data slots) with Linux netback's checks
//! and yields a [`TxPacket`] or a [`TxPacketError`] that says whether to drop or
//! disconnect.

use zerocopy::{FromBytes, IntoBytes};

use super::{
    NetTxFlags, NetifExtra, NetifExtraError, NetifExtraInfo, NetifGsoType, NetifTxRequest,
    XEN_NETIF_NR_SLOTS_MIN,
};

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
