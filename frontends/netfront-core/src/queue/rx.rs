//! RX on one queue: posting the pool pages, consuming responses into packets
//! (MORE_DATA chains, the GSO extra; malformed packets dropped and counted, a wrong id or
//! impossible indices a protocol error) and reading a delivered packet out of its pages.

use super::{ring_err, with_rx, Queue, RxChain, RxDrop, RxFrag, RxPacket, MAX_SLOTS, MIN_PACKET};
use crate::error::ProtocolError;
use crate::Stats;
use sluice_abi::netif::{
    NetRxFlags, NetifExtra, NetifExtraInfo, NetifGsoType, NetifRxRequest, NetifRxResponse,
};
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_front_seams::{Pages, SeamError};
use zerocopy::{FromBytes, IntoBytes};

impl<Pp: Pages> RxPacket<'_, Pp> {
    /// Copies the packet into `dst`, which must be exactly [`len`](Self::len) bytes
    /// (else [`SeamError::OutOfBounds`] and nothing is promised about `dst`). Each byte
    /// is read from the shared pages once.
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<(), SeamError> {
        if dst.len() != self.len {
            return Err(SeamError::OutOfBounds {
                offset: 0,
                len: dst.len(),
                size: self.len,
            });
        }
        self.copy_range(0, dst)
    }

    /// Copies bytes `offset..offset + dst.len()` of the packet into `dst` (a packet
    /// copied piecewise into a buffer of several parts, each byte read once when the
    /// ranges do not overlap). A range past [`len`](Self::len) is
    /// [`SeamError::OutOfBounds`], nothing promised about `dst`.
    pub fn copy_range(&self, offset: usize, dst: &mut [u8]) -> Result<(), SeamError> {
        let out_of_bounds = SeamError::OutOfBounds {
            offset,
            len: dst.len(),
            size: self.len,
        };
        let end = offset.checked_add(dst.len()).ok_or(out_of_bounds)?;
        if end > self.len {
            return Err(out_of_bounds);
        }
        // `pos`: packet offset of the current fragment's first byte.
        let mut pos = 0;
        for f in self.frags {
            let flen = f.len as usize;
            let (lo, hi) = (offset.max(pos), end.min(pos + flen));
            if lo < hi {
                let src = self.pool[f.slot as usize]
                    .page()
                    .slice(f.offset as usize + (lo - pos), hi - lo)?;
                src.read_bytes(0, &mut dst[lo - offset..hi - offset])
                    .map_err(|_| SeamError::OutOfBounds {
                        offset: f.offset as usize,
                        len: flen,
                        size: XEN_PAGE_SIZE,
                    })?;
            }
            pos += flen;
            if pos >= end {
                break;
            }
        }
        Ok(())
    }

    /// The backend left the checksum blank (a local sender's offload): the stack must
    /// treat it as `CHECKSUM_PARTIAL`.
    pub fn csum_blank(&self) -> bool {
        self.flags.contains(NetRxFlags::CSUM_BLANK)
    }

    /// The backend says the checksum is good.
    pub fn data_validated(&self) -> bool {
        self.flags.contains(NetRxFlags::DATA_VALIDATED)
    }
}

impl<Pp: Pages> Queue<Pp> {
    /// Posts every free RX buffer (those not holding an undelivered packet) and
    /// publishes them. Returns whether the backend is to be notified.
    pub(crate) fn rx_refill(&mut self) -> Result<bool, ProtocolError> {
        let hold = self.rx_chain.as_ref().map(|c| c.start);
        let pool = &self.rx_pool;
        let mask = pool.len() as u32 - 1;
        with_rx(self.rx_ring.page(), &mut self.rx_at, |r| {
            let start = hold.unwrap_or(r.rsp_cons());
            let want = start
                .wrapping_add(pool.len() as u32)
                .wrapping_sub(r.req_prod_pvt())
                .min(r.free_requests());
            for _ in 0..want {
                let i = r.req_prod_pvt() & mask;
                r.push_request(&NetifRxRequest {
                    id: i as u16,
                    pad: 0,
                    gref: pool[i as usize].gref.expect("granted at setup"),
                })?;
            }
            r.push_requests_and_check_notify()
        })
        .and_then(|r| r)
        .map_err(ring_err(self.index))
    }

