//! `sluice-hostile-blkback`: a misbehaving Xen block backend for dom0, for testing
//! frontends (test only). It serves every `backend/vbd` device of dom0 like a minimal
//! blkback (one queue, one-page ring, no indirect, flush, discard or persistent grants;
//! the I/O is `sluice-blkback`'s, grant copy) and misbehaves on the devices named on its
//! command line, each in its mode:
//!
//! * `bogus-id`: the first write is answered with id `0xdeadbeef`, which no slot has;
//! * `unsolicited`: at the first write it pushes a response for an id that has no
//!   request in flight (and leaves the write unanswered);
//! * `op-mismatch`: the first write is answered OKAY as a read;
//! * `wrong-ring`: at connect it maps a grant reference that is not the frontend's
//!   `ring-ref` (far outside its grant table, so the mapping fails), connects anyway and
//!   never sees a request: nothing is ever answered;
//! * `vanish`: serves reads, and at the first write stops answering anything, keeping
//!   the ring mapped and its state Connected (a backend that died silently);
//! * `ok`: served correctly (the default for devices not named).
//!
//! Reads before the first write are served correctly in every mode but `wrong-ring`, so
//! a frontend's disk appears (partition scan) and a read works before the misbehaviour.
//! After misbehaving the device answers nothing more. Every misbehaviour is logged
//! (`hostile-blkback: <dev> [<mode>]: ...`). The toolstack's detach (`online` = 0,
//! Closing) and a frontend that closes are followed to Closed.
//!
//! Usage: `sluice-hostile-blkback [xvdX=MODE]...`.

#![deny(unsafe_code)]

use anyhow::{bail, Context, Result};
use sluice_abi::blkif::{decode_request, BlkifBackRing, BlkifLimits, BlkifOp, BlkifResponse};
use sluice_abi::xenbus::XenbusState;
use sluice_blkback::disk::Disk;
use sluice_blkback::ring_server::Queue;
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

macro_rules! log {
    ($($t:tt)*) => { eprintln!("hostile-blkback: {}", format!($($t)*)) };
}

/// How a device misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Ok,
    BogusId,
    Unsolicited,
    OpMismatch,
    WrongRing,
    Vanish,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::Ok,
        Mode::BogusId,
        Mode::Unsolicited,
        Mode::OpMismatch,
        Mode::WrongRing,
        Mode::Vanish,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::BogusId => "bogus-id",
            Mode::Unsolicited => "unsolicited",
            Mode::OpMismatch => "op-mismatch",
            Mode::WrongRing => "wrong-ring",
            Mode::Vanish => "vanish",
        }
    }

    fn parse(s: &str) -> Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .with_context(|| {
                let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mode {s:?} (one of {})", names.join(", "))
            })
    }
}

/// The Linux name of a `virtual-device` number (`202 << 8 | disk << 4`).
fn vdev_name(devid: u32) -> Option<String> {
    (devid >> 8 == 202 && devid & 0xf == 0).then(|| {
        let i = (devid >> 4) & 0xf;
        format!("xvd{}", (b'a' + i as u8) as char)
    })
}

struct Worker {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl Worker {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

struct Device {
    name: String,
    mode: Mode,
    fe: String,
    fe_id: u16,
    disk: Arc<Disk>,
    state: XenbusState,
    /// Connected (a worker serving the ring, or none for `wrong-ring`).
    connected: bool,
    worker: Option<Worker>,
}

impl Device {
    fn disconnect(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
        self.connected = false;
    }
}

struct Backend {
    xs: std::sync::Arc<XsClient>,
    grants: Arc<GntdevDevice>,
    root: String,
    modes: BTreeMap<String, Mode>,
    devices: BTreeMap<String, Device>,
}

impl Backend {
    fn read(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .xs
            .read_opt(XBT_NULL, path)?
            .map(|v| v.trim_end_matches('\0').to_string()))
    }

    fn need(&self, path: &str) -> Result<String> {
        self.read(path)?
            .with_context(|| format!("{path} is missing"))
    }

