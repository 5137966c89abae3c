//! One device's xenbus state machine: reads the toolstack's nodes, opens the image
//! and publishes the features (InitWait), follows the frontend's state (connect on
//! Initialised, teardown on Closing/Closed, InitWait again when it restarts) and the
//! toolstack's detach, and fails a device whose setup or rings go wrong.

use super::{Backend, Device, DeviceError, MAX_RING_PAGE_ORDER};
use crate::disk::Disk;
use crate::ring_server::MAX_INDIRECT_SEGMENTS;
use sluice_abi::blkif::VdiskInfo;
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::{transaction, XBT_NULL};
use sluice_dom0::{EventChannels, EvtchnError, GrantMapper, LogLimiter, XenStore, XsError};
use std::path::Path;
use std::sync::Arc;

impl<S, G, F, E> Backend<S, G, F>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    G::Mapping: 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
{
    pub(super) fn write_state(
        &self,
        be: &str,
        dev: &mut Device,
        state: XenbusState,
    ) -> Result<(), XsError> {
        if dev.state != state {
            self.xs.write(
                XBT_NULL,
                &format!("{be}/state"),
                state.xenstore_value().as_bytes(),
            )?;
            tracing::info!("{}: backend state {}", dev.name, state.name());
            dev.state = state;
        }
        Ok(())
    }

    fn fail(&self, be: &str, dev: &mut Device, e: &DeviceError) {
        tracing::error!("{}: {e}; closing the device", dev.name);
        dev.teardown();
        let _ = self
            .xs
            .write(XBT_NULL, &format!("{be}/error"), e.to_string().as_bytes());
        let _ = self.write_state(be, dev, XenbusState::Closing);
    }

    pub(super) fn step(&mut self, be: &str) -> Result<(), DeviceError> {
        // A device we gave up on whose directory the toolstack wrote anew (state 1:
        // `xl block-attach` after a detach, both seen in one batch of watch events).
        if self.devices.get(be).is_some_and(|d| d.broken)
            && self.state_of(&format!("{be}/state")) == XenbusState::Initialising
        {
            if let Some(mut d) = self.devices.remove(be) {
                d.teardown();
                let _ = self.xs.unwatch(&format!("{}/state", d.fe), be);
            }
        }
        if !self.devices.contains_key(be) {
            // Wait for the toolstack's initial state node before touching the device.
            if self
                .xs
                .read_opt(XBT_NULL, &format!("{be}/state"))?
                .is_none()
            {
                return Ok(());
            }
            let mut dev = self.setup(be)?;
            match self.init_wait(be, &mut dev) {
                Ok(()) => {}
                Err(e) => {
                    self.fail(be, &mut dev, &e);
                    dev.broken = true;
                }
            }
            self.devices.insert(be.to_string(), dev);
        }
        let Some(mut dev) = self.devices.remove(be) else {
            return Ok(());
        };
        let r = self.advance(be, &mut dev);
        if let Err(e) = &r {
            self.fail(be, &mut dev, e);
        }
        self.devices.insert(be.to_string(), dev);
        Ok(())
    }

    /// Reads the toolstack's nodes; returns a device not yet in InitWait.
    fn setup(&self, be: &str) -> Result<Device, DeviceError> {
        let name = be
            .strip_prefix(&self.root)
            .unwrap_or(be)
            .trim_start_matches('/')
            .replace('/', ":");
        let name = format!("vbd {name}");
        let fe = self.need(&format!("{be}/frontend"))?;
        let fe_id = self.number(&format!("{be}/frontend-id"), u16::MAX.into())? as u16;
        if !fe.starts_with(&format!("/local/domain/{fe_id}/")) {
            return Err(DeviceError::Bad {
                path: format!("{be}/frontend"),
                why: format!("{fe:?} is not under domain {fe_id}"),
            });
        }
        self.xs.watch(&format!("{fe}/state"), be)?;
        Ok(Device {
            name,
            fe,
            fe_id,
            disk: None,
            queues: vec![],
            state: XenbusState::Initialising,
            broken: false,
            stats: Arc::default(),
            log: Arc::new(LogLimiter::new(self.log_rate.0, self.log_rate.1.clone())),
            takeover: false,
        })
    }

    fn need(&self, path: &str) -> Result<String, DeviceError> {
        self.xs
            .read_opt(XBT_NULL, path)?
            .ok_or_else(|| DeviceError::Missing(path.into()))
    }

    pub(super) fn number(&self, path: &str, max: u64) -> Result<u64, DeviceError> {
        let v = self
            .xs
            .read_u64(XBT_NULL, path)?
            .ok_or_else(|| DeviceError::Missing(path.into()))?;
        if v > max {
            return Err(DeviceError::Bad {
                path: path.into(),
                why: format!("{v} exceeds {max}"),
            });
        }
        Ok(v)
    }

