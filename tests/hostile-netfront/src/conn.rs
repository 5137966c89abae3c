//! A connected vif of the hostile netfront: the granted pages (both rings, a TX data
//! page, the RX pages) and [`Conn`], which posts RX pages, pushes TX slots and collects
//! their responses (keeping RX responses met meanwhile), runs the ARP round trip, and
//! checks that a bad packet is answered `NETIF_RSP_ERROR` or that a request Linux
//! netback disconnects for closes the vif.

use crate::frames::{arp_request, is_arp_reply, tx, Ident};
use crate::xenbus::{good_nodes, Front, CLOSED, CLOSING};
use anyhow::{bail, Context, Result};
use sluice_abi::netif::{
    GrantRef, NetTxFlags, NetifRxFrontRing, NetifRxRequest, NetifTxFrontRing, NetifTxRequest,
    NetifTxResponse,
};
use sluice_abi::ring::RSP_PROD_OFFSET;
use sluice_hostile_common::{secs, Report};
use sluice_xen_sys::GrantedPages;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// The granted pages: both rings, a TX data page, the RX pages.
pub(crate) struct Pages {
    pub(crate) tx: GrantedPages,
    pub(crate) rx: GrantedPages,
    pub(crate) data: GrantedPages,
    pub(crate) rxbuf: GrantedPages,
}

/// A connected vif.
pub(crate) struct Conn<'a> {
    pub(crate) f: &'a Front,
    pub(crate) p: &'a Pages,
    pub(crate) who: &'a Ident,
    pub(crate) tx: NetifTxFrontRing<'a>,
    pub(crate) rx: NetifRxFrontRing<'a>,
    pub(crate) port: u32,
    pub(crate) id: u16,
    /// RX responses taken off the ring while waiting for TX responses ([`Conn::send`]),
    /// handed out by the next [`Conn::rx_frames`]: the answer to a frame that crossed
    /// dom0 before our TX response was read must not be lost (bounded: the newest
    /// [`RX_SEEN_MAX`]).
    pub(crate) rx_seen: Vec<(u16, i16, Vec<u8>)>,
}

/// RX responses kept between a `send` and the next `rx_frames` at most.
pub(crate) const RX_SEEN_MAX: usize = 1024;

