//! sluice-blkfront.ko: the Xen virtual block device frontend as a blk-mq driver, its
//! logic in `sluice-blkfront-core`.
//!
//! The C shim registers the xenbus driver for "vbd" and the blk-mq ops and calls the
//! `extern "C"` entry points below. All frontend state sits behind one mutex per device
//! (process context only: xenbus callbacks run in xenwatch, event-channel interrupts
//! queue a work item, and the blk-mq queues are BLOCKING); I/O completions are handed to
//! blk-mq after the mutex is released.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_uint, c_void};
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    BlockIo, Event, Frontend, FrontendConfig, IoError, IoOp, IoSegment, SubmitError, Timeout,
};
use sluice_kernel::bindings as k;
use sluice_kernel::sync::{msleep, Mutex};
use sluice_kernel::xen::{DataPage, XenPlatform, XenbusDevice};
use sluice_kernel::{pr_err, pr_info, pr_warn};

const PAGE: usize = 4096;

struct DevState {
    front: Frontend<XenPlatform, usize>,
    plat: XenPlatform,
    disk: *mut k::gendisk,
    name: String,
    first_minor: c_int,
    /// xenwatch is adding the disk (the mutex is not held: the partition scan does I/O).
    creating: bool,
    /// remove has begun: no disk is created any more.
    removing: bool,
}

/// One vbd. Lives from probe to remove, owned by the xenbus device's drvdata.
struct Device {
    state: Mutex<DevState>,
}

impl Device {
    fn lock(&self) -> sluice_kernel::sync::Guard<'_, DevState> {
        self.state.lock()
    }
}

type Completions = Vec<(usize, Result<(), IoError>)>;

fn finish(done: Completions) {
    for (rq, r) in done {
        let code = match r {
            Ok(()) => 0,
            Err(IoError::NotSupported) => 1,
            Err(_) => 2,
        };
        // SAFETY: `rq` is a request this driver started and has not ended: the core
        // completes each submitted I/O exactly once.
        unsafe { k::sbf_rq_end(rq as *mut k::request, code) };
    }
}

/// `xvd<letter>` and the first minor for a `virtual-device` number, as Linux names
/// Xen disks (`202 << 8 | disk << 4`, or the extended `1 << 28 | disk << 8` form).
fn disk_name(vdev: u32) -> Option<(String, c_int)> {
    let index = if vdev & (1 << 28) != 0 {
        (vdev >> 8) & 0xfffff
    } else if vdev >> 8 == 202 {
        (vdev >> 4) & 0xf
    } else {
        return None;
    };
    if index >= 26 {
        return None;
    }
    let mut name = String::from("xvd");
    name.push((b'a' + index as u8) as char);
    Some((name, index as c_int * 16))
}

/// xenbus probe: a new vbd.
/// # Safety
/// Called by the C shim with a live xenbus device.
#[no_mangle]
pub unsafe extern "C" fn sluice_blkfront_probe(dev: *mut k::xenbus_device) -> c_int {
    // SAFETY: xenbus passes a live device, bound to us until remove returns.
    let Some(xdev) = (unsafe { XenbusDevice::from_raw(dev) }) else {
        return -22;
    };
    let (nodename, otherend, otherend_id) = (xdev.nodename(), xdev.otherend(), xdev.otherend_id());
    let vdev: u32 = nodename
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    let Some((name, first_minor)) = disk_name(vdev) else {
        pr_err!("sluice-blkfront: {nodename}: unsupported virtual-device {vdev}");
        return -22;
    };
    let front = match Frontend::new(&nodename, &otherend, otherend_id, FrontendConfig::default()) {
        Ok(f) => f,
        Err(e) => {
            pr_err!("sluice-blkfront: {nodename}: {e}");
            return -22;
        }
    };
    let Some(state) = Mutex::new(DevState {
        front,
        plat: XenPlatform::new(xdev, c"sluice-blkfront"),
        disk: core::ptr::null_mut(),
        name,
        first_minor,
        creating: false,
        removing: false,
    }) else {
        return -12;
    };
    let raw = Box::into_raw(Box::new(Device { state }));
    // SAFETY: `raw` is the live device we just leaked; nothing else sees it yet.
    let d = unsafe { &*raw };
    {
        let mut g = d.lock();
        let s = &mut *g;
        // The channels' work items get the device; remove frees them before it.
        s.plat.set_event_context(raw.cast());
        let DevState { front, plat, .. } = s;
        if let Err(e) = front.start(plat) {
            pr_err!("sluice-blkfront: {nodename}: {e}");
        }
    }
    // drvdata owns `raw` until remove.
    xdev.set_drvdata(raw.cast());
    pr_info!("sluice-blkfront: {nodename}: probed (backend {otherend})");
    0
}

