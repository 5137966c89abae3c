//! xenvbd.sys: Sluice's Storport virtual miniport for a Xen virtual block device (one
//! adapter per `SLUICEXEN\VBD` child of xenbus.sys, one disk at target 0 LUN 0).
//!
//! HwFindAdapter (PASSIVE_LEVEL) queries xenbus' bus interface from the device below
//! (`IRP_MN_QUERY_INTERFACE`), builds `blkfront-core`'s frontend over it
//! (`WinPlatform`: grants, event channels and xenstore through the bus, pages from
//! non-paged pool, data copied through bounce pages) and publishes Initialising; then
//! a watch on the backend's `state` drives the negotiation (`Disk::backend_changed`, at
//! PASSIVE_LEVEL, with the disk taken out of the adapter lock meanwhile: SRBs get BUSY)
//! and tells Storport to rescan when the disk appears or goes. HwStartIo hands each
//! SRB to `sluice_xenvbd_core::disk`, which answers it or sends its blkif requests;
//! completions come from the event channel callback (the bus DPC) and complete the
//! SRBs there.
//!
//! Device logic only: every `unsafe` is in `sluice-wdm`; the decisions are
//! `sluice-xenvbd-core`'s and `blkfront-core`'s, host-tested.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use sluice_abi::types::EvtchnPort;
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{Event, Frontend, FrontendConfig};
use sluice_wdm::busif::BusHandle;
use sluice_wdm::child::ChildKernel;
use sluice_wdm::registry::Registry;
use sluice_wdm::storport::{self, AdapterRef, Limits, LowerDevice, Miniport, Srb};
use sluice_wdm::xen::WorkItem;
use sluice_wdm::{log, NtStatus};
use sluice_xenbus_core::iface::BusInterface;
use sluice_xenbus_core::platform::WinPlatform;
use sluice_xenbus_core::unplug_request::{self, Class};
use sluice_xenbus_core::watches::WatchId;
use sluice_xenvbd_core::disk::{Disk, Outcome, Request};
use sluice_xenvbd_core::srb::{status, Completion};
use sluice_xenvbd_core::MAX_UNMAP_DESCRIPTORS;

/// Largest transfer reported to Storport: 32 pages (128 KiB), the SG elements of one
/// SRB bounded accordingly.
const MAX_TRANSFER: u32 = 128 * 1024;
/// The longest UNMAP parameter list read (header + the descriptors accepted).
const UNMAP_LIST_MAX: usize = 8 + 16 * MAX_UNMAP_DESCRIPTORS;

type Plat = WinPlatform<ChildKernel>;

/// A PV disk failed to start or was failed in this boot: no disk proves itself for
/// the unplug at the next boot (`unplug_request`).
static FAILED_THIS_BOOT: AtomicBool = AtomicBool::new(false);

/// A PV disk failed (PASSIVE_LEVEL): the emulated disks stay at the next boot.
fn record_failure() {
    FAILED_THIS_BOOT.store(true, Ordering::Release);
    if !unplug_request::failed(&mut Registry, Class::Disks) {
        log!("xenvbd: could not clear the disk unplug request");
    }
}

/// One adapter.
#[derive(Default)]
struct Adapter {
    bus: Option<Arc<BusHandle>>,
    plat: Option<Plat>,
    disk: Option<Disk<Plat, Srb>>,
    /// The disk is out for a backend state change (SRBs get BUSY meanwhile).
    changing: bool,
    watch: Option<WatchId>,
    /// PASSIVE_LEVEL work the DPC or a reset leaves ([`passive_work`]).
    work: Option<WorkItem>,
    /// A backend I/O succeeded: the unplug request is to be recorded (once).
    proved: bool,
    prove_pending: bool,
}

fn finish(srb: Srb, c: &Completion) {
    srb.complete(
        c.srb_status,
        c.scsi_status,
        &c.data,
        c.sense.as_ref().map(|s| &s[..]),
    );
}

fn limits() -> Limits {
    Limits {
        max_transfer: MAX_TRANSFER,
        // An unaligned buffer of MAX_TRANSFER bytes spans one page more.
        max_breaks: MAX_TRANSFER / 4096 + 1,
    }
}

impl Adapter {
    /// Queue `q`'s responses: complete the SRBs that are done.
    fn drain(&mut self, q: usize) {
        let (Some(plat), Some(disk)) = (self.plat.as_mut(), self.disk.as_mut()) else {
            return;
        };
        let (done, err) = disk.on_event(plat, q);
        if let Some(e) = err {
            log!("xenvbd: backend broke the protocol, device failed: {}", e);
        }
        let ok = done.iter().any(|(_, c)| c.srb_status == status::SUCCESS);
        for (s, c) in done {
            finish(s, &c);
        }
        if ok && !self.proved {
            self.proved = true;
            self.prove_pending = true;
        }
        if self.prove_pending || disk.failure_unpublished() {
            if let Some(w) = &self.work {
                w.queue();
            }
        }
    }
}

