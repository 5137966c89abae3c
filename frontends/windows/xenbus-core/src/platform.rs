//! The Windows implementation of the frontend seams (`sluice-front-seams`): what a
//! frontend core (`blkfront-core`, later `netfront-core`) runs on inside a child driver
//! of xenbus. Grants go through [`GrantTable`] on the grant frames in the platform
//! BAR, xenstore through [`XsClient`], event channels and memory through the kernel
//! ([`Kernel`]: the unsafe layer's pages, hypercalls and mappings), so everything here
//! is host-tested over a fake kernel.

use crate::grants::{GrantEntries, GrantTable};
use crate::xenstore::{XsClient, XsTransport};
use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{
    check_page_index, copy_shared, EventChannels, GrantInUse, Grants, Memory, Pages, SeamError,
    XenStore,
};

/// What the kernel layer provides (`sluice-wdm` on Windows, a fake in tests).
pub trait Kernel {
    /// Zeroed, physically contiguous pages, freed on drop.
    type Pages: Pages;
    /// A data page of an I/O request (an MDL page on Windows).
    type DataPage: Copy + fmt::Debug;
    /// `count` pages.
    fn alloc_pages(&mut self, count: usize) -> Result<Self::Pages, SeamError>;
    /// The guest frame number of page `index` (already bounds-checked).
    fn frame(&self, pages: &Self::Pages, index: usize) -> u64;
    /// A data page's bytes.
    fn data(&self, page: Self::DataPage) -> SharedMem<'_>;
    /// The grant entries in the BAR.
    fn grant_entries(&self) -> &dyn GrantEntries;
    /// The xenstore ring and its channel.
    fn xenstore(&mut self) -> &mut dyn XsTransport;
    /// `EVTCHNOP_alloc_unbound` for `remote`.
    fn evtchn_alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, SeamError>;
    /// `EVTCHNOP_send`.
    fn evtchn_send(&mut self, port: EvtchnPort);
    /// `EVTCHNOP_close`.
    fn evtchn_close(&mut self, port: EvtchnPort);
}

/// The seams over a [`Kernel`].
pub struct WinPlatform<K: Kernel> {
    kernel: K,
    grants: GrantTable,
    xs: XsClient,
    queues: BTreeMap<u32, usize>,
}

impl<K: Kernel> WinPlatform<K> {
    /// Over `kernel`, with a grant table of its entries.
    pub fn new(kernel: K) -> Self {
        let grants = GrantTable::new(kernel.grant_entries().count());
        WinPlatform {
            kernel,
            grants,
            xs: XsClient::new(),
            queues: BTreeMap::new(),
        }
    }

    /// The queue an event on `port` is for (the dispatcher's routing).
    pub fn queue_of(&self, port: EvtchnPort) -> Option<usize> {
        self.queues.get(&port.0).copied()
    }

    /// The kernel layer.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }
}

impl<K: Kernel> Memory for WinPlatform<K> {
    type Pages = K::Pages;
    type DataPage = K::DataPage;

    fn alloc_pages(&mut self, count: usize) -> Result<K::Pages, SeamError> {
        self.kernel.alloc_pages(count)
    }

    fn copy_in(
        &mut self,
        dst: &K::Pages,
        dst_offset: usize,
        src: K::DataPage,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        copy_shared(
            dst.mem(),
            dst_offset,
            self.kernel.data(src),
            src_offset,
            len,
        )
    }

    fn copy_out(
        &mut self,
        dst: K::DataPage,
        dst_offset: usize,
        src: &K::Pages,
        src_offset: usize,
        len: usize,
    ) -> Result<(), SeamError> {
        copy_shared(
            self.kernel.data(dst),
            dst_offset,
            src.mem(),
            src_offset,
            len,
        )
    }
}

impl<K: Kernel> Grants for WinPlatform<K> {
    fn grant_access(
        &mut self,
        domid: DomId,
        pages: &K::Pages,
        index: usize,
        readonly: bool,
    ) -> Result<GrantRef, SeamError> {
        check_page_index(pages, index)?;
        let frame = self.kernel.frame(pages, index);
        self.grants
            .grant(self.kernel.grant_entries(), domid, frame, readonly)
    }

    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantInUse> {
        self.grants.end(self.kernel.grant_entries(), gref)
    }
}

impl<K: Kernel> EventChannels for WinPlatform<K> {
    fn bind_unbound_port(&mut self, domid: DomId, queue: usize) -> Result<EvtchnPort, SeamError> {
        let port = self.kernel.evtchn_alloc_unbound(domid)?;
        self.queues.insert(port.0, queue);
        Ok(port)
    }

    fn notify(&mut self, port: EvtchnPort) {
        if self.queues.contains_key(&port.0) {
            self.kernel.evtchn_send(port);
        }
    }

    fn unbind(&mut self, port: EvtchnPort) {
        if self.queues.remove(&port.0).is_some() {
            self.kernel.evtchn_close(port);
        }
    }
}

impl<K: Kernel> XenStore for WinPlatform<K> {
    fn read_opt(&mut self, path: &str) -> Result<Option<String>, SeamError> {
        self.xs.read(self.kernel.xenstore(), path)
    }

    fn write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), SeamError> {
        self.xs.write_all(self.kernel.xenstore(), writes)
    }
}
