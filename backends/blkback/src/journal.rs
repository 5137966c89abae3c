//! The crash journal of one queue: every request taken from the ring and not yet
//! answered, kept in a small file on tmpfs (`/run/sluice/blkback/`) mapped shared, so
//! that a daemon started after a SIGKILL or a crash of the previous one serves exactly
//! those requests again and none twice.
//!
//! Why the ring alone is not enough: responses go out in completion order, and each
//! overwrites the slot of the oldest request not yet answered. After a crash with
//! requests in flight, the shared `rsp_prod` says how many were answered, not which;
//! requests below it may be unanswered (their slots already hold other responses) and
//! requests above it may be answered (Linux's blkfront then marks the device broken:
//! "response references no pending request").
//!
//! Protocol (stores in this order; a crash may stop it anywhere):
//! * take: the request (copied once from the ring: the journal copy is what is
//!   executed) and its ring index into a free entry, the entry's state to `PENDING`, then
//!   the header's `req_cons`;
//! * answer: the entry's response index and state `RESPONDING`, then the response into
//!   the ring;
//! * publish: the ring's `rsp_prod`, then the header's `rsp_published`, then every
//!   `RESPONDING` entry back to free.
//!
//! Recovery reads the shared `rsp_prod` P (the guest's to scribble: it must lie between
//! `rsp_published` and the number of responses written): `RESPONDING` entries below P
//! were seen by the frontend and are freed, the others are served again, in the order
//! they were taken, before anything new; requests are taken from the ring again from
//! the highest index recorded. The count of entries left must equal `req_cons - P`, or
//! the journal is not trusted.

use sluice_abi::blkif::BlkifRequest;
use sluice_abi::shared::{SharedMem, SharedMemError};
use zerocopy::IntoBytes;

const MAGIC: u32 = 0x534c_4a31; // "SLJ1"
const HEADER: usize = 64;
const ENTRY: usize = 128;
const REQ_AT: usize = 16;
const _: () = assert!(REQ_AT + size_of::<BlkifRequest>() <= ENTRY);

// Header fields.
const H_MAGIC: usize = 0;
const H_SLOTS: usize = 4;
const H_ID: usize = 8; // 4 words: frontend domain, first ring-ref, ring pages, event channel
const H_REQ_CONS: usize = 24;
const H_RSP_PUBLISHED: usize = 28;

// Entry fields.
const E_STATE: usize = 0;
const E_CONS: usize = 4;
const E_RSP: usize = 8;
const FREE: u32 = 0;
const PENDING: u32 = 1;
const RESPONDING: u32 = 2;

/// What identifies the ring a journal belongs to.
pub type RingId = [u32; 4];

/// Why a journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Its memory is too small or was refused.
    #[error("journal memory: {0}")]
    Mem(#[from] SharedMemError),
    /// No free entry: more requests taken than the ring holds (our bug or the ring's).
    #[error("journal full")]
    Full,
    /// The stored journal is not this ring's or does not add up.
    #[error("journal does not match the ring: {0}")]
    Mismatch(String),
}

/// One journal entry (a request taken and not yet answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry(u32);

/// Bytes a journal for `slots` ring entries takes.
pub fn journal_len(slots: u32) -> usize {
    HEADER + slots as usize * ENTRY
}

/// Where a restarted queue carries on.
#[derive(Debug)]
pub struct Recovered {
    /// Responses published (the ring's `rsp_prod`).
    pub rsp_prod: u32,
    /// The next request index to take from the ring.
    pub req_cons: u32,
    /// Requests taken and not answered, oldest first: to serve before anything new.
    pub pending: Vec<(Entry, BlkifRequest)>,
}

/// One queue's journal over its memory (a mapped file; a plain buffer in tests).
#[derive(Debug)]
pub struct Journal<'m> {
    mem: SharedMem<'m>,
    free: Vec<u32>,
    answered: Vec<u32>,
}

impl<'m> Journal<'m> {
    /// A fresh journal for a ring of `slots` entries whose indices start at `start`.
    pub fn create(
        mem: SharedMem<'m>,
        slots: u32,
        id: RingId,
        start: u32,
    ) -> Result<Self, JournalError> {
        let mem = mem.slice(0, journal_len(slots))?;
        mem.fill(0, mem.len(), 0)?;
        mem.store_u32_relaxed(H_SLOTS, slots)?;
        for (i, v) in id.iter().enumerate() {
            mem.store_u32_relaxed(H_ID + 4 * i, *v)?;
        }
        mem.store_u32_relaxed(H_REQ_CONS, start)?;
        mem.store_u32_relaxed(H_RSP_PUBLISHED, start)?;
        mem.store_u32_release(H_MAGIC, MAGIC)?;
        Ok(Self {
            mem,
            free: (0..slots).rev().collect(),
            answered: Vec::new(),
        })
    }

