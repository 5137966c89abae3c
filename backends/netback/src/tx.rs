//! TX (guest → tap): the guest's requests copied out of the ring once (into
//! `pending`), parsed into packets ([`parse_tx_packet`]), every packet's bytes fetched
//! from the guest's grants in one batch, each packet written to the tap with its vnet
//! header, every slot answered in ring order.
//!
//! Two ways to fetch the bytes (`sluice-netback --tx-map` picks the second):
//! * **grant copy** (default): every slot of every good packet in one
//!   `IOCTL_GNTDEV_GRANT_COPY` into our buffers, then `writev` from them;
//! * **mapping**: every slot's grant mapped read-only in one `gntdev` mapping per batch;
//!   the first [`TX_HEAD`] bytes of a packet (its headers) are copied out once and
//!   parsed from that copy, the tap gets them from the copy and the rest straight from
//!   the mapped pages (one copy fewer: the kernel's, into its skb); the mapping goes
//!   when the batch is written. A batch that does not map (a bad grant) goes the copy
//!   way, which finds the bad packet.

use crate::pages::{local_ops, tx_start, PageBuf};
use crate::profile::bump;
use crate::queue::{Frames, Queue, QueueError, TX_BATCH};
use crate::vnet;
use sluice_abi::netif::{
    parse_tx_packet, NetTxFlags, NetifExtraInfo, NetifRsp, NetifTxBackRing, NetifTxRequest,
    NetifTxResponse, TxPacket,
};
use sluice_abi::ring::RingError;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::GrantRef;
use sluice_dom0::{warn_limited, CopyPtr, CopySegment, EventChannels, GrantMap, GrantMapper};
use sluice_xen_sys::FrameRing;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use zerocopy::{FromBytes, IntoBytes};

/// Bytes of a mapped packet copied out for its headers (Ethernet, VLAN, IPv6 with
/// extension headers, TCP with options fit; a packet whose headers do not is copied
/// out whole).
pub const TX_HEAD: usize = 256;
const PAGE: usize = crate::pages::PAGE;
/// Bytes of a TX buffer: a packet (at most 65535 bytes) starting anywhere in its first
/// page ([`tx_start`]).
const TX_BUF: usize = PAGE - 1 + 65535;

/// TX state kept between turns.
#[derive(Default)]
pub(crate) struct TxState {
    /// Requests consumed from the ring, not yet answered (our own copy: read once).
    pending: Vec<NetifTxRequest>,
    bufs: Vec<PageBuf>,
}

enum Parsed {
    Good(Box<TxPacket>),
    Dropped,
}

