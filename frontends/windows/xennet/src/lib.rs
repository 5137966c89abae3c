//! xennet.sys: Sluice's NDIS 6.20 miniport for a Xen virtual network interface (one
//! adapter per `SLUICEXEN\VIF` child of xenbus.sys), over `netfront-core` through
//! `sluice-xennet-core` (one queue, no GSO, no checksum offload to Windows).
//!
//! MiniportInitializeEx (PASSIVE_LEVEL) queries xenbus' bus interface from the device
//! below, builds the NIC over it (`WinPlatform`: grants, event channels and xenstore
//! through the bus, pages from non-paged pool), reads the MAC and publishes
//! Initialising; a watch on the backend's `state` then drives the negotiation
//! (`Nic::backend_changed`, PASSIVE, the NIC taken out of the adapter lock meanwhile)
//! and the link state NDIS is told. OIDs are answered by `sluice_xennet_core::oid`;
//! each sent frame goes to `Nic::send` and is completed at once; the event callback
//! (bus DPC) polls `Nic::receive` and the frames it returns are indicated.
//!
//! Device logic only: every `unsafe` is in `sluice-wdm`; the decisions are
//! `sluice-xennet-core`'s and `netfront-core`'s, host-tested.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use sluice_abi::xenbus::XenbusState;
use sluice_wdm::busif::BusHandle;
use sluice_wdm::child::ChildKernel;
use sluice_wdm::ndis::{self, AdapterRef, General, Miniport, OidAnswer, OidKind, RxFrame};
use sluice_wdm::registry::Registry;
use sluice_wdm::storport::LowerDevice;
use sluice_wdm::xen::WorkItem;
use sluice_wdm::{log, NtStatus};
use sluice_xenbus_core::iface::BusInterface;
use sluice_xenbus_core::platform::WinPlatform;
use sluice_xenbus_core::unplug_request::{self, Class, NicRole};
use sluice_xenbus_core::watches::WatchId;
use sluice_xennet_core::filter::{packet_type, MAX_MULTICAST};
use sluice_xennet_core::nic::{Link, Nic};
use sluice_xennet_core::offload::Enabled;
use sluice_xennet_core::oid;

/// Receive polls per event callback at most (each of up to `nic::RX_BUDGET` frames):
/// a backend that never stops producing cannot hold the DPC.
const POLLS_PER_EVENT: usize = 8;

type Plat = WinPlatform<ChildKernel>;

/// A PV NIC failed in this boot: none proves itself for the unplug at the next boot.
static FAILED_THIS_BOOT: AtomicBool = AtomicBool::new(false);

fn record_failure() {
    FAILED_THIS_BOOT.store(true, Ordering::Release);
    if !unplug_request::failed(&mut Registry, Class::Nics) {
        log!("xennet: could not clear the NIC unplug request");
    }
}

/// One adapter.
#[derive(Default)]
struct Adapter {
    bus: Option<Arc<BusHandle>>,
    plat: Option<Plat>,
    nic: Option<Nic<Plat>>,
    watch: Option<WatchId>,
    /// PASSIVE_LEVEL work the DPC leaves (the unplug proof, a failed device's link).
    work: Option<WorkItem>,
    /// A frame was received: the PV NIC works (recorded once for the unplug).
    proved: bool,
    prove_pending: bool,
    /// The backend broke the protocol in the DPC: link down to indicate.
    broken_pending: bool,
}

