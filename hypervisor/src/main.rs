//! Sluice's thin type-1 hypervisor: owns the CPUs and memory, runs each domain behind
//! its own nested page table, speaks Xen's guest ABI, and survives a domain's crash.

#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod acpi;
#[allow(unsafe_code)]
mod arch;
mod domain;
mod evtchn;
mod grant;
mod hypercall;
mod iommu;
mod log;
mod mm;
mod multiboot;
mod time;
mod virt;

use arch::svm::Svm;
use domain::{Domain, RunState};
use hypercall::After;
use mm::FrameAllocator;
use virt::{Exit, VcpuState, VirtBackend};

const MAX_DOMAINS: usize = 12;
/// Guest memory per domain.
const DOMAIN_MEM: u64 = 8 << 20;
/// Exit status (through isa-debug-exit) when every domain has ended and the hypervisor
/// is healthy: QEMU exits with (0x10 << 1) | 1 = 33.
const EXIT_ALL_DOMAINS_ENDED: u32 = 0x10;
const EXIT_BOOT_FAILED: u32 = 0x11;
/// A vCPU's time slice before the LAPIC tick preempts it.
const TIME_SLICE_NS: u64 = 10_000_000;
/// The hypervisor heap (IOMMU driver state, parsed ACPI tables, the PCI device list).
const HEAP_PAGES: u64 = 256;

