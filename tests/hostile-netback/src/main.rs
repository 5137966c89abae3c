//! `sluice-hostile-netback`: a misbehaving Xen network backend for dom0, for testing
//! frontends (test only). It serves every `backend/vif` device of dom0 like a minimal
//! netback (one queue, one event channel, only `feature-rx-copy` offered; every TX
//! request answered OKAY and its data dropped, no RX traffic; a tap `vif<domid>.<handle>`
//! is created only so that the `vif-userspace` hotplug script finds it) and misbehaves
//! at the frontend's first TX packet after each connect, in the mode given on its command
//! line for that connection: the n-th time a frontend connects, the n-th mode (the last
//! one again once the list is used up). A frontend that is unbound and bound again (or
//! whose module is reloaded) so meets each mode in turn. Modes ([`serve::Mode`]):
//!
//! * `bogus-id`: the TX response carries id 0xdead, which no request has;
//! * `unsolicited`: the RX ring's `rsp_prod` goes 8 past the frontend's `req_prod`
//!   (responses to buffers never posted);
//! * `vanish`: stops answering anything; the state stays Connected;
//! * `bad-rx`: one RX response with 1500 bytes at offset 4000 (past its page) and an
//!   extra-info slot of unknown type 0xee; TX keeps being answered;
//! * `runaway`: the TX ring's `rsp_prod` jumps 0x40000000 ahead;
//! * `ok`: served correctly.
//!
//! Every misbehaviour is logged (`hostile-netback: <vif> [<mode>]: ...`). The xenbus
//! states follow the frontend's and the toolstack's (Closing, Closed, InitWait again when
//! the frontend comes back) in every mode.
//!
//! Usage: `sluice-hostile-netback MODE...`.

#![deny(unsafe_code)]

mod serve;

use anyhow::{bail, Context, Result};
use serve::{Mode, Rings};
use sluice_abi::netif::keys;
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::{EvtchnDevice, GntdevDevice, TapDevice};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

macro_rules! log {
    ($($t:tt)*) => { eprintln!("hostile-netback: {}", format!($($t)*)) };
}

struct Worker {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

struct Vif {
    name: String,
    fe: String,
    fe_id: u16,
    state: XenbusState,
    worker: Option<Worker>,
    /// Kept open for the hotplug script (never read or written).
    _tap: TapDevice,
}

impl Vif {
    fn disconnect(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop.store(true, Ordering::Release);
            if let Some(j) = w.join.take() {
                let _ = j.join();
            }
        }
    }
}

struct Backend {
    xs: Arc<XsClient>,
    grants: Arc<GntdevDevice>,
    root: String,
    modes: Vec<Mode>,
    /// Connections made so far (the next one takes `modes[connections]`).
    connections: usize,
    vifs: BTreeMap<String, Vif>,
}

