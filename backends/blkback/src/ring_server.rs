//! Serves one blkif ring: takes requests, does the I/O synchronously (pread/pwrite on
//! the image, grant copy to and from the frontend's pages), answers.

use crate::disk::{Disk, SECTOR};
use sluice_abi::blkif::{
    decode_request, indirect_pages, BlkRequest, BlkifBackRing, BlkifLimits, BlkifOp,
    BlkifRequestSegment, BlkifResponse, BlkifRsp, PAGE_SIZE,
};
use sluice_abi::ring::RingError;
use sluice_dom0::{CopyPtr, CopySegment, EventChannels, GrantMapper};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zerocopy::FromBytes;

/// Indirect segments we accept per request (`feature-max-indirect-segments`).
pub const MAX_INDIRECT_SEGMENTS: u16 = 256;

/// Why a queue stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The frontend broke the ring protocol (runaway indices): the device is disconnected.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// The event channel failed.
    #[error("event channel: {0}")]
    Evtchn(#[from] sluice_dom0::EvtchnError),
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
    pub port: u32,
    /// Set to stop.
    pub stop: &'a AtomicBool,
    /// Log prefix (device and queue).
    pub name: &'a str,
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
    pub fn serve(
        &self,
        mut ring: BlkifBackRing<'_>,
        stats: &Arc<QueueStats>,
    ) -> Result<(), QueueError> {
        let limits = BlkifLimits {
            max_indirect_segments: MAX_INDIRECT_SEGMENTS,
        };
        let mut pending = Vec::new();
        loop {
            while let Some(slot) = ring.pop_request()? {
                // Linux's blkfront expects an indirect request's response to carry the
                // inner operation (`indirect_op`, the byte after `operation`).
                let rsp_op = if slot.operation == BlkifOp::Indirect as u8 {
                    slot.nr_segments
                } else {
                    slot.operation
                };
                let rsp = match decode_request(&slot, &limits) {
                    Ok(req) => {
                        let status = self.execute(&req);
                        BlkifResponse::new(req.id(), rsp_op, status)
                    }
                    Err(e) => {
                        tracing::warn!("{}: refusing request: {e}", self.name);
                        BlkifResponse {
                            operation: rsp_op,
                            ..e.response()
                        }
                    }
                };
                if rsp.status == BlkifRsp::Okay as i16 {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                ring.push_response(&rsp)?;
            }
            if ring.push_responses_and_check_notify()? {
                self.evtchn.notify(self.port)?;
            }
            if ring.final_check_for_requests()? {
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            if self.evtchn.wait(Some(Duration::from_millis(200)))? {
                pending.clear();
                self.evtchn.read_pending(&mut pending)?;
                for &p in &pending {
                    self.evtchn.unmask(p)?;
                }
            }
        }
    }

    fn execute(&self, req: &BlkRequest) -> BlkifRsp {
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
                    // flush again.
                    BlkifOp::FlushDiskcache => {
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
                    tracing::warn!("{}: discard on a read-only disk", self.name);
                    return Err(BlkifRsp::Error);
                }
                self.check_range(sector_number, nr_sectors)?;
                self.disk.discard(sector_number, nr_sectors).map_err(|e| {
                    tracing::warn!("{}: {e}", self.name);
                    BlkifRsp::Error
                })
            }
        }
    }

    fn check_range(&self, sector: u64, count: u64) -> Result<(), BlkifRsp> {
        if !self.disk.contains(sector, count) {
            tracing::warn!(
                "{}: sectors {sector}+{count} lie outside the disk ({} sectors)",
                self.name,
                self.disk.sectors()
            );
            return Err(BlkifRsp::Error);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BlkifRsp> {
        self.disk.flush().map_err(|e| {
            tracing::warn!("{}: {e}", self.name);
            BlkifRsp::Error
        })
    }

    /// Copies the indirect pages in and validates the segments they hold.
    fn indirect_segments(
        &self,
        grefs: &[u32],
        nr: u16,
    ) -> Result<Vec<BlkifRequestSegment>, BlkifRsp> {
        let pages = indirect_pages(nr.into()) as usize;
        let mut buf = vec![0u8; pages * PAGE_SIZE];
        let mut copies: Vec<CopySegment<'_>> = buf
            .chunks_mut(PAGE_SIZE)
            .zip(grefs)
            .map(|(chunk, &gref)| CopySegment {
                local: CopyPtr::FromGuest(chunk),
                domid: self.domid,
                gref,
                offset: 0,
                status: 0,
            })
            .collect();
        self.copy(&mut copies)?;
        drop(copies);
        let segs = <[BlkifRequestSegment]>::ref_from_prefix_with_elems(&buf, nr.into())
            .map(|(s, _)| s.to_vec())
            .map_err(|_| BlkifRsp::Error)?;
        for (i, s) in segs.iter().enumerate() {
            if let Err(e) = s.validate() {
                tracing::warn!("{}: indirect segment {i}: {e}", self.name);
                return Err(BlkifRsp::Error);
            }
        }
        Ok(segs)
    }

    fn copy(&self, copies: &mut [CopySegment<'_>]) -> Result<(), BlkifRsp> {
        self.grants.copy(copies).map_err(|e| {
            tracing::warn!("{}: grant copy: {e}", self.name);
            BlkifRsp::Error
        })?;
        if let Some(bad) = copies.iter().find(|c| c.status != 0) {
            tracing::warn!(
                "{}: grant copy of gref {} failed with status {}",
                self.name,
                bad.gref,
                bad.status
            );
            return Err(BlkifRsp::Error);
        }
        Ok(())
    }

    /// One copy segment per request segment, over consecutive parts of `buf`.
    fn copies<'b>(
        &self,
        segs: &[BlkifRequestSegment],
        buf: &'b mut [u8],
        to_guest: bool,
    ) -> Vec<CopySegment<'b>> {
        let mut out = Vec::with_capacity(segs.len());
        let mut rest = buf;
        for s in segs {
            let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(s.byte_len());
            rest = tail;
            out.push(CopySegment {
                local: if to_guest {
                    CopyPtr::ToGuest(chunk)
                } else {
                    CopyPtr::FromGuest(chunk)
                },
                domid: self.domid,
                gref: s.gref,
                offset: s.byte_offset() as u16,
                status: 0,
            });
        }
        out
    }

    fn read(&self, sector: u64, segs: &[BlkifRequestSegment]) -> Result<(), BlkifRsp> {
        let bytes: usize = segs.iter().map(|s| s.byte_len()).sum();
        self.check_range(sector, bytes as u64 / SECTOR)?;
        let mut buf = vec![0u8; bytes];
        self.disk.read(sector, &mut buf).map_err(|e| {
            tracing::warn!("{}: {e}", self.name);
            BlkifRsp::Error
        })?;
        let mut copies = self.copies(segs, &mut buf, true);
        self.copy(&mut copies)
    }

    fn write(&self, sector: u64, segs: &[BlkifRequestSegment]) -> Result<(), BlkifRsp> {
        if self.disk.readonly() {
            tracing::warn!("{}: write to a read-only disk", self.name);
            return Err(BlkifRsp::Error);
        }
        let bytes: usize = segs.iter().map(|s| s.byte_len()).sum();
        self.check_range(sector, bytes as u64 / SECTOR)?;
        let mut buf = vec![0u8; bytes];
        let mut copies = self.copies(segs, &mut buf, false);
        self.copy(&mut copies)?;
        drop(copies);
        self.disk.write(sector, &buf).map_err(|e| {
            tracing::warn!("{}: {e}", self.name);
            BlkifRsp::Error
        })
    }
}
