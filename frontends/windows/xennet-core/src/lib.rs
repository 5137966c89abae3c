//! The NDIS-independent logic of xennet.sys, Sluice's NDIS 6 miniport for a Xen `vif`
//! (`SLUICEXEN\VIF`), over `sluice-netfront-core` (the frontend sluice-netfront.ko
//! uses): OID answers ([`oid`]), the receive filter and MTU ([`filter`]), and the
//! adapter ([`nic`]: negotiation, send results, received frames to indicate, link
//! state, statistics). `no_std`, host-tested over netfront-core's fake netback.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod csum;
pub mod filter;
pub mod nic;
pub mod offload;
pub mod oid;
pub mod pending;

/// NDIS status codes used (ndis.h).
pub mod status {
    /// NDIS_STATUS_SUCCESS.
    pub const SUCCESS: u32 = 0;
    /// NDIS_STATUS_FAILURE (STATUS_UNSUCCESSFUL).
    pub const FAILURE: u32 = 0xC000_0001;
    /// NDIS_STATUS_NOT_SUPPORTED (STATUS_NOT_SUPPORTED).
    pub const NOT_SUPPORTED: u32 = 0xC000_00BB;
    /// NDIS_STATUS_RESOURCES (STATUS_INSUFFICIENT_RESOURCES).
    pub const RESOURCES: u32 = 0xC000_009A;
    /// NDIS_STATUS_INVALID_LENGTH.
    pub const INVALID_LENGTH: u32 = 0xC001_0014;
    /// NDIS_STATUS_INVALID_PACKET (an offload request xennet cannot meet).
    pub const INVALID_PACKET: u32 = 0xC001_000F;
    /// NDIS_STATUS_PENDING (STATUS_PENDING): an OID completed later.
    pub const PENDING: u32 = 0x0000_0103;
    /// NDIS_STATUS_INVALID_DATA.
    pub const INVALID_DATA: u32 = 0xC001_0015;
    /// NDIS_STATUS_BUFFER_TOO_SHORT.
    pub const BUFFER_TOO_SHORT: u32 = 0xC001_0016;
    /// NDIS_STATUS_MULTICAST_FULL.
    pub const MULTICAST_FULL: u32 = 0xC001_0009;
    /// NDIS_STATUS_MEDIA_DISCONNECTED (= STATUS_NDIS_MEDIA_DISCONNECTED, Windows'
    /// ntstatus.h; mingw-w64's ndis.h names it but its ntstatus.h lacks the value).
    pub const MEDIA_DISCONNECTED: u32 = 0xC023_001F;
}