impl Backend {
    fn read(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .xs
            .read_opt(XBT_NULL, path)?
            .map(|v| v.trim_end_matches('\0').to_string()))
    }

    fn number(&self, path: &str, max: u64) -> Result<u64> {
        let v = self
            .read(path)?
            .with_context(|| format!("{path} is missing"))?;
        let n: u64 = v
            .parse()
            .with_context(|| format!("{path}: {v:?} is not a number"))?;
        if n > max {
            bail!("{path}: {n} exceeds {max}");
        }
        Ok(n)
    }

    fn state_of(&self, path: &str) -> XenbusState {
        match self.read(path) {
            Ok(Some(s)) => s.parse().unwrap_or(XenbusState::Unknown),
            _ => XenbusState::Unknown,
        }
    }

    fn write_state(&self, be: &str, v: &mut Vif, state: XenbusState) -> Result<()> {
        if v.state != state {
            self.xs.write(
                XBT_NULL,
                &format!("{be}/state"),
                state.xenstore_value().as_bytes(),
            )?;
            log!("{}: backend state {}", v.name, state.name());
            v.state = state;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        self.xs.watch(&self.root, "vif")?;
        let xs = self.xs.clone();
        let never = AtomicBool::new(false);
        sluice_dom0::xenstore::watch_loop(&*xs, &never, Duration::from_millis(500), |changed| {
            if changed {
                self.reconcile();
            }
        })?;
        Ok(())
    }

    fn reconcile(&mut self) {
        let present = sluice_dom0::xenstore::backend_device_dirs(&*self.xs, &self.root);
        for (be, mut v) in sluice_dom0::xenstore::take_removed(&mut self.vifs, &present) {
            v.disconnect();
            let _ = self.xs.unwatch(&format!("{}/state", v.fe), &be);
            log!("{}: removed", v.name);
        }
        for be in present {
            if let Err(e) = self.step(&be) {
                log!("{be}: {e:#}");
            }
        }
    }

    fn step(&mut self, be: &str) -> Result<()> {
        if !self.vifs.contains_key(be) {
            if self.read(&format!("{be}/state"))?.is_none() {
                return Ok(());
            }
            let v = self.setup(be)?;
            self.vifs.insert(be.to_string(), v);
        }
        let Some(mut v) = self.vifs.remove(be) else {
            return Ok(());
        };
        let r = self.advance(be, &mut v);
        if let Err(e) = &r {
            log!("{}: {e:#}; closing", v.name);
            v.disconnect();
            let _ = self.write_state(be, &mut v, XenbusState::Closing);
        }
        self.vifs.insert(be.to_string(), v);
        Ok(())
    }

    /// The tap, our features; state InitWait.
    fn setup(&self, be: &str) -> Result<Vif> {
        let fe = self
            .read(&format!("{be}/frontend"))?
            .with_context(|| format!("{be}/frontend is missing"))?;
        let fe_id = self.number(&format!("{be}/frontend-id"), u16::MAX.into())? as u16;
        let handle = self.number(&format!("{be}/handle"), 0xffff)?;
        if !fe.starts_with(&format!("/local/domain/{fe_id}/")) {
            bail!("{be}/frontend: {fe:?} is not under domain {fe_id}");
        }
        let ifname = format!("vif{fe_id}.{handle}");
        let tap = TapDevice::open_queue(&ifname).with_context(|| format!("tap {ifname}"))?;
        for (k, val) in [(keys::FEATURE_RX_COPY, "1"), ("feature-rx-flip", "0")] {
            self.xs
                .write(XBT_NULL, &format!("{be}/{k}"), val.as_bytes())?;
        }
        self.xs.watch(&format!("{fe}/state"), be)?;
        let mut v = Vif {
            name: format!("{ifname} (frontend {fe})"),
            fe,
            fe_id,
            state: XenbusState::Initialising,
            worker: None,
            _tap: tap,
        };
        log!("{}: tap created", v.name);
        self.write_state(be, &mut v, XenbusState::InitWait)?;
        Ok(v)
    }

    fn advance(&mut self, be: &str, v: &mut Vif) -> Result<()> {
        let online = self
            .read(&format!("{be}/online"))?
            .and_then(|o| o.parse::<u32>().ok())
            .unwrap_or(1);
        if self.state_of(&format!("{be}/state")) == XenbusState::Closing && online == 0 {
            // The toolstack detaches the vif.
            v.disconnect();
            v.state = XenbusState::Closing;
            return self.write_state(be, v, XenbusState::Closed);
        }
        match self.state_of(&format!("{}/state", v.fe)) {
            XenbusState::Initialising | XenbusState::InitWait
                if v.worker.is_some()
                    || matches!(v.state, XenbusState::Closed | XenbusState::Closing) =>
            {
                // The frontend came back (a rebind or module reload).
                v.disconnect();
                self.write_state(be, v, XenbusState::InitWait)
            }
            XenbusState::Connected if v.worker.is_none() && v.state == XenbusState::InitWait => {
                let hp = self.read(&format!("{be}/hotplug-status"))?;
                if hp.as_deref() == Some("connected") {
                    self.connect(be, v)?;
                }
                Ok(())
            }
            XenbusState::Closing => {
                v.disconnect();
                self.write_state(be, v, XenbusState::Closing)
            }
            XenbusState::Closed | XenbusState::Unknown => {
                v.disconnect();
                self.write_state(be, v, XenbusState::Closed)
            }
            _ => Ok(()),
        }
    }

    fn connect(&mut self, be: &str, v: &mut Vif) -> Result<()> {
        let fe = v.fe.clone();
        let num = |k: &str| {
            self.number(&format!("{fe}/{k}"), u32::MAX.into())
                .map(|n| n as u32)
        };
        let tx_ref = num(keys::TX_RING_REF)?;
        let rx_ref = num(keys::RX_RING_REF)?;
        let port = num(keys::EVENT_CHANNEL)?;
        let mode = *self
            .modes
            .get(self.connections)
            .or(self.modes.last())
            .unwrap_or(&Mode::Ok);
        self.connections += 1;
        let tx = self.grants.map(v.fe_id, &[tx_ref], true)?;
        let rx = self.grants.map(v.fe_id, &[rx_ref], true)?;
        let evtchn = EvtchnDevice::open()?;
        let local = evtchn.bind_interdomain(v.fe_id, port)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name) = (stop.clone(), v.name.clone());
        let join = std::thread::Builder::new()
            .name("hostile-vif".into())
            .spawn(move || {
                let r = Rings::new(tx.mem(), rx.mem(), mode)
                    .and_then(|mut rings| serve(&mut rings, &evtchn, local, &stop2, &name));
                if let Err(e) = r {
                    log!("{name} [{}]: {e:#}; stopped serving", mode.name());
                }
                drop(tx);
                drop(rx);
            })?;
        v.worker = Some(Worker {
            stop,
            join: Some(join),
        });
        log!(
            "{}: connected #{} in mode {} (tx-ring-ref {tx_ref}, rx-ring-ref {rx_ref}, port {port})",
            v.name,
            self.connections,
            mode.name()
        );
        self.write_state(be, v, XenbusState::Connected)
    }
}

/// Serves one vif's rings until told to stop.
fn serve(
    rings: &mut Rings<'_>,
    evtchn: &EvtchnDevice,
    port: u32,
    stop: &AtomicBool,
    name: &str,
) -> Result<()> {
    let mut pending = Vec::new();
    loop {
        let (notify, said) = rings.step()?;
        if let Some(s) = said {
            log!("{name} {s}");
        }
        if notify {
            evtchn.notify(port)?;
        }
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if evtchn.wait(Some(Duration::from_millis(200)))? {
            pending.clear();
            evtchn.read_pending(&mut pending)?;
            for &p in &pending {
                evtchn.unmask(p)?;
            }
        }
    }
}

fn main() -> Result<()> {
    let modes = std::env::args()
        .skip(1)
        .map(|a| Mode::parse(&a))
        .collect::<Result<Vec<_>>>()?;
    let xs = Arc::new(XsClient::open().context("connecting to xenstore")?);
    let domid = xs.read_u64(XBT_NULL, "domid").ok().flatten().unwrap_or(0);
    let grants = Arc::new(GntdevDevice::open().context("opening the grant device")?);
    let root = format!("/local/domain/{domid}/backend/vif");
    let list: Vec<&str> = modes.iter().map(|m| m.name()).collect();
    log!("serving {root}; modes per connection: {}", list.join(" "));
    let mut b = Backend {
        xs,
        grants,
        root,
        modes,
        connections: 0,
        vifs: BTreeMap::new(),
    };
    b.run().context("xenstore connection lost")
}