impl Miniport for Adapter {
    fn initialize(&mut self, lower: LowerDevice, me: AdapterRef) -> Option<General> {
        let bus = match lower.query_bus() {
            Ok(b) => Arc::new(b),
            Err(s) => {
                log!("xennet: no xenbus interface below ({:#x})", s);
                record_failure();
                return None;
            }
        };
        log!(
            "xennet: {} -> {} (domain {})",
            bus.frontend_path(),
            bus.backend_path(),
            bus.backend_domid().0
        );
        let mut plat = WinPlatform::new(ChildKernel::new(bus.clone(), ndis::event_callback(me)));
        let mut nic = match Nic::new(bus.frontend_path(), bus.backend_path(), bus.backend_domid()) {
            Ok(n) => n,
            Err(e) => {
                log!("xennet: {}: {}", bus.frontend_path(), e);
                record_failure();
                return None;
            }
        };
        // The emulated NIC and this vif are one device (one MAC on dom0's bridge): drive
        // it only in a boot whose handshake unplugged the emulated NICs; else hold it
        // (nothing written to xenstore, link down) and ask for the unplug next boot.
        let role = unplug_request::nic_role(&mut Registry);
        let started = match role {
            NicRole::Drive => nic.start(&mut plat),
            NicRole::Hold { requested } => {
                log!(
                    "xennet: {}: emulated NICs present in this boot: vif held, link down; unplug {}",
                    bus.frontend_path(),
                    if requested {
                        "requested for the next boot"
                    } else {
                        "not requested (FellBackNics = 1 or the request could not be written)"
                    }
                );
                nic.hold(&mut plat)
            }
        };
        let mac = match started {
            Ok(m) => m,
            Err(e) => {
                log!("xennet: {}: {:?}", bus.frontend_path(), e);
                record_failure();
                return None;
            }
        };
        let g = General {
            mac,
            mtu: nic.info.mtu as u32,
            link_up: false,
            link_speed: oid::LINK_SPEED_BPS,
            packet_filters: packet_type::SUPPORTED,
            max_multicast: MAX_MULTICAST as u32,
            oids: oid::SUPPORTED,
            offload_hw: Enabled::default().ndis_offload(None),
            offload_cur: nic.info.offload.ndis_offload(None),
        };
        self.bus = Some(bus);
        self.plat = Some(plat);
        self.nic = Some(nic);
        Some(g)
    }

    fn oid(&mut self, kind: OidKind, code: u32, buf: &mut [u8]) -> OidAnswer {
        let Some(nic) = self.nic.as_mut() else {
            return answer(sluice_xennet_core::status::FAILURE, 0, 0);
        };
        match kind {
            OidKind::Query => match oid::query(code, &nic.info, buf.len()) {
                Ok(bytes) if bytes.len() <= buf.len() => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    answer(sluice_xennet_core::status::SUCCESS, bytes.len(), 0)
                }
                Ok(bytes) => answer(sluice_xennet_core::status::BUFFER_TOO_SHORT, 0, bytes.len()),
                Err(e) => answer(e.status(), 0, needed(e)),
            },
            OidKind::Set => match oid::set(code, buf, &mut nic.info) {
                Ok(changed) => OidAnswer {
                    offload_changed: changed
                        .then(|| nic.info.offload.ndis_offload(nic.info.backend)),
                    ..answer(sluice_xennet_core::status::SUCCESS, buf.len(), 0)
                },
                Err(e) => answer(e.status(), 0, needed(e)),
            },
        }
    }

    fn send(&mut self, frame: &mut [u8], ck: u32, lso: u64) -> (i32, Option<u64>) {
        let (Some(plat), Some(nic)) = (self.plat.as_mut(), self.nic.as_mut()) else {
            return (sluice_xennet_core::status::MEDIA_DISCONNECTED as i32, None);
        };
        let (st, done) = nic.send_frame(plat, frame, ck, lso);
        (st as i32, done)
    }

    fn port_event(&mut self, _port: u32) -> Vec<RxFrame> {
        let mut out = Vec::new();
        let (Some(plat), Some(nic)) = (self.plat.as_mut(), self.nic.as_mut()) else {
            return out;
        };
        for _ in 0..POLLS_PER_EVENT {
            match nic.receive(plat) {
                Ok((frames, more)) => {
                    out.extend(frames.into_iter().map(|f| RxFrame {
                        csum_info: f.csum_info,
                        data: f.data,
                    }));
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    log!("xennet: backend broke the protocol, link down: {}", e);
                    self.broken_pending = true;
                    if let Some(w) = &self.work {
                        w.queue();
                    }
                    break;
                }
            }
        }
        if !out.is_empty() && !self.proved {
            self.proved = true;
            self.prove_pending = true;
            if let Some(w) = &self.work {
                w.queue();
            }
        }
        out
    }

    fn as_any(&mut self) -> &mut dyn core::any::Any {
        self
    }
}

fn answer(status: u32, done: usize, needed: usize) -> OidAnswer {
    OidAnswer {
        status: status as i32,
        done,
        needed,
        offload_changed: None,
    }
}

fn needed(e: oid::OidError) -> usize {
    match e {
        oid::OidError::TooShort { needed } | oid::OidError::InvalidLength { needed } => needed,
        _ => 0,
    }
}

