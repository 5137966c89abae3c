//! Command lines from the boot loader reach the domain whole, or the domain is refused.

use super::*;
use crate::domain::CreateError;
use crate::multiboot::{BootInfo, MAGIC_V1, MODULE_CMDLINE_MAX};

/// A multiboot v1 information block at `pa` with one module per command line
/// (module `i` spans an arbitrary 4 KiB range; only the command lines matter here).
fn v1_info(pa: u64, cmdlines: &[&str]) {
    let mods = pa + 0x100;
    let strings = pa + 0x1000;
    let mut info = [0u8; 48];
    info[0..4].copy_from_slice(&(1u32 << 3).to_le_bytes()); // flags: mods_* valid
    info[20..24].copy_from_slice(&(cmdlines.len() as u32).to_le_bytes());
    info[24..28].copy_from_slice(&(mods as u32).to_le_bytes());
    phys::write(pa, &info);
    let mut at = strings;
    for (i, c) in cmdlines.iter().enumerate() {
        let mut m = [0u8; 16];
        m[0..4].copy_from_slice(&(0x80_0000 + i as u32 * 0x1000).to_le_bytes());
        m[4..8].copy_from_slice(&(0x80_1000 + i as u32 * 0x1000).to_le_bytes());
        m[8..12].copy_from_slice(&(at as u32).to_le_bytes());
        phys::write(mods + 16 * i as u64, &m);
        phys::write(at, c.as_bytes());
        phys::write(at + c.len() as u64, &[0]);
        at += c.len() as u64 + 1;
    }
}

#[test]
fn module_command_lines_are_whole_up_to_linux_limit_and_longer_ones_flagged() {
    let path = "/check/work/main/build/kernel/vmlinux-6.1.0-57-amd64";
    // The line that lost its `console=hvc0 loglevel=7` to a 128-byte buffer in CI.
    let ci = format!(
        "{path} name=linux memory=128 vcpus=2 assign=00:07.0,00:08.0 earlyprintk=xen console=hvc0 loglevel=7"
    );
    let exact = "x".repeat(MODULE_CMDLINE_MAX);
    let over = "y".repeat(MODULE_CMDLINE_MAX + 1);
    let pa = 0x9_0000;
    v1_info(pa, &[&ci, &exact, &over, ""]);
    let boot = BootInfo::new(MAGIC_V1, pa).unwrap();
    assert_eq!(boot.module_count(), 4);
    let m = boot.module(0);
    assert!(!m.too_long);
    assert_eq!(m.cmdline(), ci);
    assert!(m.args().ends_with("console=hvc0 loglevel=7"));
    let m = boot.module(1);
    assert!(!m.too_long, "exactly the limit fits");
    assert_eq!(m.cmdline().len(), MODULE_CMDLINE_MAX);
    assert!(boot.module(2).too_long);
    let m = boot.module(3);
    assert!(!m.too_long);
    assert_eq!(m.cmdline(), "");
}

#[test]
fn the_domain_gets_its_whole_command_line_or_is_not_created() {
    let (mut fa, mut spec) = allocator();
    let long = format!("console=hvc0 {} end", "a=b ".repeat(500));
    spec.cmdline = &long;
    let d = Domain::create(&Svm::new(), &mut fa, 1, &spec, Clock::calibrate()).unwrap();
    let mut got = vec![0u8; long.len() + 1];
    d.read_gpa(Gpa(0x2000), &mut got).unwrap();
    assert_eq!(&got[..long.len()], long.as_bytes());
    assert_eq!(got[long.len()], 0, "NUL-terminated");
    // No room for the NUL in its page: refused, never cut.
    let page = "c".repeat(4096);
    spec.cmdline = &page;
    assert!(matches!(
        Domain::create(&Svm::new(), &mut fa, 2, &spec, Clock::calibrate()),
        Err(CreateError::CmdlineTooLong)
    ));
}
