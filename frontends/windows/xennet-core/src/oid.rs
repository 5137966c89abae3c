//! OID requests (MiniportOidRequest): queries answered from the adapter's state, sets
//! of the receive filter and lookahead. OID values from ntddndis.h.

use crate::csum::BackendCaps;
use crate::filter::{Filter, FilterError, ETH_HEADER, MAX_MULTICAST};
use crate::offload::Enabled;
use alloc::vec::Vec;

/// The OIDs xennet answers.
pub mod code {
    #![allow(missing_docs)]
    pub const GEN_SUPPORTED_LIST: u32 = 0x0001_0101;
    pub const GEN_HARDWARE_STATUS: u32 = 0x0001_0102;
    pub const GEN_MEDIA_SUPPORTED: u32 = 0x0001_0103;
    pub const GEN_MEDIA_IN_USE: u32 = 0x0001_0104;
    pub const GEN_MAXIMUM_LOOKAHEAD: u32 = 0x0001_0105;
    pub const GEN_MAXIMUM_FRAME_SIZE: u32 = 0x0001_0106;
    pub const GEN_LINK_SPEED: u32 = 0x0001_0107;
    pub const GEN_TRANSMIT_BLOCK_SIZE: u32 = 0x0001_010a;
    pub const GEN_RECEIVE_BLOCK_SIZE: u32 = 0x0001_010b;
    pub const GEN_VENDOR_ID: u32 = 0x0001_010c;
    pub const GEN_CURRENT_PACKET_FILTER: u32 = 0x0001_010e;
    pub const GEN_CURRENT_LOOKAHEAD: u32 = 0x0001_010f;
    pub const GEN_MAXIMUM_TOTAL_SIZE: u32 = 0x0001_0111;
    pub const GEN_MEDIA_CONNECT_STATUS: u32 = 0x0001_0114;
    pub const GEN_VENDOR_DRIVER_VERSION: u32 = 0x0001_0116;
    pub const GEN_XMIT_OK: u32 = 0x0002_0101;
    pub const GEN_RCV_OK: u32 = 0x0002_0102;
    pub const GEN_XMIT_ERROR: u32 = 0x0002_0103;
    pub const GEN_RCV_ERROR: u32 = 0x0002_0104;
    pub const GEN_RCV_NO_BUFFER: u32 = 0x0002_0105;
    pub const E802_3_PERMANENT_ADDRESS: u32 = 0x0101_0101;
    pub const E802_3_CURRENT_ADDRESS: u32 = 0x0101_0102;
    pub const E802_3_MULTICAST_LIST: u32 = 0x0101_0103;
    pub const E802_3_MAXIMUM_LIST_SIZE: u32 = 0x0101_0104;
    pub const OFFLOAD_ENCAPSULATION: u32 = 0x0101_010a;
    pub const TCP_OFFLOAD_CURRENT_CONFIG: u32 = 0xfc01_020b;
    pub const TCP_OFFLOAD_PARAMETERS: u32 = 0xfc01_020c;
}

/// Set-only OIDs of [`SUPPORTED`].
pub const SET_ONLY: &[u32] = &[code::TCP_OFFLOAD_PARAMETERS];

/// Every OID of [`code`] (OID_GEN_SUPPORTED_LIST's answer).
pub const SUPPORTED: &[u32] = &[
    code::GEN_SUPPORTED_LIST,
    code::GEN_HARDWARE_STATUS,
    code::GEN_MEDIA_SUPPORTED,
    code::GEN_MEDIA_IN_USE,
    code::GEN_MAXIMUM_LOOKAHEAD,
    code::GEN_MAXIMUM_FRAME_SIZE,
    code::GEN_LINK_SPEED,
    code::GEN_TRANSMIT_BLOCK_SIZE,
    code::GEN_RECEIVE_BLOCK_SIZE,
    code::GEN_VENDOR_ID,
    code::GEN_CURRENT_PACKET_FILTER,
    code::GEN_CURRENT_LOOKAHEAD,
    code::GEN_MAXIMUM_TOTAL_SIZE,
    code::GEN_MEDIA_CONNECT_STATUS,
    code::GEN_VENDOR_DRIVER_VERSION,
    code::GEN_XMIT_OK,
    code::GEN_RCV_OK,
    code::GEN_XMIT_ERROR,
    code::GEN_RCV_ERROR,
    code::GEN_RCV_NO_BUFFER,
    code::E802_3_PERMANENT_ADDRESS,
    code::E802_3_CURRENT_ADDRESS,
    code::E802_3_MULTICAST_LIST,
    code::E802_3_MAXIMUM_LIST_SIZE,
    code::OFFLOAD_ENCAPSULATION,
    code::TCP_OFFLOAD_CURRENT_CONFIG,
    code::TCP_OFFLOAD_PARAMETERS,
];

