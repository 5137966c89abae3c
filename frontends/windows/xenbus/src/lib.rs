//! xenbus.sys: Sluice's Xen platform bus driver for Windows (WDM PnP bus driver bound
//! to the Xen platform PCI device, `PCI\VEN_5853&DEV_0001` / `0002` / `C000`).
//!
//! At IRP_MN_START_DEVICE (after the PCI bus driver started the device): Xen is found by
//! CPUID; the hypercall page is
//! installed; shared_info and the grant frames are placed in the device's memory BAR
//! (`XENMEM_add_to_physmap`); Xen's event callback is routed to the device's interrupt
//! (`HVM_PARAM_CALLBACK_IRQ`, GSI); the xenstore ring is mapped and `device/vbd/*` and
//! `device/vif/*` become child devices (`SLUICEXEN\VBD`, `SLUICEXEN\VIF`).
//!
//! The unplug handshake runs earlier, in DriverEntry (boot start), see `unplug_at_boot`.
//!
//! Device logic only: every `unsafe` is in `sluice-wdm`; the hardware-independent logic
//! is `sluice-xenbus-core`'s, host-tested.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod child;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use child::{ChildBus, Handler, Hw, Shared, GRANTS_PER_CHILD};
use core::sync::atomic::{AtomicBool, Ordering};
use sluice_abi::hypercall::{HvmParam, XenMapSpace};
use sluice_front_seams::SeamError;
use sluice_wdm::pnp::{Bus, BusDevice, ChildDesc, Resources};
use sluice_wdm::registry::Registry;
use sluice_wdm::sync::{PassiveMutex, SpinLock};
use sluice_wdm::xen::{Event, GrantFrames, Hypercalls, Interrupt, IoMap, Ports};
use sluice_wdm::{
    log, NtStatus, STATUS_DEVICE_CONFIGURATION_ERROR, STATUS_NOT_SUPPORTED, STATUS_NO_SUCH_DEVICE,
};
use sluice_xenbus_core::bus::{child_info, BusFast, BusStore};
use sluice_xenbus_core::children::{self, Child};
use sluice_xenbus_core::grants::GrantEntries;
use sluice_xenbus_core::unplug::Outcome;
use sluice_xenbus_core::unplug_request::{self, Class};
use sluice_xenbus_core::{cpuid, evtchn};

/// Grant frames placed in the BAR after shared_info (512 entries each).
const GRANT_FRAMES: u64 = 32;
/// Fewer grant frames than this (Xen's `max_grant_frames` too small) fail the start.
const MIN_GRANT_FRAMES: u64 = 4;
/// The build number registered with the unplug protocol (major.minor.patch).
const BUILD: u32 = 0x0001_0000;

/// The owner of xenbus' own watch (children are 1, 2, ...).
const BUS_OWNER: u32 = 0;

/// A started bus.
struct Running {
    irq: Interrupt,
    handler: Arc<Handler>,
    /// Each child, and its bus interface when its backend is readable.
    children: Vec<(Child, Option<Arc<ChildBus>>)>,
    /// The next child's owner tag (never reused: a removed child's grants, ports
    /// and watches stay its own until its last reference goes).
    next_owner: u32,
}

impl Running {
    /// Reads `device/vbd` and `device/vif` again: adds the children that appeared and
    /// forgets those that went (their PDOs are then reported missing, see
    /// `sluice_wdm::pnp`; a gone child's bus interface lives on until its driver and
    /// PDO let go of it, then `ChildBus`' drop releases what it held).
    fn refresh(&mut self) -> Result<(), SeamError> {
        let shared = self.handler.shared.clone();
        // Declared before the lock, so dropped after it is released: the last
        // reference to a gone child's `ChildBus` takes the store lock in its drop.
        let mut gone = Vec::new();
        let mut st = shared.store.lock();
        let mut t = shared.transport();
        let found = children::enumerate(&mut st.xs, &mut t)?;
        let mut i = 0;
        while i < self.children.len() {
            if found.contains(&self.children[i].0) {
                i += 1;
            } else {
                let c = self.children.remove(i);
                log!("xenbus: child {} left xenstore", c.0.nodename());
                gone.push(c);
            }
        }
        for c in found {
            if self.children.iter().any(|(k, _)| *k == c) {
                continue;
            }
            self.next_owner += 1;
            let owner = self.next_owner;
            let iface = match child_info(&mut st.xs, &mut t, &c) {
                Ok(info) => {
                    log!(
                        "xenbus: child {} ({}), backend {} in domain {}",
                        c.nodename(),
                        c.kind.hardware_id(),
                        info.backend,
                        info.domid.0
                    );
                    Some(Arc::new(ChildBus {
                        handler: self.handler.clone(),
                        owner,
                        info,
                    }))
                }
                Err(e) => {
                    log!("xenbus: child {}: no usable backend ({})", c.nodename(), e);
                    None
                }
            };
            self.children.push((c, iface));
        }
        Ok(())
    }
}

