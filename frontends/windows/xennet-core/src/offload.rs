//! Task offload reporting: `NDIS_OFFLOAD` (revision 1, 112 bytes: the layout
//! mingw-w64's ntddndis.h gives, offsets checked with libclang: Checksum 4, LsoV1 36,
//! IPsecV1 52, LsoV2 80, Flags 108) for the hardware capabilities and the current
//! configuration, `OID_TCP_OFFLOAD_PARAMETERS` (`NDIS_OFFLOAD_PARAMETERS` revision 1,
//! 20 bytes) and `OID_OFFLOAD_ENCAPSULATION` (`NDIS_OFFLOAD_ENCAPSULATION`, 28 bytes).
//!
//! Offered: TCP/UDP checksum over IPv4 and IPv6 both ways, the IPv4 header checksum
//! both ways (computed by xennet: netif cannot ask for it), LSO v2 for IPv4 and IPv6
//! (netback segments; reported current only while the backend offers `feature-gso-
//! tcpv4/v6`). Not offered: IP/TCP options beyond what the parser takes (reported
//! supported: options are inside the header lengths it reads), IPv6 extension headers,
//! LSO v1, IPsec, RSS, receive coalescing.

use crate::csum::BackendCaps;
use crate::oid::OidError;
use alloc::vec::Vec;

/// `NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_1`.
pub const NDIS_OFFLOAD_SIZE: usize = 112;
/// `NDIS_OBJECT_TYPE_OFFLOAD`.
pub const OBJECT_TYPE_OFFLOAD: u8 = 0xa7;
/// `NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION`.
pub const OBJECT_TYPE_OFFLOAD_ENCAPSULATION: u8 = 0xa8;
/// `NDIS_ENCAPSULATION_IEEE_802_3`.
pub const ENCAP_802_3: u32 = 2;
/// Largest LSO packet (headers included): 15 pages, inside netif's 65535 and
/// netfront-core's slot limit with room for the headers' page crossing.
pub const MAX_LSO_SIZE: u32 = 15 * 4096;
/// Fewest segments an LSO packet must make (NDIS' usual 2).
pub const MIN_SEGMENTS: u32 = 2;

/// What Windows has enabled (OID_TCP_OFFLOAD_PARAMETERS / OID_OFFLOAD_ENCAPSULATION);
/// everything on at start, as the default configuration reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enabled {
    /// IPv4 header checksum: transmit, receive.
    pub ip4: (bool, bool),
    /// TCP/IPv4 checksum.
    pub tcp4: (bool, bool),
    /// UDP/IPv4 checksum.
    pub udp4: (bool, bool),
    /// TCP/IPv6 checksum.
    pub tcp6: (bool, bool),
    /// UDP/IPv6 checksum.
    pub udp6: (bool, bool),
    /// LSO v2 IPv4.
    pub lso4: bool,
    /// LSO v2 IPv6.
    pub lso6: bool,
    /// Encapsulation IEEE 802.3 enabled for IPv4, IPv6 (NDIS sets it before offloading).
    pub encap: (bool, bool),
}

impl Default for Enabled {
    fn default() -> Self {
        let on = (true, true);
        Enabled {
            ip4: on,
            tcp4: on,
            udp4: on,
            tcp6: on,
            udp6: on,
            lso4: true,
            lso6: true,
            encap: on,
        }
    }
}

