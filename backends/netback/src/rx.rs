//! RX (tap → guest): frames taken in order from the tap, either read here one syscall
//! each or finished by the queue's io_uring ([`FrameRing`]: reads in flight, no syscall
//! of their own), each placed in as many of the guest's posted RX requests as it needs
//! (page-sized pieces, a GSO extra slot after the first), all of them filled by one
//! batched grant copy. A frame that finds too few requests stays first in line (held)
//! until the guest has posted enough.

use crate::pages::{local_ops, PageBuf};
use crate::profile::bump;
use crate::queue::{Frames, Queue, QueueError, FRAME_BUF, RX_AT, RX_BATCH};
use crate::vnet::{self, VnetHdr};
use sluice_abi::netif::{
    NetRxFlags, NetifExtraInfo, NetifRsp, NetifRxBackRing, NetifRxResponse, XEN_NETIF_NR_SLOTS_MIN,
};
use sluice_abi::ring::RingError;
use sluice_dom0::{warn_limited, CopyPtr, CopySegment, EventChannels, GrantMapper};
use sluice_xen_sys::{FrameRing, VNET_HDR_LEN};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use zerocopy::{FromBytes, IntoBytes};

const PAGE: usize = crate::pages::PAGE;

/// RX state kept between turns.
#[derive(Default)]
pub(crate) struct RxState {
    /// Our own buffers (without io_uring).
    bufs: Vec<PageBuf>,
    /// Frames read into `bufs`, not yet placed: (buffer, bytes), oldest first.
    ready: VecDeque<(usize, usize)>,
    /// Buffers of `bufs` free for a read.
    free: Vec<usize>,
    /// The first frame in line waits for this many RX requests.
    pub(crate) held: Option<u32>,
    /// Ring buffers whose read failed, re-armed after a quiet wait.
    pub(crate) parked: Vec<usize>,
}

/// A frame placed in RX requests.
struct RxPlan {
    buf: usize,
    len: usize,
    /// Index of its first response in the turn's response list.
    first_rsp: usize,
    /// (response index, grant, bytes from) per data slot.
    slots: Vec<(usize, sluice_abi::types::GrantRef, usize)>,
}

