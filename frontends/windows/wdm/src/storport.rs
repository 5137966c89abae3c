//! Storport virtual miniport plumbing, the unsafe half: `StorPortInitialize` with a
//! Windows 8+ `HW_INITIALIZATION_DATA` marked `STOR_FEATURE_VIRTUAL_MINIPORT` (mingw-w64's
//! srb.h has only the ScsiPort-era prefix of the structure, so it is declared here from
//! the documented layout), the Hw* callbacks as trampolines to a safe [`Miniport`], the
//! adapter state behind a kernel spin lock (Storport calls a virtual miniport's
//! HwStartIo unsynchronised, from any CPU), and [`Srb`]: one request, its fields read
//! once, completed once.

use crate::{sys, Driver, NtStatus};
use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `STOR_FEATURE_VIRTUAL_MINIPORT`.
const STOR_FEATURE_VIRTUAL_MINIPORT: u32 = 1;
/// `STOR_MAP_ALL_BUFFERS_INCLUDING_READ_WRITE` (Windows 8+): every data buffer has a
/// system virtual address in `DataBuffer`.
const STOR_MAP_ALL_BUFFERS_INCLUDING_READ_WRITE: u8 = 3;
/// `Internal` (INTERFACE_TYPE): no hardware bus.
const INTERFACE_INTERNAL: i32 = 0;
/// `SRB_STATUS_NO_DEVICE`.
const SRB_STATUS_NO_DEVICE: u8 = sys::SRB_STATUS_NO_DEVICE as u8;
/// `SRB_STATUS_AUTOSENSE_VALID`.
const SRB_STATUS_AUTOSENSE_VALID: u8 = sys::SRB_STATUS_AUTOSENSE_VALID as u8;

type HwInitialize = unsafe extern "C" fn(*mut c_void) -> u8;
type HwStartIo = unsafe extern "C" fn(*mut c_void, *mut sys::SCSI_REQUEST_BLOCK) -> u8;
type HwFindAdapter = unsafe extern "C" fn(
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut i8,
    *mut sys::PORT_CONFIGURATION_INFORMATION,
    *mut u8,
) -> u32;
type HwResetBus = unsafe extern "C" fn(*mut c_void, u32) -> u8;
type HwAdapterControl = unsafe extern "C" fn(*mut c_void, i32, *mut c_void) -> i32;
type HwFree = unsafe extern "C" fn(*mut c_void);
type AnyFn = Option<unsafe extern "C" fn()>;

/// storport.h's `HW_INITIALIZATION_DATA` (NTDDI_WIN8 and later), field for field.
#[repr(C)]
struct HwInitializationData {
    size: u32,
    adapter_interface_type: i32,
    hw_initialize: Option<HwInitialize>,
    hw_start_io: Option<HwStartIo>,
    hw_interrupt: AnyFn,
    hw_find_adapter: Option<HwFindAdapter>,
    hw_reset_bus: Option<HwResetBus>,
    hw_dma_started: AnyFn,
    hw_adapter_state: AnyFn,
    device_extension_size: u32,
    specific_lu_extension_size: u32,
    srb_extension_size: u32,
    number_of_access_ranges: u32,
    reserved: *mut c_void,
    map_buffers: u8,
    need_physical_addresses: u8,
    tagged_queuing: u8,
    auto_request_sense: u8,
    multiple_request_per_lu: u8,
    receive_event: u8,
    vendor_id_length: u16,
    vendor_id: *mut c_void,
    port_version_flags: u16,
    device_id_length: u16,
    device_id: *mut c_void,
    hw_adapter_control: Option<HwAdapterControl>,
    hw_build_io: Option<HwStartIo>,
    hw_free_adapter_resources: Option<HwFree>,
    hw_process_service_request: AnyFn,
    hw_complete_service_irp: AnyFn,
    hw_initialize_tracing: AnyFn,
    hw_cleanup_tracing: AnyFn,
    hw_tracing_enabled: AnyFn,
    feature_support: u32,
    srb_type_flags: u32,
    address_type_flags: u32,
    reserved1: u32,
    hw_unit_control: AnyFn,
}

