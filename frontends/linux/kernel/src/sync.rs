//! A kernel mutex owning its data (process context only: it sleeps), a BH spinlock
//! ([`SpinLock`]) for data a softirq shares, and an IRQ spinlock ([`IrqSpinLock`]) for
//! data a hard interrupt handler shares.

use crate::bindings as k;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

/// `struct mutex` around a `T`.
pub struct Mutex<T> {
    raw: NonNull<c_void>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which holds the kernel mutex.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above: one guard at a time across threads.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new mutex, or `None` when out of memory.
    pub fn new(data: T) -> Option<Self> {
        // SAFETY: plain allocation (kmalloc + mutex_init).
        let raw = NonNull::new(unsafe { k::sluice_mutex_new() })?;
        Some(Mutex {
            raw,
            data: UnsafeCell::new(data),
        })
    }

    /// Locks it (sleeps).
    pub fn lock(&self) -> Guard<'_, T> {
        // SAFETY: the mutex lives as long as `self`.
        unsafe { k::sluice_mutex_lock(self.raw.as_ptr()) };
        Guard { m: self }
    }
}

impl<T> Drop for Mutex<T> {
    fn drop(&mut self) {
        // SAFETY: from `sluice_mutex_new`, unlocked (no guard can outlive `self`).
        unsafe { k::sluice_mutex_free(self.raw.as_ptr()) }
    }
}

/// The mutex held; unlocks on drop.
pub struct Guard<'a, T> {
    m: &'a Mutex<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mutex is held for the guard's lifetime.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: held, and `&mut self` keeps this the only reference under it.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: locked in `Mutex::lock`.
        unsafe { k::sluice_mutex_unlock(self.m.raw.as_ptr()) }
    }
}

/// Sleeps `ms` milliseconds (process context).
pub fn msleep(ms: u32) {
    // SAFETY: plain call; callers are in process context.
    unsafe { k::sluice_msleep(ms) }
}

/// `spinlock_t` around a `T`, taken with bottom halves disabled (`spin_lock_bh`): for
/// data a softirq (a NAPI poll, a transmit) and process context share. Never from
/// hardirq context; nothing under it may sleep.
pub struct SpinLock<T> {
    raw: NonNull<c_void>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which holds the kernel spinlock.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as above: one guard at a time across CPUs.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new spinlock (process context: it allocates with GFP_KERNEL), or `None` when
    /// out of memory.
    pub fn new(data: T) -> Option<Self> {
        // SAFETY: plain allocation (kmalloc + spin_lock_init).
        let raw = NonNull::new(unsafe { k::sluice_spin_new() })?;
        Some(SpinLock {
            raw,
            data: UnsafeCell::new(data),
        })
    }

    /// Locks it, bottom halves disabled until the guard drops.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: the lock lives as long as `self`.
        unsafe { k::sluice_spin_lock_bh(self.raw.as_ptr()) };
        SpinGuard {
            l: self,
            _cpu: core::marker::PhantomData,
        }
    }
}

impl<T> Drop for SpinLock<T> {
    fn drop(&mut self) {
        // SAFETY: from `sluice_spin_new`, unlocked (no guard can outlive `self`).
        unsafe { k::sluice_spin_free(self.raw.as_ptr()) }
    }
}

/// The spinlock held; unlocks on drop.
pub struct SpinGuard<'a, T> {
    l: &'a SpinLock<T>,
    /// Not `Send`: unlocked on the CPU that locked it.
    _cpu: core::marker::PhantomData<*const ()>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's lifetime.
        unsafe { &*self.l.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: held, and `&mut self` keeps this the only reference under it.
        unsafe { &mut *self.l.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: locked in `SpinLock::lock`.
        unsafe { k::sluice_spin_unlock_bh(self.l.raw.as_ptr()) }
    }
}

/// `spinlock_t` around a `T`, taken with interrupts disabled (`spin_lock_irqsave`): for
/// data an event channel's hard interrupt handler and any other context share (a block
/// driver's rings: blk-mq's `queue_rq` and the completion interrupt). Nothing under it
/// may sleep; allocations under it are atomic (the global allocator and
/// `sluice_xen_alloc_pages` follow the context).
pub struct IrqSpinLock<T> {
    raw: NonNull<c_void>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which holds the kernel spinlock.
unsafe impl<T: Send> Send for IrqSpinLock<T> {}
// SAFETY: as above: one guard at a time across CPUs and contexts (interrupts are off
// while it is held, so a handler on the same CPU cannot re-enter it).
unsafe impl<T: Send> Sync for IrqSpinLock<T> {}

impl<T> IrqSpinLock<T> {
    /// A new lock (process context: it allocates with GFP_KERNEL), or `None` when out
    /// of memory.
    pub fn new(data: T) -> Option<Self> {
        // SAFETY: plain allocation (kmalloc + spin_lock_init).
        let raw = NonNull::new(unsafe { k::sluice_spin_new() })?;
        Some(IrqSpinLock {
            raw,
            data: UnsafeCell::new(data),
        })
    }

    /// Locks it, local interrupts disabled until the guard drops.
    pub fn lock(&self) -> IrqSpinGuard<'_, T> {
        // SAFETY: the lock lives as long as `self`.
        let flags = unsafe { k::sluice_spin_lock_irqsave(self.raw.as_ptr()) };
        IrqSpinGuard {
            l: self,
            flags,
            _cpu: core::marker::PhantomData,
        }
    }
}

impl<T> Drop for IrqSpinLock<T> {
    fn drop(&mut self) {
        // SAFETY: from `sluice_spin_new`, unlocked (no guard can outlive `self`).
        unsafe { k::sluice_spin_free(self.raw.as_ptr()) }
    }
}

/// The IRQ spinlock held; unlocks (and restores the interrupt flag) on drop.
pub struct IrqSpinGuard<'a, T> {
    l: &'a IrqSpinLock<T>,
    flags: core::ffi::c_ulong,
    /// Not `Send`: unlocked on the CPU that locked it.
    _cpu: core::marker::PhantomData<*const ()>,
}

impl<T> Deref for IrqSpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's lifetime.
        unsafe { &*self.l.data.get() }
    }
}

impl<T> DerefMut for IrqSpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: held, and `&mut self` keeps this the only reference under it.
        unsafe { &mut *self.l.data.get() }
    }
}

impl<T> Drop for IrqSpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: locked in `IrqSpinLock::lock` with these flags, on this CPU.
        unsafe { k::sluice_spin_unlock_irqrestore(self.l.raw.as_ptr(), self.flags) }
    }
}
