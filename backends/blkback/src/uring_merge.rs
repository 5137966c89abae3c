//! `--merge`: the zero-copy reads (or writes) of one round that continue each other on
//! the disk go to the kernel as **one** `readv`/`writev` (up to [`MERGE_BYTES`] and
//! [`MERGE_SPANS`] iovecs), each request still answered on its own. io_uring plugs (and
//! so lets the block layer merge) only a submission of three entries or more, and with
//! the 2-4 requests in flight the bench sees, a round rarely has three. A merged I/O
//! that fails or comes back short is done again request by request, so every request
//! gets the status it would have had alone.

use super::{InFlight, LoopState};
use crate::disk::SECTOR;
use crate::ring_server::Queue;
use sluice_abi::blkif::BlkifRsp;
use sluice_dom0::{warn_limited, EventChannels, GrantMapper};
use sluice_xen_sys::{IoQueue, IoSpan};

/// Most bytes in one merged I/O.
pub(super) const MERGE_BYTES: usize = 4 << 20;
/// Most iovecs in one merged I/O (the kernel's `UIO_MAXIOV`).
pub(super) const MERGE_SPANS: usize = 1024;

/// The round's zero-copy I/O not yet on the ring.
pub(super) struct Pending {
    /// The first request; the others are in its `merged`.
    head: InFlight,
    tag: u64,
    spans: Vec<IoSpan>,
    /// The sector after the last request's data.
    next: u64,
    len: usize,
}

impl<G: GrantMapper, E: EventChannels> Queue<'_, G, E> {
    /// Adds a checked read or write to the round's pending I/O if it can go zero copy
    /// (after sending what is pending if it does not continue it); gives the request
    /// back when it cannot go zero copy (the caller submits it alone, after
    /// [`Queue::send_merged`]).
    pub(super) fn merge_rw(
        &self,
        mut p: InFlight,
        tag: u64,
        io: &mut IoQueue,
        st: &mut LoopState,
    ) -> Result<(), InFlight> {
        let Some(spans) = self.spans(&p.segs, p.write) else {
            return Err(p);
        };
        p.zero_copy = true;
        if let Some(g) = st.pending.as_mut() {
            if g.head.write == p.write
                && g.next == p.sector
                && g.len + p.len <= MERGE_BYTES
                && g.spans.len() + spans.len() <= MERGE_SPANS
            {
                g.spans.extend(spans);
                g.next += (p.len as u64) / SECTOR;
                g.len += p.len;
                g.head.merged.push(p);
                crate::profile::bump(&self.profile.merged, 1);
                return Ok(());
            }
        }
        self.send_merged(io, st);
        st.pending = Some(Pending {
            next: p.sector + (p.len as u64) / SECTOR,
            len: p.len,
            head: p,
            tag,
            spans,
        });
        Ok(())
    }

    /// Puts the round's pending I/O on the ring (one entry); the requests of one that
    /// cannot be submitted go to `st.failed`, to be answered with an error.
    pub(super) fn send_merged(&self, io: &mut IoQueue, st: &mut LoopState) {
        let Some(g) = st.pending.take() else {
            return;
        };
        match self.submit_spans(g.head.write, g.head.sector, g.spans, g.tag, io) {
            Ok(()) => {
                st.in_flight.insert(g.tag, g.head);
            }
            Err(e) => {
                warn_limited!(
                    self.log,
                    "disk I/O",
                    "{}: io_uring submission: {e}",
                    self.name
                );
                let mut head = g.head;
                for p in std::mem::take(&mut head.merged).into_iter().chain([head]) {
                    st.failed.push((p.entry, p.id, p.op, BlkifRsp::Error));
                }
            }
        }
    }

    /// A merged I/O that did not move every byte: each of its requests again, alone
    /// (each then gets its own result); those that cannot be submitted go to
    /// `st.failed`.
    pub(super) fn split_merged(&self, mut head: InFlight, io: &mut IoQueue, st: &mut LoopState) {
        let parts: Vec<InFlight> = std::mem::take(&mut head.merged);
        for p in std::iter::once(head).chain(parts) {
            st.next_tag += 1;
            let tag = st.next_tag;
            let (entry, id, op) = (p.entry, p.id, p.op);
            if let Err(status) = self.submit_rw(p, tag, io, &mut st.in_flight) {
                st.failed.push((entry, id, op, status));
            }
        }
    }
}