impl Miniport for Adapter {
    fn find_adapter(&mut self, lower: LowerDevice, me: AdapterRef) -> Option<Limits> {
        let bus = match lower.query_bus() {
            Ok(b) => Arc::new(b),
            Err(s) => {
                log!("xenvbd: no xenbus interface below ({:#x}): not found", s);
                record_failure();
                return None;
            }
        };
        log!(
            "xenvbd: {} -> {} (domain {})",
            bus.frontend_path(),
            bus.backend_path(),
            bus.backend_domid().0
        );
        let mut plat =
            WinPlatform::new(ChildKernel::new(bus.clone(), storport::event_callback(me)));
        let front = Frontend::new(
            bus.frontend_path(),
            bus.backend_path(),
            bus.backend_domid(),
            FrontendConfig::default(),
        );
        let mut front = match front {
            Ok(f) => f,
            Err(e) => {
                log!("xenvbd: {}: {}", bus.frontend_path(), e);
                record_failure();
                return None;
            }
        };
        if let Err(e) = front.start(&mut plat) {
            log!("xenvbd: publishing Initialising: {}", e);
            record_failure();
            return None;
        }
        self.bus = Some(bus);
        self.plat = Some(plat);
        self.disk = Some(Disk::new(front));
        Some(limits())
    }

    fn limits(&self) -> Limits {
        limits()
    }

    fn start_io(&mut self, srb: Srb) {
        let (Some(plat), Some(disk)) = (self.plat.as_mut(), self.disk.as_mut()) else {
            let st = if self.changing {
                status::BUSY
            } else {
                status::NO_DEVICE
            };
            return srb.complete(st, 0, &[], None);
        };
        let mut cdb = [0u8; 16];
        let n = srb.cdb().len();
        cdb[..n].copy_from_slice(srb.cdb());
        let sg = srb.data_pages();
        let mut param = [0u8; UNMAP_LIST_MAX];
        let plen = if cdb[0] == 0x42 {
            srb.read_data(&mut param)
        } else {
            0
        };
        let req = Request {
            function: srb.function,
            address: srb.address,
            cdb: &cdb[..n],
            data_len: srb.data_len(),
            sg: &sg,
            param: &param[..plen],
        };
        match disk.start_io(plat, srb, &req) {
            Outcome::Complete(s, c) => finish(s, &c),
            Outcome::Sent => {}
        }
    }

    fn port_event(&mut self, port: u32) {
        let q = self
            .plat
            .as_ref()
            .and_then(|p| p.queue_of(EvtchnPort(port)));
        if let Some(q) = q {
            self.drain(q);
        }
    }

    fn reset_bus(&mut self) {
        let (Some(plat), Some(disk)) = (self.plat.as_mut(), self.disk.as_mut()) else {
            return;
        };
        let done = disk.reset(plat);
        if !done.is_empty() {
            log!(
                "xenvbd: Storport reset with {} SRBs in flight: device failed",
                done.len()
            );
        }
        for (s, c) in done {
            finish(s, &c);
        }
        if disk.failure_unpublished() {
            if let Some(w) = &self.work {
                w.queue();
            }
        }
    }

    fn as_any(&mut self) -> &mut dyn core::any::Any {
        self
    }
}

impl Drop for Adapter {
    /// HwFreeAdapterResources (PASSIVE_LEVEL): the watch removed, the device shut
    /// down (SRBs in flight fail, ports closed, grants ended), then the interface
    /// dereferenced (the last `Arc` of the bus handle).
    fn drop(&mut self) {
        if let (Some(bus), Some(id)) = (self.bus.as_ref(), self.watch.take()) {
            bus.unwatch(id);
        }
        if let (Some(plat), Some(disk)) = (self.plat.as_mut(), self.disk.as_mut()) {
            for (s, c) in disk.shutdown(plat) {
                finish(s, &c);
            }
        }
    }
}

type Taken = (Arc<BusHandle>, Plat, Disk<Plat, Srb>);

/// Takes the disk out of the adapter for work at PASSIVE_LEVEL without its spin lock
/// (SRBs get BUSY meanwhile).
fn take_disk(me: AdapterRef) -> Option<Taken> {
    storport::with_miniport::<Adapter, _>(me, |a| {
        let bus = a.bus.clone()?;
        let plat = a.plat.take()?;
        let Some(disk) = a.disk.take() else {
            a.plat = Some(plat);
            return None;
        };
        a.changing = true;
        Some((bus, plat, disk))
    })
    .flatten()
}

