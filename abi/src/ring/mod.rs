//! Xen shared I/O rings (`xen/include/public/io/ring.h`), generic over the request and
//! response types, safe against a hostile peer.
//!
//! # Layout (byte-compatible with `DEFINE_RING_TYPES`)
//!
//! ```text
//! offset  0  u32 req_prod      written by the front (producer of requests)
//! offset  4  u32 req_event     written by the back: "notify me when req_prod passes this"
//! offset  8  u32 rsp_prod      written by the back (producer of responses)
//! offset 12  u32 rsp_event     written by the front
//! offset 16  u8  pvt[4]        protocol-private (netif smartpoll, tapif); zeroed by init
//! offset 20  u8  __pad[44]
//! offset 64  entries[size]     union { Req; Rsp }: stride = max(size) rounded to max(align)
//! ```
//!
//! `size` is the number of entries that fit in the area (one page or several: multi-page
//! rings use 1, 2, 4, ... pages) rounded down to a power of two, as `__RD32` does
//! ([`ring_size`]). Indices are free-running `u32`s (`RING_IDX`) that wrap; the slot of
//! index `i` is `i & (size - 1)`.
//!
//! # API (what backends and frontends code against)
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use sluice_abi::ring::{BackRing, FrontRing, RingError};
//! use sluice_abi::shared::SharedPages;
//! # fn main_() -> Result<(), RingError> {
//! # let notify_back = || {}; let notify_front = || {};
//! // Any zerocopy request/response pair; u64s keep the example short.
//! let pages = SharedPages::new(1); // or, over a grant mapping: unsafe { SharedMem::new(ptr, len) }
//! let mut front = FrontRing::<u64, u64>::init(pages.mem())?; // SHARED_RING_INIT + FRONT_RING_INIT
//! let mut back = BackRing::<u64, u64>::new(pages.mem())?; // BACK_RING_INIT: header untouched
//!
//! // Front: queue requests, publish them, notify the back only if it asked.
//! front.push_request(&7)?; // Err(RingError::Full) when no slot is free
//! if front.push_requests_and_check_notify()? {
//!     notify_back(); // e.g. an event-channel send
//! }
//! // Back: take every request, answer it, publish, notify if the front asked; sleep
//! // only when the final check (which re-arms req_event) still finds nothing.
//! while let Some(req) = back.pop_request()? {
//!     back.push_response(&(req * 2))?;
//! }
//! if back.push_responses_and_check_notify()? {
//!     notify_front();
//! }
//! assert!(!back.final_check_for_requests()?); // now it may sleep
//!
//! // Front: the mirror image.
//! assert_eq!(front.pop_response()?, Some(14));
//! assert!(!front.final_check_for_responses()?);
//! # Ok(()) }
//! # main_().unwrap();
//! # }
//! ```
//!
//! Every operation that reads an index the peer writes validates it and returns a typed
//! [`RingError`] (`RequestOverflow`, `ResponseOverflow`) instead of reading a slot that
//! was not produced; the views keep their state unchanged then, so the caller can report
//! the peer and disconnect. Index arithmetic is wrapping `u32` throughout: no overflow
//! panics, whatever the header holds. Entries are copied (never referenced) in and out
//! of shared memory through [`SharedMem`](crate::shared::SharedMem).
//!
//! # Memory ordering (each Xen barrier and its Rust equivalent)
//!
//! * `RING_PUSH_*`: `wmb(); prod = pvt;` → a `Release` store of `prod`: the entries,
//!   written before with relaxed stores, are visible to whoever `Acquire`-loads it.
//! * consuming: `rp = prod; rmb(); read entries` → an `Acquire` load of `prod` before the
//!   entry copies.
//! * `RING_PUSH_*_AND_CHECK_NOTIFY`: `wmb(); prod = new; mb(); read event` → the
//!   `Release` store, then a `SeqCst` fence, then the load of `event`.
//! * `RING_FINAL_CHECK_FOR_*`: `event = cons + 1; mb(); re-read prod` → store `event`,
//!   `SeqCst` fence, `Acquire` load of `prod`. The two `SeqCst` fences make the
//!   store-fence-load pairs on the two sides a Dekker pair: either the producer sees the
//!   new `event` (and notifies) or the consumer sees the new `prod` (and does not sleep),
//!   so no wake-up is lost.
//! * Slot reuse needs nothing more: the back reads request `i` before its `Release` of a
//!   `rsp_prod` past `i`, and the front writes a new request into that slot only after
//!   `Acquire`-loading that `rsp_prod` (and symmetrically for responses), so a slot is
//!   never written while the other side may still be reading it. The Miri run of
//!   `tests/ring_stress.rs` (`spin`) checks these orderings with weak-memory emulation.
//!
//! # Notification rule
//!
//! After publishing `old..new`, the producer notifies iff the consumer's event index lies
//! in `(old, new]`, i.e. `new - event < new - old` in wrapping `u32` arithmetic
//! ([`needs_notify`]).

mod back;
mod error;
mod front;
mod sring;
#[cfg(test)]
mod tests;

pub use self::back::BackRing;
pub use self::error::RingError;
pub use self::front::{FrontIndices, FrontRing};
pub use self::sring::{
    entry_size, needs_notify, ring_size, SringHeader, ENTRIES_OFFSET, PVT_OFFSET, REQ_EVENT_OFFSET,
    REQ_PROD_OFFSET, RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};