/// The bus state of one platform device.
#[derive(Default)]
struct XenBus {
    running: Option<Running>,
}

/// dom0 blacklisted this build in the unplug handshake (DriverEntry): no PV devices.
static BLACKLISTED: AtomicBool = AtomicBool::new(false);

/// The unplug handshake, in DriverEntry (boot start: before the emulated storage
/// drivers bind), on the platform device's fixed ports 0x10/0x12 (QEMU's, not the
/// BAR's), on Xen only. What is unplugged is decided from the registry records the PV
/// drivers left (`sluice_xenbus_core::unplug_request`: only a class whose PV driver
/// proved itself, is boot start, and whose last unplugged boot was confirmed).
fn unplug_at_boot() {
    if cpuid::detect(sluice_wdm::hw::cpuid).is_none() {
        log!("xenbus: not a Xen HVM guest: no unplug handshake");
        return;
    }
    let r = unplug_request::boot(&mut Registry, &mut Ports(0), BUILD);
    log!(
        "xenbus: unplug: {:?}; disks {:?}, NICs {:?}",
        r.outcome,
        r.why[0],
        r.why[1]
    );
    if r.outcome == Outcome::Blacklisted {
        log!("xenbus: this build is blacklisted by dom0; PV devices not used");
        BLACKLISTED.store(true, Ordering::Release);
    }
}

fn start(res: &Resources, dev: BusDevice) -> Result<Running, NtStatus> {
    let x = cpuid::detect(sluice_wdm::hw::cpuid).ok_or_else(|| {
        log!("xenbus: no Xen CPUID leaves: not a Xen HVM guest");
        STATUS_NO_SUCH_DEVICE
    })?;
    log!(
        "xenbus: Xen {}.{} (CPUID base {:#x})",
        x.version.0,
        x.version.1,
        x.base
    );
    if BLACKLISTED.load(Ordering::Acquire) {
        return Err(STATUS_NOT_SUPPORTED);
    }
    let (bar, bar_len) = res.memory.ok_or(STATUS_DEVICE_CONFIGURATION_ERROR)?;
    if (bar_len as u64) < (1 + MIN_GRANT_FRAMES) * 4096 {
        return Err(STATUS_DEVICE_CONFIGURATION_ERROR);
    }
    let irq_res = res.interrupt.ok_or(STATUS_DEVICE_CONFIGURATION_ERROR)?;
    let hypercalls = Hypercalls::install(&x)?;
    let gfn = bar >> 12;
    let failed = |what: &str, e: i64| {
        log!("xenbus: {} failed: {}", what, e);
        STATUS_DEVICE_CONFIGURATION_ERROR
    };
    hypercalls
        .add_to_physmap(XenMapSpace::SharedInfo as u32, 0, gfn)
        .map_err(|e| failed("shared_info placement", e))?;
    // As many grant frames as Xen and the BAR allow, up to GRANT_FRAMES (Xen 4.17's
    // default max_grant_frames is 64); at least MIN_GRANT_FRAMES.
    let fit = (bar_len as u64 / 4096).saturating_sub(1).min(GRANT_FRAMES);
    let mut frames = 0;
    while frames < fit {
        match hypercalls.add_to_physmap(XenMapSpace::GrantTable as u32, frames, gfn + 1 + frames) {
            Ok(()) => frames += 1,
            Err(e) if frames >= MIN_GRANT_FRAMES => {
                log!(
                    "xenbus: grant frame {} refused ({}): {} frames",
                    frames,
                    e,
                    frames
                );
                break;
            }
            Err(e) => return Err(failed("grant frame placement", e)),
        }
    }
    let shared_info = IoMap::map(bar, 4096)?;
    let grant_map = IoMap::map(bar + 4096, (frames * 4096) as usize)?;
    let store_pfn = hypercalls
        .hvm_get_param(HvmParam::StorePfn as u32)
        .map_err(|e| failed("HVM_PARAM_STORE_PFN", e))?;
    let store_port = hypercalls
        .hvm_get_param(HvmParam::StoreEvtchn as u32)
        .map_err(|e| failed("HVM_PARAM_STORE_EVTCHN", e))?;
    let xenstore_port = u32::try_from(store_port)
        .ok()
        .filter(|&p| p < sluice_abi::event_channel::EVTCHN_2L_NR_CHANNELS)
        .ok_or(STATUS_DEVICE_CONFIGURATION_ERROR)?;
    let xenstore = IoMap::map(store_pfn << 12, 4096)?;
    let irq = Interrupt::connect(&irq_res, shared_info, xenstore_port)?;
    // Xen raises the device's line (GSI callback, type 0) while an event is pending.
    hypercalls
        .hvm_set_param(HvmParam::CallbackIrq as u32, irq_res.gsi as u64)
        .map_err(|e| failed("HVM_PARAM_CALLBACK_IRQ", e))?;
    let entries = GrantFrames(&grant_map).count();
    let quota = GRANTS_PER_CHILD.min(entries as usize / 2);
    let shared = Arc::new(Shared {
        hypercalls,
        grant_map,
        fast: SpinLock::new(BusFast::new(entries, quota)),
        store: PassiveMutex::new(BusStore::default()),
        xenstore,
        xenstore_port,
        xs_event: Event::new(),
        alive: AtomicBool::new(true),
        delivering: PassiveMutex::new(()),
    });
    let handler = Handler::new(shared.clone());
    irq.set_handler(Some(handler.clone()));
    let mut run = Running {
        irq,
        handler: handler.clone(),
        children: Vec::new(),
        next_owner: BUS_OWNER,
    };
    run.refresh().map_err(|e| {
        log!("xenbus: xenstore: {}", e);
        STATUS_DEVICE_CONFIGURATION_ERROR
    })?;
    // Watch our device directory: a device added later is reported (the watch fires
    // once now, which re-reads nothing new).
    {
        let mut st = shared.store.lock();
        if let Err(e) = st.watch(
            &mut shared.transport(),
            BUS_OWNER,
            "device",
            dev.watch_callback(),
        ) {
            log!("xenbus: watching device/: {} (no hotplug)", e);
        }
    }
    log!(
        "xenbus: {} grant references, {} per child, events dispatched in at most {} rounds",
        entries,
        quota,
        evtchn::MAX_ROUNDS
    );
    Ok(run)
}