    /// Reads back the journal a previous process left for this ring (`id`, `slots`),
    /// given the ring's shared `rsp_prod` now.
    pub fn recover(
        mem: SharedMem<'m>,
        slots: u32,
        id: RingId,
        shared_rsp_prod: u32,
    ) -> Result<(Self, Recovered), JournalError> {
        let mem = mem.slice(0, journal_len(slots))?;
        let bad = |why: String| Err(JournalError::Mismatch(why));
        if mem.load_u32_acquire(H_MAGIC)? != MAGIC || mem.load_u32_relaxed(H_SLOTS)? != slots {
            return bad("no journal for a ring of this size".into());
        }
        for (i, v) in id.iter().enumerate() {
            if mem.load_u32_relaxed(H_ID + 4 * i)? != *v {
                return bad("another ring's journal".into());
            }
        }
        let req_cons = mem.load_u32_relaxed(H_REQ_CONS)?;
        let published = mem.load_u32_relaxed(H_RSP_PUBLISHED)?;
        let mut live = Vec::new();
        let mut responding = 0u32;
        for i in 0..slots {
            let at = HEADER + i as usize * ENTRY;
            let state = mem.load_u32_acquire(at + E_STATE)?;
            match state {
                FREE => continue,
                PENDING | RESPONDING => {}
                s => return bad(format!("entry {i} in state {s}")),
            }
            let cons = mem.load_u32_relaxed(at + E_CONS)?;
            let rsp = mem.load_u32_relaxed(at + E_RSP)?;
            let req: BlkifRequest = mem.read(at + REQ_AT)?;
            if state == RESPONDING {
                responding += 1;
            }
            live.push((i, state, cons, rsp, req));
        }
        // Responses the frontend can see beyond the last publication we recorded.
        let seen = shared_rsp_prod.wrapping_sub(published);
        if seen > responding {
            return bad(format!(
                "rsp_prod {shared_rsp_prod}: {seen} beyond the {published} recorded, \
                 {responding} written"
            ));
        }
        let p = shared_rsp_prod;
        // Taken requests: up to the header's req_cons, or one further when the crash
        // came between an entry and the header.
        let mut req_cons = req_cons;
        if live.iter().any(|&(_, _, cons, _, _)| cons == req_cons) {
            req_cons = req_cons.wrapping_add(1);
        }
        let mut pending = Vec::new();
        let mut free = Vec::new();
        for (i, state, cons, rsp, req) in live {
            let published_now = state == RESPONDING && rsp.wrapping_sub(published) < seen;
            if published_now {
                free.push(i);
                continue;
            }
            // Requests still unanswered were taken within the last ring's worth (in
            // any order relative to rsp_prod: answers go out in completion order).
            let back = req_cons.wrapping_sub(cons);
            if back == 0 || back > slots {
                return bad(format!(
                    "entry {i}: request {cons} not among the {slots} before req_cons {req_cons}"
                ));
            }
            let age = slots - back;
            pending.push((age, i, req));
        }
        if req_cons.wrapping_sub(p) > slots || req_cons.wrapping_sub(p) != pending.len() as u32 {
            return bad(format!(
                "{} request(s) recorded between rsp_prod {p} and req_cons {req_cons}",
                pending.len()
            ));
        }
        pending.sort_by_key(|&(age, i, _)| (age, i));
        let mut j = Self {
            mem,
            free: Vec::new(),
            answered: Vec::new(),
        };
        for &i in &free {
            j.set_state(i, FREE)?;
        }
        for &(_, i, _) in &pending {
            j.set_state(i, PENDING)?;
        }
        j.mem.store_u32_relaxed(H_REQ_CONS, req_cons)?;
        j.mem.store_u32_release(H_RSP_PUBLISHED, p)?;
        j.free = (0..slots)
            .rev()
            .filter(|i| !pending.iter().any(|&(_, k, _)| k == *i))
            .collect();
        let pending = pending
            .into_iter()
            .map(|(_, i, req)| (Entry(i), req))
            .collect();
        Ok((
            j,
            Recovered {
                rsp_prod: p,
                req_cons,
                pending,
            },
        ))
    }

    fn set_state(&self, i: u32, state: u32) -> Result<(), JournalError> {
        Ok(self
            .mem
            .store_u32_release(HEADER + i as usize * ENTRY + E_STATE, state)?)
    }

    /// Records `req`, taken from ring index `cons`, before anything is done with it.
    pub fn take(&mut self, req: &BlkifRequest, cons: u32) -> Result<Entry, JournalError> {
        let i = self.free.pop().ok_or(JournalError::Full)?;
        let at = HEADER + i as usize * ENTRY;
        self.mem.write_bytes(at + REQ_AT, req.as_bytes())?;
        self.mem.store_u32_relaxed(at + E_CONS, cons)?;
        self.set_state(i, PENDING)?;
        self.mem
            .store_u32_release(H_REQ_CONS, cons.wrapping_add(1))?;
        Ok(Entry(i))
    }

    /// Records that `e`'s response goes to ring index `rsp`, before it is written.
    pub fn answering(&mut self, e: Entry, rsp: u32) -> Result<(), JournalError> {
        let at = HEADER + e.0 as usize * ENTRY;
        self.mem.store_u32_relaxed(at + E_RSP, rsp)?;
        self.set_state(e.0, RESPONDING)?;
        self.answered.push(e.0);
        Ok(())
    }

