//! The consumer's end of the bus interface (`busif`): `query` sends
//! `IRP_MN_QUERY_INTERFACE` to the child PDO's stack and checks the table it gets,
//! `BusHandle` implements `BusInterface` by calling it.

use crate::busif::{BusInterfaceV1, Ctx};
use crate::{sys, NtStatus, STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED, STATUS_SUCCESS};
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_void;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xs_wire::XS_MESSAGE_MAX;
use sluice_front_seams::{GrantInUse, SeamError};
use sluice_xenbus_core::iface::{
    decode_error, BusInterface, EventCallback, WatchCallback, INTERFACE_GUID, INTERFACE_VERSION,
};
use sluice_xenbus_core::watches::WatchId;

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
            || !table.complete()
        {
            // Give back the reference the answer took, if it says how.
            if let Some(d) = table.header.InterfaceDereference {
                d(table.header.Context);
            }
            return Err(STATUS_NOT_SUPPORTED);
        }
        if table.header.InterfaceDereference.is_none() {
            return Err(STATUS_NOT_SUPPORTED);
        }
        BusHandle::new(table)
    }
}

/// Every function of a table is checked present at [`query`], so calls `expect` it.
const CHECKED: &str = "bus interface function checked at query";

impl BusInterfaceV1 {
    /// Every function is there (a provider that answered without filling the table
    /// is refused).
    fn complete(&self) -> bool {
        self.grant_access.is_some()
            && self.end_access.is_some()
            && self.evtchn_alloc_unbound.is_some()
            && self.evtchn_bind.is_some()
            && self.evtchn_notify.is_some()
            && self.evtchn_close.is_some()
            && self.xs_read.is_some()
            && self.xs_write.is_some()
            && self.xs_directory.is_some()
            && self.xs_transaction_start.is_some()
            && self.xs_transaction_end.is_some()
            && self.watch.is_some()
            && self.unwatch.is_some()
            && self.info.is_some()
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
            (h.table.info.expect(CHECKED))(
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
            (self.table.grant_access.expect(CHECKED))(self.ctx(), domid.0, frame, ro as u8, &mut r)
        })?;
        Ok(GrantRef(r))
    }
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantInUse> {
        // SAFETY: as above.
        decode_error(unsafe { (self.table.end_access.expect(CHECKED))(self.ctx(), gref.0) })
            .map_err(|_| GrantInUse(gref))
    }
    fn evtchn_alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError> {
        let mut p = 0u32;
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.evtchn_alloc_unbound.expect(CHECKED))(self.ctx(), remote.0, &mut p)
        })?;
        Ok(EvtchnPort(p))
    }
    fn evtchn_bind(&self, port: EvtchnPort, cb: EventCallback) -> Result<(), SeamError> {
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.evtchn_bind.expect(CHECKED))(self.ctx(), port.0, cb.func, cb.ctx)
        })
    }
    fn evtchn_notify(&self, port: EvtchnPort) {
        // SAFETY: as above.
        unsafe { (self.table.evtchn_notify.expect(CHECKED))(self.ctx(), port.0) }
    }
    fn evtchn_close(&self, port: EvtchnPort) {
        // SAFETY: as above.
        unsafe { (self.table.evtchn_close.expect(CHECKED))(self.ctx(), port.0) }
    }
    fn xs_read(&self, tx: u32, path: &str) -> Result<Option<String>, SeamError> {
        let mut buf = alloc::vec![0u8; XS_MESSAGE_MAX];
        let mut len = 0usize;
        // SAFETY: as above, with our path and buffer.
        let r = unsafe {
            (self.table.xs_read.expect(CHECKED))(
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
            (self.table.xs_write.expect(CHECKED))(
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
            (self.table.xs_directory.expect(CHECKED))(
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
        decode_error(unsafe {
            (self.table.xs_transaction_start.expect(CHECKED))(self.ctx(), &mut t)
        })?;
        Ok(t)
    }
    fn xs_transaction_end(&self, tx: u32, commit: bool) -> Result<(), SeamError> {
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.xs_transaction_end.expect(CHECKED))(self.ctx(), tx, commit as u8)
        })
    }
    fn watch(&self, path: &str, cb: WatchCallback) -> Result<WatchId, SeamError> {
        let mut id = 0u64;
        // SAFETY: as above.
        decode_error(unsafe {
            (self.table.watch.expect(CHECKED))(
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
        unsafe { (self.table.unwatch.expect(CHECKED))(self.ctx(), id.0) }
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
