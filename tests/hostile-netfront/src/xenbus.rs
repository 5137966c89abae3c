//! The xenbus side of the hostile netfront: its `device/vif/<devid>` nodes, the
//! backend's state, refusals and resets.

use crate::{secs, Report};
use anyhow::{bail, Context, Result};
use sluice_abi::netif::keys;
use sluice_dom0::xenstore::{XsClient, XBT_NULL};
use sluice_dom0::XenStore;
use sluice_xen_sys::EvtchnDevice;
use std::time::{Duration, Instant};

pub const INIT_WAIT: u32 = 2;
pub const CONNECTED: u32 = 4;
pub const CLOSING: u32 = 5;
pub const CLOSED: u32 = 6;

/// Frontend xenstore nodes a connection attempt may leave behind.
const FE_NODES: &[&str] = &[
    keys::TX_RING_REF,
    keys::RX_RING_REF,
    keys::EVENT_CHANNEL,
    keys::EVENT_CHANNEL_TX,
    keys::EVENT_CHANNEL_RX,
    keys::REQUEST_RX_COPY,
    keys::FEATURE_RX_NOTIFY,
    keys::FEATURE_SG,
    keys::FEATURE_NO_CSUM_OFFLOAD,
    keys::MULTI_QUEUE_NUM_QUEUES,
];

/// Frontend nodes to publish: key, raw value.
pub type Nodes = Vec<(&'static str, Vec<u8>)>;

/// The nodes of a proper single-queue connection (scatter-gather on, no offloads).
pub fn good_nodes(tx_ref: u32, rx_ref: u32, port: u32) -> Nodes {
    vec![
        (keys::TX_RING_REF, tx_ref.to_string().into_bytes()),
        (keys::RX_RING_REF, rx_ref.to_string().into_bytes()),
        (keys::EVENT_CHANNEL, port.to_string().into_bytes()),
        (keys::REQUEST_RX_COPY, b"1".to_vec()),
        (keys::FEATURE_RX_NOTIFY, b"1".to_vec()),
        (keys::FEATURE_SG, b"1".to_vec()),
        (keys::FEATURE_NO_CSUM_OFFLOAD, b"1".to_vec()),
    ]
}

/// `nodes` with `key` set to `value` (`None`: removed).
pub fn with(mut nodes: Nodes, key: &'static str, value: Option<&[u8]>) -> Nodes {
    nodes.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        nodes.push((key, v.to_vec()));
    }
    nodes
}

pub struct Front {
    xs: XsClient,
    pub fe: String,
    pub be: String,
    pub be_id: u16,
    pub ev: EvtchnDevice,
}

impl Front {
    /// The frontend of this domain's `device/vif/<devid>`.
    pub fn open(devid: u32) -> Result<Front> {
        let xs = XsClient::open().context("opening xenstore (/dev/xen/xenbus)")?;
        let domid = xs.read_u64(XBT_NULL, "domid")?.context("no domid node")?;
        let fe = format!("/local/domain/{domid}/device/vif/{devid}");
        let be = xs
            .read_opt(XBT_NULL, &format!("{fe}/backend"))?
            .with_context(|| format!("{fe}/backend is missing"))?;
        let be = be.trim_end_matches('\0').to_string();
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

    pub fn read(&self, path: &str) -> Option<String> {
        self.xs
            .read_opt(XBT_NULL, path)
            .ok()
            .flatten()
            .map(|s| s.trim_end_matches('\0').to_string())
    }

    pub fn be_state(&self) -> u32 {
        self.read(&format!("{}/state", self.be))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn be_error(&self) -> String {
        self.read(&format!("{}/error", self.be))
            .unwrap_or_else(|| "no error node".into())
    }

    /// Waits until the backend's state satisfies `ok`; the last state seen and whether
    /// it did.
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

    pub fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.xs
            .write(XBT_NULL, &format!("{}/{key}", self.fe), value)
            .with_context(|| format!("writing {}/{key}", self.fe))
    }

    pub fn set_state(&self, s: u32) -> Result<()> {
        self.write("state", s.to_string().as_bytes())
    }

    fn clear(&self) {
        for n in FE_NODES {
            let _ = self.xs.rm(XBT_NULL, &format!("{}/{n}", self.fe));
        }
    }

    /// As xen-netfront after a failure: Closed (the backend follows), then
    /// Initialising; the backend must offer the vif again (InitWait).
    pub fn reset(&self) -> Result<()> {
        self.set_state(CLOSED)?;
        let (s, ok) = self.wait_be(|s| s == CLOSED, secs(20));
        if !ok {
            bail!("frontend Closed -> backend state {s} (want 6, Closed)");
        }
        self.clear();
        self.set_state(1)?;
        let (s, ok) = self.wait_be(|s| s == INIT_WAIT, secs(20));
        if !ok {
            bail!("frontend Initialising -> backend state {s} (want 2, InitWait)");
        }
        Ok(())
    }

    /// Publishes `nodes` and Connected; the backend must refuse (Closing/Closed with an
    /// `error` node) rather than connect, and offer the vif again after a reset.
    pub fn expect_refusal(&self, r: &mut Report, name: &str, nodes: &Nodes) -> bool {
        self.clear();
        for (k, v) in nodes {
            if let Err(e) = self.write(k, v) {
                r.check(name, false, format!("{e:#}"));
                return false;
            }
        }
        if let Err(e) = self.set_state(CONNECTED) {
            r.check(name, false, format!("{e:#}"));
            return false;
        }
        let (s, answered) = self.wait_be(|s| s >= CONNECTED, secs(20));
        let err = self.read(&format!("{}/error", self.be));
        let refused = answered && (s == CLOSING || s == CLOSED) && err.is_some();
        let detail = if answered {
            format!("backend state {s}, error node: {err:?}")
        } else {
            format!("backend stayed in state {s} for {:?}", secs(20))
        };
        r.check(name, refused, detail);
        let back = self.reset();
        r.check(
            &format!("{name}/reset"),
            back.is_ok(),
            match &back {
                Ok(()) => "frontend Closed then Initialising -> backend InitWait".into(),
                Err(e) => format!("{e:#}"),
            },
        );
        back.is_ok()
    }

    /// Publishes `nodes` and Connected; waits for the backend's Connected.
    pub fn connect(&self, nodes: &Nodes) -> Result<()> {
        self.clear();
        for (k, v) in nodes {
            self.write(k, v)?;
        }
        self.set_state(CONNECTED)?;
        let (s, ok) = self.wait_be(|s| s >= CONNECTED, secs(20));
        if !ok || s != CONNECTED {
            bail!(
                "backend state {s} instead of Connected (error: {})",
                self.be_error()
            );
        }
        Ok(())
    }
}
