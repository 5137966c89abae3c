//! What the backend offers (its xenstore nodes), what the frontend asks for, and the
//! MAC address.

use crate::error::NegotiationError;
use alloc::format;
use alloc::string::String;
use sluice_abi::netif::keys;
use sluice_front_seams::XenStore;

/// Limits and choices the driver sets (module parameters in Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// Most queues to use (Linux: one per vCPU, at most 8 by default).
    pub max_queues: u32,
    /// Use split event channels (one for TX, one for RX) when offered.
    pub split_event_channels: bool,
    /// Offer `feature-gso-tcpv4/v6` (the backend may then send GSO packets larger
    /// than the MTU) and transmit GSO packets when the backend offers them. Linux
    /// does (the default); a frontend whose stack cannot take oversized frames (the
    /// Windows xennet, without NDIS receive coalescing) turns it off.
    pub gso: bool,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            max_queues: 8,
            split_event_channels: true,
            gso: true,
        }
    }
}

/// What the backend advertises at InitWait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendFeatures {
    /// `feature-rx-copy` (required).
    pub rx_copy: bool,
    /// `feature-sg`: packets may span several slots.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: IPv4 checksums may be left blank.
    pub ipv4_csum: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum: bool,
    /// `feature-split-event-channels`.
    pub split_event_channels: bool,
    /// `multi-queue-max-queues` (1 when absent).
    pub max_queues: u32,
    /// `mtu` (when given).
    pub mtu: Option<u32>,
}

/// Cuts what a hostile node holds for an error message.
fn shown(v: &str) -> String {
    v.chars().take(32).collect()
}

/// Reads an unsigned node; `None` when absent; anything but a decimal number is an error.
pub(crate) fn read_u32<P: XenStore>(
    p: &mut P,
    dir: &str,
    key: &str,
) -> Result<Option<u32>, NegotiationError> {
    let path = format!("{dir}/{key}");
    match p.read_opt(&path).map_err(NegotiationError::Platform)? {
        None => Ok(None),
        Some(v) => match v.trim_end_matches('\0').parse::<u32>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(NegotiationError::BadNode {
                path,
                value: shown(&v),
            }),
        },
    }
}

/// A feature flag: absent is off; `0`/`1` only.
pub(crate) fn read_flag<P: XenStore>(
    p: &mut P,
    dir: &str,
    key: &str,
) -> Result<bool, NegotiationError> {
    match read_u32(p, dir, key)? {
        None | Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(n) => Err(NegotiationError::BadNode {
            path: format!("{dir}/{key}"),
            value: format!("{n}"),
        }),
    }
}

impl BackendFeatures {
    /// Reads the backend directory `dir`.
    pub fn read<P: XenStore>(p: &mut P, dir: &str) -> Result<Self, NegotiationError> {
        let max_queues = match read_u32(p, dir, keys::MULTI_QUEUE_MAX_QUEUES)? {
            None => 1,
            Some(n) => n.max(1),
        };
        Ok(BackendFeatures {
            rx_copy: read_flag(p, dir, keys::FEATURE_RX_COPY)?,
            sg: read_flag(p, dir, keys::FEATURE_SG)?,
            gso_tcpv4: read_flag(p, dir, keys::FEATURE_GSO_TCPV4)?,
            gso_tcpv6: read_flag(p, dir, keys::FEATURE_GSO_TCPV6)?,
            ipv4_csum: !read_flag(p, dir, keys::FEATURE_NO_CSUM_OFFLOAD)?,
            ipv6_csum: read_flag(p, dir, keys::FEATURE_IPV6_CSUM_OFFLOAD)?,
            split_event_channels: read_flag(p, dir, keys::FEATURE_SPLIT_EVENT_CHANNELS)?,
            max_queues,
            mtu: read_u32(p, dir, "mtu")?,
        })
    }
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff` (the toolstack writes it to our `mac`
/// node).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim_end_matches('\0').split(':');
    for b in out.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("00:16:3e:01:02:0a"),
            Some([0, 0x16, 0x3e, 1, 2, 10])
        );
        for bad in [
            "",
            "00:16:3e:01:02",
            "00:16:3e:01:02:0a:0b",
            "0:16:3e:01:02:0a",
            "zz:16:3e:01:02:0a",
            "+1:16:3e:01:02:0a",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
