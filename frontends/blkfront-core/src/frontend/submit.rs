//! Request submission: validating an I/O, building the ring request (bounce pages,
//! indirect pages, the per-ring page budget) and resending held I/O after a reconnect.

use super::{FrontState, Frontend, IoOf, IoOp, PoolOf, Shadow};
use crate::error::{IoError, SubmitError};
use crate::features::FlushKind;
use crate::platform::{Pages, Platform, SeamError};
use alloc::vec::Vec;
use sluice_abi::blkif::{
    BlkifOp, BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment,
    VdiskInfo, BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, SECTORS_PER_PAGE, SEGMENTS_PER_INDIRECT_PAGE,
};
use zerocopy::{FromZeros, Immutable, IntoBytes};

impl<P: Platform, T> Frontend<P, T> {
    fn validate(&self, io: &IoOf<P>) -> Result<(), SubmitError> {
        let disk = self.disk.as_ref().ok_or(SubmitError::DeviceFailed)?;
        let readonly = disk.info.contains(VdiskInfo::READONLY);
        let (max, min) = match io.op {
            IoOp::Read => (self.max_segments, 1),
            IoOp::Write => (self.max_segments, 1),
            IoOp::Flush => (BLKIF_MAX_SEGMENTS_PER_REQUEST, 0),
            IoOp::Discard { .. } => (0, 0),
        };
        if io.segments.len() > max || io.segments.len() < min {
            return Err(SubmitError::BadSegmentCount {
                given: io.segments.len(),
                max,
            });
        }
        for (i, s) in io.segments.iter().enumerate() {
            if s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE {
                return Err(SubmitError::BadSegment(i));
            }
        }
        let len = match io.op {
            IoOp::Discard { nr_sectors, secure } => {
                let Some(d) = disk.discard else {
                    return Err(SubmitError::Unsupported);
                };
                if secure && !d.secure {
                    return Err(SubmitError::Unsupported);
                }
                nr_sectors
            }
            IoOp::Flush if disk.flush.is_none() => return Err(SubmitError::Unsupported),
            _ => io.segments.iter().map(|s| s.sectors()).sum(),
        };
        if !matches!(io.op, IoOp::Read) && readonly {
            return Err(SubmitError::ReadOnly);
        }
        if io.op == IoOp::Flush && io.segments.is_empty() {
            // A bare cache flush addresses no sectors (Linux leaves its position at
            // u64::MAX); it goes out with sector 0.
            return Ok(());
        }
        match io.sector.checked_add(len) {
            Some(end) if end <= disk.sectors => Ok(()),
            _ => Err(SubmitError::OutOfRange),
        }
    }

    /// Sends `io` on `queue`; its completion comes through a later
    /// [`handle_event`](Self::handle_event). While the backend is away (reconnecting)
    /// the I/O is held and sent after the reconnect.
    pub fn submit(
        &mut self,
        p: &mut P,
        queue: usize,
        tag: T,
        io: IoOf<P>,
    ) -> Result<(), (SubmitError, T, IoOf<P>)> {
        if self.broken {
            return Err((SubmitError::DeviceFailed, tag, io));
        }
        match self.state {
            FrontState::Failed => return Err((SubmitError::DeviceFailed, tag, io)),
            FrontState::Connected => {}
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.held.push_back((seq, tag, io));
                return Ok(());
            }
        }
        if queue >= self.queues.len() {
            return Err((SubmitError::NoSuchQueue(queue), tag, io));
        }
        if let Err(e) = self.validate(&io) {
            return Err((e, tag, io));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.held.is_empty() {
            // Older I/O from before a reconnect is still waiting for ring space: new I/O
            // queues behind it (a flush must not overtake the writes it covers).
            self.held.push_back((seq, tag, io));
            return Ok(());
        }
        self.send(p, queue, seq, tag, io)
    }

