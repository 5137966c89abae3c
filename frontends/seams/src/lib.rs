//! The seams between a Xen frontend core (`blkfront-core`, later `netfront-core`) and
//! the guest kernel under it, named as on the dom0 side (`sluice_dom0`):
//!
//! | seam | frontend (this crate) | backend (`sluice_dom0`) |
//! |---|---|---|
//! | memory | [`Memory`]: owned [`Pages`], freed on drop | mapped grants (`GrantMap`) |
//! | grants | [`Grants`]: grant and end access | `GrantMapper`: map and copy |
//! | event channels | [`EventChannels`]: `bind_unbound_port`, `notify`, `unbind` | `EventChannels`: `bind_interdomain`, `notify`, `unbind` |
//! | xenstore | [`XenStore`]: `read_opt`, `write_all`, `switch_state` | `XenStore` |
//!
//! A [`Platform`] is all four. Implementations: the Linux kernel crate
//! (`frontends/linux/kernel`), the fake Xen world (`sluice_dom0`, feature `fake`), and
//! this crate's own fake world for the cores' host tests ([`fake`], feature `fake`).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "fake")]
pub mod fake;

use alloc::string::String;
use core::fmt;
use sluice_abi::shared::{SharedMem, XEN_PAGE_SIZE};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;

/// Why a seam operation failed (the kernel's errno, or the fake's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeamError {
    /// Out of memory, grant references or event channels.
    NoResources,
    /// xenstore refused or failed an operation (errno).
    Xenstore(i32),
    /// Another failure, with the errno the kernel gave.
    Errno(i32),
    /// An access outside the pages it names (`offset + len > size`): refused, never
    /// cut short.
    OutOfBounds {
        /// Byte offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
        /// Bytes there are.
        size: usize,
    },
}

impl fmt::Display for SeamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeamError::NoResources => f.write_str("out of memory, grants or event channels"),
            SeamError::Xenstore(e) => write!(f, "xenstore error {e}"),
            SeamError::Errno(e) => write!(f, "error {e}"),
            SeamError::OutOfBounds { offset, len, size } => {
                write!(f, "{len} bytes at {offset} are outside {size} bytes")
            }
        }
    }
}

/// Checks `offset + len <= size` without overflow.
pub fn check_bounds(offset: usize, len: usize, size: usize) -> Result<(), SeamError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(SeamError::OutOfBounds { offset, len, size }),
    }
}

/// Copies `len` bytes from `src` at `src_offset` to `dst` at `dst_offset`, both shared
/// with a peer (atomic accesses: the other end may write a granted page at any time),
/// through a small stack buffer; both ranges are bounds-checked first, so nothing is
/// cut short. The one copy every implementation of the seams uses.
pub fn copy_shared(
    dst: SharedMem<'_>,
    dst_offset: usize,
    src: SharedMem<'_>,
    src_offset: usize,
    len: usize,
) -> Result<(), SeamError> {
    check_bounds(src_offset, len, src.len())?;
    check_bounds(dst_offset, len, dst.len())?;
    let mut buf = [0u8; 512];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        let oob = SeamError::OutOfBounds {
            offset: done,
            len: n,
            size: len,
        };
        src.read_bytes(src_offset + done, &mut buf[..n])
            .map_err(|_| oob)?;
        dst.write_bytes(dst_offset + done, &buf[..n])
            .map_err(|_| oob)?;
        done += n;
    }
    Ok(())
}

/// The backend still has a grant mapped: the page must not be reused or freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantInUse(pub GrantRef);

/// Zeroed, physically contiguous 4 KiB pages owned by the frontend (rings, bounce and
/// indirect pages). Implementations free them when the handle is dropped; a page a
/// peer may still map is given to [`Memory::leak`] instead.
pub trait Pages: fmt::Debug {
    /// How many pages.
    fn count(&self) -> usize;
    /// Their bytes (`count() * 4096`), borrowed from the handle: no view outlives the
    /// pages. Peers write them concurrently, which [`SharedMem`] is made for.
    fn mem(&self) -> SharedMem<'_>;
    /// `len` bytes at `offset`, or [`SeamError::OutOfBounds`].
    fn slice(&self, offset: usize, len: usize) -> Result<SharedMem<'_>, SeamError> {
        let mem = self.mem();
        check_bounds(offset, len, mem.len())?;
        mem.slice(offset, len).map_err(|_| SeamError::OutOfBounds {
            offset,
            len,
            size: mem.len(),
        })
    }
}

