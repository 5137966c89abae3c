//! Offloads across the tap: the `virtio_net_hdr` before each frame, translated to and
//! from netif's flags and GSO extra info.
//!
//! TX (guest → tap): a frame whose checksum the guest left blank (`NETTXF_csum_blank`)
//! gets `NEEDS_CSUM` with the checksum's place found in its own headers (Ethernet,
//! optional 802.1Q tag, IPv4 or IPv6 with extension headers, TCP or UDP), as Linux
//! netback's `checksum_setup` does; a frame where that fails is dropped. RX (tap →
//! guest): `NEEDS_CSUM` → `NETRXF_csum_blank | NETRXF_data_validated`, `DATA_VALID` →
//! `NETRXF_data_validated`, TCP segmentation → a GSO extra-info slot.

use sluice_abi::netif::{NetRxFlags, NetTxFlags, NetifExtra, NetifGsoType, TxPacket};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the type).
pub const GSO_ECN: u8 = 0x80;
/// Ethernet header bytes.
pub const ETH_HLEN: usize = 14;

/// `struct virtio_net_hdr` (legacy, native endian: the tap's default on x86).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`.
    pub gso_type: u8,
    /// Bytes of headers (Ethernet to TCP).
    pub hdr_len: u16,
    /// Segment size.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

/// Why a frame's headers could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The frame ends inside a header.
    #[error("frame too short for its headers")]
    Truncated,
    /// Neither IPv4 nor IPv6 (after at most one VLAN tag).
    #[error("ethertype {0:#06x} carries no checksum we can place")]
    Ethertype(u16),
    /// A fragment, or a transport other than TCP/UDP.
    #[error("no TCP/UDP checksum to place (protocol {0})")]
    Transport(u8),
    /// An IPv4 header length below 20.
    #[error("bad IPv4 header length")]
    Ipv4Header,
    /// GSO of a protocol the packet is not (TCPv4 GSO on IPv6...).
    #[error("GSO type does not match the packet")]
    GsoMismatch,
}

/// Where a frame's L4 checksum lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4 {
    /// Offset of the transport header in the frame.
    pub start: usize,
    /// `6` (TCP) or `17` (UDP).
    pub proto: u8,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
}

fn be16(f: &[u8], at: usize) -> Result<u16, HeaderError> {
    f.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(HeaderError::Truncated)
}

fn byte(f: &[u8], at: usize) -> Result<u8, HeaderError> {
    f.get(at).copied().ok_or(HeaderError::Truncated)
}

/// Finds the TCP/UDP header of an Ethernet frame (at most one 802.1Q tag; IPv6
/// extension headers walked, at most 8; fragments refused).
pub fn locate_l4(f: &[u8]) -> Result<L4, HeaderError> {
    let mut at = 12;
    let mut ethertype = be16(f, at)?;
    if ethertype == 0x8100 {
        at += 4;
        ethertype = be16(f, at)?;
    }
    at += 2;
    match ethertype {
        0x0800 => {
            let ihl = usize::from(byte(f, at)? & 0x0f) * 4;
            if ihl < 20 {
                return Err(HeaderError::Ipv4Header);
            }
            let frag = be16(f, at + 6)?;
            let proto = byte(f, at + 9)?;
            // More fragments, or a fragment offset: the L4 header is not (all) here.
            if frag & 0x3fff != 0 {
                return Err(HeaderError::Transport(proto));
            }
            l4(f, at + ihl, proto, false)
        }
        0x86dd => {
            let mut next = byte(f, at + 6)?;
            at += 40;
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let len = (usize::from(byte(f, at + 1)?) + 1) * 8;
                        next = byte(f, at)?;
                        at += len;
                    }
                    51 => {
                        let len = (usize::from(byte(f, at + 1)?) + 2) * 4;
                        next = byte(f, at)?;
                        at += len;
                    }
                    _ => return l4(f, at, next, true),
                }
            }
            Err(HeaderError::Transport(next))
        }
        other => Err(HeaderError::Ethertype(other)),
    }
}

