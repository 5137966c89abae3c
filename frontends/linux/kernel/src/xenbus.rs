//! A xenbus frontend driver without `unsafe` in the module: the module implements
//! [`XenbusDriver`] for its per-device data and names it in [`xenbus_driver!`], which
//! generates the entry points its C shim calls (`sluice_xenbus_probe`,
//! `sluice_xenbus_otherend_changed`, `sluice_xenbus_remove`, `sluice_xen_event`,
//! `sluice_xen_irq`).
//!
//! Every callback context the kernel holds (a device's drvdata, an event channel's work
//! item, a disk's queuedata) is the device's [`Slot`], which is never freed. A callback
//! enters the slot (a reference count) before it touches the data; remove marks the slot
//! dead, calls the driver's `remove`, waits until no callback is inside, and only then
//! frees the data. A channel or disk a driver failed to release finds a dead slot and
//! returns: no callback reaches freed data.

use crate::xen::XenbusDevice;
use alloc::boxed::Box;
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use sluice_abi::xenbus::XenbusState;

/// A frontend driver's per-device data and callbacks (process context; may sleep).
pub trait XenbusDriver: Sized + Sync + 'static {
    /// A new device: build its data (callbacks do not reach it until this returns).
    fn probe(dev: XenbusDevice) -> Result<Self, c_int>;
    /// The data is reachable by callbacks now (e.g. announce our xenbus state).
    fn started(&self) {}
    /// The backend's state changed (xenbus `otherend_changed`).
    fn otherend_changed(&self, state: XenbusState);
    /// Unbind or unload: release the device (no callback starts after this begins; the
    /// data is freed once the ones running have returned).
    fn remove(&self);
    /// An event channel bound through this device's `XenPlatform` fired (a work item).
    fn event(&self, queue: u32);
    /// The same, first, in hard interrupt context: return true when handled there (a
    /// NAPI schedule, a block driver's completions under an [`IrqSpinLock`]; nothing
    /// that sleeps, no lock a task holds with interrupts enabled, allocations atomic),
    /// false to get [`event`](Self::event) from the channel's work item.
    ///
    /// [`IrqSpinLock`]: crate::sync::IrqSpinLock
    fn irq(&self, _queue: u32) -> bool {
        false
    }
}

/// The callback context of one device: never freed (a few bytes per probe).
#[derive(Debug)]
pub struct Slot {
    dead: AtomicBool,
    refs: AtomicUsize,
    data: AtomicPtr<()>,
}

/// A callback inside a slot; leaves on drop.
pub struct Entered<'a, D> {
    slot: &'a Slot,
    data: &'a D,
}

impl<D> core::ops::Deref for Entered<'_, D> {
    type Target = D;
    fn deref(&self) -> &D {
        self.data
    }
}

