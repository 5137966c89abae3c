//! Network devices for a module without `unsafe`: [`NetDev`] (an Ethernet `net_device`
//! over `kbuild/common/sluice_net.c`), owned skb handles ([`TxSkb`], [`RxSkb`]), and
//! [`net_driver!`], which generates the transmit, NAPI poll, watchdog and fault entry
//! points.
//!
//! As xen-netfront: `ndo_start_xmit` calls [`NetDriver::xmit`] at once (BH disabled);
//! each queue's NAPI poll (softirq, scheduled from the event channel's interrupt with
//! [`NetDev::napi_kick`]) calls [`NetDriver::poll`]; the watchdog and a fault the data
//! path reports ([`NetDev::fault_kick`]) reach [`NetDriver::tx_timeout`] /
//! [`NetDriver::fault`] from work items (process context). Every callback enters the
//! device's [`Slot`] as the xenbus callbacks do.

use crate::bindings as k;
use crate::xen::XenbusDevice;
use crate::xenbus::{Slot, XenbusDriver};
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_uint, CStr};
use core::ptr::NonNull;
use sluice_abi::shared::SharedMem;

/// A network driver's data-path callbacks.
pub trait NetDriver: XenbusDriver {
    /// Sends `skb` on `queue` (BH disabled: no sleeping). `Err` gives it back to the
    /// stack (`NETDEV_TX_BUSY`), the queue to be stopped first.
    fn xmit(&self, queue: u32, skb: TxSkb) -> Result<(), TxSkb>;
    /// `queue`'s NAPI poll (softirq: no sleeping): packets received (at most `budget`;
    /// `budget` when more wait and the poll is to run again).
    fn poll(&self, queue: u32, budget: usize) -> usize;
    /// Queue `queue` stayed stopped for the watchdog's timeout (5 s); process context.
    fn tx_timeout(&self, queue: u32);
    /// After [`NetDev::fault_kick`]; process context.
    fn fault(&self);
}

/// Checksum state of an skb to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxCsum {
    /// Complete (or none).
    Complete,
    /// `CHECKSUM_PARTIAL`: to be filled in by the other end.
    Partial,
    /// `CHECKSUM_UNNECESSARY`.
    Validated,
}

/// Segmentation asked for an skb to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gso {
    /// None.
    None,
    /// TCP over IPv4, segment size.
    TcpV4(u16),
    /// TCP over IPv6, segment size.
    TcpV6(u16),
    /// Anything else (never advertised).
    Other,
}

/// Checksum state of a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxCsum {
    /// Unknown: the stack checks it.
    None,
    /// Known good.
    Unnecessary,
    /// Blank (a local sender's offload): offsets set up from the headers.
    Partial,
}

/// What [`NetDev::configure`] sets once the backend's features are known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// Queues in use.
    pub queues: u32,
    /// Scatter-gather.
    pub sg: bool,
    /// IPv4 checksum offload.
    pub csum4: bool,
    /// IPv6 checksum offload.
    pub csum6: bool,
    /// TCPv4 segmentation offload.
    pub tso4: bool,
    /// TCPv6 segmentation offload.
    pub tso6: bool,
    /// Largest MTU.
    pub max_mtu: u32,
    /// MTU to set (0: leave it).
    pub mtu: u32,
}

/// CPUs online.
pub fn num_cpus() -> u32 {
    // SAFETY: plain call.
    unsafe { k::sluice_net_num_cpus() }
}

/// An Ethernet device of a xenbus device, from [`NetDev::create`] to its drop (freed).
#[derive(Debug)]
pub struct NetDev(NonNull<k::net_device>);

// SAFETY: a kernel object whose functions here are safe from any thread; those that
// sleep say so (process context).
unsafe impl Send for NetDev {}
// SAFETY: as above; the C functions do their own locking (rtnl, the stack's own).
unsafe impl Sync for NetDev {}

impl NetDev {
    /// A device for `dev` (call from its probe: its callbacks enter `dev`'s slot), with
    /// room for `max_queues` queues, MAC `mac`, carrier off, not registered.
    pub fn create(dev: XenbusDevice, max_queues: u32, mac: [u8; 6]) -> Result<Self, c_int> {
        let mut err: c_int = 0;
        // SAFETY: `dev` is live (probe); its drvdata is its slot, never freed; `mac` is 6
        // bytes read during the call.
        let nd = unsafe {
            k::sluice_net_create(
                dev.raw(),
                dev.drvdata(),
                max_queues as c_uint,
                mac.as_ptr(),
                &mut err,
            )
        };
        NonNull::new(nd).map(NetDev).ok_or(err)
    }

