//! The receive filter (OID_GEN_CURRENT_PACKET_FILTER, OID_802_3_MULTICAST_LIST) and the
//! MTU. A miniport filters what it indicates; the backend (a bridge port) hands the
//! guest whatever reaches its vif.

use alloc::vec::Vec;

/// NDIS packet filter bits (ntddndis.h).
pub mod packet_type {
    /// Frames to our address.
    pub const DIRECTED: u32 = 0x01;
    /// Multicast frames to the addresses of the list.
    pub const MULTICAST: u32 = 0x02;
    /// Every multicast frame.
    pub const ALL_MULTICAST: u32 = 0x04;
    /// Broadcast frames.
    pub const BROADCAST: u32 = 0x08;
    /// Every frame.
    pub const PROMISCUOUS: u32 = 0x20;
    /// The bits xennet supports; a filter with any other bit is refused.
    pub const SUPPORTED: u32 = DIRECTED | MULTICAST | ALL_MULTICAST | BROADCAST | PROMISCUOUS;
}

/// The multicast list's length (OID_802_3_MAXIMUM_LIST_SIZE).
pub const MAX_MULTICAST: usize = 32;

/// Ethernet header bytes (the MTU excludes them).
pub const ETH_HEADER: usize = 14;
/// The MTU when the backend gives none or one out of range.
pub const DEFAULT_MTU: usize = 1500;
/// The smallest MTU accepted from the backend (IPv4's minimum datagram).
pub const MIN_MTU: usize = 68;

/// The MTU to report: the backend's `mtu` node when it is at least [`MIN_MTU`] and a
/// frame of it fits the largest packet netfront-core sends (`max_packet`), else
/// [`DEFAULT_MTU`] capped the same way.
pub fn mtu(backend: Option<u32>, max_packet: usize) -> usize {
    let cap = max_packet.saturating_sub(ETH_HEADER);
    match backend.map(|m| m as usize) {
        Some(m) if (MIN_MTU..=cap).contains(&m) => m,
        _ => DEFAULT_MTU.min(cap),
    }
}

/// The receive filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// NDIS packet filter bits (0: indicate nothing, NDIS' initial state).
    pub bits: u32,
    /// The multicast list.
    pub multicast: Vec<[u8; 6]>,
}

/// Why a filter change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// A bit xennet does not support.
    NotSupported,
    /// The multicast list's length is not a multiple of 6.
    BadLength,
    /// More than [`MAX_MULTICAST`] addresses.
    Full,
    /// An address in the multicast list that is not multicast.
    NotMulticast,
}

impl Filter {
    /// OID_GEN_CURRENT_PACKET_FILTER set.
    pub fn set_bits(&mut self, bits: u32) -> Result<(), FilterError> {
        if bits & !packet_type::SUPPORTED != 0 {
            return Err(FilterError::NotSupported);
        }
        self.bits = bits;
        Ok(())
    }

    /// OID_802_3_MULTICAST_LIST set: `data` is whole 6-byte multicast addresses.
    pub fn set_multicast(&mut self, data: &[u8]) -> Result<(), FilterError> {
        if !data.len().is_multiple_of(6) {
            return Err(FilterError::BadLength);
        }
        if data.len() / 6 > MAX_MULTICAST {
            return Err(FilterError::Full);
        }
        let list: Vec<[u8; 6]> = data
            .chunks_exact(6)
            .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
            .collect();
        if list.iter().any(|a| a[0] & 1 == 0) {
            return Err(FilterError::NotMulticast);
        }
        self.multicast = list;
        Ok(())
    }

    /// Whether a received frame to `dst` is indicated to a station with address `ours`.
    pub fn accepts(&self, ours: &[u8; 6], dst: &[u8; 6]) -> bool {
        use packet_type::*;
        if self.bits & PROMISCUOUS != 0 {
            return true;
        }
        if dst == &[0xff; 6] {
            return self.bits & BROADCAST != 0;
        }
        if dst[0] & 1 != 0 {
            return self.bits & ALL_MULTICAST != 0
                || (self.bits & MULTICAST != 0 && self.multicast.contains(dst));
        }
        self.bits & DIRECTED != 0 && dst == ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u8; 6] = [0x00, 0x16, 0x3e, 1, 2, 3];
    const OTHER: [u8; 6] = [0x00, 0x16, 0x3e, 9, 9, 9];
    const BCAST: [u8; 6] = [0xff; 6];
    const MC: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];
    const MC2: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

    #[test]
    fn nothing_is_indicated_before_ndis_sets_a_filter() {
        let f = Filter::default();
        for d in [OURS, OTHER, BCAST, MC] {
            assert!(!f.accepts(&OURS, &d));
        }
    }

    #[test]
    fn each_bit_lets_through_its_frames_only() {
        use packet_type::*;
        let mut f = Filter::default();
        f.set_bits(DIRECTED).unwrap();
        assert!(f.accepts(&OURS, &OURS) && !f.accepts(&OURS, &OTHER));
        assert!(!f.accepts(&OURS, &BCAST) && !f.accepts(&OURS, &MC));
        f.set_bits(DIRECTED | BROADCAST).unwrap();
        assert!(f.accepts(&OURS, &BCAST) && !f.accepts(&OURS, &MC));
        f.set_bits(MULTICAST).unwrap();
        f.set_multicast(&MC).unwrap();
        assert!(f.accepts(&OURS, &MC) && !f.accepts(&OURS, &MC2));
        assert!(!f.accepts(&OURS, &BCAST), "broadcast is not multicast here");
        f.set_bits(ALL_MULTICAST).unwrap();
        assert!(f.accepts(&OURS, &MC2) && !f.accepts(&OURS, &OURS));
        f.set_bits(PROMISCUOUS).unwrap();
        assert!(f.accepts(&OURS, &OTHER));
    }

    #[test]
    fn bad_filters_and_lists_are_refused_and_change_nothing() {
        let mut f = Filter::default();
        assert_eq!(f.set_bits(0x40), Err(FilterError::NotSupported));
        assert_eq!(f.set_multicast(&[1, 2, 3]), Err(FilterError::BadLength));
        assert_eq!(f.set_multicast(&[0x01; 6 * 33]), Err(FilterError::Full));
        assert_eq!(f.set_multicast(&OURS), Err(FilterError::NotMulticast));
        assert_eq!(f, Filter::default());
        assert!(f.set_multicast(&[0x01; 6 * 32]).is_ok());
        assert!(f.set_multicast(&[]).is_ok() && f.multicast.is_empty());
    }

    #[test]
    fn mtu_from_the_backend_is_bounded() {
        assert_eq!(mtu(None, 65535), 1500);
        assert_eq!(mtu(Some(9000), 65535), 9000);
        assert_eq!(mtu(Some(67), 65535), 1500, "below IPv4's minimum");
        assert_eq!(mtu(Some(u32::MAX), 65535), 1500, "hostile");
        assert_eq!(mtu(Some(9000), 4096), 1500, "no feature-sg: one page");
        assert_eq!(mtu(None, 1000), 986, "capped to what can be sent");
    }
}
