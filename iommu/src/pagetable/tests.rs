use super::*;
use crate::hal::mock::{MockHal, Model};
use proptest::prelude::*;
use std::boxed::Box;
use std::collections::BTreeMap;

extern crate std;

const RW: Perm = Perm::READ.union(Perm::WRITE);
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;

fn hal() -> MockHal {
    MockHal::new(1 << 30, Model::Plain)
}

fn both(test: impl Fn(&dyn Fn(&MockHal) -> Box<dyn TableOps + '_>)) {
    test(&|h| Box::new(PageTable::<VtdFormat>::new(h, 4, 3).unwrap()));
    test(&|h| Box::new(PageTable::<AmdViFormat>::new(h, 4, 3).unwrap()));
}

/// Object-safe view of a table bound to its HAL, to run one test over both formats.
trait TableOps {
    fn map(&mut self, hal: &MockHal, iova: u64, pa: u64, len: u64, perm: Perm) -> Result<Changes>;
    fn unmap(&mut self, hal: &MockHal, iova: u64, len: u64) -> Result<Changes>;
    fn translate(&self, hal: &MockHal, iova: u64) -> Option<(u64, Perm, u8)>;
    fn release(&mut self, hal: &MockHal, t: Vec<u64>);
    fn tables(&self) -> usize;
}

impl<F: PteFormat> TableOps for PageTable<F> {
    fn map(&mut self, hal: &MockHal, iova: u64, pa: u64, len: u64, perm: Perm) -> Result<Changes> {
        PageTable::map(self, hal, iova, pa, len, perm)
    }
    fn unmap(&mut self, hal: &MockHal, iova: u64, len: u64) -> Result<Changes> {
        PageTable::unmap(self, hal, iova, len)
    }
    fn translate(&self, hal: &MockHal, iova: u64) -> Option<(u64, Perm, u8)> {
        PageTable::translate(self, hal, iova)
    }
    fn release(&mut self, hal: &MockHal, t: Vec<u64>) {
        PageTable::release(self, hal, t)
    }
    fn tables(&self) -> usize {
        self.table_count()
    }
}

#[test]
fn picks_the_largest_page_alignment_allows() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        // 4 KiB + 2 MiB + 1 GiB + 2 MiB + 4 KiB, IOVA and PA equally aligned.
        let iova = G1 - M2 - 4096;
        t.map(&h, iova, iova + (8 << 30), G1 + 2 * M2 + 8192, RW)
            .unwrap();
        assert_eq!(t.translate(&h, iova).unwrap().2, 1);
        assert_eq!(t.translate(&h, iova + 4096).unwrap().2, 2);
        assert_eq!(t.translate(&h, G1).unwrap().2, 3);
        assert_eq!(t.translate(&h, 2 * G1).unwrap().2, 2);
        assert_eq!(t.translate(&h, 2 * G1 + M2).unwrap().2, 1);
        assert_eq!(
            t.translate(&h, G1 + 12345).unwrap().0,
            G1 + 12345 + (8 << 30)
        );
        assert_eq!(t.translate(&h, 2 * G1 + M2 + 4096), None);
    });
}

#[test]
fn misaligned_physical_address_uses_small_pages() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        t.map(&h, 0, 4096, M2, Perm::READ).unwrap();
        assert_eq!(t.translate(&h, 0).unwrap(), (4096, Perm::READ, 1));
    });
}

#[test]
fn overlap_is_refused_without_changes() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        t.map(&h, M2, 0x4000_0000, M2, RW).unwrap();
        let before = h.allocated_pages();
        let err = t.map(&h, 0, 0, 4 * M2, RW).unwrap_err();
        assert_eq!(err, Error::Overlap { iova: M2 });
        assert_eq!(h.allocated_pages(), before);
        assert_eq!(t.translate(&h, 0), None);
        assert_eq!(t.translate(&h, 3 * M2), None);
    });
}

