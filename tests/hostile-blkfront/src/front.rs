//! The frontend's xenstore side: the device's nodes, states, waiting for the
//! backend, refusals and a proper connection.

use anyhow::{bail, Context, Result};
use sluice_abi::blkif::BlkifFrontRing;
use sluice_hostile_common::XenbusFront;
use sluice_hostile_common::{secs, Report};
use sluice_xen_sys::GrantedPages;
use std::ops::Deref;

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

/// The device's xenbus side ([`XenbusFront`]: nodes, states, waiting), with the
/// blkif protocol on top.
pub(crate) struct Front(XenbusFront);

impl Deref for Front {
    type Target = XenbusFront;
    fn deref(&self) -> &XenbusFront {
        &self.0
    }
}

impl Front {
    /// The frontend of this domain's `device/vbd/<devid>`: its backend's path and domain
    /// from xenstore, and an event-channel device.
    pub(crate) fn open(devid: u32) -> Result<Front> {
        Ok(Front(XenbusFront::open("vbd", devid, FE_NODES)?))
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
