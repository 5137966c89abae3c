//! Boot information from either loader, behind one `BootInfo`: multiboot v1 (QEMU's
//! `-kernel`, modules from `-initrd`; read in place) or multiboot2 (GRUB's `multiboot2`
//! and `module2`; copied at entry, then parsed by `multiboot2`, bounds-checked).

use crate::arch::phys;
use crate::multiboot2;

/// Multiboot v1's EAX at entry.
pub const MAGIC_V1: u32 = 0x2BAD_B002;
/// Largest multiboot2 information copied (GRUB's on QEMU: well under 1 KiB).
const MB2_MAX: usize = 16 * 1024;

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

/// The longest module command line kept (`FILE ARGS`): Linux's x86 COMMAND_LINE_SIZE,
/// so every command line a Linux guest could take fits. A longer one is never cut
/// short silently: [`Module::too_long`] says so and the domain is not created.
pub const MODULE_CMDLINE_MAX: usize = 2048;

pub struct Module {
    pub start: u64,
    pub end: u64,
    /// The module's command line (QEMU: `FILE ARGS`).
    pub cmdline: [u8; MODULE_CMDLINE_MAX],
    pub cmdline_len: usize,
    /// The loader's command line was longer than [`MODULE_CMDLINE_MAX`].
    pub too_long: bool,
}

impl Module {
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("?")
    }
    /// The arguments after the file name (QEMU and GRUB's `module` pass `FILE ARGS`);
    /// a first word with `=` is an argument already (GRUB's `module2` passes only ARGS).
    pub fn args(&self) -> &str {
        let c = self.cmdline().trim();
        match c.split_once(' ') {
            _ if c.split(' ').next().is_some_and(|w| w.contains('=')) => c,
            Some((_, a)) => a.trim(),
            None => "",
        }
    }
}

/// Copies `s` into `out` as far as it fits; returns the length copied and whether `s`
/// was longer.
fn copy_str(s: &str, out: &mut [u8]) -> (usize, bool) {
    let n = s.len().min(out.len());
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    (n, s.len() > out.len())
}

/// One `BootInfo` lives on the boot stack (1 MiB): the copy's size is intended.
#[allow(clippy::large_enum_variant)]
enum Loader {
    V1 { pa: u64 },
    V2 { copy: [u8; MB2_MAX] },
}

pub struct BootInfo {
    loader: Loader,
}

impl BootInfo {
    /// From the entry's EAX (`magic`) and EBX (`pa`); an error names what is wrong.
    pub fn new(magic: u32, pa: u64) -> Result<Self, BootError> {
        match magic {
            MAGIC_V1 => Ok(BootInfo {
                loader: Loader::V1 { pa },
            }),
            multiboot2::MAGIC => {
                let mut head = [0u8; 4];
                if pa & 7 != 0 || !phys::mapped(pa, 8) {
                    return Err(BootError::Address(pa));
                }
                phys::read(pa, &mut head);
                let total = u32::from_le_bytes(head) as usize;
                let n = total.clamp(8, MB2_MAX);
                if !phys::mapped(pa, n as u64) {
                    return Err(BootError::Address(pa));
                }
                let mut copy = [0u8; MB2_MAX];
                phys::read(pa, &mut copy[..n]);
                multiboot2::Info::parse(&copy).map_err(BootError::Mb2)?;
                Ok(BootInfo {
                    loader: Loader::V2 { copy },
                })
            }
            m => Err(BootError::Magic(m)),
        }
    }

