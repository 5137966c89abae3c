//! Device memory (a BAR) in the nested page table: a 1 GiB BAR whose guest and host
//! addresses are 2 MiB aligned is 512 uncached 2 MiB leaves in one new table; misaligned
//! ranges fall back to 4 KiB leaves; nothing is mapped over RAM or over another mapping;
//! a BAR moved or unmapped leaves nothing behind; every frame comes back at death.

use super::*;
use crate::domain::{MmioCost, LARGE};

const GIB: u64 = 1 << 30;
const PAGES_1G: u64 = GIB / 4096;
/// A host BAR where SeaBIOS puts a 1 GiB 64-bit BAR on q35 (above 4 GiB).
const HOST: u64 = 0x80_0000_0000;

fn map(m: &mut Machine, gpa: u64, hpa: u64, pages: u64) -> Option<MmioCost> {
    m.doms[0]
        .as_mut()
        .unwrap()
        .map_mmio(&mut m.fa, gpa, hpa, pages)
}

fn unmap(m: &mut Machine, gpa: u64, pages: u64) {
    m.doms[0]
        .as_mut()
        .unwrap()
        .unmap_mmio(&mut m.fa, gpa, pages)
}

/// The host address at `off` of a range mapped at `gpa`, and whether a 2 MiB leaf holds it.
fn at(m: &Machine, gpa: u64) -> Option<(u64, bool)> {
    m.d(0).mmio_at(gpa).map(|(h, l)| (h.0, l))
}

fn samples() -> [u64; 6] {
    [0, 0x123, LARGE - 8, GIB / 2 + 0x4567, GIB - 4096, GIB - 1]
}

#[test]
fn a_1gib_bar_is_512_large_leaves_in_one_table_frame() {
    let mut m = machine(1);
    let g = 16 * GIB;
    let before = m.fa.handed_out;
    let cost = map(&mut m, g, HOST, PAGES_1G).unwrap();
    assert_eq!(
        cost,
        MmioCost {
            large: 512,
            small: 0,
            tables: 1
        }
    );
    assert_eq!(m.fa.handed_out - before, 1);
    for off in samples() {
        assert_eq!(at(&m, g + off), Some((HOST + off, true)), "offset {off:#x}");
    }
    assert_eq!(at(&m, g - 1), None);
    assert_eq!(at(&m, g + GIB), None);
    // Nothing over it (overlapping by one 2 MiB leaf, or by its last page), nothing
    // over RAM, nothing at an unaligned address; none of those allocates anything.
    let mark = m.fa.handed_out;
    assert!(map(&mut m, g + GIB - LARGE, HOST, 1024).is_none());
    assert!(map(&mut m, g + GIB - 4096, HOST, 1).is_none());
    assert!(map(&mut m, g - 4096, HOST, 2).is_none());
    assert!(map(&mut m, 0, HOST, 1).is_none());
    assert!(map(&mut m, 4 * GIB + 8, HOST, 1).is_none());
    assert!(map(&mut m, 4 * GIB, HOST + 8, 1).is_none());
    assert!(map(&mut m, !0xFFFu64, HOST, 2).is_none());
    assert_eq!(m.fa.handed_out, mark);
    for off in samples() {
        assert_eq!(at(&m, g + off), Some((HOST + off, true)));
    }
    // Unmapped whole: nothing left; the table stays until death, then every frame
    // comes back.
    unmap(&mut m, g, PAGES_1G);
    for off in samples() {
        assert_eq!(at(&m, g + off), None);
    }
    assert_eq!(m.fa.handed_out, mark);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
    assert_eq!(m.fa.bad_frees, 0);
}

#[test]
fn a_moved_bar_maps_at_its_new_place_only() {
    let mut m = machine(1);
    let (a, b) = (16 * GIB, GIB);
    map(&mut m, a, HOST, PAGES_1G).unwrap();
    unmap(&mut m, a, PAGES_1G);
    let cost = map(&mut m, b, HOST, PAGES_1G).unwrap();
    assert_eq!((cost.large, cost.small, cost.tables), (512, 0, 1));
    for off in samples() {
        assert_eq!(at(&m, a + off), None);
        assert_eq!(at(&m, b + off), Some((HOST + off, true)));
    }
    // Back at the first place: its table is reused, no frame allocated.
    unmap(&mut m, b, PAGES_1G);
    let cost = map(&mut m, a, HOST, PAGES_1G).unwrap();
    assert_eq!((cost.large, cost.tables), (512, 0));
    assert_eq!(at(&m, b), None);
    assert_eq!(at(&m, a + GIB - 1), Some((HOST + GIB - 1, true)));
    unmap(&mut m, a, PAGES_1G);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
}

#[test]
fn misaligned_ranges_use_4k_leaves_with_the_same_translations() {
    let mut m = machine(1);
    // Host 4 KiB off a 2 MiB boundary: no 2 MiB leaf can map it.
    let g = 4 * GIB;
    let cost = map(&mut m, g, HOST + 4096, 1024).unwrap();
    assert_eq!((cost.large, cost.small), (0, 1024));
    assert_eq!(cost.tables, 3); // a page directory and two page tables
    for p in [0u64, 1, 511, 512, 1023] {
        assert_eq!(
            at(&m, g + p * 4096 + 5),
            Some((HOST + 4096 + p * 4096 + 5, false))
        );
    }
    // One page before a 2 MiB boundary: a 4 KiB leaf, one 2 MiB leaf, a 4 KiB leaf.
    let g2 = 8 * GIB - 4096;
    let cost = map(&mut m, g2, HOST - 4096, 514).unwrap();
    assert_eq!((cost.large, cost.small), (1, 2));
    assert_eq!(at(&m, g2), Some((HOST - 4096, false)));
    assert_eq!(at(&m, g2 + 4096), Some((HOST, true)));
    assert_eq!(at(&m, g2 + 4096 + LARGE), Some((HOST + LARGE, false)));
    unmap(&mut m, g, 1024);
    unmap(&mut m, g2, 514);
    assert_eq!(at(&m, g), None);
    assert_eq!(at(&m, g2 + 4096), None);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
}

#[test]
fn a_partial_unmap_of_a_large_leaf_splits_it_and_keeps_the_rest() {
    let mut m = machine(1);
    let g = 4 * GIB;
    map(&mut m, g, HOST, 512).unwrap();
    assert_eq!(at(&m, g), Some((HOST, true)));
    unmap(&mut m, g + 7 * 4096, 1);
    assert_eq!(at(&m, g + 7 * 4096), None);
    for p in [0u64, 6, 8, 511] {
        assert_eq!(at(&m, g + p * 4096), Some((HOST + p * 4096, false)));
    }
    unmap(&mut m, g, 512);
    assert_eq!(at(&m, g), None);
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
}

#[test]
fn without_a_frame_for_its_table_nothing_is_mapped_and_nothing_kept() {
    let mut m = machine(1);
    let mut held = Vec::new();
    while let Some(f) = m.fa.alloc() {
        held.push(f);
    }
    let mark = m.fa.handed_out;
    assert!(map(&mut m, 16 * GIB, HOST, PAGES_1G).is_none());
    assert!(map(&mut m, 16 * GIB, HOST + 4096, 4).is_none());
    assert_eq!(m.fa.handed_out, mark);
    assert_eq!(at(&m, 16 * GIB), None);
    for f in held {
        m.fa.free(f);
    }
    m.kill(0);
    assert_eq!(m.fa.handed_out, m.base);
}