    /// Opens the image and publishes it and our features; state InitWait.
    fn init_wait(&self, be: &str, dev: &mut Device) -> Result<(), DeviceError> {
        let params = self.need(&format!("{be}/params"))?;
        let mode = self
            .xs
            .read_opt(XBT_NULL, &format!("{be}/mode"))?
            .unwrap_or_else(|| "w".into());
        let readonly = match mode.as_str() {
            "r" | "ro" => true,
            "w" | "rw" | "w!" => false,
            other => {
                return Err(DeviceError::Bad {
                    path: format!("{be}/mode"),
                    why: format!("unknown mode {other:?}"),
                })
            }
        };
        let disk = Arc::new(Disk::open_with(
            Path::new(params.trim_end_matches('\0')),
            readonly,
            self.direct_io,
        )?);
        let info = if readonly {
            VdiskInfo::READONLY.bits()
        } else {
            0
        };
        let sectors = disk.sectors();
        let max_queues = self.max_queues;
        transaction(&*self.xs, 16, |tx| {
            let w = |k: &str, v: String| self.xs.write(tx, &format!("{be}/{k}"), v.as_bytes());
            w("feature-flush-cache", "1".into())?;
            w("feature-barrier", "1".into())?;
            w(
                "feature-persistent",
                if self.persistent_limit > 0 { "1" } else { "0" }.into(),
            )?;
            w(
                "feature-max-indirect-segments",
                MAX_INDIRECT_SEGMENTS.to_string(),
            )?;
            w("max-ring-page-order", MAX_RING_PAGE_ORDER.to_string())?;
            w("multi-queue-max-queues", max_queues.to_string())?;
            w("feature-discard", if readonly { "0" } else { "1" }.into())?;
            w(
                "discard-granularity",
                disk.physical_sector_size().max(4096).to_string(),
            )?;
            w("discard-alignment", "0".into())?;
            w("discard-secure", "0".into())?;
            w("sectors", sectors.to_string())?;
            // `sectors` stays in 512-byte units whatever the sector size (Linux's
            // blkfront and blkback agree on this; Xen 4.17's blkif.h comment says otherwise).
            w("sector-size", disk.sector_size().to_string())?;
            w(
                "physical-sector-size",
                disk.physical_sector_size().to_string(),
            )?;
            w("info", info.to_string())?;
            Ok(())
        })?;
        tracing::info!(
            "{}: {params} ({sectors} sectors, {}-byte sectors, {}, {}), frontend {} (domain {})",
            dev.name,
            disk.sector_size(),
            if readonly { "read-only" } else { "read-write" },
            if disk.direct() {
                "O_DIRECT"
            } else {
                "buffered"
            },
            dev.fe,
            dev.fe_id
        );
        dev.disk = Some(disk);
        if self.state_of(&format!("{be}/state")) == XenbusState::Connected {
            // Our own earlier run connected this device and died (or was restarted):
            // keep the state the frontend sees and reconnect to its live rings.
            tracing::info!("{}: taking over a connected device", dev.name);
            dev.state = XenbusState::Connected;
            dev.takeover = true;
        } else {
            self.write_state(be, dev, XenbusState::InitWait)?;
        }
        Ok(())
    }

    fn advance(&self, be: &str, dev: &mut Device) -> Result<(), DeviceError> {
        if dev.any_dead() {
            dev.teardown();
            dev.broken = true;
            return Err(DeviceError::Bad {
                path: dev.fe.clone(),
                why: "the frontend broke the ring protocol".into(),
            });
        }
        let online = self
            .xs
            .read_u64(XBT_NULL, &format!("{be}/online"))
            .ok()
            .flatten()
            .unwrap_or(1);
        let be_state = self.state_of(&format!("{be}/state"));
        if be_state == XenbusState::Closing && online == 0 {
            // The toolstack detaches the device (xl block-detach).
            dev.teardown();
            dev.state = XenbusState::Closing;
            self.write_state(be, dev, XenbusState::Closed)?;
            // Detached for good: the toolstack removes the directory next.
            dev.broken = true;
            return Ok(());
        }
        if dev.broken {
            return Ok(());
        }
        match self.state_of(&format!("{}/state", dev.fe)) {
            XenbusState::Initialising | XenbusState::InitWait
                if dev.connected()
                    || matches!(dev.state, XenbusState::Closed | XenbusState::Closing) =>
            {
                // The frontend restarted: offer the device again.
                dev.teardown();
                self.write_state(be, dev, XenbusState::InitWait)?;
            }
            XenbusState::Initialised | XenbusState::Connected
                if !dev.connected()
                    && matches!(dev.state, XenbusState::InitWait | XenbusState::Connected) =>
            {
                self.connect(be, dev)?;
            }
            XenbusState::Closing => {
                dev.teardown();
                self.write_state(be, dev, XenbusState::Closing)?;
            }
            XenbusState::Closed => {
                dev.teardown();
                self.write_state(be, dev, XenbusState::Closed)?;
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