/// Link speed reported, in bits per second (a vif has none; 10 Gb/s, as Linux's
/// xen-netfront reports to ethtool).
pub const LINK_SPEED_BPS: u64 = 10_000_000_000;
/// The driver version (major << 16 | minor).
pub const DRIVER_VERSION: u32 = 0x0001_0000;

/// What queries are answered from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// The MAC address (xenstore's `mac`, checked unicast).
    pub mac: [u8; 6],
    /// Connected to the backend.
    pub link_up: bool,
    /// The MTU (excluding the Ethernet header).
    pub mtu: usize,
    /// Counters.
    pub counters: Counters,
    /// The receive filter.
    pub filter: Filter,
    /// The lookahead NDIS set (indications carry whole frames regardless).
    pub lookahead: u32,
    /// The task offloads Windows enabled.
    pub offload: Enabled,
    /// What the backend does (while connected).
    pub backend: Option<BackendCaps>,
}

/// The statistics OIDs' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames sent.
    pub xmit_ok: u64,
    /// Frames received and indicated.
    pub rcv_ok: u64,
    /// Frames not sent (backend error, ring full, bad frame, disconnected).
    pub xmit_error: u64,
    /// Frames received malformed (netfront-core's `rx_errors`) or oversized.
    pub rcv_error: u64,
    /// Frames dropped for want of memory or an indication slot.
    pub rcv_no_buffer: u64,
}

/// Why an OID request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OidError {
    /// Not an OID xennet handles (NDIS_STATUS_NOT_SUPPORTED).
    NotSupported,
    /// The buffer is shorter than the answer (NDIS_STATUS_BUFFER_TOO_SHORT, with
    /// `BytesNeeded`).
    TooShort {
        /// Bytes needed.
        needed: usize,
    },
    /// A set whose data is not of the OID's length (NDIS_STATUS_INVALID_LENGTH).
    InvalidLength {
        /// Bytes needed.
        needed: usize,
    },
    /// A set whose data is refused (NDIS_STATUS_INVALID_DATA, or MULTICAST_FULL).
    Invalid(FilterError),
}

impl OidError {
    /// The NDIS status.
    pub fn status(self) -> u32 {
        use crate::status::*;
        match self {
            OidError::NotSupported => NOT_SUPPORTED,
            OidError::TooShort { .. } => BUFFER_TOO_SHORT,
            OidError::InvalidLength { .. } => INVALID_LENGTH,
            OidError::Invalid(FilterError::Full) => MULTICAST_FULL,
            OidError::Invalid(FilterError::NotSupported) => NOT_SUPPORTED,
            OidError::Invalid(_) => INVALID_DATA,
        }
    }
}