#[test]
fn bad_ranges_are_refused() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        assert!(matches!(
            t.map(&h, 1, 0, 4096, RW),
            Err(Error::Unaligned { .. })
        ));
        assert!(matches!(
            t.map(&h, 0, 0, 0, RW),
            Err(Error::Unaligned { .. })
        ));
        assert!(matches!(
            t.map(&h, 0, 0, 4095, RW),
            Err(Error::Unaligned { .. })
        ));
        assert!(matches!(
            t.map(&h, 0, 7, 4096, RW),
            Err(Error::Unaligned { .. })
        ));
        assert!(matches!(
            t.map(&h, 1 << 48, 0, 4096, RW),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            t.map(&h, u64::MAX - 4095, 0, 8192, RW),
            Err(Error::Unaligned { .. }) | Err(Error::OutOfRange { .. })
        ));
        assert_eq!(
            t.map(&h, 0, 0, 4096, Perm::empty()).unwrap_err(),
            Error::EmptyPermission
        );
    });
}

#[test]
fn partial_unmap_splits_superpages() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        t.map(&h, G1, 4 * G1, G1, RW).unwrap();
        assert_eq!(t.translate(&h, G1).unwrap().2, 3);
        // Punch one 4 KiB hole in the middle of the 1 GiB page.
        let hole = G1 + 5 * M2 + 3 * 4096;
        let c = t.unmap(&h, hole, 4096).unwrap();
        assert_eq!(c.bytes, 4096);
        assert_eq!(c.splits, 2);
        assert_eq!(t.translate(&h, hole), None);
        assert_eq!(
            t.translate(&h, hole - 4096).unwrap(),
            (4 * G1 + 5 * M2 + 2 * 4096, RW, 1)
        );
        assert_eq!(
            t.translate(&h, hole + 4096).unwrap().0,
            4 * G1 + 5 * M2 + 4 * 4096
        );
        assert_eq!(t.translate(&h, G1).unwrap().2, 2);
        assert_eq!(t.translate(&h, 2 * G1 - 1).unwrap().0, 5 * G1 - 1);
        // Mapping the hole again merges everything back into one 1 GiB page.
        let c = t
            .map(&h, hole, 4 * G1 + 5 * M2 + 3 * 4096, 4096, RW)
            .unwrap();
        assert_eq!(c.merges, 2);
        assert_eq!(c.freed.len(), 2);
        t.release(&h, c.freed);
        assert_eq!(t.translate(&h, hole).unwrap().2, 3);
        assert_eq!(t.tables(), 2);
    });
}

#[test]
fn unmapping_everything_frees_every_table_but_the_root() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        t.map(
            &h,
            0x1234_5000,
            0x10_0000_0000,
            5 * M2 + 3 * 4096,
            Perm::WRITE,
        )
        .unwrap();
        let c = t.unmap(&h, 0, 4 * G1).unwrap();
        assert_eq!(c.bytes, 5 * M2 + 3 * 4096);
        t.release(&h, c.freed);
        assert_eq!(t.tables(), 1);
        assert_eq!(h.allocated_pages(), 1);
    });
}

#[test]
fn merging_contiguous_small_pages() {
    both(|make| {
        let h = hal();
        let mut t = make(&h);
        for i in 0..512 {
            let c = t
                .map(&h, M2 + i * 4096, 6 * M2 + i * 4096, 4096, Perm::READ)
                .unwrap();
            t.release(&h, c.freed);
        }
        assert_eq!(
            t.translate(&h, M2 + 77 * 4096).unwrap(),
            (6 * M2 + 77 * 4096, Perm::READ, 2)
        );
        // Different permissions never merge.
        for i in 0..512 {
            let perm = if i == 100 { RW } else { Perm::READ };
            t.map(&h, 3 * M2 + i * 4096, 8 * M2 + i * 4096, 4096, perm)
                .unwrap();
        }
        assert_eq!(t.translate(&h, 3 * M2).unwrap().2, 1);
    });
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        page: u64,
        pages: u64,
        frame: u64,
        write: bool,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Pages in a 16 MiB window, lengths up to 2 MiB + a bit, frames 2 MiB aligned half the time.
    prop_oneof![
        (
            0u64..4096,
            1u64..600,
            0u64..64,
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(page, pages, f, aligned, write)| {
                let page = if aligned { page & !511 } else { page };
                let pages = if aligned {
                    (pages / 512 + 1) * 512
                } else {
                    pages
                };
                Op::Map {
                    page,
                    pages,
                    frame: f * 512 + if aligned { 0 } else { page % 512 },
                    write,
                }
            }),
        (0u64..4096, 1u64..1100).prop_map(|(page, pages)| Op::Unmap { page, pages }),
    ]
}

