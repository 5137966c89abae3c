//! Per-frame checksum and LSO work (MiniportSendNetBufferLists, the receive DPC), on
//! xennet's own copy of each frame: NDIS' per-NET_BUFFER_LIST requests
//! (`NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO`, `NDIS_TCP_LARGE_SEND_OFFLOAD_NET_
//! BUFFER_LIST_INFO`) mapped onto netif's `NETTXF_csum_blank` and GSO extra, and
//! received frames' `NETRXF_csum_blank`/`data_validated` onto NDIS' receive bits.
//!
//! Headers are parsed bounded (Ethernet, one 802.1Q tag, IPv4 with options, IPv6 with
//! TCP/UDP as its next header: xennet reports no IPv6 extension-header support), the
//! lengths taken from the IP header (Ethernet padding is not payload).
//!
//! Transmit: the L4 checksum field gets the pseudo-header sum over the real L4 length
//! (Linux's CHECKSUM_PARTIAL convention, which netback's `csum_blank` expects; NDIS'
//! LSO pseudo-header excludes the length, so it is recomputed), or the whole checksum
//! in software when the backend offers no checksum offload for that IP version; the
//! IPv4 header checksum (netif cannot ask for it) is always computed here. LSO: the IP
//! length fields are set to the frame's (NDIS may leave them 0) and the frame goes as
//! one GSO packet (`NetifGsoType::TcpV4/V6`, the MSS) for netback to segment.

use sluice_netfront_core::{NetifGsoType, TxCsum, TxOffload};

/// `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Transmit` bits.
pub mod tx_bits {
    #![allow(missing_docs)]
    pub const IS_IPV4: u32 = 1 << 0;
    pub const IS_IPV6: u32 = 1 << 1;
    pub const TCP: u32 = 1 << 2;
    pub const UDP: u32 = 1 << 3;
    pub const IP_HEADER: u32 = 1 << 4;
}

