//! Xen on the platform PCI device, the unsafe half: the hypercall page, mappings of the
//! device's memory BAR (shared_info, grant frames) and of the xenstore ring, atomics on
//! shared_info's event words and the grant entries, the platform interrupt (ISR + DPC)
//! and a kernel event to wait on. The logic over them is `sluice_xenbus_core`'s.

use crate::sync::SpinLock;
use crate::{sys, NtStatus, STATUS_INSUFFICIENT_RESOURCES, STATUS_UNSUCCESSFUL};
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::arch::asm;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};
use sluice_abi::event_channel::{EvtchnAllocUnbound, EvtchnClose, EvtchnOp, EvtchnSend};
use sluice_abi::hypercall::{HvmOp, Hypercall, XenAddToPhysmap, XenHvmParam, XenMemOp};
use sluice_abi::shared::SharedMem;
use sluice_abi::types::DOMID_SELF;
use sluice_xenbus_core::cpuid::XenCpuid;
use sluice_xenbus_core::evtchn::EventWords;
use sluice_xenbus_core::grants::GrantEntries;
use sluice_xenbus_core::unplug::PortIo;

const PAGE: usize = 4096;
/// `NonPagedPool`: executable, for the hypercall page Xen writes code into.
const NON_PAGED_POOL_EXECUTE: sys::POOL_TYPE = 0;

/// The hypercall page (Xen fills it when its MSR is written).
pub struct Hypercalls {
    page: NonNull<u8>,
}

// SAFETY: the page is written once by Xen and then only executed.
unsafe impl Send for Hypercalls {}
// SAFETY: as Send: calls into it are reentrant.
unsafe impl Sync for Hypercalls {}

impl Hypercalls {
    /// Allocates an executable page and gives its physical address to Xen's MSR.
    pub fn install(x: &XenCpuid) -> Result<Self, NtStatus> {
        // SAFETY: a page-sized non-paged allocation is page aligned; freed in Drop.
        let p = unsafe {
            sys::ExAllocatePoolWithTag(NON_PAGED_POOL_EXECUTE, PAGE as u64, crate::POOL_TAG)
        };
        let page = NonNull::new(p.cast::<u8>()).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
        // SAFETY: the address is of our own non-paged page.
        let phys = unsafe { sys::MmGetPhysicalAddress(p).QuadPart } as u64;
        // SAFETY: Xen's hypercall MSR from CPUID, given a page we own.
        unsafe { crate::hw::wrmsr(x.hypercall_msr, phys) };
        Ok(Hypercalls { page })
    }

    /// A hypercall with up to three arguments; Xen's return value (negative errno).
    fn call(&self, op: Hypercall, a1: u64, a2: u64, a3: u64) -> i64 {
        let entry = self.page.as_ptr() as u64 + (op as u64) * 32;
        let ret: i64;
        // SAFETY: the entry is Xen's stub for `op` in our hypercall page; arguments that
        // are pointers point to live structures of the caller for the call's length.
        unsafe {
            asm!("call {entry}",
                 entry = in(reg) entry,
                 inlateout("rdi") a1 => _, inlateout("rsi") a2 => _, inlateout("rdx") a3 => _,
                 lateout("rax") ret, lateout("rcx") _, lateout("r8") _, lateout("r10") _,
                 lateout("r11") _)
        };
        ret
    }