// The ScsiPort-era prefix of the structure is in mingw-w64's srb.h: every field of it
// must sit where bindgen puts mingw's, and the whole is the documented x64 size.
macro_rules! same_offset {
    ($($ours:ident = $theirs:ident),* $(,)?) => {
        $(const _: () = assert!(
            core::mem::offset_of!(HwInitializationData, $ours)
                == core::mem::offset_of!(sys::HW_INITIALIZATION_DATA, $theirs)
        );)*
    };
}
same_offset!(
    size = HwInitializationDataSize,
    adapter_interface_type = AdapterInterfaceType,
    hw_initialize = HwInitialize,
    hw_start_io = HwStartIo,
    hw_find_adapter = HwFindAdapter,
    hw_reset_bus = HwResetBus,
    device_extension_size = DeviceExtensionSize,
    srb_extension_size = SrbExtensionSize,
    reserved = Reserved,
    map_buffers = MapBuffers,
    receive_event = ReceiveEvent,
    vendor_id = VendorId,
    device_id_length = DeviceIdLength,
    device_id = DeviceId,
    hw_adapter_control = HwAdapterControl,
);
const _: () = assert!(
    core::mem::size_of::<sys::HW_INITIALIZATION_DATA>()
        == core::mem::offset_of!(HwInitializationData, hw_build_io)
);
const _: () = assert!(core::mem::size_of::<HwInitializationData>() == 208);

// storport.sys' exports (lib/storport.def, linked by build.rs as every import
// library is); StorPortNotification is variadic.
unsafe extern "C" {
    fn StorPortInitialize(
        driver: *mut c_void,
        registry: *mut c_void,
        data: *mut HwInitializationData,
        context: *mut c_void,
    ) -> u32;
    fn StorPortNotification(kind: i32, ext: *mut c_void, ...);
}

/// What an adapter can take, reported in HwFindAdapter.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest transfer in bytes.
    pub max_transfer: u32,
    /// Most scatter-gather elements per request (`NumberOfPhysicalBreaks`).
    pub max_breaks: u32,
}

/// A virtual miniport's adapter (safe Rust, in the driver crate). `find_adapter` runs
/// at PASSIVE_LEVEL on a state no one else can reach yet (before it is installed);
/// every later call is made under the adapter's spin lock (`start_io` and
/// [`with_miniport`] at or below DISPATCH_LEVEL). HwResetBus comes at DISPATCH_LEVEL
/// (Storport's documented rule) and reaches `reset_bus` under that lock. HwInitialize
/// and HwAdapterControl may come at DIRQL, where that lock cannot be taken, so they do
/// not reach the adapter: a virtual adapter has no hardware to initialise, stop or
/// restart, and its state stays in the extension across a stop.
pub trait Miniport: Send + core::any::Any {
    /// HwFindAdapter (first time): `lower` is the device below Storport's adapter
    /// (xenbus' child PDO), `me` names this adapter for callbacks. The adapter's
    /// limits, or `None` (not found).
    fn find_adapter(&mut self, lower: LowerDevice, me: AdapterRef) -> Option<Limits>;
    /// HwFindAdapter again (after a stop: the state is kept): the limits.
    fn limits(&self) -> Limits;
    /// HwStartIo: the miniport completes `srb` now or later ([`Srb::complete`]).
    fn start_io(&mut self, srb: Srb);
    /// An event on a port bound with [`event_callback`] (bus DPC, DISPATCH_LEVEL).
    fn port_event(&mut self, port: u32);
    /// HwResetBus (Storport's I/O timeout expired; DISPATCH_LEVEL, StartIo lock held):
    /// complete the SRBs in flight.
    fn reset_bus(&mut self) {}
    /// For [`with_miniport`]'s downcast.
    fn as_any(&mut self) -> &mut dyn core::any::Any;
}

/// The device below a virtual adapter, for the bus interface query.
#[derive(Clone, Copy, Debug)]
pub struct LowerDevice(pub(crate) *mut c_void);

