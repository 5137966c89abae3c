//! End-to-end suite for the Sluice hypervisor (hypervisor/): builds it and its PVH test
//! guest, boots it in QEMU TCG (SVM + NPT), with `-smp 2` and again with `-smp 4`, with
//! thirteen domains — one checking the Xen guest ABI (including hostile arguments), one
//! touching memory it does not own, one triple-faulting, a benchmark, two sharing pages by
//! grant copy and mapping and signalling each other over an event channel, one waiting
//! for VIRQ_TIMER from single-shot and periodic timers, one killed for writing to a read-only grant
//! mapping while its lender finishes, two that spin without yielding (preempted by the
//! LAPIC-timer time slice), one writing a host MSR (refused: #GP, here a triple fault),
//! one with two vCPUs (VCPUOP_initialise/up/down) — and checks the serial log, the
//! isa-debug-exit verdict, and that every CPU came up and ran guest work (its slices and
//! hypercalls in the log). That boot has an `edu` device and no IOMMU: the
//! `iommu-selftest` DMA must land (the probe's negative control).
//!
//! Then two short boots with one domain each, under `-device intel-iommu,intremap=on` and
//! `-device amd-iommu`: the IOMMU must come up with every device blocked, edu's DMA into
//! a hypervisor frame must leave it unchanged, and (VT-d; QEMU 7.2's AMD-Vi never writes
//! its event log) the fault naming edu and that frame must be logged.
//!
//! Then the multiboot2 path (`mb2_boots.rs`): the same hypervisor binary and two
//! test-guest domains on a GRUB rescue ISO (`multiboot2` + `module2`), booted from
//! `-cdrom`; the log must say the loader, memory map, modules, command line and RSDP came
//! from multiboot2's tags, and the verdict is the same isa-debug-exit status. Before it,
//! the multiboot2 info parser (hypervisor/src/multiboot2.rs, compiled in there) is checked
//! on synthesised and hostile infos. The IOMMU boots are in `iommu_boots.rs`.

use crate::util::{cargo, root, run};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

mod iommu_boots;
mod mb2_boots;

use iommu_boots::{hostile_dmar_boot, iommu_boot};
use mb2_boots::{grub_multiboot2_boot, multiboot2_parser_checks};

/// `EXIT_ALL_DOMAINS_ENDED` (0x10) through isa-debug-exit: (0x10 << 1) | 1.
pub(crate) const PASS_STATUS: i32 = 33;

/// fmt, clippy and a release build of the hypervisor workspace; returns the binaries.
pub fn build() -> Result<(PathBuf, PathBuf)> {
    let dir = root().join("hypervisor");
    let target = dir.join("target");
    run(cargo()
        .current_dir(&dir)
        .args(["fmt", "--all", "--", "--check"]))?;
    run(cargo()
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["clippy", "--release", "--workspace", "--", "-D", "warnings"]))?;
    run(cargo()
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--workspace"]))?;
    let out = target.join("x86_64-unknown-none/release");
    Ok((out.join("sluice-hypervisor"), out.join("sluice-testguest")))
}

/// edu with a 64-bit DMA mask (the default 28 bits silently truncates addresses).
const EDU: &str = "edu,dma_mask=0xffffffffffffffff";

/// Boots the hypervisor with the given modules (none when empty), extra QEMU arguments
/// and hypervisor command line; returns the exit status and serial log.
pub fn boot(
    hv: &std::path::Path,
    modules: &str,
    qemu_args: &[&str],
    cmdline: &str,
) -> Result<(i32, String)> {
    let mut qemu = Command::new("timeout");
    qemu.args(["300", "qemu-system-x86_64", "-M", "q35", "-accel", "tcg"])
        .args(["-cpu", "EPYC,+svm,+npt", "-m", "256"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if !qemu_args.contains(&"-smp") {
        qemu.args(["-smp", "2"]);
    }
    qemu.args(qemu_args);
    if !modules.is_empty() {
        qemu.args(["-initrd", modules]);
    }
    let out = qemu
        .arg("-kernel")
        .arg(hv)
        .args(["-append", cmdline])
        .output()
        .context("cannot run qemu-system-x86_64")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    ))
}