fn l4(f: &[u8], start: usize, proto: u8, ipv6: bool) -> Result<L4, HeaderError> {
    let need = match proto {
        6 => 20,
        17 => 8,
        p => return Err(HeaderError::Transport(p)),
    };
    if f.len() < start + need {
        return Err(HeaderError::Truncated);
    }
    Ok(L4 { start, proto, ipv6 })
}

/// The vnet header for a guest's TX packet whose bytes are `frame`.
pub fn tx_header(p: &TxPacket, frame: &[u8]) -> Result<VnetHdr, HeaderError> {
    let mut h = VnetHdr::default();
    if p.flags.contains(NetTxFlags::CSUM_BLANK) {
        let l4 = locate_l4(frame)?;
        h.flags = F_NEEDS_CSUM;
        h.csum_start = l4.start as u16;
        h.csum_offset = if l4.proto == 6 { 16 } else { 6 };
        if let Some(NetifExtra::Gso { size, gso_type, .. }) = p.gso {
            let want_v6 = match gso_type {
                NetifGsoType::TcpV4 => false,
                NetifGsoType::TcpV6 => true,
                NetifGsoType::None => return Err(HeaderError::GsoMismatch),
            };
            if l4.proto != 6 || l4.ipv6 != want_v6 {
                return Err(HeaderError::GsoMismatch);
            }
            let doff = usize::from(frame[l4.start + 12] >> 4) * 4;
            h.gso_type = if want_v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            h.gso_size = size;
            h.hdr_len = (l4.start + doff.max(20)).min(frame.len()) as u16;
        }
    } else if p.gso.is_some() {
        // Segmentation needs the checksum left to us.
        return Err(HeaderError::GsoMismatch);
    } else if p.flags.contains(NetTxFlags::DATA_VALIDATED) {
        h.flags = F_DATA_VALID;
    }
    Ok(h)
}

/// What a tap frame becomes on the guest's RX ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Flags of the first response.
    pub flags: NetRxFlags,
    /// The GSO extra-info slot to send, if any.
    pub gso: Option<NetifExtra>,
}

