//! Sluice's thin type-1 hypervisor: owns the CPUs and memory, runs each domain behind
//! its own nested page table, speaks Xen's guest ABI, and survives a domain's crash.

#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod acpi;
mod addr;
#[allow(unsafe_code)]
mod arch;
mod console_in;
mod domain;
mod dump;
mod emulate;
mod evtchn;
mod grant;
mod guest_acpi;
mod hvm;
mod hypercall;
mod intercept;
mod iommu;
mod launch;
mod log;
mod mm;
mod multiboot;
mod multiboot2;
mod passthrough;
mod sched;
mod time;
mod virt;
mod vlapic;
mod vpci;
mod vsmp;

use arch::smp::MAX_CPUS;
use arch::svm::Svm;
use domain::Domain;
use mm::FrameAllocator;
use sched::{cpu_loop, CpuStats, World, WORLD};
use spin::Mutex;

/// At most 15: ASIDs are domain ids, and QEMU's SVM offers 16 (0 is the host's).
const MAX_DOMAINS: usize = 14;
/// Guest memory per domain.
const DOMAIN_MEM: u64 = 8 << 20;
/// The most a domain may ask for with `memory=MiB` on its module's command line.
const MAX_DOMAIN_MIB: u64 = 512;

/// Whether a module is an initrd (its arguments begin with the word `initrd`).
fn is_initrd(args: &str) -> bool {
    args.split(' ').next() == Some("initrd")
}
/// Exit status (through isa-debug-exit) when every domain has ended and the hypervisor
/// is healthy: QEMU exits with (0x10 << 1) | 1 = 33.
const EXIT_ALL_DOMAINS_ENDED: u32 = 0x10;
const EXIT_BOOT_FAILED: u32 = 0x11;
/// A vCPU's time slice before the LAPIC tick preempts it.
const TIME_SLICE_NS: u64 = 10_000_000;
/// The hypervisor heap (IOMMU driver state, parsed ACPI tables, the PCI device list).
const HEAP_PAGES: u64 = 256;
/// The APIC id `smp-phantom-cpu` adds to the MADT's (none in the suite's machines).
const PHANTOM_APIC_ID: u8 = 7;
/// Each AP's stack (the boot CPU's is 1 MiB in the image: hv_main builds the World, a few
/// hundred KiB, on it before moving it into its lock).
const AP_STACK_PAGES: u64 = 128;

