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
//! Then the multiboot2 path: the same hypervisor binary and two test-guest domains on a
//! GRUB rescue ISO (`multiboot2` + `module2`), booted from `-cdrom`; the log must say the
//! loader, memory map, modules, command line and RSDP came from multiboot2's tags, and the
//! verdict is the same isa-debug-exit status. Before it, the multiboot2 info parser
//! (hypervisor/src/multiboot2.rs, compiled in here) is checked on synthesised and hostile
//! infos.

use crate::util::{cargo, root, run};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

#[allow(dead_code)]
#[path = "../../hypervisor/src/multiboot2.rs"]
mod multiboot2;

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

/// A DMAR with one DRHD (INCLUDE_PCI_ALL) at `base` whose length field claims `extra`
/// more bytes than the table holds; checksum correct.
fn dmar_table(base: u64, extra: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"DMAR");
    t.extend_from_slice(&0u32.to_le_bytes()); // length, below
    t.push(1); // revision
    t.push(0); // checksum, below
    t.extend_from_slice(b"SLUICE");
    t.extend_from_slice(b"HOSTILE ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"SLCE");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.push(38); // host address width - 1
    t.push(1); // flags: INTR_REMAP
    t.extend_from_slice(&[0; 10]);
    t.extend_from_slice(&0u16.to_le_bytes()); // DRHD
    t.extend_from_slice(&(16 + extra).to_le_bytes());
    t.push(1); // INCLUDE_PCI_ALL
    t.push(0);
    t.extend_from_slice(&0u16.to_le_bytes()); // segment
    t.extend_from_slice(&base.to_le_bytes());
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

/// No IOMMU device, a hostile DMAR from `-acpitable`, no domains: the hypervisor must log
/// why the IOMMU is unusable, that devices are not protected, and carry on.
fn hostile_dmar_boot(
    hv: &std::path::Path,
    what: &str,
    base: u64,
    extra: u16,
    error: &str,
    phantom_cpu: bool,
) -> Result<()> {
    let path = root().join(format!(
        "hypervisor/target/hostile-dmar-{base:x}-{extra}.bin"
    ));
    std::fs::write(&path, dmar_table(base, extra))?;
    let table = format!("file={}", path.display());
    // With `smp-phantom-cpu` the hypervisor also starts APIC id 7, which no CPU has:
    // it must time out, say so, and carry on.
    // Without it, one CPU: the uniprocessor path (no AP to start).
    let (cmdline, smp) = if phantom_cpu {
        ("smp-phantom-cpu", "2")
    } else {
        ("", "1")
    };
    let (status, log) = boot(hv, "", &["-acpitable", &table, "-smp", smp], cmdline)?;
    let mut problems = Vec::new();
    if !phantom_cpu && !log.contains("smp: 1 of 1 CPUs started") {
        problems.push("missing: smp: 1 of 1 CPUs started (-smp 1)".into());
    }
    if phantom_cpu {
        match log.lines().find(|l| l.contains("APIC id 7 never answered")) {
            Some(l) if log.contains("smp: 2 of 2 CPUs started") => {
                eprintln!("  phantom CPU: {l}")
            }
            _ => {
                problems.push("missing: smp: APIC id 7 never answered; 2 of 2 CPUs started".into())
            }
        }
    }
    let line = log
        .lines()
        .find(|l| l.starts_with("iommu: ") && l.contains(error));
    match line {
        Some(l) if l.ends_with(": devices are NOT protected from DMA") => {
            eprintln!("  hostile DMAR ({what}): {l}")
        }
        _ => problems.push(format!(
            "missing: iommu: ...{error}...: devices are NOT protected from DMA"
        )),
    }
    if !log.contains("DMAR: 0x") {
        problems.push("the hostile DMAR was not found".into());
    }
    if !log.contains("sluice hypervisor: all domains ended; hypervisor alive")
        || status != PASS_STATUS
    {
        problems.push(format!("hypervisor did not survive (exit status {status})"));
    }
    if !problems.is_empty() {
        eprintln!("--- serial log ---\n{log}");
        bail!(
            "hypervisor suite, hostile DMAR ({what}): {}",
            problems.join("; ")
        );
    }
    Ok(())
}

/// `iommu: selftest: edu BDF (BAR0 ...) DMA-writes N bytes to hypervisor frame 0x...`:
/// the edu function and the frame.
fn selftest_target(log: &str) -> Option<(String, String)> {
    let line = log
        .lines()
        .find(|l| l.starts_with("iommu: selftest: edu "))?;
    let bdf = line
        .strip_prefix("iommu: selftest: edu ")?
        .split(' ')
        .next()?;
    let frame = line.rsplit(' ').next()?;
    Some((bdf.to_string(), frame.to_string()))
}

/// One domain under an emulated IOMMU with edu: every device blocked, edu's DMA into a
/// hypervisor frame blocked and (VT-d) the fault naming edu and the frame logged.
fn iommu_boot(hv: &std::path::Path, guest: &str, iommu: &str, vendor: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let modules = format!("{guest} name=abi role=abi");
    // The AMD-Vi boot runs on one CPU: the uniprocessor path, with a domain.
    let smp = if vendor == "AMD-Vi" { "1" } else { "2" };
    let (status, log) = boot(
        hv,
        &modules,
        &["-device", iommu, "-device", EDU, "-smp", smp],
        "iommu-selftest",
    )?;
    let pos = |needle: &str| log.find(needle);
    let mut problems = Vec::new();
    let cpus_line = format!("smp: {smp} of {smp} CPUs started");
    if pos(&cpus_line).is_none() {
        problems.push(format!("missing: {cpus_line}"));
    }
    let unit = log
        .lines()
        .find(|l| l.starts_with(&format!("iommu: {vendor} at 0x")));
    match unit {
        Some(l) => {
            let blocked = l
                .rsplit_once(" all ")
                .and_then(|(_, r)| r.strip_suffix(" devices blocked"))
                .and_then(|n| n.parse::<u32>().ok());
            if blocked.is_none_or(|n| n == 0) {
                problems.push(format!("not all devices blocked: {l}"));
            }
            if vendor == "VT-d" && !l.contains("(39-bit, QI, IR") {
                problems.push(format!("VT-d without 39-bit, QI and IR: {l}"));
            }
        }
        None => problems.push(format!("missing: iommu: {vendor} at 0x...")),
    }
    match (
        pos(&format!("iommu: {vendor} at")),
        pos("domain 1 (abi): created"),
    ) {
        (Some(a), Some(b)) if a < b => {}
        _ => problems.push("the IOMMU was not up before the first domain".into()),
    }
    match selftest_target(&log) {
        Some((bdf, frame)) => {
            let unchanged =
                format!("iommu: selftest: frame {frame} unchanged: the DMA was blocked");
            if pos(&unchanged).is_none() {
                problems.push(format!("missing: {unchanged}"));
            }
            let fault = format!("iommu: fault: {bdf} write at {frame}:");
            let reported =
                format!("iommu: selftest: {vendor} reported the fault: edu {bdf} write at {frame}");
            // QEMU 7.2's amd-iommu never writes its event log (platform.md): a fault
            // line is required of VT-d only, and checked for AMD-Vi only when one came.
            if vendor == "VT-d" || pos(&format!("iommu: fault: {bdf}")).is_some() {
                for needle in [&fault, &reported] {
                    if pos(needle).is_none() {
                        problems.push(format!("missing: {needle}"));
                    }
                }
            }
        }
        None => problems.push("missing: iommu: selftest: edu ... DMA-writes".into()),
    }
    for needle in [
        "domain 1 (abi): IOMMU domain 1 (no devices assigned)",
        "(d1) GUEST PASS",
        "domain 1 (abi): shut down, reason 0",
        "iommu: 0 IOMMU domains and",
        "0 bad frees: all returned)",
        "memory: 0 frames held by domains after all ended (all returned)",
        "sluice hypervisor: all domains ended; hypervisor alive",
    ] {
        if pos(needle).is_none() {
            problems.push(format!("missing: {needle}"));
        }
    }
    for l in log.lines().filter(|l| {
        l.contains("FAIL")
            || l.contains("HYPERVISOR")
            || l.contains("NOT protected")
            || l.contains("NOT blocked")
    }) {
        problems.push(format!("log: {l}"));
    }
    if status != PASS_STATUS {
        problems.push(format!("exit status {status}, want {PASS_STATUS}"));
    }
    for l in log.lines().filter(|l| l.starts_with("iommu:")) {
        eprintln!("  {l}");
    }
    if !problems.is_empty() {
        eprintln!("--- serial log ---\n{log}");
        bail!("hypervisor suite, {iommu}: {}", problems.join("; "));
    }
    eprintln!(
        "  -device {iommu} -smp {smp}: every device blocked, edu DMA blocked ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A multiboot2 info from `(type, body)` tags (each padded to 8), with the end tag.
fn mb2_info(tags: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0u8; 8];
    for (ty, body) in tags {
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(body.len() as u32 + 8).to_le_bytes());
        v.extend_from_slice(body);
        while !v.len().is_multiple_of(8) {
            v.push(0);
        }
    }
    v.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    let n = v.len() as u32;
    v[..4].copy_from_slice(&n.to_le_bytes());
    v
}

/// The hypervisor's multiboot2 parser on synthesised infos: the fields of a good one, and
/// an error (never a panic or a read past the end) for each hostile one.
fn multiboot2_parser_checks() -> Result<()> {
    use multiboot2::{Error, Info};
    let le = |xs: &[u64], widths: &[usize]| -> Vec<u8> {
        xs.iter()
            .zip(widths)
            .flat_map(|(x, w)| x.to_le_bytes()[..*w].to_vec())
            .collect()
    };
    let mut module = le(&[0x20_0000, 0x30_0000], &[4, 4]);
    module.extend_from_slice(b"name=a role=abi\0");
    let mut mmap = le(&[24, 0], &[4, 4]);
    mmap.extend(le(&[0, 0x9_f000, 1, 0], &[8, 8, 4, 4]));
    mmap.extend(le(&[0x10_0000, 0x700_0000, 1, 0], &[8, 8, 4, 4]));
    mmap.extend(le(&[0xfee0_0000, 0x1000, 2, 0], &[8, 8, 4, 4]));
    let mut rsdp = b"RSD PTR ".to_vec();
    rsdp.resize(20, 0);
    let good = mb2_info(&[
        (
            multiboot2::TAG_CMDLINE,
            b"/boot/hv iommu-selftest\0".to_vec(),
        ),
        (multiboot2::TAG_MODULE, module.clone()),
        (99, vec![1, 2, 3]),
        (multiboot2::TAG_MMAP, mmap.clone()),
        (multiboot2::TAG_ACPI_OLD, rsdp.clone()),
    ]);
    let mut problems = Vec::new();
    match Info::parse(&good) {
        Ok(i) => {
            let mut entries = Vec::new();
            i.for_each_entry(|b, l, t| entries.push((b, l, t)));
            let mods: Vec<_> = i.modules().collect();
            if i.cmdline() != Some("/boot/hv iommu-selftest")
                || entries
                    != [
                        (0, 0x9_f000, 1),
                        (0x10_0000, 0x700_0000, 1),
                        (0xfee0_0000, 0x1000, 2),
                    ]
                || mods.len() != 1
                || (mods[0].start, mods[0].end, mods[0].cmdline)
                    != (0x20_0000, 0x30_0000, "name=a role=abi")
                || i.rsdp().map(|r| r.len()) != Some(20)
            {
                problems.push(format!(
                    "good info misparsed: {:?} {entries:?} {mods:?}",
                    i.cmdline()
                ));
            }
        }
        Err(e) => problems.push(format!("good info refused: {e}")),
    }
    // Both ACPI tags: the 2.0+ copy (36 bytes, tag 15) is the one used.
    let mut rsdp2 = b"RSD PTR ".to_vec();
    rsdp2.resize(36, 2);
    let both = mb2_info(&[
        (multiboot2::TAG_ACPI_OLD, rsdp.clone()),
        (multiboot2::TAG_ACPI_NEW, rsdp2.clone()),
    ]);
    match Info::parse(&both).map(|i| i.rsdp().map(<[u8]>::to_vec)) {
        Ok(Some(r)) if r == rsdp2 => {}
        other => problems.push(format!("ACPI 2.0 tag not preferred: {other:?}")),
    }
    // Hostile infos: each must give the named error.
    let mut cases: Vec<(&str, Vec<u8>, Error)> = Vec::new();
    let mut big = good.clone();
    big[..4].copy_from_slice(&(good.len() as u32 + 8).to_le_bytes());
    cases.push((
        "total_size past the copy",
        big,
        Error::TotalSize(good.len() as u32 + 8),
    ));
    cases.push((
        "total_size 4",
        vec![4, 0, 0, 0, 0, 0, 0, 0],
        Error::TotalSize(4),
    ));
    let mut huge_tag = good.clone();
    huge_tag[12..16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    cases.push(("tag size 0xfffffff0", huge_tag, Error::TagSize(8)));
    let mut tiny_tag = good.clone();
    tiny_tag[12..16].copy_from_slice(&4u32.to_le_bytes());
    cases.push(("tag size 4", tiny_tag, Error::TagSize(8)));
    let short_mod = mb2_info(&[(multiboot2::TAG_MODULE, vec![0; 4])]);
    cases.push(("module tag of 12 bytes", short_mod, Error::TagTooShort(8)));
    let mut small_entries = mmap.clone();
    small_entries[..4].copy_from_slice(&8u32.to_le_bytes());
    let bad_mmap = mb2_info(&[(multiboot2::TAG_MMAP, small_entries)]);
    cases.push(("memory map entry size 8", bad_mmap, Error::MmapEntrySize(8)));
    let short_acpi = mb2_info(&[(multiboot2::TAG_ACPI_NEW, rsdp)]);
    cases.push((
        "ACPI 2.0 tag of 20 bytes",
        short_acpi,
        Error::TagTooShort(8),
    ));
    let mut no_end = good.clone();
    let n = no_end.len() - 8;
    no_end.truncate(n);
    no_end[..4].copy_from_slice(&(n as u32).to_le_bytes());
    cases.push(("no end tag", no_end, Error::NoEndTag));
    for (what, bytes, want) in &cases {
        match Info::parse(bytes) {
            Err(e) if e == *want => {}
            other => problems.push(format!("{what}: {:?}, want {want:?}", other.err())),
        }
    }
    if !problems.is_empty() {
        bail!("multiboot2 parser: {}", problems.join("; "));
    }
    eprintln!(
        "  multiboot2 parser: a synthesised info parsed; {} hostile infos refused with their errors",
        cases.len()
    );
    Ok(())
}

/// GRUB (BIOS, from a rescue ISO) loads the hypervisor with `multiboot2` and two test-guest
/// domains with `module2`; the hypervisor must boot through multiboot2 with its memory
/// map, modules, command line and RSDP from the tags, and both domains pass.
fn grub_multiboot2_boot(hv: &std::path::Path, guest: &std::path::Path) -> Result<()> {
    let t0 = std::time::Instant::now();
    for tool in ["grub-mkrescue", "xorriso", "mformat"] {
        if !crate::util::have(tool) {
            bail!("{tool} is missing (grub-pc-bin, grub-common, xorriso, mtools): run `cargo xtask setup`");
        }
    }
    let target = root().join("hypervisor/target");
    let tree = target.join("mb2-iso");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("boot/grub"))?;
    std::fs::copy(hv, tree.join("boot/hv"))?;
    std::fs::copy(guest, tree.join("boot/guest"))?;
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        "set timeout=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         menuentry sluice {\n\
         \x20 multiboot2 /boot/hv iommu-selftest\n\
         \x20 module2 /boot/guest name=abi role=abi\n\
         \x20 module2 /boot/guest name=timer role=timer\n\
         \x20 boot\n\
         }\n",
    )?;
    let iso = target.join("sluice-mb2.iso");
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .output()
        .context("cannot run grub-mkrescue")?;
    if !out.status.success() {
        bail!(
            "grub-mkrescue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("timeout")
        .args(["60", "qemu-system-x86_64", "-M", "q35", "-accel", "tcg"])
        .args(["-cpu", "EPYC,+svm,+npt", "-m", "256", "-smp", "2"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-device", EDU, "-cdrom"])
        .arg(&iso)
        .output()
        .context("cannot run qemu-system-x86_64")?;
    let status = out.status.code().unwrap_or(-1);
    let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let mut problems = Vec::new();
    problems.extend(missing(
        &log,
        &[
            "boot: multiboot2 (GRUB), info at ",
            "memory map from its tag; 2 module tags; RSDP from its ACPI",
            "module 0: ",
            "'name=abi role=abi'",
            "module 1: ",
            "'name=timer role=timer'",
            "2 modules",
            "acpi: RSDP from the multiboot2 tag; MADT: 2 CPUs",
            // The command line's tag: `iommu-selftest` ran.
            "bytes OVERWRITTEN by the device: DMA is NOT blocked",
            "domain 1 (abi): created",
            "domain 2 (timer): created",
            "(d1) GUEST PASS",
            "(d2) ok VIRQ_TIMER not before its deadline",
            "(d2) ok periodic VIRQ_TIMER: none earlier than its period allows",
            "(d2) ok periodic stopped: no VIRQ_TIMER in the next 50 ms",
            "(d2) GUEST PASS",
            "memory: 0 frames held by domains after all ended (all returned)",
            "sluice hypervisor: all domains ended; hypervisor alive",
        ],
        "",
    ));
    problems.extend(log_problems(&log, status, ""));
    for l in log
        .lines()
        .filter(|l| l.starts_with("boot:") || l.starts_with("acpi:") || l.starts_with("module "))
    {
        eprintln!("  {l}");
    }
    if !problems.is_empty() {
        eprintln!("--- serial log ---\n{log}");
        bail!("GRUB multiboot2 boot: {}", problems.join("; "));
    }
    eprintln!(
        "  GRUB multiboot2 (-cdrom): 2 domains passed; hypervisor alive ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
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
