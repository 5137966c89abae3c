//! [`Platform`] over the kernel's Xen APIs: the unsafe layer of sluice-blkfront.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr::NonNull;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{GrantInUse, Platform, PlatformError};
use sluice_kernel::bindings as k;

const PAGE: usize = 4096;
const ENOENT: c_int = 2;

/// The kernel side of one device's frontend. Pages are kernel virtual addresses.
pub struct KernelPlatform {
    pub dev: *mut k::xenbus_device,
    /// Passed to the event-channel work items: the `Device`.
    pub ctx: *mut c_void,
    channels: Vec<(EvtchnPort, *mut k::sbf_evtchn)>,
    /// Unbound channels whose work items are freed at removal (outside the mutex).
    pub closed: Vec<*mut k::sbf_evtchn>,
}

impl KernelPlatform {
    pub fn new(dev: *mut k::xenbus_device, ctx: *mut c_void) -> Self {
        KernelPlatform {
            dev,
            ctx,
            channels: Vec::new(),
            closed: Vec::new(),
        }
    }
}

fn order(count: usize) -> c_uint {
    count.next_power_of_two().trailing_zeros()
}

/// A NUL-terminated copy of `s`.
fn c_string(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl Platform for KernelPlatform {
    type Page = usize;

    fn alloc_pages(&mut self, count: usize) -> Result<usize, PlatformError> {
        // SAFETY: plain page allocation; 0 means failure.
        let addr = unsafe { k::sbf_alloc_pages(order(count)) };
        if addr == 0 {
            Err(PlatformError::NoResources)
        } else {
            Ok(addr as usize)
        }
    }

    fn free_pages(&mut self, first: usize, count: usize) {
        // SAFETY: `first` came from `alloc_pages(count)` (the core frees what it
        // allocated, once, after ending its grants).
        unsafe { k::sbf_free_pages(first as _, order(count)) }
    }

    fn nth_page(&self, first: usize, index: usize) -> usize {
        first + index * PAGE
    }

    fn mem(&self, first: usize, count: usize) -> SharedMem<'static> {
        // SAFETY: `first` is a live allocation of at least `count` pages from
        // `alloc_pages`; the core stops using the handle before `free_pages`. The
        // backend writes it concurrently, which `SharedMem` is made for.
        unsafe { SharedMem::new(NonNull::new(first as *mut u8).unwrap(), count * PAGE) }
    }

    fn copy(&mut self, dst: usize, dst_offset: usize, src: usize, src_offset: usize, len: usize) {
        // One side is a bounce page (frontend-owned, granted: accessed as SharedMem),
        // the other a block-layer page owned by the request for its duration. The core
        // copies bounce -> caller for reads and caller -> bounce for writes; which is
        // which is told apart by the bounce pages being page-aligned allocations we
        // made, so treat both through SharedMem (atomic, race-free accesses).
        let mut buf = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            let s = self.mem(src, 1);
            let d = self.mem(dst, 1);
            if s.read_bytes(src_offset + done, &mut buf[..n]).is_err()
                || d.write_bytes(dst_offset + done, &buf[..n]).is_err()
            {
                return;
            }
            done += n;
        }
    }

    fn grant(
        &mut self,
        domid: DomId,
        page: usize,
        readonly: bool,
    ) -> Result<GrantRef, PlatformError> {
        // SAFETY: `page` is a kernel virtual address of a page we own.
        let gfn = unsafe { k::sbf_virt_to_gfn(page as _) };
        // SAFETY: plain call; returns a grant reference or a negative errno.
        let r = unsafe { k::gnttab_grant_foreign_access(domid, gfn, readonly as c_int) };
        if r < 0 {
            Err(PlatformError::NoResources)
        } else {
            Ok(r as GrantRef)
        }
    }

    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantInUse> {
        // SAFETY: `gref` is a grant this frontend made and has not ended. On success
        // it also gives the reference back; a grant still mapped stays (no warning: a
        // backend that keeps mapping is handled by quarantining the page).
        if unsafe { k::gnttab_try_end_foreign_access(gref) } == 1 {
            Ok(())
        } else {
            Err(GrantInUse(gref))
        }
    }

    fn evtchn_alloc(&mut self, _domid: DomId, queue: usize) -> Result<EvtchnPort, PlatformError> {
        let mut port: c_uint = 0;
        let mut err: c_int = 0;
        // SAFETY: `dev` is the live xenbus device; `ctx` outlives the channel (freed
        // only after `sbf_evtchn_free` of every channel at removal).
        let ch =
            unsafe { k::sbf_evtchn_bind(self.dev, self.ctx, queue as c_uint, &mut port, &mut err) };
        if ch.is_null() {
            return Err(PlatformError::Errno(err));
        }
        self.channels.push((port, ch));
        Ok(port)
    }

    fn evtchn_notify(&mut self, port: EvtchnPort) {
        // SAFETY: a port this device bound.
        unsafe { k::sbf_evtchn_notify(port) }
    }

    fn evtchn_close(&mut self, port: EvtchnPort) {
        if let Some(i) = self.channels.iter().position(|(p, _)| *p == port) {
            let (_, ch) = self.channels.swap_remove(i);
            // SAFETY: `ch` is bound and not yet unbound.
            unsafe { k::sbf_evtchn_unbind(ch) };
            self.closed.push(ch);
        }
    }

    fn xs_read(&mut self, path: &str) -> Result<Option<String>, PlatformError> {
        let p = c_string(path);
        let mut err: c_int = 0;
        // SAFETY: `p` is NUL-terminated and lives across the call.
        let s = unsafe { k::sbf_xs_read(p.as_ptr().cast(), &mut err) };
        if s.is_null() {
            return if err == -ENOENT {
                Ok(None)
            } else {
                Err(PlatformError::Xenstore(err))
            };
        }
        // SAFETY: xenbus_read returns a NUL-terminated kmalloc'd string.
        let bytes = unsafe { core::ffi::CStr::from_ptr(s as *const c_char) }.to_bytes();
        let value = String::from_utf8_lossy(bytes).into_owned();
        // SAFETY: the string is ours to free.
        unsafe { k::kfree(s.cast()) };
        Ok(Some(value))
    }

    fn switch_state(&mut self, _nodename: &str, state: XenbusState) -> Result<(), PlatformError> {
        // SAFETY: `dev` is the xenbus device this platform was made for, alive while its
        // driver is bound (the platform lives inside its drvdata); called in process
        // context (xenwatch, probe, work items), where xenbus_switch_state may sleep.
        let err = unsafe { k::xenbus_switch_state(self.dev, state as u32) };
        if err == 0 {
            Ok(())
        } else {
            Err(PlatformError::Xenstore(err))
        }
    }

    fn xs_write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), PlatformError> {
        let keys: Vec<Vec<u8>> = writes.iter().map(|(k, _)| c_string(k)).collect();
        let vals: Vec<Vec<u8>> = writes.iter().map(|(_, v)| c_string(v)).collect();
        let kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
        let vp: Vec<*const c_char> = vals.iter().map(|v| v.as_ptr().cast()).collect();
        // SAFETY: arrays of `n` NUL-terminated strings, alive across the call.
        let err = unsafe { k::sbf_xs_write_all(kp.as_ptr(), vp.as_ptr(), kp.len() as c_uint) };
        if err == 0 {
            Ok(())
        } else {
            Err(PlatformError::Xenstore(err))
        }
    }
}
