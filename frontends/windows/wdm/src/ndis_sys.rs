//! NDIS 6.20 declarations mingw-w64's `ndis.h` lacks (it has the NDIS 6 functions'
//! names, not their structures), written from the documented x64 layouts. Every
//! structure is followed by compile-time assertions of its size and of the offset of
//! each field Sluice uses. Source of the offsets and sizes: the x64 type dumps of
//! Windows 10's `ndis.sys` public symbols (repository "ntdiff/headers",
//! `Win10_*/x64/System32/ndis.sys/Standalone/*.h`, `/* 0x0010 */`-style offsets).
//! Object types, revisions, flags and statuses: ndis.h's values as public copies of it
//! give them (Rust NDIS bindings, ReactOS' NDIS 6 headers, mingw-w64's ndis.h where it
//! has them); the `NDIS_SIZEOF_*_REVISION_n` macros are `RTL_SIZEOF_THROUGH_FIELD` of
//! the revision's last field, asserted against the offsets below.

#![allow(missing_docs)]

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

pub type Handle = *mut c_void;
pub type Status = i32;
type AnyFn = Option<unsafe extern "C" fn()>;

/// `NDIS_OBJECT_HEADER` (dump: Type 0x0, Revision 0x1, Size 0x2; size 0x4).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ObjectHeader {
    pub ty: u8,
    pub revision: u8,
    pub size: u16,
}
const _: () = assert!(size_of::<ObjectHeader>() == 4);

pub const OBJECT_TYPE_DEFAULT: u8 = 0x80;
pub const OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS: u8 = 0x8A;
pub const OBJECT_TYPE_STATUS_INDICATION: u8 = 0x98;
pub const OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES: u8 = 0x9E;
pub const OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES: u8 = 0x9F;

pub type InitializeFn = unsafe extern "C" fn(Handle, Handle, *mut c_void) -> Status;
pub type HaltFn = unsafe extern "C" fn(Handle, u32);
pub type UnloadFn = unsafe extern "C" fn(*mut crate::sys::DRIVER_OBJECT);
pub type PauseFn = unsafe extern "C" fn(Handle, *mut c_void) -> Status;
pub type OidRequestFn = unsafe extern "C" fn(Handle, *mut OidRequest) -> Status;
pub type SendFn = unsafe extern "C" fn(Handle, *mut NetBufferList, u32, u32);
pub type ReturnFn = unsafe extern "C" fn(Handle, *mut NetBufferList, u32);
pub type CancelFn = unsafe extern "C" fn(Handle, *mut c_void);
pub type ResetFn = unsafe extern "C" fn(Handle, *mut u8) -> Status;
pub type ShutdownFn = unsafe extern "C" fn(Handle, u32);

