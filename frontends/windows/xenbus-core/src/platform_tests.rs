//! `WinPlatform` (the Windows seams) over a fake kernel: grants land in the grant
//! entries with the page's frame, bounds are refused whole, ports route to queues,
//! xenstore goes through the ring, all through the bus interface.

use crate::bus::ChildInfo;
use crate::fake::{FakeChild, World};
use crate::grants::{Owner, GTF_PERMIT_ACCESS};
use crate::iface::EventCallback;
use crate::platform::{Kernel, WinPlatform};
use alloc::format;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use sluice_abi::shared::{SharedMem, SharedPages};
use sluice_abi::types::DomId;
use sluice_front_seams::{EventChannels, Grants, Memory, Pages, SeamError, XenStore};

pub(crate) struct FakePages {
    buf: SharedPages,
    first_frame: u64,
}

impl core::fmt::Debug for FakePages {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FakePages({})", self.first_frame)
    }
}

impl Pages for FakePages {
    fn count(&self) -> usize {
        self.buf.pages()
    }
    fn mem(&self) -> SharedMem<'_> {
        self.buf.mem()
    }
}

pub(crate) struct FakeKernel {
    pub(crate) bus: FakeChild,
    pub(crate) next_frame: u64,
    pub(crate) data: Vec<SharedPages>,
}

impl Kernel for FakeKernel {
    type Pages = FakePages;
    type DataPage = usize;
    type Bus = FakeChild;
    fn alloc_pages(&mut self, count: usize) -> Result<FakePages, SeamError> {
        let p = FakePages {
            buf: SharedPages::new(count),
            first_frame: self.next_frame,
        };
        self.next_frame += count as u64;
        Ok(p)
    }
    fn frame(&self, pages: &FakePages, index: usize) -> u64 {
        pages.first_frame + index as u64
    }
    fn data(&self, page: usize) -> SharedMem<'_> {
        self.data[page].mem()
    }
    fn bus(&self) -> &FakeChild {
        &self.bus
    }
    fn event_callback(&self, queue: usize) -> EventCallback {
        EventCallback {
            func: record_event,
            ctx: 1000 + queue,
        }
    }
}

/// Events delivered to callbacks: (ctx, port).
pub(crate) static EVENTS: std::sync::Mutex<Vec<(usize, u32)>> = std::sync::Mutex::new(Vec::new());

pub(crate) extern "C" fn record_event(ctx: usize, port: u32) {
    EVENTS.lock().unwrap().push((ctx, port));
}

pub(crate) fn child(world: &Rc<RefCell<World>>, owner: Owner, id: u32) -> FakeChild {
    child_of(world, owner, id, DomId(0))
}

/// A child whose backend is in domain `domid`.
pub(crate) fn child_of(
    world: &Rc<RefCell<World>>,
    owner: Owner,
    id: u32,
    domid: DomId,
) -> FakeChild {
    FakeChild {
        world: world.clone(),
        owner,
        info: ChildInfo {
            frontend: format!("device/vbd/{id}"),
            backend: format!("/local/domain/{}/backend/vbd/5/{id}", domid.0),
            domid,
        },
    }
}

fn platform() -> WinPlatform<FakeKernel> {
    let world = World::new(64, 64);
    WinPlatform::new(FakeKernel {
        bus: child(&world, 1, 768),
        next_frame: 0x1000,
        data: (0..2).map(|_| SharedPages::new(1)).collect(),
    })
}

#[test]
fn grants_carry_the_page_frame_and_end() {
    let mut p = platform();
    let ring = p.alloc_pages(2).unwrap();
    let g = p.grant_access(DomId(0), &ring, 1, false).unwrap();
    let w = p.kernel().bus.world.borrow();
    let e = &w.hw.entries.0[g.0 as usize];
    assert_eq!(
        (e.0.get(), e.1.get(), e.2.get()),
        (GTF_PERMIT_ACCESS, 0, 0x1001)
    );
    drop(w);
    assert!(matches!(
        p.grant_access(DomId(0), &ring, 2, false),
        Err(SeamError::OutOfBounds { .. })
    ));
    p.end_access(g).unwrap();
    assert_eq!(
        p.kernel().bus.world.borrow().hw.entries.0[g.0 as usize]
            .0
            .get(),
        0
    );
}

#[test]
fn copies_are_bounds_checked_whole() {
    let mut p = platform();
    let bounce = p.alloc_pages(1).unwrap();
    p.kernel().data[0]
        .mem()
        .write_bytes(100, b"sluice")
        .unwrap();
    p.copy_in(&bounce, 4000, 0, 100, 6).unwrap();
    let mut b = [0u8; 6];
    bounce.mem().read_bytes(4000, &mut b).unwrap();
    assert_eq!(&b, b"sluice");
    assert!(
        p.copy_in(&bounce, 4095, 0, 0, 2).is_err(),
        "past the bounce page"
    );
    assert!(
        p.copy_out(1, 4090, &bounce, 0, 7).is_err(),
        "past the data page"
    );
    p.copy_out(1, 0, &bounce, 4000, 6).unwrap();
    p.kernel().data[1].mem().read_bytes(0, &mut b).unwrap();
    assert_eq!(&b, b"sluice");
}

#[test]
fn ports_route_to_queues_and_close_once() {
    let mut p = platform();
    let a = p.bind_unbound_port(DomId(0), 0).unwrap();
    let b = p.bind_unbound_port(DomId(0), 3).unwrap();
    assert_eq!((p.queue_of(a), p.queue_of(b)), (Some(0), Some(3)));
    p.notify(b);
    p.unbind(b);
    p.unbind(b);
    p.notify(b);
    let w = p.kernel().bus.world.borrow();
    assert_eq!(*w.hw.sent.borrow(), [b.0], "no notify on a closed port");
    assert_eq!(*w.hw.closed.borrow(), [b.0], "closed once");
    // The bus routes a's events to queue 0's callback; b's go nowhere now.
    assert!(w.fire_port(a.0));
    assert!(!w.fire_port(b.0));
    drop(w);
    assert!(EVENTS.lock().unwrap().contains(&(1000, a.0)));
    assert_eq!(p.queue_of(b), None);
}

#[test]
fn xenstore_goes_through_the_ring() {
    let mut p = platform();
    p.write_all(&[
        ("device/vbd/768/ring-ref", "8"),
        ("device/vbd/768/event-channel", "11"),
    ])
    .unwrap();
    assert_eq!(
        p.read_opt("device/vbd/768/ring-ref").unwrap().as_deref(),
        Some("8")
    );
    assert_eq!(p.read_opt("device/vbd/768/nothing").unwrap(), None);
}
