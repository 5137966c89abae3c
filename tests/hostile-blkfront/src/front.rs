//! The frontend's xenstore side: the device's nodes, states, waiting for the
//! backend, refusals and a proper connection.

use crate::report::{secs, Report};
use anyhow::{bail, Context, Result};
use sluice_abi::blkif::BlkifFrontRing;
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::{EvtchnDevice, GrantedPages};
use std::time::{Duration, Instant};

/// Frontend xenstore nodes a connection attempt may leave behind.
const FE_NODES: &[&str] = &[
    "ring-ref",
    "ring-ref0",
    "ring-ref1",
    "event-channel",
    "protocol",
    "ring-page-order",
    "num-ring-pages",
    "multi-queue-num-queues",
];

/// Frontend nodes to publish: key, raw value.
pub(crate) type Nodes<'a> = Vec<(&'a str, Vec<u8>)>;

pub(crate) const CLOSING: u32 = 5;
pub(crate) const CLOSED: u32 = 6;

pub(crate) struct Front {
    xs: XsClient,
    pub(crate) fe: String,
    pub(crate) be: String,
    pub(crate) be_id: u16,
    pub(crate) ev: EvtchnDevice,
}

impl Front {
    /// The frontend of this domain's `device/vbd/<devid>`: its backend's path and domain
    /// from xenstore, and an event-channel device.
    pub(crate) fn open(devid: u32) -> Result<Front> {
        let xs = XsClient::open().context("opening xenstore (/dev/xen/xenbus)")?;
        let domid = xs.read_u64(XBT_NULL, "domid")?.context("no domid node")?;
        let fe = format!("/local/domain/{domid}/device/vbd/{devid}");
        let be = xs
            .read_opt(XBT_NULL, &format!("{fe}/backend"))?
            .with_context(|| format!("{fe}/backend is missing"))?;
        let be_id = xs
            .read_u64(XBT_NULL, &format!("{fe}/backend-id"))?
            .context("no backend-id")? as u16;
        Ok(Front {
            xs,
            fe,
            be,
            be_id,
            ev: EvtchnDevice::open()?,
        })
    }

    pub(crate) fn read(&self, path: &str) -> Option<String> {
        self.xs
            .read_opt(XBT_NULL, path)
            .ok()
            .flatten()
            .map(|s| s.trim_end_matches('\0').to_string())
    }

    fn be_state(&self) -> u32 {
        self.read(&format!("{}/state", self.be))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn be_error(&self) -> String {
        self.read(&format!("{}/error", self.be))
            .unwrap_or_else(|| "no error node".into())
    }

    /// Waits until the backend's state satisfies `ok`; returns the last state seen and
    /// whether it did.
    pub(crate) fn wait_be(&self, ok: impl Fn(u32) -> bool, timeout: Duration) -> (u32, bool) {
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

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.xs
            .write(XBT_NULL, &format!("{}/{key}", self.fe), value)
            .with_context(|| format!("writing {}/{key}", self.fe))
    }

    pub(crate) fn set_state(&self, s: u32) -> Result<()> {
        self.write("state", s.to_string().as_bytes())
    }

    pub(crate) fn clear(&self) {
        for n in FE_NODES {
            let _ = self.xs.rm(XBT_NULL, &format!("{}/{n}", self.fe));
        }
    }

    /// Back to Initialising; the backend must offer the device again (InitWait).
    fn reset(&self, r: &mut Report, name: &str) -> bool {
        self.clear();
        if let Err(e) = self.set_state(1) {
            r.check(&format!("{name}/reset"), false, format!("{e:#}"));
            return false;
        }
        let (s, ok) = self.wait_be(|s| s == 2, secs(20));
        r.check(
            &format!("{name}/reset"),
            ok,
            format!("frontend Initialising -> backend state {s} (want 2, InitWait)"),
        );
        ok
    }

    /// Publishes `nodes` and Initialised; the backend must refuse (Closing/Closed with
    /// an `error` node) rather than connect, and come back after a reset.
    pub(crate) fn expect_refusal(
        &self,
        r: &mut Report,
        name: &str,
        nodes: &[(&str, Vec<u8>)],
    ) -> bool {
        self.clear();
        for (k, v) in nodes {
            if let Err(e) = self.write(k, v) {
                r.check(name, false, format!("{e:#}"));
                return false;
            }
        }
        if let Err(e) = self.set_state(3) {
            r.check(name, false, format!("{e:#}"));
            return false;
        }
        let (s, answered) = self.wait_be(|s| s >= 4, secs(20));
        let refused = answered && (s == CLOSING || s == CLOSED);
        let detail = if refused {
            format!("backend state {s}, error: {}", self.be_error())
        } else if answered {
            format!("backend went to state {s} instead of refusing")
        } else {
            format!("backend stayed in state {s} for {:?}", secs(20))
        };
        r.check(name, refused, detail);
        self.reset(r, name)
    }

    /// A proper connection over `ring` (its one page): ring-ref, a fresh event channel,
    /// protocol, Initialised; waits for Connected. Returns the local port.
    pub(crate) fn connect(&self, ring: &GrantedPages) -> Result<u32> {
        self.clear();
        BlkifFrontRing::init(ring.mem()).context("initialising the ring")?;
        let port = self
            .ev
            .bind_unbound_port(self.be_id)
            .context("allocating an event channel")?;
        self.write("ring-ref", ring.grefs()[0].to_string().as_bytes())?;
        self.write("event-channel", port.to_string().as_bytes())?;
        self.write("protocol", b"x86_64-abi")?;
        self.set_state(3)?;
        let (s, ok) = self.wait_be(|s| s >= 4, secs(20));
        if !ok || s != 4 {
            bail!(
                "backend state {s} instead of Connected (error: {})",
                self.be_error()
            );
        }
        self.set_state(4)?;
        Ok(port)
    }
}