impl Bus for XenBus {
    fn start(&mut self, res: &Resources, dev: BusDevice) -> Result<(), NtStatus> {
        match start(res, dev) {
            Ok(r) => {
                self.running = Some(r);
                Ok(())
            }
            Err(e) => {
                // No PV devices this boot: none may be unplugged at the next.
                for c in Class::ALL {
                    unplug_request::failed(&mut Registry, c);
                }
                Err(e)
            }
        }
    }

    fn children(&mut self) -> Vec<ChildDesc> {
        if let Some(r) = self.running.as_mut() {
            if let Err(e) = r.refresh() {
                log!("xenbus: re-reading the children: {}", e);
            }
        }
        self.running
            .as_ref()
            .map(|r| {
                r.children
                    .iter()
                    .map(|(c, iface)| ChildDesc {
                        hardware_id: c.kind.hardware_id(),
                        instance: c.id,
                        interface: iface.clone().map(|i| i as sluice_wdm::busif::Child),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let shared = &r.handler.shared;
            // Children's calls fail from now on; their ports are closed, their watches
            // dropped (xenstore is still there), their unmapped grants ended.
            shared.alive.store(false, Ordering::Release);
            {
                let mut st = shared.store.lock();
                let mut t = shared.transport();
                st.release(&mut t, BUS_OWNER);
                for (_, iface) in &r.children {
                    if let Some(i) = iface {
                        st.release(&mut t, i.owner);
                    }
                }
            }
            for (_, iface) in &r.children {
                if let Some(i) = iface {
                    let hw = Hw::new(shared);
                    let (ports, kept) = shared.fast.lock().release(&hw, i.owner);
                    for p in ports {
                        shared.hypercalls.evtchn_close(p.0);
                    }
                    if kept > 0 {
                        log!("xenbus: {} grants still mapped by a backend, kept", kept);
                    }
                }
            }
            // A watch delivery already running ends (alive is false: no new one).
            drop(shared.delivering.lock());
            // Route events nowhere, wait out the DPC, then disconnect.
            let _ = shared
                .hypercalls
                .hvm_set_param(HvmParam::CallbackIrq as u32, 0);
            r.irq.set_handler(None);
            drop(r);
        }
    }
}

fn new_bus() -> Box<dyn Bus> {
    Box::new(XenBus::default())
}

fn init(driver: sluice_wdm::Driver) -> NtStatus {
    log!("xenbus: Sluice xenbus {} loaded", env!("CARGO_PKG_VERSION"));
    unplug_at_boot();
    sluice_wdm::pnp::register(&driver, new_bus);
    sluice_wdm::STATUS_SUCCESS
}

sluice_wdm::driver_entry!(init);
