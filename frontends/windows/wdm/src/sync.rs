//! Locks for the drivers' shared state: [`SpinLock`] (a `KSPIN_LOCK`, taken at or
//! below `DISPATCH_LEVEL`, raises to it) and [`PassiveMutex`] (a synchronization
//! `KEVENT` created signalled, taken at `PASSIVE_LEVEL` only: its holder may wait).

use crate::sys;
use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

/// A value behind a kernel spin lock.
pub struct SpinLock<T> {
    lock: Box<UnsafeCell<sys::KSPIN_LOCK>>,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises every access to the value across CPUs.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as Send: `&SpinLock` hands out `&mut T` only under the lock.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Holds a [`SpinLock`] (at `DISPATCH_LEVEL`) until dropped.
pub struct SpinGuard<'a, T> {
    owner: &'a SpinLock<T>,
    irql: sys::KIRQL,
}

impl<T> SpinLock<T> {
    /// A free lock around `value`.
    pub fn new(value: T) -> Self {
        SpinLock {
            // A zero KSPIN_LOCK is a free lock (KeInitializeSpinLock stores 0); the Box
            // keeps it at one address.
            lock: Box::new(UnsafeCell::new(0)),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock (`IRQL <= DISPATCH_LEVEL`; raises to DISPATCH_LEVEL).
    pub fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: an initialised spin lock at a fixed address.
        let irql = unsafe { sys::KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinGuard { owner: self, irql }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held.
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held, and this guard is the only one.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: releases the lock this guard took, restoring its IRQL.
        unsafe { sys::KeReleaseSpinLock(self.owner.lock.get(), self.irql) };
    }
}

/// A value behind a passive-level mutex.
pub struct PassiveMutex<T> {
    event: Box<UnsafeCell<sys::KEVENT>>,
    value: UnsafeCell<T>,
}

// SAFETY: the event serialises every access to the value.
unsafe impl<T: Send> Send for PassiveMutex<T> {}
// SAFETY: as Send.
unsafe impl<T: Send> Sync for PassiveMutex<T> {}

/// Holds a [`PassiveMutex`] until dropped.
pub struct MutexGuard<'a, T> {
    owner: &'a PassiveMutex<T>,
}

impl<T> PassiveMutex<T> {
    /// A free mutex around `value`.
    pub fn new(value: T) -> Self {
        // SAFETY: KEVENT is plain data, initialised in place (signalled: free) at the
        // Box's fixed address.
        let event: Box<UnsafeCell<sys::KEVENT>> =
            Box::new(UnsafeCell::new(unsafe { core::mem::zeroed() }));
        // SAFETY: as above.
        unsafe { sys::KeInitializeEvent(event.get(), sys::SynchronizationEvent, 1) };
        PassiveMutex {
            event,
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the mutex (PASSIVE_LEVEL: waits while another holds it).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // SAFETY: an initialised event; no timeout (null) waits until it is ours: a
        // synchronization event lets one waiter through and resets.
        unsafe {
            sys::KeWaitForSingleObject(
                self.event.get().cast(),
                sys::Executive,
                sys::KernelMode as i8,
                0,
                core::ptr::null_mut(),
            )
        };
        MutexGuard { owner: self }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mutex is held.
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the mutex is held, and this guard is the only one.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: signals the event: the next waiter (or locker) gets the mutex.
        unsafe { sys::KeSetEvent(self.owner.event.get(), 0, 0) };
    }
}
