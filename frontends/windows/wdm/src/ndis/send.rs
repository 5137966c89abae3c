//! MiniportSendNetBufferLists: each NET_BUFFER copied out of its MDL chain, handed
//! with its NBL's checksum and LSO info to [`Miniport::send`], the NBLs completed at
//! once (the LSO completion info written back).

use super::{block, MAX_SEND_FRAME};
use crate::ndis_sys::*;
use crate::sys;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Copies a NET_BUFFER's data out of its MDL chain; `None` if too long or unmappable.
///
/// # Safety
/// `nb` is a NET_BUFFER NDIS handed to MiniportSendNetBufferLists, not yet completed.
unsafe fn copy_net_buffer(nb: *const NetBuffer) -> Option<Vec<u8>> {
    // SAFETY: see the function's contract; MDLs of a NET_BUFFER being sent are locked.
    unsafe {
        let len = (*nb).data_length as usize;
        if len > MAX_SEND_FRAME {
            return None;
        }
        let mut out = vec![0u8; len];
        let mut mdl = (*nb).current_mdl;
        let mut off = (*nb).current_mdl_offset as usize;
        let mut got = 0;
        while got < len && !mdl.is_null() {
            let count = (*mdl).ByteCount as usize;
            let va =
                if (*mdl).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
                    (*mdl).MappedSystemVa
                } else {
                    // KernelMode, MmCached, no address, no bug check, NormalPagePriority
                    // | MdlMappingNoExecute.
                    sys::MmMapLockedPagesSpecifyCache(
                        mdl,
                        0,
                        1,
                        core::ptr::null_mut(),
                        0,
                        16 | 0x4000_0000,
                    )
                };
            if va.is_null() {
                return None;
            }
            if off < count {
                let n = (count - off).min(len - got);
                core::ptr::copy_nonoverlapping(
                    va.cast::<u8>().add(off),
                    out.as_mut_ptr().add(got),
                    n,
                );
                got += n;
            }
            off = off.saturating_sub(count);
            mdl = (*mdl).Next;
        }
        (got == len).then_some(out)
    }
}

pub(super) unsafe extern "C" fn send_nbls(
    ctx: Handle,
    nbls: *mut NetBufferList,
    _port: u32,
    flags: u32,
) {
    let b = block(ctx as usize);
    b.sending.fetch_add(1, Ordering::AcqRel);
    let paused = b.paused.load(Ordering::Acquire);
    // SAFETY: the chain NDIS hands us, ours until completed below; each NBL's
    // NET_BUFFERs and their MDLs are valid meanwhile.
    unsafe {
        let mut nbl = nbls;
        while !nbl.is_null() {
            let mut st = STATUS_SUCCESS;
            let mut nb = (*nbl).first_net_buffer;
            // Read once: NDIS' requests for this NBL's offloads.
            let (ck, lso) = ((*nbl).info_checksum as u32, (*nbl).info_lso as u64);
            let mut lso_done = None;
            while !nb.is_null() && st == STATUS_SUCCESS {
                st = if paused {
                    STATUS_PAUSED
                } else {
                    match copy_net_buffer(nb) {
                        None => STATUS_INVALID_LENGTH,
                        Some(mut frame) => {
                            let r = b
                                .state
                                .lock()
                                .as_deref_mut()
                                .map(|m| m.send(&mut frame, ck, lso));
                            let (s, done) = r.unwrap_or((STATUS_PAUSED, None));
                            lso_done = done;
                            s
                        }
                    }
                };
                nb = (*nb).next;
            }
            (*nbl).status = st;
            if lso != 0 {
                // LSO completion info (the union is written back for the protocol).
                (*nbl).info_lso = lso_done.unwrap_or(0) as usize;
            }
            nbl = (*nbl).next;
        }
        let cf = if flags & SEND_FLAGS_DISPATCH_LEVEL != 0 {
            SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        NdisMSendNetBufferListsComplete(b.handle, nbls, cf);
    }
    b.sending.fetch_sub(1, Ordering::AcqRel);
}
