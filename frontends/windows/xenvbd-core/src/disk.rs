//! The block side of xenvbd: an SRB's [`Reply`] sent as `blkfront-core` I/O on the
//! adapter's [`Frontend`] and completed from its responses. A READ/WRITE is split into
//! as many blkif requests as the backend's segment limit needs, an UNMAP into one
//! discard per range; the SRB completes when its last part does, with MEDIUM ERROR if
//! the backend failed any part and NOT READY if the device failed (a hostile backend's
//! bogus ids or ring indices fail the device in `blkfront-core`, which fails every
//! outstanding I/O: the SRBs, never the system). An SRB none of whose parts fit in
//! the ring (or find grants and pages) is handed back as BUSY for Storport to retry; the rest of an SRB whose
//! first parts went out waits in a backlog (one SRB's parts at most: a new SRB is BUSY
//! meanwhile) and goes out as responses free slots.

use crate::srb::{reply, status, Completion, Reply};
use crate::{segments, unmap_ranges, Sense};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use sluice_abi::xenbus::XenbusState;
use sluice_blkfront_core::{
    BlockIo, Event, FrontState, Frontend, IoError, IoOp, NegotiationError, Platform, ProtocolError,
    SubmitError,
};

/// Which SRB a blkif request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(pub u64);

/// An SRB as HwStartIo read it (each field once).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a, Pg> {
    /// SRB function.
    pub function: u8,
    /// Path, target, LUN.
    pub address: (u8, u8, u8),
    /// The CDB.
    pub cdb: &'a [u8],
    /// DataTransferLength.
    pub data_len: usize,
    /// The data buffer as (page, offset in page, length) pieces.
    pub sg: &'a [(Pg, usize, usize)],
    /// The start of the data buffer (an UNMAP's parameter list is read from it).
    pub param: &'a [u8],
}

/// What became of an SRB.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<S> {
    /// Complete it now.
    Complete(S, Completion),
    /// Sent (or queued): it completes from a later event.
    Sent,
}

struct Pending<S> {
    srb: S,
    left: usize,
    failed: Option<Sense>,
}

type IoOf<P> = BlockIo<<P as sluice_blkfront_core::Memory>::DataPage>;

/// An adapter's disk: the frontend and the SRBs in flight.
pub struct Disk<P: Platform, S> {
    front: Frontend<P, Tag>,
    pending: BTreeMap<u64, Pending<S>>,
    backlog: VecDeque<(Tag, IoOf<P>)>,
    next: u64,
    /// Failed at DISPATCH_LEVEL (event DPC, Storport reset), where xenstore is
    /// refused: our Closed state is still to be published from PASSIVE_LEVEL.
    unpublished_failure: bool,
}

fn sense_of(e: &IoError) -> Sense {
    match e {
        IoError::DeviceFailed => Sense::NOT_READY,
        IoError::NotSupported => Sense::INVALID_OPCODE,
        IoError::Backend(_) | IoError::Copy(_) => Sense::MEDIUM_ERROR,
    }
}

fn submit_sense(e: &SubmitError) -> Sense {
    match e {
        SubmitError::DeviceFailed => Sense::NOT_READY,
        SubmitError::OutOfRange => Sense::LBA_OUT_OF_RANGE,
        SubmitError::ReadOnly => Sense::WRITE_PROTECTED,
        SubmitError::Unsupported => Sense::INVALID_OPCODE,
        SubmitError::BadSegment(_) | SubmitError::BadSegmentCount { .. } => Sense::INVALID_FIELD,
        _ => Sense::MEDIUM_ERROR,
    }
}

impl<P: Platform, S> Disk<P, S> {
    /// Over a frontend that has been [`Frontend::start`]ed.
    pub fn new(front: Frontend<P, Tag>) -> Self {
        Disk {
            front,
            pending: BTreeMap::new(),
            backlog: VecDeque::new(),
            next: 1,
            unpublished_failure: false,
        }
    }

    /// The frontend.
    pub fn front(&self) -> &Frontend<P, Tag> {
        &self.front
    }

    /// SRBs in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The disk SRBs see: present while connected or reconnecting (I/O is held then).
    fn disk(&self) -> Option<&sluice_blkfront_core::DiskInfo> {
        match self.front.state() {
            FrontState::Connected | FrontState::Disconnected => self.front.disk(),
            _ => None,
        }
    }

