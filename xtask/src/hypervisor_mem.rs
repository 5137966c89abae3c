//! The hypervisor suite's hostile-memory boot (issue 11, items 1-3): three test-guest
//! domains (`hm-granter` C, `hm-mapper` A, `hm-regrant` B; see
//! hypervisor/guests/testguest/src/hostile_mem.rs) on two CPUs. C grants to A, A
//! re-grants C's frames, its grant table frame and a read-only mapping to B (refused),
//! asks the hypervisor to write into C's read-only grant by every path (refused, the page
//! unchanged), C dies while A maps its page (revoked before the frame is freed), A's
//! hypercall page aimed at B's read-only grant is a #GP (A triple-faults, is killed).
//! Exit status 33 also means no frame leaked and no free was refused by the frame table.

use crate::hypervisor::boot;
use crate::util::{cargo, root, run};
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use std::process::Command;

pub fn hostile_mem_boot(hv: &Path, guest: &Path) -> Result<()> {
    let t0 = std::time::Instant::now();
    let g = guest.display();
    let ids = "c=1 a=2 b=3";
    let modules = format!(
        "{g} name=hm-granter role=hm-granter {ids},{g} name=hm-mapper role=hm-mapper {ids},\
         {g} name=hm-regrant role=hm-regrant {ids}"
    );
    let (status, log) = boot(hv, &modules, &["-smp", "2"], "")?;
    let mut problems = Vec::new();
    problems.extend(crate::hypervisor::missing(
        &log,
        &[
            "(d1) ok hm-granter: mapped twice, unmapped once: still reading and writing",
            "(d1) ok hm-granter: last unmap clears GTF_reading/GTF_writing",
            "(d1) ok hm-granter: a failed map (bad host address) leaves no flag set",
            "(d1) ok hm-granter: a grant copy unpins (no flag left)",
            "(d1) ok hm-granter: grant 8 still mapped by A (reading and writing) as C dies",
            "(d1) ok hm-granter: the read-only page survived every hypervisor write path",
            "(d1) GUEST PASS",
            "(d2) ok hm-mapper: xen_version output into it -> EFAULT",
            "(d2) ok hm-mapper: memory_map buffer in it -> EFAULT",
            "(d2) ok hm-mapper: query_size argument in it -> EFAULT",
            "(d2) ok hm-mapper: alloc_unbound argument in it -> EFAULT",
            "(d2) ok hm-mapper: setup_table frame_list in it -> GNTST_bad_virt_addr",
            "(d2) ok hm-mapper: grant copy into it by GFN -> bad_page",
            "(d2) ok hm-mapper: grant copy into it through our own grant -> bad_page",
            "(d2) ok hm-mapper: grant copy from it by GFN (not our frame) -> bad_page",
            "(d2) ok hm-mapper: C's read-only page unchanged",
            "(d2) ok hm-mapper: B tried the re-grants",
            "(d2) ok hm-mapper: C died: its page is gone, our own RAM is back",
            "(d2) ok hm-mapper: unmap of the revoked mapping -> bad_handle",
            "(d2) hm-mapper: all checks passed; hypercall page into a read-only grant next",
            "domain 2 (hm-mapper): KILLED: triple fault",
            "(d3) ok hm-regrant: map C's frame re-granted by A -> bad_page",
            "(d3) ok hm-regrant: map C's read-only frame re-granted by A -> bad_page",
            "(d3) ok hm-regrant: map A's grant table frame (a hypervisor frame) -> bad_page",
            "(d3) ok hm-regrant: copy from C's frame re-granted by A -> bad_page",
            "(d3) ok hm-regrant: A died: its pin on our grant 9 released, its page revoked from us",
            "(d3) ok hm-regrant: the hypercall page was not written into our read-only grant",
            "(d3) GUEST PASS",
            "memory: 0 frames held by domains after all ended (all returned)",
            "sluice hypervisor: all domains ended; hypervisor alive",
        ],
        "",
    ));
    // C dies after A's stage 3 and before A sees its mapping revoked.
    let pos = |s: &str| log.find(s);
    match (
        pos("domain 1 (hm-granter): shut down"),
        pos("(d2) ok hm-mapper: C died"),
    ) {
        (Some(d), Some(r)) if d < r => {}
        _ => problems.push("C did not die before A saw its mapping revoked".into()),
    }
    problems.extend(crate::hypervisor::log_problems(&log, status, ""));
    if !problems.is_empty() {
        eprintln!("--- serial log ---\n{log}");
        bail!("hypervisor suite, hostile memory: {}", problems.join("; "));
    }
    let oks = log.lines().filter(|l| l.contains(") ok hm-")).count();
    eprintln!(
        "  hostile memory (3 domains): {oks} checks passed; re-grants refused, read-only grant never written, C's frames revoked before freeing; hypervisor alive ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The stale-TLB boot (SECURITY.md class 1): `tlb-granter` G grants its secret page to
/// `tlb-reader` M (two vCPUs); M's vCPU 1 reads it in a tight loop while vCPU 0 unmaps
/// it beside it on the other CPU; after the unmap returned, vCPU 1 must only ever read
/// M's own RAM (G then dies, its frames freed, and vCPU 1 reads on).
pub fn stale_tlb_boot(hv: &Path, guest: &Path) -> Result<()> {
    let t0 = std::time::Instant::now();
    let g = guest.display();
    let modules = format!(
        "{g} name=tlb-granter role=tlb-granter m=2,{g} name=tlb-reader role=tlb-reader g=1 vcpus=2"
    );
    let (status, log) = boot(hv, &modules, &["-smp", "2"], "")?;
    let mut problems = Vec::new();
    problems.extend(crate::hypervisor::missing(
        &log,
        &[
            "(d1) ok tlb-granter: M mapped grant 8",
            "(d1) ok tlb-granter: M unmapped grant 8",
            "(d1) GUEST PASS",
            "(d2) ok tlb-reader: vCPU 1 reads G's page",
            "(d2) ok tlb-reader: vCPU 1 was running beside the unmap",
            "(d2) ok tlb-reader: vCPU 1 reads our own RAM after the unmap",
            "(d2) ok tlb-reader: G died (its frames freed)",
            "(d2) ok tlb-reader: vCPU 1 read on after G died",
            "(d2) ok tlb-reader: vCPU 1 never read G's frame after the unmap returned",
            "(d2) GUEST PASS",
            "memory: 0 frames held by domains after all ended (all returned)",
            "sluice hypervisor: all domains ended; hypervisor alive",
        ],
        "",
    ));
    problems.extend(crate::hypervisor::log_problems(&log, status, ""));
    if !problems.is_empty() {
        eprintln!("--- serial log ---\n{log}");
        bail!("hypervisor suite, stale TLB: {}", problems.join("; "));
    }
    let counts = log
        .lines()
        .find(|l| l.contains("tlb-reader: vCPU 1:"))
        .unwrap_or("")
        .trim();
    eprintln!(
        "  stale TLB (2 domains, reader on 2 vCPUs): no read of the granter's frame after the unmap returned; {counts} ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The hypervisor core's host unit tests (its `lib` target over a fake machine: frame
/// table, grants, event channels, hypercalls, the hostile cases above) with clippy; run
/// in `cargo xtask test`'s static phase (the hypervisor is its own workspace, built for
/// x86_64-unknown-none by default, so they need the host target named).
pub fn host_tests() -> Result<()> {
    let dir = root().join("hypervisor");
    let out = Command::new("rustc").arg("-vV").output()?;
    let info = String::from_utf8_lossy(&out.stdout);
    let host = info
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| anyhow!("rustc -vV names no host"))?
        .to_string();
    let cargo_in = || {
        let mut c = cargo();
        c.current_dir(&dir)
            .env("CARGO_TARGET_DIR", dir.join("target"));
        c
    };
    run(cargo_in()
        .args(["clippy", "--lib", "--tests", "--target", &host])
        .args(["--", "-D", "warnings"]))?;
    run(cargo_in().args(["test", "--lib", "--target", &host]))
}
