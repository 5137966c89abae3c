//! Serves one blkif ring: takes requests, does the I/O (pread/pwrite or io_uring on the
//! image; grant copy to and from the frontend's pages, or memcpy through persistently
//! mapped grants when both ends agreed on `feature-persistent`), answers.

use crate::buffers::BufPool;
use crate::disk::{Disk, SECTOR};
use crate::journal::{Entry, JournalError, Ledger};
use crate::persistent::PersistentGrants;
use crate::profile::Profile;
use sluice_abi::blkif::{
    decode_request, indirect_pages, BlkRequest, BlkifBackRing, BlkifLimits, BlkifOp,
    BlkifRequestError, BlkifRequestSegment, BlkifResponse, BlkifRsp, PAGE_SIZE,
};
use sluice_abi::ring::RingError;
use sluice_abi::types::{EvtchnPort, GrantRef};
use sluice_dom0::{warn_limited, CopyPtr, CopySegment, EventChannels, GrantMapper, LogLimiter};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zerocopy::FromBytes;

/// Indirect segments we accept per request (`feature-max-indirect-segments`).
pub const MAX_INDIRECT_SEGMENTS: u16 = 256;

pub use crate::uring_server::MAX_IN_FLIGHT;

/// Why a queue stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The frontend broke the ring protocol (runaway indices): the device is disconnected.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// The event channel failed.
    #[error("event channel: {0}")]
    Evtchn(#[from] sluice_dom0::EvtchnError),
    /// io_uring failed (not one request: the ring itself).
    #[error("io_uring: {0}")]
    Io(std::io::Error),
    /// The crash journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The response operation: Linux's blkfront expects an indirect request's response to
/// carry the inner operation (`indirect_op`, the byte after `operation`).
pub(crate) fn response_op(slot: &sluice_abi::blkif::BlkifRequest) -> u8 {
    if slot.operation == BlkifOp::Indirect as u8 {
        slot.nr_segments
    } else {
        slot.operation
    }
}

/// What one queue needs.
pub struct Queue<'a, G: GrantMapper, E: EventChannels> {
    /// The frontend's domain.
    pub domid: u16,
    /// The image.
    pub disk: &'a Disk,
    /// Grant copy.
    pub grants: &'a G,
    /// Our event channel and its local port.
    pub evtchn: E,
    /// Local port bound to the frontend.
    pub port: EvtchnPort,
    /// Set to stop.
    pub stop: &'a AtomicBool,
    /// Log prefix (device and queue).
    pub name: &'a str,
    /// Persistent grants, when both ends agreed (`None`: grant copy only). Dropping the
    /// queue unmaps them.
    pub persistent: Option<PersistentGrants<G::Mapping>>,
    /// Where the queue's time goes (logged when it stops).
    pub profile: Profile,
    /// Data buffers, reused across requests.
    pub buffers: BufPool,
    /// io_uring I/O straight into persistently mapped guest pages (true to start with;
    /// switched off for good when the kernel refuses it).
    pub zero_copy: Cell<bool>,
    /// Rounds the io_uring engine may hold back a notification the frontend asked for
    /// while other I/O is in flight ([`crate::coalesce`]); 0: none.
    pub coalesce: u32,
    /// The io_uring engine sends a round's contiguous zero-copy requests as one I/O
    /// (`--merge`; `src/uring_merge.rs`).
    pub merge: bool,
    /// The device's log rate limit (shared by its queues, kept across reconnects): what
    /// a frontend's requests make us log is bounded per message class.
    pub log: &'a LogLimiter,
}

/// Counters, for tests and logs.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Requests answered OKAY.
    pub ok: std::sync::atomic::AtomicU64,
    /// Requests answered ERROR or EOPNOTSUPP.
    pub failed: std::sync::atomic::AtomicU64,
}