pub fn run_suite() -> Result<()> {
    let (hv, guest) = build()?;
    let size = std::fs::metadata(&hv)?.len();
    eprintln!("  hypervisor binary: {size} bytes (with debug info)");
    let g = guest.display();
    let modules = format!(
        "{g} name=abi role=abi,{g} name=rogue role=rogue,{g} name=triple role=triple,\
         {g} name=bench role=bench,{g} name=ping role=ping peer=6,{g} name=pong role=pong peer=5,\
         {g} name=timer role=timer,{g} name=lender role=lender peer=9,\
         {g} name=rogue-mapper role=rogue-mapper peer=8,\
         {g} name=spin1 role=spinner,{g} name=spin2 role=spinner,{g} name=msr role=msr,\
         {g} name=smp role=smp vcpus=2"
    );
    multiboot2_parser_checks()?;
    grub_multiboot2_boot(&hv, &guest)?;
    crate::hv_hostile::hostile_cpu_boot(&hv, &g.to_string())?;
    main_boot(&hv, &modules, 2)?;
    main_boot(&hv, &modules, 4)?;
    crate::hypervisor_mem::hostile_mem_boot(&hv, &guest)?;
    crate::hypervisor_mem::stale_tlb_boot(&hv, &guest)?;
    iommu_boot(&hv, &g.to_string(), "intel-iommu,intremap=on", "VT-d")?;
    iommu_boot(&hv, &g.to_string(), "amd-iommu", "AMD-Vi")?;
    hostile_dmar_boot(
        &hv,
        "register base in RAM",
        0x10_0000,
        0,
        "register block overlaps RAM",
        true,
    )?;
    hostile_dmar_boot(
        &hv,
        "unit overruns the table",
        0xfed9_0000,
        0x40,
        "DMAR table malformed",
        false,
    )
}

