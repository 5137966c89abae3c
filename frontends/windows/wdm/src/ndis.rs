//! NDIS 6.20 miniport plumbing, the unsafe half (the NDIS counterpart of
//! [`crate::storport`]): `NdisMRegisterMiniportDriver` with the characteristics
//! ([`ndis_sys`](crate::ndis_sys) declares what mingw-w64's ndis.h lacks), the
//! Miniport* handlers as trampolines to a safe [`Miniport`] kept behind a spin lock,
//! the registration and general attributes, OID requests answered synchronously, each
//! sent NET_BUFFER copied out of its MDL chain and completed at once, received frames
//! indicated from a NET_BUFFER_LIST pool over copies (`NDIS_RECEIVE_FLAGS_RESOURCES`:
//! NDIS gives them back when the call returns), and link-state indications.

use crate::ndis_sys::*;
use crate::sync::SpinLock;
use crate::{sys, Driver, NtStatus};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod oid;
mod send;

/// Largest frame copied out of a NET_BUFFER (a bigger one is refused unread).
pub const MAX_SEND_FRAME: usize = 65536;

/// What an adapter says about itself in MiniportInitializeEx.
#[derive(Clone, Copy, Debug)]
pub struct General {
    /// The station address.
    pub mac: [u8; 6],
    /// MTU (without the Ethernet header).
    pub mtu: u32,
    /// Media connected now.
    pub link_up: bool,
    /// Link speed in bits per second.
    pub link_speed: u64,
    /// `NDIS_PACKET_TYPE_*` bits the receive filter takes.
    pub packet_filters: u32,
    /// Most multicast addresses.
    pub max_multicast: u32,
    /// The OIDs answered (OID_GEN_SUPPORTED_LIST); a `'static` list.
    pub oids: &'static [u32],
    /// `NDIS_OFFLOAD` of the hardware capabilities (`sluice_xennet_core::offload`).
    pub offload_hw: [u8; 112],
    /// `NDIS_OFFLOAD` of the default (current) configuration.
    pub offload_cur: [u8; 112],
}

/// An OID request's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OidKind {
    /// Query (information or statistics).
    Query,
    /// Set.
    Set,
}

/// An OID request's answer: its NDIS status, bytes written (query) or read (set), and
/// bytes needed (when too short).
#[derive(Clone, Copy, Debug)]
pub struct OidAnswer {
    pub status: i32,
    pub done: usize,
    pub needed: usize,
    /// The task offload configuration changed: indicated
    /// (NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG) once the lock is released.
    pub offload_changed: Option<[u8; 112]>,
}

/// A received frame to indicate.
#[derive(Debug)]
pub struct RxFrame {
    pub data: Vec<u8>,
    /// `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive` bits for its NBL.
    pub csum_info: u32,
}

/// An NDIS adapter (safe Rust, in the driver crate). `initialize` runs at
/// PASSIVE_LEVEL on a state no one else reaches yet; every later call is made under
/// the adapter's spin lock (at DISPATCH_LEVEL), so none may wait.
pub trait Miniport: Send + core::any::Any {
    /// MiniportInitializeEx: `lower` is the device below the adapter (xenbus' child
    /// PDO), `me` names the adapter for callbacks. `None` fails the initialisation.
    fn initialize(
        &mut self,
        lower: crate::storport::LowerDevice,
        me: AdapterRef,
    ) -> Option<General>;
    /// One OID request; `buf` is its information buffer.
    fn oid(&mut self, kind: OidKind, oid: u32, buf: &mut [u8]) -> OidAnswer;
    /// One frame to send (xennet's own copy, which it may rewrite) with its NBL's
    /// checksum and LSO info: its NDIS status (completed at once) and the LSO info to
    /// write back at completion.
    fn send(&mut self, frame: &mut [u8], ck: u32, lso: u64) -> (i32, Option<u64>);
    /// An event on a port bound with [`event_callback`] (bus DPC): frames to indicate.
    fn port_event(&mut self, port: u32) -> Vec<RxFrame>;
    /// For [`with_miniport`]'s downcast.
    fn as_any(&mut self) -> &mut dyn core::any::Any;
}