/// `NDIS_MINIPORT_DRIVER_CHARACTERISTICS`, revision 2 (NDIS 6.20: through
/// CancelDirectOidRequestHandler). Dump: Header 0x0, MajorNdisVersion 0x4 ... Flags
/// 0x8, SetOptionsHandler 0x10, handlers every 8 bytes to CancelDirectOidRequestHandler
/// 0x90; size 0x98.
#[repr(C)]
pub struct DriverCharacteristics {
    pub header: ObjectHeader,
    pub major_ndis_version: u8,
    pub minor_ndis_version: u8,
    pub major_driver_version: u8,
    pub minor_driver_version: u8,
    pub flags: u32,
    pub set_options: AnyFn,
    pub initialize: Option<InitializeFn>,
    pub halt: Option<HaltFn>,
    pub unload: Option<UnloadFn>,
    pub pause: Option<PauseFn>,
    pub restart: Option<PauseFn>,
    pub oid_request: Option<OidRequestFn>,
    pub send_net_buffer_lists: Option<SendFn>,
    pub return_net_buffer_lists: Option<ReturnFn>,
    pub cancel_send: Option<CancelFn>,
    pub check_for_hang: AnyFn,
    pub reset: Option<ResetFn>,
    pub device_pnp_event_notify: Option<CancelFn>,
    pub shutdown: Option<ShutdownFn>,
    pub cancel_oid_request: Option<CancelFn>,
    pub direct_oid_request: AnyFn,
    pub cancel_direct_oid_request: AnyFn,
}
pub const MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2: u8 = 2;
pub const SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2: u16 = 0x98;
const _: () = {
    type T = DriverCharacteristics;
    assert!(size_of::<T>() == 0x98);
    assert!(offset_of!(T, major_ndis_version) == 0x4);
    assert!(offset_of!(T, minor_ndis_version) == 0x5);
    assert!(offset_of!(T, major_driver_version) == 0x6);
    assert!(offset_of!(T, minor_driver_version) == 0x7);
    assert!(offset_of!(T, flags) == 0x8);
    assert!(offset_of!(T, set_options) == 0x10);
    assert!(offset_of!(T, initialize) == 0x18);
    assert!(offset_of!(T, halt) == 0x20);
    assert!(offset_of!(T, unload) == 0x28);
    assert!(offset_of!(T, pause) == 0x30);
    assert!(offset_of!(T, restart) == 0x38);
    assert!(offset_of!(T, oid_request) == 0x40);
    assert!(offset_of!(T, send_net_buffer_lists) == 0x48);
    assert!(offset_of!(T, return_net_buffer_lists) == 0x50);
    assert!(offset_of!(T, cancel_send) == 0x58);
    assert!(offset_of!(T, check_for_hang) == 0x60);
    assert!(offset_of!(T, reset) == 0x68);
    assert!(offset_of!(T, device_pnp_event_notify) == 0x70);
    assert!(offset_of!(T, shutdown) == 0x78);
    assert!(offset_of!(T, cancel_oid_request) == 0x80);
    assert!(offset_of!(T, direct_oid_request) == 0x88);
    assert!(offset_of!(T, cancel_direct_oid_request) == 0x90);
    assert!(
        offset_of!(T, cancel_direct_oid_request) + 8
            == SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2 as usize
    );
};

/// `NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES` (dump: MiniportAdapterContext 0x8,
/// AttributeFlags 0x10, CheckForHangTimeInSeconds 0x14, InterfaceType 0x18; size 0x20).
#[repr(C)]
pub struct RegistrationAttributes {
    pub header: ObjectHeader,
    pub context: Handle,
    pub attribute_flags: u32,
    pub check_for_hang_seconds: u32,
    pub interface_type: i32,
}
pub const MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1: u8 = 1;
/// RTL_SIZEOF_THROUGH_FIELD(.., InterfaceType).
pub const SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1: u16 = 0x1c;
const _: () = {
    type T = RegistrationAttributes;
    assert!(size_of::<T>() == 0x20);
    assert!(offset_of!(T, context) == 0x8);
    assert!(offset_of!(T, attribute_flags) == 0x10);
    assert!(offset_of!(T, check_for_hang_seconds) == 0x14);
    assert!(offset_of!(T, interface_type) == 0x18);
    assert!(offset_of!(T, interface_type) + 4 == 0x1c);
};
/// `NDIS_MINIPORT_ATTRIBUTES_*`.
pub const MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK: u32 = 0x4;
pub const MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND: u32 = 0x20;
/// `NdisInterfaceInternal` (NDIS_INTERFACE_TYPE).
pub const INTERFACE_INTERNAL: i32 = 0;

