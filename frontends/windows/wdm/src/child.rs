//! The kernel layer `WinPlatform` runs on in a xenbus child driver (xenvbd, xennet):
//! pool pages, MDL data pages, the bus interface, and the adapter's event callback
//! (storport's or ndis's trampoline, the only thing that differs between the drivers).

use crate::busif::BusHandle;
use crate::storport::{BufPage, PoolPages};
use alloc::sync::Arc;
use sluice_abi::shared::SharedMem;
use sluice_front_seams::SeamError;
use sluice_xenbus_core::iface::EventCallback;
use sluice_xenbus_core::platform::Kernel;

/// One adapter's kernel layer: its bus interface and the callback the bus calls for
/// every queue's port (the adapter's trampoline demultiplexes by port).
pub struct ChildKernel {
    bus: Arc<BusHandle>,
    callback: EventCallback,
}

impl ChildKernel {
    /// Over `bus`, with `callback` for every queue (e.g. `storport::event_callback(me)`).
    pub fn new(bus: Arc<BusHandle>, callback: EventCallback) -> Self {
        ChildKernel { bus, callback }
    }
}

impl Kernel for ChildKernel {
    type Pages = PoolPages;
    type DataPage = BufPage;
    type Bus = BusHandle;
    fn alloc_pages(&mut self, count: usize) -> Result<PoolPages, SeamError> {
        PoolPages::alloc(count).ok_or(SeamError::NoResources)
    }
    fn frame(&self, pages: &PoolPages, index: usize) -> u64 {
        pages.frame(index)
    }
    fn data(&self, page: BufPage) -> SharedMem<'_> {
        page.mem()
    }
    fn bus(&self) -> &BusHandle {
        &self.bus
    }
    fn event_callback(&self, _queue: usize) -> EventCallback {
        self.callback
    }
}