/// One adapter, for callbacks to reach it (the address of its block, made only here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterRef(usize);

/// The adapter's block, the MiniportAdapterContext NDIS hands back.
struct Block {
    handle: Handle,
    pool: Handle,
    paused: AtomicBool,
    /// The state is out with [`take`] (halt waits for it to come back).
    taken: AtomicBool,
    state: SpinLock<Option<Box<dyn Miniport>>>,
    /// Held (at DISPATCH_LEVEL) around each receive indication, whatever IRQL the
    /// caller came at, so NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL is always true.
    rx: SpinLock<()>,
    /// MiniportSendNetBufferLists calls in progress (pause waits for none).
    sending: AtomicUsize,
    /// OID requests pended while the state is out (taken only under `state`'s lock).
    oids: SpinLock<sluice_xennet_core::pending::OidGate<usize>>,
}

fn block<'a>(a: usize) -> &'a Block {
    // SAFETY: `a` is a Block leaked in `initialize_ex` and freed only in `halt_ex`,
    // after NDIS stopped calling the adapter and the driver's state (which owns every
    // bus callback to it) was dropped.
    unsafe { &*(a as *const Block) }
}

/// Runs `f` on adapter `a`'s state of type `M` under its lock; `None` when it has none.
pub fn with_miniport<M: Miniport, R>(a: AdapterRef, f: impl FnOnce(&mut M) -> R) -> Option<R> {
    let mut g = block(a.0).state.lock();
    g.as_deref_mut()
        .and_then(|m| m.as_any().downcast_mut::<M>())
        .map(f)
}

/// Takes adapter `a`'s state out (PASSIVE work that may wait, e.g. a backend state
/// change); sends are refused meanwhile. [`put_back`] returns it.
pub fn take(a: AdapterRef) -> Option<Box<dyn Miniport>> {
    let b = block(a.0);
    let mut g = b.state.lock();
    let m = g.take();
    if m.is_some() {
        b.taken.store(true, Ordering::Release);
    }
    m
}

/// Returns the state [`take`] took, answers the OID requests pended meanwhile
/// (completed once the lock is released), then polls for what came meanwhile.
pub fn put_back(a: AdapterRef, m: Box<dyn Miniport>) {
    let b = block(a.0);
    let done = {
        let mut g = b.state.lock();
        *g = Some(m);
        b.taken.store(false, Ordering::Release);
        oid::answer_pended(b, g.as_deref_mut().expect("just put"))
    };
    oid::complete(b, done);
    on_bus_port(a.0, 0);
}

/// The bus' event callback for this adapter: [`Miniport::port_event`] under the lock,
/// then the frames it returns are indicated.
pub fn event_callback(a: AdapterRef) -> sluice_xenbus_core::iface::EventCallback {
    sluice_xenbus_core::iface::EventCallback {
        func: on_bus_port,
        ctx: a.0,
    }
}

/// The bus' watch callback: calls the `on_watch` given to [`register`] (PASSIVE, no
/// lock held).
pub fn watch_callback(a: AdapterRef) -> sluice_xenbus_core::iface::WatchCallback {
    sluice_xenbus_core::iface::WatchCallback {
        func: on_bus_watch,
        ctx: a.0,
    }
}

extern "C" fn on_bus_port(ctx: usize, port: u32) {
    let b = block(ctx);
    let frames = b
        .state
        .lock()
        .as_deref_mut()
        .map(|m| m.port_event(port))
        .unwrap_or_default();
    if !frames.is_empty() {
        indicate(b, frames);
    }
}

extern "C" fn on_bus_watch(ctx: usize, id: u64) {
    let f = WATCH.load(Ordering::SeqCst);
    if f != 0 {
        // SAFETY: stored by `register` from a `fn(AdapterRef, u64)`.
        let f = unsafe { core::mem::transmute::<usize, fn(AdapterRef, u64)>(f) };
        f(AdapterRef(ctx), id);
    }
}

