//! TX on one queue: room for a largest packet, copying a packet into TX pool pages
//! (one full page per slot, the first carrying the total size, checksum flags and a GSO
//! extra slot), publishing the requests, and consuming the responses (an id out of
//! range or not in flight is a protocol error).

use super::{ring_err, Queue, TxCsum, TxOffload, MAX_SLOTS, MIN_PACKET};
use crate::error::{ProtocolError, TxError};
use crate::Stats;
use sluice_abi::netif::{
    NetTxFlags, NetifExtra, NetifExtraInfo, NetifRsp, NetifTxRequest, XEN_NETIF_MAX_TX_SIZE,
};
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_front_seams::{copy_shared, Pages, SeamError};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

impl<Pp: Pages> Queue<Pp> {
    /// Whether a packet of the largest kind fits now (data slots, a GSO slot, ids).
    pub(crate) fn tx_room(&mut self) -> bool {
        let free = self.tx(|r| r.free_requests()).unwrap_or(0) as usize;
        free > MAX_SLOTS && self.tx_free.len() >= MAX_SLOTS
    }

    /// Copies the packet (`frags` in order) into TX pool pages, fills the requests and
    /// publishes them. Returns whether the backend is to be notified.
    pub(crate) fn transmit(
        &mut self,
        frags: &[SharedMem<'_>],
        off: &TxOffload,
        max_len: usize,
    ) -> Result<bool, TxError> {
        let len: usize = frags.iter().map(|f| f.len()).sum();
        if !(MIN_PACKET..=max_len.min(XEN_NETIF_MAX_TX_SIZE)).contains(&len) {
            return Err(TxError::BadLength(len));
        }
        let nslots = len.div_ceil(XEN_PAGE_SIZE);
        if nslots > MAX_SLOTS {
            return Err(TxError::BadLength(len));
        }
        let extra = usize::from(off.gso.is_some());
        let free = self.tx(|r| r.free_requests()).map_err(|_| TxError::Busy)? as usize;
        if free < nslots + extra || self.tx_free.len() < nslots {
            return Err(TxError::Busy);
        }
        // No allocation here: a driver sends from atomic context.
        let mut id_buf = [0u16; MAX_SLOTS];
        let ids = &mut id_buf[..nslots];
        for id in ids.iter_mut() {
            *id = self.tx_free.pop().expect("counted");
        }
        let ids = &*ids;
        if let Err(e) = self.copy_packet(frags, ids) {
            self.tx_free.extend(ids.iter().rev());
            return Err(TxError::Copy(e));
        }
        let mut first_flags = match off.csum {
            TxCsum::Complete => NetTxFlags::empty(),
            TxCsum::Partial => NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED,
            TxCsum::Validated => NetTxFlags::DATA_VALIDATED,
        };
        if nslots > 1 {
            first_flags |= NetTxFlags::MORE_DATA;
        }
        if extra > 0 {
            first_flags |= NetTxFlags::EXTRA_INFO;
        }
        let mut req_buf = [NetifTxRequest::new_zeroed(); MAX_SLOTS + 1];
        let mut nreqs = 0;
        for (i, &id) in ids.iter().enumerate() {
            let gref = self.tx_pool[id as usize].gref.expect("granted at setup");
            let (flags, size) = if i == 0 {
                (first_flags, len as u16)
            } else {
                let more = i + 1 < nslots;
                let bytes = (len - i * XEN_PAGE_SIZE).min(XEN_PAGE_SIZE);
                let f = if more {
                    NetTxFlags::MORE_DATA
                } else {
                    NetTxFlags::empty()
                };
                (f, bytes as u16)
            };
            req_buf[nreqs] = NetifTxRequest {
                gref,
                offset: 0,
                flags: flags.bits(),
                id,
                size,
            };
            nreqs += 1;
            if i == 0 {
                if let Some((gso_type, size)) = off.gso {
                    let info = NetifExtraInfo::encode(
                        &NetifExtra::Gso {
                            size,
                            gso_type,
                            features: 0,
                        },
                        false,
                    );
                    let mut bytes = [0u8; core::mem::size_of::<NetifTxRequest>()];
                    bytes[..8].copy_from_slice(info.as_bytes());
                    req_buf[nreqs] = NetifTxRequest::read_from_bytes(&bytes).expect("same size");
                    nreqs += 1;
                }
            }
        }
        for &id in ids {
            self.tx_in_flight[id as usize] = true;
        }
        let pushed = self.tx(|r| {
            for req in &req_buf[..nreqs] {
                r.push_request(req)?;
            }
            r.push_requests_and_check_notify()
        });
        match pushed {
            Ok(Ok(notify)) => Ok(notify),
            // Free slots were counted above, so the ring cannot refuse; if it does the
            // packet is lost, never half sent.
            _ => Err(TxError::Busy),
        }
    }

    fn copy_packet(&self, frags: &[SharedMem<'_>], ids: &[u16]) -> Result<(), SeamError> {
        let (mut slot, mut off) = (0usize, 0usize);
        for frag in frags {
            let mut at = 0;
            while at < frag.len() {
                let n = (frag.len() - at).min(XEN_PAGE_SIZE - off);
                let page = self.tx_pool[ids[slot] as usize].page();
                copy_shared(page.mem(), off, *frag, at, n)?;
                at += n;
                off += n;
                if off == XEN_PAGE_SIZE {
                    slot += 1;
                    off = 0;
                }
            }
        }
        Ok(())
    }

    /// Consumes TX responses: frees their ids, counts errors. Returns responses taken.
    pub(crate) fn tx_complete(&mut self, stats: &mut Stats) -> Result<usize, ProtocolError> {
        let queue = self.index;
        let size = self.tx_in_flight.len();
        let mut taken = 0;
        loop {
            let rsp = match self.tx(|r| r.pop_response()).and_then(|r| r) {
                Ok(Some(rsp)) => rsp,
                Ok(None) => {
                    let more = self
                        .tx(|r| r.final_check_for_responses())
                        .and_then(|r| r)
                        .map_err(ring_err(queue))?;
                    if more {
                        continue;
                    }
                    return Ok(taken);
                }
                Err(e) => return Err(ring_err(queue)(e)),
            };
            taken += 1;
            // Read once: `rsp` is our copy of the slot.
            if rsp.status == NetifRsp::Null.raw() {
                continue; // the slot of an extra-info request
            }
            let id = rsp.id;
            if id as usize >= size {
                return Err(ProtocolError::TxIdOutOfRange { queue, id });
            }
            if !core::mem::replace(&mut self.tx_in_flight[id as usize], false) {
                return Err(ProtocolError::TxIdNotInFlight { queue, id });
            }
            self.tx_free.push(id);
            if rsp.status != NetifRsp::Okay.raw() {
                stats.tx_errors += 1;
            }
        }
    }
}