impl Drop for Adapter {
    /// MiniportHaltEx (PASSIVE_LEVEL): the watch removed, the NIC halted (rings torn
    /// down, ports closed, grants ended), then the interface dereferenced.
    fn drop(&mut self) {
        if let (Some(bus), Some(id)) = (self.bus.as_ref(), self.watch.take()) {
            bus.unwatch(id);
        }
        if let (Some(plat), Some(nic)) = (self.plat.as_mut(), self.nic.as_mut()) {
            nic.halt(plat);
        }
    }
}

/// The adapter's work item (PASSIVE_LEVEL): the unplug proof, or a broken device's
/// failure and link down.
fn passive_work(me: AdapterRef) {
    let (prove, broken) = ndis::with_miniport::<Adapter, _>(me, |a| {
        (
            core::mem::take(&mut a.prove_pending),
            core::mem::take(&mut a.broken_pending),
        )
    })
    .unwrap_or((false, false));
    if broken {
        record_failure();
        ndis::indicate_link(me, false, oid::LINK_SPEED_BPS);
    } else if prove {
        let failed_before = FAILED_THIS_BOOT.load(Ordering::Acquire);
        if unplug_request::proved(&mut Registry, Class::Nics, failed_before) {
            log!("xennet: PV NIC proved: emulated NICs unplugged from the next boot");
        }
    }
}

/// The bus' xenstore work item: the backend's state node changed (PASSIVE_LEVEL).
fn on_watch(me: AdapterRef, _id: u64) {
    let Some(mut m) = ndis::take(me) else {
        return;
    };
    let mut link = None;
    let mut offload = None;
    if let Some(a) = m.as_any().downcast_mut::<Adapter>() {
        if let (Some(bus), Some(plat), Some(nic)) = (a.bus.clone(), a.plat.as_mut(), a.nic.as_mut())
        {
            let state = bus
                .xs_read(0, &format!("{}/state", bus.backend_path()))
                .ok()
                .flatten()
                .and_then(|s| s.trim_end_matches('\0').parse::<XenbusState>().ok())
                // A missing or garbled state node reads as Closed, as Linux's does.
                .unwrap_or(XenbusState::Closed);
            link = Some(match nic.backend_changed(plat, state) {
                Ok(l) => l,
                Err(e) => {
                    log!("xennet: {}: negotiation failed: {}", bus.frontend_path(), e);
                    Link::Failed
                }
            });
            // What the backend segments decides the LSO reported (before link up).
            offload = Some(nic.info.offload.ndis_offload(nic.info.backend));
        }
    }
    ndis::put_back(me, m);
    match link {
        Some(Link::Up) => {
            if let Some(o) = &offload {
                ndis::indicate_offload(me, o);
            }
            ndis::indicate_link(me, true, oid::LINK_SPEED_BPS)
        }
        Some(Link::Down) => ndis::indicate_link(me, false, oid::LINK_SPEED_BPS),
        Some(Link::Failed) => {
            record_failure();
            ndis::indicate_link(me, false, oid::LINK_SPEED_BPS);
        }
        Some(Link::Unchanged) | None => {}
    }
}

/// A new adapter's state is installed: watch the backend's state (its first event
/// comes at once and starts the negotiation).
fn started(me: AdapterRef) {
    let mut work = Some(WorkItem::new(Box::new(move || passive_work(me))));
    let bus = ndis::with_miniport::<Adapter, _>(me, |a| {
        // Swapped, not dropped, under the lock (a WorkItem's drop waits: PASSIVE only).
        core::mem::swap(&mut a.work, &mut work);
        // A held vif is left alone: no watch on its backend.
        a.bus
            .clone()
            .filter(|_| !a.nic.as_ref().is_some_and(|n| n.held()))
    })
    .flatten();
    drop(work);
    let Some(bus) = bus else {
        return;
    };
    match bus.watch(
        &format!("{}/state", bus.backend_path()),
        ndis::watch_callback(me),
    ) {
        Ok(id) => {
            ndis::with_miniport::<Adapter, _>(me, |a| a.watch = Some(id));
        }
        Err(e) => log!("xennet: watching the backend: {}", e),
    }
}

fn new_adapter() -> Box<dyn Miniport> {
    Box::new(Adapter::default())
}

fn init(driver: sluice_wdm::Driver) -> NtStatus {
    log!("xennet: Sluice xennet {} loaded", env!("CARGO_PKG_VERSION"));
    let s = ndis::register(&driver, new_adapter, started, on_watch);
    if s != sluice_wdm::STATUS_SUCCESS {
        log!("xennet: NdisMRegisterMiniportDriver: {:#x}", s);
    }
    s
}

sluice_wdm::driver_entry!(init);
