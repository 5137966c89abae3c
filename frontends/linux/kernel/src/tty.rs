//! tty lines for a frontend module (`kbuild/common/sluice_tty.c`): the module's tty
//! driver ([`register`]) and one [`TtyLine`] per device. A tty's write only queues bytes
//! and kicks the line's work item, which reaches the driver's `XenbusDriver::event` with
//! the line's queue number (in process context, like an event channel's work item); the
//! driver takes the bytes with [`TtyLine::take`].

use crate::bindings as k;
use crate::xen::XenbusDevice;
use core::ffi::{c_int, c_uint, CStr};
use core::ptr::NonNull;

/// Registers the module's tty driver: `lines` lines `/dev/<name><index>` (module init).
pub fn register(driver_name: &'static CStr, name: &'static CStr, lines: u32) -> Result<(), c_int> {
    // SAFETY: static C strings the driver keeps pointers to.
    match unsafe { k::sluice_tty_register(driver_name.as_ptr(), name.as_ptr(), lines) } {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Unregisters the driver (module exit, after every line was freed).
pub fn unregister() {
    // SAFETY: after a successful `register`; lines are gone (the xenbus driver was
    // unregistered first, which removed every device).
    unsafe { k::sluice_tty_unregister() }
}

/// One tty line, removed (and its open ttys hung up) by [`TtyLine::free`].
#[derive(Debug)]
pub struct TtyLine(NonNull<k::sluice_tty>);

// SAFETY: a kernel object whose functions lock internally; used from process context.
unsafe impl Send for TtyLine {}

impl TtyLine {
    /// Line `index` of the driver for xenbus device `dev`: writes on it call the
    /// driver's `event(queue)`.
    pub fn new(dev: XenbusDevice, queue: u32, index: u32) -> Result<TtyLine, c_int> {
        let mut err: c_int = 0;
        // SAFETY: the context is the device's slot, never freed (`xenbus`); the work
        // item finds it dead after remove.
        let t = unsafe { k::sluice_tty_new(dev.drvdata(), queue as c_uint, index, &mut err) };
        NonNull::new(t).map(TtyLine).ok_or(err)
    }

    /// Takes queued output bytes into `buf`; returns how many.
    pub fn take(&self, buf: &mut [u8]) -> usize {
        let max = buf.len().min(u32::MAX as usize) as c_uint;
        // SAFETY: a live line; `buf` is writable for `max` bytes.
        unsafe { k::sluice_tty_take(self.0.as_ptr(), buf.as_mut_ptr(), max) as usize }
    }

    /// Output bytes queued.
    pub fn pending(&self) -> usize {
        // SAFETY: a live line.
        unsafe { k::sluice_tty_pending(self.0.as_ptr()) as usize }
    }

    /// Room for up to `want` input bytes.
    pub fn room(&self, want: usize) -> usize {
        // SAFETY: a live line.
        unsafe {
            k::sluice_tty_room(self.0.as_ptr(), want.min(u32::MAX as usize) as c_uint) as usize
        }
    }

    /// Delivers input; returns how many bytes the tty took.
    pub fn push(&self, data: &[u8]) -> usize {
        let len = data.len().min(u32::MAX as usize) as c_uint;
        // SAFETY: a live line; `data` is readable for `len` bytes.
        unsafe { k::sluice_tty_push(self.0.as_ptr(), data.as_ptr(), len) as usize }
    }

    /// Hangs up the line's open ttys.
    pub fn hangup(&self) {
        // SAFETY: a live line.
        unsafe { k::sluice_tty_hangup(self.0.as_ptr()) }
    }

    /// Removes the line and waits for its work item: call without the device's
    /// mutex held (the work item takes it).
    pub fn free(self) {
        // SAFETY: a live line, freed once (`self` is consumed).
        unsafe { k::sluice_tty_free(self.0.as_ptr()) }
    }
}
