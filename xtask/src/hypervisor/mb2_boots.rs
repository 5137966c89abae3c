//! The hypervisor suite's multiboot2 path: the hypervisor's own multiboot2 info parser
//! (hypervisor/src/multiboot2.rs, compiled in here) checked on synthesised and hostile
//! infos, then a boot from a GRUB rescue ISO (`multiboot2` + `module2`, `-cdrom`) whose
//! log must show that the loader, memory map, modules, command line and RSDP came from
//! multiboot2's tags, with the same isa-debug-exit verdict as the `-kernel` boots.

use super::{log_problems, missing, EDU};
use crate::util::root;
use anyhow::{bail, Context, Result};
use std::process::Command;

#[allow(dead_code)]
#[path = "../../../hypervisor/src/multiboot2.rs"]
mod multiboot2;

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
pub(super) fn multiboot2_parser_checks() -> Result<()> {
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
pub(super) fn grub_multiboot2_boot(hv: &std::path::Path, guest: &std::path::Path) -> Result<()> {
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
