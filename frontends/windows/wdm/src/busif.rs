//! The bus interface on the wire: the `#[repr(C)]` table xenbus' child PDOs hand out
//! in `IRP_MN_QUERY_INTERFACE` ([`BusInterfaceV1`]: Windows' `INTERFACE` header, then
//! `extern "C"` functions), its provider side ([`answer_query`]: a child's
//! [`BusInterface`] object behind a reference-counted context) and its consumer side
//! ([`query`] -> [`BusHandle`], which implements [`BusInterface`] by calling the
//! table). The contract (IRQL, lifetimes, isolation) is `sluice_xenbus_core::iface`'s.
//! Strings cross as (pointer, length) into buffers of the caller's; errors as
//! `iface::encode_error` codes.

use crate::{sys, NtStatus, STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED, STATUS_SUCCESS};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xs_wire::XS_MESSAGE_MAX;
use sluice_front_seams::{GrantInUse, SeamError};
use sluice_xenbus_core::iface::{
    decode_error, encode_error, BusInterface, EventCallback, WatchCallback, INTERFACE_GUID,
    INTERFACE_VERSION,
};
use sluice_xenbus_core::watches::WatchId;

/// `E2BIG` as an errno code: the reply did not fit the caller's buffer (never with
/// [`XS_MESSAGE_MAX`]-byte buffers).
const E2BIG: i32 = 0x1_0000 | 7;

/// A child's interface object, as the provider keeps it.
pub type Child = Arc<dyn BusInterface + Send + Sync>;

type Ctx = *mut c_void;

/// Version 1 of the table (`Size` = `size_of::<BusInterfaceV1>()`).
#[repr(C)]
pub struct BusInterfaceV1 {
    /// Size, Version, Context, InterfaceReference, InterfaceDereference.
    pub header: sys::INTERFACE,
    grant_access: unsafe extern "C" fn(Ctx, u16, u64, u8, *mut u32) -> i32,
    end_access: unsafe extern "C" fn(Ctx, u32) -> i32,
    evtchn_alloc_unbound: unsafe extern "C" fn(Ctx, u16, *mut u32) -> i32,
    evtchn_bind: unsafe extern "C" fn(Ctx, u32, extern "C" fn(usize, u32), usize) -> i32,
    evtchn_notify: unsafe extern "C" fn(Ctx, u32),
    evtchn_close: unsafe extern "C" fn(Ctx, u32),
    xs_read: unsafe extern "C" fn(Ctx, u32, *const u8, usize, *mut u8, usize, *mut usize) -> i32,
    xs_write: unsafe extern "C" fn(Ctx, u32, *const u8, usize, *const u8, usize) -> i32,
    xs_directory: unsafe extern "C" fn(Ctx, *const u8, usize, *mut u8, usize, *mut usize) -> i32,
    xs_transaction_start: unsafe extern "C" fn(Ctx, *mut u32) -> i32,
    xs_transaction_end: unsafe extern "C" fn(Ctx, u32, u8) -> i32,
    watch: unsafe extern "C" fn(
        Ctx,
        *const u8,
        usize,
        extern "C" fn(usize, u64),
        usize,
        *mut u64,
    ) -> i32,
    unwatch: unsafe extern "C" fn(Ctx, u64),
    info: unsafe extern "C" fn(
        Ctx,
        *mut u8,
        usize,
        *mut usize,
        *mut u8,
        usize,
        *mut usize,
        *mut u16,
    ) -> i32,
}

/// What a context points at: the child's object and the interface's references.
struct Held {
    refs: AtomicU32,
    child: Child,
}

/// # Safety
/// `ctx` is a live context made by [`answer_query`] (the consumer holds a reference).
unsafe fn child<'a>(ctx: Ctx) -> &'a Child {
    // SAFETY: per the function's contract.
    unsafe { &(*(ctx as *const Held)).child }
}