impl LowerDevice {
    /// Queries xenbus' interface from it (PASSIVE_LEVEL).
    pub fn query_bus(self) -> Result<crate::busif::BusHandle, NtStatus> {
        crate::busif::query(self.0)
    }
}

/// One adapter (its device extension's address), for callbacks to reach it. Made only
/// here (HwFindAdapter, and the bus callbacks of [`event_callback`] /
/// [`watch_callback`], which get back the address they registered), so a driver cannot
/// name memory that is not an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterRef(usize);

/// Runs `f` on adapter `a`'s state of type `M` under its spin lock (`IRQL <=
/// DISPATCH_LEVEL`); `None` when it has none (not found yet, or freed). The extension
/// stays allocated while callbacks can come: the driver's state removes them (ports
/// closed, watches removed; the bus waits out a running one) when it is dropped in
/// HwFreeAdapterResources, before Storport frees the extension.
pub fn with_miniport<M: Miniport, R>(a: AdapterRef, f: impl FnOnce(&mut M) -> R) -> Option<R> {
    with_adapter(a.0 as *mut c_void, |m| {
        m.as_any().downcast_mut::<M>().map(f)
    })
    .flatten()
}

/// The bus' event callback for this adapter: the bus DPC calls it with the port, and it
/// calls [`Miniport::port_event`] under the adapter lock.
pub fn event_callback(a: AdapterRef) -> sluice_xenbus_core::iface::EventCallback {
    sluice_xenbus_core::iface::EventCallback {
        func: on_bus_port,
        ctx: a.0,
    }
}

/// The bus' watch callback for this adapter: the bus work item calls it (PASSIVE) and
/// it calls the `on_watch` function given to [`initialize`], with no lock held.
pub fn watch_callback(a: AdapterRef) -> sluice_xenbus_core::iface::WatchCallback {
    sluice_xenbus_core::iface::WatchCallback {
        func: on_bus_watch,
        ctx: a.0,
    }
}

extern "C" fn on_bus_port(ctx: usize, port: u32) {
    // The context is the one `event_callback` registered (the bus' contract).
    with_adapter(ctx as *mut c_void, |m| m.port_event(port));
}

extern "C" fn on_bus_watch(ctx: usize, id: u64) {
    let f = WATCH.load(Ordering::SeqCst);
    if f != 0 {
        // SAFETY: stored by `initialize` from a `fn(AdapterRef, u64)`.
        let f: fn(AdapterRef, u64) =
            unsafe { core::mem::transmute::<usize, fn(AdapterRef, u64)>(f) };
        // The context is the one `watch_callback` registered (the bus' contract).
        f(AdapterRef(ctx), id);
    }
}

/// Tells Storport the bus changed (the disk appeared or went): it rescans.
pub fn bus_changed(a: AdapterRef) {
    // SAFETY: the adapter's extension (per `with_miniport`'s rule); BusChangeDetected
    // takes the path id, and may be sent at or below DISPATCH_LEVEL.
    unsafe { StorPortNotification(sys::BusChangeDetected as i32, a.0 as *mut c_void, 0u32) };
}

static MAKE: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicUsize = AtomicUsize::new(0);
static WATCH: AtomicUsize = AtomicUsize::new(0);

/// The device extension Storport allocates (zeroed once, kept across stop/restart).
struct Adapter {
    lock: sys::KSPIN_LOCK,
    inner: UnsafeCell<Option<Box<dyn Miniport>>>,
}

fn with_adapter<R>(ext: *mut c_void, f: impl FnOnce(&mut dyn Miniport) -> R) -> Option<R> {
    let a = ext as *mut Adapter;
    // SAFETY: `ext` is Storport's device extension of `size_of::<Adapter>()` bytes,
    // zeroed at allocation (a zero KSPIN_LOCK is an initialised free lock, a zero
    // Option<Box> is None); the lock serialises every access to `inner`, and the IRQL
    // raised to DISPATCH_LEVEL keeps the holder on its CPU.
    unsafe {
        let irql = sys::KeAcquireSpinLockRaiseToDpc(&mut (*a).lock);
        let r = (*(*a).inner.get()).as_deref_mut().map(f);
        sys::KeReleaseSpinLock(&mut (*a).lock, irql);
        r
    }
}

