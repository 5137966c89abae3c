//! The frontend's side of xenbus for one device of this domain
//! (`/local/domain/<domid>/device/<class>/<devid>`, over `/dev/xen/xenbus`): its
//! backend's path and domain, an event-channel device, its own nodes and state, and
//! waiting for the backend's state. The protocol on top (refusals, resets, a proper
//! connection) is each hostile frontend's own.

use anyhow::{Context, Result};
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::EvtchnDevice;
use std::time::{Duration, Instant};

pub struct XenbusFront {
    xs: XsClient,
    /// Frontend nodes a connection attempt may leave behind ([`XenbusFront::clear`]).
    fe_nodes: &'static [&'static str],
    pub fe: String,
    pub be: String,
    pub be_id: u16,
    pub ev: EvtchnDevice,
}

impl XenbusFront {
    /// The frontend of this domain's `device/<class>/<devid>`: its backend's path (as
    /// read) and domain from xenstore, and an event-channel device. `fe_nodes`: the
    /// nodes [`XenbusFront::clear`] removes.
    pub fn open(class: &str, devid: u32, fe_nodes: &'static [&'static str]) -> Result<Self> {
        let xs = XsClient::open().context("opening xenstore (/dev/xen/xenbus)")?;
        let domid = xs.read_u64(XBT_NULL, "domid")?.context("no domid node")?;
        let fe = format!("/local/domain/{domid}/device/{class}/{devid}");
        let be = xs
            .read_opt(XBT_NULL, &format!("{fe}/backend"))?
            .with_context(|| format!("{fe}/backend is missing"))?;
        let be_id = xs
            .read_u64(XBT_NULL, &format!("{fe}/backend-id"))?
            .context("no backend-id")? as u16;
        Ok(XenbusFront {
            xs,
            fe_nodes,
            fe,
            be,
            be_id,
            ev: EvtchnDevice::open()?,
        })
    }

    /// A node's value without trailing NULs; `None` when missing or unreadable.
    pub fn read(&self, path: &str) -> Option<String> {
        self.xs
            .read_opt(XBT_NULL, path)
            .ok()
            .flatten()
            .map(|s| s.trim_end_matches('\0').to_string())
    }

    /// The backend's state (0 when missing or not a number).
    pub fn be_state(&self) -> u32 {
        self.read(&format!("{}/state", self.be))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn be_error(&self) -> String {
        self.read(&format!("{}/error", self.be))
            .unwrap_or_else(|| "no error node".into())
    }

    /// Waits until the backend's state satisfies `ok`; returns the last state seen and
    /// whether it did.
    pub fn wait_be(&self, ok: impl Fn(u32) -> bool, timeout: Duration) -> (u32, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.be_state();
            if ok(s) {
                return (s, true);
            }
            if Instant::now() > deadline {
                return (s, false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes the frontend's node `key`.
    pub fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.xs
            .write(XBT_NULL, &format!("{}/{key}", self.fe), value)
            .with_context(|| format!("writing {}/{key}", self.fe))
    }

    pub fn set_state(&self, s: u32) -> Result<()> {
        self.write("state", s.to_string().as_bytes())
    }

    /// Removes the frontend nodes a connection attempt may leave behind.
    pub fn clear(&self) {
        for n in self.fe_nodes {
            let _ = self.xs.rm(XBT_NULL, &format!("{}/{n}", self.fe));
        }
    }
}