/// Translates a tap frame's vnet header for a frontend that negotiated `tso4`/`tso6`;
/// `None` if the frame cannot be given to it (a GSO type it did not ask for).
pub fn rx_meta(h: &VnetHdr, tso4: bool, tso6: bool) -> Option<RxMeta> {
    let mut flags = NetRxFlags::empty();
    if h.flags & F_NEEDS_CSUM != 0 {
        flags |= NetRxFlags::CSUM_BLANK | NetRxFlags::DATA_VALIDATED;
    } else if h.flags & F_DATA_VALID != 0 {
        flags |= NetRxFlags::DATA_VALIDATED;
    }
    let gso_type = match h.gso_type & !GSO_ECN {
        GSO_NONE => None,
        GSO_TCPV4 if tso4 => Some(NetifGsoType::TcpV4),
        GSO_TCPV6 if tso6 => Some(NetifGsoType::TcpV6),
        _ => return None,
    };
    let gso = match gso_type {
        Some(t) if h.gso_size > 0 => Some(NetifExtra::Gso {
            size: h.gso_size,
            gso_type: t,
            features: 0,
        }),
        Some(_) => return None,
        None => None,
    };
    if gso.is_some() {
        flags |= NetRxFlags::EXTRA_INFO;
    }
    Some(RxMeta { flags, gso })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(proto: u8, ihl: u8, frag: u16, l4len: usize) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl) * 4];
        h[0] = 0x40 | ihl;
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[9] = proto;
        h.extend(std::iter::repeat_n(0, l4len));
        h
    }

    #[test]
    fn ipv4_tcp_udp_and_options() {
        let f = eth(0x0800, &ipv4(6, 5, 0x4000, 20));
        assert_eq!(
            locate_l4(&f),
            Ok(L4 {
                start: 34,
                proto: 6,
                ipv6: false
            })
        );
        let f = eth(0x0800, &ipv4(17, 7, 0, 8));
        assert_eq!(locate_l4(&f).map(|l| (l.start, l.proto)), Ok((42, 17)));
        // Fragments, short headers, other protocols.
        let f = eth(0x0800, &ipv4(6, 5, 0x2000, 20));
        assert_eq!(locate_l4(&f), Err(HeaderError::Transport(6)));
        let f = eth(0x0800, &ipv4(6, 5, 0, 10));
        assert_eq!(locate_l4(&f), Err(HeaderError::Truncated));
        let f = eth(0x0800, &ipv4(1, 5, 0, 20));
        assert_eq!(locate_l4(&f), Err(HeaderError::Transport(1)));
        let mut bad = ipv4(6, 5, 0, 20);
        bad[0] = 0x44;
        assert_eq!(locate_l4(&eth(0x0800, &bad)), Err(HeaderError::Ipv4Header));
        assert_eq!(
            locate_l4(&eth(0x0806, &[0; 28])),
            Err(HeaderError::Ethertype(0x0806))
        );
        assert_eq!(locate_l4(&[0u8; 13]), Err(HeaderError::Truncated));
    }

    #[test]
    fn vlan_and_ipv6_extension_headers() {
        let mut l3 = vec![0u8; 40];
        l3[0] = 0x60;
        l3[6] = 0; // hop-by-hop
        l3.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]); // -> dest opts, 8 bytes
        l3.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // -> UDP, 16 bytes
        l3.extend_from_slice(&[0; 8]);
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0, 5]);
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&l3);
        assert_eq!(
            locate_l4(&f),
            Ok(L4 {
                start: 18 + 40 + 8 + 16,
                proto: 17,
                ipv6: true
            })
        );
        // A chain of extension headers longer than 8 is refused, not walked.
        let mut l3 = vec![0u8; 40];
        l3[6] = 60;
        for _ in 0..9 {
            l3.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(
            locate_l4(&eth(0x86dd, &l3)),
            Err(HeaderError::Transport(60))
        );
    }

    #[test]
    fn rx_flags_and_gso() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            ..Default::default()
        };
        let m = rx_meta(&h, true, false).unwrap();
        assert!(m
            .flags
            .contains(NetRxFlags::CSUM_BLANK | NetRxFlags::EXTRA_INFO));
        assert_eq!(
            m.gso,
            Some(NetifExtra::Gso {
                size: 1448,
                gso_type: NetifGsoType::TcpV4,
                features: 0
            })
        );
        assert_eq!(rx_meta(&h, false, true), None);
        let h = VnetHdr {
            gso_type: GSO_TCPV6,
            gso_size: 0,
            ..Default::default()
        };
        assert_eq!(rx_meta(&h, true, true), None);
        let h = VnetHdr {
            flags: F_DATA_VALID,
            ..Default::default()
        };
        assert_eq!(
            rx_meta(&h, false, false),
            Some(RxMeta {
                flags: NetRxFlags::DATA_VALIDATED,
                gso: None
            })
        );
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;
    use sluice_abi::netif::{parse_tx_packet, NetifTxRequest};

    proptest! {
        /// Any frame bytes: `locate_l4` answers without panicking, and what it returns
        /// lies inside the frame with room for the transport header.
        #[test]
        fn locate_l4_stays_in_the_frame(f in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(l4) = locate_l4(&f) {
                let need = if l4.proto == 6 { 20 } else { 8 };
                prop_assert!(l4.start + need <= f.len());
            }
        }

        /// Any first slot flags and frame: `tx_header` never panics.
        #[test]
        fn tx_header_never_panics(
            flags in any::<u16>(),
            f in proptest::collection::vec(any::<u8>(), 14..200),
        ) {
            let slot = NetifTxRequest { flags, size: f.len() as u16, ..Default::default() };
            if let Ok(Some(p)) = parse_tx_packet(&[slot, NetifTxRequest::default()]) {
                let _ = tx_header(&p, &f);
            }
        }
    }
}