    /// `HVMOP_get_param`.
    pub fn hvm_get_param(&self, index: u32) -> Result<u64, i64> {
        let mut p = XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value: 0,
        };
        let r = self.call(
            Hypercall::HvmOp,
            HvmOp::GetParam as u64,
            &mut p as *mut _ as u64,
            0,
        );
        if r < 0 {
            Err(r)
        } else {
            Ok(p.value)
        }
    }

    /// `HVMOP_set_param`.
    pub fn hvm_set_param(&self, index: u32, value: u64) -> Result<(), i64> {
        let mut p = XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value,
        };
        let r = self.call(
            Hypercall::HvmOp,
            HvmOp::SetParam as u64,
            &mut p as *mut _ as u64,
            0,
        );
        if r < 0 {
            Err(r)
        } else {
            Ok(())
        }
    }

    /// `XENMEM_add_to_physmap` of `space`'s frame `idx` at guest frame `gpfn`.
    pub fn add_to_physmap(&self, space: u32, idx: u64, gpfn: u64) -> Result<(), i64> {
        let mut a = XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space,
            idx,
            gpfn,
        };
        let r = self.call(
            Hypercall::MemoryOp,
            XenMemOp::AddToPhysmap as u64,
            &mut a as *mut _ as u64,
            0,
        );
        if r < 0 {
            Err(r)
        } else {
            Ok(())
        }
    }

    /// `EVTCHNOP_alloc_unbound`: a port of ours `remote` may bind to.
    pub fn evtchn_alloc_unbound(&self, remote: u16) -> Result<u32, i64> {
        let mut a = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: remote,
            port: 0,
        };
        let r = self.call(
            Hypercall::EventChannelOp,
            EvtchnOp::AllocUnbound as u64,
            &mut a as *mut _ as u64,
            0,
        );
        if r < 0 {
            Err(r)
        } else {
            Ok(a.port)
        }
    }

    /// `EVTCHNOP_close`.
    pub fn evtchn_close(&self, port: u32) {
        let mut c = EvtchnClose { port };
        let _ = self.call(
            Hypercall::EventChannelOp,
            EvtchnOp::Close as u64,
            &mut c as *mut _ as u64,
            0,
        );
    }

    /// `EVTCHNOP_send`.
    pub fn evtchn_send(&self, port: u32) {
        let mut s = EvtchnSend { port };
        let _ = self.call(
            Hypercall::EventChannelOp,
            EvtchnOp::Send as u64,
            &mut s as *mut _ as u64,
            0,
        );
    }
}

impl Drop for Hypercalls {
    fn drop(&mut self) {
        // Xen keeps no reference to the page once written (the MSR write copied the
        // stubs in); free it.
        // SAFETY: allocated in install with our tag.
        unsafe { sys::ExFreePoolWithTag(self.page.as_ptr().cast(), crate::POOL_TAG) };
    }
}

/// A mapping of physical memory (the BAR, the xenstore page), unmapped on drop.
pub struct IoMap {
    va: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with Xen; all access goes through atomics
// or SharedMem.
unsafe impl Send for IoMap {}
// SAFETY: as Send.
unsafe impl Sync for IoMap {}

impl IoMap {
    /// Maps `len` bytes at physical `phys`, cached (the BAR's frames are RAM Xen put
    /// there; QEMU's platform BAR is prefetchable).
    pub fn map(phys: u64, len: usize) -> Result<Self, NtStatus> {
        let pa = sys::PHYSICAL_ADDRESS {
            QuadPart: phys as i64,
        };
        // SAFETY: the range is the device's BAR or a frame Xen gave us; unmapped in Drop.
        let va = unsafe { sys::MmMapIoSpace(pa, len as u64, sys::MmCached) };
        let va = NonNull::new(va.cast::<u8>()).ok_or(STATUS_UNSUCCESSFUL)?;
        Ok(IoMap { va, len })
    }

    /// The mapping as shared memory.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `len` bytes at `va` stay mapped while `self` lives, which the
        // returned view borrows.
        unsafe { SharedMem::new(self.va, self.len) }
    }

    fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: in bounds and aligned (checked), mapped while self lives.
        unsafe { &*(self.va.as_ptr().add(off) as *const AtomicU64) }
    }

    fn atomic_u16(&self, off: usize) -> &AtomicU16 {
        assert!(off.is_multiple_of(2) && off + 2 <= self.len);
        // SAFETY: as atomic_u64.
        unsafe { &*(self.va.as_ptr().add(off) as *const AtomicU16) }
    }

    fn atomic_u8(&self, off: usize) -> &AtomicU8 {
        assert!(off < self.len);
        // SAFETY: as atomic_u64.
        unsafe { &*(self.va.as_ptr().add(off) as *const AtomicU8) }
    }
}