/// `NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES` (dump, Win10 x64: Flags 0x4, MediaType
/// 0x8, PhysicalMediumType 0xc, MtuSize 0x10, MaxXmitLinkSpeed 0x18 .. RcvLinkSpeed
/// 0x30, MediaConnectState 0x38, MediaDuplexState 0x3c, LookaheadSize 0x40,
/// PowerManagementCapabilities 0x48, MacOptions 0x50, SupportedPacketFilters 0x54,
/// MaxMulticastListSize 0x58, MacAddressLength 0x5c, PermanentMacAddress 0x5e,
/// CurrentMacAddress 0x7e, RecvScaleCapabilities 0xa0, AccessType 0xa8, DirectionType
/// 0xac, ConnectionType 0xb0, IfType 0xb4, IfConnectorPresent 0xb6,
/// SupportedStatistics 0xb8, SupportedPauseFunctions 0xbc, DataBackFillSize 0xc0,
/// ContextBackFillSize 0xc4, SupportedOidList 0xc8, SupportedOidListLength 0xd0,
/// AutoNegotiationFlags 0xd4, PowerManagementCapabilitiesEx 0xd8; size 0xe0).
#[repr(C)]
pub struct GeneralAttributes {
    pub header: ObjectHeader,
    pub flags: u32,
    pub media_type: i32,
    pub physical_medium_type: i32,
    pub mtu_size: u32,
    pub max_xmit_link_speed: u64,
    pub xmit_link_speed: u64,
    pub max_rcv_link_speed: u64,
    pub rcv_link_speed: u64,
    pub media_connect_state: i32,
    pub media_duplex_state: i32,
    pub lookahead_size: u32,
    pub power_management_capabilities: *mut c_void,
    pub mac_options: u32,
    pub supported_packet_filters: u32,
    pub max_multicast_list_size: u32,
    pub mac_address_length: u16,
    pub permanent_mac_address: [u8; 32],
    pub current_mac_address: [u8; 32],
    pub recv_scale_capabilities: *mut c_void,
    pub access_type: i32,
    pub direction_type: i32,
    pub connection_type: i32,
    pub if_type: u16,
    pub if_connector_present: u8,
    pub supported_statistics: u32,
    pub supported_pause_functions: u32,
    pub data_back_fill_size: u32,
    pub context_back_fill_size: u32,
    pub supported_oid_list: *const u32,
    pub supported_oid_list_length: u32,
    pub auto_negotiation_flags: u32,
    pub power_management_capabilities_ex: *mut c_void,
}
pub const MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2: u8 = 2;
/// RTL_SIZEOF_THROUGH_FIELD(.., PowerManagementCapabilitiesEx).
pub const SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2: u16 = 0xe0;
const _: () = {
    type T = GeneralAttributes;
    assert!(size_of::<T>() == 0xe0);
    assert!(offset_of!(T, flags) == 0x4);
    assert!(offset_of!(T, media_type) == 0x8);
    assert!(offset_of!(T, physical_medium_type) == 0xc);
    assert!(offset_of!(T, mtu_size) == 0x10);
    assert!(offset_of!(T, max_xmit_link_speed) == 0x18);
    assert!(offset_of!(T, xmit_link_speed) == 0x20);
    assert!(offset_of!(T, max_rcv_link_speed) == 0x28);
    assert!(offset_of!(T, rcv_link_speed) == 0x30);
    assert!(offset_of!(T, media_connect_state) == 0x38);
    assert!(offset_of!(T, media_duplex_state) == 0x3c);
    assert!(offset_of!(T, lookahead_size) == 0x40);
    assert!(offset_of!(T, power_management_capabilities) == 0x48);
    assert!(offset_of!(T, mac_options) == 0x50);
    assert!(offset_of!(T, supported_packet_filters) == 0x54);
    assert!(offset_of!(T, max_multicast_list_size) == 0x58);
    assert!(offset_of!(T, mac_address_length) == 0x5c);
    assert!(offset_of!(T, permanent_mac_address) == 0x5e);
    assert!(offset_of!(T, current_mac_address) == 0x7e);
    assert!(offset_of!(T, recv_scale_capabilities) == 0xa0);
    assert!(offset_of!(T, access_type) == 0xa8);
    assert!(offset_of!(T, direction_type) == 0xac);
    assert!(offset_of!(T, connection_type) == 0xb0);
    assert!(offset_of!(T, if_type) == 0xb4);
    assert!(offset_of!(T, if_connector_present) == 0xb6);
    assert!(offset_of!(T, supported_statistics) == 0xb8);
    assert!(offset_of!(T, supported_pause_functions) == 0xbc);
    assert!(offset_of!(T, data_back_fill_size) == 0xc0);
    assert!(offset_of!(T, context_back_fill_size) == 0xc4);
    assert!(offset_of!(T, supported_oid_list) == 0xc8);
    assert!(offset_of!(T, supported_oid_list_length) == 0xd0);
    assert!(offset_of!(T, auto_negotiation_flags) == 0xd4);
    assert!(offset_of!(T, power_management_capabilities_ex) == 0xd8);
};
/// NDIS_MEDIUM / NDIS_PHYSICAL_MEDIUM / NET_IF_* values (the dumps' enums).
pub const MEDIUM_802_3: i32 = 0;
pub const PHYSICAL_MEDIUM_UNSPECIFIED: i32 = 0;
pub const MEDIA_CONNECT_STATE_CONNECTED: i32 = 1;
pub const MEDIA_CONNECT_STATE_DISCONNECTED: i32 = 2;
pub const MEDIA_DUPLEX_STATE_FULL: i32 = 2;
pub const NET_IF_ACCESS_BROADCAST: i32 = 2;
pub const NET_IF_DIRECTION_SENDRECEIVE: i32 = 0;
pub const NET_IF_CONNECTION_DEDICATED: i32 = 1;
/// `IF_TYPE_ETHERNET_CSMACD` (ipifcons.h).
pub const IF_TYPE_ETHERNET_CSMACD: u16 = 6;
/// `NDIS_MAC_OPTION_*` (mingw-w64's ndis.h has these).
pub const MAC_OPTION_COPY_LOOKAHEAD_DATA: u32 = 0x1;
pub const MAC_OPTION_TRANSFERS_NOT_PEND: u32 = 0x4;
pub const MAC_OPTION_NO_LOOPBACK: u32 = 0x8;