/// Registers the virtual miniport: Storport calls back for each adapter (each
/// `SLUICEXEN\VBD` device); `make` builds an adapter's state, `started` is called at
/// PASSIVE_LEVEL with no lock held once a new state is installed (to register
/// callbacks that reach it through [`with_miniport`]), `on_watch` for the events of
/// watches registered with [`watch_callback`] (PASSIVE, no lock held).
pub fn initialize(
    driver: &Driver,
    make: fn() -> Box<dyn Miniport>,
    started: fn(AdapterRef),
    on_watch: fn(AdapterRef, u64),
) -> NtStatus {
    MAKE.store(make as usize, Ordering::SeqCst);
    STARTED.store(started as usize, Ordering::SeqCst);
    WATCH.store(on_watch as usize, Ordering::SeqCst);
    let mut d = HwInitializationData {
        size: core::mem::size_of::<HwInitializationData>() as u32,
        adapter_interface_type: INTERFACE_INTERNAL,
        hw_initialize: Some(hw_initialize),
        hw_start_io: Some(hw_start_io),
        hw_interrupt: None,
        hw_find_adapter: Some(hw_find_adapter),
        hw_reset_bus: Some(hw_reset_bus),
        hw_dma_started: None,
        hw_adapter_state: None,
        device_extension_size: core::mem::size_of::<Adapter>() as u32,
        specific_lu_extension_size: 0,
        srb_extension_size: 0,
        number_of_access_ranges: 0,
        reserved: core::ptr::null_mut(),
        map_buffers: STOR_MAP_ALL_BUFFERS_INCLUDING_READ_WRITE,
        need_physical_addresses: 1,
        tagged_queuing: 1,
        auto_request_sense: 1,
        multiple_request_per_lu: 1,
        receive_event: 0,
        vendor_id_length: 0,
        vendor_id: core::ptr::null_mut(),
        port_version_flags: 0,
        device_id_length: 0,
        device_id: core::ptr::null_mut(),
        hw_adapter_control: Some(hw_adapter_control),
        hw_build_io: None,
        hw_free_adapter_resources: Some(hw_free_adapter_resources),
        hw_process_service_request: None,
        hw_complete_service_irp: None,
        hw_initialize_tracing: None,
        hw_cleanup_tracing: None,
        hw_tracing_enabled: None,
        feature_support: STOR_FEATURE_VIRTUAL_MINIPORT,
        srb_type_flags: 0,     // SCSI_REQUEST_BLOCK, not STORAGE_REQUEST_BLOCK
        address_type_flags: 0, // bus/target/LUN
        reserved1: 0,
        hw_unit_control: None,
    };
    // SAFETY: DriverEntry's arguments, and an initialisation structure Storport copies
    // before returning.
    unsafe {
        StorPortInitialize(
            driver.0.cast(),
            driver.1.cast(),
            &mut d,
            core::ptr::null_mut(),
        ) as NtStatus
    }
}