    /// Consumes RX responses and hands each whole, valid packet to `deliver`, at most
    /// `budget` packets (dropped ones included). Returns (packets taken, more pending).
    pub(crate) fn rx_poll(
        &mut self,
        budget: usize,
        stats: &mut Stats,
        deliver: &mut dyn FnMut(&RxPacket<'_, Pp>),
    ) -> Result<(usize, bool), ProtocolError> {
        let queue = self.index;
        let mask = self.rx_pool.len() as u32 - 1;
        let mut done = 0;
        while done < budget {
            let popped = self
                .rx(|r| {
                    let at = r.rsp_cons();
                    r.pop_response().map(|o| o.map(|rsp| (at, rsp)))
                })
                .and_then(|r| r)
                .map_err(ring_err(queue))?;
            let Some((at, rsp)) = popped else {
                let more = self
                    .rx(|r| r.final_check_for_responses())
                    .and_then(|r| r)
                    .map_err(ring_err(queue))?;
                if more {
                    continue;
                }
                return Ok((done, false));
            };
            if !self.rx_take(at, &rsp, mask)? {
                continue;
            }
            let chain = self.rx_chain.take().expect("complete chain");
            done += 1;
            match chain.bad {
                Some(_) => stats.rx_errors += 1,
                None => {
                    stats.rx_packets += 1;
                    stats.rx_bytes += chain.len as u64;
                    deliver(&RxPacket {
                        pool: &self.rx_pool,
                        frags: &chain.frags,
                        len: chain.len,
                        flags: chain.flags,
                        gso: chain.gso,
                    });
                }
            }
            self.rx_frags = chain.frags;
            self.rx_frags.clear();
        }
        Ok((done, true))
    }

    /// Adds response `rsp` (ring index `at`) to the packet being assembled; returns
    /// whether the packet is complete.
    fn rx_take(
        &mut self,
        at: u32,
        rsp: &NetifRxResponse,
        mask: u32,
    ) -> Result<bool, ProtocolError> {
        let queue = self.index;
        let Some(chain) = self.rx_chain.as_mut() else {
            // First response of a packet.
            let expected = (at & mask) as u16;
            if rsp.id != expected {
                return Err(ProtocolError::RxIdMismatch {
                    queue,
                    id: rsp.id,
                    expected,
                });
            }
            let flags = NetRxFlags::from_bits_retain(rsp.flags);
            let mut chain = RxChain {
                start: at,
                frags: core::mem::take(&mut self.rx_frags),
                len: 0,
                flags,
                gso: None,
                in_extras: flags.contains(NetRxFlags::EXTRA_INFO),
                more_data: flags.contains(NetRxFlags::MORE_DATA),
                bad: None,
            };
            chain.add_data(rsp, at & mask);
            let complete = !chain.in_extras && !chain.more_data;
            self.rx_chain = Some(chain);
            if complete {
                self.rx_chain.as_mut().expect("set").finish();
            }
            return Ok(complete);
        };
        if chain.in_extras {
            // This slot holds an extra-info item, not a response with an id.
            let info = NetifExtraInfo::read_from_bytes(rsp.as_bytes()).expect("same size");
            match info.decode() {
                Ok(NetifExtra::Gso { size, gso_type, .. })
                    if size > 0 && gso_type != NetifGsoType::None =>
                {
                    chain.gso = Some((gso_type, size))
                }
                Ok(NetifExtra::Hash { .. }) => {}
                _ => chain.bad = chain.bad.or(Some(RxDrop::BadExtra)),
            }
            chain.in_extras = info.more();
        } else {
            let expected = (at & mask) as u16;
            if rsp.id != expected {
                return Err(ProtocolError::RxIdMismatch {
                    queue,
                    id: rsp.id,
                    expected,
                });
            }
            chain.more_data =
                NetRxFlags::from_bits_retain(rsp.flags).contains(NetRxFlags::MORE_DATA);
            chain.add_data(rsp, at & mask);
        }
        // A chain can never hold more than the ring's buffers; past the slot limit it is
        // only dropped, once complete.
        if at.wrapping_sub(chain.start) as usize + 1 >= self.rx_pool.len()
            && (chain.in_extras || chain.more_data)
        {
            chain.bad = chain.bad.or(Some(RxDrop::TooManySlots));
            chain.in_extras = false;
            chain.more_data = false;
        }
        let complete = !chain.in_extras && !chain.more_data;
        if complete {
            chain.finish();
        }
        Ok(complete)
    }
}

impl RxChain {
    fn add_data(&mut self, rsp: &NetifRxResponse, slot: u32) {
        if self.bad.is_some() {
            return;
        }
        let Ok(len) = rsp.byte_count() else {
            self.bad = Some(RxDrop::Status);
            return;
        };
        if rsp.offset as usize + len as usize > XEN_PAGE_SIZE {
            self.bad = Some(RxDrop::OutsidePage);
            return;
        }
        if self.frags.len() == MAX_SLOTS {
            self.bad = Some(RxDrop::TooManySlots);
            return;
        }
        self.frags.push(RxFrag {
            slot: slot as u16,
            offset: rsp.offset,
            len,
        });
        self.len += len as usize;
    }

    fn finish(&mut self) {
        if self.bad.is_none() && self.len < MIN_PACKET {
            self.bad = Some(RxDrop::Length);
        }
    }
}