    /// Builds the ring request: bounce pages (data copied in for writes), indirect
    /// pages when the segments do not fit in the slot.
    fn send(
        &mut self,
        p: &mut P,
        qi: usize,
        seq: u64,
        tag: T,
        io: IoOf<P>,
    ) -> Result<(), (SubmitError, T, IoOf<P>)> {
        match self.queues[qi].ring(|r| r.is_full()) {
            Ok(false) if !self.queues[qi].free_ids.is_empty() => {}
            Ok(_) => return Err((SubmitError::RingFull, tag, io)),
            Err(_) => return Err((SubmitError::DeviceFailed, tag, io)),
        }
        // The ring's page budget, before anything is taken. `connect` limits a request
        // to the budget, so one always goes on a ring with nothing in flight; the
        // check on `in_flight` keeps that true even if the budget changed under held I/O.
        let pages = match io.op {
            IoOp::Discard { .. } => 0,
            _ => crate::features::request_pages(io.segments.len()),
        };
        let in_flight = self.queues[qi].pages;
        if in_flight > 0 && in_flight + pages > self.page_budget {
            return Err((
                SubmitError::PageBudget {
                    pages,
                    in_flight,
                    budget: self.page_budget,
                },
                tag,
                io,
            ));
        }
        let writes = matches!(io.op, IoOp::Write | IoOp::Flush);
        let mut bounce: Vec<PoolOf<P>> = Vec::with_capacity(io.segments.len());
        let mut segs: Vec<BlkifRequestSegment> = Vec::with_capacity(io.segments.len());
        for s in &io.segments {
            let pp = match self.take_page(p, qi, writes) {
                Ok(pp) => pp,
                Err(e) => {
                    self.release_pages(p, qi, bounce);
                    return Err((SubmitError::NoResources(e), tag, io));
                }
            };
            if writes {
                if let Err(e) = p.copy_in(&pp.page, s.offset(), s.page, s.offset(), s.len()) {
                    bounce.push(pp);
                    self.release_pages(p, qi, bounce);
                    return Err((SubmitError::Copy(e), tag, io));
                }
            }
            segs.push(BlkifRequestSegment::new(
                pp.gref.unwrap_or_default(),
                s.first_sect,
                s.last_sect,
            ));
            bounce.push(pp);
        }
        let flush_op = match self.disk.and_then(|d| d.flush) {
            Some(FlushKind::WriteBarrier) => BlkifOp::WriteBarrier,
            _ => BlkifOp::FlushDiskcache,
        };
        let id = *self.queues[qi].free_ids.last().unwrap_or(&0);
        let mut indirect = Vec::new();
        let mut inner_op = 0;
        let (slot, wire_op) = match io.op {
            IoOp::Discard { nr_sectors, secure } => (
                as_slot(&BlkifRequestDiscard {
                    operation: BlkifOp::Discard.raw(),
                    flag: if secure { BLKIF_DISCARD_SECURE } else { 0 },
                    handle: self.handle,
                    id: id as u64,
                    sector_number: io.sector,
                    nr_sectors,
                    ..Default::default()
                }),
                BlkifOp::Discard.raw(),
            ),
            op if segs.len() <= BLKIF_MAX_SEGMENTS_PER_REQUEST => {
                let wire = match op {
                    IoOp::Read => BlkifOp::Read,
                    IoOp::Write => BlkifOp::Write,
                    _ => flush_op,
                };
                let mut r = BlkifRequest {
                    operation: wire.raw(),
                    nr_segments: segs.len() as u8,
                    handle: self.handle,
                    id: id as u64,
                    sector_number: if segs.is_empty() { 0 } else { io.sector },
                    ..Default::default()
                };
                r.seg[..segs.len()].copy_from_slice(&segs);
                (r, wire.raw())
            }
            op => {
                let inner = if op == IoOp::Read {
                    BlkifOp::Read
                } else {
                    BlkifOp::Write
                };
                inner_op = inner.raw();
                let npages = segs.len().div_ceil(SEGMENTS_PER_INDIRECT_PAGE);
                let mut ind = BlkifRequestIndirect {
                    operation: BlkifOp::Indirect.raw(),
                    indirect_op: inner.raw(),
                    nr_segments: segs.len() as u16,
                    id: id as u64,
                    sector_number: io.sector,
                    handle: self.handle,
                    ..Default::default()
                };
                for (i, chunk) in segs.chunks(SEGMENTS_PER_INDIRECT_PAGE).enumerate() {
                    let pp = match self.take_page(p, qi, true) {
                        Ok(pp) => pp,
                        Err(e) => {
                            self.release_pages(p, qi, bounce);
                            self.release_pages(p, qi, indirect);
                            return Err((SubmitError::NoResources(e), tag, io));
                        }
                    };
                    let written = pp.page.slice(0, chunk.as_bytes().len()).and_then(|m| {
                        m.write_bytes(0, chunk.as_bytes())
                            .map_err(|_| SeamError::OutOfBounds {
                                offset: 0,
                                len: chunk.as_bytes().len(),
                                size: m.len(),
                            })
                    });
                    ind.indirect_grefs[i] = pp.gref.unwrap_or_default();
                    indirect.push(pp);
                    if let Err(e) = written {
                        self.release_pages(p, qi, bounce);
                        self.release_pages(p, qi, indirect);
                        return Err((SubmitError::Copy(e), tag, io));
                    }
                }
                debug_assert!(npages <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
                (as_slot(&ind), BlkifOp::Indirect.raw())
            }
        };
        let q = &mut self.queues[qi];
        if !matches!(q.ring(|r| r.push_request(&slot)), Ok(Ok(()))) {
            // Checked not full above; keep the I/O rather than lose it.
            self.release_pages(p, qi, bounce);
            self.release_pages(p, qi, indirect);
            return Err((SubmitError::RingFull, tag, io));
        }
        q.free_ids.pop();
        q.pages += bounce.len() + indirect.len();
        q.shadow[id as usize] = Some(Shadow {
            seq,
            tag,
            io,
            wire_op,
            inner_op,
            bounce,
            indirect,
        });
        self.stats.sent += 1;
        if let Ok(Ok(true)) = q.ring(|r| r.push_requests_and_check_notify()) {
            p.notify(q.port);
        }
        Ok(())
    }

    pub(super) fn resubmit_held(
        &mut self,
        p: &mut P,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) {
        let n = self.queues.len();
        if n == 0 {
            return;
        }
        while let Some((seq, tag, io)) = self.held.pop_front() {
            if let Err(e) = self.validate(&io) {
                // The disk changed under the reconnect (smaller, read-only, feature gone).
                let _ = e;
                done(tag, Err(IoError::DeviceFailed));
                continue;
            }
            let qi = (seq as usize) % n;
            match self.send(p, qi, seq, tag, io) {
                Ok(()) => self.stats.resubmitted += 1,
                Err((_, tag, io)) => {
                    self.held.push_front((seq, tag, io));
                    break;
                }
            }
        }
    }
}

/// A request variant written into a ring slot (the C union).
fn as_slot<V: IntoBytes + Immutable>(v: &V) -> BlkifRequest {
    let mut slot = BlkifRequest::new_zeroed();
    let src = v.as_bytes();
    slot.as_mut_bytes()[..src.len()].copy_from_slice(src);
    slot
}