/// `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive` bits.
pub mod rx_bits {
    #![allow(missing_docs)]
    pub const TCP_SUCCEEDED: u32 = 1 << 3;
    pub const UDP_SUCCEEDED: u32 = 1 << 4;
    pub const IP_SUCCEEDED: u32 = 1 << 5;
}

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO` (an 8-byte union): MSS in bits
/// 0-19, TcpHeaderOffset 20-29, Type bit 30 (0 = LSO v1, 1 = v2); on completion v1
/// wants TcpPayload in bits 0-29, v2 the Type bit.
pub mod lso_bits {
    #![allow(missing_docs)]
    pub const MSS_MASK: u64 = 0xF_FFFF;
    pub const TYPE_V2: u64 = 1 << 30;
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// What a frame's headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    /// TCP or UDP.
    pub proto: u8,
    /// Bytes of TCP/UDP header + payload.
    pub l4_len: usize,
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// Parses a TCP/UDP over IPv4/IPv6 frame; `None` for anything else (fragments, IPv6
/// extension headers, short or inconsistent lengths). With `lso`, the IP length fields
/// are not trusted (NDIS may leave them 0): the frame's length is the packet's.
pub fn parse(f: &[u8], lso: bool) -> Option<Headers> {
    let (mut ty, mut l3) = (be16(f, 12)?, 14);
    if ty == 0x8100 {
        ty = be16(f, 16)?;
        l3 = 18;
    }
    let (v6, l4, proto, ip_len) = match ty {
        0x0800 => {
            let b0 = *f.get(l3)?;
            let ihl = usize::from(b0 & 0xf) * 4;
            if b0 >> 4 != 4 || ihl < 20 || be16(f, l3 + 6)? & 0x3fff != 0 {
                return None;
            }
            (
                false,
                l3 + ihl,
                *f.get(l3 + 9)?,
                usize::from(be16(f, l3 + 2)?),
            )
        }
        0x86dd => {
            if *f.get(l3)? >> 4 != 6 {
                return None;
            }
            let len = usize::from(be16(f, l3 + 4)?) + 40;
            (true, l3 + 40, *f.get(l3 + 6)?, len)
        }
        _ => return None,
    };
    let end = if lso {
        f.len()
    } else {
        l3.checked_add(ip_len)?
    };
    if end > f.len() || end < l4 {
        return None;
    }
    let l4_len = end - l4;
    let min = match proto {
        TCP => usize::from(*f.get(l4 + 12)? >> 4) * 4,
        UDP => 8,
        _ => return None,
    };
    if min < 8 || l4_len < min {
        return None;
    }
    Some(Headers {
        v6,
        l3,
        l4,
        proto,
        l4_len,
    })
}

/// The one's-complement sum of `data` (big-endian 16-bit words) added to `acc`.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn pseudo(f: &[u8], h: &Headers) -> u64 {
    let (addrs, len) = if h.v6 {
        (&f[h.l3 + 8..h.l3 + 40], h.l4_len)
    } else {
        (&f[h.l3 + 12..h.l3 + 20], h.l4_len)
    };
    sum(addrs, u64::from(h.proto) + len as u64)
}

fn csum_at(h: &Headers) -> usize {
    h.l4 + if h.proto == TCP { 16 } else { 6 }
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes the whole TCP/UDP checksum (UDP's 0 sent as 0xffff).
pub fn fill_l4(f: &mut [u8], h: &Headers) {
    let at = csum_at(h);
    put16(f, at, 0);
    let mut c = !fold(sum(&f[h.l4..h.l4 + h.l4_len], pseudo(f, h)));
    if c == 0 && h.proto == UDP {
        c = 0xffff;
    }
    put16(f, at, c);
}

fn fill_ipv4(f: &mut [u8], h: &Headers) {
    put16(f, h.l3 + 10, 0);
    let c = !fold(sum(&f[h.l3..h.l4], 0));
    put16(f, h.l3 + 10, c);
}

/// What the backend does for us (netfront-core's offloads once connected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCaps {
    /// Fills IPv4 TCP/UDP checksums (no `feature-no-csum-offload`).
    pub csum4: bool,
    /// Fills IPv6 TCP/UDP checksums (`feature-ipv6-csum-offload`).
    pub csum6: bool,
    /// Segments TCPv4 (`feature-gso-tcpv4` + SG).
    pub tso4: bool,
    /// Segments TCPv6.
    pub tso6: bool,
}

/// Why a frame's offload request cannot be met (the NBL fails; counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a TCP/UDP frame xennet can parse, or not the protocol asked for.
    Unparsable,
    /// LSO for an IP version the backend does not segment.
    NoTso,
    /// An MSS of 0 or over 65535 (netif's is 16 bits), or a TCP frame with no payload.
    BadMss,
}

/// A frame ready for netfront-core, and the LSO completion info to write back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// For `Frontend::transmit`.
    pub off: TxOffload,
    /// `NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO` at completion, for LSO.
    pub lso_complete: Option<u64>,
}

/// Prepares `f` (xennet's copy of one NET_BUFFER) for the NBL's checksum info `ck` and
/// LSO info `lso` (0 when not asked).
pub fn tx_prepare(f: &mut [u8], ck: u32, lso: u64, back: BackendCaps) -> Result<Prepared, Refused> {
    let mss = lso & lso_bits::MSS_MASK;
    if mss != 0 {
        let h = parse(f, true).ok_or(Refused::Unparsable)?;
        if h.proto != TCP {
            return Err(Refused::Unparsable);
        }
        if !(if h.v6 { back.tso6 } else { back.tso4 }) {
            return Err(Refused::NoTso);
        }
        let thl = usize::from(f[h.l4 + 12] >> 4) * 4;
        let payload = h.l4_len - thl;
        let mss = u16::try_from(mss).map_err(|_| Refused::BadMss)?;
        if payload == 0 {
            return Err(Refused::BadMss);
        }
        if h.l4 - h.l3 + h.l4_len > 0xffff {
            return Err(Refused::Unparsable);
        }
        if h.v6 {
            put16(f, h.l3 + 4, h.l4_len as u16);
        } else {
            put16(f, h.l3 + 2, (h.l4 - h.l3 + h.l4_len) as u16);
            fill_ipv4(f, &h);
        }
        let at = csum_at(&h);
        let p = fold(pseudo(f, &h));
        put16(f, at, p);
        let t = if h.v6 {
            NetifGsoType::TcpV6
        } else {
            NetifGsoType::TcpV4
        };
        let done = if lso & lso_bits::TYPE_V2 != 0 {
            lso_bits::TYPE_V2
        } else {
            payload as u64
        };
        return Ok(Prepared {
            off: TxOffload {
                csum: TxCsum::Partial,
                gso: Some((t, mss)),
            },
            lso_complete: Some(done),
        });
    }
    let mut off = TxOffload::default();
    if ck & (tx_bits::TCP | tx_bits::UDP | tx_bits::IP_HEADER) != 0 {
        let h = parse(f, false).ok_or(Refused::Unparsable)?;
        if ck & tx_bits::IP_HEADER != 0 && !h.v6 {
            fill_ipv4(f, &h);
        }
        let want = match h.proto {
            TCP => ck & tx_bits::TCP != 0,
            _ => ck & tx_bits::UDP != 0,
        };
        if ck & (tx_bits::TCP | tx_bits::UDP) != 0 && !want {
            return Err(Refused::Unparsable);
        }
        if want {
            if (h.v6 && back.csum6) || (!h.v6 && back.csum4) {
                let p = fold(pseudo(f, &h));
                put16(f, csum_at(&h), p);
                off.csum = TxCsum::Partial;
            } else {
                fill_l4(f, &h);
            }
        }
    }
    Ok(Prepared {
        off,
        lso_complete: None,
    })
}

/// A received frame's NDIS receive checksum bits from the backend's flags: a blank
/// checksum is filled in here (so a frame Windows forwards leaves right), then it and
/// a validated one are reported succeeded for their protocol; the IPv4 header
/// checksum is checked here and reported only when right. Anything unparsable: 0
/// (Windows checks it itself).
pub fn rx_info(f: &mut [u8], blank: bool, validated: bool) -> u32 {
    if !blank && !validated {
        return 0;
    }
    let Some(h) = parse(f, false) else {
        return 0;
    };
    if blank {
        fill_l4(f, &h);
    }
    let mut bits = if h.proto == TCP {
        rx_bits::TCP_SUCCEEDED
    } else {
        rx_bits::UDP_SUCCEEDED
    };
    if !h.v6 && fold(sum(&f[h.l3..h.l4], 0)) == 0xffff {
        bits |= rx_bits::IP_SUCCEEDED;
    }
    bits
}

#[cfg(test)]
#[path = "csum_tests.rs"]
mod tests;
