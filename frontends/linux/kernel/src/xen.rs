//! The Xen frontend seams (`sluice-front-seams`) over Linux's Xen APIs, for every
//! Sluice frontend module: pages, grants, event channels, xenstore.

use crate::bindings as k;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::ptr::NonNull;
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_front_seams::{
    check_page_index, copy_shared, EventChannels, GrantInUse, Grants, Memory, Pages, SeamError,
    XenStore,
};

const ENOENT: c_int = 2;

/// A NUL-terminated copy of `s`.
fn c_string(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// # Safety
/// `p` is null or a NUL-terminated string alive across the call.
unsafe fn lossy(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's contract.
    String::from_utf8_lossy(unsafe { CStr::from_ptr(p) }.to_bytes()).into_owned()
}

/// A xenbus device as its driver's callbacks get it.
#[derive(Clone, Copy, Debug)]
pub struct XenbusDevice(NonNull<k::xenbus_device>);

// SAFETY: a handle to a kernel object used from process context on any thread.
unsafe impl Send for XenbusDevice {}
// SAFETY: as above; its methods only read fields or call thread-safe kernel APIs.
unsafe impl Sync for XenbusDevice {}

impl XenbusDevice {
    /// # Safety
    /// `raw` is a live xenbus device, and stays so while the returned handle (or a copy)
    /// is used: the driver is bound to it (between probe and the end of remove).
    pub unsafe fn from_raw(raw: *mut k::xenbus_device) -> Option<Self> {
        NonNull::new(raw).map(XenbusDevice)
    }

    /// The raw pointer, for the module's own C glue.
    pub fn raw(self) -> *mut k::xenbus_device {
        self.0.as_ptr()
    }

    /// `nodename`: our xenstore directory (`device/vbd/51712`).
    pub fn nodename(self) -> String {
        // SAFETY: a live device (`from_raw`); its strings live as long as it.
        unsafe { lossy(k::sluice_xen_nodename(self.raw())) }
    }

    /// `otherend`: the backend's directory.
    pub fn otherend(self) -> String {
        // SAFETY: as in `nodename`.
        unsafe { lossy(k::sluice_xen_otherend(self.raw())) }
    }

    /// `otherend_id`: the backend's domain.
    pub fn otherend_id(self) -> DomId {
        // SAFETY: a live device.
        DomId(unsafe { k::sluice_xen_otherend_id(self.raw()) } as u16)
    }

    /// The driver's data pointer: the device's `xenbus::Slot`, owned by the framework.
    pub(crate) fn drvdata(self) -> *mut c_void {
        // SAFETY: a live device.
        unsafe { k::sluice_xen_get_drvdata(self.raw()) }
    }

    /// Sets the driver's data pointer (what it points to is the module's business).
    // The kernel only stores the pointer; nothing here dereferences it.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub(crate) fn set_drvdata(self, data: *mut c_void) {
        // SAFETY: a live device.
        unsafe { k::sluice_xen_set_drvdata(self.raw(), data) }
    }
}

/// `order` for `count` pages (`__get_free_pages`).
fn order(count: usize) -> c_uint {
    count.next_power_of_two().trailing_zeros()
}

/// Zeroed contiguous pages from `__get_free_pages`, freed on drop.
#[derive(Debug)]
pub struct KernelPages {
    addr: NonNull<u8>,
    count: usize,
}

// SAFETY: plain kernel memory, owned by the handle, usable from any thread.
unsafe impl Send for KernelPages {}

impl Pages for KernelPages {
    fn count(&self) -> usize {
        self.count
    }
    fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `addr` is a live allocation of `count` pages owned by `self` and freed
        // only in `drop`, which cannot run while this borrow lives; Rust code reaches it
        // only through `SharedMem` (the backend writes it concurrently, as expected).
        unsafe { SharedMem::new(self.addr, self.count * XEN_PAGE_SIZE) }
    }
}

