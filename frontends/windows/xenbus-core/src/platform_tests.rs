//! `WinPlatform` (the Windows seams) over a fake kernel: grants land in the grant
//! entries with the page's frame, bounds are refused whole, ports route to queues,
//! xenstore goes through the ring.

use crate::fake::Entries;
use crate::grants::{GrantEntries, GTF_PERMIT_ACCESS};
use crate::platform::{Kernel, WinPlatform};
use crate::xenstore::XsTransport;
use crate::xenstore_tests::{FakeXs, Mode};
use alloc::vec::Vec;
use sluice_abi::shared::{SharedMem, SharedPages};
use sluice_abi::types::{DomId, EvtchnPort};
use sluice_front_seams::{EventChannels, Grants, Memory, Pages, SeamError, XenStore};

struct FakePages {
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

struct FakeKernel {
    entries: Entries,
    xs: FakeXs,
    next_frame: u64,
    data: Vec<SharedPages>,
    next_port: u32,
    sent: Vec<u32>,
    closed: Vec<u32>,
}

impl Kernel for FakeKernel {
    type Pages = FakePages;
    type DataPage = usize;
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
    fn grant_entries(&self) -> &dyn GrantEntries {
        &self.entries
    }
    fn xenstore(&mut self) -> &mut dyn XsTransport {
        &mut self.xs
    }
    fn evtchn_alloc_unbound(&mut self, _remote: DomId) -> Result<EvtchnPort, SeamError> {
        self.next_port += 1;
        Ok(EvtchnPort(self.next_port))
    }
    fn evtchn_send(&mut self, port: EvtchnPort) {
        self.sent.push(port.0);
    }
    fn evtchn_close(&mut self, port: EvtchnPort) {
        self.closed.push(port.0);
    }
}

fn platform() -> WinPlatform<FakeKernel> {
    WinPlatform::new(FakeKernel {
        entries: Entries::new(64),
        xs: FakeXs::new(Mode::Good),
        next_frame: 0x1000,
        data: (0..2).map(|_| SharedPages::new(1)).collect(),
        next_port: 10,
        sent: Vec::new(),
        closed: Vec::new(),
    })
}

#[test]
fn grants_carry_the_page_frame_and_end() {
    let mut p = platform();
    let ring = p.alloc_pages(2).unwrap();
    let g = p.grant_access(DomId(0), &ring, 1, false).unwrap();
    let e = &p.kernel().entries.0[g.0 as usize];
    assert_eq!(
        (e.0.get(), e.1.get(), e.2.get()),
        (GTF_PERMIT_ACCESS, 0, 0x1001)
    );
    assert!(matches!(
        p.grant_access(DomId(0), &ring, 2, false),
        Err(SeamError::OutOfBounds { .. })
    ));
    p.end_access(g).unwrap();
    assert_eq!(p.kernel().entries.0[g.0 as usize].0.get(), 0);
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
    assert_eq!(p.kernel().sent, [b.0], "no notify on a closed port");
    assert_eq!(p.kernel().closed, [b.0], "closed once");
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
