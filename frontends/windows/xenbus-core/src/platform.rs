//! The Windows implementation of the frontend seams (`sluice-front-seams`): what a
//! frontend core (`blkfront-core`, later `netfront-core`) runs on inside a child driver
//! of xenbus. Grants, event channels and xenstore go through the bus interface
//! ([`BusInterface`]: xenbus owns the one grant table and xenstore connection, so
//! children never collide), memory through the child's kernel layer ([`Kernel`]), so
//! everything here is host-tested over a fake bus.

use crate::iface::{self, BusInterface, EventCallback};
use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt;
use sluice_abi::shared::SharedMem;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{
    check_page_index, copy_shared, EventChannels, GrantInUse, Grants, Memory, Pages, SeamError,
    XenStore,
};

/// What the child driver's kernel layer provides (`sluice-wdm` on Windows, a fake in
/// tests).
pub trait Kernel {
    /// Zeroed, physically contiguous pages, freed on drop.
    type Pages: Pages;
    /// A data page of an I/O request (an MDL page on Windows).
    type DataPage: Copy + fmt::Debug;
    /// The bus interface from xenbus.
    type Bus: BusInterface;
    /// `count` pages.
    fn alloc_pages(&mut self, count: usize) -> Result<Self::Pages, SeamError>;
    /// The guest frame number of page `index` (already bounds-checked).
    fn frame(&self, pages: &Self::Pages, index: usize) -> u64;
    /// A data page's bytes.
    fn data(&self, page: Self::DataPage) -> SharedMem<'_>;
    /// The bus interface.
    fn bus(&self) -> &Self::Bus;
    /// The callback the bus calls for events of `queue`'s port.
    fn event_callback(&self, queue: usize) -> EventCallback;
}

/// The seams over a [`Kernel`].
pub struct WinPlatform<K: Kernel> {
    kernel: K,
    queues: BTreeMap<u32, usize>,
}

impl<K: Kernel> WinPlatform<K> {
    /// Over `kernel`.
    pub fn new(kernel: K) -> Self {
        WinPlatform {
            kernel,
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

    /// The kernel layer, mutably.
    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
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
        self.kernel.bus().grant_access(domid, frame, readonly)
    }

    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantInUse> {
        self.kernel.bus().end_access(gref)
    }
}

impl<K: Kernel> EventChannels for WinPlatform<K> {
    fn bind_unbound_port(&mut self, domid: DomId, queue: usize) -> Result<EvtchnPort, SeamError> {
        let bus = self.kernel.bus();
        let port = bus.evtchn_alloc_unbound(domid)?;
        if let Err(e) = bus.evtchn_bind(port, self.kernel.event_callback(queue)) {
            bus.evtchn_close(port);
            return Err(e);
        }
        self.queues.insert(port.0, queue);
        Ok(port)
    }

    fn notify(&mut self, port: EvtchnPort) {
        if self.queues.contains_key(&port.0) {
            self.kernel.bus().evtchn_notify(port);
        }
    }

    fn unbind(&mut self, port: EvtchnPort) {
        if self.queues.remove(&port.0).is_some() {
            self.kernel.bus().evtchn_close(port);
        }
    }
}

impl<K: Kernel> XenStore for WinPlatform<K> {
    fn read_opt(&mut self, path: &str) -> Result<Option<String>, SeamError> {
        self.kernel.bus().xs_read(0, path)
    }

    fn write_all(&mut self, writes: &[(&str, &str)]) -> Result<(), SeamError> {
        iface::write_all(self.kernel.bus(), writes)
    }
}