/// # Safety
/// `p`/`len` are a readable byte range (the consumer's), or `len` is 0.
unsafe fn str_in<'a>(p: *const u8, len: usize) -> Option<&'a str> {
    if len == 0 {
        return Some("");
    }
    if p.is_null() || len > XS_MESSAGE_MAX {
        return None;
    }
    // SAFETY: per the function's contract.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(p, len) }).ok()
}

/// # Safety
/// `out`/`cap` writable, `out_len` writable.
unsafe fn bytes_out(v: &[u8], out: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
    if out.is_null() || out_len.is_null() || v.len() > cap {
        return E2BIG;
    }
    // SAFETY: per the function's contract; `v` fits.
    unsafe {
        core::ptr::copy_nonoverlapping(v.as_ptr(), out, v.len());
        *out_len = v.len();
    }
    0
}

fn code(r: Result<(), SeamError>) -> i32 {
    r.err().map(encode_error).unwrap_or(0)
}

const EINVAL: i32 = 22;

unsafe extern "C" fn reference(ctx: *mut c_void) {
    // SAFETY: a live context (the caller holds a reference to add to).
    unsafe { (*(ctx as *const Held)).refs.fetch_add(1, Ordering::AcqRel) };
}

unsafe extern "C" fn dereference(ctx: *mut c_void) {
    // SAFETY: a live context; the last reference frees it (made by Box::into_raw).
    unsafe {
        if (*(ctx as *const Held)).refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            drop(alloc::boxed::Box::from_raw(ctx as *mut Held));
        }
    }
}

unsafe extern "C" fn p_grant(ctx: Ctx, domid: u16, frame: u64, ro: u8, out: *mut u32) -> i32 {
    // SAFETY: the table's contract: live context, writable `out`.
    unsafe {
        match child(ctx).grant_access(DomId(domid), frame, ro != 0) {
            Ok(r) if !out.is_null() => {
                *out = r.0;
                0
            }
            Ok(r) => {
                let _ = child(ctx).end_access(r);
                encode_error(SeamError::Errno(EINVAL))
            }
            Err(e) => encode_error(e),
        }
    }
}

unsafe extern "C" fn p_end(ctx: Ctx, gref: u32) -> i32 {
    // SAFETY: a live context.
    match unsafe { child(ctx) }.end_access(GrantRef(gref)) {
        Ok(()) => 0,
        Err(_) => encode_error(SeamError::Errno(16)), // EBUSY
    }
}

unsafe extern "C" fn p_alloc(ctx: Ctx, remote: u16, out: *mut u32) -> i32 {
    // SAFETY: a live context, writable `out`.
    unsafe {
        if out.is_null() {
            return encode_error(SeamError::Errno(EINVAL));
        }
        match child(ctx).evtchn_alloc_unbound(DomId(remote)) {
            Ok(p) => {
                *out = p.0;
                0
            }
            Err(e) => encode_error(e),
        }
    }
}

unsafe extern "C" fn p_bind(
    ctx: Ctx,
    port: u32,
    func: extern "C" fn(usize, u32),
    cb: usize,
) -> i32 {
    // SAFETY: a live context.
    code(unsafe { child(ctx) }.evtchn_bind(EvtchnPort(port), EventCallback { func, ctx: cb }))
}

unsafe extern "C" fn p_notify(ctx: Ctx, port: u32) {
    // SAFETY: a live context.
    unsafe { child(ctx) }.evtchn_notify(EvtchnPort(port))
}

unsafe extern "C" fn p_close(ctx: Ctx, port: u32) {
    // SAFETY: a live context.
    unsafe { child(ctx) }.evtchn_close(EvtchnPort(port))
}

unsafe extern "C" fn p_read(
    ctx: Ctx,
    tx: u32,
    path: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: the table's contract: live context, the consumer's buffers.
    unsafe {
        let Some(path) = str_in(path, len) else {
            return encode_error(SeamError::Xenstore(EINVAL));
        };
        match child(ctx).xs_read(tx, path) {
            Ok(Some(v)) => bytes_out(v.as_bytes(), out, cap, out_len),
            Ok(None) => encode_error(SeamError::Xenstore(2)), // ENOENT
            Err(e) => encode_error(e),
        }
    }
}

