//! A dead domain's end: once none of its vCPUs is on a CPU, its event channels and
//! grants are closed, CPUs running other vCPUs leave their guests, its devices are
//! stopped and quarantined and its IOMMU domain goes, its exit and console counters are
//! logged, its frames are freed and every other domain audited; a guest that rebooted is
//! then made again from its module with the same id (at most `launch::MAX_REBOOTS`
//! times).

use super::World;
use crate::{evtchn, grant, launch, log, passthrough, vsmp};
use sluice_abi::hypercall::ShutdownReason;

/// Destroys dead domain `i` (no vCPU of it on a CPU).
pub(super) fn teardown(w: &mut World, cpu: usize, i: usize) {
    evtchn::close_all(&mut w.domains, i);
    grant::release_all(&mut w.domains, i, &mut w.fa);
    // Mappings of its memory revoked from vCPUs running elsewhere: those CPUs leave
    // their guests before the frames go.
    w.sync_vcpus(cpu);
    // Its devices stop (bus master off, DMA drained, reset, quarantine) before its
    // IOMMU domain and frames go.
    passthrough::teardown(w, i);
    let Some(d) = w.domains[i].as_mut() else {
        return;
    };
    if let (Some(p), Some(io)) = (w.protection.as_mut(), d.iommu.take()) {
        p.destroy_domain(io);
    }
    if d.nr_vcpus > 1 {
        log!(
            "domain {} ({}): {} vCPUs; {} slices began beside another of its vCPUs on another CPU",
            d.id,
            d.name(),
            d.nr_vcpus,
            d.side_by_side
        );
    }
    log!(
        "domain {} ({}): nested page table: {} 2 MiB leaves split, {} merged back",
        d.id,
        d.name(),
        d.npt_splits,
        d.npt_merges
    );
    log!(
        "domain {} ({}): exits: {}",
        d.id,
        d.name(),
        vsmp::Exits(&d.smp.exits)
    );
    if d.smp.hlt_virq > 0 {
        log!(
            "domain {} ({}): {} HLTs found a device or callback vector waiting in V_IRQ: returned at once",
            d.id,
            d.name(),
            d.smp.hlt_virq
        );
    }
    if d.smp.io_ports.used > 0 {
        log!(
            "domain {} ({}): port I/O exits by port: {}",
            d.id,
            d.name(),
            d.smp.io_ports
        );
    }
    let rate = d.console_rate;
    if rate.dropped > 0 {
        log!(
            "domain {} ({}): console: {} bytes printed, {} dropped (rate limit)",
            d.id,
            d.name(),
            rate.printed,
            rate.dropped
        );
    }
    let rebooted = d.shutdown_reason == Some(ShutdownReason::Reboot as u32);
    let freed = d.destroy(&mut w.fa);
    log!(
        "domain {} ({}): destroyed, {} frames freed",
        d.id,
        d.name(),
        freed
    );
    w.domains[i] = None;
    // No other domain reaches a frame that went back (or any it may not): audited.
    for o in w.domains.iter().flatten() {
        o.audit(&mut w.fa);
    }
    if rebooted {
        relaunch(w, i);
    }
}

/// The guest of slot `i` rebooted (its old domain is gone, its devices quarantined):
/// made again from its module as a new domain with the same id (at most
/// [`launch::MAX_REBOOTS`] times), its devices reset and assigned again.
fn relaunch(w: &mut World, i: usize) {
    let Some(l) = w.launches[i].as_mut() else {
        return;
    };
    let id = i as u16 + 1;
    if !l.restarts() {
        log!(
            "domain {} ({}): rebooted; on_reboot=destroy: ended",
            id,
            l.name()
        );
        return;
    }
    if l.reboots >= launch::MAX_REBOOTS {
        log!(
            "domain {} ({}): rebooted {} times already: ended (reboot limit)",
            id,
            l.name(),
            l.reboots
        );
        return;
    }
    l.reboots += 1;
    log!(
        "domain {} ({}): rebooting ({} of at most {}): made again from its module",
        id,
        l.name(),
        l.reboots,
        launch::MAX_REBOOTS
    );
    let parts = launch::Parts {
        svm: &w.svm,
        fa: &mut w.fa,
        protection: w.protection.as_mut(),
        inventory: &mut w.inventory,
        domains: &w.domains,
        clock: w.clock,
    };
    let d = launch::create(parts, id, l);
    if d.is_some() {
        w.domains[i] = d;
        w.wake_idle();
    }
}