/// `NDIS_OID_REQUEST` (dump: RequestType 0x4, PortNumber 0x8, Timeout 0xc, RequestId
/// 0x10, RequestHandle 0x18, DATA 0x20: Oid +0x0, InformationBuffer +0x8,
/// InformationBufferLength +0x10, BytesWritten/BytesRead +0x14, BytesNeeded +0x18;
/// size 0xf0). Only the fields used are named; NDIS owns the rest.
#[repr(C)]
pub struct OidRequest {
    pub header: ObjectHeader,
    pub request_type: i32,
    pub port_number: u32,
    pub timeout: u32,
    pub request_id: *mut c_void,
    pub request_handle: Handle,
    pub oid: u32,
    pub information_buffer: *mut c_void,
    pub information_buffer_length: u32,
    /// BytesWritten (query) or BytesRead (set).
    pub bytes_done: u32,
    pub bytes_needed: u32,
    _rest: [u8; 0xf0 - 0x3c],
}
const _: () = {
    type T = OidRequest;
    assert!(size_of::<T>() == 0xf0);
    assert!(offset_of!(T, request_type) == 0x4);
    assert!(offset_of!(T, port_number) == 0x8);
    assert!(offset_of!(T, request_id) == 0x10);
    assert!(offset_of!(T, request_handle) == 0x18);
    assert!(offset_of!(T, oid) == 0x20);
    assert!(offset_of!(T, information_buffer) == 0x28);
    assert!(offset_of!(T, information_buffer_length) == 0x30);
    assert!(offset_of!(T, bytes_done) == 0x34);
    assert!(offset_of!(T, bytes_needed) == 0x38);
};
/// `NDIS_REQUEST_TYPE`.
pub const REQUEST_QUERY_INFORMATION: i32 = 0;
pub const REQUEST_SET_INFORMATION: i32 = 1;
pub const REQUEST_QUERY_STATISTICS: i32 = 2;