impl Drop for IoMap {
    fn drop(&mut self) {
        // SAFETY: mapped by MmMapIoSpace with this length.
        unsafe { sys::MmUnmapIoSpace(self.va.as_ptr().cast(), self.len as u64) };
    }
}

/// shared_info offsets (x86-64; `sluice_abi::shared_info::SharedInfo`).
const VCPU0_UPCALL_PENDING: usize = 0;
const VCPU0_PENDING_SEL: usize = 8;
const EVTCHN_PENDING: usize = 64 * 32;
const EVTCHN_MASK: usize = EVTCHN_PENDING + 8 * 64;

/// shared_info's event words, with the atomics Xen expects.
pub struct SharedInfoWords<'a>(pub &'a IoMap);

impl EventWords for SharedInfoWords<'_> {
    fn take_selector(&self) -> u64 {
        self.0
            .atomic_u8(VCPU0_UPCALL_PENDING)
            .store(0, Ordering::SeqCst);
        self.0
            .atomic_u64(VCPU0_PENDING_SEL)
            .swap(0, Ordering::SeqCst)
    }
    fn pending(&self, word: usize) -> u64 {
        self.0
            .atomic_u64(EVTCHN_PENDING + 8 * word)
            .load(Ordering::Acquire)
    }
    fn mask(&self, word: usize) -> u64 {
        self.0
            .atomic_u64(EVTCHN_MASK + 8 * word)
            .load(Ordering::Acquire)
    }
    fn clear_pending(&self, port: u32) {
        let w = (port / 64) as usize;
        self.0
            .atomic_u64(EVTCHN_PENDING + 8 * w)
            .fetch_and(!(1u64 << (port % 64)), Ordering::SeqCst);
    }
}

/// The grant table v1 entries in the mapped grant frames (8 bytes each: flags,
/// domid, frame).
pub struct GrantFrames<'a>(pub &'a IoMap);

impl GrantEntries for GrantFrames<'_> {
    fn count(&self) -> u32 {
        (self.0.len / 8) as u32
    }
    fn write(&self, r: u32, domid: u16, frame: u32, flags: u16) {
        let off = r as usize * 8;
        let m = self.0.mem();
        let _ = m.store_u32_relaxed(off + 4, frame);
        self.0.atomic_u16(off + 2).store(domid, Ordering::Relaxed);
        self.0.atomic_u16(off).store(flags, Ordering::Release);
    }
    fn cmpxchg_flags(&self, r: u32, old: u16, new: u16) -> u16 {
        match self.0.atomic_u16(r as usize * 8).compare_exchange(
            old,
            new,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(v) | Err(v) => v,
        }
    }
    fn flags(&self, r: u32) -> u16 {
        self.0.atomic_u16(r as usize * 8).load(Ordering::Acquire)
    }
}

/// I/O ports at `base` + the protocol's port. The unplug protocol's ports 0x10/0x12 are
/// QEMU's fixed ISA ports (`Ports(0)`), not offsets in the platform device's I/O BAR.
pub struct Ports(pub u16);

impl PortIo for Ports {
    fn inb(&mut self, port: u16) -> u8 {
        crate::hw::inb(self.0.wrapping_add(port))
    }
    fn inw(&mut self, port: u16) -> u16 {
        crate::hw::inw(self.0.wrapping_add(port))
    }
    fn outw(&mut self, port: u16, value: u16) {
        crate::hw::outw(self.0.wrapping_add(port), value)
    }
    fn outl(&mut self, port: u16, value: u32) {
        crate::hw::outl(self.0.wrapping_add(port), value)
    }
}

/// A notification event (KEVENT) in non-paged pool.
pub struct Event(Box<sys::KEVENT>);

