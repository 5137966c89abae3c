//! One vif's xenbus state machine: reads the toolstack's nodes, creates the tap and
//! publishes the features (InitWait), runs the hotplug script when taking over a
//! connected vif, follows the frontend's state (connect, teardown, offered again after
//! a reset) and the toolstack's detach, and fails a vif whose setup or rings go wrong.

use super::{ifname_of, Backend, Vif, VifError};
use crate::queue::Frames;
use sluice_abi::netif::keys;
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::{transaction, XBT_NULL};
use sluice_dom0::{
    warn_limited, EventChannels, EvtchnError, GrantMapper, LogLimiter, XenStore, XsError,
};
use std::sync::Arc;

impl<S, G, F, E, T> Backend<S, G, F, T>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
    T: Frames + 'static,
{
    pub(super) fn write_state(
        &self,
        be: &str,
        v: &mut Vif<T>,
        state: XenbusState,
    ) -> Result<(), XsError> {
        if v.state != state {
            self.xs.write(
                XBT_NULL,
                &format!("{be}/state"),
                state.xenstore_value().as_bytes(),
            )?;
            if v.log.admit("state").is_some() {
                tracing::info!("{}: backend state {}", v.name, state.name());
            }
            v.state = state;
        }
        Ok(())
    }

    fn fail(&self, be: &str, v: &mut Vif<T>, e: &VifError) {
        // Rate limited: a frontend that resets and fails again in a loop must not grow
        // the log without bound.
        warn_limited!(v.log, "closing", "{}: {e}; closing the vif", v.name);
        v.teardown();
        v.broken = true;
        let _ = self
            .xs
            .write(XBT_NULL, &format!("{be}/error"), e.to_string().as_bytes());
        let _ = self.write_state(be, v, XenbusState::Closing);
    }

    pub(super) fn step(&mut self, be: &str) -> Result<(), VifError> {
        if self.vifs.get(be).is_some_and(|v| v.broken)
            && self.state_of(&format!("{be}/state")) == XenbusState::Initialising
        {
            // Given up on, then written anew by the toolstack (network-attach).
            if let Some(mut v) = self.vifs.remove(be) {
                v.teardown();
                let _ = self.xs.unwatch(&format!("{}/state", v.fe), be);
            }
        }
        if !self.vifs.contains_key(be) {
            if self
                .xs
                .read_opt(XBT_NULL, &format!("{be}/state"))?
                .is_none()
            {
                return Ok(());
            }
            let mut v = self.setup(be)?;
            if let Err(e) = self.init_wait(be, &mut v) {
                self.fail(be, &mut v, &e);
            }
            self.vifs.insert(be.to_string(), v);
        }
        let Some(mut v) = self.vifs.remove(be) else {
            return Ok(());
        };
        if let Err(e) = self.advance(be, &mut v) {
            self.fail(be, &mut v, &e);
        }
        self.vifs.insert(be.to_string(), v);
        Ok(())
    }

    fn need(&self, path: &str) -> Result<String, VifError> {
        self.xs
            .read_opt(XBT_NULL, path)?
            .map(|s| s.trim_end_matches('\0').to_string())
            .ok_or_else(|| VifError::Missing(path.into()))
    }

    pub(super) fn number(&self, path: &str, max: u64) -> Result<u64, VifError> {
        let v = self
            .xs
            .read_u64(XBT_NULL, path)?
            .ok_or_else(|| VifError::Missing(path.into()))?;
        if v > max {
            return Err(VifError::Bad {
                path: path.into(),
                why: format!("{v} exceeds {max}"),
            });
        }
        Ok(v)
    }

    /// A frontend feature flag: "1" on, anything else (absent, garbage) off, as Linux's
    /// `xenbus_read_unsigned` with default 0.
    pub(super) fn flag(&self, path: &str) -> bool {
        matches!(self.xs.read_opt(XBT_NULL, path), Ok(Some(s)) if s.trim_end_matches('\0') == "1")
    }

    fn setup(&self, be: &str) -> Result<Vif<T>, VifError> {
        let rel = be
            .strip_prefix(&self.root)
            .unwrap_or(be)
            .trim_start_matches('/');
        let fe = self.need(&format!("{be}/frontend"))?;
        let fe_id = self.number(&format!("{be}/frontend-id"), u16::MAX.into())? as u16;
        let handle = self.number(&format!("{be}/handle"), 0xffff)?;
        if !fe.starts_with(&format!("/local/domain/{fe_id}/")) {
            return Err(VifError::Bad {
                path: format!("{be}/frontend"),
                why: format!("{fe:?} is not under domain {fe_id}"),
            });
        }
        let ifname = format!("vif{fe_id}.{handle}");
        let name = format!("vif {} ({ifname})", rel.replace('/', ":"));
        self.xs.watch(&format!("{fe}/state"), be)?;
        Ok(Vif {
            name,
            fe,
            fe_id,
            taps: Vec::new(),
            queues: vec![],
            state: XenbusState::Initialising,
            broken: false,
            stats: Arc::default(),
            log: Arc::new(LogLimiter::new(self.log_rate.0, self.log_rate.1.clone())),
        })
    }

    pub(super) fn ifname(v: &Vif<T>) -> &str {
        ifname_of(&v.name)
    }

    /// Creates the tap, publishes our features; state InitWait.
    fn init_wait(&self, be: &str, v: &mut Vif<T>) -> Result<(), VifError> {
        let tap = (self.open_tap)(Self::ifname(v)).map_err(VifError::Tap)?;
        tap.set_offloads(false, false, false)
            .map_err(|e| VifError::Tap(e.to_string()))?;
        v.taps = vec![Arc::new(tap)];
        let max_queues = self.max_queues;
        transaction(&*self.xs, 16, |tx| {
            let w = |k: &str, val: &str| self.xs.write(tx, &format!("{be}/{k}"), val.as_bytes());
            w(keys::FEATURE_SG, "1")?;
            w(keys::FEATURE_GSO_TCPV4, "1")?;
            w(keys::FEATURE_GSO_TCPV6, "1")?;
            w(keys::FEATURE_IPV6_CSUM_OFFLOAD, "1")?;
            w(keys::FEATURE_RX_COPY, "1")?;
            w("feature-rx-flip", "0")?;
            w(keys::FEATURE_SPLIT_EVENT_CHANNELS, "1")?;
            w(keys::MULTI_QUEUE_MAX_QUEUES, &max_queues.to_string())?;
            w(keys::FEATURE_CTRL_RING, "0")?;
            Ok(())
        })?;
        tracing::info!(
            "{}: tap created, frontend {} (domain {})",
            v.name,
            v.fe,
            v.fe_id
        );
        if self.state_of(&format!("{be}/state")) == XenbusState::Connected {
            // An earlier run of ours connected this vif and went away: keep the state
            // the frontend sees and attach to its live rings at the shared rsp_prod.
            tracing::info!("{}: taking over a connected vif", v.name);
            v.state = XenbusState::Connected;
            if self.hotplug_on_takeover {
                self.run_hotplug(be, v);
            }
        } else {
            self.write_state(be, v, XenbusState::InitWait)?;
        }
        Ok(())
    }

    /// Runs the vif's hotplug script with `online` (its environment as libxl sets it).
    fn run_hotplug(&self, be: &str, v: &Vif<T>) {
        let script = match self.xs.read_opt(XBT_NULL, &format!("{be}/script")) {
            Ok(Some(s)) => s.trim_end_matches('\0').to_string(),
            _ => return,
        };
        if !script.starts_with("/etc/xen/scripts/") || script.contains("..") {
            tracing::warn!("{}: not running hotplug script {script:?}", v.name);
            return;
        }
        let r = std::process::Command::new(&script)
            .arg("online")
            .env("script", &script)
            .env("vif", Self::ifname(v))
            .env("XENBUS_PATH", be)
            .status();
        match r {
            Ok(st) if st.success() => tracing::info!("{}: {script} online: done", v.name),
            Ok(st) => tracing::warn!("{}: {script} online: {st}", v.name),
            Err(e) => tracing::warn!("{}: {script}: {e}", v.name),
        }
    }

    fn advance(&self, be: &str, v: &mut Vif<T>) -> Result<(), VifError> {
        if v.any_dead() {
            return Err(VifError::Bad {
                path: v.fe.clone(),
                why: "the frontend broke the netif protocol".into(),
            });
        }
        let online = self
            .xs
            .read_u64(XBT_NULL, &format!("{be}/online"))
            .ok()
            .flatten()
            .unwrap_or(1);
        if self.state_of(&format!("{be}/state")) == XenbusState::Closing && online == 0 {
            // xl network-detach / domain destruction.
            v.teardown();
            v.state = XenbusState::Closing;
            self.write_state(be, v, XenbusState::Closed)?;
            v.broken = true;
            return Ok(());
        }
        if v.broken {
            // As Linux netback after xenbus_dev_fatal: the frontend's Closed is
            // followed, and from Closed its Initialising gets the vif offered again.
            match self.state_of(&format!("{}/state", v.fe)) {
                XenbusState::Closed => self.write_state(be, v, XenbusState::Closed)?,
                XenbusState::Initialising
                    if v.state == XenbusState::Closed && online == 1 && !v.taps.is_empty() =>
                {
                    let _ = self.xs.rm(XBT_NULL, &format!("{be}/error"));
                    v.broken = false;
                    self.write_state(be, v, XenbusState::InitWait)?;
                }
                _ => {}
            }
            return Ok(());
        }
        match self.state_of(&format!("{}/state", v.fe)) {
            XenbusState::Initialising | XenbusState::InitWait
                if v.connected()
                    || matches!(v.state, XenbusState::Closed | XenbusState::Closing) =>
            {
                v.teardown();
                self.write_state(be, v, XenbusState::InitWait)?;
            }
            XenbusState::Connected
                if !v.connected()
                    && matches!(v.state, XenbusState::InitWait | XenbusState::Connected) =>
            {
                // As Linux netback: connect once the hotplug script put the tap in place.
                let hp = self
                    .xs
                    .read_opt(XBT_NULL, &format!("{be}/hotplug-status"))?;
                if hp.as_deref().map(|s| s.trim_end_matches('\0')) == Some("connected") {
                    self.connect(be, v)?;
                }
            }
            XenbusState::Closing => {
                v.teardown();
                self.write_state(be, v, XenbusState::Closing)?;
            }
            XenbusState::Closed => {
                v.teardown();
                self.write_state(be, v, XenbusState::Closed)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn state_of(&self, path: &str) -> XenbusState {
        match self.xs.read_opt(XBT_NULL, path) {
            Ok(Some(s)) => s
                .trim_end_matches('\0')
                .parse()
                .unwrap_or(XenbusState::Unknown),
            _ => XenbusState::Unknown,
        }
    }
}