fn device_of<'a>(dev: *mut k::xenbus_device) -> Option<&'a Device> {
    // SAFETY: the C shim passes the live device of a callback.
    let xdev = unsafe { XenbusDevice::from_raw(dev) }?;
    // SAFETY: drvdata is null or the `Device` leaked in probe, freed only in remove
    // (after which xenbus calls nothing on this device).
    unsafe { (xdev.drvdata() as *const Device).as_ref() }
}

/// xenbus `otherend_changed`.
/// # Safety
/// Called by the C shim with a live, probed xenbus device.
#[no_mangle]
pub unsafe extern "C" fn sluice_blkfront_backend_changed(dev: *mut k::xenbus_device, state: c_int) {
    let Some(d) = device_of(dev) else { return };
    let state = XenbusState::try_from(state as u32).unwrap_or(XenbusState::Unknown);
    let mut done = Completions::new();
    let (event, params) = {
        let mut g = d.lock();
        let s = &mut *g;
        let DevState { front, plat, .. } = s;
        let r = front.backend_changed(plat, state, |rq, res| done.push((rq, res)));
        let queues = front.queues() as c_uint;
        let max_segments = front.max_segments() as c_uint;
        match r {
            Ok(ev) => (ev, (queues, max_segments, s.disk)),
            Err(e) => {
                pr_err!("sluice-blkfront: {}: connecting failed: {e}", s.name);
                (Event::Failed, (0, 0, s.disk))
            }
        }
    };
    finish(done);
    let (queues, max_segments, disk) = params;
    match event {
        Event::Connected(info) if disk.is_null() => {
            let mut p = k::sbf_disk_params {
                sectors: info.sectors,
                logical_block_size: info.sector_size,
                physical_block_size: info.physical_sector_size,
                nr_queues: queues,
                queue_depth: 32,
                max_segments,
                discard_granularity: info
                    .discard
                    .map_or(0, |di| di.granularity.max(info.sector_size)),
                secure_erase: info.discard.is_some_and(|di| di.secure),
                write_cache: info.flush.is_some(),
                readonly: info.info.contains(sluice_abi::blkif::VdiskInfo::READONLY),
                ..Default::default()
            };
            let (name, first_minor) = {
                let mut g = d.lock();
                let s = &mut *g;
                if s.removing {
                    return;
                }
                // remove waits for this to be cleared before it destroys the disk and
                // frees the device.
                s.creating = true;
                (s.name.clone(), s.first_minor)
            };
            p.first_minor = first_minor;
            for (dst, src) in p.name.iter_mut().zip(name.bytes().take(31)) {
                *dst = src as c_char;
            }
            let mut err: c_int = 0;
            // SAFETY: `dev` is live; `d` outlives the disk (destroyed in remove first).
            let gd = unsafe {
                k::sbf_disk_create(dev, (d as *const Device) as *mut c_void, &p, &mut err)
            };
            {
                let mut g = d.lock();
                let s = &mut *g;
                s.creating = false;
                s.disk = gd;
            }
            if gd.is_null() {
                pr_err!("sluice-blkfront: {name}: cannot create the disk: {err}");
                return;
            }
            pr_info!(
                "sluice-blkfront: {name}: {} sectors, {queues} queue(s), {max_segments} segments/request",
                info.sectors
            );
        }
        Event::Connected(_) => {
            // Reconnected: held I/O was resent; wake the queues.
            // SAFETY: the disk lives until remove.
            unsafe { k::sbf_disk_run_queues(disk) };
        }
        Event::Resized { sectors } if !disk.is_null() => {
            // SAFETY: the disk lives until remove.
            unsafe { k::sbf_disk_set_capacity(disk, sectors) };
        }
        Event::Disconnected { held } => {
            pr_warn!("sluice-blkfront: backend closed, {held} request(s) held for a reconnect");
        }
        Event::Failed => {
            pr_err!("sluice-blkfront: device failed; its I/O fails from now on");
        }
        _ => {}
    }
}

