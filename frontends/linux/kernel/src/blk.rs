//! blk-mq for a module without `unsafe`: [`Request`] and [`Disk`] handles over the
//! module's block shim (`sbf_*`, `kbuild/sluice-blkfront`), and [`blk_driver!`], which
//! generates the queue entry points. A disk's queuedata is its device's
//! [`Slot`](crate::xenbus::Slot), entered as the xenbus callbacks are.

use crate::bindings as k;
use crate::xen::{DataPage, XenbusDevice};
use crate::xenbus::{Slot, XenbusDriver};
use alloc::vec::Vec;
use core::ffi::{c_int, c_uint, c_ulong};
use core::ptr::NonNull;

pub use crate::bindings::sbf_disk_params as DiskParams;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RqKind {
    /// Read.
    Read,
    /// Write.
    Write,
    /// Cache flush.
    Flush,
    /// Discard.
    Discard,
    /// Secure erase.
    SecureErase,
    /// Anything else.
    Other,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RqResult {
    /// Done.
    Ok,
    /// Not supported (`BLK_STS_NOTSUPP`).
    NotSupported,
    /// I/O error.
    IoError,
}

/// Why `queue_rq` gives a request back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStatus {
    /// Out of resources: blk-mq retries later.
    Resource,
    /// Failed at once.
    IoError,
    /// Not supported.
    NotSupported,
}

/// Why [`Request::segments`] has none to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentsError {
    /// More segments than asked for.
    TooMany,
    /// An allocation failed (atomic context).
    NoMemory,
}

/// A block request blk-mq handed to `queue_rq`, owned by the driver until it ends it.
/// Not `Clone`: ending consumes it, so it is ended once.
#[derive(Debug, PartialEq, Eq)]
pub struct Request(NonNull<k::request>);

// SAFETY: a request may be ended from any context and CPU (`blk_mq_complete_request`).
unsafe impl Send for Request {}

impl Request {
    /// Kind, first 512-byte sector, length in sectors.
    pub fn info(&self) -> (RqKind, u64, u32) {
        let (mut sector, mut nr): (u64, c_uint) = (0, 0);
        // SAFETY: a live request (owned by this handle).
        let kind = unsafe { k::sbf_rq_info(self.0.as_ptr(), &mut sector, &mut nr) } as u32;
        let kind = match kind {
            k::sbf_rq_kind_SBF_RQ_READ => RqKind::Read,
            k::sbf_rq_kind_SBF_RQ_WRITE => RqKind::Write,
            k::sbf_rq_kind_SBF_RQ_FLUSH => RqKind::Flush,
            k::sbf_rq_kind_SBF_RQ_DISCARD => RqKind::Discard,
            k::sbf_rq_kind_SBF_RQ_SECURE_ERASE => RqKind::SecureErase,
            _ => RqKind::Other,
        };
        (kind, sector, nr)
    }

    /// Its data segments as (page, byte offset, length), each within one page (pieces
    /// contiguous inside a page merged, as the block layer counts segments);
    /// [`SegmentsError::TooMany`] when there are more than `max`. Allocates (atomically
    /// where the caller cannot sleep) arrays sized by the request's segment count.
    pub fn segments(&self, max: usize) -> Result<Vec<(DataPage, usize, usize)>, SegmentsError> {
        // SAFETY: the request is live.
        let hint = unsafe { k::sbf_rq_nr_phys_segments(self.0.as_ptr()) } as usize;
        let mut cap = hint.clamp(1, max.max(1));
        loop {
            let mut addr: Vec<c_ulong> = Vec::new();
            let mut len: Vec<c_uint> = Vec::new();
            if addr.try_reserve_exact(cap).is_err() || len.try_reserve_exact(cap).is_err() {
                return Err(SegmentsError::NoMemory);
            }
            addr.resize(cap, 0);
            len.resize(cap, 0);
            // SAFETY: arrays of `cap` entries; the request is live.
            let n = unsafe {
                k::sbf_rq_segments(
                    self.0.as_ptr(),
                    addr.as_mut_ptr(),
                    len.as_mut_ptr(),
                    cap as c_uint,
                )
            } as usize;
            if n > max {
                return Err(SegmentsError::TooMany);
            }
            if n > cap {
                cap = n;
                continue;
            }
            let mut out = Vec::new();
            if out.try_reserve_exact(n).is_err() {
                return Err(SegmentsError::NoMemory);
            }
            for i in 0..n {
                let a = addr[i] as usize;
                let off = a % 4096;
                // SAFETY: page_address of one of this request's bio_vec pages: mapped,
                // and the block layer's to lend us while the request is outstanding
                // (the handle is consumed when it ends).
                out.push((unsafe { DataPage::new(a - off) }, off, len[i] as usize));
            }
            return Ok(out);
        }
    }

    /// `blk_mq_start_request`.
    pub fn start(&self) {
        // SAFETY: a live request not yet started (queue_rq's).
        unsafe { k::sbf_rq_start(self.0.as_ptr()) }
    }

    /// Ends it (`blk_mq_complete_request`, then `blk_mq_end_request` in blk-mq's
    /// completion context): callable from a hard interrupt handler.
    pub fn end(self, result: RqResult) {
        let code = match result {
            RqResult::Ok => 0,
            RqResult::NotSupported => 1,
            RqResult::IoError => 2,
        };
        // SAFETY: a started request ended once (the handle is consumed).
        unsafe { k::sbf_rq_end(self.0.as_ptr(), code) }
    }
}

/// A gendisk with its blk-mq tag set; destroyed with [`Disk::destroy`].
#[derive(Debug)]
pub struct Disk(NonNull<k::gendisk>);

