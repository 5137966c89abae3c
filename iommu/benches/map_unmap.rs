//! Map+unmap throughput of the page-table logic (on the mock HAL) for 4 KiB and 2 MiB
//! pages, and the invalidation commands each vendor's driver issues per 1 GiB unmap,
//! against the per-page strategy (one invalidation per unmapped 4 KiB page) as the peer.
//!
//! `cargo xtask bench iommu` (`cargo bench -p sluice-iommu --bench map_unmap`)

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_iommu::amdvi::{AmdVi, AmdViConfig};
use sluice_iommu::hal::mock::{Consumed, MockHal, Model};
use sluice_iommu::vtd::{Vtd, VtdConfig};
use sluice_iommu::{Coverage, Iommu, IommuHw, Perm};

const RW: Perm = Perm::READ.union(Perm::WRITE);
const G1: u64 = 1 << 30;
const M2: u64 = 2 << 20;

fn leak(model: Model) -> &'static MockHal {
    Box::leak(Box::new(MockHal::new(4 << 30, model)))
}

fn vtd() -> Iommu<Vtd<&'static MockHal>> {
    let base = 0xfed9_0000;
    let hal = leak(Model::Vtd {
        base,
        cap: 0x00d2_008c_2226_0206,
        ecap: 0x00f0_0f4a,
    });
    Iommu::new(Vtd::new(hal, base, Coverage::default(), VtdConfig::default()).unwrap())
}

fn amdvi() -> Iommu<AmdVi<&'static MockHal>> {
    let base = 0xfed8_0000;
    let hal = leak(Model::AmdVi { base, efr: 0x29d3 });
    let config = AmdViConfig {
        np_cache: false,
        va_bits: 48,
    };
    Iommu::new(AmdVi::new(hal, base, Coverage::default(), config).unwrap())
}

/// Invalidation commands (not wait/completion descriptors) consumed by the mock hardware.
fn invalidations(hal: &MockHal) -> usize {
    hal.consumed()
        .iter()
        .filter(|c| match c {
            Consumed::Queued(d) => {
                let vtd_wait = d[0] & 0xf == 5 && d[0] >> 60 != 0x1;
                let amd_wait = d[0] >> 60 == 1 && d[0] & 0xf != 2;
                !(vtd_wait || amd_wait)
            }
            _ => true,
        })
        .count()
}

/// The span [`count`] unmaps: 1 GiB; 64 MiB with `SLUICE_BENCH_SMOKE=1` (`cargo xtask
/// test` runs this bench once in a debug build, to prove it runs).
fn span() -> u64 {
    if std::env::var("SLUICE_BENCH_SMOKE").is_ok_and(|v| v == "1") {
        64 << 20
    } else {
        G1
    }
}

/// Counts for unmapping [`span`] mapped as `page` pages: in one call, and page by page.
fn count<D: IommuHw<Hal = &'static MockHal>>(make: fn() -> Iommu<D>, page: u64) -> (usize, usize) {
    let span = span();
    let mut out = [0; 2];
    for (i, per_page) in [false, true].into_iter().enumerate() {
        let mut iommu = make();
        let d = iommu.create_domain().unwrap();
        // The table picks the largest page the physical alignment allows: a 4 KiB offset
        // gives 4 KiB pages, a 2 MiB (not 1 GiB) offset gives 2 MiB pages.
        let pa = (8 << 30) + page;
        iommu.map(d, G1, pa, span, RW).unwrap();
        assert_eq!(
            iommu.translate(d, G1).unwrap().2,
            if page == 4096 { 1 } else { 2 }
        );
        let hal: &MockHal = iommu.hw().hal();
        hal.clear_consumed();
        if per_page {
            for off in (0..span).step_by(page as usize) {
                iommu.unmap(d, G1 + off, page).unwrap();
            }
        } else {
            iommu.unmap(d, G1, span).unwrap();
        }
        out[i] = invalidations(iommu.hw().hal());
    }
    (out[0], out[1])
}