impl<G: GrantMapper, E: EventChannels, T: Frames> Queue<'_, G, E, T> {
    /// One batch of guest packets to the tap; true if anything was consumed.
    pub(crate) fn tx_turn(
        &self,
        ring: &mut NetifTxBackRing<'_>,
        st: &mut TxState,
        io: Option<&mut FrameRing<'_>>,
    ) -> Result<bool, QueueError> {
        let size = ring.size() as usize;
        while st.pending.len() < size {
            match ring.pop_request()? {
                Some(r) => st.pending.push(r),
                None => break,
            }
        }
        let mut parsed = Vec::new();
        let mut at = 0;
        while parsed.len() < TX_BATCH {
            match parse_tx_packet(&st.pending[at..]) {
                Ok(None) => break,
                Ok(Some(p)) => {
                    parsed.push((at, p.ring_slots, Parsed::Good(Box::new(p))));
                    at += p.ring_slots;
                }
                Err(e) if e.fatal => {
                    warn_limited!(self.log, "fatal tx packet", "{}: {e}", self.name);
                    return Err(QueueError::Protocol(e));
                }
                Err(e) => {
                    warn_limited!(
                        self.log,
                        "dropped tx packet",
                        "{}: dropping: {e}",
                        self.name
                    );
                    parsed.push((at, e.ring_slots, Parsed::Dropped));
                    at += e.ring_slots;
                }
            }
        }
        if at == 0 {
            if st.pending.len() >= size {
                return Err(QueueError::Endless);
            }
            if !st.pending.is_empty() {
                // Everything published was fetched (the ring is not full) and a chain
                // is still open.
                return Err(QueueError::Unfinished);
            }
            return Ok(false);
        }
        while st.bufs.len() < parsed.len() {
            st.bufs.push(PageBuf::new(TX_BUF));
        }
        bump(&self.profile.tx_turns, 1);
        bump(&self.profile.tx_packets, parsed.len() as u64);
        bump(&self.profile.tx_slots, at as u64);
        let packets: Vec<&Parsed> = parsed.iter().map(|(_, _, p)| p).collect();
        if self.tx_map {
            if let Some(status) = self.tx_mapped(&packets, &mut st.bufs) {
                // Written from the guest's pages: answered once they are unmapped.
                self.answer_batch(ring, st, &parsed, &status)?;
                return Ok(true);
            }
        }
        // Copied: each packet written from our buffer, then the batch answered. (Answering
        // before the tap writes was measured and dropped: the guest, its packets completed
        // at once, sent them smaller and more often; docs/bench.md, 2026-12-07 04:12.)
        let (status, starts) = self.tx_copy_in(&packets, &mut st.bufs)?;
        let mut frames = Vec::with_capacity(packets.len());
        for (((p, buf), status), start) in packets.iter().zip(&st.bufs).zip(&status).zip(starts) {
            if let (Parsed::Good(p), NetifRsp::Okay) = (p, status) {
                bump(&self.profile.tx_bytes, u64::from(p.len));
                let frame = &buf.bytes()[start..start + usize::from(p.len)];
                if let Some(hdr) = self.tx_header(p, frame) {
                    frames.push((hdr, frame));
                }
            }
        }
        match io {
            // One enter for the batch.
            Some(r) if !frames.is_empty() => {
                let iovs: Vec<[IoSlice<'_>; 2]> = frames
                    .iter()
                    .map(|(h, f)| [IoSlice::new(h.as_bytes()), IoSlice::new(f)])
                    .collect();
                let refs: Vec<&[IoSlice<'_>]> = iovs.iter().map(|v| &v[..]).collect();
                let results = self.profile.tap_write.time(|| r.write_batch(&refs));
                for res in results {
                    self.tap_written(res);
                }
            }
            _ => {
                for (hdr, frame) in &frames {
                    self.to_tap(&[IoSlice::new(hdr.as_bytes()), IoSlice::new(frame)], &[]);
                }
            }
        }
        self.answer_batch(ring, st, &parsed, &status)?;
        Ok(true)
    }

    /// Answers every slot of the batch's packets (`status` per packet), consumes them,
    /// publishes the responses and notifies if the guest asked.
    fn answer_batch(
        &self,
        ring: &mut NetifTxBackRing<'_>,
        st: &mut TxState,
        parsed: &[(usize, usize, Parsed)],
        status: &[NetifRsp],
    ) -> Result<(), QueueError> {
        for ((start, n, _), status) in parsed.iter().zip(status) {
            if *status != NetifRsp::Okay {
                self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
            answer_tx(ring, &st.pending[*start..start + n], *status)?;
        }
        let used = parsed.last().map_or(0, |(start, n, _)| start + n);
        st.pending.drain(..used);
        if ring.push_responses_and_check_notify()? {
            bump(&self.profile.notifies, 1);
            self.evtchn.notify(self.tx_port)?;
        }
        Ok(())
    }

    /// The grant-copy way: one copy for every slot of every good packet, each packet
    /// laid out in its buffer from [`tx_start`]. The answer and the start per packet.
    fn tx_copy_in(
        &self,
        packets: &[&Parsed],
        bufs: &mut [PageBuf],
    ) -> Result<(Vec<NetifRsp>, Vec<usize>), QueueError> {
        let mut segs = Vec::new();
        let mut ranges = Vec::with_capacity(packets.len());
        let mut starts = Vec::with_capacity(packets.len());
        let mut ops = 0;
        for (p, buf) in packets.iter().zip(bufs.iter_mut()) {
            let from = segs.len();
            let mut start = 0;
            if let Parsed::Good(p) = p {
                let pieces: Vec<(u16, u16)> = p
                    .slots()
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.offset, p.slot_len(i)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                start = tx_start(&pieces);
                let bytes = buf.bytes_mut();
                let base = bytes.as_ptr() as usize;
                let mut rest = &mut bytes[start..start + usize::from(p.len)];
                for (i, slot) in p.slots().iter().enumerate() {
                    let n = usize::from(p.slot_len(i));
                    let (this, tail) = rest.split_at_mut(n);
                    rest = tail;
                    if n > 0 {
                        ops += local_ops(this.as_ptr() as usize - base, n);
                        segs.push(CopySegment {
                            local: CopyPtr::FromGuest(this),
                            domid: self.domid.0,
                            gref: slot.gref.0,
                            offset: slot.offset,
                            status: 0,
                        });
                    }
                }
            }
            ranges.push(from..segs.len());
            starts.push(start);
        }
        if !segs.is_empty() {
            bump(&self.profile.tx_ops, ops as u64);
            self.profile.tx_copy.time(|| self.grants.copy(&mut segs))?;
        }
        let status = packets
            .iter()
            .zip(&ranges)
            .map(|(p, r)| match p {
                Parsed::Dropped => NetifRsp::Error,
                Parsed::Good(_) => match segs[r.clone()].iter().find(|s| s.status != 0) {
                    Some(s) => {
                        warn_limited!(
                            self.log,
                            "bad tx grant",
                            "{}: tx grant {} does not copy (GNTST {}); packet dropped",
                            self.name,
                            s.gref,
                            s.status
                        );
                        NetifRsp::Error
                    }
                    None => NetifRsp::Okay,
                },
            })
            .collect();
        Ok((status, starts))
    }

    /// The mapping way; `None` when the batch's grants do not map (the caller copies
    /// instead, which names the bad grant and drops only its packet).
    fn tx_mapped(&self, packets: &[&Parsed], bufs: &mut [PageBuf]) -> Option<Vec<NetifRsp>> {
        let mut refs = Vec::new();
        for p in packets {
            if let Parsed::Good(p) = p {
                for (i, slot) in p.slots().iter().enumerate() {
                    if p.slot_len(i) > 0 {
                        refs.push(GrantRef(slot.gref.0));
                    }
                }
            }
        }
        if refs.is_empty() {
            return None;
        }
        let map = self
            .profile
            .tx_map
            .time(|| self.grants.map(self.domid, &refs, false))
            .ok()?;
        let mem = map.mem();
        let mut page = 0;
        let mut status = Vec::with_capacity(packets.len());
        for (p, buf) in packets.iter().zip(bufs.iter_mut()) {
            let Parsed::Good(p) = p else {
                status.push(NetifRsp::Error);
                continue;
            };
            // The packet's pieces in the mapping (parse_tx_packet checked that each
            // slot's offset + size stays in its page).
            let mut pieces = Vec::with_capacity(p.slots().len());
            for (i, slot) in p.slots().iter().enumerate() {
                let n = usize::from(p.slot_len(i));
                if n > 0 {
                    pieces.push(mem.slice(page * PAGE + usize::from(slot.offset), n));
                    page += 1;
                }
            }
            let Ok(pieces) = pieces.into_iter().collect::<Result<Vec<_>, _>>() else {
                status.push(NetifRsp::Error);
                continue;
            };
            bump(&self.profile.tx_bytes, u64::from(p.len));
            self.tx_from_mapping(p, &pieces, buf.bytes_mut());
            status.push(NetifRsp::Okay);
        }
        self.profile.tx_unmap.time(|| drop(map));
        Some(status)
    }

    /// Writes one mapped packet: its headers from a copy made once into `buf`, the
    /// rest from the mapping; a packet whose headers pass [`TX_HEAD`] is copied whole.
    fn tx_from_mapping(&self, p: &TxPacket, pieces: &[SharedMem<'_>], buf: &mut [u8]) {
        let len = usize::from(p.len);
        let head = len.min(TX_HEAD);
        let whole = copy_out(pieces, &mut buf[..head]).and_then(|()| {
            match vnet::tx_header(p, &buf[..head]) {
                // A TSO header cut by the copy's end: take the whole packet.
                Ok(h)
                    if h.gso_type != vnet::GSO_NONE
                        && usize::from(h.hdr_len) >= head
                        && head < len =>
                {
                    copy_out(pieces, &mut buf[..len]).map(|()| None)
                }
                Ok(h) => Ok(Some(h)),
                // The headers may go on past the copy: take the whole packet.
                Err(_) if head < len => copy_out(pieces, &mut buf[..len]).map(|()| None),
                Err(e) => Err(e.to_string()),
            }
        });
        match whole {
            Ok(Some(hdr)) => {
                let tail = skip(pieces, head);
                self.to_tap(
                    &[IoSlice::new(hdr.as_bytes()), IoSlice::new(&buf[..head])],
                    &tail,
                );
            }
            Ok(None) => {
                if let Some(hdr) = self.tx_header(p, &buf[..len]) {
                    self.to_tap(
                        &[IoSlice::new(hdr.as_bytes()), IoSlice::new(&buf[..len])],
                        &[],
                    );
                }
            }
            Err(e) => self.drop_unplaceable(&e),
        }
    }

    /// The vnet header for a packet whose bytes are all ours; `None` (counted, logged)
    /// when it cannot be given to the tap.
    fn tx_header(&self, p: &TxPacket, frame: &[u8]) -> Option<vnet::VnetHdr> {
        match vnet::tx_header(p, frame) {
            Ok(h) => Some(h),
            Err(e) => {
                self.drop_unplaceable(&e);
                None
            }
        }
    }

    /// Counts and logs (rate limited) a packet the tap cannot be given.
    fn drop_unplaceable(&self, e: &dyn std::fmt::Display) {
        warn_limited!(
            self.log,
            "tx headers",
            "{}: dropping a tx packet: {e}",
            self.name
        );
        self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// One frame to the tap: `head` (ours), then `tail` (mapped pages).
    fn to_tap(&self, head: &[IoSlice<'_>], tail: &[SharedMem<'_>]) {
        bump(&self.profile.tap_calls, 1);
        let r = self.profile.tap_write.time(|| {
            if tail.is_empty() {
                self.tap.write_frame(head)
            } else {
                self.tap.write_frame_shared(head, tail)
            }
        });
        self.tap_written(r);
    }

    /// Counts (and logs, rate limited) the outcome of one frame's write to the tap.
    fn tap_written(&self, r: std::io::Result<usize>) {
        match r {
            Ok(_) => {
                self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // The tap is down or refuses the frame: Linux netback drops too.
                warn_limited!(self.log, "tap write", "{}: tap write: {e}", self.name);
                self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Copies the first `out.len()` bytes of `pieces` into `out` (each byte read once).
fn copy_out(pieces: &[SharedMem<'_>], out: &mut [u8]) -> Result<(), String> {
    let mut at = 0;
    for m in pieces {
        if at == out.len() {
            break;
        }
        let n = m.len().min(out.len() - at);
        m.read_bytes(0, &mut out[at..at + n])
            .map_err(|e| e.to_string())?;
        at += n;
    }
    Ok(())
}

/// `pieces` without their first `n` bytes.
fn skip<'a>(pieces: &[SharedMem<'a>], mut n: usize) -> Vec<SharedMem<'a>> {
    let mut out = Vec::with_capacity(pieces.len());
    for m in pieces {
        if n >= m.len() {
            n -= m.len();
            continue;
        }
        if let Ok(rest) = m.slice(n, m.len() - n) {
            out.push(rest);
        }
        n = 0;
    }
    out
}

/// Answers every slot of one TX chain (our copy of it): `status` for data slots,
/// `NETIF_RSP_NULL` for extra-info slots, in ring order.
fn answer_tx(
    ring: &mut NetifTxBackRing<'_>,
    chain: &[NetifTxRequest],
    status: NetifRsp,
) -> Result<(), RingError> {
    let Some(first) = chain.first() else {
        return Ok(());
    };
    let rsp = |id| NetifTxResponse {
        id,
        status: status.raw(),
    };
    ring.push_response(&rsp(first.id))?;
    let mut i = 1;
    if NetTxFlags::from_bits_retain(first.flags).contains(NetTxFlags::EXTRA_INFO) {
        while let Some(slot) = chain.get(i) {
            i += 1;
            ring.push_response(&NetifTxResponse {
                id: 0,
                status: NetifRsp::Null.raw(),
            })?;
            let more =
                NetifExtraInfo::read_from_prefix(slot.as_bytes()).is_ok_and(|(e, _)| e.more());
            if !more {
                break;
            }
        }
    }
    for slot in &chain[i.min(chain.len())..] {
        ring.push_response(&rsp(slot.id))?;
    }
    Ok(())
}