/// Runs `ops` in a 16 MiB window at `window` (page index) of a table with the given
/// geometry, against a map of pages.
fn model_check<F: PteFormat>(ops: &[Op]) {
    model_check_at::<F>(ops, 3, 3, 0);
}

fn model_check_at<F: PteFormat>(ops: &[Op], levels: u8, max_leaf: u8, window: u64) {
    let h = hal();
    let mut t = PageTable::<F>::new(&h, levels, max_leaf).unwrap();
    let ops: Vec<Op> = ops
        .iter()
        .map(|op| match *op {
            Op::Map {
                page,
                pages,
                frame,
                write,
            } => Op::Map {
                page: page + window,
                pages,
                frame,
                write,
            },
            Op::Unmap { page, pages } => Op::Unmap {
                page: page + window,
                pages,
            },
        })
        .collect();
    let ops = &ops[..];
    let mut model: BTreeMap<u64, (u64, Perm)> = BTreeMap::new();
    for op in ops {
        match *op {
            Op::Map {
                page,
                pages,
                frame,
                write,
            } => {
                let perm = if write { RW } else { Perm::READ };
                let overlap = (page..page + pages).find(|p| model.contains_key(p));
                let r = t.map(
                    &h,
                    page * 4096,
                    (1 << 32) + frame * 4096,
                    pages * 4096,
                    perm,
                );
                match overlap {
                    Some(p) => assert_eq!(r.unwrap_err(), Error::Overlap { iova: p * 4096 }),
                    None => {
                        t.release(&h, r.unwrap().freed);
                        for i in 0..pages {
                            model.insert(page + i, ((1 << 32) + (frame + i) * 4096, perm));
                        }
                    }
                }
            }
            Op::Unmap { page, pages } => {
                let c = t.unmap(&h, page * 4096, pages * 4096).unwrap();
                let mut removed = 0;
                for p in page..page + pages {
                    if model.remove(&p).is_some() {
                        removed += 4096;
                    }
                }
                assert_eq!(c.bytes, removed);
                t.release(&h, c.freed);
            }
        }
    }
    for p in 0..4096 + 1100 {
        let got = t
            .translate(&h, p * 4096 + 8)
            .map(|(pa, perm, _)| (pa - 8, perm));
        assert_eq!(got, model.get(&p).copied(), "page {p:#x}");
    }
    // Every table is reachable: allocated frames == tables in use.
    assert_eq!(h.allocated_pages(), t.table_count());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn vtd_tables_match_a_model(ops in proptest::collection::vec(op(), 1..24)) {
        model_check::<VtdFormat>(&ops);
    }
    #[test]
    fn amdvi_tables_match_a_model(ops in proptest::collection::vec(op(), 1..24)) {
        model_check::<AmdViFormat>(&ops);
    }
    /// Other geometries, and windows straddling 1 GiB / 512 GiB boundaries or ending just
    /// below the top of the address space.
    #[test]
    fn any_geometry_and_place_matches_a_model(
        ops in proptest::collection::vec(op(), 1..16),
        levels in 3u8..=6,
        max_leaf in 1u8..=3,
        place in 0usize..4,
        amd in any::<bool>(),
    ) {
        let limit_pages = if levels == 6 { u64::MAX >> 12 } else { 1u64 << (9 * u32::from(levels)) };
        let window = [0, (1 << 18) - 2000, (1 << 27) - 3000, limit_pages - 5300][place]
            .min(limit_pages - 5300);
        if amd {
            model_check_at::<AmdViFormat>(&ops, levels, max_leaf, window);
        } else {
            model_check_at::<VtdFormat>(&ops, levels, max_leaf, window);
        }
    }
}