impl<'a> Conn<'a> {
    /// A proper connection (after `nodes` tweaks, none for a good one); posts the RX
    /// pages unless `post_rx` is false.
    pub(crate) fn open(
        f: &'a Front,
        p: &'a Pages,
        who: &'a Ident,
        post_rx: bool,
    ) -> Result<Conn<'a>> {
        let tx = NetifTxFrontRing::init(p.tx.mem()).context("TX ring")?;
        let rx = NetifRxFrontRing::init(p.rx.mem()).context("RX ring")?;
        let port = f.ev.bind_unbound_port(f.be_id).context("event channel")?;
        f.connect(&good_nodes(p.tx.grefs()[0], p.rx.grefs()[0], port))?;
        let mut c = Conn {
            f,
            p,
            who,
            tx,
            rx,
            port,
            id: 0,
            rx_seen: Vec::new(),
        };
        if post_rx {
            c.post_good_rx()?;
        }
        Ok(c)
    }

    pub(crate) fn next_id(&mut self) -> u16 {
        self.id = self.id.wrapping_add(1) & 0x7fff;
        self.id
    }

    pub(crate) fn post_good_rx(&mut self) -> Result<()> {
        for (i, &g) in self.p.rxbuf.grefs().iter().enumerate() {
            self.post_rx(i as u16, g)?;
        }
        self.kick()
    }

    pub(crate) fn post_rx(&mut self, id: u16, gref: u32) -> Result<()> {
        self.rx.push_request(&NetifRxRequest {
            id,
            pad: 0,
            gref: GrantRef(gref),
        })?;
        Ok(())
    }

    pub(crate) fn kick(&mut self) -> Result<()> {
        self.rx.push_requests()?;
        self.f.ev.notify(self.port)?;
        Ok(())
    }

    /// Waits up to 50 ms for an event.
    pub(crate) fn poll(&self) -> Result<()> {
        if self.f.ev.wait(Some(Duration::from_millis(50)))? {
            let mut pending = Vec::new();
            self.f.ev.read_pending(&mut pending)?;
            for p in pending {
                self.f.ev.unmask(p)?;
            }
        }
        Ok(())
    }

    /// RX responses so far, (id, status, frame): those `send` kept, then those on the
    /// ring now.
    pub(crate) fn rx_frames(&mut self) -> Result<Vec<(u16, i16, Vec<u8>)>> {
        let mut out = std::mem::take(&mut self.rx_seen);
        out.extend(self.pop_rx()?);
        Ok(out)
    }

    /// RX responses on the ring now; each good page is posted again.
    pub(crate) fn pop_rx(&mut self) -> Result<Vec<(u16, i16, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut again = false;
        while let Some(r) = self.rx.pop_response()? {
            let mut frame = Vec::new();
            if let Some(page) = self.p.rxbuf.page(r.id as usize) {
                if r.status > 0 && usize::from(r.offset) + r.status as usize <= 4096 {
                    frame = vec![0u8; r.status as usize];
                    page.read_bytes(r.offset.into(), &mut frame)?;
                }
                self.post_rx(r.id, self.p.rxbuf.grefs()[r.id as usize])?;
                again = true;
            }
            out.push((r.id, r.status, frame));
        }
        if again {
            self.kick()?;
        }
        Ok(out)
    }

    /// Pushes `slots` at once and collects as many TX responses.
    pub(crate) fn send(&mut self, slots: &[NetifTxRequest]) -> Result<Vec<NetifTxResponse>> {
        for s in slots {
            self.tx.push_request(s)?;
        }
        self.tx.push_requests()?;
        self.f.ev.notify(self.port)?;
        let deadline = Instant::now() + secs(10);
        let mut out = Vec::new();
        loop {
            while let Some(r) = self.tx.pop_response()? {
                out.push(r);
            }
            if out.len() >= slots.len() {
                return Ok(out);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} TX response(s) after {:?}",
                    out.len(),
                    slots.len(),
                    secs(10)
                );
            }
            let got = self.pop_rx()?;
            self.rx_seen.extend(got);
            if self.rx_seen.len() > RX_SEEN_MAX {
                let extra = self.rx_seen.len() - RX_SEEN_MAX;
                self.rx_seen.drain(..extra);
            }
            self.poll()?;
        }
    }

    /// Sends an ARP request for the peer until its reply comes back (3 tries).
    pub(crate) fn arp(&mut self) -> Result<String> {
        let frame = arp_request(self.who);
        self.p.data.mem().write_bytes(0, &frame)?;
        for attempt in 1..=3 {
            let id = self.next_id();
            let g = self.p.data.grefs()[0];
            let rsp = self.send(&[tx(g, 0, NetTxFlags::empty(), id, 60)])?;
            if rsp[0].id != id || rsp[0].status != 0 {
                bail!(
                    "the ARP request was answered id {} status {}",
                    rsp[0].id,
                    rsp[0].status
                );
            }
            let deadline = Instant::now() + secs(5);
            while Instant::now() < deadline {
                if self
                    .rx_frames()?
                    .iter()
                    .any(|(_, _, f)| is_arp_reply(f, self.who))
                {
                    return Ok(format!(
                        "ARP reply from {} (request {attempt})",
                        self.who.peer
                    ));
                }
                self.poll()?;
            }
        }
        bail!("no ARP reply from {} to 3 requests", self.who.peer)
    }

    /// Sends one bad packet (`slots`, ids set here); every data slot must be answered
    /// ERROR with its id, every extra-info slot NULL.
    pub(crate) fn expect_error(
        &mut self,
        r: &mut Report,
        name: &str,
        mut slots: Vec<NetifTxRequest>,
    ) {
        let mut extras = vec![false; slots.len()];
        let mut in_extras = false;
        for (i, s) in slots.iter_mut().enumerate() {
            if in_extras {
                extras[i] = true;
                in_extras = s.as_bytes()[1] & 1 != 0;
                continue;
            }
            in_extras = NetTxFlags::from_bits_retain(s.flags).contains(NetTxFlags::EXTRA_INFO);
            s.id = self.next_id();
        }
        match self.send(&slots) {
            Ok(rsp) => {
                let want: Vec<(u16, i16)> = slots
                    .iter()
                    .zip(&extras)
                    .filter(|(_, &e)| !e)
                    .map(|(s, _)| (s.id, -1))
                    .collect();
                let got: Vec<(u16, i16)> = rsp
                    .iter()
                    .filter(|p| p.status != 1)
                    .map(|p| (p.id, p.status))
                    .collect();
                r.check(
                    name,
                    got == want,
                    format!(
                        "{} slot(s) answered (id, status) {got:?} (want {want:?})",
                        slots.len()
                    ),
                );
            }
            Err(e) => r.check(name, false, format!("{e:#}")),
        }
    }

    /// Publishes what Linux netback disconnects for (`publish` does it); the vif must
    /// close without a TX or RX response.
    pub(crate) fn expect_disconnect(
        mut self,
        r: &mut Report,
        name: &str,
        publish: impl FnOnce(&mut Self) -> Result<()>,
    ) {
        let tx_before = self
            .p
            .tx
            .mem()
            .load_u32_acquire(RSP_PROD_OFFSET)
            .unwrap_or(0);
        let rx_before = self
            .p
            .rx
            .mem()
            .load_u32_acquire(RSP_PROD_OFFSET)
            .unwrap_or(0);
        if let Err(e) = publish(&mut self) {
            r.check(name, false, format!("{e:#}"));
            return;
        }
        let (s, ok) = self.f.wait_be(|s| s == CLOSING || s == CLOSED, secs(30));
        let tx_after = self
            .p
            .tx
            .mem()
            .load_u32_acquire(RSP_PROD_OFFSET)
            .unwrap_or(0);
        let rx_after = self
            .p
            .rx
            .mem()
            .load_u32_acquire(RSP_PROD_OFFSET)
            .unwrap_or(0);
        // Nothing of the faulty ring answered (the RX case sends one valid TX packet).
        let quiet = if name.starts_with("rx-") {
            rx_after == rx_before
        } else {
            tx_after == tx_before
        };
        r.check(
            name,
            ok && quiet,
            format!(
                "backend state {s} (error: {}); TX rsp_prod {tx_before} -> {tx_after}, RX rsp_prod {rx_before} -> {rx_after}",
                self.f.be_error()
            ),
        );
    }
}