    /// HwStartIo: answers `srb` or sends its I/O.
    pub fn start_io(&mut self, p: &mut P, srb: S, req: &Request<'_, P::DataPage>) -> Outcome<S> {
        let r = reply(
            req.function,
            req.address,
            req.cdb,
            req.data_len,
            self.disk(),
        );
        let parts = match r {
            Reply::Complete(c) => return Outcome::Complete(srb, c),
            Reply::Io { op, sector, bytes } => match self.split(op, sector, bytes, req.sg) {
                Ok(parts) => parts,
                Err(s) => return Outcome::Complete(srb, Completion::check(s)),
            },
            Reply::Unmap { param_len } => {
                let disk = self.disk().cloned();
                let list = &req.param[..param_len.min(req.param.len())];
                let ranges = match disk.as_ref().map(|d| unmap_ranges(list, d)) {
                    Some(Ok(r)) => r,
                    Some(Err(s)) => return Outcome::Complete(srb, Completion::check(s)),
                    None => return Outcome::Complete(srb, Completion::check(Sense::NOT_READY)),
                };
                ranges
                    .into_iter()
                    .map(|(sector, nr_sectors)| BlockIo {
                        op: IoOp::Discard {
                            nr_sectors,
                            secure: false,
                        },
                        sector,
                        segments: Vec::new(),
                    })
                    .collect()
            }
        };
        if parts.is_empty() {
            return Outcome::Complete(srb, Completion::io_done(true));
        }
        if !self.backlog.is_empty() {
            // Another SRB's parts still wait for ring room: this one is refused (so the
            // backlog holds one SRB's parts at most, whatever the backend does).
            return Outcome::Complete(srb, busy());
        }
        let id = self.next;
        self.next += 1;
        self.pending.insert(
            id,
            Pending {
                srb,
                left: parts.len(),
                failed: None,
            },
        );
        let queues = self.front.queues().max(1);
        let queue = (id as usize) % queues;
        let mut sent_any = false;
        let mut parked = false;
        let mut done = Vec::new();
        for io in parts {
            if parked {
                self.backlog.push_back((Tag(id), io));
                continue;
            }
            match self.front.submit(p, queue, Tag(id), io) {
                Ok(()) => sent_any = true,
                Err((e, t, io)) if sent_any && retry_later(&e) => {
                    self.backlog.push_back((t, io));
                    parked = true;
                }
                Err((e, _, _)) if retry_later(&e) => {
                    // Nothing of this SRB is out and the ring is full (or grants or
                    // pages are short for now): BUSY, Storport retries it.
                    let pd = self.pending.remove(&id).expect("just inserted");
                    return Outcome::Complete(pd.srb, busy());
                }
                Err((e, t, _)) => done.push((t, Err(submit_sense(&e)))),
            }
        }
        let mut out = self.finish(done);
        match out.pop() {
            Some((s, c)) => Outcome::Complete(s, c),
            None => Outcome::Sent,
        }
    }

    /// A READ/WRITE/flush's parts: segments checked, then cut to the backend's limit.
    fn split(
        &self,
        op: IoOp,
        sector: u64,
        bytes: u64,
        sg: &[(P::DataPage, usize, usize)],
    ) -> Result<Vec<IoOf<P>>, Sense> {
        if op == IoOp::Flush {
            return Ok(alloc::vec![BlockIo {
                op,
                sector: 0,
                segments: Vec::new(),
            }]);
        }
        let segs = segments(sg, bytes)?;
        let max = self.front.max_segments().max(1);
        let mut parts = Vec::with_capacity(segs.len().div_ceil(max));
        let mut at = sector;
        for chunk in segs.chunks(max) {
            let n: u64 = chunk
                .iter()
                .map(|s| (s.last_sect - s.first_sect) as u64 + 1)
                .sum();
            parts.push(BlockIo {
                op,
                sector: at,
                segments: chunk.to_vec(),
            });
            at += n;
        }
        Ok(parts)
    }

    /// The event channel of `queue` fired: the SRBs whose last part completed.
    pub fn on_event(
        &mut self,
        p: &mut P,
        queue: usize,
    ) -> (Vec<(S, Completion)>, Option<ProtocolError>) {
        let mut done = Vec::new();
        let r = self
            .front
            .handle_event(p, queue, |t, r| done.push((t, r.map_err(|e| sense_of(&e)))));
        self.drain_backlog(p, &mut done);
        if r.is_err() {
            self.unpublished_failure = true;
        }
        (self.finish(done), r.err())
    }