    /// The loader, for the log.
    pub fn loader(&self) -> &'static str {
        match self.loader {
            Loader::V1 { .. } => "multiboot v1",
            Loader::V2 { .. } => "multiboot2",
        }
    }

    /// The checked multiboot2 information (`None` for v1).
    fn mb2(&self) -> Option<multiboot2::Info<'_>> {
        match &self.loader {
            Loader::V2 { copy } => multiboot2::Info::parse(copy).ok(),
            Loader::V1 { .. } => None,
        }
    }

    /// What the log says about a multiboot2 info: its size, and whether the memory map,
    /// modules and RSDP came from its tags.
    pub fn mb2_summary(&self) -> Option<(usize, bool, usize, Option<usize>)> {
        let i = self.mb2()?;
        Some((
            i.total_size(),
            i.has_mmap(),
            i.modules().count(),
            i.rsdp().map(|r| r.len()),
        ))
    }

    /// The RSDP copy from the multiboot2 ACPI tag (36 or 20 bytes), when there is one.
    pub fn rsdp(&self) -> Option<([u8; 36], usize)> {
        let r = self.mb2()?.rsdp()?;
        let mut b = [0u8; 36];
        b[..r.len()].copy_from_slice(r);
        Some((b, r.len()))
    }

    /// Calls `f(base, len, type)` for each memory-map entry (1 usable, 3 ACPI reclaimable,
    /// 4 ACPI NVS, 5 bad memory, others reserved); without a map, the upper memory as usable.
    pub fn for_each_entry(&self, mut f: impl FnMut(u64, u64, u32)) {
        let pa = match &self.loader {
            Loader::V1 { pa } => *pa,
            Loader::V2 { .. } => {
                if let Some(i) = self.mb2() {
                    i.for_each_entry(f);
                }
                return;
            }
        };
        let flags = r32(pa);
        if flags & (1 << 6) != 0 {
            let len = r32(pa + 44) as u64;
            let addr = r32(pa + 48) as u64;
            let mut p = addr;
            while p < addr + len {
                let size = r32(p) as u64;
                let (base, l, ty) = (r64(p + 4), r64(p + 12), r32(p + 20));
                f(base, l, ty);
                p += size + 4;
            }
        } else if flags & 1 != 0 {
            f(0x10_0000, r32(pa + 8) as u64 * 1024, 1);
        }
    }

    pub fn module_count(&self) -> usize {
        let pa = match &self.loader {
            Loader::V1 { pa } => *pa,
            Loader::V2 { .. } => return self.mb2().map_or(0, |i| i.modules().count().min(16)),
        };
        if r32(pa) & (1 << 3) != 0 {
            r32(pa + 20).min(16) as usize
        } else {
            0
        }
    }

    pub fn module(&self, i: usize) -> Module {
        let pa = match &self.loader {
            Loader::V1 { pa } => *pa,
            Loader::V2 { .. } => {
                let m = self.mb2().and_then(|info| info.modules().nth(i));
                let mut cmdline = [0u8; MODULE_CMDLINE_MAX];
                let (cmdline_len, too_long) =
                    m.map_or((0, false), |m| copy_str(m.cmdline, &mut cmdline));
                return Module {
                    start: m.map_or(0, |m| m.start as u64),
                    end: m.map_or(0, |m| m.end as u64),
                    cmdline,
                    cmdline_len,
                    too_long,
                };
            }
        };
        let m = r32(pa + 24) as u64 + 16 * i as u64;
        let mut cmdline = [0u8; MODULE_CMDLINE_MAX];
        let mut len = 0;
        let mut too_long = false;
        let s = r32(m + 8) as u64;
        if s != 0 {
            // One byte past the buffer is looked at: a NUL there means the line fit.
            while len <= cmdline.len() {
                let mut b = [0u8];
                phys::read(s + len as u64, &mut b);
                if b[0] == 0 {
                    break;
                }
                if len == cmdline.len() {
                    too_long = true;
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
            too_long,
        }
    }

    /// True when the hypervisor's own command line (flags bit 2) has the word `option`.
    pub fn has_option(&self, option: &str) -> bool {
        let pa = match &self.loader {
            Loader::V1 { pa } => *pa,
            Loader::V2 { .. } => {
                return self
                    .mb2()
                    .and_then(|i| i.cmdline())
                    .is_some_and(|l| l.split_ascii_whitespace().any(|w| w == option))
            }
        };
        if r32(pa) & (1 << 2) == 0 {
            return false;
        }
        let s = r32(pa + 16) as u64;
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

#[derive(Debug)]
pub enum BootError {
    Magic(u32),
    Address(u64),
    Mb2(multiboot2::Error),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Magic(m) => write!(f, "unknown loader magic {m:#x}"),
            BootError::Address(a) => write!(f, "multiboot2 info at {a:#x} not usable"),
            BootError::Mb2(e) => write!(f, "multiboot2 info malformed: {e}"),
        }
    }
}