/// `NET_BUFFER_LIST`'s prefix (dump: Next 0x0, FirstNetBuffer 0x8, Context 0x10,
/// ParentNetBufferList 0x18, NdisPoolHandle 0x20, NdisReserved 0x30 (ndis.h aligns
/// the reserved arrays to 16: 8 bytes of padding at 0x28), ProtocolReserved 0x40,
/// MiniportReserved 0x60, Scratch 0x70, SourceHandle 0x78, NblFlags 0x80,
/// ChildRefCount 0x84, Flags 0x88, Status 0x8c, NetBufferListInfo 0x90). NDIS
/// allocates it; Sluice only reads and writes these fields through a pointer.
#[repr(C)]
pub struct NetBufferList {
    pub next: *mut NetBufferList,
    pub first_net_buffer: *mut NetBuffer,
    _context: *mut c_void,
    _parent: *mut c_void,
    _pool: Handle,
    _pad: *mut c_void,
    _ndis_reserved: [*mut c_void; 2],
    _protocol_reserved: [*mut c_void; 4],
    pub miniport_reserved: [*mut c_void; 2],
    _scratch: *mut c_void,
    pub source_handle: Handle,
    _nbl_flags: u32,
    _child_ref_count: i32,
    _flags: u32,
    pub status: Status,
    /// The first entry: TcpIpChecksumNetBufferListInfo.
    pub info_checksum: usize,
    /// The second: TcpLargeSendNetBufferListInfo.
    pub info_lso: usize,
}
const _: () = {
    type T = NetBufferList;
    assert!(offset_of!(T, first_net_buffer) == 0x8);
    assert!(offset_of!(T, miniport_reserved) == 0x60);
    assert!(offset_of!(T, source_handle) == 0x78);
    assert!(offset_of!(T, status) == 0x8c);
    assert!(offset_of!(T, info_checksum) == 0x90);
    assert!(offset_of!(T, info_lso) == 0x98);
};

/// `NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES` (Header 0x0, DefaultOffloadConfiguration
/// 0x8, HardwareOffloadCapabilities 0x10, the two TCP connection offload pointers 0x18
/// and 0x20; size 0x28). The `NDIS_OFFLOAD`s it points to are bytes built by
/// `sluice_xennet_core::offload` (revision 1, 112 bytes; layout checked against
/// mingw-w64's ntddndis.h).
#[repr(C)]
pub struct OffloadAttributes {
    pub header: ObjectHeader,
    pub default_config: *const u8,
    pub hardware: *const u8,
    pub default_tcp_connection: *const c_void,
    pub tcp_connection_hardware: *const c_void,
}
const _: () = {
    type T = OffloadAttributes;
    assert!(offset_of!(T, default_config) == 0x8);
    assert!(offset_of!(T, hardware) == 0x10);
    assert!(offset_of!(T, tcp_connection_hardware) == 0x20);
    assert!(size_of::<T>() == 0x28);
};
pub const OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES: u8 = 0xA0;
pub const MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1: u8 = 1;
pub const SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1: u16 = 0x28;
/// `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive` bits.
pub const CSUM_RX_TCP_SUCCEEDED: usize = 1 << 3;
pub const CSUM_RX_UDP_SUCCEEDED: usize = 1 << 4;
pub const CSUM_RX_IP_SUCCEEDED: usize = 1 << 5;

/// `NET_BUFFER`'s prefix (dump: Next 0x0, CurrentMdl 0x8, CurrentMdlOffset 0x10,
/// DataLength 0x18, MdlChain 0x20, DataOffset 0x28).
#[repr(C)]
pub struct NetBuffer {
    pub next: *mut NetBuffer,
    pub current_mdl: *mut crate::sys::MDL,
    pub current_mdl_offset: u32,
    /// DataLength shares an 8-byte union with stDataLength (SIZE_T).
    _align: u32,
    pub data_length: u32,
    _data_length_high: u32,
    pub mdl_chain: *mut crate::sys::MDL,
    pub data_offset: u32,
}
const _: () = {
    type T = NetBuffer;
    assert!(offset_of!(T, current_mdl) == 0x8);
    assert!(offset_of!(T, current_mdl_offset) == 0x10);
    assert!(offset_of!(T, data_length) == 0x18);
    assert!(offset_of!(T, mdl_chain) == 0x20);
    assert!(offset_of!(T, data_offset) == 0x28);
};