unsafe extern "C" fn p_write(
    ctx: Ctx,
    tx: u32,
    path: *const u8,
    len: usize,
    value: *const u8,
    vlen: usize,
) -> i32 {
    // SAFETY: as p_read.
    unsafe {
        let (Some(path), Some(value)) = (str_in(path, len), str_in(value, vlen)) else {
            return encode_error(SeamError::Xenstore(EINVAL));
        };
        code(child(ctx).xs_write(tx, path, value))
    }
}

unsafe extern "C" fn p_directory(
    ctx: Ctx,
    path: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: as p_read.
    unsafe {
        let Some(path) = str_in(path, len) else {
            return encode_error(SeamError::Xenstore(EINVAL));
        };
        match child(ctx).xs_directory(path) {
            Ok(names) => {
                let mut v = Vec::new();
                for n in names {
                    v.extend_from_slice(n.as_bytes());
                    v.push(0);
                }
                bytes_out(&v, out, cap, out_len)
            }
            Err(e) => encode_error(e),
        }
    }
}

unsafe extern "C" fn p_tx_start(ctx: Ctx, out: *mut u32) -> i32 {
    // SAFETY: live context, writable `out`.
    unsafe {
        if out.is_null() {
            return encode_error(SeamError::Errno(EINVAL));
        }
        match child(ctx).xs_transaction_start() {
            Ok(t) => {
                *out = t;
                0
            }
            Err(e) => encode_error(e),
        }
    }
}

unsafe extern "C" fn p_tx_end(ctx: Ctx, tx: u32, commit: u8) -> i32 {
    // SAFETY: a live context.
    code(unsafe { child(ctx) }.xs_transaction_end(tx, commit != 0))
}

unsafe extern "C" fn p_watch(
    ctx: Ctx,
    path: *const u8,
    len: usize,
    func: extern "C" fn(usize, u64),
    cb: usize,
    out: *mut u64,
) -> i32 {
    // SAFETY: as p_read.
    unsafe {
        let Some(path) = str_in(path, len) else {
            return encode_error(SeamError::Xenstore(EINVAL));
        };
        if out.is_null() {
            return encode_error(SeamError::Errno(EINVAL));
        }
        match child(ctx).watch(path, WatchCallback { func, ctx: cb }) {
            Ok(id) => {
                *out = id.0;
                0
            }
            Err(e) => encode_error(e),
        }
    }
}

