//! The seam to the guest kernel: pages, grants, event channels and xenstore.
//!
//! `sluice-blkfront.ko` implements [`Platform`] over Linux's Xen APIs; the host tests
//! implement it over a fake backend (`tests/fake`).

use core::fmt;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;

/// Why a platform operation failed (the kernel's errno, or the fake's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// Out of memory, grant references or event channels.
    NoResources,
    /// xenstore refused or failed an operation (errno).
    Xenstore(i32),
    /// Another failure, with the errno the platform saw.
    Errno(i32),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::NoResources => f.write_str("out of memory, grants or event channels"),
            PlatformError::Xenstore(e) => write!(f, "xenstore error {e}"),
            PlatformError::Errno(e) => write!(f, "error {e}"),
        }
    }
}

/// The backend still has a grant mapped: the page must not be reused or freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantInUse(pub GrantRef);

/// What the frontend core needs from the guest kernel.
///
/// Pages are 4 KiB guest pages owned by the frontend (ring, indirect and bounce pages)
/// or by the block layer (the caller's data pages, only ever copied, never granted).
pub trait Platform {
    /// A handle to one 4 KiB guest page.
    type Page: Copy + fmt::Debug;

    /// `count` zeroed, physically contiguous pages (a multi-page ring is mapped by the
    /// backend as one contiguous area); returns the first.
    fn alloc_pages(&mut self, count: usize) -> Result<Self::Page, PlatformError>;
    /// Frees pages from [`alloc_pages`](Self::alloc_pages). The core calls it only after
    /// it dropped every [`SharedMem`] it got for them and ended their grants.
    fn free_pages(&mut self, first: Self::Page, count: usize);
    /// Page `index` of an allocation starting at `first`.
    fn nth_page(&self, first: Self::Page, index: usize) -> Self::Page;
    /// The bytes of `count` contiguous frontend-owned pages. Valid until
    /// [`free_pages`](Self::free_pages) of them, which the core calls only after it has
    /// stopped using the handle.
    fn mem(&self, first: Self::Page, count: usize) -> SharedMem<'static>;
    /// Copies `len` bytes between pages (data in and out of the bounce pages).
    fn copy(
        &mut self,
        dst: Self::Page,
        dst_offset: usize,
        src: Self::Page,
        src_offset: usize,
        len: usize,
    );

    /// Grants `domid` access to `page` (`gnttab_grant_foreign_access`).
    fn grant(
        &mut self,
        domid: DomId,
        page: Self::Page,
        readonly: bool,
    ) -> Result<GrantRef, PlatformError>;
    /// Ends a grant (`gnttab_end_foreign_access_ref`); fails while the backend still
    /// maps it, and the grant stays valid then.
    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantInUse>;

    /// A new event channel the backend `domid` can bind to
    /// (`xenbus_alloc_evtchn`); its interrupt delivers to the driver, which calls
    /// [`Frontend::handle_event`](crate::Frontend::handle_event).
    fn evtchn_alloc(&mut self, domid: DomId, queue: usize) -> Result<EvtchnPort, PlatformError>;
    /// Signals the backend.
    fn evtchn_notify(&mut self, port: EvtchnPort);
    /// Closes a channel from [`evtchn_alloc`](Self::evtchn_alloc).
    fn evtchn_close(&mut self, port: EvtchnPort);

    /// Reads a xenstore node; `Ok(None)` when it does not exist.
    fn xs_read(&mut self, path: &str) -> Result<Option<alloc::string::String>, PlatformError>;
    /// Writes all `(path, value)` pairs in one xenstore transaction (the platform retries
    /// it on `EAGAIN`).
    fn xs_write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), PlatformError>;

    /// Publishes our xenbus state (`<nodename>/state`). A kernel platform must do it
    /// through its xenbus layer (Linux: `xenbus_switch_state`), which also tracks the
    /// state: Linux's module loader waits up to 300 s for frontends it believes still
    /// connecting, and decides at unbind whether to close the device from it.
    fn switch_state(&mut self, nodename: &str, state: XenbusState) -> Result<(), PlatformError> {
        let path = alloc::format!("{nodename}/state");
        self.xs_write_all(&[(&path, state.xenstore_value())])
    }
}
