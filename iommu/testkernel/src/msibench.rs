//! `msibench=N` on the command line: the native half of `cargo xtask bench msi`. edu's
//! MSI through the IOMMU's interrupt remapping to vector `BENCH_VECTOR` (a handler that
//! stamps the TSC, EOIs through the xAPIC and stamps it again, hw.rs), raised N times
//! after a warm-up: raise -> handler and handler -> EOI done, in TSC cycles. Prints
//! figures only (the bench compares them with the Sluice guest's, which prints the same
//! lines); nothing here is a pass/fail check but that every raise arrived.

use crate::hw::{rdtsc, BENCH_EOI, BENCH_HANDLER, BENCH_VECTOR};
use crate::{println, Edu, HAL_REF};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use sluice_iommu::{Error, Hal as _, Iommu, IommuHw};

const WARMUP: usize = 200;
/// A raise whose MSI has not arrived after this many cycles is counted lost (a hang
/// guard: no figure depends on it).
const LOST_AFTER: u64 = 2_000_000_000;

/// `msibench=N` of the command line (N capped at 100000).
pub fn requested(cmdline: &str) -> Option<usize> {
    cmdline
        .split(' ')
        .find_map(|w| w.strip_prefix("msibench="))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .map(|n| n.min(100_000))
}

/// Min, median, p90, p99 and max of `v` (sorted here), as the line the xtask parses.
fn summary(what: &str, v: &mut [u64]) {
    v.sort_unstable();
    let at = |p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "msibench: {what} cycles: n {} min {} median {} p90 {} p99 {} max {}",
        v.len(),
        at(0),
        at(50),
        at(90),
        at(99),
        at(100)
    );
}

/// The bench on `edu` (attached to a domain of its own, nothing mapped: DMA blocked as
/// under Sluice), its MSI remapped to `BENCH_VECTOR` on APIC id 0.
pub fn run<D: IommuHw>(iommu: &mut Iommu<D>, edu: Edu, n: usize) -> Result<bool, Error> {
    let d = iommu.create_domain()?;
    iommu.attach(d, edu.bdf)?;
    let (index, msg) = iommu.map_msi(edu.bdf, BENCH_VECTOR, 0)?;
    edu.set_msi(msg.address, msg.data);
    println!(
        "msibench: vector {BENCH_VECTOR:#x} through remapping entry {index}, {WARMUP} warm-up + {n} measured raises"
    );
    let mut to_handler = Vec::with_capacity(n);
    let mut to_eoi = Vec::with_capacity(n);
    let mut lost = 0u32;
    for i in 0..WARMUP + n {
        BENCH_HANDLER.store(0, Ordering::SeqCst);
        BENCH_EOI.store(0, Ordering::SeqCst);
        let t0 = rdtsc();
        HAL_REF.mmio_write32(edu.bar + 0x60, 1);
        let h = loop {
            let h = BENCH_HANDLER.load(Ordering::SeqCst);
            if h != 0 || rdtsc().wrapping_sub(t0) > LOST_AFTER {
                break h;
            }
            core::hint::spin_loop();
        };
        // The handler stamps both before it returns: seen one, the other is there.
        let e = BENCH_EOI.load(Ordering::SeqCst);
        HAL_REF.mmio_write32(edu.bar + 0x64, 1);
        if h == 0 {
            lost += 1;
            if lost == 3 {
                // Not arriving at all: stop (each lost raise waited LOST_AFTER).
                break;
            }
        } else if i >= WARMUP {
            to_handler.push(h.wrapping_sub(t0));
            to_eoi.push(e.wrapping_sub(h));
        }
    }
    if !to_handler.is_empty() {
        summary("raise->handler", &mut to_handler);
        summary("handler->EOI", &mut to_eoi);
    }
    println!("msibench: lost {lost}");
    iommu.unmap_msi(edu.bdf, index)?;
    iommu.detach(edu.bdf)?;
    iommu.destroy_domain(d)?;
    Ok(lost == 0)
}