unsafe extern "C" fn p_unwatch(ctx: Ctx, id: u64) {
    // SAFETY: a live context.
    unsafe { child(ctx) }.unwatch(WatchId(id))
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn p_info(
    ctx: Ctx,
    fe: *mut u8,
    fe_cap: usize,
    fe_len: *mut usize,
    be: *mut u8,
    be_cap: usize,
    be_len: *mut usize,
    domid: *mut u16,
) -> i32 {
    // SAFETY: live context, the consumer's buffers.
    unsafe {
        let c = child(ctx);
        if domid.is_null() {
            return encode_error(SeamError::Errno(EINVAL));
        }
        let r = bytes_out(c.frontend_path().as_bytes(), fe, fe_cap, fe_len);
        if r != 0 {
            return r;
        }
        *domid = c.backend_domid().0;
        bytes_out(c.backend_path().as_bytes(), be, be_cap, be_len)
    }
}

fn guid_eq(g: *const sys::GUID) -> bool {
    if g.is_null() {
        return false;
    }
    // SAFETY: the query's GUID pointer (the sender's, valid for the IRP).
    let g = unsafe { core::ptr::read_unaligned(g) };
    let (d1, d2, d3, d4) = INTERFACE_GUID;
    g.Data1 == d1 && g.Data2 == d2 && g.Data3 == d3 && g.Data4 == d4
}

/// Answers a PDO's `IRP_MN_QUERY_INTERFACE` (`params`, the stack location's
/// `QueryInterface`): another GUID keeps the IRP's status (`None`), a version other
/// than ours or a `Size` too small is `STATUS_NOT_SUPPORTED`, else the table is
/// written to the caller's buffer with one reference taken.
pub fn answer_query(
    params: &sys::_IO_STACK_LOCATION__bindgen_ty_1__bindgen_ty_26,
    child: Option<&Child>,
) -> Option<NtStatus> {
    if !guid_eq(params.InterfaceType) {
        return None;
    }
    let Some(child) = child else {
        return Some(STATUS_NOT_SUPPORTED);
    };
    let size = core::mem::size_of::<BusInterfaceV1>();
    if params.Version != INTERFACE_VERSION
        || (params.Size as usize) < size
        || params.Interface.is_null()
    {
        return Some(STATUS_NOT_SUPPORTED);
    }
    let held = alloc::boxed::Box::new(Held {
        refs: AtomicU32::new(1),
        child: child.clone(),
    });
    let table = BusInterfaceV1 {
        header: sys::INTERFACE {
            Size: size as u16,
            Version: INTERFACE_VERSION,
            Context: alloc::boxed::Box::into_raw(held).cast(),
            InterfaceReference: Some(reference),
            InterfaceDereference: Some(dereference),
        },
        grant_access: p_grant,
        end_access: p_end,
        evtchn_alloc_unbound: p_alloc,
        evtchn_bind: p_bind,
        evtchn_notify: p_notify,
        evtchn_close: p_close,
        xs_read: p_read,
        xs_write: p_write,
        xs_directory: p_directory,
        xs_transaction_start: p_tx_start,
        xs_transaction_end: p_tx_end,
        watch: p_watch,
        unwatch: p_unwatch,
        info: p_info,
    };
    // SAFETY: the caller's buffer holds `Size` >= size_of::<BusInterfaceV1>() bytes
    // (checked above), as the QUERY_INTERFACE protocol promises.
    unsafe { core::ptr::write_unaligned(params.Interface as *mut BusInterfaceV1, table) };
    Some(STATUS_SUCCESS)
}

/// The consumer's end: the table from xenbus and the child's place in xenstore.
/// Dropping it dereferences the interface (after the child's last call).
pub struct BusHandle {
    table: BusInterfaceV1,
    frontend: String,
    backend: String,
    domid: DomId,
}

// SAFETY: the table's functions may be called from any thread (the contract); the
// context is reference-counted by the provider.
unsafe impl Send for BusHandle {}
// SAFETY: as Send; the provider serialises what needs it.
unsafe impl Sync for BusHandle {}

impl Drop for BusHandle {
    fn drop(&mut self) {
        if let Some(d) = self.table.header.InterfaceDereference {
            // SAFETY: the reference the query gave us, given back once.
            unsafe { d(self.table.header.Context) };
        }
    }
}

unsafe extern "C" fn on_query_done(
    _d: *mut sys::DEVICE_OBJECT,
    _irp: *mut sys::IRP,
    ctx: sys::PVOID,
) -> NtStatus {
    // SAFETY: the Event `query` waits on, alive until it returns.
    unsafe { (*(ctx as *const crate::xen::Event)).set() };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// `STATUS_MORE_PROCESSING_REQUIRED`.
const STATUS_MORE_PROCESSING_REQUIRED: NtStatus = 0xC000_0016_u32 as i32;
/// `STATUS_PENDING`.
const STATUS_PENDING: NtStatus = 0x103;

/// Sends `IRP_MN_QUERY_INTERFACE` for Sluice's bus interface to `target` (the child
/// PDO's stack; PASSIVE_LEVEL) and checks the answer's size and version.
pub fn query(target: *mut c_void) -> Result<BusHandle, NtStatus> {
    if target.is_null() {
        return Err(STATUS_NOT_SUPPORTED);
    }
    let (d1, d2, d3, d4) = INTERFACE_GUID;
    let guid = sys::GUID {
        Data1: d1,
        Data2: d2,
        Data3: d3,
        Data4: d4,
    };
    let done = crate::xen::Event::new();
    // SAFETY: zeroed plain-data buffers the bus writes the table into.
    let mut table: core::mem::MaybeUninit<BusInterfaceV1> = core::mem::MaybeUninit::zeroed();
    // SAFETY: a PnP IRP to a device object the caller names (Storport's lower device,
    // which holds a reference for the adapter's life): allocated with a stack location
    // per device of its stack, its next location filled as QUERY_INTERFACE, a
    // completion routine that hands it back to us, then freed with IoFreeIrp. Status
    // starts STATUS_NOT_SUPPORTED as the PnP rules require.
    unsafe {
        let dev = target as *mut sys::DEVICE_OBJECT;
        let irp = sys::IoAllocateIrp((*dev).StackSize, 0);
        if irp.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        (*irp).IoStatus.__bindgen_anon_1.Status = STATUS_NOT_SUPPORTED;
        let next = (*irp)
            .Tail
            .Overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
            .sub(1);
        core::ptr::write_bytes(next, 0, 1);
        (*next).MajorFunction = sys::IRP_MJ_PNP as u8;
        (*next).MinorFunction = sys::IRP_MN_QUERY_INTERFACE as u8;
        (*next).Parameters.QueryInterface = sys::_IO_STACK_LOCATION__bindgen_ty_1__bindgen_ty_26 {
            InterfaceType: &guid,
            Size: core::mem::size_of::<BusInterfaceV1>() as u16,
            Version: INTERFACE_VERSION,
            Interface: table.as_mut_ptr().cast(),
            InterfaceSpecificData: core::ptr::null_mut(),
        };
        (*next).Control = 0x20 | 0x40 | 0x80;
        (*next).CompletionRoutine = Some(on_query_done);
        (*next).Context = &done as *const _ as *mut _;
        if sys::IofCallDriver(dev, irp) == STATUS_PENDING {
            while !done.wait(10_000) {}
        }
        let s = (*irp).IoStatus.__bindgen_anon_1.Status;
        sys::IoFreeIrp(irp);
        if s != STATUS_SUCCESS {
            return Err(s);
        }
        let table = table.assume_init();
        if table.header.Version != INTERFACE_VERSION
            || (table.header.Size as usize) < core::mem::size_of::<BusInterfaceV1>()
            || table.header.InterfaceDereference.is_none()
        {
            return Err(STATUS_NOT_SUPPORTED);
        }
        BusHandle::new(table)
    }
}

impl BusHandle {
    fn new(table: BusInterfaceV1) -> Result<Self, NtStatus> {
        let mut h = BusHandle {
            table,
            frontend: String::new(),
            backend: String::new(),
            domid: DomId(0),
        };
        let mut fe = alloc::vec![0u8; 256];
        let mut be = alloc::vec![0u8; sluice_abi::xs_wire::XENSTORE_ABS_PATH_MAX];
        let (mut fl, mut bl, mut d) = (0usize, 0usize, 0u16);
        // SAFETY: the table's info function with our buffers and out-values.
        let r = unsafe {
            (h.table.info)(
                h.table.header.Context,
                fe.as_mut_ptr(),
                fe.len(),
                &mut fl,
                be.as_mut_ptr(),
                be.len(),
                &mut bl,
                &mut d,
            )
        };
        decode_error(r).map_err(|_| STATUS_NOT_SUPPORTED)?;
        fe.truncate(fl.min(fe.len()));
        be.truncate(bl.min(be.len()));
        h.frontend = String::from_utf8(fe).map_err(|_| STATUS_NOT_SUPPORTED)?;
        h.backend = String::from_utf8(be).map_err(|_| STATUS_NOT_SUPPORTED)?;
        h.domid = DomId(d);
        Ok(h)
    }

    fn ctx(&self) -> Ctx {
        self.table.header.Context
    }
}

fn bytes_to_string(mut v: Vec<u8>, len: usize) -> Result<String, SeamError> {
    v.truncate(len.min(v.len()));
    String::from_utf8(v).map_err(|_| SeamError::Xenstore(5))
}

impl BusInterface for BusHandle {
    fn grant_access(&self, domid: DomId, frame: u64, ro: bool) -> Result<GrantRef, SeamError> {
        let mut r = 0u32;
        // SAFETY: the table's function, our context and out-value.
        decode_error(unsafe {
            (self.table.grant_access)(self.ctx(), domid.0, frame, ro as u8, &mut r)
        })?;
        Ok(GrantRef(r))
    }
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantInUse> {
        // SAFETY: as above.
        decode_error(unsafe { (self.table.end_access)(self.ctx(), gref.0) })
            .map_err(|_| GrantInUse(gref))
    }
    fn evtchn_alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError> {
        let mut p = 0u32;
        // SAFETY: as above.
        decode_error(unsafe { (self.table.evtchn_alloc_unbound)(self.ctx(), remote.0, &mut p) })?;
        Ok(EvtchnPort(p))
    }
    fn evtchn_bind(&self, port: EvtchnPort, cb: EventCallback) -> Result<(), SeamError> {
        // SAFETY: as above.
        decode_error(unsafe { (self.table.evtchn_bind)(self.ctx(), port.0, cb.func, cb.ctx) })
    }
    fn evtchn_notify(&self, port: EvtchnPort) {
        // SAFETY: as above.
        unsafe { (self.table.evtchn_notify)(self.ctx(), port.0) }
    }
    fn evtchn_close(&self, port: EvtchnPort) {
        // SAFETY: as above.
        unsafe { (self.table.evtchn_close)(self.ctx(), port.0) }
    }
    fn xs_read(&self, tx: u32, path: &str) -> Result<Option<String>, SeamError> {
        let mut buf = alloc::vec![0u8; XS_MESSAGE_MAX];
        let mut len = 0usize;
        // SAFETY: as above, with our path and buffer.
        let r = unsafe {
            (self.table.xs_read)(
                self.ctx(),
                tx,
                path.as_ptr(),
                path.len(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            )
        };
        match decode_error(r) {
            Ok(()) => bytes_to_string(buf, len).map(Some),
            Err(SeamError::Xenstore(2)) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn xs_write(&self, tx: u32, path: &str, value: &str) -> Result<(), SeamError> {
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.xs_write)(
                self.ctx(),
                tx,
                path.as_ptr(),
                path.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, SeamError> {
        let mut buf = alloc::vec![0u8; XS_MESSAGE_MAX];
        let mut len = 0usize;
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.xs_directory)(
                self.ctx(),
                path.as_ptr(),
                path.len(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            )
        })?;
        let s = bytes_to_string(buf, len)?;
        Ok(s.split('\0')
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect())
    }
    fn xs_transaction_start(&self) -> Result<u32, SeamError> {
        let mut t = 0u32;
        // SAFETY: as above.
        decode_error(unsafe { (self.table.xs_transaction_start)(self.ctx(), &mut t) })?;
        Ok(t)
    }
    fn xs_transaction_end(&self, tx: u32, commit: bool) -> Result<(), SeamError> {
        // SAFETY: as above.
        decode_error(unsafe { (self.table.xs_transaction_end)(self.ctx(), tx, commit as u8) })
    }
    fn watch(&self, path: &str, cb: WatchCallback) -> Result<WatchId, SeamError> {
        let mut id = 0u64;
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.watch)(
                self.ctx(),
                path.as_ptr(),
                path.len(),
                cb.func,
                cb.ctx,
                &mut id,
            )
        })?;
        Ok(WatchId(id))
    }
    fn unwatch(&self, id: WatchId) {
        // SAFETY: as above.
        unsafe { (self.table.unwatch)(self.ctx(), id.0) }
    }
    fn frontend_path(&self) -> &str {
        &self.frontend
    }
    fn backend_path(&self) -> &str {
        &self.backend
    }
    fn backend_domid(&self) -> DomId {
        self.domid
    }
}