/// Called by the boot code in long mode with the multiboot information address.
pub fn hv_main(mb_info: u32) -> ! {
    arch::serial::init();
    arch::serial::mask_pics();
    log!("sluice hypervisor: booting");
    arch::cpu::init();
    log!("cpu: GDT, TSS (IST for NMI/#DF/#MC), IDT loaded");

    let boot = multiboot::BootInfo::new(mb_info as u64);
    let mut fa = FrameAllocator::new();
    boot.for_each_entry(|base, len, ty| match ty {
        1 => fa.add_region(base, base.saturating_add(len)),
        3..=5 => fa.add_firmware_ram(base, base.saturating_add(len)),
        _ => {}
    });
    let (img_start, img_end) = arch::boot::image_range();
    fa.reserve(img_start, img_end);
    // Copy the module list out first: the boot information lies in memory the frame
    // allocator hands out.
    let selftest = boot.has_option("iommu-selftest");
    let nmods = boot.module_count().min(MAX_DOMAINS);
    let modules: [Option<multiboot::Module>; MAX_DOMAINS] =
        core::array::from_fn(|i| (i < nmods).then(|| boot.module(i)));
    for (i, m) in modules.iter().flatten().enumerate() {
        log!(
            "module {}: {:#x}..{:#x} '{}'",
            i,
            m.start,
            m.end,
            m.cmdline()
        );
        fa.reserve(m.start, m.end);
    }
    log!(
        "memory: {} frames usable; image {:#x}..{:#x}; {} modules",
        fa.total(),
        img_start,
        img_end,
        nmods
    );
    match fa.alloc_contiguous(HEAP_PAGES, mm::PAGE) {
        Some(h) if arch::heap::init(h, HEAP_PAGES * mm::PAGE) => {
            log!("heap: {} KiB at {:#x}", HEAP_PAGES * 4, h)
        }
        _ => {
            log!("heap: no memory");
            arch::serial::qemu_exit(EXIT_BOOT_FAILED);
        }
    }
    let platform = acpi::discover();
    let mut functions = alloc::vec::Vec::new();
    match &platform {
        Some(pf) => {
            log!(
                "acpi: RSDP at {:#x}; MADT: {} CPUs (APIC ids {:?}), {} I/O APICs; MCFG: ECAM at {:#x} buses {}-{}; DMAR: {}; IVRS: {}",
                pf.rsdp,
                pf.cpus,
                &pf.lapic_ids[..pf.cpus as usize],
                pf.ioapics,
                pf.ecam_base,
                pf.ecam_buses.0,
                pf.ecam_buses.1,
                Table(pf.dmar),
                Table(pf.ivrs)
            );
            functions = acpi::enumerate_pci(pf);
            log!("pci: {} functions over ECAM", functions.len());
            log!(
                "smp: only the boot CPU runs (AP bring-up not implemented); {} CPUs idle",
                pf.cpus.saturating_sub(1)
            );
        }
        None => log!("acpi: no RSDP found"),
    }
    // DMA protection before anything else runs.
    let mut protection = match platform
        .as_ref()
        .map(|pf| iommu::init(pf, &mut fa, &functions))
    {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            log!("iommu: {}: devices are NOT protected from DMA", e);
            None
        }
        None => {
            log!("iommu: no ACPI tables: devices are NOT protected from DMA");
            None
        }
    };
    let (used, size) = arch::heap::usage();
    log!(
        "heap: {} of {} KiB in use",
        used.div_ceil(1024),
        size / 1024
    );

    let svm = match Svm::init(&mut |pages| fa.alloc_contiguous(pages, mm::PAGE)) {
        Ok(s) => s,
        Err(e) => {
            log!("svm: {}", e);
            arch::serial::qemu_exit(EXIT_BOOT_FAILED);
        }
    };
    let clock = time::Clock::calibrate();
    log!("time: TSC {} kHz (PIT-calibrated)", clock.hz / 1000);
    if let (true, Some(pf)) = (selftest, platform.as_ref()) {
        iommu::selftest(protection.as_mut(), pf, &functions, &mut fa, &|| {
            clock.now_ns()
        });
    }
    drop(functions);
    let frames_before_domains = fa.handed_out;
    let iommu_before_domains = protection.as_ref().map(|p| p.table_frames().0);
    let count = arch::lapic::start_periodic(clock.hz, TIME_SLICE_NS);
    log!(
        "sched: round-robin, {} ms slices (LAPIC timer, initial count {})",
        TIME_SLICE_NS / 1_000_000,
        count
    );

    let mut domains: [Option<Domain>; MAX_DOMAINS] = Default::default();
    for (i, m) in modules.iter().flatten().enumerate() {
        let args = m.args();
        let name = args
            .split(' ')
            .find_map(|a| a.strip_prefix("name="))
            .unwrap_or("domU");
        let id = i as u16 + 1;
        let spec = domain::DomainSpec {
            name,
            image: (m.start, m.end),
            mem_bytes: DOMAIN_MEM,
            cmdline: args,
        };
        match Domain::create(&svm, &mut fa, id, &spec, clock) {
            Ok(mut d) => {
                log!(
                    "domain {} ({}): created, {} KiB, 1 vCPU, cmdline '{}'",
                    id,
                    name,
                    DOMAIN_MEM / 1024,
                    args
                );
                if let Some(p) = protection.as_mut() {
                    match p.create_domain() {
                        Ok(io) => {
                            log!(
                                "domain {} ({}): IOMMU domain {} (no devices assigned)",
                                id,
                                name,
                                io.first_id().unwrap_or(0)
                            );
                            d.iommu = Some(io);
                        }
                        Err(e) => log!("domain {} ({}): no IOMMU domain: {}", id, name, e),
                    }
                }
                domains[i] = Some(d);
            }
            Err(e) => log!("domain {} ({}): not created: {:?}", id, name, e),
        }
    }

    schedule(&svm, &mut domains, &mut fa, &mut protection);

    let leaked = fa.handed_out - frames_before_domains;
    log!(
        "memory: {} frames held by domains after all ended ({})",
        leaked,
        if leaked == 0 { "all returned" } else { "LEAK" }
    );
    let mut iommu_ok = true;
    if let Some(p) = protection.as_mut() {
        p.drain_faults(|_| {});
        let (frames, bad_frees) = p.table_frames();
        let before = iommu_before_domains.unwrap_or(0);
        iommu_ok = frames == before && bad_frees == 0 && p.domains() == 0;
        log!(
            "iommu: {} IOMMU domains and {} table frames left after all domains ended ({} at boot, {} bad frees: {}); {} faults since boot, {} devices still blocked",
            p.domains(),
            frames,
            before,
            bad_frees,
            if iommu_ok { "all returned" } else { "LEAK" },
            p.faults(),
            p.blocked
        );
    }
    log!("sluice hypervisor: all domains ended; hypervisor alive");
    arch::serial::qemu_exit(if leaked == 0 && iommu_ok {
        EXIT_ALL_DOMAINS_ENDED
    } else {
        0x12
    })
}