/// The main boot: thirteen domains on `smp` CPUs, with edu and no IOMMU.
fn main_boot(hv: &std::path::Path, modules: &str, smp: u32) -> Result<()> {
    let t0 = std::time::Instant::now();
    let smp_arg = smp.to_string();
    let (status, log) = boot(
        hv,
        modules,
        &["-device", EDU, "-smp", &smp_arg],
        "iommu-selftest",
    )?;
    let pos = |needle: &str| log.find(needle);
    let mut problems = Vec::new();
    for needle in [
        // The same binary the GRUB boot loads through multiboot2; the RSDP scanned.
        "boot: multiboot v1, info at ",
        "acpi: RSDP at 0x",
        "iommu: no DMAR or IVRS table: devices are NOT protected from DMA",
        "bytes OVERWRITTEN by the device: DMA is NOT blocked",
        "MCFG: ECAM at 0xb0000000",
        "pci: 00:00.0 8086:29c0 class 060000",
        "(d1) ok xen_version(get_features) auto_translated_physmap",
        "(d1) ok console_io, count past the domain's memory -> EFAULT",
        "(d1) GUEST PASS",
        "domain 1 (abi): shut down, reason 0",
        "domain 2 (rogue): KILLED: nested page fault at gpa 0x20000000",
        "domain 3 (triple): KILLED: triple fault",
        "memory: 0 frames held by domains after all ended (all returned)",
        "sluice hypervisor: all domains ended; hypervisor alive",
        "(d4) GUEST PASS",
        "(d5) ok event from the peer arrives",
        "(d6) ok answer from the peer arrives",
        "(d6) ok gnttab copy into a page granted read-write",
        "(d6) ok copy from a page granted to another domain -> permission_denied",
        "(d5) ok the peer wrote its reply into the page granted to it",
        "(d5) ok the peer wrote into the page through its grant mapping",
        "(d6) ok map a page granted to another domain -> permission_denied",
        "(d5) ok gnttab setup_table(2): frame 0's GFN, frame 1 not mapped (INVALID_M2P_ENTRY)",
        "(d5) ok add_to_physmap(grant table frame 1)",
        "(d5) ok setup_table(33 frames) -> GNTST_general_error",
        "(d5) ok setup_table, unmapped frame_list -> GNTST_bad_virt_addr",
        "(d5) ok setup_table for the peer -> GNTST_permission_denied",
        "(d5) ok setup_table for domain 99 -> GNTST_bad_domain",
        "(d5) ok hostile setup_tables left the table at 2 frames of 32",
        "(d6) ok gnttab copy from grant 515 (the peer's second table frame)",
        "(d6) ok map_grant_ref of grant 515: the peer's read-only page appears",
        "(d6) ok copy from grant ref 2048 (past the peer's 4 frames) -> GNTST_bad_gntref",
        "(d5) ok add_to_physmap(grant table frame 3) grows the table to 4 frames",
        "(d5) ok setup_table(4): frames 0, 1, 3 at their GFNs, frame 2 INVALID_M2P_ENTRY",
        "(d5) ok the peer wrote into the page through grant 1000 (second table frame)",
        "(d5) GUEST PASS",
        "(d7) ok VIRQ_TIMER not before its deadline",
        "(d7) ok vcpu_op stop_periodic_timer (not running)",
        "(d7) ok stop_periodic_timer on vcpu 3 -> ENOENT",
        "(d7) ok periodic 999999 ns -> EINVAL",
        "(d7) ok periodic 2^62 ns (over STIME_DELTA_MAX) -> EINVAL",
        "(d7) ok periodic, unmapped pointer -> EFAULT",
        "(d7) ok periodic, kernel-half pointer -> EFAULT",
        "(d7) ok periodic on vcpu 3 -> ENOENT",
        "(d7) ok periodic 1 ms accepted, stopped",
        "(d7) ok vcpu_op set_periodic_timer 10 ms",
        "(d7) ok periodic VIRQ_TIMER: at least 5 events in 400 ms",
        "(d7) ok periodic VIRQ_TIMER: none earlier than its period allows",
        "(d7) ok vcpu_op stop_periodic_timer",
        "(d7) ok periodic stopped: no VIRQ_TIMER in the next 50 ms",
        "(d7) ok periodic 20 s: first event at once",
        "(d7) ok single-shot VIRQ_TIMER while periodic runs: not early, before the periodic one",
        "(d7) timer: periodic 10 ms: ",
        "(d7) GUEST PASS",
        "domain 9 (rogue-mapper): KILLED: nested page fault",
        "write to a read-only mapping",
        "(d8) ok the mapper's write through its read-write mapping arrived",
        "(d8) ok the read-only page survived the mapper's write attempt",
        "(d8) GUEST PASS",
        "domain 12 (msr): KILLED: triple fault",
        "(d6) GUEST PASS",
        "domain 13 (smp): created, 8192 KiB, 2 vCPUs",
        "(d13) ok stop_periodic_timer on vcpus 0 and 1",
        "(d13) ok stop_periodic_timer on vcpu 2 (of 2) -> ENOENT",
        "(d13) ok vcpu_op initialise vcpu 1",
        "(d13) ok vcpu 1 runs",
        "(d13) ok vcpu 1 makes hypercalls (xen_version)",
        "(d13) ok up again: vcpu 1 resumes after its VCPUOP_down",
        "(d13) GUEST PASS",
    ] {
        if pos(needle).is_none() {
            problems.push(format!("missing: {needle}"));
        }
    }
    // The killed domains die while the ABI domain is still running; it finishes after.
    match (pos("domain 2 (rogue): KILLED"), pos("(d1) GUEST PASS")) {
        (Some(k), Some(p)) if k < p => {}
        _ => problems.push("the rogue domain was not killed before domain 1 finished".into()),
    }
    // Two guests that never yield are preempted by the LAPIC tick (time slices). With
    // one CPU they also interleave; with more they may run side by side.
    for name in ["spin1", "spin2"] {
        let preempted = log
            .lines()
            .filter(|l| l.contains(&format!("({name}): shut down, reason 0 (")))
            .find_map(|l| l.rsplit_once(" (")?.1.strip_suffix(" preemptions)"))
            .and_then(|n| n.parse::<u64>().ok());
        match preempted {
            Some(n) if n > 0 => {}
            _ => problems.push(format!(
                "spinning domain {name} was not preempted (time slices): {preempted:?}"
            )),
        }
    }
    let ids: Vec<String> = (0..smp).map(|i| i.to_string()).collect();
    let madt = format!("MADT: {smp} CPUs (APIC ids [{}])", ids.join(", "));
    if pos(&madt).is_none() {
        problems.push(format!("missing: {madt}"));
    }
    let cpus_line = format!("smp: {smp} of {smp} CPUs started");
    if pos(&cpus_line).is_none() {
        problems.push(format!("missing: {cpus_line}"));
    }
    // Every CPU ran guest code: a hypercall (VMMCALL) exits on it.
    let per_cpu = cpu_stats(&log);
    for cpu in 0..smp {
        match per_cpu.iter().find(|s| s.0 == cpu) {
            Some(&(_, slices, hypercalls)) if slices > 0 && hypercalls > 0 => {}
            Some(&(_, slices, hypercalls)) => problems.push(format!(
                "CPU {cpu} ran no guest work ({slices} slices, {hypercalls} hypercalls)"
            )),
            None => problems.push(format!("no scheduler statistics for CPU {cpu}")),
        }
    }
    let oks = log.lines().filter(|l| l.contains(") ok ")).count();
    if oks < 100 {
        problems.push(format!("only {oks} guest checks passed"));
    }
    problems.extend(log_problems(&log, status, ""));
    for l in log.lines().filter(|l| {
        [
            "acpi:", "pci:", "sched:", "smp:", "spinner:", "KILLED", ") ok ", "bench:", "timer:",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        eprintln!("  {l}");
    }
    if !problems.is_empty() {
        eprintln!("--- serial log ---\n{log}");
        bail!("hypervisor suite (-smp {smp}): {}", problems.join("; "));
    }
    eprintln!(
        "  -smp {smp}: {oks} guest ABI checks passed; 4 faulting domains killed; every CPU ran guest work; hypervisor alive ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `sched: CPU n (APIC id a): s slices, e exits, h hypercalls, ...` lines: (n, s, h).
fn cpu_stats(log: &str) -> Vec<(u32, u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("sched: CPU ")?;
            let (cpu, rest) = rest.split_once(' ')?;
            let (_, rest) = rest.split_once("): ")?;
            let mut words = rest.split(' ');
            let slices = words.next()?.parse().ok()?;
            let hypercalls = words.nth(3)?.parse().ok()?;
            Some((cpu.parse().ok()?, slices, hypercalls))
        })
        .collect()
}

/// Each of `needles` the serial log lacks, as a problem (prefixed with `tag`).
pub(crate) fn missing(log: &str, needles: &[&str], tag: &str) -> Vec<String> {
    needles
        .iter()
        .filter(|n| !log.contains(*n))
        .map(|n| format!("{tag}missing: {n}"))
        .collect()
}

/// What a boot's serial log and exit status say went wrong, each prefixed with `tag`:
/// every line with FAIL (a guest's failed check) or HYPERVISOR (a hypervisor bug), and an
/// exit status other than PASS_STATUS.
pub(crate) fn log_problems(log: &str, status: i32, tag: &str) -> Vec<String> {
    let mut problems: Vec<String> = log
        .lines()
        .filter(|l| l.contains("FAIL") || l.contains("HYPERVISOR"))
        .map(|l| format!("{tag}log: {l}"))
        .collect();
    if status != PASS_STATUS {
        problems.push(format!("{tag}exit status {status}, want {PASS_STATUS}"));
    }
    problems
}
