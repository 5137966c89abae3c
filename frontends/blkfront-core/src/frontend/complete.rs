//! Completion: consuming responses (`handle_event`, the budgeted `poll`), matching
//! them to requests by id, copying read data out, and failing the device on a
//! protocol violation.

use super::{FrontState, Frontend, IoOp, Polled};
use crate::error::{IoError, ProtocolError};
use crate::platform::Platform;
use sluice_abi::blkif::{BlkifOp, BlkifResponse, BlkifRsp};

impl<P: Platform, T> Frontend<P, T> {
    /// The event channel of `queue` fired: consumes every response, completes the I/Os
    /// (copying read data out of the bounce pages) and sends held I/O where room
    /// appeared. A protocol violation fails the device (every outstanding I/O completes
    /// with [`IoError::DeviceFailed`]) and is returned for the log.
    pub fn handle_event(
        &mut self,
        p: &mut P,
        queue: usize,
        mut done: impl FnMut(T, Result<(), IoError>),
    ) -> Result<usize, ProtocolError> {
        match self.poll(p, queue, usize::MAX, &mut done) {
            Ok(polled) => Ok(polled.completed),
            Err(e) => Err(self.protocol_error(p, e, &mut done)),
        }
    }

    /// [`handle_event`](Self::handle_event) for interrupt context: completes at most
    /// `budget` I/Os (then `more` is set and the caller polls again), tears nothing
    /// down and never sleeps in the platform beyond what the data path itself does
    /// (grants, copies, notify; bounce pages are allocated only when the pool is
    /// empty). A protocol violation marks the frontend broken (every later I/O is
    /// refused, outstanding ones stay until then) and is returned: the driver must
    /// then call [`fail`](Self::fail) from process context.
    pub fn poll(
        &mut self,
        p: &mut P,
        queue: usize,
        budget: usize,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) -> Result<Polled, ProtocolError> {
        let mut polled = Polled::default();
        if self.broken || self.state != FrontState::Connected || queue >= self.queues.len() {
            return Ok(polled);
        }
        let r = self.poll_ring(p, queue, budget, done, &mut polled);
        if let Err(e) = r {
            self.broken = true;
            return Err(e);
        }
        self.resubmit_held(p, done);
        Ok(polled)
    }

    fn poll_ring(
        &mut self,
        p: &mut P,
        queue: usize,
        budget: usize,
        done: &mut impl FnMut(T, Result<(), IoError>),
        polled: &mut Polled,
    ) -> Result<(), ProtocolError> {
        let ring_err = |error| ProtocolError::Ring { queue, error };
        loop {
            loop {
                if polled.completed >= budget {
                    polled.more = true;
                    return Ok(());
                }
                let rsp = match self.queues[queue].ring(|r| r.pop_response()) {
                    Ok(Ok(Some(r))) => r,
                    Ok(Ok(None)) => break,
                    Ok(Err(error)) | Err(error) => return Err(ring_err(error)),
                };
                let (tag, result) = self.complete(p, queue, rsp)?;
                polled.completed += 1;
                done(tag, result);
            }
            match self.queues[queue].ring(|r| r.final_check_for_responses()) {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => return Ok(()),
                Ok(Err(error)) | Err(error) => return Err(ring_err(error)),
            }
        }
    }

    fn protocol_error(
        &mut self,
        p: &mut P,
        e: ProtocolError,
        done: &mut impl FnMut(T, Result<(), IoError>),
    ) -> ProtocolError {
        // Nothing the backend says can be trusted any more: fail every outstanding I/O
        // rather than hold it for a reconnect.
        self.disconnect(p);
        self.fail(p, done);
        e
    }

    fn complete(
        &mut self,
        p: &mut P,
        queue: usize,
        rsp: BlkifResponse,
    ) -> Result<(T, Result<(), IoError>), ProtocolError> {
        let q = &mut self.queues[queue];
        let id = rsp.id;
        let slot = usize::try_from(id)
            .ok()
            .filter(|&i| i < q.shadow.len())
            .ok_or(ProtocolError::ResponseIdOutOfRange { queue, id })?;
        let (sent, inner) = match &q.shadow[slot] {
            None => return Err(ProtocolError::ResponseForUnsentRequest { queue, id }),
            Some(s) => (s.wire_op, s.inner_op),
        };
        let indirect_answer = sent == BlkifOp::Indirect.raw() && rsp.operation == inner;
        if rsp.operation != sent && !indirect_answer {
            return Err(ProtocolError::OperationMismatch {
                queue,
                id,
                sent,
                answered: rsp.operation,
            });
        }
        let Some(s) = q.shadow[slot].take() else {
            return Err(ProtocolError::ResponseForUnsentRequest { queue, id });
        };
        q.free_ids.push(slot as u32);
        self.stats.completed += 1;
        let result = match BlkifRsp::try_from(rsp.status) {
            Ok(BlkifRsp::Okay) => {
                let mut r = Ok(());
                if s.io.op == IoOp::Read {
                    for (seg, pp) in s.io.segments.iter().zip(&s.bounce) {
                        if let Err(e) =
                            p.copy_out(seg.page, seg.offset(), &pp.page, seg.offset(), seg.len())
                        {
                            r = Err(IoError::Copy(e));
                            break;
                        }
                    }
                }
                r
            }
            Ok(BlkifRsp::EOpNotSupp) => {
                // As Linux: stop offering what the backend refused.
                if let Some(d) = self.disk.as_mut() {
                    match s.io.op {
                        IoOp::Flush => d.flush = None,
                        IoOp::Discard { .. } => d.discard = None,
                        _ => {}
                    }
                }
                Err(IoError::NotSupported)
            }
            Ok(BlkifRsp::Error) => Err(IoError::Backend(rsp.status)),
            Err(_) => Err(IoError::Backend(rsp.status)),
        };
        self.give_back(p, queue, s.bounce, s.indirect);
        Ok((s.tag, result))
    }
}