    /// Records that responses up to `rsp_prod` are published: their entries are free.
    pub fn published(&mut self, rsp_prod: u32) -> Result<(), JournalError> {
        if self.answered.is_empty() {
            return Ok(());
        }
        self.mem.store_u32_release(H_RSP_PUBLISHED, rsp_prod)?;
        while let Some(i) = self.answered.pop() {
            self.set_state(i, FREE)?;
            self.free.push(i);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;

/// A queue's view of its journal (or of none: `Ledger::none`, for tests and tools that
/// keep no crash state): where the next request comes from, and the records kept as it
/// is answered.
#[derive(Debug, Default)]
pub struct Ledger<'m> {
    journal: Option<Journal<'m>>,
    backlog: std::collections::VecDeque<(Entry, BlkifRequest)>,
}

impl<'m> Ledger<'m> {
    /// No journal: a crash loses track of the requests in flight.
    pub fn none() -> Self {
        Self::default()
    }

    /// `journal`, with the requests a previous process left unanswered served first.
    pub fn new(journal: Journal<'m>, pending: Vec<(Entry, BlkifRequest)>) -> Self {
        Self {
            journal: Some(journal),
            backlog: pending.into(),
        }
    }

    /// The next request: one left by a previous process, else the ring's next (recorded
    /// before it is returned).
    pub fn next(
        &mut self,
        ring: &mut sluice_abi::blkif::BlkifBackRing<'_>,
    ) -> Result<Option<(Entry, BlkifRequest)>, crate::ring_server::QueueError> {
        if let Some(p) = self.backlog.pop_front() {
            return Ok(Some(p));
        }
        let Some(req) = ring.pop_request()? else {
            return Ok(None);
        };
        let e = match &mut self.journal {
            Some(j) => j.take(&req, ring.req_cons().wrapping_sub(1))?,
            None => Entry(u32::MAX),
        };
        Ok(Some((e, req)))
    }

    /// Requests left by a previous process and not served yet.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Before `e`'s response is written at ring index `rsp`.
    pub fn answering(&mut self, e: Entry, rsp: u32) -> Result<(), JournalError> {
        match &mut self.journal {
            Some(j) => j.answering(e, rsp),
            None => Ok(()),
        }
    }

    /// After the ring's `rsp_prod` was set to `rsp_prod`.
    pub fn published(&mut self, rsp_prod: u32) -> Result<(), JournalError> {
        match &mut self.journal {
            Some(j) => j.published(rsp_prod),
            None => Ok(()),
        }
    }
}

/// Opens a queue's journal file at `path` for a ring of `slots` entries: the one a
/// previous process left when taking over (`takeover`), a fresh one otherwise (or when
/// there is none to take over). `None` (logged): no journal for this queue.
pub fn open_file(
    path: &std::path::Path,
    slots: u32,
    takeover: bool,
    name: &str,
) -> Option<sluice_xen_sys::MappedFile> {
    let len = journal_len(slots);
    if takeover {
        match sluice_xen_sys::MappedFile::open(path, len) {
            Ok(f) => return Some(f),
            Err(e) => tracing::warn!("{name}: journal {}: {e}", path.display()),
        }
    }
    match sluice_xen_sys::MappedFile::create(path, len) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(
                "{name}: journal {}: {e}; serving without one (a crash may lose track \
                 of the requests in flight)",
                path.display()
            );
            None
        }
    }
}

/// Attaches to a queue's ring with its journal: where the previous process left off
/// (its unanswered requests first) when taking over a live ring, at the ring's start
/// otherwise.
pub fn attach<'r, 'm>(
    ring_mem: SharedMem<'r>,
    file: Option<&'m sluice_xen_sys::MappedFile>,
    takeover: bool,
    id: RingId,
    name: &str,
) -> Result<(sluice_abi::blkif::BlkifBackRing<'r>, Ledger<'m>), sluice_abi::ring::RingError> {
    use sluice_abi::blkif::BlkifBackRing;
    let ring = BlkifBackRing::resume(ring_mem)?;
    let Some(file) = file else {
        return Ok((ring, Ledger::none()));
    };
    let slots = ring.size();
    if takeover {
        match Journal::recover(file.mem(), slots, id, ring.rsp_prod_pvt()) {
            Ok((j, rec)) => {
                let ring = BlkifBackRing::attach_at(ring_mem, rec.rsp_prod, rec.req_cons)?;
                tracing::info!(
                    "{name}: journal: responses published up to {}, requests taken up to {}, \
                     {} unanswered served again",
                    rec.rsp_prod,
                    rec.req_cons,
                    rec.pending.len()
                );
                return Ok((ring, Ledger::new(j, rec.pending)));
            }
            Err(e) => tracing::warn!(
                "{name}: {e}; carrying on at the ring's rsp_prod (requests in flight at the \
                 crash may be lost or answered twice)"
            ),
        }
    }
    match Journal::create(file.mem(), slots, id, ring.rsp_prod_pvt()) {
        Ok(j) => Ok((ring, Ledger::new(j, Vec::new()))),
        Err(e) => {
            tracing::warn!("{name}: {e}; serving without a journal");
            Ok((ring, Ledger::none()))
        }
    }
}