/// Called by the boot code in long mode with the boot information address and the
/// loader's magic (multiboot v1 or multiboot2).
pub fn hv_main(mb_info: u32, magic: u32) -> ! {
    arch::serial::init();
    arch::serial::mask_pics();
    log!("sluice hypervisor: booting");
    arch::cpu::init(0);
    arch::smp::init_bsp();
    log!("cpu: GDT, TSS (IST for NMI/#DF/#MC), IDT loaded");

    let boot = match multiboot::BootInfo::new(magic, mb_info as u64) {
        Ok(b) => b,
        Err(e) => {
            log!("boot: {}", e);
            arch::serial::qemu_exit(EXIT_BOOT_FAILED);
        }
    };
    match boot.mb2_summary() {
        Some((size, mmap, mods, rsdp)) => log!(
            "boot: multiboot2 (GRUB), info at {:#x}, {} bytes; memory map {}; {} module tags; RSDP {}",
            mb_info,
            size,
            if mmap { "from its tag" } else { "from basic meminfo" },
            mods,
            match rsdp {
                Some(36) => "from its ACPI 2.0+ tag",
                Some(_) => "from its ACPI 1.0 tag",
                None => "not in a tag (scanned)",
            }
        ),
        None => log!("boot: {}, info at {:#x}", boot.loader(), mb_info),
    }
    let mut fa = FrameAllocator::new();
    let tramp = arch::smp::TRAMPOLINE;
    let mut trampoline_ok = !(tramp..tramp + mm::PAGE).contains(&(mb_info as u64));
    let mut trampoline_ram = false;
    boot.for_each_entry(|base, len, ty| match ty {
        1 => {
            trampoline_ram |= base <= tramp && base.saturating_add(len) >= tramp + mm::PAGE;
            fa.add_region(base, base.saturating_add(len))
        }
        3..=5 => fa.add_firmware_ram(base, base.saturating_add(len)),
        _ => {}
    });
    trampoline_ok &= trampoline_ram;
    let (img_start, img_end) = arch::boot::image_range();
    fa.reserve(img_start, img_end);
    // Copy the module list out first: the boot information lies in memory the frame
    // allocator hands out.
    let selftest = boot.has_option("iommu-selftest");
    // Test: also start an APIC id the MADT does not list (no CPU answers it).
    let phantom = boot
        .has_option("smp-phantom-cpu")
        .then_some(PHANTOM_APIC_ID);
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
    if !fa.init_frame_table() {
        log!("memory: no room for the frame table");
        arch::serial::qemu_exit(EXIT_BOOT_FAILED);
    }
    match fa.alloc_contiguous(HEAP_PAGES, mm::PAGE) {
        Some(h) if arch::heap::init(h, HEAP_PAGES * mm::PAGE) => {
            log!("heap: {} KiB at {:#x}", HEAP_PAGES * 4, h)
        }
        _ => {
            log!("heap: no memory");
            arch::serial::qemu_exit(EXIT_BOOT_FAILED);
        }
    }
    let platform = acpi::discover(boot.rsdp());
    let mut functions = alloc::vec::Vec::new();
    match &platform {
        Some(pf) => {
            log!(
                "acpi: RSDP {}; MADT: {} CPUs (APIC ids {:?}), {} I/O APICs; MCFG: ECAM at {:#x} buses {}-{}; DMAR: {}; IVRS: {}",
                acpi::RsdpFrom(pf),
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
            passthrough::set_platform(pf.clone());
            log!("pci: {} functions over ECAM", functions.len());
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
    let iommu_before_domains = protection
        .as_ref()
        .map(|p| p.table_frames().0 - p.kept_frames());
    let count = arch::lapic::start_periodic(clock.hz, TIME_SLICE_NS);
    log!(
        "sched: round-robin over every CPU, {} ms slices (LAPIC timer, initial count {})",
        TIME_SLICE_NS / 1_000_000,
        count
    );

    let mut domains: [Option<Domain>; MAX_DOMAINS] = Default::default();
    let mut launches: [Option<launch::Launch>; MAX_DOMAINS] = Default::default();
    let mut inventory = None;
    for (i, m) in modules.iter().flatten().enumerate() {
        // A command line the buffer could not hold is refused, never cut short: a cut
        // one would boot a guest with other options than it was given.
        if m.too_long {
            log!(
                "module {}: command line longer than {} bytes: not started",
                i,
                multiboot::MODULE_CMDLINE_MAX
            );
            continue;
        }
        let args = m.args();
        if is_initrd(args) {
            continue;
        }
        // A module whose arguments begin with `initrd` is the initrd of the domain
        // module before it (passed as the start info's module 0).
        let initrd = modules
            .get(i + 1)
            .and_then(|n| n.as_ref())
            .filter(|n| is_initrd(n.args()))
            .map(|n| (n.start, n.end));
        let launch = launch::Launch {
            image: (m.start, m.end),
            initrd,
            args: alloc::string::String::from(args),
            reboots: 0,
        };
        let parts = launch::Parts {
            svm: &svm,
            fa: &mut fa,
            protection: protection.as_mut(),
            inventory: &mut inventory,
            domains: &domains,
            clock,
        };
        domains[i] = launch::create(parts, i as u16 + 1, &launch);
        launches[i] = Some(launch);
    }

    let bsp_apic = arch::lapic::id();
    let mut online = [None; MAX_CPUS];
    online[0] = Some(bsp_apic);
    let world = WORLD.call_once(|| {
        Mutex::new(World {
            domains,
            launches,
            fa,
            protection,
            inventory,
            svm: svm.clone(),
            clock,
            tick_count: count,
            next: 0,
            stats: [CpuStats::default(); MAX_CPUS],
            online,
            idle: [false; MAX_CPUS],
            cpu_frames: 0,
            console_in: Default::default(),
        })
    });
    let cpus = start_aps(
        world,
        platform.as_ref(),
        phantom,
        bsp_apic,
        trampoline_ok,
        clock.hz,
    );
    log!(
        "smp: {} of {} CPUs started",
        cpus,
        platform.as_ref().map_or(1, |p| p.cpus)
    );

    cpu_loop(0, &svm, world);

    let mut guard = world.lock();
    let w = &mut *guard;
    for (cpu, apic) in w.online.iter().enumerate() {
        let Some(apic) = apic else { continue };
        let st = w.stats[cpu];
        log!(
            "sched: CPU {} (APIC id {}): {} slices, {} exits, {} hypercalls, {} preemptions",
            cpu,
            apic,
            st.slices,
            st.exits,
            st.hypercalls,
            st.preemptions
        );
    }
    let leaked = w.fa.handed_out - frames_before_domains - w.cpu_frames;
    log!(
        "memory: {} frames held by domains after all ended ({})",
        leaked,
        if leaked == 0 { "all returned" } else { "LEAK" }
    );
    // Every teardown syncs the CPUs before it frees: nothing may stay held back.
    let held = w.fa.held_back + w.fa.tlbs_are_stale() as u64;
    log!(
        "memory: {} frames held back for a stale TLB since boot, {} still held, stale: {}",
        w.fa.held_total,
        w.fa.held_back,
        w.fa.tlbs_are_stale()
    );
    if w.fa.bad_frees != 0 || w.fa.bad_reaches != 0 {
        log!(
            "memory: {} frees refused, {} frames reached that a domain may not (HYPERVISOR BUG)",
            w.fa.bad_frees,
            w.fa.bad_reaches
        );
    }
    let mut iommu_ok = true;
    passthrough::drain_faults(w);
    if let Some(p) = w.protection.as_mut() {
        if p.quarantined() > 0 {
            log!(
                "passthrough: {} functions in quarantine at the end: detached (blocked, as at boot)",
                p.quarantined()
            );
        }
        p.end_quarantine();
        let (frames, bad_frees) = p.table_frames();
        // Context tables made for assigned functions stay (as the root table does).
        let frames = frames - p.kept_frames();
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
    let dma_ok = passthrough::check_watched(w);
    log!("sluice hypervisor: all domains ended; hypervisor alive");
    arch::serial::qemu_exit(
        if leaked == 0
            && held == 0
            && iommu_ok
            && dma_ok
            && w.fa.bad_frees == 0
            && w.fa.bad_reaches == 0
        {
            EXIT_ALL_DOMAINS_ENDED
        } else {
            0x12
        },
    )
}

/// Brings up every other enabled CPU of the MADT, one at a time; returns how many CPUs
/// run (the boot CPU included).
fn start_aps(
    world: &Mutex<World>,
    platform: Option<&acpi::Platform>,
    phantom: Option<u8>,
    bsp_apic: u32,
    trampoline_ok: bool,
    tsc_hz: u64,
) -> usize {
    let Some(pf) = platform else { return 1 };
    let mut ids = [0u8; 33];
    let n = pf.cpus as usize;
    ids[..n].copy_from_slice(&pf.lapic_ids[..n]);
    let n = match phantom {
        Some(p) if !ids[..n].contains(&p) => {
            ids[n] = p;
            n + 1
        }
        _ => n,
    };
    let ids = &ids[..n];
    let others = ids.iter().filter(|&&id| id as u32 != bsp_apic).count();
    if others == 0 {
        return 1;
    }
    if !trampoline_ok {
        log!(
            "smp: frame {:#x} is not free RAM: no trampoline, {} CPUs stay idle",
            arch::smp::TRAMPOLINE,
            others
        );
        return 1;
    }
    let len = arch::smp::install_trampoline();
    log!(
        "smp: trampoline ({} bytes) at {:#x}; starting {} APs (INIT, SIPI, SIPI)",
        len,
        arch::smp::TRAMPOLINE,
        others
    );
    let mut cpus = 1;
    for &apic in ids {
        let apic = apic as u32;
        if apic == bsp_apic {
            continue;
        }
        if cpus >= MAX_CPUS {
            log!(
                "smp: APIC id {}: more than {} CPUs, left idle",
                apic,
                MAX_CPUS
            );
            continue;
        }
        let stack = {
            let mut w = world.lock();
            let s = w.fa.alloc_contiguous(AP_STACK_PAGES, mm::PAGE);
            if s.is_some() {
                w.cpu_frames += AP_STACK_PAGES;
            }
            s
        };
        let Some(stack) = stack else {
            log!("smp: APIC id {}: no memory for its stack", apic);
            break;
        };
        match arch::smp::start_ap(cpus, apic, stack + AP_STACK_PAGES * mm::PAGE, tsc_hz) {
            Some(us) => {
                log!(
                    "smp: CPU {} (APIC id {}) answered after {} us",
                    cpus,
                    apic,
                    us
                );
                cpus += 1;
            }
            None => {
                // Its stack stays allocated: the CPU may still wake up and use it.
                log!("smp: APIC id {} never answered: left out", apic);
            }
        }
    }
    cpus
}

/// An AP after its descriptor tables: SVM on, its LAPIC tick, then the scheduler.
pub fn ap_main(cpu: usize) -> ! {
    let world = WORLD.wait();
    let (svm, count) = {
        let mut guard = world.lock();
        let w = &mut *guard;
        let mut taken = 0;
        let svm = w.svm.for_this_cpu(&mut |pages| {
            taken += pages;
            w.fa.alloc_contiguous(pages, mm::PAGE)
        });
        w.cpu_frames += taken;
        (svm, w.tick_count)
    };
    let svm = match svm {
        Ok(s) => s,
        Err(e) => {
            log!("smp: CPU {}: svm: {}: it stays idle", cpu, e);
            halt()
        }
    };
    arch::lapic::start_periodic_count(count);
    let apic = arch::lapic::id();
    log!(
        "smp: CPU {} (APIC id {}) up: long mode, own stack, GDT/TSS/IDT, SVM on, LAPIC tick (count {})",
        cpu,
        apic,
        count
    );
    world.lock().online[cpu] = Some(apic);
    cpu_loop(cpu, &svm, world);
    halt()
}

fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
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
