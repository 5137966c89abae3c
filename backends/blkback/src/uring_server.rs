//! The io_uring engine of a blkif queue: reads and writes (direct and indirect) stay in
//! flight together, answered as they complete, with one `io_uring_enter` per round that
//! both submits and waits, and the event channel read through the same ring (a poll
//! linked to a read of the pending ports; the unmask is a write queued with the next
//! submission), so that the guest's kicks cost no system call of their own. In a PV dom0
//! every system call is a trip through Xen: the profile line counts them.

use crate::coalesce::Coalesce;
use crate::disk::SECTOR;
use crate::journal::{Entry, Ledger};
use crate::persistent::Access;
use crate::ring_server::{response_op, Queue, QueueError, QueueStats};
use foldhash::HashMap;
use sluice_abi::blkif::{
    decode_request, BlkRequest, BlkifBackRing, BlkifLimits, BlkifOp, BlkifRequestSegment,
    BlkifResponse, BlkifRsp,
};
use sluice_dom0::{warn_limited, EventChannels, GrantMapper};
use sluice_xen_sys::{Completion, IoQueue, IoSpan};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[path = "uring_merge.rs"]
mod merge;

#[path = "uring_kick.rs"]
mod kick;
use kick::{Kick, KICK_UNMASK};

/// Most requests one queue keeps in flight with io_uring.
pub const MAX_IN_FLIGHT: usize = 128;

/// A request whose I/O is in flight.
struct InFlight {
    entry: Entry,
    id: u64,
    op: u8,
    write: bool,
    sector: u64,
    len: usize,
    segs: Vec<BlkifRequestSegment>,
    /// Straight into the guest's mapped pages (no bounce buffer).
    zero_copy: bool,
    /// Requests merged after this one into the same I/O (`--merge`; [`merge`]).
    merged: Vec<InFlight>,
}

/// How long a wait with I/O in flight lasts before the ring is looked at again.
const IO_WAIT: Duration = Duration::from_millis(2);

/// How often a queue logs what it did with `--profile` ([`crate::profile::Profile::interval`]).
const PROFILE_INTERVAL: Duration = Duration::from_secs(2);

/// What the loop carries from round to round.
struct LoopState {
    in_flight: HashMap<u64, InFlight>,
    done: Vec<Completion>,
    kick: Option<Kick>,
    /// The notification owed to the frontend.
    notify: Coalesce,
    /// The round's zero-copy I/O not yet on the ring (`--merge`).
    pending: Option<merge::Pending>,
    /// Requests to answer with an error (their merged I/O could not be submitted).
    failed: Vec<(Entry, u64, u8, BlkifRsp)>,
    /// The last tag given to an I/O.
    next_tag: u64,
    /// The last idle wait timed out (no kick came).
    idle_timed_out: bool,
}