fn bench(c: &mut Criterion) {
    let mut table = vec![
        format!(
            "| mapped as | VT-d (one call) | AMD-Vi (one call) | per-page peer |  ({} MiB unmap)",
            span() >> 20
        ),
        "|---|---|---|---|".to_string(),
    ];
    for (name, page) in [("4K", 4096u64), ("2M", M2)] {
        let (v_range, v_page) = count(vtd, page);
        let (a_range, a_page) = count(amdvi, page);
        table.push(format!(
            "| {} pages | {v_range} | {a_range} | {v_page} (AMD-Vi {a_page}) |",
            if page == 4096 { "4 KiB" } else { "2 MiB" }
        ));
        eprintln!(
            "invalidations per {} MiB unmap of {name} pages: VT-d {v_range} (per-page peer {v_page}), AMD-Vi {a_range} (per-page peer {a_page})",
            span() >> 20
        );
    }

    eprintln!("{}", table.join("\n"));

    let mut g = c.benchmark_group("map_unmap");
    g.throughput(Throughput::Elements(512));
    g.bench_function("vtd_4k_x512", |b| {
        let mut iommu = vtd();
        let d = iommu.create_domain().unwrap();
        b.iter(|| {
            for i in 0..512u64 {
                iommu
                    .map(d, i * 4096, (1 << 32) + i * 8192, 4096, RW)
                    .unwrap();
            }
            for i in 0..512u64 {
                iommu.unmap(d, i * 4096, 4096).unwrap();
            }
        })
    });
    g.bench_function("vtd_2m_x512", |b| {
        let mut iommu = vtd();
        let d = iommu.create_domain().unwrap();
        b.iter(|| {
            for i in 0..512u64 {
                iommu
                    .map(d, i * M2, (1 << 33) + i * 2 * M2, M2, RW)
                    .unwrap();
            }
            for i in 0..512u64 {
                iommu.unmap(d, i * M2, M2).unwrap();
            }
        })
    });
    g.bench_function("amdvi_4k_x512", |b| {
        let mut iommu = amdvi();
        let d = iommu.create_domain().unwrap();
        b.iter(|| {
            for i in 0..512u64 {
                iommu
                    .map(d, i * 4096, (1 << 32) + i * 8192, 4096, RW)
                    .unwrap();
            }
            for i in 0..512u64 {
                iommu.unmap(d, i * 4096, 4096).unwrap();
            }
        })
    });
    g.bench_function("amdvi_2m_x512", |b| {
        let mut iommu = amdvi();
        let d = iommu.create_domain().unwrap();
        b.iter(|| {
            for i in 0..512u64 {
                iommu
                    .map(d, i * M2, (1 << 33) + i * 2 * M2, M2, RW)
                    .unwrap();
            }
            for i in 0..512u64 {
                iommu.unmap(d, i * M2, M2).unwrap();
            }
        })
    });
    g.finish();

    // 64 MiB of 4 KiB pages mapped, then unmapped in one call (this driver) or page by
    // page with one invalidation each (the per-page peer strategy).
    let mut g = c.benchmark_group("map_unmap_64m_4k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(16384));
    let len = 64u64 << 20;
    let pa = (8u64 << 30) + 4096;
    g.bench_function("vtd_range_unmap", |b| {
        let mut iommu = vtd();
        let d = iommu.create_domain().unwrap();
        b.iter(|| {
            iommu.map(d, G1, pa, len, RW).unwrap();
            iommu.unmap(d, G1, len).unwrap();
        })
    });
    g.bench_function("vtd_per_page_unmap", |b| {
        let mut iommu = vtd();
        let d = iommu.create_domain().unwrap();
        b.iter(|| {
            iommu.map(d, G1, pa, len, RW).unwrap();
            for off in (0..len).step_by(4096) {
                iommu.unmap(d, G1 + off, 4096).unwrap();
            }
        })
    });
    g.finish();
    let _ = BatchSize::PerIteration;
}

criterion_group!(benches, bench);
criterion_main!(benches);