// SAFETY: a KEVENT is set and waited on from any thread through the kernel's calls
// (its list links are the kernel's, used under the dispatcher lock).
unsafe impl Send for Event {}
// SAFETY: as Send.
unsafe impl Sync for Event {}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A non-signalled synchronization (auto-reset) event.
    pub fn new() -> Self {
        // SAFETY: KEVENT is plain data; KeInitializeEvent initialises it in place, and
        // the Box keeps it at one address for its life.
        let mut e: Box<sys::KEVENT> = Box::new(unsafe { core::mem::zeroed() });
        // SAFETY: as above.
        unsafe { sys::KeInitializeEvent(&mut *e, sys::SynchronizationEvent, 0) };
        Event(e)
    }

    /// Signals it (any IRQL <= DISPATCH_LEVEL).
    pub fn set(&self) {
        // SAFETY: an initialised event; KeSetEvent takes it by pointer.
        unsafe { sys::KeSetEvent(&*self.0 as *const _ as *mut _, 0, 0) };
    }

    /// Waits up to `ms` milliseconds (PASSIVE_LEVEL); true when signalled.
    pub fn wait(&self, ms: u32) -> bool {
        // Relative timeouts are negative, in 100 ns units.
        let mut t = sys::LARGE_INTEGER {
            QuadPart: -(ms as i64) * 10_000,
        };
        // SAFETY: an initialised event and a timeout on our stack.
        let s = unsafe {
            sys::KeWaitForSingleObject(
                &*self.0 as *const _ as *mut _,
                sys::Executive,
                sys::KernelMode as i8,
                0,
                &mut t,
            )
        };
        s == crate::STATUS_SUCCESS
    }
}

/// What the interrupt and its DPC work on.
pub struct IrqContext {
    dpc: sys::KDPC,
    /// shared_info (the ISR reads the upcall flag and scans the event words).
    shared_info: IoMap,
    /// Ports that fired, one bit each, handed from the ISR's scan to the DPC.
    fired: [AtomicU64; 64],
    /// The xenstore port, whose events set [`IrqContext::xenstore`].
    xenstore_port: core::sync::atomic::AtomicU32,
    /// Set from the DPC when the xenstore port fires.
    pub xenstore: Event,
    /// Ports fired that no handler took (counted).
    pub other_events: AtomicU64,
    /// Where the DPC sends events: the bus, once it is up.
    handler: SpinLock<Option<Arc<dyn IrqHandler>>>,
}

/// What the bus does with events, called from the DPC at DISPATCH_LEVEL with no lock
/// of ours held.
pub trait IrqHandler: Send + Sync {
    /// A port other than xenstore's fired.
    fn port(&self, port: u32);
    /// The xenstore port fired (after [`IrqContext::xenstore`] was set).
    fn xenstore(&self);
}

/// A connected platform interrupt; disconnected on drop.
pub struct Interrupt {
    obj: sys::PKINTERRUPT,
    ctx: NonNull<IrqContext>,
}

// SAFETY: the interrupt object and context are used by the kernel from any CPU.
unsafe impl Send for Interrupt {}
// SAFETY: as Send.
unsafe impl Sync for Interrupt {}

/// The platform device's translated interrupt resource.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterruptResource {
    /// The raw line (GSI), for `HVM_PARAM_CALLBACK_IRQ`.
    pub gsi: u32,
    /// Translated vector.
    pub vector: u32,
    /// Translated IRQL.
    pub irql: u8,
    /// Processors.
    pub affinity: u64,
    /// Edge (latched) rather than level.
    pub latched: bool,
    /// Shared line.
    pub shared: bool,
}