/// `NET_BUFFER_LIST_POOL_PARAMETERS` (dump: ProtocolId 0x4, fAllocateNetBuffer 0x5,
/// ContextSize 0x6, PoolTag 0x8, DataSize 0xc; size 0x10).
#[repr(C)]
pub struct PoolParameters {
    pub header: ObjectHeader,
    pub protocol_id: u8,
    pub allocate_net_buffer: u8,
    pub context_size: u16,
    pub pool_tag: u32,
    pub data_size: u32,
}
pub const NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: u8 = 1;
pub const SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: u16 = 0x10;
const _: () = {
    type T = PoolParameters;
    assert!(size_of::<T>() == 0x10);
    assert!(offset_of!(T, protocol_id) == 0x4);
    assert!(offset_of!(T, allocate_net_buffer) == 0x5);
    assert!(offset_of!(T, context_size) == 0x6);
    assert!(offset_of!(T, pool_tag) == 0x8);
    assert!(offset_of!(T, data_size) == 0xc);
};

/// `NDIS_LINK_STATE` (dump: MediaConnectState 0x4, MediaDuplexState 0x8,
/// XmitLinkSpeed 0x10, RcvLinkSpeed 0x18, PauseFunctions 0x20, AutoNegotiationFlags
/// 0x24; size 0x28).
#[repr(C)]
pub struct LinkState {
    pub header: ObjectHeader,
    pub media_connect_state: i32,
    pub media_duplex_state: i32,
    pub xmit_link_speed: u64,
    pub rcv_link_speed: u64,
    pub pause_functions: i32,
    pub auto_negotiation_flags: u32,
}
pub const LINK_STATE_REVISION_1: u8 = 1;
pub const SIZEOF_LINK_STATE_REVISION_1: u16 = 0x28;
const _: () = {
    type T = LinkState;
    assert!(size_of::<T>() == 0x28);
    assert!(offset_of!(T, media_connect_state) == 0x4);
    assert!(offset_of!(T, media_duplex_state) == 0x8);
    assert!(offset_of!(T, xmit_link_speed) == 0x10);
    assert!(offset_of!(T, rcv_link_speed) == 0x18);
    assert!(offset_of!(T, pause_functions) == 0x20);
    assert!(offset_of!(T, auto_negotiation_flags) == 0x24);
};

/// `NDIS_STATUS_INDICATION` (dump, x64: SourceHandle 0x8, PortNumber 0x10, StatusCode
/// 0x14, Flags 0x18, DestinationHandle 0x20, RequestId 0x28, StatusBuffer 0x30,
/// StatusBufferSize 0x38, Guid 0x3c, NdisReserved 0x50; size 0x70).
#[repr(C)]
pub struct StatusIndication {
    pub header: ObjectHeader,
    pub source_handle: Handle,
    pub port_number: u32,
    pub status_code: Status,
    pub flags: u32,
    pub destination_handle: Handle,
    pub request_id: *mut c_void,
    pub status_buffer: *mut c_void,
    pub status_buffer_size: u32,
    pub guid: [u8; 16],
    pub ndis_reserved: [*mut c_void; 4],
}
pub const STATUS_INDICATION_REVISION_1: u8 = 1;
pub const SIZEOF_STATUS_INDICATION_REVISION_1: u16 = 0x70;
const _: () = {
    type T = StatusIndication;
    assert!(size_of::<T>() == 0x70);
    assert!(offset_of!(T, source_handle) == 0x8);
    assert!(offset_of!(T, port_number) == 0x10);
    assert!(offset_of!(T, status_code) == 0x14);
    assert!(offset_of!(T, flags) == 0x18);
    assert!(offset_of!(T, destination_handle) == 0x20);
    assert!(offset_of!(T, request_id) == 0x28);
    assert!(offset_of!(T, status_buffer) == 0x30);
    assert!(offset_of!(T, status_buffer_size) == 0x38);
    assert!(offset_of!(T, guid) == 0x3c);
    assert!(offset_of!(T, ndis_reserved) == 0x50);
};