unsafe extern "C" fn hw_find_adapter(
    ext: *mut c_void,
    _context: *mut c_void,
    _bus_information: *mut c_void,
    lower: *mut c_void,
    _arguments: *mut i8,
    cfg: *mut sys::PORT_CONFIGURATION_INFORMATION,
    again: *mut u8,
) -> u32 {
    let a = ext as *mut Adapter;
    // SAFETY: Storport's argument.
    unsafe {
        if !again.is_null() {
            *again = 0;
        }
    }
    let me = AdapterRef(ext as usize);
    // SAFETY: see `with_adapter`; a zeroed extension holds no state until we install
    // one, and nothing reaches this adapter before then (its callbacks are registered
    // by `started`, after).
    let fresh = unsafe { (*(*a).inner.get()).is_none() };
    let limits = if fresh {
        // SAFETY: stored by `initialize` from a `fn() -> Box<dyn Miniport>`.
        let make: fn() -> Box<dyn Miniport> = unsafe {
            core::mem::transmute::<usize, fn() -> Box<dyn Miniport>>(MAKE.load(Ordering::SeqCst))
        };
        // Built and found at PASSIVE_LEVEL on a local state (no lock: it may wait).
        let mut m = make();
        let Some(l) = m.find_adapter(LowerDevice(lower), me) else {
            return sys::SP_RETURN_NOT_FOUND;
        };
        // SAFETY: installs the state under the adapter's lock (see `with_adapter`).
        unsafe {
            let irql = sys::KeAcquireSpinLockRaiseToDpc(&mut (*a).lock);
            *(*a).inner.get() = Some(m);
            sys::KeReleaseSpinLock(&mut (*a).lock, irql);
        }
        // SAFETY: stored by `initialize` from a `fn(AdapterRef)`.
        let started: fn(AdapterRef) = unsafe {
            core::mem::transmute::<usize, fn(AdapterRef)>(STARTED.load(Ordering::SeqCst))
        };
        started(me);
        l
    } else {
        match with_adapter(ext, |m| m.limits()) {
            Some(l) => l,
            None => return sys::SP_RETURN_NOT_FOUND,
        }
    };
    let l = limits;
    // SAFETY: Storport's configuration for this adapter, ours to fill in here.
    unsafe {
        let c = &mut *cfg;
        c.MaximumTransferLength = l.max_transfer;
        c.NumberOfPhysicalBreaks = l.max_breaks;
        c.AlignmentMask = 0x1ff; // 512-byte sectors
        c.NumberOfBuses = 1;
        c.MaximumNumberOfTargets = 1;
        c.MaximumNumberOfLogicalUnits = 1;
        c.ScatterGather = 1;
        c.Master = 1;
        c.CachesData = 1;
        c.Dma64BitAddresses = 1;
        c.MapBuffers = STOR_MAP_ALL_BUFFERS_INCLUDING_READ_WRITE;
    }
    sys::SP_RETURN_FOUND
}

unsafe extern "C" fn hw_initialize(_ext: *mut c_void) -> u8 {
    1
}

unsafe extern "C" fn hw_start_io(ext: *mut c_void, srb: *mut sys::SCSI_REQUEST_BLOCK) -> u8 {
    let mut s = Some(Srb::read(ext, srb));
    with_adapter(ext, |m| {
        if let Some(s) = s.take() {
            m.start_io(s)
        }
    });
    if let Some(s) = s {
        // No adapter state (HwFindAdapter failed): nothing is there.
        s.complete(SRB_STATUS_NO_DEVICE, 0, &[], None);
    }
    1
}

unsafe extern "C" fn hw_reset_bus(ext: *mut c_void, _path: u32) -> u8 {
    // Storport calls it at DISPATCH_LEVEL (its documented rule), where the adapter's
    // spin lock may be taken.
    with_adapter(ext, |m| m.reset_bus());
    1
}

unsafe extern "C" fn hw_adapter_control(_ext: *mut c_void, kind: i32, params: *mut c_void) -> i32 {
    const SUCCESS: i32 = sys::ScsiAdapterControlSuccess as i32;
    const UNSUCCESSFUL: i32 = sys::ScsiAdapterControlUnsuccessful as i32;
    match kind as u32 {
        sys::ScsiQuerySupportedControlTypes => {
            let l = params as *mut sys::SCSI_SUPPORTED_CONTROL_TYPE_LIST;
            // SAFETY: Storport's list of `MaxControlType` booleans for this query.
            unsafe {
                let max = (*l).MaxControlType as usize;
                let list = core::ptr::addr_of_mut!((*l).SupportedTypeList) as *mut u8;
                for t in [
                    sys::ScsiQuerySupportedControlTypes,
                    sys::ScsiStopAdapter,
                    sys::ScsiRestartAdapter,
                ] {
                    if (t as usize) < max {
                        *list.add(t as usize) = 1;
                    }
                }
            }
            SUCCESS
        }
        sys::ScsiStopAdapter | sys::ScsiRestartAdapter => SUCCESS,
        _ => UNSUCCESSFUL,
    }
}

