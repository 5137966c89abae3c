//! MiniportOidRequest / MiniportCancelOidRequest: answered at once while the adapter's
//! state is home; pended (`NDIS_STATUS_PENDING`, `sluice_xennet_core::pending`) while
//! it is out for PASSIVE work (a backend negotiation), then answered and completed with
//! `NdisMOidRequestComplete` when [`super::put_back`] returns it. No request thread
//! waits, whatever its IRQL.

use super::{block, indicate_offload, AdapterRef, Block, Miniport, OidAnswer, OidKind};
use crate::ndis_sys::*;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use sluice_xennet_core::pending::Arrival;

/// Answers request `req` from the state `m` (under the state's lock).
///
/// # Safety
/// `req` is an OID request NDIS handed to MiniportOidRequest, not yet completed; its
/// information buffer is InformationBufferLength bytes of the caller's.
unsafe fn answer(m: &mut dyn Miniport, req: *mut OidRequest) -> (Status, Option<[u8; 112]>) {
    // SAFETY: see the function's contract.
    unsafe {
        let r = &mut *req;
        let kind = match r.request_type {
            REQUEST_QUERY_INFORMATION | REQUEST_QUERY_STATISTICS => OidKind::Query,
            REQUEST_SET_INFORMATION => OidKind::Set,
            _ => return (NOT_SUPPORTED, None),
        };
        let len = r.information_buffer_length as usize;
        let mut empty = [0u8; 0];
        let buf: &mut [u8] = if r.information_buffer.is_null() || len == 0 {
            &mut empty
        } else {
            core::slice::from_raw_parts_mut(r.information_buffer.cast(), len)
        };
        let a: OidAnswer = m.oid(kind, r.oid, buf);
        r.bytes_done = a.done.min(len) as u32;
        r.bytes_needed = a.needed as u32;
        (a.status, a.offload_changed)
    }
}

const NOT_SUPPORTED: Status = 0xC000_00BB_u32 as i32;

pub(super) unsafe extern "C" fn oid_request(ctx: Handle, req: *mut OidRequest) -> Status {
    let b = block(ctx as usize);
    let (status, changed) = {
        let mut g = b.state.lock();
        let out = g.is_none() && b.taken.load(Ordering::Acquire);
        match b.oids.lock().arrive(req as usize, out) {
            Arrival::Pended => return STATUS_PENDING,
            Arrival::Full(_) => return STATUS_RESOURCES,
            Arrival::Now(_) => match g.as_deref_mut() {
                // SAFETY: NDIS' request, answered before we return.
                Some(m) => unsafe { answer(m, req) },
                None => (STATUS_FAILURE, None),
            },
        }
    };
    if let Some(o) = changed {
        indicate_offload(AdapterRef(ctx as usize), &o);
    }
    status
}

/// Answers every pended request from `m` (the state just put back, its lock held):
/// the requests and statuses to complete once the lock is released.
pub(super) fn answer_pended(
    b: &Block,
    m: &mut dyn Miniport,
) -> Vec<(usize, Status, Option<[u8; 112]>)> {
    let mut done = Vec::new();
    while let Some(req) = b.oids.lock().ready() {
        // SAFETY: a request pended by `oid_request`, not completed (each leaves the
        // gate once: here or by a cancel).
        let (s, o) = unsafe { answer(m, req as *mut OidRequest) };
        done.push((req, s, o));
    }
    done
}

/// Completes what [`answer_pended`] answered (no lock held).
pub(super) fn complete(b: &Block, done: Vec<(usize, Status, Option<[u8; 112]>)>) {
    for (req, s, o) in done {
        if let Some(o) = o {
            indicate_offload(AdapterRef(b as *const Block as usize), &o);
        }
        // SAFETY: a pended request, completed once, with NDIS' adapter handle.
        unsafe { NdisMOidRequestComplete(b.handle, req as *mut OidRequest, s) };
    }
}

pub(super) unsafe extern "C" fn cancel_oid_request(ctx: Handle, id: *mut core::ffi::c_void) {
    let b = block(ctx as usize);
    let gone = {
        let _g = b.state.lock();
        b.oids.lock().cancel(|&r| {
            // SAFETY: a pended request, not completed: readable.
            unsafe { (*(r as *const OidRequest)).request_id == id }
        })
    };
    if let Some(req) = gone {
        // SAFETY: taken out of the gate, so completed only here.
        unsafe {
            NdisMOidRequestComplete(b.handle, req as *mut OidRequest, STATUS_REQUEST_ABORTED)
        };
    }
}
