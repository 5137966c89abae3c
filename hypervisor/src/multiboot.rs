//! Multiboot v1 boot information: the memory map and the modules (`-initrd`).

use crate::arch::phys;

fn r32(pa: u64) -> u32 {
    let mut b = [0u8; 4];
    phys::read(pa, &mut b);
    u32::from_le_bytes(b)
}
fn r64(pa: u64) -> u64 {
    let mut b = [0u8; 8];
    phys::read(pa, &mut b);
    u64::from_le_bytes(b)
}

pub struct Module {
    pub start: u64,
    pub end: u64,
    /// The module's command line (QEMU: `FILE ARGS`).
    pub cmdline: [u8; 128],
    pub cmdline_len: usize,
}

impl Module {
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("?")
    }
    /// The arguments after the file name.
    pub fn args(&self) -> &str {
        let c = self.cmdline();
        c.split_once(' ').map_or("", |(_, a)| a.trim())
    }
}

pub struct BootInfo {
    pa: u64,
}

impl BootInfo {
    pub fn new(pa: u64) -> Self {
        BootInfo { pa }
    }

    /// Calls `f(base, len, type)` for each memory-map entry (1 usable, 3 ACPI reclaimable,
    /// 4 ACPI NVS, 5 bad memory, others reserved); without a map, the upper memory as usable.
    pub fn for_each_entry(&self, mut f: impl FnMut(u64, u64, u32)) {
        let flags = r32(self.pa);
        if flags & (1 << 6) != 0 {
            let len = r32(self.pa + 44) as u64;
            let addr = r32(self.pa + 48) as u64;
            let mut p = addr;
            while p < addr + len {
                let size = r32(p) as u64;
                let (base, l, ty) = (r64(p + 4), r64(p + 12), r32(p + 20));
                f(base, l, ty);
                p += size + 4;
            }
        } else if flags & 1 != 0 {
            f(0x10_0000, r32(self.pa + 8) as u64 * 1024, 1);
        }
    }

    pub fn module_count(&self) -> usize {
        if r32(self.pa) & (1 << 3) != 0 {
            r32(self.pa + 20).min(16) as usize
        } else {
            0
        }
    }

    pub fn module(&self, i: usize) -> Module {
        let m = r32(self.pa + 24) as u64 + 16 * i as u64;
        let mut cmdline = [0u8; 128];
        let mut len = 0;
        let s = r32(m + 8) as u64;
        if s != 0 {
            while len < cmdline.len() {
                let mut b = [0u8];
                phys::read(s + len as u64, &mut b);
                if b[0] == 0 {
                    break;
                }
                cmdline[len] = b[0];
                len += 1;
            }
        }
        Module {
            start: r32(m) as u64,
            end: r32(m + 4) as u64,
            cmdline,
            cmdline_len: len,
        }
    }

    /// True when the hypervisor's own command line (flags bit 2) has the word `option`.
    pub fn has_option(&self, option: &str) -> bool {
        if r32(self.pa) & (1 << 2) == 0 {
            return false;
        }
        let s = r32(self.pa + 16) as u64;
        if s == 0 {
            return false;
        }
        let mut line = [0u8; 256];
        let mut len = 0;
        while len < line.len() {
            let mut b = [0u8];
            phys::read(s + len as u64, &mut b);
            if b[0] == 0 {
                break;
            }
            line[len] = b[0];
            len += 1;
        }
        core::str::from_utf8(&line[..len])
            .is_ok_and(|l| l.split_ascii_whitespace().any(|w| w == option))
    }
}