// SAFETY: the disk is used from any thread; `run_queues` from any context.
unsafe impl Send for Disk {}

impl Disk {
    /// Creates and adds the disk of `dev` (its queue callbacks enter `dev`'s slot).
    /// Process context; its partition scan does I/O, so no lock `queue_rq` takes may
    /// be held. The queues are not `BLOCKING`: `queue_rq` must not sleep.
    pub fn create(dev: XenbusDevice, params: &DiskParams) -> Result<Disk, c_int> {
        let mut err: c_int = 0;
        // SAFETY: `dev` is live; its drvdata is its slot (never freed), the disk's
        // queuedata.
        let gd = unsafe { k::sbf_disk_create(dev.raw(), dev.drvdata(), params, &mut err) };
        NonNull::new(gd).map(Disk).ok_or(err)
    }

    /// `set_capacity_and_notify`.
    pub fn set_capacity(&self, sectors: u64) {
        // SAFETY: a live disk.
        unsafe { k::sbf_disk_set_capacity(self.0.as_ptr(), sectors) }
    }

    /// Restarts its stopped queues (asynchronously; any context).
    pub fn run_queues(&self) {
        // SAFETY: a live disk.
        unsafe { k::sbf_disk_run_queues(self.0.as_ptr()) }
    }

    /// Deletes the disk (waits for its I/O and timeout work), then frees it.
    pub fn destroy(self) {
        // SAFETY: a live disk, destroyed once (consumed).
        unsafe { k::sbf_disk_destroy(self.0.as_ptr()) }
    }
}

/// The module parameter `io_timeout` of the block shim.
pub fn io_timeout_secs() -> u32 {
    // SAFETY: reads a module parameter.
    unsafe { k::sbf_io_timeout_secs() }
}

/// The module parameter `max_indirect_segments` of the block shim, as given.
pub fn max_indirect_segments_param() -> u32 {
    // SAFETY: reads a module parameter.
    unsafe { k::sbf_max_indirect_segments() }
}

/// A block driver's queue callbacks, on the xenbus driver's data.
pub trait BlkDriver: XenbusDriver {
    /// blk-mq `queue_rq` (atomic context: the queues are not `BLOCKING`, nothing here
    /// may sleep): `Ok` when the driver took the request (it ends it later through
    /// [`Request::end`]); otherwise it gives it back, unended, with the status.
    fn queue_rq(&self, queue: u32, rq: Request) -> Result<(), (QueueStatus, Request)>;
    /// blk-mq `timeout` for `rq`: true when the driver ended it (and failed the device),
    /// false to re-arm its timer.
    fn timeout(&self, rq: &Request) -> bool;
}

/// For [`blk_driver!`].
///
/// # Safety
/// `ctx` is a disk's queuedata (a slot of driver `D`); `rq` a live request blk-mq
/// hands to `queue_rq`.
pub unsafe fn queue_rq<D: BlkDriver>(
    ctx: *mut core::ffi::c_void,
    queue: c_uint,
    rq: *mut k::request,
) -> u8 {
    // SAFETY: reading constants.
    let (ok, resource, ioerr, notsupp) = unsafe {
        (
            k::sbf_sts_ok,
            k::sbf_sts_resource,
            k::sbf_sts_ioerr,
            k::sbf_sts_notsupp,
        )
    };
    let Some(rq) = NonNull::new(rq) else {
        return ioerr;
    };
    // SAFETY: the caller's contract.
    let Some(d) = (unsafe { Slot::enter::<D>(ctx as *const Slot) }) else {
        return ioerr;
    };
    match d.queue_rq(queue, Request(rq)) {
        Ok(()) => ok,
        Err((QueueStatus::Resource, _)) => resource,
        Err((QueueStatus::IoError, _)) => ioerr,
        Err((QueueStatus::NotSupported, _)) => notsupp,
    }
}

/// For [`blk_driver!`].
///
/// # Safety
/// `ctx` is a disk's queuedata (a slot of driver `D`); `rq` a request of that disk
/// blk-mq holds for this call.
pub unsafe fn timeout<D: BlkDriver>(ctx: *mut core::ffi::c_void, rq: *mut k::request) -> bool {
    let Some(rq) = NonNull::new(rq) else {
        return false;
    };
    // SAFETY: the caller's contract.
    let Some(d) = (unsafe { Slot::enter::<D>(ctx as *const Slot) }) else {
        return false;
    };
    // Borrowed only: the driver cannot end it through this handle.
    let rq = Request(rq);
    d.timeout(&rq)
}

/// Generates the blk-mq entry points of the block shim (`sluice_blk_queue_rq`,
/// `sluice_blk_timeout`) for driver data `$d`.
#[macro_export]
macro_rules! blk_driver {
    ($d:ty) => {
        /// blk-mq queue_rq (C shim).
        ///
        /// # Safety
        /// `ctx` is the disk's queuedata, `rq` a live request.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_blk_queue_rq(
            ctx: *mut core::ffi::c_void,
            queue: core::ffi::c_uint,
            rq: *mut $crate::bindings::request,
        ) -> u8 {
            // SAFETY: forwarded contract.
            unsafe { $crate::blk::queue_rq::<$d>(ctx, queue, rq) }
        }
        /// blk-mq timeout (C shim).
        ///
        /// # Safety
        /// `ctx` is the disk's queuedata, `rq` a request blk-mq holds.
        #[no_mangle]
        pub unsafe extern "C" fn sluice_blk_timeout(
            ctx: *mut core::ffi::c_void,
            rq: *mut $crate::bindings::request,
        ) -> bool {
            // SAFETY: forwarded contract.
            unsafe { $crate::blk::timeout::<$d>(ctx, rq) }
        }
    };
}