fn put(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Bits of a 2-bit field at `shift` (NDIS_OFFLOAD_SUPPORTED = 1).
fn f2(on: bool, shift: u32) -> u32 {
    u32::from(on) << shift
}

impl Enabled {
    /// An `NDIS_OFFLOAD` of what is enabled, LSO only where `back` segments (`None`:
    /// not connected yet, reported as enabled).
    pub fn ndis_offload(&self, back: Option<BackendCaps>) -> [u8; NDIS_OFFLOAD_SIZE] {
        let mut b = [0u8; NDIS_OFFLOAD_SIZE];
        b[0] = OBJECT_TYPE_OFFLOAD;
        b[1] = 1;
        b[2..4].copy_from_slice(&(NDIS_OFFLOAD_SIZE as u16).to_le_bytes());
        // Checksum: IPv4Transmit 4, IPv4Receive 12, IPv6Transmit 20, IPv6Receive 28;
        // each Encapsulation then bits: options 0-1 and 2-3 (IPv6: extension headers
        // 0-1, TCP options 2-3), TcpChecksum 4-5, UdpChecksum 6-7, IpChecksum 8-9.
        let v4 = |i: usize| {
            let pick = |(t, r): (bool, bool)| if i == 0 { t } else { r };
            let (ip, tcp, udp) = (pick(self.ip4), pick(self.tcp4), pick(self.udp4));
            f2(ip, 0) | f2(tcp, 2) | f2(tcp, 4) | f2(udp, 6) | f2(ip, 8)
        };
        let v6 = |i: usize| {
            let pick = |(t, r): (bool, bool)| if i == 0 { t } else { r };
            let (tcp, udp) = (pick(self.tcp6), pick(self.udp6));
            f2(tcp, 2) | f2(tcp, 4) | f2(udp, 6)
        };
        for (at, bits) in [(4, v4(0)), (12, v4(1)), (20, v6(0)), (28, v6(1))] {
            if bits != 0 {
                put(&mut b, at, ENCAP_802_3);
                put(&mut b, at + 4, bits);
            }
        }
        // LsoV2: IPv4 {Encapsulation, MaxOffLoadSize, MinSegmentCount} at 80, IPv6
        // {.., IpExtensionHeadersSupported 0-1, TcpOptionsSupported 2-3} at 92.
        let (t4, t6) = back.map_or((true, true), |c| (c.tso4, c.tso6));
        if self.lso4 && t4 {
            put(&mut b, 80, ENCAP_802_3);
            put(&mut b, 84, MAX_LSO_SIZE);
            put(&mut b, 88, MIN_SEGMENTS);
        }
        if self.lso6 && t6 {
            put(&mut b, 92, ENCAP_802_3);
            put(&mut b, 96, MAX_LSO_SIZE);
            put(&mut b, 100, MIN_SEGMENTS);
            put(&mut b, 104, f2(true, 2));
        }
        b
    }

    /// OID_TCP_OFFLOAD_PARAMETERS (set): whether anything changed (then the current
    /// configuration is indicated). Values: checksums 0 no change, 1 off, 2 transmit
    /// only, 3 receive only, 4 both; LSO v2 0 no change, 1 off, 2 on; LSO v1, IPsec
    /// and TCP connection offload may only be "no change" or "off".
    pub fn set_parameters(&mut self, d: &[u8]) -> Result<bool, OidError> {
        if d.len() < 20 {
            return Err(OidError::InvalidLength { needed: 20 });
        }
        let before = *self;
        let ck = |v: u8, cur: (bool, bool)| -> Result<(bool, bool), OidError> {
            Ok(match v {
                0 => cur,
                1 => (false, false),
                2 => (true, false),
                3 => (false, true),
                4 => (true, true),
                _ => return Err(OidError::Invalid(crate::filter::FilterError::BadLength)),
            })
        };
        let lso = |v: u8, cur: bool| -> Result<bool, OidError> {
            match v {
                0 => Ok(cur),
                1 => Ok(false),
                2 => Ok(true),
                _ => Err(OidError::Invalid(crate::filter::FilterError::BadLength)),
            }
        };
        // LsoV1 9, IPsecV1 10, TcpConnectionIPv4/6 13/14: never on here.
        if [d[9], d[10], d[13], d[14]].iter().any(|&v| v > 1) {
            return Err(OidError::NotSupported);
        }
        let mut n = *self;
        n.ip4 = ck(d[4], n.ip4)?;
        n.tcp4 = ck(d[5], n.tcp4)?;
        n.udp4 = ck(d[6], n.udp4)?;
        n.tcp6 = ck(d[7], n.tcp6)?;
        n.udp6 = ck(d[8], n.udp6)?;
        n.lso4 = lso(d[11], n.lso4)?;
        n.lso6 = lso(d[12], n.lso6)?;
        *self = n;
        Ok(*self != before)
    }

    /// OID_OFFLOAD_ENCAPSULATION (set): IEEE 802.3 only.
    pub fn set_encapsulation(&mut self, d: &[u8]) -> Result<(), OidError> {
        if d.len() < 28 {
            return Err(OidError::InvalidLength { needed: 28 });
        }
        let u = |at: usize| u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
        let one = |at: usize| -> Result<bool, OidError> {
            match u(at) {
                // NDIS_OFFLOAD_SET_NO_CHANGE 0, SET_ON 1, SET_OFF 2.
                1 if u(at + 4) == ENCAP_802_3 => Ok(true),
                1 => Err(OidError::NotSupported),
                0 | 2 => Ok(false),
                _ => Err(OidError::Invalid(crate::filter::FilterError::BadLength)),
            }
        };
        self.encap = (one(4)?, one(16)?);
        Ok(())
    }

    /// OID_OFFLOAD_ENCAPSULATION (query).
    pub fn encapsulation(&self) -> Vec<u8> {
        let mut b = alloc::vec![0u8; 28];
        b[0] = OBJECT_TYPE_OFFLOAD_ENCAPSULATION;
        b[1] = 1;
        b[2] = 28;
        for (at, on) in [(4, self.encap.0), (16, self.encap.1)] {
            put(&mut b, at, if on { 1 } else { 2 });
            put(&mut b, at + 4, ENCAP_802_3);
            put(&mut b, at + 8, 14);
        }
        b
    }

    /// The checksum bits a received frame may carry (what receive offload is on for).
    pub fn rx_mask(&self, bits: u32, v6: bool) -> u32 {
        use crate::csum::rx_bits::*;
        let (tcp, udp, ip) = if v6 {
            (self.tcp6.1, self.udp6.1, false)
        } else {
            (self.tcp4.1, self.udp4.1, self.ip4.1)
        };
        let mut keep = 0;
        if tcp {
            keep |= TCP_SUCCEEDED;
        }
        if udp {
            keep |= UDP_SUCCEEDED;
        }
        if ip {
            keep |= IP_SUCCEEDED;
        }
        bits & keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_ndis_offload_reports_what_is_on_and_what_the_backend_segments() {
        let e = Enabled::default();
        let b = e.ndis_offload(None);
        assert_eq!(
            (b[0], b[1], u16::from_le_bytes([b[2], b[3]])),
            (0xa7, 1, 112)
        );
        assert_eq!((u(&b, 4), u(&b, 8)), (ENCAP_802_3, 0b01_01_01_01_01));
        assert_eq!((u(&b, 20), u(&b, 24)), (ENCAP_802_3, 0b01_01_01_00));
        assert_eq!((u(&b, 84), u(&b, 96)), (MAX_LSO_SIZE, MAX_LSO_SIZE));
        assert_eq!(&b[36..80], &[0u8; 44], "no LSO v1, no IPsec");
        let only4 = BackendCaps {
            tso4: true,
            ..BackendCaps::default()
        };
        let b = e.ndis_offload(Some(only4));
        assert_eq!(u(&b, 84), MAX_LSO_SIZE);
        assert_eq!(&b[92..108], &[0u8; 16]);
    }

    #[test]
    fn parameters_change_the_configuration_or_are_refused_whole() {
        let mut e = Enabled::default();
        let mut p = [0u8; 20];
        p[0] = 0x80;
        assert_eq!(e.set_parameters(&p), Ok(false));
        p[5] = 2; // TCP/IPv4: transmit only.
        p[12] = 1; // LSO v2 IPv6 off.
        assert_eq!(e.set_parameters(&p), Ok(true));
        assert_eq!((e.tcp4, e.lso6, e.lso4), ((true, false), false, true));
        let b = e.ndis_offload(None);
        assert_eq!(u(&b, 12 + 4) & 0b11_0000, 0, "TCP receive checksum off");
        assert_eq!(u(&b, 96), 0);
        let before = e;
        let mut bad = p;
        bad[6] = 9;
        assert!(e.set_parameters(&bad).is_err());
        bad = p;
        bad[9] = 2; // LSO v1 on.
        assert_eq!(e.set_parameters(&bad), Err(OidError::NotSupported));
        assert_eq!(
            e.set_parameters(&p[..19]),
            Err(OidError::InvalidLength { needed: 20 })
        );
        assert_eq!(e, before);
        // Receive bits follow what is on.
        use crate::csum::rx_bits::*;
        assert_eq!(e.rx_mask(TCP_SUCCEEDED | IP_SUCCEEDED, false), IP_SUCCEEDED);
    }

    #[test]
    fn encapsulation_is_802_3_only() {
        let mut e = Enabled::default();
        let mut d = [0u8; 28];
        d[4] = 1;
        d[8] = 2;
        d[16] = 2;
        e.set_encapsulation(&d).unwrap();
        assert_eq!(e.encap, (true, false));
        assert_eq!(u(&e.encapsulation(), 16), 2);
        d[8] = 1; // GRE MAC
        assert_eq!(e.set_encapsulation(&d), Err(OidError::NotSupported));
    }
}