    fn number(&self, path: &str) -> Result<u64> {
        let v = self.need(path)?;
        v.parse()
            .with_context(|| format!("{path}: {v:?} is not a number"))
    }

    fn state_of(&self, path: &str) -> XenbusState {
        match self.read(path) {
            Ok(Some(s)) => s.parse().unwrap_or(XenbusState::Unknown),
            _ => XenbusState::Unknown,
        }
    }

    fn write_state(&self, be: &str, dev: &mut Device, state: XenbusState) -> Result<()> {
        if dev.state != state {
            self.xs.write(
                XBT_NULL,
                &format!("{be}/state"),
                state.xenstore_value().as_bytes(),
            )?;
            log!(
                "{} [{}]: backend state {}",
                dev.name,
                dev.mode.name(),
                state.name()
            );
            dev.state = state;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        self.xs.watch(&self.root, "vbd")?;
        let xs = self.xs.clone();
        let never = std::sync::atomic::AtomicBool::new(false);
        sluice_dom0::xenstore::watch_loop(&*xs, &never, Duration::from_millis(500), |changed| {
            if changed {
                self.reconcile();
            }
        })?;
        Ok(())
    }

    fn reconcile(&mut self) {
        let present = sluice_dom0::xenstore::backend_device_dirs(&*self.xs, &self.root);
        for (be, mut d) in sluice_dom0::xenstore::take_removed(&mut self.devices, &present) {
            d.disconnect();
            let _ = self.xs.unwatch(&format!("{}/state", d.fe), &be);
            log!("{} [{}]: removed", d.name, d.mode.name());
        }
        for be in present {
            if let Err(e) = self.step(&be) {
                log!("{be}: {e:#}");
            }
        }
    }

    fn step(&mut self, be: &str) -> Result<()> {
        if !self.devices.contains_key(be) {
            if self.read(&format!("{be}/state"))?.is_none() {
                return Ok(());
            }
            let dev = self.setup(be)?;
            self.devices.insert(be.to_string(), dev);
        }
        let Some(mut dev) = self.devices.remove(be) else {
            return Ok(());
        };
        let r = self.advance(be, &mut dev);
        if let Err(e) = &r {
            log!("{} [{}]: {e:#}; closing", dev.name, dev.mode.name());
            dev.disconnect();
            let _ = self.write_state(be, &mut dev, XenbusState::Closing);
        }
        self.devices.insert(be.to_string(), dev);
        Ok(())
    }

    /// Opens the image, publishes the disk; state InitWait.
    fn setup(&self, be: &str) -> Result<Device> {
        let devid: u32 = be
            .rsplit('/')
            .next()
            .and_then(|d| d.parse().ok())
            .with_context(|| format!("{be}: not a device number"))?;
        let vdev = vdev_name(devid).unwrap_or_else(|| devid.to_string());
        let mode = self.modes.get(&vdev).copied().unwrap_or(Mode::Ok);
        let fe = self.need(&format!("{be}/frontend"))?;
        let fe_id = u16::try_from(self.number(&format!("{be}/frontend-id"))?)
            .context("frontend-id out of range")?;
        let params = self.need(&format!("{be}/params"))?;
        let readonly = matches!(
            self.read(&format!("{be}/mode"))?.as_deref(),
            Some("r" | "ro")
        );
        let disk = Arc::new(Disk::open(Path::new(&params), readonly)?);
        let name = format!("{vdev} (domain {fe_id})");
        for (k, v) in [
            ("sectors", disk.sectors().to_string()),
            ("sector-size", disk.sector_size().to_string()),
            (
                "physical-sector-size",
                disk.physical_sector_size().to_string(),
            ),
            ("info", if readonly { "4" } else { "0" }.to_string()),
            ("feature-flush-cache", "0".into()),
            ("feature-barrier", "0".into()),
            ("feature-discard", "0".into()),
            ("feature-persistent", "0".into()),
        ] {
            self.xs
                .write(XBT_NULL, &format!("{be}/{k}"), v.as_bytes())?;
        }
        self.xs.watch(&format!("{fe}/state"), be)?;
        log!("{name} [{}]: {params}, frontend {fe}", mode.name());
        let mut dev = Device {
            name,
            mode,
            fe,
            fe_id,
            disk,
            state: XenbusState::Initialising,
            connected: false,
            worker: None,
        };
        self.write_state(be, &mut dev, XenbusState::InitWait)?;
        Ok(dev)
    }

    fn advance(&self, be: &str, dev: &mut Device) -> Result<()> {
        let online = self
            .read(&format!("{be}/online"))?
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        if self.state_of(&format!("{be}/state")) == XenbusState::Closing && online == 0 {
            // The toolstack detaches the device.
            dev.disconnect();
            dev.state = XenbusState::Closing;
            return self.write_state(be, dev, XenbusState::Closed);
        }
        match self.state_of(&format!("{}/state", dev.fe)) {
            XenbusState::Initialised | XenbusState::Connected
                if !dev.connected && dev.state == XenbusState::InitWait =>
            {
                self.connect(be, dev)
            }
            XenbusState::Closing | XenbusState::Closed if dev.state != XenbusState::Closed => {
                dev.disconnect();
                self.write_state(be, dev, XenbusState::Closed)
            }
            _ => Ok(()),
        }
    }

    fn connect(&self, be: &str, dev: &mut Device) -> Result<()> {
        let fe = dev.fe.clone();
        let ring_ref = u32::try_from(self.number(&format!("{fe}/ring-ref"))?)
            .context("ring-ref out of range")?;
        let remote_port = u32::try_from(self.number(&format!("{fe}/event-channel"))?)
            .context("event-channel out of range")?;
        if dev.mode == Mode::WrongRing {
            // Not the frontend's ring: a reference far outside its grant table.
            let wrong = ring_ref.wrapping_add(0x10_0000);
            match self.grants.map(dev.fe_id, &[wrong], true) {
                Ok(_) => log!(
                    "{} [wrong-ring]: mapped gref {wrong} instead of ring-ref {ring_ref}; it is not the ring: never answering",
                    dev.name
                ),
                Err(e) => log!(
                    "{} [wrong-ring]: mapping gref {wrong} instead of ring-ref {ring_ref} failed ({e}); connected without a ring: never answering",
                    dev.name
                ),
            }
            dev.connected = true;
            return self.write_state(be, dev, XenbusState::Connected);
        }
        let mapping = self.grants.map(dev.fe_id, &[ring_ref], true)?;
        BlkifBackRing::resume(mapping.mem()).map_err(|e| anyhow::anyhow!("ring: {e}"))?;
        let evtchn = EvtchnDevice::open()?;
        let port = evtchn.bind_interdomain(dev.fe_id, remote_port)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, grants, disk, name, mode, domid) = (
            stop.clone(),
            self.grants.clone(),
            dev.disk.clone(),
            dev.name.clone(),
            dev.mode,
            dev.fe_id,
        );
        let join = std::thread::Builder::new()
            .name("hostile-ring".into())
            .spawn(move || {
                let Ok(ring) = BlkifBackRing::resume(mapping.mem()) else {
                    return;
                };
                let q = Queue {
                    domid,
                    disk: &disk,
                    grants: &*grants,
                    evtchn,
                    port: sluice_abi::types::EvtchnPort(port),
                    stop: &stop2,
                    name: &name,
                    persistent: None,
                    profile: Default::default(),
                    buffers: Default::default(),
                    zero_copy: std::cell::Cell::new(false),
                    coalesce: 0,
                    merge: false,
                    log: &Default::default(),
                };
                if let Err(e) = serve(&q, ring, mode) {
                    log!("{name} [{}]: {e:#}; stopped serving", mode.name());
                }
                drop(q);
                drop(mapping);
            })?;
        dev.worker = Some(Worker {
            stop,
            join: Some(join),
        });
        dev.connected = true;
        log!(
            "{} [{}]: connected (ring-ref {ring_ref}, port {remote_port})",
            dev.name,
            dev.mode.name()
        );
        self.write_state(be, dev, XenbusState::Connected)
    }
}

/// Serves the ring in `mode` until told to stop.
fn serve(
    q: &Queue<'_, GntdevDevice, EvtchnDevice>,
    mut ring: BlkifBackRing<'_>,
    mode: Mode,
) -> Result<()> {
    let limits = BlkifLimits {
        max_indirect_segments: 0,
    };
    let mut misbehaved = false;
    let mut pending = Vec::new();
    let m = mode.name();
    loop {
        while !misbehaved {
            let Some(slot) = ring.pop_request()? else {
                break;
            };
            let op = slot.operation;
            let req = match decode_request(&slot, &limits) {
                Ok(r) => r,
                Err(e) => {
                    ring.push_response(&BlkifResponse {
                        operation: op,
                        ..e.response()
                    })?;
                    continue;
                }
            };
            let id = req.id();
            if mode != Mode::Ok && op == BlkifOp::Write as u8 {
                misbehaved = true;
                let ok = sluice_abi::blkif::BlkifRsp::Okay;
                match mode {
                    Mode::BogusId => {
                        ring.push_response(&BlkifResponse::new(0xdead_beef, op, ok))?;
                        log!(
                            "{} [{m}]: answered write id {id} with id 0xdeadbeef",
                            q.name
                        );
                    }
                    Mode::Unsolicited => {
                        let other = (id + 1) % u64::from(ring.size());
                        ring.push_response(&BlkifResponse::new(other, BlkifOp::Read as u8, ok))?;
                        log!(
                            "{} [{m}]: pushed a response for id {other}, never sent (write id {id} unanswered)",
                            q.name
                        );
                    }
                    Mode::OpMismatch => {
                        ring.push_response(&BlkifResponse::new(id, BlkifOp::Read as u8, ok))?;
                        log!("{} [{m}]: answered write id {id} as a read", q.name);
                    }
                    Mode::Vanish => log!(
                        "{} [{m}]: stopped answering at write id {id}; state stays Connected",
                        q.name
                    ),
                    Mode::Ok | Mode::WrongRing => {}
                }
                break;
            }
            let status = q.execute(&req);
            ring.push_response(&BlkifResponse::new(id, op, status))?;
        }
        if ring.push_responses_and_check_notify()? {
            q.evtchn.notify(q.port.0)?;
        }
        if !misbehaved && ring.final_check_for_requests()? {
            continue;
        }
        if q.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if q.evtchn.wait(Some(Duration::from_millis(200)))? {
            pending.clear();
            q.evtchn.read_pending(&mut pending)?;
            for &p in &pending {
                q.evtchn.unmask(p)?;
            }
        }
    }
}

fn main() -> Result<()> {
    let mut modes = BTreeMap::new();
    for a in std::env::args().skip(1) {
        let Some((dev, mode)) = a.split_once('=') else {
            bail!("argument {a:?}: expected xvdX=MODE");
        };
        modes.insert(dev.to_string(), Mode::parse(mode)?);
    }
    let xs = std::sync::Arc::new(XsClient::open().context("connecting to xenstore")?);
    let domid = xs.read_u64(XBT_NULL, "domid").ok().flatten().unwrap_or(0);
    let grants = Arc::new(GntdevDevice::open().context("opening the grant device")?);
    let root = format!("/local/domain/{domid}/backend/vbd");
    let list: Vec<String> = modes
        .iter()
        .map(|(d, m)| format!("{d}={}", m.name()))
        .collect();
    log!("serving {root}; misbehaving: {}", list.join(" "));
    let mut b = Backend {
        xs,
        grants,
        root,
        modes,
        devices: BTreeMap::new(),
    };
    b.run().context("xenstore connection lost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_names() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()).unwrap(), m);
        }
        assert!(Mode::parse("nice").is_err());
        assert_eq!(vdev_name(51712).as_deref(), Some("xvda"));
        assert_eq!(vdev_name(51728).as_deref(), Some("xvdb"));
        assert_eq!(vdev_name(51713), None);
    }
}