    /// Storport's HwResetBus (its I/O timeout expired; DISPATCH_LEVEL): every SRB in
    /// flight completes now. I/O the backend left unanswered that long means it is
    /// dead: the device fails as in blkfront-core's `timed_out` (rings torn down, so no
    /// late response copies into the buffer of an SRB already completed), its SRBs
    /// complete NOT READY; SRBs only in the backlog complete BUS_RESET (Storport
    /// retries them, and they meet the failed device). Nothing in flight: nothing
    /// changes.
    pub fn reset(&mut self, p: &mut P) -> Vec<(S, Completion)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let mut done = Vec::new();
        self.front
            .shutdown(p, |t, r| done.push((t, r.map_err(|e| sense_of(&e)))));
        self.unpublished_failure = true;
        let mut out = self.finish(done);
        // What blkfront-core never saw (the backlog) is completed here.
        self.backlog.clear();
        out.extend(
            core::mem::take(&mut self.pending)
                .into_values()
                .map(|pd| (pd.srb, bus_reset())),
        );
        out
    }

    /// Whether the device failed where its Closed state could not be written.
    pub fn failure_unpublished(&self) -> bool {
        self.unpublished_failure
    }

    /// At PASSIVE_LEVEL after a failure at DISPATCH_LEVEL: writes our state Closed
    /// (blkfront-core's `fail` again: the rings are gone, nothing is held, so only the
    /// state is written), so the backend tears down its side.
    pub fn publish_failure(&mut self, p: &mut P) -> Vec<(S, Completion)> {
        if !core::mem::take(&mut self.unpublished_failure) {
            return Vec::new();
        }
        let mut done = Vec::new();
        self.front
            .fail(p, &mut |t, r| done.push((t, r.map_err(|e| sense_of(&e)))));
        self.finish(done)
    }

    /// The backend's xenbus state changed (from the watch, at PASSIVE_LEVEL).
    pub fn backend_changed(
        &mut self,
        p: &mut P,
        state: XenbusState,
    ) -> (Result<Event, NegotiationError>, Vec<(S, Completion)>) {
        let mut done = Vec::new();
        let r = self
            .front
            .backend_changed(p, state, |t, r| done.push((t, r.map_err(|e| sense_of(&e)))));
        self.drain_backlog(p, &mut done);
        (r, self.finish(done))
    }

    /// Shuts the device down: every SRB in flight completes (NOT READY).
    pub fn shutdown(&mut self, p: &mut P) -> Vec<(S, Completion)> {
        let mut done = Vec::new();
        for (t, _) in self.backlog.drain(..) {
            done.push((t, Err(Sense::NOT_READY)));
        }
        self.front
            .shutdown(p, |t, r| done.push((t, r.map_err(|e| sense_of(&e)))));
        self.finish(done)
    }

    fn drain_backlog(&mut self, p: &mut P, done: &mut Vec<(Tag, Result<(), Sense>)>) {
        let queues = self.front.queues().max(1);
        while let Some((t, io)) = self.backlog.pop_front() {
            match self.front.submit(p, (t.0 as usize) % queues, t, io) {
                Ok(()) => {}
                Err((e, t, io)) if retry_later(&e) => {
                    self.backlog.push_front((t, io));
                    break;
                }
                Err((e, t, _)) => done.push((t, Err(submit_sense(&e)))),
            }
        }
    }

    /// Counts parts done; returns the SRBs that are complete. A tag of no SRB in
    /// flight is ignored (blkfront-core completes each I/O once).
    fn finish(&mut self, done: Vec<(Tag, Result<(), Sense>)>) -> Vec<(S, Completion)> {
        let mut out = Vec::new();
        for (t, r) in done {
            let Some(pd) = self.pending.get_mut(&t.0) else {
                continue;
            };
            if let Err(s) = r {
                pd.failed.get_or_insert(s);
            }
            pd.left -= 1;
            if pd.left == 0 {
                let pd = self.pending.remove(&t.0).expect("present");
                let c = match pd.failed {
                    Some(s) => Completion::check(s),
                    None => Completion::io_done(true),
                };
                out.push((pd.srb, c));
            }
        }
        out
    }
}

/// A submit that may work once I/O completes: a full ring or page budget, or grants or pages short
/// (the bus' per-child grant quota, pool memory).
fn retry_later(e: &SubmitError) -> bool {
    matches!(
        e,
        SubmitError::RingFull | SubmitError::PageBudget { .. } | SubmitError::NoResources(_)
    )
}

/// SRB_STATUS_BUS_RESET: completed by a bus reset (Storport retries it).
fn bus_reset() -> Completion {
    Completion {
        srb_status: status::BUS_RESET,
        scsi_status: 0,
        data: Vec::new(),
        sense: None,
    }
}

/// SRB_STATUS_BUSY: Storport retries the SRB later.
fn busy() -> Completion {
    Completion {
        srb_status: status::BUSY,
        scsi_status: 0,
        data: Vec::new(),
        sense: None,
    }
}