static MAKE: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicUsize = AtomicUsize::new(0);
static WATCH: AtomicUsize = AtomicUsize::new(0);
static DRIVER_HANDLE: AtomicUsize = AtomicUsize::new(0);

/// Registers the miniport (DriverEntry): `make` builds an adapter's state, `started`
/// runs at PASSIVE_LEVEL once it is installed (to register callbacks that reach it),
/// `on_watch` gets the events of watches registered with [`watch_callback`].
pub fn register(
    driver: &Driver,
    make: fn() -> Box<dyn Miniport>,
    started: fn(AdapterRef),
    on_watch: fn(AdapterRef, u64),
) -> NtStatus {
    MAKE.store(make as usize, Ordering::SeqCst);
    STARTED.store(started as usize, Ordering::SeqCst);
    WATCH.store(on_watch as usize, Ordering::SeqCst);
    let mut c = DriverCharacteristics {
        header: ObjectHeader {
            ty: OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            revision: MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
            size: SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
        },
        major_ndis_version: 6,
        minor_ndis_version: 20,
        major_driver_version: 1,
        minor_driver_version: 0,
        flags: 0,
        set_options: None,
        initialize: Some(initialize_ex),
        halt: Some(halt_ex),
        unload: Some(unload),
        pause: Some(pause),
        restart: Some(restart),
        oid_request: Some(oid::oid_request),
        send_net_buffer_lists: Some(send::send_nbls),
        return_net_buffer_lists: Some(return_nbls),
        cancel_send: Some(cancel),
        check_for_hang: None,
        reset: Some(reset),
        device_pnp_event_notify: Some(cancel),
        shutdown: Some(shutdown),
        cancel_oid_request: Some(oid::cancel_oid_request),
        direct_oid_request: None,
        cancel_direct_oid_request: None,
    };
    let mut h: Handle = core::ptr::null_mut();
    // SAFETY: DriverEntry's arguments, characteristics NDIS copies before returning,
    // and an out-parameter for the driver handle.
    let s = unsafe {
        NdisMRegisterMiniportDriver(driver.0, driver.1, core::ptr::null_mut(), &mut c, &mut h)
    };
    DRIVER_HANDLE.store(h as usize, Ordering::SeqCst);
    s
}

unsafe extern "C" fn unload(_d: *mut sys::DRIVER_OBJECT) {
    let h = DRIVER_HANDLE.swap(0, Ordering::SeqCst);
    if h != 0 {
        // SAFETY: the handle NdisMRegisterMiniportDriver gave, given back once.
        unsafe { NdisMDeregisterMiniportDriver(h as Handle) };
    }
}