impl Drop for KernelPages {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc_pages` with this order, freed once, here.
        unsafe { k::sluice_xen_free_pages(self.addr.as_ptr() as _, order(self.count)) }
    }
}

/// A page the frontend does not own (a block-layer data page), by kernel virtual
/// address: only copied to and from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPage(usize);

impl DataPage {
    /// # Safety
    /// `addr` is the page-aligned kernel virtual address of a 4 KiB page that stays
    /// mapped and is not accessed through Rust references while a frontend core may
    /// copy to or from it (while the I/O it belongs to is outstanding).
    pub unsafe fn new(addr: usize) -> Self {
        DataPage(addr)
    }

    /// The address.
    pub fn addr(self) -> usize {
        self.0
    }

    fn mem(self) -> Result<SharedMem<'static>, SeamError> {
        let p = NonNull::new(self.0 as *mut u8).ok_or(SeamError::Errno(-22))?;
        // SAFETY: `DataPage::new`'s contract, for the duration of one copy.
        Ok(unsafe { SharedMem::new(p, XEN_PAGE_SIZE) })
    }
}

/// Notifies the backend on `port` (`notify_remote_via_evtchn`), from any context: for a
/// data path that runs apart from its [`XenPlatform`] (the port one of the device's own,
/// bound channels; any other port only gets an error from Xen).
pub fn notify_port(port: EvtchnPort) {
    // SAFETY: a hypercall that takes the port by value; Xen checks it.
    unsafe { k::sluice_evtchn_notify(port.0) }
}

/// An unbound event channel whose work item may still run: free it
/// ([`ClosedChannel::free`]) without the device's mutex held.
#[derive(Debug)]
pub struct ClosedChannel(NonNull<k::sluice_evtchn>);

// SAFETY: a kernel object freed from process context on any thread.
unsafe impl Send for ClosedChannel {}

impl ClosedChannel {
    /// Waits for the channel's work item and frees it. Must not be called with a lock
    /// the work item takes (it would wait for itself).
    pub fn free(self) {
        // SAFETY: an unbound channel from `sluice_evtchn_bind`, freed once (`self` is
        // consumed).
        unsafe { k::sluice_evtchn_free(self.0.as_ptr()) }
    }
}

/// The seams for one xenbus device of a frontend module. Event-channel interrupts
/// queue a work item that calls `sluice_xen_event(slot, queue)` ([`crate::xenbus`]),
/// which reaches the driver's `event` while the device lives.
#[derive(Debug)]
pub struct XenPlatform {
    dev: XenbusDevice,
    name: &'static CStr,
    channels: Vec<(EvtchnPort, NonNull<k::sluice_evtchn>)>,
    closed: Vec<ClosedChannel>,
}

// SAFETY: its pointers are kernel objects (device, channels) used from process context
// on any thread; the driver serialises its use (the device mutex).
unsafe impl Send for XenPlatform {}

impl XenPlatform {
    /// The seams for `dev`; interrupts are named `name`.
    pub fn new(dev: XenbusDevice, name: &'static CStr) -> Self {
        XenPlatform {
            dev,
            name,
            channels: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// The device.
    pub fn device(&self) -> XenbusDevice {
        self.dev
    }

    /// Queues the work item of bound channel `port` again, so a driver that stops after a
    /// batch is called back without a new interrupt. Unknown ports are ignored.
    pub fn kick(&self, port: EvtchnPort) {
        if let Some((_, ch)) = self.channels.iter().find(|(p, _)| *p == port) {
            // SAFETY: a channel this device bound and has not unbound.
            unsafe { k::sluice_evtchn_kick(ch.as_ptr()) }
        }
    }

    /// The channels unbound so far, to free outside the device's mutex.
    pub fn take_closed(&mut self) -> Vec<ClosedChannel> {
        core::mem::take(&mut self.closed)
    }
}

impl Memory for XenPlatform {
    type Pages = KernelPages;
    type DataPage = DataPage;

    fn alloc_pages(&mut self, count: usize) -> Result<KernelPages, SeamError> {
        if count == 0 || count > 1 << 10 {
            return Err(SeamError::NoResources);
        }
        // SAFETY: plain page allocation; 0 means failure.
        let addr = unsafe { k::sluice_xen_alloc_pages(order(count)) };
        match NonNull::new(addr as *mut u8) {
            Some(addr) => Ok(KernelPages { addr, count }),
            None => Err(SeamError::NoResources),
        }
    }

    fn copy_in(
        &mut self,
        dst: &KernelPages,
        dst_offset: usize,
        src: DataPage,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        copy_shared(dst.mem(), dst_offset, src.mem()?, src_offset, len)
    }

    fn copy_out(
        &mut self,
        dst: DataPage,
        dst_offset: usize,
        src: &KernelPages,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        copy_shared(dst.mem()?, dst_offset, src.mem(), src_offset, len)
    }
}

impl Grants for XenPlatform {
    fn grant_access(
        &mut self,
        domid: DomId,
        pages: &KernelPages,
        index: usize,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        check_page_index(pages, index)?;
        let page = pages.addr.as_ptr() as usize + index * XEN_PAGE_SIZE;
        // SAFETY: `page` is a kernel virtual address inside an allocation we own.
        let gfn = unsafe { k::sluice_xen_virt_to_gfn(page as _) };
        // SAFETY: plain call; returns a grant reference or a negative errno.
        let r = unsafe { k::gnttab_grant_foreign_access(domid.0, gfn, readonly as c_int) };
        if r < 0 {
            Err(SeamError::NoResources)
        } else {
            Ok(GrantRef(r as u32))
        }
    }

    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantInUse> {
        // SAFETY: ending a reference the kernel checks itself; on success it also
        // gives the reference back; a grant still mapped stays (no warning: a backend
        // that keeps mapping is handled by leaking the page).
        if unsafe { k::gnttab_try_end_foreign_access(gref.0) } == 1 {
            Ok(())
        } else {
            Err(GrantInUse(gref))
        }
    }
}

impl EventChannels for XenPlatform {
    fn bind_unbound_port(&mut self, _domid: DomId, queue: usize) -> Result<EvtchnPort, SeamError> {
        let mut port: c_uint = 0;
        let mut err: c_int = 0;
        // SAFETY: `dev` is the live xenbus device; the context is its slot, never freed
        // (`xenbus`); `name` is a static C string.
        let ch = unsafe {
            k::sluice_evtchn_bind(
                self.dev.raw(),
                self.dev.drvdata(),
                queue as c_uint,
                self.name.as_ptr(),
                &mut port,
                &mut err,
            )
        };
        let Some(ch) = NonNull::new(ch) else {
            return Err(SeamError::Errno(err));
        };
        self.channels.push((EvtchnPort(port), ch));
        Ok(EvtchnPort(port))
    }

    fn notify(&mut self, port: EvtchnPort) {
        if self.channels.iter().any(|(p, _)| *p == port) {
            // SAFETY: a port this device bound and has not unbound.
            unsafe { k::sluice_evtchn_notify(port.0) }
        }
    }

    fn unbind(&mut self, port: EvtchnPort) {
        if let Some(i) = self.channels.iter().position(|(p, _)| *p == port) {
            let (_, ch) = self.channels.swap_remove(i);
            // SAFETY: `ch` is bound and not yet unbound.
            unsafe { k::sluice_evtchn_unbind(ch.as_ptr()) };
            self.closed.push(ClosedChannel(ch));
        }
    }
}

impl XenStore for XenPlatform {
    fn read_opt(&mut self, path: &str) -> Result<Option<String>, SeamError> {
        let p = c_string(path);
        let mut err: c_int = 0;
        // SAFETY: `p` is NUL-terminated and lives across the call.
        let s = unsafe { k::sluice_xs_read(p.as_ptr().cast(), &mut err) };
        if s.is_null() {
            return if err == -ENOENT {
                Ok(None)
            } else {
                Err(SeamError::Xenstore(err))
            };
        }
        // SAFETY: xenbus_read returns a NUL-terminated kmalloc'd string.
        let value = unsafe { lossy(s as *const c_char) };
        // SAFETY: the string is ours to free.
        unsafe { k::kfree(s.cast()) };
        Ok(Some(value))
    }

    fn switch_state(&mut self, _nodename: &str, state: XenbusState) -> Result<(), SeamError> {
        // SAFETY: `dev` is live while its driver is bound (the platform lives inside its
        // drvdata); called in process context (xenwatch, probe, work items), where
        // xenbus_switch_state may sleep.
        let err = unsafe { k::xenbus_switch_state(self.dev.raw(), state as u32) };
        if err == 0 {
            Ok(())
        } else {
            Err(SeamError::Xenstore(err))
        }
    }

    fn write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), SeamError> {
        let keys: Vec<Vec<u8>> = writes.iter().map(|(k, _)| c_string(k)).collect();
        let vals: Vec<Vec<u8>> = writes.iter().map(|(_, v)| c_string(v)).collect();
        let kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
        let vp: Vec<*const c_char> = vals.iter().map(|v| v.as_ptr().cast()).collect();
        // SAFETY: arrays of `n` NUL-terminated strings, alive across the call.
        let err = unsafe { k::sluice_xs_write_all(kp.as_ptr(), vp.as_ptr(), kp.len() as c_uint) };
        if err == 0 {
            Ok(())
        } else {
            Err(SeamError::Xenstore(err))
        }
    }
}

/// CPUs online (`num_online_cpus`).
pub fn num_cpus() -> u32 {
    // SAFETY: plain call.
    unsafe { k::sluice_xen_num_cpus() }
}
