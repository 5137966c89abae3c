//! The hypervisor's own `arch/phys.rs` (compiled here as `crate::real_phys`, the image
//! at `crate::boot::IMAGE`) refuses the image through every safe accessor: each panics
//! on its check, before it dereferences the address (so nothing is touched here).

use crate::boot::IMAGE;
use crate::real_phys as p;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Addresses (and lengths) inside or across the image: its first and last words, a
/// range straddling each end, one covering it all.
fn hits() -> [(u64, usize); 5] {
    let (s, e) = IMAGE;
    [
        (s, 8),
        (e - 8, 8),
        (s - 8, 16),
        (e - 8, 16),
        (s - 4096, (e - s) as usize + 8192),
    ]
}

fn refused(what: &str, pa: u64, f: impl FnOnce()) {
    let r = catch_unwind(AssertUnwindSafe(f));
    assert!(r.is_err(), "{what} at {pa:#x} reached the hypervisor image");
}

#[test]
fn every_safe_accessor_refuses_the_hypervisor_image() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(std::boxed::Box::new(|_| {}));
    let mut n = 0;
    for (pa, len) in hits() {
        let mut buf = std::vec![0u8; len];
        assert!(!p::mapped(pa, len as u64));
        refused("read", pa, || p::read(pa, &mut buf));
        refused("write", pa, || p::write(pa, &buf));
        refused("zero", pa, || p::zero(pa, len));
        refused("fill", pa, || p::fill(pa, len, 0xAA));
        refused("flush_cache", pa, || p::flush_cache(pa, len));
        // The word-sized accessors, at each aligned word the range touches in the image.
        let w = pa.max(IMAGE.0) & !7;
        refused("read_u64", w, || {
            p::read_u64(w);
        });
        refused("write_u64", w, || p::write_u64(w, 1));
        refused("fetch_or_u64", w, || {
            p::fetch_or_u64(w, 1);
        });
        refused("fetch_and_u64", w, || {
            p::fetch_and_u64(w, 1);
        });
        refused("cmpxchg_u32", w, || {
            let _ = p::cmpxchg_u32(w, 0, 1);
        });
        refused("mmio_read_u32", w, || {
            p::mmio_read_u32(w);
        });
        refused("mmio_write_u32", w, || p::mmio_write_u32(w, 1));
        refused("mmio_read_u64", w, || {
            p::mmio_read_u64(w);
        });
        refused("mmio_write_u64", w, || p::mmio_write_u64(w, 1));
        refused("mmio_read_u8", w, || {
            p::mmio_read_u8(w);
        });
        refused("mmio_write_u8", w, || p::mmio_write_u8(w, 1));
        refused("mmio_read_u16", w, || {
            p::mmio_read_u16(w);
        });
        refused("mmio_write_u16", w, || p::mmio_write_u16(w, 1));
        n += 1;
    }
    std::panic::set_hook(prev);
    assert_eq!(n, 5);
    // The bounds are exact: the frames either side are accepted (only `mapped`, which
    // touches nothing, is asked), as is the rest of the identity map; past 4 GiB not.
    assert!(p::mapped(IMAGE.0 - 4096, 4096));
    assert!(p::mapped(IMAGE.1, 4096));
    assert!(p::mapped(0x1000, 8));
    assert!(!p::mapped((4 << 30) - 8, 16));
    assert!(!p::mapped(u64::MAX - 4, 8));
}