/// Round-robin over runnable domains; a vCPU runs until it yields, blocks, halts, ends
/// or its time slice (the LAPIC tick) is over.
fn schedule(
    svm: &Svm,
    domains: &mut [Option<Domain>],
    fa: &mut FrameAllocator,
    protection: &mut Option<iommu::Protection>,
) {
    loop {
        if let Some(p) = protection.as_mut() {
            p.drain_faults(|_| {});
        }
        let mut ran = false;
        for i in 0..domains.len() {
            fire_timers(domains);
            if domains[i].as_ref().map(|d| d.state) != Some(RunState::Runnable) {
                continue;
            }
            if let Some(d) = domains[i].as_ref() {
                d.clock.publish(d.shared_info);
            }
            ran = true;
            let after = run_until_switch(svm, domains, i);
            let Some(d) = domains[i].as_mut() else {
                continue;
            };
            hypercall::apply(d, after);
            match after {
                After::Shutdown(reason) => {
                    log!(
                        "domain {} ({}): shut down, reason {} ({} preemptions)",
                        d.id,
                        d.name(),
                        reason,
                        d.preemptions
                    );
                }
                After::Kill => {}
                _ => continue,
            }
            evtchn::close_all(domains, i);
            grant::release_all(domains, i);
            let Some(d) = domains[i].as_mut() else {
                continue;
            };
            if let (Some(p), Some(io)) = (protection.as_mut(), d.iommu.take()) {
                p.destroy_domain(io);
            }
            let freed = d.destroy(fa);
            log!(
                "domain {} ({}): destroyed, {} frames freed",
                d.id,
                d.name(),
                freed
            );
            domains[i] = None;
        }
        if !ran {
            // Everyone is blocked: wait for the earliest timer.
            let next = domains
                .iter()
                .flatten()
                .flat_map(|d| [d.timer_deadline, d.poll_deadline])
                .flatten()
                .min();
            if let (Some(deadline), Some(d)) = (next, domains.iter().flatten().next()) {
                while d.clock.now_ns() < deadline {
                    core::hint::spin_loop();
                }
                continue;
            }
            if domains
                .iter()
                .flatten()
                .any(|d| d.state == RunState::Blocked)
            {
                // Nothing runnable, yet some are blocked and no timer exists yet to
                // wake them: wake them (SCHEDOP_block may return spuriously).
                for d in domains.iter_mut().flatten() {
                    if d.state == RunState::Blocked {
                        d.state = RunState::Runnable;
                    }
                }
                continue;
            }
            return;
        }
    }
}

/// Sends VIRQ_TIMER to each domain whose single-shot timer has expired.
fn fire_timers(domains: &mut [Option<Domain>]) {
    for d in domains.iter_mut().flatten() {
        if d.poll_deadline.is_some_and(|t| d.clock.now_ns() >= t) {
            d.end_poll();
        }
        if let Some(deadline) = d.timer_deadline {
            if d.clock.now_ns() >= deadline {
                d.timer_deadline = None;
                if let Some(port) = d.virq_timer {
                    d.clock.publish(d.shared_info);
                    evtchn::set_pending(d, port);
                } else if d.state == RunState::Blocked {
                    d.state = RunState::Runnable;
                }
            }
        }
    }
}

fn kill(d: &mut Domain, why: core::fmt::Arguments) -> After {
    log!("domain {} ({}): KILLED: {}", d.id, d.name(), why);
    After::Kill
}

fn run_until_switch(svm: &Svm, domains: &mut [Option<Domain>], i: usize) -> After {
    loop {
        let Some(d) = domains[i].as_mut() else {
            return After::Kill;
        };
        let exit = svm.run(&mut d.vcpu);
        let after = match exit {
            Exit::Hypercall => hypercall::hypercall(domains, i),
            Exit::Cpuid => {
                hypercall::cpuid(d);
                After::Continue
            }
            Exit::Msr { write } => hypercall::msr(d, write),
            Exit::Hlt => {
                let rip = d.vcpu.rip();
                d.vcpu.set_rip(rip + 1);
                After::Block
            }
            Exit::Io {
                input, next_rip, ..
            } => {
                // No devices are emulated: writes are dropped, reads return all ones.
                if input {
                    let rax = d.vcpu.rax();
                    d.vcpu.set_rax(rax | 0xFFFF_FFFF);
                }
                d.vcpu.set_rip(next_rip);
                After::Continue
            }
            Exit::ExternalInterrupt => {
                // The LAPIC tick: its slice is over.
                arch::lapic::take_pending_interrupt();
                d.preemptions += 1;
                After::Yield
            }
            Exit::NestedPageFault { gpa, flags } => kill(
                d,
                format_args!(
                    "nested page fault at gpa {:#x} (flags {:#x}, rip {:#x}): {}",
                    gpa,
                    flags,
                    d.vcpu.rip(),
                    if flags & 1 != 0 {
                        "write to a read-only mapping"
                    } else {
                        "not its memory"
                    }
                ),
            ),
            Exit::Shutdown => kill(d, format_args!("triple fault (rip {:#x})", d.vcpu.rip())),
            Exit::Invalid => kill(d, format_args!("VMRUN refused the guest state")),
            Exit::Other(code) => kill(d, format_args!("unhandled exit {:#x}", code)),
        };
        if after != After::Continue {
            return after;
        }
    }
}

/// An ACPI table location for the log.
struct Table(Option<(u64, u64)>);

impl core::fmt::Display for Table {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some((pa, len)) => write!(f, "{pa:#x} ({len} bytes)"),
            None => write!(f, "none"),
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    log!("HYPERVISOR PANIC: {}", info);
    arch::serial::qemu_exit(0x7e)
}
