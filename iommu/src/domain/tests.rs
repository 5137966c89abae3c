//! The vendor-neutral API against a model, over both drivers on the mock: random
//! sequences of create/destroy/attach/detach/map/unmap give the model's results and
//! translations, and tearing everything down returns every frame.

extern crate std;

use crate::amdvi::{AmdVi, AmdViConfig};
use crate::hal::mock::{MockHal, Model};
use crate::vtd::{Vtd, VtdConfig};
use crate::{Bdf, Coverage, Error, Iommu, IommuHw, Perm};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

const DEVICES: [Bdf; 4] = [
    Bdf::new(0, 4, 0),
    Bdf::new(0, 5, 0),
    Bdf::new(0, 6, 0),
    Bdf::new(1, 0, 0),
];

fn coverage() -> Coverage {
    // 00:04.0 ..= 00:06.0; 01:00.0 is not behind the unit.
    Coverage {
        segment: 0,
        all: false,
        ranges: alloc::vec![(0x20, 0x30)],
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create,
    Destroy(usize),
    Attach(usize, usize),
    Detach(usize),
    Map {
        dom: usize,
        page: u64,
        pages: u64,
        frame: u64,
        write: bool,
    },
    Unmap {
        dom: usize,
        page: u64,
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Create),
        1 => (0usize..4).prop_map(Op::Destroy),
        2 => (0usize..4, 0usize..4).prop_map(|(d, v)| Op::Attach(d, v)),
        1 => (0usize..4).prop_map(Op::Detach),
        4 => (0usize..4, 0u64..2048, 1u64..700, 0u64..4096, any::<bool>())
            .prop_map(|(dom, page, pages, frame, write)| Op::Map { dom, page, pages, frame, write }),
        3 => (0usize..4, 0u64..2048, 1u64..1100).prop_map(|(dom, page, pages)| Op::Unmap { dom, page, pages }),
    ]
}

#[derive(Default)]
struct ModelState {
    domains: Vec<u32>,
    pages: BTreeMap<u32, BTreeMap<u64, (u64, Perm)>>,
    attached: BTreeMap<Bdf, u32>,
}