/// xenbus `remove`: detach or module unload.
/// # Safety
/// Called by the C shim with a live, probed xenbus device, once.
#[no_mangle]
pub unsafe extern "C" fn sluice_blkfront_remove(dev: *mut k::xenbus_device) {
    let Some(d) = device_of(dev) else { return };
    let mut done = Completions::new();
    {
        let mut g = d.lock();
        let s = &mut *g;
        s.removing = true;
        let DevState { front, plat, .. } = s;
        front.shutdown(plat, |rq, res| done.push((rq, res)));
    }
    finish(done);
    // A disk xenwatch is still adding (its partition scan's I/O has just failed, or
    // fails at once now that the device is shut down): wait for it, it is ours to
    // destroy.
    let (disk, channels) = loop {
        {
            let mut g = d.lock();
            let s = &mut *g;
            if !s.creating {
                let disk = core::mem::replace(&mut s.disk, core::ptr::null_mut());
                break (disk, s.plat.take_closed());
            }
        }
        // Process context (xenbus remove), no lock held.
        msleep(20);
    };
    if !disk.is_null() {
        // SAFETY: created in backend_changed, destroyed once here; queue_rq now fails
        // every request (the frontend is shut down).
        unsafe { k::sbf_disk_destroy(disk) };
    }
    for ch in channels {
        // Waits for their work items (not holding the mutex).
        ch.free();
    }
    // SAFETY: the live device of this callback.
    if let Some(xdev) = unsafe { XenbusDevice::from_raw(dev) } {
        xdev.set_drvdata(core::ptr::null_mut());
    }
    // SAFETY: free what probe leaked; nothing references it now (drvdata detached,
    // the disk and the channels' work items gone).
    drop(unsafe { Box::from_raw(d as *const Device as *mut Device) });
}

/// An event channel fired (work item, process context).
/// # Safety
/// `ctx` is the `Device` a channel was bound with, not yet removed.
#[no_mangle]
pub unsafe extern "C" fn sluice_xen_event(ctx: *mut c_void, queue: c_uint) {
    // SAFETY: `ctx` is the `Device`, alive until remove frees the channels first.
    let d = unsafe { &*(ctx as *const Device) };
    let mut done = Completions::new();
    let (r, disk, name) = {
        let mut g = d.lock();
        let s = &mut *g;
        let DevState {
            front,
            plat,
            disk,
            name,
            ..
        } = s;
        let r = front.handle_event(plat, queue as usize, |rq, res| done.push((rq, res)));
        // The name only for the log line of a failure.
        let name = if r.is_err() {
            name.clone()
        } else {
            String::new()
        };
        (r, *disk, name)
    };
    let completed = !done.is_empty();
    let failed = done.len();
    finish(done);
    if let Err(e) = r {
        pr_err!(
            "sluice-blkfront: {name}: backend broke the protocol: {e}; device failed, {failed} request(s) completed"
        );
    }
    if completed && !disk.is_null() {
        // SAFETY: the disk lives until remove.
        unsafe { k::sbf_disk_run_queues(disk) };
    }
}