unsafe extern "C" fn hw_free_adapter_resources(ext: *mut c_void) {
    let a = ext as *mut Adapter;
    // SAFETY: Storport's last call for this adapter: the state is taken out under the
    // lock (a bus callback still in flight then finds none), and dropped at
    // PASSIVE_LEVEL outside it; its Drop removes the callbacks (the bus waits out
    // one already running) before the extension is freed.
    let m = unsafe {
        let irql = sys::KeAcquireSpinLockRaiseToDpc(&mut (*a).lock);
        let m = (*(*a).inner.get()).take();
        sys::KeReleaseSpinLock(&mut (*a).lock, irql);
        m
    };
    drop(m);
}

/// One SCSI request block: its fields read once when it arrives; completed once.
pub struct Srb {
    ext: *mut c_void,
    srb: *mut sys::SCSI_REQUEST_BLOCK,
    /// `SRB_FUNCTION_*`.
    pub function: u8,
    /// Path, target, LUN.
    pub address: (u8, u8, u8),
    cdb: [u8; 16],
    cdb_len: usize,
    data: *mut u8,
    data_len: usize,
    sense: *mut u8,
    sense_len: usize,
}

// SAFETY: an SRB belongs to the miniport from HwStartIo until its completion, and may
// be completed from any CPU at DISPATCH_LEVEL or below.
unsafe impl Send for Srb {}

impl Srb {
    fn read(ext: *mut c_void, srb: *mut sys::SCSI_REQUEST_BLOCK) -> Srb {
        // SAFETY: Storport's SRB, ours until completed; each field read once here.
        let r = unsafe { core::ptr::read(srb) };
        Srb {
            ext,
            srb,
            function: r.Function,
            address: (r.PathId, r.TargetId, r.Lun),
            cdb: r.Cdb,
            cdb_len: (r.CdbLength as usize).min(16),
            data: r.DataBuffer.cast(),
            data_len: if r.DataBuffer.is_null() {
                0
            } else {
                r.DataTransferLength as usize
            },
            sense: r.SenseInfoBuffer.cast(),
            sense_len: if r.SenseInfoBuffer.is_null() {
                0
            } else {
                r.SenseInfoBufferLength as usize
            },
        }
    }

    /// The CDB (its length capped at the 16 bytes the SRB holds).
    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..self.cdb_len]
    }

    /// The data buffer's length.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// Copies up to `out.len()` bytes out of the data buffer (a write's data, an UNMAP
    /// list); returns how many.
    pub fn read_data(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.data_len);
        if n > 0 {
            // SAFETY: Storport mapped `data_len` (> 0, so non-null) bytes at `data`
            // (STOR_MAP_ALL_BUFFERS_INCLUDING_READ_WRITE), ours until completion.
            unsafe { core::ptr::copy_nonoverlapping(self.data, out.as_mut_ptr(), n) };
        }
        n
    }

    /// The data buffer as (page, offset in page, length) pieces, cut at 4 KiB virtual
    /// page boundaries (Storport mapped it: `STOR_MAP_ALL_BUFFERS_INCLUDING_READ_WRITE`).
    pub fn data_pages(&self) -> alloc::vec::Vec<(BufPage, usize, usize)> {
        let mut out = alloc::vec::Vec::new();
        let mut at = self.data as usize;
        let end = at + self.data_len;
        while at < end {
            let base = at & !0xfff;
            let n = (base + 4096).min(end) - at;
            out.push((BufPage(base), at - base, n));
            at += n;
        }
        out
    }

    /// Completes the request: `data` copied into the data buffer (at most its length),
    /// `sense` into the sense buffer (cut to its length; autosense is cleared when it
    /// has no room). DataTransferLength: kept (the whole buffer moved) for a success
    /// without answer bytes (a block I/O), else the bytes copied.
    pub fn complete(self, srb_status: u8, scsi_status: u8, data: &[u8], sense: Option<&[u8]>) {
        let n = data.len().min(self.data_len);
        // SAFETY: as `read_data` (copies only of > 0 bytes, into buffers of at least that
        // many), and the sense buffer of `sense_len` bytes; the SRB's completion fields
        // are written once, then Storport is told.
        unsafe {
            if n > 0 {
                core::ptr::copy_nonoverlapping(data.as_ptr(), self.data, n);
            }
            let mut st = srb_status;
            if let Some(s) = sense {
                let m = s.len().min(self.sense_len);
                if m > 0 {
                    core::ptr::copy_nonoverlapping(s.as_ptr(), self.sense, m);
                } else {
                    st &= !SRB_STATUS_AUTOSENSE_VALID;
                }
            }
            (*self.srb).SrbStatus = st;
            (*self.srb).ScsiStatus = scsi_status;
            let whole = data.is_empty() && srb_status == sys::SRB_STATUS_SUCCESS as u8;
            if !whole {
                (*self.srb).DataTransferLength = n as u32;
            }
            StorPortNotification(sys::RequestComplete as i32, self.ext, self.srb);
        }
    }
}

