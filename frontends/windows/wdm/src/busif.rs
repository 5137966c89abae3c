//! The bus interface on the wire: the `#[repr(C)]` table xenbus' child PDOs hand out
//! in `IRP_MN_QUERY_INTERFACE` ([`BusInterfaceV1`]: Windows' `INTERFACE` header, then
//! `extern "C"` functions), its provider side ([`answer_query`]: a child's
//! [`BusInterface`] object behind a reference-counted context) and its consumer side
//! ([`query`] -> [`BusHandle`], which implements [`BusInterface`] by calling the
//! table). The contract (IRQL, lifetimes, isolation) is `sluice_xenbus_core::iface`'s.
//! Strings cross as (pointer, length) into buffers of the caller's; errors as
//! `iface::encode_error` codes.

pub use crate::bushandle::{query, BusHandle};
use crate::{sys, NtStatus, STATUS_NOT_SUPPORTED, STATUS_SUCCESS};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xs_wire::XS_MESSAGE_MAX;
use sluice_front_seams::SeamError;
use sluice_xenbus_core::iface::{
    encode_error, BusInterface, EventCallback, WatchCallback, INTERFACE_GUID, INTERFACE_VERSION,
};
use sluice_xenbus_core::watches::WatchId;

/// `E2BIG` as an errno code: the reply did not fit the caller's buffer (never with
/// [`XS_MESSAGE_MAX`]-byte buffers).
const E2BIG: i32 = 0x1_0000 | 7;

/// A child's interface object, as the provider keeps it.
pub type Child = Arc<dyn BusInterface + Send + Sync>;

pub(crate) type Ctx = *mut c_void;

type WatchFn =
    unsafe extern "C" fn(Ctx, *const u8, usize, extern "C" fn(usize, u64), usize, *mut u64) -> i32;
type InfoFn = unsafe extern "C" fn(
    Ctx,
    *mut u8,
    usize,
    *mut usize,
    *mut u8,
    usize,
    *mut usize,
    *mut u16,
) -> i32;

/// Version 1 of the table (`Size` = `size_of::<BusInterfaceV1>()`).
#[repr(C)]
pub struct BusInterfaceV1 {
    /// Size, Version, Context, InterfaceReference, InterfaceDereference.
    pub header: sys::INTERFACE,
    pub(crate) grant_access: Option<unsafe extern "C" fn(Ctx, u16, u64, u8, *mut u32) -> i32>,
    pub(crate) end_access: Option<unsafe extern "C" fn(Ctx, u32) -> i32>,
    pub(crate) evtchn_alloc_unbound: Option<unsafe extern "C" fn(Ctx, u16, *mut u32) -> i32>,
    pub(crate) evtchn_bind:
        Option<unsafe extern "C" fn(Ctx, u32, extern "C" fn(usize, u32), usize) -> i32>,
    pub(crate) evtchn_notify: Option<unsafe extern "C" fn(Ctx, u32)>,
    pub(crate) evtchn_close: Option<unsafe extern "C" fn(Ctx, u32)>,
    pub(crate) xs_read:
        Option<unsafe extern "C" fn(Ctx, u32, *const u8, usize, *mut u8, usize, *mut usize) -> i32>,
    pub(crate) xs_write:
        Option<unsafe extern "C" fn(Ctx, u32, *const u8, usize, *const u8, usize) -> i32>,
    pub(crate) xs_directory:
        Option<unsafe extern "C" fn(Ctx, *const u8, usize, *mut u8, usize, *mut usize) -> i32>,
    pub(crate) xs_transaction_start: Option<unsafe extern "C" fn(Ctx, *mut u32) -> i32>,
    pub(crate) xs_transaction_end: Option<unsafe extern "C" fn(Ctx, u32, u8) -> i32>,
    pub(crate) watch: Option<WatchFn>,
    pub(crate) unwatch: Option<unsafe extern "C" fn(Ctx, u64)>,
    pub(crate) info: Option<InfoFn>,
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
        grant_access: Some(p_grant),
        end_access: Some(p_end),
        evtchn_alloc_unbound: Some(p_alloc),
        evtchn_bind: Some(p_bind),
        evtchn_notify: Some(p_notify),
        evtchn_close: Some(p_close),
        xs_read: Some(p_read),
        xs_write: Some(p_write),
        xs_directory: Some(p_directory),
        xs_transaction_start: Some(p_tx_start),
        xs_transaction_end: Some(p_tx_end),
        watch: Some(p_watch),
        unwatch: Some(p_unwatch),
        info: Some(p_info),
    };
    // SAFETY: the caller's buffer holds `Size` >= size_of::<BusInterfaceV1>() bytes
    // (checked above), as the QUERY_INTERFACE protocol promises.
    unsafe { core::ptr::write_unaligned(params.Interface as *mut BusInterfaceV1, table) };
    Some(STATUS_SUCCESS)
}
