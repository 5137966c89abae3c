//! The xenbus side of the hostile netfront: its `device/vif/<devid>` nodes, the
//! backend's state, refusals and resets.

use anyhow::{bail, Result};
use sluice_abi::netif::keys;
use sluice_hostile_common::XenbusFront;
use sluice_hostile_common::{secs, Report};
use std::ops::Deref;

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

/// The vif's xenbus side ([`XenbusFront`]: nodes, states, waiting), with the netif
/// protocol on top.
pub struct Front(XenbusFront);

impl Deref for Front {
    type Target = XenbusFront;
    fn deref(&self) -> &XenbusFront {
        &self.0
    }
}

impl Front {
    /// The frontend of this domain's `device/vif/<devid>` (its backend's path without
    /// trailing NULs).
    pub fn open(devid: u32) -> Result<Front> {
        let mut x = XenbusFront::open("vif", devid, FE_NODES)?;
        x.be = x.be.trim_end_matches('\0').to_string();
        Ok(Front(x))
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