    /// `register_netdev`.
    pub fn register(&self) -> Result<(), c_int> {
        // SAFETY: a live device from `create`.
        match unsafe { k::sluice_net_register(self.0.as_ptr()) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// Unregisters (transmit and NAPI stopped: no [`NetDriver`] callback starts after
    /// it) and waits for the work items (process context; call without locks the
    /// callbacks take). Freed on drop.
    pub fn unregister(&self) {
        // SAFETY: a live device; unregistering twice is a no-op in C.
        unsafe { k::sluice_net_unregister(self.0.as_ptr()) }
    }

    /// The interface name (`eth0`).
    pub fn name(&self) -> String {
        // SAFETY: a live device; its name is a NUL-terminated array inside it.
        let p: *const c_char = unsafe { k::sluice_net_name(self.0.as_ptr()) };
        // SAFETY: as above.
        String::from_utf8_lossy(unsafe { CStr::from_ptr(p) }.to_bytes()).into_owned()
    }

    /// Queues, offloads and MTU (takes rtnl).
    pub fn configure(&self, c: &NetConfig) -> Result<(), c_int> {
        // SAFETY: a live device; plain values.
        let e = unsafe {
            k::sluice_net_configure(
                self.0.as_ptr(),
                c.queues,
                c.sg,
                c.csum4,
                c.csum6,
                c.tso4,
                c.tso6,
                c.max_mtu,
                c.mtu,
            )
        };
        if e == 0 {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Carrier on or off.
    pub fn carrier(&self, on: bool) {
        // SAFETY: a live device.
        unsafe { k::sluice_net_carrier(self.0.as_ptr(), on) }
    }

    /// Stops transmit queue `queue`.
    pub fn tx_stop(&self, queue: u32) {
        // SAFETY: a live device; the queue index is checked by the kernel's helpers.
        unsafe { k::sluice_net_tx_stop(self.0.as_ptr(), queue) }
    }

    /// Wakes transmit queue `queue` if the device is up and the queue stopped.
    pub fn tx_wake(&self, queue: u32) {
        // SAFETY: a live device; the index is checked in C.
        unsafe { k::sluice_net_tx_wake(self.0.as_ptr(), queue) }
    }

    /// Schedules queue `queue`'s NAPI poll (any context, hard interrupts included).
    pub fn napi_kick(&self, queue: u32) {
        // SAFETY: a live device; the index is checked in C.
        unsafe { k::sluice_net_napi_kick(self.0.as_ptr(), queue) }
    }

    /// Queues the fault work item ([`NetDriver::fault`]), from any context.
    pub fn fault_kick(&self) {
        // SAFETY: a live device.
        unsafe { k::sluice_net_fault_kick(self.0.as_ptr()) }
    }

    /// A receive skb of `len` bytes to fill (GFP_ATOMIC; [`RxSkb::fill`]).
    pub fn rx_alloc(&self, len: usize) -> Option<RxSkb> {
        let len32 = u32::try_from(len).ok()?;
        // SAFETY: a live device; the skb returned is ours.
        let skb = NonNull::new(unsafe { k::sluice_net_rx_alloc(self.0.as_ptr(), len32) })?;
        Some(RxSkb { skb, len })
    }

    /// Counts `n` received packets the driver dropped.
    pub fn rx_dropped(&self, n: u64) {
        // SAFETY: a live device.
        unsafe { k::sluice_net_rx_dropped(self.0.as_ptr(), n as _) }
    }
}

impl Drop for NetDev {
    fn drop(&mut self) {
        // SAFETY: a live device, freed once, here (unregistered first if need be).
        unsafe { k::sluice_net_free(self.0.as_ptr()) }
    }
}

/// An skb handed to [`NetDriver::xmit`]: sent ([`TxSkb::done`]) or given back (`Err`);
/// dropping it frees it as dropped.
#[derive(Debug)]
pub struct TxSkb(NonNull<k::sk_buff>);

// SAFETY: an skb we own, usable from any thread.
unsafe impl Send for TxSkb {}

impl TxSkb {
    /// Bytes in the packet.
    pub fn len(&self) -> usize {
        // SAFETY: an skb we own.
        unsafe { k::sluice_skb_len(self.0.as_ptr()) as usize }
    }

    /// Whether the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet's bytes in order: the linear head, then each page fragment. Views of
    /// memory others may write (a fragment page can be shared), hence [`SharedMem`].
    /// `None` when out of memory for the list (atomic context: no panic on failure).
    pub fn parts(&self) -> Option<Vec<SharedMem<'_>>> {
        // SAFETY: an skb we own.
        let n = unsafe { k::sluice_skb_parts(self.0.as_ptr()) };
        let mut v = Vec::new();
        v.try_reserve_exact(n as usize).ok()?;
        for i in 0..n {
            let mut len: c_uint = 0;
            // SAFETY: an skb we own; `i` is within its parts.
            let p = unsafe { k::sluice_skb_part(self.0.as_ptr(), i, &mut len) };
            if let Some(p) = NonNull::new(p.cast_mut()) {
                if len > 0 {
                    // SAFETY: `len` bytes of the skb's head or a fragment page, mapped
                    // (no highmem on x86-64) and kept alive by the skb, which `self`
                    // owns for the borrow's lifetime.
                    v.push(unsafe { SharedMem::new(p, len as usize) });
                }
            }
        }
        Some(v)
    }

    /// Checksum state.
    pub fn csum(&self) -> TxCsum {
        // SAFETY: an skb we own.
        match unsafe { k::sluice_skb_csum(self.0.as_ptr()) } {
            1 => TxCsum::Partial,
            2 => TxCsum::Validated,
            _ => TxCsum::Complete,
        }
    }

    /// Segmentation asked for.
    pub fn gso(&self) -> Gso {
        let mut size: c_uint = 0;
        // SAFETY: an skb we own.
        let t = unsafe { k::sluice_skb_gso(self.0.as_ptr(), &mut size) };
        let size = u16::try_from(size).unwrap_or(0);
        match t {
            0 => Gso::None,
            1 => Gso::TcpV4(size),
            2 => Gso::TcpV6(size),
            _ => Gso::Other,
        }
    }

    /// Frees it, counted as sent (or as dropped).
    pub fn done(self, nd: &NetDev, sent: bool) {
        let skb = self.0;
        core::mem::forget(self);
        // SAFETY: an skb we own, freed once.
        unsafe { k::sluice_net_tx_done(nd.0.as_ptr(), skb.as_ptr(), sent) }
    }
}

impl Drop for TxSkb {
    fn drop(&mut self) {
        // SAFETY: an skb we own, freed once.
        unsafe { k::sluice_skb_free(self.0.as_ptr()) }
    }
}

/// A receive skb being filled: delivered ([`RxSkb::deliver`]) or freed on drop.
#[derive(Debug)]
pub struct RxSkb {
    skb: NonNull<k::sk_buff>,
    len: usize,
}

// SAFETY: an skb we own.
unsafe impl Send for RxSkb {}

impl RxSkb {
    /// Fills its bytes part by part: `f(offset, part)` for each part (the linear head,
    /// then page fragments) in order, `offset` being the part's place in the packet;
    /// stops at the first `false`. True when every part was filled, and the parts
    /// covered exactly the packet's length.
    pub fn fill(&mut self, mut f: impl FnMut(usize, &mut [u8]) -> bool) -> bool {
        // SAFETY: an skb we own.
        let n = unsafe { k::sluice_skb_parts(self.skb.as_ptr()) };
        let mut at = 0;
        for i in 0..n {
            let mut len: c_uint = 0;
            // SAFETY: an skb we own; `i` is within its parts.
            let p = unsafe { k::sluice_skb_part(self.skb.as_ptr(), i, &mut len) };
            let Some(p) = NonNull::new(p.cast_mut()) else {
                return false;
            };
            // SAFETY: `len` bytes of the head or of a page fragment `rx_alloc` allocated
            // for this skb alone (mapped: no highmem on x86-64); nothing else reaches
            // them until the skb is delivered, and `&mut self` keeps the slice from
            // outliving this call.
            let part = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len as usize) };
            if !f(at, part) {
                return false;
            }
            at += len as usize;
        }
        at == self.len
    }

    /// Hands it to the stack from `queue`'s NAPI poll (`napi_gro_receive`; call only
    /// there, with no lock the transmit takes held), with its checksum state and the
    /// segmentation the sender left (0: none, else (is IPv6, segment size)).
    pub fn deliver(self, nd: &NetDev, queue: u32, csum: RxCsum, gso: Option<(bool, u16)>) {
        let skb = self.skb;
        core::mem::forget(self);
        let csum = match csum {
            RxCsum::None => 0,
            RxCsum::Unnecessary => 1,
            RxCsum::Partial => 2,
        };
        let (t, size) = match gso {
            None => (0, 0),
            Some((false, s)) => (1, s),
            Some((true, s)) => (2, s),
        };
        // SAFETY: an skb we own, handed over once.
        unsafe {
            k::sluice_net_rx_deliver(nd.0.as_ptr(), skb.as_ptr(), queue, csum, t, size as c_uint)
        }
    }
}

impl Drop for RxSkb {
    fn drop(&mut self) {
        // SAFETY: an skb we own, never delivered, freed once.
        unsafe { k::sluice_skb_free(self.skb.as_ptr()) }
    }
}

/// For [`net_driver!`]: the transmit. 0: the skb was taken; 1: given back.
///
/// # Safety
/// `ctx` is the slot the net device was created with, of driver `D`; `skb` an skb the
/// caller hands over (BH disabled).
pub unsafe fn xmit<D: NetDriver>(
    ctx: *mut core::ffi::c_void,
    queue: c_uint,
    skb: *mut k::sk_buff,
) -> c_int {
    let Some(skb) = NonNull::new(skb).map(TxSkb) else {
        return 0;
    };
    // SAFETY: the caller's contract.
    let Some(d) = (unsafe { Slot::enter::<D>(ctx as *const Slot) }) else {
        return 0; // `skb` dropped: freed
    };
    match d.xmit(queue, skb) {
        Ok(()) => 0,
        Err(skb) => {
            core::mem::forget(skb); // the stack keeps it
            1
        }
    }
}

/// For [`net_driver!`]: a queue's NAPI poll.
///
/// # Safety
/// `ctx` is the slot the net device was created with, of driver `D`.
pub unsafe fn poll<D: NetDriver>(
    ctx: *mut core::ffi::c_void,
    queue: c_uint,
    budget: c_int,
) -> c_int {
    let budget = usize::try_from(budget).unwrap_or(0);
    // SAFETY: the caller's contract.
    match unsafe { Slot::enter::<D>(ctx as *const Slot) } {
        Some(d) => d.poll(queue, budget).min(budget) as c_int,
        None => 0,
    }
}

/// For [`net_driver!`]: the watchdog's work item.
///
/// # Safety
/// As [`poll`].
pub unsafe fn tx_timeout<D: NetDriver>(ctx: *mut core::ffi::c_void, queue: c_uint) {
    // SAFETY: the caller's contract.
    if let Some(d) = unsafe { Slot::enter::<D>(ctx as *const Slot) } {
        d.tx_timeout(queue);
    }
}

/// For [`net_driver!`]: the fault work item.
///
/// # Safety
/// As [`poll`].
pub unsafe fn fault<D: NetDriver>(ctx: *mut core::ffi::c_void) {
    // SAFETY: the caller's contract.
    if let Some(d) = unsafe { Slot::enter::<D>(ctx as *const Slot) } {
        d.fault();
    }
}

/// Generates the entry points `kbuild/common/sluice_net.c` calls, for driver data `$d`.
#[macro_export]
macro_rules! net_driver {
    ($d:ty) => {
        /// The transmit (kbuild/common/sluice_net.c).
        ///
        /// # Safety
        /// `ctx` is the slot the net device was created with; `skb` is handed over.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_net_tx(
            ctx: *mut core::ffi::c_void,
            queue: core::ffi::c_uint,
            skb: *mut $crate::bindings::sk_buff,
        ) -> core::ffi::c_int {
            // SAFETY: forwarded contract.
            unsafe { $crate::net::xmit::<$d>(ctx, queue, skb) }
        }
        /// A queue's NAPI poll (kbuild/common/sluice_net.c).
        ///
        /// # Safety
        /// `ctx` is the slot the net device was created with.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_net_poll(
            ctx: *mut core::ffi::c_void,
            queue: core::ffi::c_uint,
            budget: core::ffi::c_int,
        ) -> core::ffi::c_int {
            // SAFETY: forwarded contract.
            unsafe { $crate::net::poll::<$d>(ctx, queue, budget) }
        }
        /// The transmit watchdog's work item (kbuild/common/sluice_net.c).
        ///
        /// # Safety
        /// As `sluice_net_poll`.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_net_tx_timeout(
            ctx: *mut core::ffi::c_void,
            queue: core::ffi::c_uint,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::net::tx_timeout::<$d>(ctx, queue) }
        }
        /// The fault work item (kbuild/common/sluice_net.c).
        ///
        /// # Safety
        /// As `sluice_net_poll`.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_net_fault(ctx: *mut core::ffi::c_void) {
            // SAFETY: forwarded contract.
            unsafe { $crate::net::fault::<$d>(ctx) }
        }
    };
}