fn u32le(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Answers query `oid` into a buffer of `buf_len` bytes: the bytes to copy, or why not.
/// Counters are 64-bit, or their low 32 bits into a 4-byte buffer (NDIS' rule for
/// statistics OIDs).
pub fn query(oid: u32, info: &Info, buf_len: usize) -> Result<Vec<u8>, OidError> {
    use code::*;
    let counter = |v: u64| {
        if buf_len >= 8 {
            v.to_le_bytes().to_vec()
        } else {
            u32le(v as u32)
        }
    };
    let frame = info.mtu as u32;
    let data = match oid {
        GEN_SUPPORTED_LIST => SUPPORTED.iter().flat_map(|o| o.to_le_bytes()).collect(),
        GEN_HARDWARE_STATUS => u32le(0), // NdisHardwareStatusReady
        GEN_MEDIA_SUPPORTED | GEN_MEDIA_IN_USE => u32le(0), // NdisMedium802_3
        GEN_MAXIMUM_LOOKAHEAD | GEN_MAXIMUM_FRAME_SIZE => u32le(frame),
        GEN_TRANSMIT_BLOCK_SIZE | GEN_RECEIVE_BLOCK_SIZE | GEN_MAXIMUM_TOTAL_SIZE => {
            u32le(frame + ETH_HEADER as u32)
        }
        // In units of 100 b/s.
        GEN_LINK_SPEED => u32le((LINK_SPEED_BPS / 100) as u32),
        // The OUI of Xen's MACs (00:16:3e), vendor's NIC index 0.
        GEN_VENDOR_ID => u32le(0x003e_1600),
        GEN_CURRENT_PACKET_FILTER => u32le(info.filter.bits),
        GEN_CURRENT_LOOKAHEAD => u32le(info.lookahead),
        // NdisMediaStateConnected 0, Disconnected 1.
        GEN_MEDIA_CONNECT_STATUS => u32le(if info.link_up { 0 } else { 1 }),
        GEN_VENDOR_DRIVER_VERSION => u32le(DRIVER_VERSION),
        GEN_XMIT_OK => counter(info.counters.xmit_ok),
        GEN_RCV_OK => counter(info.counters.rcv_ok),
        GEN_XMIT_ERROR => counter(info.counters.xmit_error),
        GEN_RCV_ERROR => counter(info.counters.rcv_error),
        GEN_RCV_NO_BUFFER => counter(info.counters.rcv_no_buffer),
        E802_3_PERMANENT_ADDRESS | E802_3_CURRENT_ADDRESS => info.mac.to_vec(),
        E802_3_MULTICAST_LIST => info.filter.multicast.iter().flatten().copied().collect(),
        E802_3_MAXIMUM_LIST_SIZE => u32le(MAX_MULTICAST as u32),
        OFFLOAD_ENCAPSULATION => info.offload.encapsulation(),
        TCP_OFFLOAD_CURRENT_CONFIG => info.offload.ndis_offload(info.backend).to_vec(),
        _ => return Err(OidError::NotSupported),
    };
    if data.len() > buf_len {
        return Err(OidError::TooShort { needed: data.len() });
    }
    Ok(data)
}

/// Handles set `oid` with `data` (read once by the caller into this slice): whether the
/// task offload configuration changed (then indicate `NDIS_STATUS_TASK_OFFLOAD_
/// CURRENT_CONFIG` with [`Enabled::ndis_offload`]).
pub fn set(oid: u32, data: &[u8], info: &mut Info) -> Result<bool, OidError> {
    match oid {
        code::TCP_OFFLOAD_PARAMETERS => info.offload.set_parameters(data),
        code::OFFLOAD_ENCAPSULATION => info.offload.set_encapsulation(data).map(|()| false),
        _ => set_other(oid, data, info).map(|()| false),
    }
}

fn set_other(oid: u32, data: &[u8], info: &mut Info) -> Result<(), OidError> {
    use code::*;
    let dword = || -> Result<u32, OidError> {
        let b: [u8; 4] = data
            .try_into()
            .map_err(|_| OidError::InvalidLength { needed: 4 })?;
        Ok(u32::from_le_bytes(b))
    };
    match oid {
        GEN_CURRENT_PACKET_FILTER => info.filter.set_bits(dword()?).map_err(OidError::Invalid),
        GEN_CURRENT_LOOKAHEAD => {
            let v = dword()?;
            if v as usize > info.mtu {
                return Err(OidError::Invalid(FilterError::BadLength));
            }
            info.lookahead = v;
            Ok(())
        }
        E802_3_MULTICAST_LIST => info.filter.set_multicast(data).map_err(OidError::Invalid),
        _ => Err(OidError::NotSupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::packet_type;

    fn info() -> Info {
        Info {
            mac: [0x00, 0x16, 0x3e, 1, 2, 3],
            link_up: true,
            mtu: 1500,
            counters: Counters {
                xmit_ok: 0x1_0000_0002,
                ..Counters::default()
            },
            ..Info::default()
        }
    }

    #[test]
    fn queries_answer_from_the_state() {
        let i = info();
        assert_eq!(query(code::E802_3_CURRENT_ADDRESS, &i, 6).unwrap(), i.mac);
        assert_eq!(
            query(code::GEN_MAXIMUM_FRAME_SIZE, &i, 4).unwrap(),
            1500u32.to_le_bytes()
        );
        assert_eq!(
            query(code::GEN_MAXIMUM_TOTAL_SIZE, &i, 4).unwrap(),
            1514u32.to_le_bytes()
        );
        assert_eq!(
            query(code::GEN_MEDIA_CONNECT_STATUS, &i, 4).unwrap(),
            [0, 0, 0, 0]
        );
        let down = Info {
            link_up: false,
            ..info()
        };
        assert_eq!(
            query(code::GEN_MEDIA_CONNECT_STATUS, &down, 4).unwrap(),
            [1, 0, 0, 0]
        );
        let list = query(code::GEN_SUPPORTED_LIST, &i, 4096).unwrap();
        assert_eq!(list.len(), 4 * SUPPORTED.len());
        for o in SUPPORTED {
            if *o != code::GEN_SUPPORTED_LIST && !SET_ONLY.contains(o) {
                assert!(query(*o, &i, 4096).is_ok(), "{o:#x} listed, not answered");
            }
        }
    }

    #[test]
    fn counters_are_64_bit_or_truncated_into_4_bytes() {
        let i = info();
        assert_eq!(
            query(code::GEN_XMIT_OK, &i, 8).unwrap(),
            0x1_0000_0002u64.to_le_bytes()
        );
        assert_eq!(query(code::GEN_XMIT_OK, &i, 4).unwrap(), [2, 0, 0, 0]);
        assert_eq!(
            query(code::GEN_XMIT_OK, &i, 3),
            Err(OidError::TooShort { needed: 4 })
        );
    }

    #[test]
    fn short_buffers_and_unknown_oids_are_refused() {
        let i = info();
        assert_eq!(
            query(code::E802_3_CURRENT_ADDRESS, &i, 5),
            Err(OidError::TooShort { needed: 6 })
        );
        assert_eq!(query(0x0102_0304, &i, 64), Err(OidError::NotSupported));
        assert_eq!(
            set(code::GEN_XMIT_OK, &[0; 4], &mut info()),
            Err(OidError::NotSupported)
        );
        assert_eq!(
            OidError::NotSupported.status(),
            crate::status::NOT_SUPPORTED
        );
    }

    #[test]
    fn sets_change_the_filter_or_nothing() {
        let mut i = info();
        let bits = packet_type::DIRECTED | packet_type::BROADCAST;
        assert!(!set(code::GEN_CURRENT_PACKET_FILTER, &bits.to_le_bytes(), &mut i).unwrap());
        assert_eq!(i.filter.bits, bits);
        assert_eq!(
            set(code::GEN_CURRENT_PACKET_FILTER, &[1, 0], &mut i),
            Err(OidError::InvalidLength { needed: 4 })
        );
        let e = set(
            code::GEN_CURRENT_PACKET_FILTER,
            &0x8000u32.to_le_bytes(),
            &mut i,
        );
        assert_eq!(e.unwrap_err().status(), crate::status::NOT_SUPPORTED);
        assert_eq!(i.filter.bits, bits);
        let e = set(code::E802_3_MULTICAST_LIST, &[0x01; 6 * 40], &mut i).unwrap_err();
        assert_eq!(e.status(), crate::status::MULTICAST_FULL);
        set(
            code::E802_3_MULTICAST_LIST,
            &[0x01, 0, 0x5e, 0, 0, 1],
            &mut i,
        )
        .unwrap();
        assert_eq!(
            query(code::E802_3_MULTICAST_LIST, &i, 64).unwrap(),
            [0x01, 0, 0x5e, 0, 0, 1]
        );
        assert!(set(code::GEN_CURRENT_LOOKAHEAD, &1501u32.to_le_bytes(), &mut i).is_err());
        set(code::GEN_CURRENT_LOOKAHEAD, &128u32.to_le_bytes(), &mut i).unwrap();
        assert_eq!(i.lookahead, 128);
    }
}