impl<D> Drop for Entered<'_, D> {
    fn drop(&mut self) {
        self.slot.refs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slot {
    /// Enters the slot of a live device with data of type `D`.
    ///
    /// # Safety
    /// `ctx` is null or a slot made by [`new_slot`] for a driver whose data is `D`.
    pub unsafe fn enter<'a, D>(ctx: *const Slot) -> Option<Entered<'a, D>> {
        // SAFETY: slots are never freed (the caller's contract for what `ctx` is).
        let slot: &'a Slot = unsafe { ctx.as_ref()? };
        if slot.dead.load(Ordering::SeqCst) {
            return None;
        }
        slot.refs.fetch_add(1, Ordering::SeqCst);
        let data = slot.data.load(Ordering::SeqCst) as *const D;
        if slot.dead.load(Ordering::SeqCst) || data.is_null() {
            slot.refs.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        // SAFETY: the data is freed only after `dead` is set and `refs` is back to 0;
        // we counted ourselves in before seeing `dead` clear, so it lives until we leave.
        Some(Entered {
            slot,
            data: unsafe { &*data },
        })
    }
}

/// A new slot, leaked.
pub fn new_slot() -> &'static Slot {
    Box::leak(Box::new(Slot {
        dead: AtomicBool::new(false),
        refs: AtomicUsize::new(0),
        data: AtomicPtr::new(core::ptr::null_mut()),
    }))
}

/// For [`xenbus_driver!`]: probe.
///
/// # Safety
/// `raw` is the live xenbus device of a probe callback.
pub unsafe fn probe<D: XenbusDriver>(raw: *mut crate::bindings::xenbus_device) -> c_int {
    // SAFETY: the caller's contract; the device stays bound until remove returns.
    let Some(dev) = (unsafe { XenbusDevice::from_raw(raw) }) else {
        return -22;
    };
    let slot = new_slot();
    dev.set_drvdata((slot as *const Slot).cast_mut().cast());
    match D::probe(dev) {
        Ok(d) => {
            slot.data
                .store(Box::into_raw(Box::new(d)).cast(), Ordering::SeqCst);
            // SAFETY: the slot was made just above for data `D`.
            if let Some(d) = unsafe { Slot::enter::<D>(slot) } {
                d.started();
            }
            0
        }
        Err(e) => {
            slot.dead.store(true, Ordering::SeqCst);
            dev.set_drvdata(core::ptr::null_mut());
            e
        }
    }
}

/// The slot of a device (its drvdata).
fn slot_of(raw: *mut crate::bindings::xenbus_device) -> *const Slot {
    // SAFETY: xenbus passes the live device of the callback.
    match unsafe { XenbusDevice::from_raw(raw) } {
        Some(dev) => dev.drvdata() as *const Slot,
        None => core::ptr::null(),
    }
}

/// For [`xenbus_driver!`]: otherend_changed.
///
/// # Safety
/// `raw` is a live xenbus device probed by driver `D`.
pub unsafe fn otherend_changed<D: XenbusDriver>(
    raw: *mut crate::bindings::xenbus_device,
    state: c_int,
) {
    let state = XenbusState::try_from(state as u32).unwrap_or(XenbusState::Unknown);
    // SAFETY: drvdata is null or `D`'s slot (set in `probe`).
    if let Some(d) = unsafe { Slot::enter::<D>(slot_of(raw)) } {
        d.otherend_changed(state);
    }
}

/// For [`xenbus_driver!`]: remove.
///
/// # Safety
/// `raw` is a live xenbus device probed by driver `D`; called once.
pub unsafe fn remove<D: XenbusDriver>(raw: *mut crate::bindings::xenbus_device) {
    let ctx = slot_of(raw);
    // SAFETY: slots are never freed; drvdata is null or `D`'s slot.
    let Some(slot) = (unsafe { ctx.as_ref() }) else {
        return;
    };
    let data = slot.data.load(Ordering::SeqCst) as *mut D;
    slot.dead.store(true, Ordering::SeqCst);
    if data.is_null() {
        return;
    }
    // SAFETY: only this function frees the data, below.
    unsafe { &*data }.remove();
    while slot.refs.load(Ordering::SeqCst) != 0 {
        crate::sync::msleep(10);
    }
    slot.data.store(core::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: from `Box::into_raw` in `probe`; no callback is inside (refs 0 after
    // `dead`), and none can enter any more.
    drop(unsafe { Box::from_raw(data) });
    // SAFETY: as above, the device is live during remove.
    if let Some(dev) = unsafe { XenbusDevice::from_raw(raw) } {
        dev.set_drvdata(core::ptr::null_mut());
    }
}

/// For [`xenbus_driver!`]: an event channel's work item.
///
/// # Safety
/// `ctx` is the context `XenPlatform` bound the channel with: `D`'s slot.
pub unsafe fn event<D: XenbusDriver>(ctx: *mut core::ffi::c_void, queue: core::ffi::c_uint) {
    // SAFETY: the caller's contract.
    if let Some(d) = unsafe { Slot::enter::<D>(ctx as *const Slot) } {
        d.event(queue);
    }
}

/// For [`xenbus_driver!`]: an event channel's interrupt (hard interrupt context; entering
/// the slot is two atomic operations).
///
/// # Safety
/// As [`event`].
pub unsafe fn irq<D: XenbusDriver>(ctx: *mut core::ffi::c_void, queue: core::ffi::c_uint) -> bool {
    // SAFETY: the caller's contract.
    match unsafe { Slot::enter::<D>(ctx as *const Slot) } {
        Some(d) => d.irq(queue),
        None => false,
    }
}

/// Generates the xenbus entry points a module's C shim calls, for driver data `$d`
/// (one driver per module).
#[macro_export]
macro_rules! xenbus_driver {
    ($d:ty) => {
        /// xenbus probe (C shim).
        ///
        /// # Safety
        /// Called by the C shim with a live xenbus device.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_xenbus_probe(
            dev: *mut $crate::bindings::xenbus_device,
        ) -> core::ffi::c_int {
            // SAFETY: forwarded contract.
            unsafe { $crate::xenbus::probe::<$d>(dev) }
        }
        /// xenbus otherend_changed (C shim).
        ///
        /// # Safety
        /// A live, probed xenbus device.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_xenbus_otherend_changed(
            dev: *mut $crate::bindings::xenbus_device,
            state: core::ffi::c_int,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::xenbus::otherend_changed::<$d>(dev, state) }
        }
        /// xenbus remove (C shim).
        ///
        /// # Safety
        /// A live, probed xenbus device, once.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_xenbus_remove(dev: *mut $crate::bindings::xenbus_device) {
            // SAFETY: forwarded contract.
            unsafe { $crate::xenbus::remove::<$d>(dev) }
        }
        /// An event channel's work item (kbuild/common/sluice_xen.c).
        ///
        /// # Safety
        /// `ctx` is the slot the channel was bound with.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_xen_event(
            ctx: *mut core::ffi::c_void,
            queue: core::ffi::c_uint,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::xenbus::event::<$d>(ctx, queue) }
        }
        /// An event channel's interrupt (kbuild/common/sluice_xen.c): true if handled.
        ///
        /// # Safety
        /// `ctx` is the slot the channel was bound with.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_xen_irq(
            ctx: *mut core::ffi::c_void,
            queue: core::ffi::c_uint,
        ) -> bool {
            // SAFETY: forwarded contract.
            unsafe { $crate::xenbus::irq::<$d>(ctx, queue) }
        }
    };
}
