//! The hypervisor suite's IOMMU boots: a short boot with one domain under QEMU's
//! intel-iommu and amd-iommu (every device blocked, edu's DMA into a hypervisor frame
//! blocked, the VT-d fault naming edu and that frame logged), and boots with no IOMMU
//! device and a hostile DMAR table from `-acpitable`, where the hypervisor must say why
//! the IOMMU is unusable, that devices are not protected, and carry on.

use super::{boot, EDU, PASS_STATUS};
use crate::util::root;
use anyhow::{bail, Result};

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
pub(super) fn hostile_dmar_boot(
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
pub(super) fn iommu_boot(
    hv: &std::path::Path,
    guest: &str,
    iommu: &str,
    vendor: &str,
) -> Result<()> {
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