impl<G: GrantMapper, E: EventChannels> Queue<'_, G, E> {
    /// Serves `ring` with io_uring: reads and writes (direct and indirect) stay in
    /// flight together, up to [`MAX_IN_FLIGHT`], answered as they complete; flush and
    /// discard wait for the I/O before them (they are ordering points) and run inline.
    /// Each round: answer what completed and publish (one notification if the frontend
    /// asked for it), take what the ring holds, then one `io_uring_enter` that submits it
    /// and waits (for a completion, or with nothing in flight for the event channel).
    pub fn serve_async(
        &self,
        mut ring: BlkifBackRing<'_>,
        stats: &Arc<QueueStats>,
        io: &mut IoQueue,
        ledger: &mut Ledger<'_>,
    ) -> Result<(), QueueError> {
        let limits = BlkifLimits {
            max_indirect_segments: crate::ring_server::MAX_INDIRECT_SEGMENTS,
        };
        let mut st = LoopState {
            in_flight: HashMap::default(),
            done: Vec::new(),
            kick: self.uring_kick(),
            notify: Coalesce::new(self.coalesce),
            pending: None,
            failed: Vec::new(),
            next_tag: 0,
            idle_timed_out: false,
        };
        let mut ports = Vec::new();
        loop {
            if let Some(line) = self.profile.interval(PROFILE_INTERVAL) {
                tracing::info!("{}: {line}", self.name);
            }
            // Answer what completed first, then take what the ring holds.
            self.reap(io, &mut st, &mut ring, ledger, stats)?;
            if std::mem::take(&mut st.idle_timed_out) {
                self.requests_without_kick(&mut ring)?;
            }
            self.publish_notify(&mut ring, ledger, &mut st.notify, io.in_flight())?;
            while io.in_flight() < MAX_IN_FLIGHT {
                let Some((entry, slot)) = ledger.next(&mut ring)? else {
                    break;
                };
                let op = response_op(&slot);
                let req = match decode_request(&slot, &limits) {
                    Ok(r) => r,
                    Err(e) => {
                        let rsp = self.refusal(&e, op);
                        self.respond(&mut ring, ledger, stats, entry, rsp)?;
                        continue;
                    }
                };
                st.next_tag += 1;
                let tag = st.next_tag;
                match self.start(&req, entry, op, tag, io, &mut st) {
                    Ok(true) => {}
                    Ok(false) => {
                        // Flush, barrier or discard: after everything before it.
                        self.send_merged(io, &mut st);
                        self.answer_failed(&mut ring, ledger, stats, &mut st)?;
                        while io.in_flight() > 0 {
                            self.count_wait(io, |io| io.wait(Duration::from_millis(100)))?;
                            self.reap(io, &mut st, &mut ring, ledger, stats)?;
                        }
                        let status = self.profile.inline.time(|| self.execute(&req));
                        let rsp = BlkifResponse::new(req.id(), op, status);
                        self.respond(&mut ring, ledger, stats, entry, rsp)?;
                    }
                    Err(status) => {
                        let rsp = BlkifResponse::new(req.id(), op, status);
                        self.respond(&mut ring, ledger, stats, entry, rsp)?
                    }
                }
                self.answer_failed(&mut ring, ledger, stats, &mut st)?;
            }
            self.send_merged(io, &mut st);
            self.answer_failed(&mut ring, ledger, stats, &mut st)?;
            // Answers given while taking (refusals, flushes) go out before any wait.
            self.publish_notify(&mut ring, ledger, &mut st.notify, io.in_flight())?;
            if io.in_flight() > 0 {
                if io.in_flight() < MAX_IN_FLIGHT
                    && (ledger.backlog() > 0 || ring.unconsumed_requests()? > 0)
                {
                    continue;
                }
                // Submit and wake on a completion, in one enter; look at the ring again
                // soon regardless.
                self.profile.depth(io.in_flight());
                let want = 1 + Kick::extra(&st.kick);
                self.profile
                    .io_wait
                    .time(|| self.count_wait(io, |io| io.wait_for(want, IO_WAIT)))?;
                let completed = io.has_completions();
                if !completed {
                    crate::profile::bump(&self.profile.io_wait_empty, 1);
                }
                st.notify.waited(completed);
            } else if ledger.backlog() > 0 || ring.final_check_for_requests()? {
                continue;
            } else if self.stop.load(Ordering::Acquire) {
                return Ok(());
            } else {
                // Going idle: say how many lines the rate limit kept back.
                self.log.report(self.name, false);
                st.idle_timed_out = self.idle(io, &mut st.kick, &mut ports)?;
            }
        }
    }

    /// Publishes the responses written; one notification if the frontend asked for one
    /// (the ring's `rsp_event` rule: at most one per batch), now or, with coalescing,
    /// once it is due ([`Coalesce`]; `in_flight`: I/O still outstanding).
    fn publish_notify(
        &self,
        ring: &mut BlkifBackRing<'_>,
        ledger: &mut Ledger<'_>,
        notify: &mut Coalesce,
        in_flight: usize,
    ) -> Result<(), QueueError> {
        if self.publish(ring, ledger)? {
            notify.owe();
        }
        if notify.due(in_flight) {
            crate::profile::bump(&self.profile.notifies, 1);
            self.evtchn.notify(self.port)?;
        }
        Ok(())
    }

    /// Runs one `io_uring_enter` that may wait, keeping the count.
    fn count_wait<R>(
        &self,
        io: &mut IoQueue,
        f: impl FnOnce(&mut IoQueue) -> std::io::Result<R>,
    ) -> Result<R, QueueError> {
        let r = f(io).map_err(QueueError::Io);
        self.profile.enters.set(io.enters());
        r
    }

    /// Starts a read or write on io_uring (Ok(true)); Ok(false) for operations run
    /// inline; Err for a request answered at once.
    fn start(
        &self,
        req: &BlkRequest,
        entry: Entry,
        op: u8,
        tag: u64,
        io: &mut IoQueue,
        st: &mut LoopState,
    ) -> Result<bool, BlkifRsp> {
        let (write, sector, segs) = match *req {
            BlkRequest::ReadWrite {
                op: BlkifOp::Read,
                sector_number,
                segments,
                ..
            } => (false, sector_number, segments.as_slice().to_vec()),
            BlkRequest::ReadWrite {
                op: BlkifOp::Write,
                sector_number,
                segments,
                ..
            } => (true, sector_number, segments.as_slice().to_vec()),
            BlkRequest::Indirect {
                op: iop,
                sector_number,
                nr_segments,
                ..
            } => {
                let segs = self
                    .profile
                    .indirect
                    .time(|| self.indirect_segments(req.indirect_grefs(), nr_segments))?;
                match iop {
                    BlkifOp::Read => (false, sector_number, segs),
                    BlkifOp::Write => (true, sector_number, segs),
                    _ => return Err(BlkifRsp::Error),
                }
            }
            _ => return Ok(false),
        };
        if write {
            self.refuse_write_if_readonly()?;
        }
        let len: usize = segs.iter().map(|s| s.byte_len()).sum();
        self.check_range(sector, len as u64 / SECTOR)?;
        self.profile.request(write, len, segs.len());
        let p = InFlight {
            entry,
            id: req.id(),
            op,
            write,
            sector,
            len,
            segs,
            zero_copy: false,
            merged: Vec::new(),
        };
        let p = if self.merge {
            match self.merge_rw(p, tag, io, st) {
                Ok(()) => return Ok(true),
                // Not zero copy: alone, after the pending I/O (kept in order).
                Err(p) => {
                    self.send_merged(io, st);
                    p
                }
            }
        } else {
            p
        };
        self.submit_rw(p, tag, io, &mut st.in_flight)?;
        Ok(true)
    }

    /// Answers the requests whose merged I/O could not be submitted.
    fn answer_failed(
        &self,
        ring: &mut BlkifBackRing<'_>,
        ledger: &mut Ledger<'_>,
        stats: &Arc<QueueStats>,
        st: &mut LoopState,
    ) -> Result<(), QueueError> {
        for (entry, id, op, status) in std::mem::take(&mut st.failed) {
            let rsp = BlkifResponse::new(id, op, status);
            self.respond(ring, ledger, stats, entry, rsp)?;
        }
        Ok(())
    }

    /// Puts a checked read or write on io_uring: straight from or into the guest's
    /// persistently mapped pages where it can ([`Queue::spans`]), through a pooled
    /// bounce buffer otherwise.
    fn submit_rw(
        &self,
        mut p: InFlight,
        tag: u64,
        io: &mut IoQueue,
        in_flight: &mut HashMap<u64, InFlight>,
    ) -> Result<(), BlkifRsp> {
        let file = self.disk.file();
        let at = p.sector * SECTOR;
        let submitted = if let Some(spans) = self.spans(&p.segs, p.write) {
            p.zero_copy = true;
            self.submit_spans(p.write, p.sector, spans, tag, io)
        } else {
            p.zero_copy = false;
            let mut buf = self.profile.buffer.time(|| self.buffers.take(p.len));
            if p.write {
                let copied = self
                    .profile
                    .copy_in
                    .time(|| self.transfer(self.copies(&p.segs, &mut buf, false)));
                if let Err(status) = copied {
                    self.buffers.put(buf);
                    return Err(status);
                }
                self.profile.queue.time(|| io.write(file, at, buf, tag))
            } else {
                self.profile.queue.time(|| io.read(file, at, buf, tag))
            }
        };
        submitted.map_err(|e| {
            warn_limited!(
                self.log,
                "disk I/O",
                "{}: io_uring submission: {e}",
                self.name
            );
            BlkifRsp::Error
        })?;
        in_flight.insert(tag, p);
        Ok(())
    }

    /// Queues a zero-copy `writev` (`write`) or `readv` of `spans` at `sector`.
    fn submit_spans(
        &self,
        write: bool,
        sector: u64,
        spans: Vec<IoSpan>,
        tag: u64,
        io: &mut IoQueue,
    ) -> std::io::Result<()> {
        let (file, at) = (self.disk.file(), sector * SECTOR);
        self.profile.queue.time(|| {
            if write {
                io.writev(file, at, spans, tag)
            } else {
                io.readv(file, at, spans, tag)
            }
        })
    }

    /// The guest's pages of `segs` for I/O straight into or out of them (`write`: a disk
    /// write, which only reads them): only with persistent grants (every page mapped,
    /// writable for a disk read), zero copy not switched off, and, with
    /// `O_DIRECT`, every segment aligned to the disk's logical sector (the kernel's rule
    /// for each iovec). `None`: use a bounce buffer (which also gives the exact
    /// per-segment grant-copy result for a page that does not map).
    fn spans(&self, segs: &[BlkifRequestSegment], write: bool) -> Option<Vec<IoSpan>> {
        if !self.zero_copy.get() {
            return None;
        }
        let cache = self.persistent.as_ref()?;
        let align = if self.disk.direct() {
            self.disk.sector_size() as usize
        } else {
            1
        };
        if segs
            .iter()
            .any(|s| s.byte_offset() % align != 0 || s.byte_len() % align != 0)
        {
            return None;
        }
        if !cache.room_for(segs.iter().map(|s| s.gref.0)) {
            return None;
        }
        let mut out = Vec::with_capacity(segs.len());
        for s in segs {
            // A disk write only reads the guest's pages (a read-only mapping will do).
            let access = if write { Access::Read } else { Access::Write };
            let mem = cache.mapping_quiet(self.grants, s.gref.0, access).ok()?;
            out.push(IoSpan {
                mem,
                offset: s.byte_offset(),
                len: s.byte_len(),
            });
        }
        Some(out)
    }

    /// Answers the requests whose I/O completed.
    fn reap(
        &self,
        io: &mut IoQueue,
        st: &mut LoopState,
        ring: &mut BlkifBackRing<'_>,
        ledger: &mut Ledger<'_>,
        stats: &Arc<QueueStats>,
    ) -> Result<(), QueueError> {
        let mut done = std::mem::take(&mut st.done);
        done.clear();
        io.complete(&mut done);
        for c in done.drain(..) {
            if c.tag >= KICK_UNMASK {
                self.kicked(c, &mut st.kick, io)?;
                continue;
            }
            let Some(mut p) = st.in_flight.remove(&c.tag) else {
                continue;
            };
            let rw = if p.write { "write" } else { "read" };
            if !p.merged.is_empty() {
                let total = p.len + p.merged.iter().map(|m| m.len).sum::<usize>();
                if c.result.as_ref().is_ok_and(|&n| n == total) {
                    for m in std::mem::take(&mut p.merged).into_iter().chain([p]) {
                        let rsp = BlkifResponse::new(m.id, m.op, BlkifRsp::Okay);
                        self.respond(ring, ledger, stats, m.entry, rsp)?;
                    }
                } else {
                    warn_limited!(
                        self.log,
                        "disk I/O",
                        "{}: merged {rw} of {} requests failed ({}); each again alone",
                        self.name,
                        p.merged.len() + 1,
                        match &c.result {
                            Ok(n) => format!("{n} of {total} bytes"),
                            Err(e) => e.to_string(),
                        }
                    );
                    self.split_merged(p, io, st);
                    self.answer_failed(ring, ledger, stats, st)?;
                }
                continue;
            }
            let in_flight = &mut st.in_flight;
            if p.zero_copy && c.result.as_ref().map_or(true, |&n| n != p.len) {
                // The kernel refused I/O into the mapped pages (or cut it short): serve
                // this request, and all later ones, through bounce buffers.
                tracing::warn!(
                    "{}: zero-copy {rw} failed ({}); bounce buffers from now on",
                    self.name,
                    match &c.result {
                        Ok(n) => format!("{n} of {} bytes", p.len),
                        Err(e) => e.to_string(),
                    }
                );
                self.zero_copy.set(false);
                let (id, op, entry) = (p.id, p.op, p.entry);
                if let Err(status) = self.submit_rw(p, c.tag, io, in_flight) {
                    let rsp = BlkifResponse::new(id, op, status);
                    self.respond(ring, ledger, stats, entry, rsp)?;
                }
                continue;
            }
            let status = match c.result {
                Ok(n) if n == p.len => match c.buf {
                    Some(mut buf) if !p.write => {
                        let r = self
                            .profile
                            .copy_out
                            .time(|| self.transfer(self.copies(&p.segs, &mut buf, true)));
                        self.buffers.put(buf);
                        match r {
                            Ok(()) => BlkifRsp::Okay,
                            Err(s) => s,
                        }
                    }
                    other => {
                        if let Some(buf) = other {
                            self.buffers.put(buf);
                        }
                        BlkifRsp::Okay
                    }
                },
                Ok(n) => {
                    warn_limited!(
                        self.log,
                        "disk I/O",
                        "{}: short {rw} ({n} of {} bytes)",
                        self.name,
                        p.len
                    );
                    BlkifRsp::Error
                }
                Err(e) => {
                    warn_limited!(self.log, "disk I/O", "{}: {rw}: {e}", self.name);
                    BlkifRsp::Error
                }
            };
            let rsp = BlkifResponse::new(p.id, p.op, status);
            self.respond(ring, ledger, stats, p.entry, rsp)?;
        }
        st.done = done;
        Ok(())
    }
}