/// Guest memory as a frontend core sees it.
pub trait Memory {
    /// Pages the frontend owns, freed on drop.
    type Pages: Pages;
    /// A page the frontend does not own (a block-layer data page): only copied to and
    /// from, never granted. The kernel guarantees it stays valid while its I/O is
    /// outstanding (the core touches it only then).
    type DataPage: Copy + fmt::Debug;

    /// `count` zeroed, physically contiguous pages (a multi-page ring is mapped by the
    /// backend as one contiguous area).
    fn alloc_pages(&mut self, count: usize) -> Result<Self::Pages, SeamError>;
    /// Copies `len` bytes of `src` at `src_offset` into `dst` at `dst_offset`. Either
    /// range outside its page(s) is [`SeamError::OutOfBounds`] and nothing is copied.
    fn copy_in(
        &mut self,
        dst: &Self::Pages,
        dst_offset: usize,
        src: Self::DataPage,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError>;
    /// Copies `len` bytes of `src` at `src_offset` out to `dst` at `dst_offset`, with
    /// the same bounds rule.
    fn copy_out(
        &mut self,
        dst: Self::DataPage,
        dst_offset: usize,
        src: &Self::Pages,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError>;
    /// Gives up pages for good: a backend still maps them, so they are never freed or
    /// reused (Linux's blkfront leaks them the same way).
    fn leak(&mut self, pages: Self::Pages) {
        core::mem::forget(pages);
    }
}

/// The frontend half of the grant seam: lets a backend domain map our pages
/// (`gnttab_grant_foreign_access`); its backend half is `sluice_dom0::GrantMapper`.
pub trait Grants: Memory {
    /// Grants `domid` access to page `index` of `pages`; an index past the pages is
    /// [`SeamError::OutOfBounds`].
    fn grant_access(
        &mut self,
        domid: DomId,
        pages: &Self::Pages,
        index: usize,
        readonly: bool,
    ) -> Result<GrantRef, SeamError>;
    /// Ends a grant (`gnttab_try_end_foreign_access`); fails while the backend still
    /// maps it, and the grant stays valid then.
    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantInUse>;
}

/// Checks a page index for [`Grants::grant_access`].
pub fn check_page_index<P: Pages + ?Sized>(pages: &P, index: usize) -> Result<(), SeamError> {
    if index < pages.count() {
        Ok(())
    } else {
        Err(SeamError::OutOfBounds {
            offset: index.saturating_mul(XEN_PAGE_SIZE),
            len: XEN_PAGE_SIZE,
            size: pages.count() * XEN_PAGE_SIZE,
        })
    }
}

/// Event channels as a frontend uses them.
pub trait EventChannels {
    /// A new channel the backend `domid` can bind to (`xenbus_alloc_evtchn`); its
    /// events reach the driver, which hands them to the core as `queue`'s.
    fn bind_unbound_port(&mut self, domid: DomId, queue: usize) -> Result<EvtchnPort, SeamError>;
    /// Signals the backend.
    fn notify(&mut self, port: EvtchnPort);
    /// Closes a channel from [`bind_unbound_port`](Self::bind_unbound_port).
    fn unbind(&mut self, port: EvtchnPort);
}

/// Xenstore as a frontend uses it.
pub trait XenStore {
    /// Reads a node; `Ok(None)` when it does not exist.
    fn read_opt(&mut self, path: &str) -> Result<Option<String>, SeamError>;
    /// Writes all `(path, value)` pairs in one transaction (retried on `EAGAIN`).
    fn write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), SeamError>;
    /// Publishes our xenbus state (`<nodename>/state`). A kernel must do it through its
    /// xenbus layer (Linux: `xenbus_switch_state`), which also tracks the state: Linux's
    /// module loader waits up to 300 s for frontends it believes still connecting, and
    /// decides at unbind whether to close the device from it.
    fn switch_state(&mut self, nodename: &str, state: XenbusState) -> Result<(), SeamError> {
        let path = alloc::format!("{nodename}/state");
        self.write_all(&[(&path, state.xenstore_value())])
    }
}

/// Everything a frontend core needs from the guest kernel.
pub trait Platform: Grants + EventChannels + XenStore {}

impl<T: Grants + EventChannels + XenStore> Platform for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_errors_not_truncation() {
        assert_eq!(check_bounds(4000, 96, 4096), Ok(()));
        assert_eq!(
            check_bounds(4000, 97, 4096),
            Err(SeamError::OutOfBounds {
                offset: 4000,
                len: 97,
                size: 4096
            })
        );
        assert!(check_bounds(usize::MAX, 2, 4096).is_err(), "no overflow");
    }
}