impl<G: GrantMapper, E: EventChannels> Queue<'_, G, E> {
    /// Serves `ring` until `stop` is set (Ok) or the frontend breaks the protocol (Err).
    /// `ledger` records each request taken until its answer is published (and holds
    /// those a killed predecessor left unanswered, served first).
    pub fn serve(
        &self,
        mut ring: BlkifBackRing<'_>,
        stats: &Arc<QueueStats>,
        ledger: &mut Ledger<'_>,
    ) -> Result<(), QueueError> {
        let limits = BlkifLimits {
            max_indirect_segments: MAX_INDIRECT_SEGMENTS,
        };
        let mut pending = Vec::new();
        loop {
            while let Some((entry, slot)) = ledger.next(&mut ring)? {
                let rsp_op = response_op(&slot);
                let rsp = match decode_request(&slot, &limits) {
                    Ok(req) => {
                        let status = self.profile.inline.time(|| self.execute(&req));
                        BlkifResponse::new(req.id(), rsp_op, status)
                    }
                    Err(e) => self.refusal(&e, rsp_op),
                };
                self.respond(&mut ring, ledger, stats, entry, rsp)?;
            }
            if self.publish(&mut ring, ledger)? {
                crate::profile::bump(&self.profile.notifies, 1);
                self.evtchn.notify(self.port)?;
            }
            if ring.final_check_for_requests()? {
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            // Going idle: say how many lines the rate limit kept back.
            self.log.report(self.name, false);
            if self
                .profile
                .idle
                .time(|| self.evtchn.wait(Some(Duration::from_millis(200))))?
            {
                pending.clear();
                self.evtchn.read_pending(&mut pending)?;
                for &p in &pending {
                    self.evtchn.unmask(p)?;
                }
            }
        }
    }

    /// Writes `entry`'s response (recorded first in the journal).
    pub(crate) fn respond(
        &self,
        ring: &mut BlkifBackRing<'_>,
        ledger: &mut Ledger<'_>,
        stats: &Arc<QueueStats>,
        entry: Entry,
        rsp: BlkifResponse,
    ) -> Result<(), QueueError> {
        if rsp.status == BlkifRsp::Okay as i16 {
            stats.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        ledger.answering(entry, ring.rsp_prod_pvt())?;
        ring.push_response(&rsp)?;
        Ok(())
    }

    /// Publishes the responses written (then tells the journal); whether the frontend
    /// wants an event.
    pub(crate) fn publish(
        &self,
        ring: &mut BlkifBackRing<'_>,
        ledger: &mut Ledger<'_>,
    ) -> Result<bool, QueueError> {
        let notify = ring.push_responses_and_check_notify()?;
        ledger.published(ring.rsp_prod_pvt())?;
        Ok(notify)
    }

    /// Does one decoded request synchronously (grant copy or persistent grants, then
    /// pread/pwrite) and returns its status; the caller answers on the ring.
    pub fn execute(&self, req: &BlkRequest) -> BlkifRsp {
        match self.try_execute(req) {
            Ok(()) => BlkifRsp::Okay,
            Err(status) => status,
        }
    }

    fn try_execute(&self, req: &BlkRequest) -> Result<(), BlkifRsp> {
        match *req {
            BlkRequest::ReadWrite {
                op,
                sector_number,
                segments,
                ..
            } => {
                let segs = segments.as_slice();
                match op {
                    BlkifOp::Read => self.read(sector_number, segs),
                    BlkifOp::Write => self.write(sector_number, segs),
                    // A flush may carry data (a write with preflush/FUA): flush, write,
                    // flush again. A barrier is the same here: everything before it has
                    // completed (it is an ordering point, see `serve_async`), nothing
                    // after it starts until it is answered, and its data is durable
                    // before the answer.
                    BlkifOp::FlushDiskcache | BlkifOp::WriteBarrier => {
                        self.flush()?;
                        if !segs.is_empty() {
                            self.write(sector_number, segs)?;
                            self.flush()?;
                        }
                        Ok(())
                    }
                    _ => Err(BlkifRsp::EOpNotSupp),
                }
            }
            BlkRequest::Indirect {
                op,
                sector_number,
                nr_segments,
                ..
            } => {
                let segs = self.indirect_segments(req.indirect_grefs(), nr_segments)?;
                match op {
                    BlkifOp::Read => self.read(sector_number, &segs),
                    BlkifOp::Write => self.write(sector_number, &segs),
                    _ => Err(BlkifRsp::Error),
                }
            }
            BlkRequest::Discard {
                sector_number,
                nr_sectors,
                ..
            } => {
                if self.disk.readonly() {
                    warn_limited!(
                        self.log,
                        "read-only disk",
                        "{}: discard on a read-only disk",
                        self.name
                    );
                    return Err(BlkifRsp::Error);
                }
                self.check_range(sector_number, nr_sectors)?;
                self.disk.discard(sector_number, nr_sectors).map_err(|e| {
                    warn_limited!(self.log, "disk I/O", "{}: {e}", self.name);
                    BlkifRsp::Error
                })
            }
        }
    }

    pub(crate) fn check_range(&self, sector: u64, count: u64) -> Result<(), BlkifRsp> {
        if !self.disk.contains(sector, count) {
            warn_limited!(
                self.log,
                "sector range",
                "{}: sectors {sector}+{count} lie outside the disk ({} sectors)",
                self.name,
                self.disk.sectors()
            );
            return Err(BlkifRsp::Error);
        }
        if !self.disk.aligned(sector, count) {
            warn_limited!(
                self.log,
                "sector range",
                "{}: sectors {sector}+{count} are not aligned to the disk's {}-byte sectors",
                self.name,
                self.disk.sector_size()
            );
            return Err(BlkifRsp::Error);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BlkifRsp> {
        self.disk.flush().map_err(|e| {
            warn_limited!(self.log, "disk I/O", "{}: {e}", self.name);
            BlkifRsp::Error
        })
    }

    /// Copies the indirect pages in and validates the segments they hold.
    pub(crate) fn indirect_segments(
        &self,
        grefs: &[GrantRef],
        nr: u16,
    ) -> Result<Vec<BlkifRequestSegment>, BlkifRsp> {
        let pages = indirect_pages(nr.into()) as usize;
        let mut buf = vec![0u8; pages * PAGE_SIZE];
        let copies: Vec<CopySegment<'_>> = buf
            .chunks_mut(PAGE_SIZE)
            .zip(grefs)
            .map(|(chunk, &gref)| CopySegment {
                local: CopyPtr::FromGuest(chunk),
                domid: self.domid,
                gref: gref.0,
                offset: 0,
                status: 0,
            })
            .collect();
        self.transfer(copies)?;
        let segs = <[BlkifRequestSegment]>::ref_from_prefix_with_elems(&buf, nr.into())
            .map(|(s, _)| s.to_vec())
            .map_err(|_| BlkifRsp::Error)?;
        for (i, s) in segs.iter().enumerate() {
            if let Err(e) = s.validate() {
                warn_limited!(
                    self.log,
                    "bad segment",
                    "{}: indirect segment {i}: {e}",
                    self.name
                );
                return Err(BlkifRsp::Error);
            }
        }
        Ok(segs)
    }

    fn read(&self, sector: u64, segs: &[BlkifRequestSegment]) -> Result<(), BlkifRsp> {
        let bytes: usize = segs.iter().map(|s| s.byte_len()).sum();
        self.check_range(sector, bytes as u64 / SECTOR)?;
        let mut buf = self.buffers.take(bytes);
        let r = self
            .disk
            .read(sector, &mut buf)
            .map_err(|e| {
                warn_limited!(self.log, "disk I/O", "{}: {e}", self.name);
                BlkifRsp::Error
            })
            .and_then(|()| self.transfer(self.copies(segs, &mut buf, true)));
        self.buffers.put(buf);
        r
    }

    /// The answer to a ring slot that does not decode (logged, rate limited).
    pub(crate) fn refusal(&self, e: &BlkifRequestError, op: u8) -> BlkifResponse {
        warn_limited!(
            self.log,
            "refused request",
            "{}: refusing request: {e}",
            self.name
        );
        BlkifResponse {
            operation: op,
            ..e.response()
        }
    }

    /// Refuses a write to a read-only disk (logged, rate limited).
    pub(crate) fn refuse_write_if_readonly(&self) -> Result<(), BlkifRsp> {
        if self.disk.readonly() {
            warn_limited!(
                self.log,
                "read-only disk",
                "{}: write to a read-only disk",
                self.name
            );
            return Err(BlkifRsp::Error);
        }
        Ok(())
    }

    fn write(&self, sector: u64, segs: &[BlkifRequestSegment]) -> Result<(), BlkifRsp> {
        self.refuse_write_if_readonly()?;
        let bytes: usize = segs.iter().map(|s| s.byte_len()).sum();
        self.check_range(sector, bytes as u64 / SECTOR)?;
        let mut buf = self.buffers.take(bytes);
        let r = self
            .transfer(self.copies(segs, &mut buf, false))
            .and_then(|()| {
                self.disk.write(sector, &buf).map_err(|e| {
                    warn_limited!(self.log, "disk I/O", "{}: {e}", self.name);
                    BlkifRsp::Error
                })
            });
        self.buffers.put(buf);
        r
    }
}