unsafe extern "C" fn initialize_ex(handle: Handle, _drv: Handle, _params: *mut c_void) -> Status {
    let (mut pdo, mut fdo, mut next) = (
        core::ptr::null_mut(),
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    );
    // SAFETY: NDIS' adapter handle and out-parameters; no resource lists asked for.
    unsafe {
        NdisMGetDeviceProperty(
            handle,
            &mut pdo,
            &mut fdo,
            &mut next,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    let b = Box::into_raw(Box::new(Block {
        handle,
        pool: core::ptr::null_mut(),
        paused: AtomicBool::new(true),
        taken: AtomicBool::new(false),
        state: SpinLock::new(None),
        rx: SpinLock::new(()),
        sending: AtomicUsize::new(0),
        oids: SpinLock::new(Default::default()),
    }));
    let me = AdapterRef(b as usize);
    // SAFETY: stored by `register` from a `fn() -> Box<dyn Miniport>`.
    let make = unsafe {
        core::mem::transmute::<usize, fn() -> Box<dyn Miniport>>(MAKE.load(Ordering::SeqCst))
    };
    let mut m = make();
    let fail = |b: *mut Block| {
        // SAFETY: ours, never published (or NDIS failed the initialisation, so it
        // calls nothing of this adapter again).
        let b = unsafe { Box::from_raw(b) };
        if !b.pool.is_null() {
            // SAFETY: the pool allocated below, with no NBL outstanding.
            unsafe { NdisFreeNetBufferListPool(b.pool) };
        }
        STATUS_FAILURE
    };
    let Some(g) = m.initialize(crate::storport::LowerDevice(next.cast()), me) else {
        drop(m);
        return fail(b);
    };
    let mut reg = RegistrationAttributes {
        header: ObjectHeader {
            ty: OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
            revision: MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
            size: SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
        },
        context: b.cast(),
        attribute_flags: MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK
            | MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND,
        check_for_hang_seconds: 0,
        interface_type: INTERFACE_INTERNAL,
    };
    // SAFETY: attributes NDIS copies before returning.
    if unsafe {
        NdisMSetMiniportAttributes(handle, (&mut reg as *mut RegistrationAttributes).cast())
    } != STATUS_SUCCESS
    {
        drop(m);
        return fail(b);
    }
    let mut gen = general_attributes(&g);
    // SAFETY: as above; the OID list is 'static.
    if unsafe { NdisMSetMiniportAttributes(handle, (&mut gen as *mut GeneralAttributes).cast()) }
        != STATUS_SUCCESS
    {
        drop(m);
        return fail(b);
    }
    let mut off = OffloadAttributes {
        header: ObjectHeader {
            ty: OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
            revision: MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
            size: SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
        },
        default_config: g.offload_cur.as_ptr(),
        hardware: g.offload_hw.as_ptr(),
        default_tcp_connection: core::ptr::null(),
        tcp_connection_hardware: core::ptr::null(),
    };
    // SAFETY: as above; the NDIS_OFFLOADs live in `g` across the call.
    if unsafe { NdisMSetMiniportAttributes(handle, (&mut off as *mut OffloadAttributes).cast()) }
        != STATUS_SUCCESS
    {
        drop(m);
        return fail(b);
    }
    let mut pp = PoolParameters {
        header: ObjectHeader {
            ty: OBJECT_TYPE_DEFAULT,
            revision: NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
            size: SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
        },
        protocol_id: 0,
        allocate_net_buffer: 1,
        context_size: 0,
        pool_tag: crate::POOL_TAG,
        data_size: 0,
    };
    // SAFETY: the adapter's handle and parameters NDIS reads during the call; the
    // block is still ours alone.
    unsafe {
        (*b).pool = NdisAllocateNetBufferListPool(handle, &mut pp);
        if (*b).pool.is_null() {
            drop(m);
            return fail(b);
        }
    }
    *block(me.0).state.lock() = Some(m);
    // SAFETY: stored by `register` from a `fn(AdapterRef)`.
    let started =
        unsafe { core::mem::transmute::<usize, fn(AdapterRef)>(STARTED.load(Ordering::SeqCst)) };
    started(me);
    STATUS_SUCCESS
}

fn general_attributes(g: &General) -> GeneralAttributes {
    let mut mac = [0u8; 32];
    mac[..6].copy_from_slice(&g.mac);
    GeneralAttributes {
        header: ObjectHeader {
            ty: OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
            revision: MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
            size: SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
        },
        flags: 0,
        media_type: MEDIUM_802_3,
        physical_medium_type: PHYSICAL_MEDIUM_UNSPECIFIED,
        mtu_size: g.mtu,
        max_xmit_link_speed: g.link_speed,
        xmit_link_speed: g.link_speed,
        max_rcv_link_speed: g.link_speed,
        rcv_link_speed: g.link_speed,
        media_connect_state: connect_state(g.link_up),
        media_duplex_state: MEDIA_DUPLEX_STATE_FULL,
        lookahead_size: g.mtu,
        power_management_capabilities: core::ptr::null_mut(),
        mac_options: MAC_OPTION_COPY_LOOKAHEAD_DATA
            | MAC_OPTION_TRANSFERS_NOT_PEND
            | MAC_OPTION_NO_LOOPBACK,
        supported_packet_filters: g.packet_filters,
        max_multicast_list_size: g.max_multicast,
        mac_address_length: 6,
        permanent_mac_address: mac,
        current_mac_address: mac,
        recv_scale_capabilities: core::ptr::null_mut(),
        access_type: NET_IF_ACCESS_BROADCAST,
        direction_type: NET_IF_DIRECTION_SENDRECEIVE,
        connection_type: NET_IF_CONNECTION_DEDICATED,
        if_type: IF_TYPE_ETHERNET_CSMACD,
        if_connector_present: 1,
        supported_statistics: 0,
        supported_pause_functions: 0,
        data_back_fill_size: 0,
        context_back_fill_size: 0,
        supported_oid_list: g.oids.as_ptr(),
        supported_oid_list_length: (g.oids.len() * 4) as u32,
        auto_negotiation_flags: 0,
        power_management_capabilities_ex: core::ptr::null_mut(),
    }
}

fn connect_state(up: bool) -> i32 {
    if up {
        MEDIA_CONNECT_STATE_CONNECTED
    } else {
        MEDIA_CONNECT_STATE_DISCONNECTED
    }
}

unsafe extern "C" fn halt_ex(ctx: Handle, _action: u32) {
    let b = ctx as *mut Block;
    // The driver's state goes first (PASSIVE, no lock: dropping it closes its ports
    // and removes its watches, waiting out callbacks in flight), then the pool and the
    // block, which nothing reaches any more.
    let blk = block(b as usize);
    let idle = crate::xen::Event::new();
    loop {
        let m = blk.state.lock().take();
        if let Some(m) = m {
            drop(m);
            break;
        }
        if !blk.taken.load(Ordering::Acquire) {
            break;
        }
        // Out for PASSIVE work (a backend state change): wait for it to come back.
        idle.wait(1);
    }
    // SAFETY: the block leaked in `initialize_ex`, NDIS' last call for this adapter.
    let b = unsafe { Box::from_raw(b) };
    // SAFETY: our pool; receive indications never keep an NBL past their call.
    unsafe { NdisFreeNetBufferListPool(b.pool) };
}

unsafe extern "C" fn pause(ctx: Handle, _p: *mut c_void) -> Status {
    let b = block(ctx as usize);
    b.paused.store(true, Ordering::Release);
    // Nothing stays outstanding once the calls in progress return: an indication
    // gives its NBLs back on return (and checks `paused` under `rx`, so taking `rx`
    // waits one out), a send completes its NBLs in its call (PASSIVE: wait for them).
    drop(b.rx.lock());
    let idle = crate::xen::Event::new();
    while b.sending.load(Ordering::Acquire) != 0 {
        idle.wait(1);
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn restart(ctx: Handle, _p: *mut c_void) -> Status {
    block(ctx as usize).paused.store(false, Ordering::Release);
    STATUS_SUCCESS
}

unsafe extern "C" fn cancel(_ctx: Handle, _id: *mut c_void) {}

unsafe extern "C" fn shutdown(_ctx: Handle, _action: u32) {}

unsafe extern "C" fn reset(_ctx: Handle, addressing_reset: *mut u8) -> Status {
    // SAFETY: NDIS' out-parameter.
    unsafe { *addressing_reset = 0 };
    STATUS_SUCCESS
}

unsafe extern "C" fn return_nbls(_ctx: Handle, _nbl: *mut NetBufferList, _flags: u32) {
    // Every indication is made with NDIS_RECEIVE_FLAGS_RESOURCES: NDIS returns nothing.
}

/// Indicates `frames` (bus DPC, DISPATCH_LEVEL, no lock held): each copied into a
/// buffer of its own under an MDL and an NBL from the adapter's pool, all indicated in
/// one call with NDIS_RECEIVE_FLAGS_RESOURCES, then freed.
fn indicate(b: &Block, frames: Vec<RxFrame>) {
    let _dispatch = b.rx.lock();
    if b.paused.load(Ordering::Acquire) {
        return;
    }
    let mut held: Vec<(*mut NetBufferList, *mut sys::MDL, Vec<u8>)> = Vec::new();
    for f in frames {
        let mut data = f.data;
        if data.is_empty() || data.len() > u32::MAX as usize {
            continue;
        }
        // SAFETY: `data` is non-paged memory (the pool allocator) that outlives the
        // MDL and NBL made over it: all three are freed together below, after the
        // indication returned them.
        unsafe {
            let mdl = NdisAllocateMdl(b.handle, data.as_mut_ptr().cast(), data.len() as u32);
            if mdl.is_null() {
                continue;
            }
            let nbl = NdisAllocateNetBufferAndNetBufferList(b.pool, 0, 0, mdl, 0, data.len());
            if nbl.is_null() {
                NdisFreeMdl(mdl);
                continue;
            }
            (*nbl).source_handle = b.handle;
            (*nbl).info_checksum = f.csum_info as usize;
            if let Some(last) = held.last() {
                (*last.0).next = nbl;
            }
            held.push((nbl, mdl, data));
        }
    }
    let Some(first) = held.first() else {
        return;
    };
    // SAFETY: the chain built above; RESOURCES: NDIS is done with it on return.
    unsafe {
        NdisMIndicateReceiveNetBufferLists(
            b.handle,
            first.0,
            0,
            held.len() as u32,
            RECEIVE_FLAGS_DISPATCH_LEVEL | RECEIVE_FLAGS_RESOURCES,
        );
        for (nbl, mdl, _data) in held.drain(..) {
            NdisFreeNetBufferList(nbl);
            NdisFreeMdl(mdl);
        }
    }
}

/// Indicates the media connect state (NDIS_STATUS_LINK_STATE; IRQL <= DISPATCH_LEVEL).
pub fn indicate_link(a: AdapterRef, up: bool, speed: u64) {
    let b = block(a.0);
    let mut ls = LinkState {
        header: ObjectHeader {
            ty: OBJECT_TYPE_DEFAULT,
            revision: LINK_STATE_REVISION_1,
            size: SIZEOF_LINK_STATE_REVISION_1,
        },
        media_connect_state: connect_state(up),
        media_duplex_state: MEDIA_DUPLEX_STATE_FULL,
        xmit_link_speed: speed,
        rcv_link_speed: speed,
        pause_functions: 0,
        auto_negotiation_flags: 0,
    };
    let size = core::mem::size_of::<LinkState>() as u32;
    indicate_status(
        b,
        STATUS_LINK_STATE,
        (&mut ls as *mut LinkState).cast(),
        size,
    );
}

/// Indicates the current task offload configuration (NDIS_STATUS_TASK_OFFLOAD_
/// CURRENT_CONFIG, an `NDIS_OFFLOAD`; IRQL <= DISPATCH_LEVEL, no adapter lock held).
pub fn indicate_offload(a: AdapterRef, offload: &[u8; 112]) {
    let mut buf = *offload;
    indicate_status(
        block(a.0),
        STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
        buf.as_mut_ptr().cast(),
        112,
    );
}

fn indicate_status(b: &Block, code: Status, buf: *mut c_void, size: u32) {
    let mut ind = StatusIndication {
        header: ObjectHeader {
            ty: OBJECT_TYPE_STATUS_INDICATION,
            revision: STATUS_INDICATION_REVISION_1,
            size: SIZEOF_STATUS_INDICATION_REVISION_1,
        },
        source_handle: b.handle,
        port_number: 0,
        status_code: code,
        flags: 0,
        destination_handle: core::ptr::null_mut(),
        request_id: core::ptr::null_mut(),
        status_buffer: buf,
        status_buffer_size: size,
        guid: [0; 16],
        ndis_reserved: [core::ptr::null_mut(); 4],
    };
    // SAFETY: an indication NDIS reads during the call; `buf` is the caller's,
    // `size` bytes, alive across it.
    unsafe { NdisMIndicateStatusEx(b.handle, &mut ind) };
}