/// NDIS statuses and flags (ndis.h).
pub const STATUS_SUCCESS: Status = 0;
pub const STATUS_FAILURE: Status = 0xC000_0001_u32 as i32;
pub const STATUS_RESOURCES: Status = 0xC000_009A_u32 as i32;
pub const STATUS_PAUSED: Status = 0xC023_002A_u32 as i32;
pub const STATUS_INVALID_LENGTH: Status = 0xC001_0014_u32 as i32;
pub const STATUS_LINK_STATE: Status = 0x4001_0017;
pub const STATUS_TASK_OFFLOAD_CURRENT_CONFIG: Status = 0x4002_0006;
pub const STATUS_PENDING: Status = 0x103;
pub const STATUS_REQUEST_ABORTED: Status = 0xC001_000C_u32 as i32;
pub const SEND_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const SEND_COMPLETE_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const RECEIVE_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const RECEIVE_FLAGS_RESOURCES: u32 = 0x2;
/// MDL flags: the MDL has a system address in MappedSystemVa.
pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x1;
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x4;

// ndis.sys' exports (lib/ndis.def, names checked against mingw-w64's libndis.a).
unsafe extern "C" {
    pub fn NdisMRegisterMiniportDriver(
        driver: *mut crate::sys::DRIVER_OBJECT,
        registry: *mut crate::sys::UNICODE_STRING,
        context: Handle,
        chars: *mut DriverCharacteristics,
        handle: *mut Handle,
    ) -> Status;
    pub fn NdisMDeregisterMiniportDriver(handle: Handle);
    pub fn NdisMSetMiniportAttributes(adapter: Handle, attrs: *mut c_void) -> Status;
    pub fn NdisMGetDeviceProperty(
        adapter: Handle,
        pdo: *mut *mut crate::sys::DEVICE_OBJECT,
        fdo: *mut *mut crate::sys::DEVICE_OBJECT,
        next: *mut *mut crate::sys::DEVICE_OBJECT,
        allocated: *mut c_void,
        translated: *mut c_void,
    );
    pub fn NdisMSendNetBufferListsComplete(adapter: Handle, nbl: *mut NetBufferList, flags: u32);
    pub fn NdisMIndicateReceiveNetBufferLists(
        adapter: Handle,
        nbl: *mut NetBufferList,
        port: u32,
        count: u32,
        flags: u32,
    );
    pub fn NdisMIndicateStatusEx(adapter: Handle, ind: *mut StatusIndication);
    pub fn NdisMOidRequestComplete(adapter: Handle, req: *mut OidRequest, status: Status);
    pub fn NdisAllocateNetBufferListPool(adapter: Handle, p: *mut PoolParameters) -> Handle;
    pub fn NdisFreeNetBufferListPool(pool: Handle);
    pub fn NdisAllocateNetBufferAndNetBufferList(
        pool: Handle,
        context_size: u16,
        context_backfill: u16,
        mdl: *mut crate::sys::MDL,
        data_offset: u32,
        data_length: usize,
    ) -> *mut NetBufferList;
    pub fn NdisFreeNetBufferList(nbl: *mut NetBufferList);
    pub fn NdisAllocateMdl(adapter: Handle, va: *mut c_void, len: u32) -> *mut crate::sys::MDL;
    pub fn NdisFreeMdl(mdl: *mut crate::sys::MDL);
}