fn check<D: IommuHw<Hal = &'static MockHal>>(mut iommu: Iommu<D>, ops: &[Op]) {
    let hal: &MockHal = iommu.hw().hal();
    let baseline = hal.allocated_pages();
    let mut m = ModelState::default();
    // An index past the live domains names a domain that does not exist.
    let pick = |m: &ModelState, i: usize| m.domains.get(i).copied().unwrap_or(9999);
    for op in ops {
        match *op {
            Op::Create => {
                let id = iommu.create_domain().unwrap();
                assert!(!m.domains.contains(&id));
                m.domains.push(id);
                m.pages.insert(id, BTreeMap::new());
            }
            Op::Destroy(i) => {
                let id = pick(&m, i);
                let r = iommu.destroy_domain(id);
                if !m.domains.contains(&id) {
                    assert_eq!(r, Err(Error::NoSuchDomain(id)));
                } else if m.attached.values().any(|&d| d == id) {
                    assert_eq!(r, Err(Error::DomainBusy(id)));
                } else {
                    r.unwrap();
                    m.domains.retain(|&d| d != id);
                    m.pages.remove(&id);
                }
            }
            Op::Attach(i, v) => {
                let (id, dev) = (pick(&m, i), DEVICES[v]);
                let r = iommu.attach(id, dev);
                if !m.domains.contains(&id) {
                    assert_eq!(r, Err(Error::NoSuchDomain(id)));
                } else if v == 3 {
                    assert_eq!(r, Err(Error::UnknownDevice(dev)));
                } else {
                    match m.attached.get(&dev) {
                        Some(&d) if d != id => {
                            assert_eq!(
                                r,
                                Err(Error::AlreadyAttached {
                                    device: dev,
                                    domain: d
                                })
                            )
                        }
                        _ => {
                            r.unwrap();
                            m.attached.insert(dev, id);
                        }
                    }
                }
            }
            Op::Detach(v) => {
                let dev = DEVICES[v];
                let r = iommu.detach(dev);
                if m.attached.remove(&dev).is_some() {
                    r.unwrap();
                } else {
                    assert_eq!(r, Err(Error::NotAttached(dev)));
                }
            }
            Op::Map {
                dom,
                page,
                pages,
                frame,
                write,
            } => {
                let id = pick(&m, dom);
                let perm = if write {
                    Perm::READ | Perm::WRITE
                } else {
                    Perm::READ
                };
                let r = iommu.map(id, page << 12, (1 << 32) + (frame << 12), pages << 12, perm);
                let Some(model) = m.pages.get_mut(&id) else {
                    assert_eq!(r, Err(Error::NoSuchDomain(id)));
                    continue;
                };
                match (page..page + pages).find(|p| model.contains_key(p)) {
                    Some(p) => assert_eq!(r, Err(Error::Overlap { iova: p << 12 })),
                    None => {
                        r.unwrap();
                        for i in 0..pages {
                            model.insert(page + i, ((1 << 32) + ((frame + i) << 12), perm));
                        }
                    }
                }
            }
            Op::Unmap { dom, page, pages } => {
                let id = pick(&m, dom);
                let r = iommu.unmap(id, page << 12, pages << 12);
                let Some(model) = m.pages.get_mut(&id) else {
                    assert_eq!(r, Err(Error::NoSuchDomain(id)));
                    continue;
                };
                let removed = (page..page + pages)
                    .filter(|p| model.remove(p).is_some())
                    .count();
                assert_eq!(r, Ok(removed as u64 * 4096));
            }
        }
    }
    for (&id, model) in &m.pages {
        for p in 0..2048 + 1100 {
            let got = iommu.translate(id, p << 12).map(|(pa, perm, _)| (pa, perm));
            assert_eq!(got, model.get(&p).copied(), "domain {id} page {p:#x}");
        }
    }
    for dev in DEVICES.iter().take(3) {
        assert_eq!(iommu.domain_of(*dev), m.attached.get(dev).copied());
    }
    // Tear down: every frame of every domain comes back.
    let devices: BTreeSet<Bdf> = m.attached.keys().copied().collect();
    for dev in devices {
        iommu.detach(dev).unwrap();
    }
    for id in m.domains {
        iommu.destroy_domain(id).unwrap();
    }
    // What stays is unit state: at most the VT-d context table of bus 0.
    let after = iommu.hw().hal().allocated_pages();
    assert!(
        after <= baseline + 1,
        "{after} frames in use, {baseline} at start"
    );
    // And a full cycle leaves nothing behind.
    let id = iommu.create_domain().unwrap();
    iommu.attach(id, DEVICES[0]).unwrap();
    iommu
        .map(id, 0x1000, 0x20_0000, 4 << 20, Perm::READ)
        .unwrap();
    iommu.unmap(id, 0, 8 << 20).unwrap();
    iommu.detach(DEVICES[0]).unwrap();
    iommu.destroy_domain(id).unwrap();
    let end = iommu.hw().hal().allocated_pages();
    assert!(
        end >= after && end <= baseline + 1,
        "{end} frames after a cycle, {after} before"
    );
}

fn vtd() -> Iommu<Vtd<&'static MockHal>> {
    let base = 0xfed9_0000;
    let hal: &'static MockHal = std::boxed::Box::leak(std::boxed::Box::new(MockHal::new(
        1 << 30,
        Model::Vtd {
            base,
            cap: 0x00d2_008c_2226_0206,
            ecap: 0x00f0_0f4a,
        },
    )));
    Iommu::new(Vtd::new(hal, base, coverage(), VtdConfig::default()).unwrap())
}

fn amdvi() -> Iommu<AmdVi<&'static MockHal>> {
    let base = 0xfed8_0000;
    let hal: &'static MockHal = std::boxed::Box::leak(std::boxed::Box::new(MockHal::new(
        1 << 30,
        Model::AmdVi { base, efr: 0x29d3 },
    )));
    Iommu::new(AmdVi::new(hal, base, coverage(), AmdViConfig::default()).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn vtd_api_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        check(vtd(), &ops);
    }
    #[test]
    fn amdvi_api_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        check(amdvi(), &ops);
    }
}