/// A 4 KiB virtual page of an SRB's data buffer (the block path's data page: only
/// copied to and from, never granted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufPage(usize);

impl BufPage {
    /// Its bytes. The core touches only the part its segment names, which lies in the
    /// SRB's buffer, and only while the SRB is outstanding (the `Memory` seam's rule
    /// for data pages).
    pub fn mem(self) -> sluice_abi::shared::SharedMem<'static> {
        // SAFETY: a page of a buffer Storport mapped for an SRB we have not completed;
        // the accesses stay inside the buffer's bytes of it (see above). Non-null: the
        // base of a mapped address.
        unsafe {
            sluice_abi::shared::SharedMem::new(
                core::ptr::NonNull::new_unchecked(self.0 as *mut u8),
                4096,
            )
        }
    }
}

/// Zeroed non-paged pages for rings and bounce buffers (virtually contiguous, each
/// page granted by its own frame), freed on drop.
#[derive(Debug)]
pub struct PoolPages {
    va: core::ptr::NonNull<u8>,
    count: usize,
}

// SAFETY: plain memory owned by the handle.
unsafe impl Send for PoolPages {}

impl PoolPages {
    /// `count` zeroed pages.
    pub fn alloc(count: usize) -> Option<Self> {
        let len = count.checked_mul(4096).filter(|&l| l > 0)?;
        // SAFETY: a non-paged allocation of whole pages (page aligned: a pool block of
        // a page or more is), zeroed below, freed in Drop.
        let p = unsafe { sys::ExAllocatePoolWithTag(512, len as u64, crate::POOL_TAG) };
        let va = core::ptr::NonNull::new(p.cast::<u8>())?;
        // SAFETY: `len` bytes we own.
        unsafe { core::ptr::write_bytes(va.as_ptr(), 0, len) };
        Some(PoolPages { va, count })
    }

    /// The guest frame of page `index` (< count).
    pub fn frame(&self, index: usize) -> u64 {
        assert!(index < self.count);
        // SAFETY: an address inside our non-paged allocation; the result's QuadPart is
        // the whole value.
        unsafe {
            let pa = sys::MmGetPhysicalAddress(self.va.as_ptr().add(index * 4096).cast());
            (pa.QuadPart as u64) >> 12
        }
    }
}

impl sluice_front_seams::Pages for PoolPages {
    fn count(&self) -> usize {
        self.count
    }
    fn mem(&self) -> sluice_abi::shared::SharedMem<'_> {
        // SAFETY: our allocation, alive while the view borrows self.
        unsafe { sluice_abi::shared::SharedMem::new(self.va, self.count * 4096) }
    }
}

impl Drop for PoolPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc` with our tag (pages a backend may still map are
        // leaked by the core instead of dropped).
        unsafe { sys::ExFreePoolWithTag(self.va.as_ptr().cast(), crate::POOL_TAG) };
    }
}