impl<G: GrantMapper, E: EventChannels, T: Frames> Queue<'_, G, E, T> {
    /// The first frame in line (buffer, bytes), reading one if none is; `None` when the
    /// tap has none now.
    fn rx_front(
        &self,
        st: &mut RxState,
        ring: &mut Option<&mut FrameRing<'_>>,
    ) -> Option<(usize, usize)> {
        if let Some(r) = ring {
            r.reap();
            loop {
                match r.peek_read()? {
                    (i, Ok(n)) => return Some((i, n)),
                    (i, Err(kind)) => {
                        r.next_read();
                        if kind != io::ErrorKind::Interrupted && kind != io::ErrorKind::WouldBlock {
                            warn_limited!(self.log, "tap read", "{}: tap read: {kind}", self.name);
                        }
                        st.parked.push(i);
                    }
                }
            }
        }
        if let Some(f) = st.ready.front() {
            return Some(*f);
        }
        let k = match st.free.pop() {
            Some(k) => k,
            None if st.bufs.len() <= RX_BATCH => {
                st.bufs.push(PageBuf::new(RX_AT + FRAME_BUF));
                st.bufs.len() - 1
            }
            None => return None,
        };
        bump(&self.profile.tap_calls, 1);
        let r = self.profile.tap_read.time(|| {
            self.tap
                .read_frame(&mut st.bufs[k].bytes_mut()[RX_AT..RX_AT + FRAME_BUF])
        });
        match r {
            Ok(n) => {
                st.ready.push_back((k, n));
                Some((k, n))
            }
            Err(e) => {
                st.free.push(k);
                if e.kind() != io::ErrorKind::WouldBlock {
                    warn_limited!(self.log, "tap read", "{}: tap read: {e}", self.name);
                }
                None
            }
        }
    }

    /// Takes the first frame out of the line (placed or dropped).
    fn rx_pop(&self, st: &mut RxState, ring: &mut Option<&mut FrameRing<'_>>) {
        st.held = None;
        match ring {
            Some(r) => {
                r.next_read();
            }
            None => {
                st.ready.pop_front();
            }
        }
    }

    /// One batch of tap frames to the guest; true if any frame was taken.
    pub(crate) fn rx_turn(
        &self,
        ring: &mut NetifRxBackRing<'_>,
        st: &mut RxState,
        mut io: Option<&mut FrameRing<'_>>,
    ) -> Result<bool, QueueError> {
        let mut plans: Vec<RxPlan> = Vec::new();
        let mut rsps: Vec<NetifRxResponse> = Vec::new();
        let mut taken = Vec::new();
        while plans.len() < RX_BATCH {
            let Some((k, n)) = self.rx_front(st, &mut io) else {
                break;
            };
            let frame = frame_of(st, &io, k, n);
            let Some((hdr, data)) = frame
                .split_at_checked(VNET_HDR_LEN)
                .and_then(|(h, d)| Some((VnetHdr::read_from_bytes(h).ok()?, d)))
            else {
                self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                self.rx_pop(st, &mut io);
                taken.push(k);
                continue;
            };
            let f = self.features;
            let meta = vnet::rx_meta(&hdr, f.gso4, f.gso6);
            let data_len = data.len();
            let data_slots = data_len.div_ceil(PAGE);
            let Some(meta) = meta.filter(|_| {
                data_len >= vnet::ETH_HLEN
                    && (f.sg || data_slots == 1)
                    && data_slots <= XEN_NETIF_NR_SLOTS_MIN
            }) else {
                self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                self.rx_pop(st, &mut io);
                taken.push(k);
                continue;
            };
            let need = data_slots + usize::from(meta.gso.is_some());
            if (ring.unconsumed_requests()? as usize) < need {
                // Wait for the guest to post more; the frame stays first in line.
                if st.held.is_none() {
                    bump(&self.profile.rx_held, 1);
                }
                st.held = Some(need as u32);
                break;
            }
            self.rx_pop(st, &mut io);
            taken.push(k);
            let mut plan = RxPlan {
                buf: k,
                len: data_len,
                first_rsp: rsps.len(),
                slots: Vec::with_capacity(data_slots),
            };
            for i in 0..data_slots {
                let Some(req) = ring.pop_request()? else {
                    return Err(QueueError::Ring(RingError::NoRequestToAnswer));
                };
                let bytes = (data_len - i * PAGE).min(PAGE);
                let mut flags = if i == 0 {
                    meta.flags
                } else {
                    NetRxFlags::empty()
                };
                if i + 1 < data_slots {
                    flags |= NetRxFlags::MORE_DATA;
                }
                plan.slots.push((rsps.len(), req.gref, i * PAGE));
                rsps.push(NetifRxResponse {
                    id: req.id,
                    offset: 0,
                    flags: flags.bits(),
                    status: bytes as i16,
                });
                if i == 0 {
                    if let Some(g) = &meta.gso {
                        if ring.pop_request()?.is_none() {
                            return Err(QueueError::Ring(RingError::NoRequestToAnswer));
                        }
                        let extra = NetifExtraInfo::encode(g, false);
                        rsps.push(
                            NetifRxResponse::read_from_bytes(extra.as_bytes()).unwrap_or_default(),
                        );
                    }
                }
            }
            plans.push(plan);
        }
        let busy = !taken.is_empty();
        if !plans.is_empty() {
            self.rx_copy_out(ring, st, &io, &plans, &mut rsps)?;
        }
        // The buffers are free again: ours for the next read, the ring's re-armed
        // (submitted with its next enter).
        for k in taken {
            match io.as_mut() {
                Some(r) => r.arm(k).map_err(QueueError::Poll)?,
                None => st.free.push(k),
            }
        }
        Ok(busy)
    }

    /// Copies the planned frames into the guest's grants (one grant copy), answers and
    /// publishes the requests, notifies if the guest asked.
    fn rx_copy_out(
        &self,
        ring: &mut NetifRxBackRing<'_>,
        st: &RxState,
        io: &Option<&mut FrameRing<'_>>,
        plans: &[RxPlan],
        rsps: &mut [NetifRxResponse],
    ) -> Result<(), QueueError> {
        let mut segs = Vec::new();
        let mut seg_rsp = Vec::new();
        let mut ops = 0;
        for p in plans {
            let data = &frame_of(st, io, p.buf, VNET_HDR_LEN + p.len)[VNET_HDR_LEN..];
            for &(ri, gref, from) in &p.slots {
                let to = (from + PAGE).min(p.len);
                ops += local_ops(RX_AT + VNET_HDR_LEN + from, to - from);
                segs.push(CopySegment {
                    local: CopyPtr::ToGuest(&data[from..to]),
                    domid: self.domid.0,
                    gref: gref.0,
                    offset: 0,
                    status: 0,
                });
                seg_rsp.push(ri);
            }
        }
        bump(&self.profile.rx_ops, ops as u64);
        self.profile.rx_copy.time(|| self.grants.copy(&mut segs))?;
        let mut failed = vec![false; plans.len()];
        for (s, &ri) in segs.iter().zip(&seg_rsp) {
            if s.status != 0 {
                rsps[ri].status = NetifRsp::Error.raw();
                let pi = plans.partition_point(|p| p.first_rsp <= ri) - 1;
                if !failed[pi] {
                    failed[pi] = true;
                    warn_limited!(
                        self.log,
                        "bad rx grant",
                        "{}: rx grant {} does not copy (GNTST {}); frame dropped",
                        self.name,
                        s.gref,
                        s.status
                    );
                }
            }
        }
        drop(segs);
        let dropped = failed.iter().filter(|f| **f).count() as u64;
        self.stats.rx_dropped.fetch_add(dropped, Ordering::Relaxed);
        self.stats
            .rx_packets
            .fetch_add(plans.len() as u64 - dropped, Ordering::Relaxed);
        self.profile.rx_turn(plans.len());
        bump(&self.profile.rx_frames, plans.len() as u64);
        bump(&self.profile.rx_slots, rsps.len() as u64);
        let bytes: usize = plans.iter().map(|p| p.len).sum();
        bump(&self.profile.rx_bytes, bytes as u64);
        for r in rsps.iter() {
            ring.push_response(r)?;
        }
        if ring.push_responses_and_check_notify()? {
            bump(&self.profile.notifies, 1);
            self.evtchn.notify(self.rx_port)?;
        }
        Ok(())
    }
}

/// The `n` bytes (vnet header first) of the frame in buffer `k`.
fn frame_of<'a>(
    st: &'a RxState,
    io: &'a Option<&mut FrameRing<'_>>,
    k: usize,
    n: usize,
) -> &'a [u8] {
    let all = match io {
        Some(r) => r.buf(k).unwrap_or_default(),
        None => &st.bufs[k].bytes()[RX_AT..],
    };
    &all[..n.min(all.len())]
}