/// Puts the disk back, completes `done` and drains the events that came meanwhile;
/// false if the adapter was freed meanwhile (the disk is then shut down here).
fn put_back(
    me: AdapterRef,
    plat: Plat,
    disk: Disk<Plat, Srb>,
    done: Vec<(Srb, Completion)>,
) -> bool {
    let queues = disk.front().queues();
    let mut back = Some((plat, disk, done));
    storport::with_miniport::<Adapter, _>(me, |a| {
        let (plat, disk, done) = back.take().expect("once");
        a.plat = Some(plat);
        a.disk = Some(disk);
        a.changing = false;
        for (s, c) in done {
            finish(s, &c);
        }
        for q in 0..queues {
            a.drain(q);
        }
    });
    if let Some((mut plat, mut disk, done)) = back {
        for (s, c) in done.into_iter().chain(disk.shutdown(&mut plat)) {
            finish(s, &c);
        }
        return false;
    }
    true
}

/// The adapter's work item (PASSIVE_LEVEL): publishes the Closed state of a device
/// failed in the event DPC or by a reset (xenstore is refused at DISPATCH_LEVEL), and
/// records the proof (connected, an I/O completed) or the failure for the unplug at
/// the next boot.
fn passive_work(me: AdapterRef) {
    let prove =
        storport::with_miniport::<Adapter, _>(me, |a| core::mem::take(&mut a.prove_pending))
            .unwrap_or(false);
    let failed = storport::with_miniport::<Adapter, _>(me, |a| {
        a.disk.as_ref().is_some_and(|d| d.failure_unpublished())
    })
    .unwrap_or(false);
    if failed {
        record_failure();
        if let Some((_bus, mut plat, mut disk)) = take_disk(me) {
            let done = disk.publish_failure(&mut plat);
            put_back(me, plat, disk, done);
        }
    } else if prove {
        let failed_before = FAILED_THIS_BOOT.load(Ordering::Acquire);
        if unplug_request::proved(&mut Registry, Class::Disks, failed_before) {
            log!("xenvbd: PV disk proved: emulated disks unplugged from the next boot");
        }
    }
}

/// The bus' xenstore work item: the backend's state node changed (PASSIVE_LEVEL).
fn on_watch(me: AdapterRef, _id: u64) {
    let Some((bus, mut plat, mut disk)) = take_disk(me) else {
        return;
    };
    let state = bus
        .xs_read(0, &format!("{}/state", bus.backend_path()))
        .ok()
        .flatten()
        .and_then(|s| s.trim_end_matches('\0').parse::<XenbusState>().ok())
        // A missing or garbled state node reads as Closed, as Linux's xenbus does.
        .unwrap_or(XenbusState::Closed);
    let (r, done) = disk.backend_changed(&mut plat, state);
    if !put_back(me, plat, disk, done) {
        return;
    }
    match r {
        Ok(Event::Nothing) | Ok(Event::Initialised { .. }) => {}
        Ok(e) => {
            log!("xenvbd: {}: {:?}", bus.frontend_path(), e);
            storport::bus_changed(me);
        }
        Err(e) => {
            log!("xenvbd: {}: negotiation failed: {}", bus.frontend_path(), e);
            record_failure();
            storport::bus_changed(me);
        }
    }
}

/// A new adapter's state is installed: watch the backend's state (its first event
/// comes at once and starts the negotiation).
fn started(me: AdapterRef) {
    let mut work = Some(WorkItem::new(Box::new(move || passive_work(me))));
    let bus = storport::with_miniport::<Adapter, _>(me, |a| {
        // Swapped, not dropped, under the lock (a WorkItem's drop waits: PASSIVE only).
        core::mem::swap(&mut a.work, &mut work);
        a.bus.clone()
    })
    .flatten();
    drop(work);
    let Some(bus) = bus else {
        return;
    };
    match bus.watch(
        &format!("{}/state", bus.backend_path()),
        storport::watch_callback(me),
    ) {
        Ok(id) => {
            storport::with_miniport::<Adapter, _>(me, |a| a.watch = Some(id));
        }
        Err(e) => log!("xenvbd: watching the backend: {}", e),
    }
}

fn new_adapter() -> Box<dyn Miniport> {
    Box::new(Adapter::default())
}

fn init(driver: sluice_wdm::Driver) -> NtStatus {
    log!("xenvbd: Sluice xenvbd {} loaded", env!("CARGO_PKG_VERSION"));
    let s = storport::initialize(&driver, new_adapter, started, on_watch);
    if s != sluice_wdm::STATUS_SUCCESS {
        log!("xenvbd: StorPortInitialize: {:#x}", s);
    }
    s
}

sluice_wdm::driver_entry!(init);