/// blk-mq `queue_rq`.
/// # Safety
/// `ctx` is the disk's `Device`; `rq` a live request blk-mq has not started.
#[no_mangle]
pub unsafe extern "C" fn sluice_blkfront_queue_rq(
    ctx: *mut c_void,
    queue: c_uint,
    rq: *mut k::request,
) -> u8 {
    // SAFETY: `ctx` is the `Device` (the disk's queuedata), alive until after the disk
    // is destroyed.
    let d = unsafe { &*(ctx as *const Device) };
    // SAFETY: reading constants.
    let (ok, resource, ioerr, notsupp) = unsafe {
        (
            k::sbf_sts_ok,
            k::sbf_sts_resource,
            k::sbf_sts_ioerr,
            k::sbf_sts_notsupp,
        )
    };
    let mut sector: u64 = 0;
    let mut nr: c_uint = 0;
    // SAFETY: `rq` is the live request blk-mq hands us.
    let kind = unsafe { k::sbf_rq_info(rq, &mut sector, &mut nr) } as u32;
    let max = d.lock().front.max_segments();
    let mut segments = Vec::new();
    let op = match kind {
        k::sbf_rq_kind_SBF_RQ_READ | k::sbf_rq_kind_SBF_RQ_WRITE => {
            let mut addr = alloc::vec![0 as core::ffi::c_ulong; max + 1];
            let mut len = alloc::vec![0 as c_uint; max + 1];
            // SAFETY: arrays of `max + 1` entries; the request is live.
            let n = unsafe {
                k::sbf_rq_segments(rq, addr.as_mut_ptr(), len.as_mut_ptr(), max as c_uint)
            } as usize;
            if n > max {
                return ioerr;
            }
            for i in 0..n {
                let a = addr[i] as usize;
                let l = len[i] as usize;
                let off = a % PAGE;
                if !off.is_multiple_of(512) || !l.is_multiple_of(512) || l == 0 || off + l > PAGE {
                    return ioerr;
                }
                segments.push(IoSegment {
                    // SAFETY: a block-layer page of this request (page_address of its
                    // bio_vec), mapped and ours to copy while the request is
                    // outstanding, which is when the core copies.
                    page: unsafe { DataPage::new(a - off) },
                    first_sect: (off / 512) as u8,
                    last_sect: ((off + l) / 512 - 1) as u8,
                });
            }
            if kind == k::sbf_rq_kind_SBF_RQ_READ {
                IoOp::Read
            } else {
                IoOp::Write
            }
        }
        k::sbf_rq_kind_SBF_RQ_FLUSH => IoOp::Flush,
        k::sbf_rq_kind_SBF_RQ_DISCARD => IoOp::Discard {
            nr_sectors: nr as u64,
            secure: false,
        },
        k::sbf_rq_kind_SBF_RQ_SECURE_ERASE => IoOp::Discard {
            nr_sectors: nr as u64,
            secure: true,
        },
        _ => return notsupp,
    };
    let io = BlockIo {
        op,
        sector,
        segments,
    };
    // SAFETY: the request is live and not started.
    unsafe { k::sbf_rq_start(rq) };
    let mut g = d.lock();
    let s = &mut *g;
    let DevState { front, plat, .. } = s;
    let q = queue as usize % front.queues().max(1);
    match front.submit(plat, q, rq as usize, io) {
        Ok(()) => ok,
        Err((SubmitError::RingFull, _, _)) | Err((SubmitError::NoResources(_), _, _)) => resource,
        Err((SubmitError::Unsupported, _, _)) => notsupp,
        Err(_) => ioerr,
    }
}

/// blk-mq `timeout` (its timeout work, process context): `rq` has waited
/// `io_timeout` seconds for the backend. Returns true when the device failed and every
/// outstanding request, `rq` included, was ended here; false when the core has no
/// record of `rq` (its completion is on the way, or `queue_rq` has not submitted it
/// yet), so the C side re-arms its timer and nothing is ended twice.
/// # Safety
/// `ctx` is the disk's `Device`; `rq` a request of that disk blk-mq holds a reference
/// to for this call.
#[no_mangle]
pub unsafe extern "C" fn sluice_blkfront_timeout(ctx: *mut c_void, rq: *mut k::request) -> bool {
    // SAFETY: `ctx` is the `Device` (the disk's queuedata); remove destroys the disk,
    // which stops blk-mq's timeout work, before it frees the device.
    let d = unsafe { &*(ctx as *const Device) };
    let mut done = Completions::new();
    let (outcome, name) = {
        let mut g = d.lock();
        let s = &mut *g;
        let DevState {
            front, plat, name, ..
        } = s;
        let outcome = front.timed_out(plat, &(rq as usize), &mut |t, r| done.push((t, r)));
        (outcome, name.clone())
    };
    match outcome {
        Timeout::NotOutstanding => {
            finish(done);
            false
        }
        Timeout::DeviceFailed { in_flight, held } => {
            // SAFETY: reads a module parameter.
            let secs = unsafe { k::sbf_io_timeout_secs() };
            pr_err!(
                "sluice-blkfront: {name}: I/O timed out: no answer from the backend in {secs} s; device failed, {in_flight} request(s) in flight and {held} held completed with an error"
            );
            finish(done);
            true
        }
    }
}