unsafe extern "C" fn isr(_i: sys::PKINTERRUPT, ctx: sys::PVOID) -> sys::BOOLEAN {
    // SAFETY: the context we passed to IoConnectInterrupt, alive until disconnect.
    let c = unsafe { &*(ctx as *const IrqContext) };
    if c.shared_info
        .atomic_u8(VCPU0_UPCALL_PENDING)
        .load(Ordering::Acquire)
        == 0
    {
        return 0;
    }
    sluice_xenbus_core::evtchn::dispatch(&SharedInfoWords(&c.shared_info), |p| {
        c.fired[(p.0 / 64) as usize].fetch_or(1 << (p.0 % 64), Ordering::SeqCst);
    });
    // SAFETY: the DPC was initialised with this context.
    unsafe {
        sys::KeInsertQueueDpc(
            &c.dpc as *const _ as *mut _,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    1
}

unsafe extern "C" fn dpc(_d: *mut sys::KDPC, ctx: sys::PVOID, _a: sys::PVOID, _b: sys::PVOID) {
    // SAFETY: as isr.
    let c = unsafe { &*(ctx as *const IrqContext) };
    for (w, word) in c.fired.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::SeqCst);
        while bits != 0 {
            let b = bits.trailing_zeros();
            bits &= bits - 1;
            let port = w as u32 * 64 + b;
            let h = c.handler.lock().clone();
            if port == c.xenstore_port.load(Ordering::Relaxed) {
                c.xenstore.set();
                if let Some(h) = h {
                    h.xenstore();
                }
            } else if let Some(h) = h {
                h.port(port);
            } else {
                c.other_events.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Interrupt {
    /// Connects the ISR (scans shared_info, queues the DPC) and the DPC (signals the
    /// xenstore event for `xenstore_port`), owning the shared_info mapping.
    pub fn connect(
        res: &InterruptResource,
        shared_info: IoMap,
        xenstore_port: u32,
    ) -> Result<Self, NtStatus> {
        let ctx = Box::new(IrqContext {
            // SAFETY: KDPC is plain data, initialised below.
            dpc: unsafe { core::mem::zeroed() },
            shared_info,
            fired: core::array::from_fn(|_| AtomicU64::new(0)),
            xenstore_port: core::sync::atomic::AtomicU32::new(xenstore_port),
            xenstore: Event::new(),
            other_events: AtomicU64::new(0),
            handler: SpinLock::new(None),
        });
        let ctx = NonNull::from(Box::leak(ctx));
        let mut obj: sys::PKINTERRUPT = core::ptr::null_mut();
        // SAFETY: the context lives until Drop disconnects the interrupt (after which
        // neither routine runs) and frees it.
        let s = unsafe {
            sys::KeInitializeDpc(&mut (*ctx.as_ptr()).dpc, Some(dpc), ctx.as_ptr().cast());
            sys::IoConnectInterrupt(
                &mut obj,
                Some(isr),
                ctx.as_ptr().cast(),
                core::ptr::null_mut(),
                res.vector,
                res.irql,
                res.irql,
                if res.latched {
                    sys::Latched
                } else {
                    sys::LevelSensitive
                },
                res.shared as u8,
                res.affinity,
                0,
            )
        };
        if s != crate::STATUS_SUCCESS {
            // SAFETY: never connected: nothing else holds the context.
            drop(unsafe { Box::from_raw(ctx.as_ptr()) });
            return Err(s);
        }
        Ok(Interrupt { obj, ctx })
    }
}

impl Interrupt {
    /// Sends the DPC's events to `h` (or, with `None`, nowhere); when this returns
    /// with `None`, no DPC is still calling the old handler.
    pub fn set_handler(&self, h: Option<Arc<dyn IrqHandler>>) {
        let none = h.is_none();
        *self.context().handler.lock() = h;
        if none {
            flush_dpcs();
        }
    }

    /// The context the ISR and DPC share (the xenstore event, counters).
    pub fn context(&self) -> &IrqContext {
        // SAFETY: alive until Drop.
        unsafe { self.ctx.as_ref() }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        // SAFETY: connected in `connect`; after IoDisconnectInterrupt the ISR no longer
        // runs and after KeFlushQueuedDpcs no DPC of ours is queued or running, so the
        // context can be freed.
        unsafe {
            sys::IoDisconnectInterrupt(self.obj);
            sys::KeFlushQueuedDpcs();
            drop(Box::from_raw(self.ctx.as_ptr()));
        }
    }
}

/// Waits until no DPC queued before the call is queued or running (PASSIVE_LEVEL):
/// after a port's callback is removed from the bus' table, its last run is over.
pub fn flush_dpcs() {
    // SAFETY: KeFlushQueuedDpcs has no arguments; callable at PASSIVE_LEVEL.
    unsafe { sys::KeFlushQueuedDpcs() };
}

/// A system work item (`ExQueueWorkItem`, delayed work queue) that runs `f` at
/// PASSIVE_LEVEL; queued at most once at a time (a queue while queued is merged, one
/// while running queues it again). Dropping it waits until it is neither queued nor
/// running.
pub struct WorkItem(NonNull<WorkInner>);

struct WorkInner {
    item: sys::WORK_QUEUE_ITEM,
    /// [`QUEUED`] | [`CLOSING`] | running count x [`RUNNING`].
    state: core::sync::atomic::AtomicU32,
    f: Box<dyn Fn() + Send + Sync>,
}

const QUEUED: u32 = 1;
const CLOSING: u32 = 2;
const RUNNING: u32 = 4;

// SAFETY: the inner state is used through atomics and the kernel's queue.
unsafe impl Send for WorkItem {}
// SAFETY: as Send.
unsafe impl Sync for WorkItem {}

unsafe extern "C" fn work_routine(ctx: sys::PVOID) {
    // SAFETY: the WorkInner this item was queued with; Drop waits for us to finish.
    let w = unsafe { &*(ctx as *const WorkInner) };
    // Running, no longer queued: a queue() from now on queues it again.
    let s = w.state.fetch_add(RUNNING, Ordering::AcqRel);
    w.state.fetch_and(!QUEUED, Ordering::AcqRel);
    if s & CLOSING == 0 {
        (w.f)();
    }
    w.state.fetch_sub(RUNNING, Ordering::AcqRel);
}

impl WorkItem {
    /// A work item running `f`.
    pub fn new(f: Box<dyn Fn() + Send + Sync>) -> Self {
        let inner = Box::new(WorkInner {
            // SAFETY: plain data; ExInitializeWorkItem's fields are set below.
            item: unsafe { core::mem::zeroed() },
            state: core::sync::atomic::AtomicU32::new(0),
            f,
        });
        let p = NonNull::from(Box::leak(inner));
        // SAFETY: ExInitializeWorkItem by hand (a macro): routine, parameter, and a
        // null list link.
        unsafe {
            (*p.as_ptr()).item.WorkerRoutine = Some(work_routine);
            (*p.as_ptr()).item.Parameter = p.as_ptr().cast();
        }
        WorkItem(p)
    }

    /// Queues it unless it is queued already or closing (`IRQL <= DISPATCH_LEVEL`).
    pub fn queue(&self) {
        // SAFETY: alive until Drop.
        let w = unsafe { self.0.as_ref() };
        let s = w.state.fetch_or(QUEUED, Ordering::AcqRel);
        if s & (QUEUED | CLOSING) == 0 {
            // SAFETY: the item is not in the queue (QUEUED was clear) and lives until
            // Drop, which waits for it.
            unsafe { sys::ExQueueWorkItem(&w.item as *const _ as *mut _, sys::DelayedWorkQueue) };
        } else if s & QUEUED == 0 {
            // Closing: nothing was queued; undo the mark.
            w.state.fetch_and(!QUEUED, Ordering::AcqRel);
        }
    }
}

impl Drop for WorkItem {
    fn drop(&mut self) {
        // SAFETY: alive until freed below.
        let w = unsafe { self.0.as_ref() };
        // No new queueing; a queued item still runs (skipping `f`), a running one ends.
        w.state.fetch_or(CLOSING, Ordering::AcqRel);
        let pause = Event::new();
        while w.state.load(Ordering::Acquire) & !CLOSING != 0 {
            pause.wait(10);
        }
        // SAFETY: neither queued nor running: nothing else holds it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}
