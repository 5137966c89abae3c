//! A guest's view of one assigned function's config space, in the style of Xen's
//! vPCI for domUs: only registers with a handler reach the guest; the rest read
//! ~0 (0 inside the type-0 header and for the extended-capability header, as the
//! spec requires of reserved registers) and writes to them are dropped, counted,
//! and reported once. The guest sizes and places BARs; enabling memory decode turns
//! them into mappings to make (never over guest RAM, a reserved range, or another
//! BAR). MSI and MSI-X are emulated: the guest's address/data become events the
//! hypervisor turns into interrupt-remapping entries; only those reach the device.
use crate::config::*;
use crate::inventory::{Bar, BarKind, Function, Msi, Msix};
use alloc::vec;
use alloc::vec::Vec;
use sluice_iommu::Bdf;

mod bars;
mod msi;

const PAGE: u64 = 4096;

/// Why a BAR placement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarConflict {
    OutOfRange,
    OverlapsRam,
    OverlapsReserved,
    OverlapsBar(u8),
}

/// What a guest access asks the hypervisor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first write to an unhandled register (later ones are only counted).
    DroppedWrite {
        off: u16,
        width: u8,
    },
    /// Map the BAR at guest address `guest` (`host` is the real BAR, `size` bytes),
    /// except the trapped MSI-X pages.
    MapBar {
        index: u8,
        kind: BarKind,
        guest: u64,
        host: u64,
        size: u64,
    },
    UnmapBar {
        index: u8,
        guest: u64,
    },
    /// Memory decode refused: the BAR's placement conflicts.
    BarRefused {
        index: u8,
        guest: u64,
        why: BarConflict,
    },
    /// The guest enabled MSI (or changed it while enabled): build a remapping entry
    /// and call [`VirtualConfig::msi_program`].
    MsiEnable {
        addr: u64,
        data: u16,
        vectors: u8,
    },
    MsiDisable,
    /// The guest unmasked MSI-X entry `entry`: build a remapping entry and write the
    /// device's table entry, then unmask it there.
    MsixUnmask {
        entry: u16,
        addr: u64,
        data: u32,
    },
    MsixMask {
        entry: u16,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Const(u32),
    DevRo,
    Command,
    Status,
    Bar(u8),
    IntLine,
    CacheLine,
    CapHdr(u8, u8),
    DevCtl,
    MsiCtl,
    MsiAddrLo,
    MsiAddrHi,
    MsiData,
    MsiMask,
    MsixCtl,
}

#[derive(Clone, Copy, Debug)]
struct Reg {
    off: u16,
    len: u16,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, Default)]
struct MsiState {
    ctl: u16,
    addr: u64,
    data: u16,
}

#[derive(Clone, Copy, Debug)]
struct MsixEntry {
    addr: u64,
    data: u32,
    ctrl: u32,
}

/// A trapped (never mapped) page range of a BAR: MSI-X table or PBA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trapped {
    pub bar: u8,
    pub start: u64,
    pub end: u64,
}

/// PCIe Device Control bits a guest may set: error reporting enables, relaxed ordering.
pub const DEVCTL_GUEST: u16 = 0x001f;
/// Command bits that reach the device.
pub const CMD_GUEST: u16 = CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE;

/// One assigned function's virtual config space.
pub struct VirtualConfig {
    bdf: Bdf,
    regs: Vec<Reg>,
    bars: Vec<Bar>,
    guest_bar: [u64; 6],
    mapped: [Option<u64>; 6],
    cmd: u16,
    cache_line: u8,
    int_line: u8,
    msi: Option<(Msi, MsiState)>,
    msix: Option<Msix>,
    msix_table: Vec<MsixEntry>,
    guest_ram: Vec<(u64, u64)>,
    reserved: Vec<(u64, u64)>,
    max_gpa: u64,
    /// Writes dropped so far.
    pub dropped: u64,
}

impl VirtualConfig {
    /// `guest_ram` and `reserved` are half-open GPA ranges no BAR may overlap (RAM;
    /// other devices' BARs, the LAPIC, ECAM); `max_gpa` bounds placements.
    pub fn new(
        f: &Function,
        guest_ram: &[(u64, u64)],
        reserved: &[(u64, u64)],
        max_gpa: u64,
    ) -> Self {
        let mut regs = vec![
            Reg {
                off: 0x00,
                len: 4,
                kind: Kind::DevRo,
            },
            Reg {
                off: 0x04,
                len: 2,
                kind: Kind::Command,
            },
            Reg {
                off: 0x06,
                len: 2,
                kind: Kind::Status,
            },
            Reg {
                off: 0x08,
                len: 4,
                kind: Kind::DevRo,
            },
            Reg {
                off: 0x0c,
                len: 1,
                kind: Kind::CacheLine,
            },
            Reg {
                off: 0x0d,
                len: 3,
                kind: Kind::Const(0),
            },
        ];
        for i in 0..6 {
            regs.push(Reg {
                off: BAR0 + 4 * i,
                len: 4,
                kind: Kind::Bar(i as u8),
            });
        }
        regs.push(Reg {
            off: 0x28,
            len: 4,
            kind: Kind::Const(0),
        });
        regs.push(Reg {
            off: 0x2c,
            len: 4,
            kind: Kind::DevRo,
        });
        regs.push(Reg {
            off: 0x30,
            len: 4,
            kind: Kind::Const(0),
        }); // ROM hidden
        let kept: Vec<_> = f
            .caps
            .iter()
            .enumerate()
            // The first of each kept id only: a second MSI capability is hidden.
            .filter(|&(i, c)| {
                // MSI and MSI-X only with their records (a function without them is
                // defective and refused anyway; never expose an untrapped table).
                (matches!(c.id, CAP_PM | CAP_PCIE)
                    || c.id == CAP_MSI && f.msi.is_some_and(|m| m.off == c.off)
                    || c.id == CAP_MSIX && f.msix.is_some_and(|m| m.off == c.off))
                    && !f.caps[..i].iter().any(|p| p.id == c.id)
            })
            .map(|(_, c)| c)
            .collect();
        let first = kept.first().map_or(0, |c| c.off as u32);
        regs.push(Reg {
            off: 0x34,
            len: 4,
            kind: Kind::Const(first),
        });
        regs.push(Reg {
            off: 0x38,
            len: 4,
            kind: Kind::Const(0),
        });
        regs.push(Reg {
            off: 0x3c,
            len: 1,
            kind: Kind::IntLine,
        });
        regs.push(Reg {
            off: 0x3d,
            len: 3,
            kind: Kind::Const(0),
        }); // no INTx pin
        for (i, c) in kept.iter().enumerate() {
            let next = kept.get(i + 1).map_or(0, |n| n.off as u8);
            regs.push(Reg {
                off: c.off,
                len: 2,
                kind: Kind::CapHdr(c.id, next),
            });
            let o = c.off;
            let mark = regs.len();
            match c.id {
                CAP_PM => regs.push(Reg {
                    off: o + 2,
                    len: 6,
                    kind: Kind::DevRo,
                }),
                CAP_PCIE => {
                    regs.push(Reg {
                        off: o + 2,
                        len: 6,
                        kind: Kind::DevRo,
                    });
                    regs.push(Reg {
                        off: o + EXP_DEVCTL,
                        len: 2,
                        kind: Kind::DevCtl,
                    });
                    regs.push(Reg {
                        off: o + EXP_DEVSTA,
                        len: 0x3c - 0xa,
                        kind: Kind::DevRo,
                    });
                }
                CAP_MSIX => {
                    regs.push(Reg {
                        off: o + 2,
                        len: 2,
                        kind: Kind::MsixCtl,
                    });
                    regs.push(Reg {
                        off: o + 4,
                        len: 8,
                        kind: Kind::DevRo,
                    });
                }
                _ => {
                    let m = f.msi.expect("MSI capability has its record");
                    let d = if m.is64 { 0xc } else { 8 };
                    regs.push(Reg {
                        off: o + 2,
                        len: 2,
                        kind: Kind::MsiCtl,
                    });
                    regs.push(Reg {
                        off: o + 4,
                        len: 4,
                        kind: Kind::MsiAddrLo,
                    });
                    if m.is64 {
                        regs.push(Reg {
                            off: o + 8,
                            len: 4,
                            kind: Kind::MsiAddrHi,
                        });
                    }
                    regs.push(Reg {
                        off: o + d,
                        len: 2,
                        kind: Kind::MsiData,
                    });
                    regs.push(Reg {
                        off: o + d + 2,
                        len: 2,
                        kind: Kind::Const(0),
                    });
                    if m.maskable {
                        regs.push(Reg {
                            off: o + d + 4,
                            len: 4,
                            kind: Kind::MsiMask,
                        });
                        regs.push(Reg {
                            off: o + d + 8,
                            len: 4,
                            kind: Kind::DevRo,
                        });
                    }
                }
            }
            // A capability ends where the next one (kept or not) or the header space
            // ends: a hostile layout cannot make one handler expose another's bytes.
            let lim = f
                .caps
                .iter()
                .map(|x| x.off)
                .filter(|&x| x > o)
                .min()
                .unwrap_or(0x100)
                .min(0x100);
            for r in &mut regs[mark..] {
                r.len = lim.saturating_sub(r.off).min(r.len);
            }
            regs.retain(|r| r.len > 0);
        }
        regs.push(Reg {
            off: 0x100,
            len: 4,
            kind: Kind::Const(0),
        }); // no extended caps
        regs.sort_by_key(|r| r.off);
        let entries = f.msix.map_or(0, |m| m.entries) as usize;
        VirtualConfig {
            bdf: f.bdf,
            regs,
            bars: f.bars.clone(),
            guest_bar: [0; 6],
            mapped: [None; 6],
            cmd: 0,
            cache_line: 0,
            int_line: 0xff,
            msi: f.msi.map(|m| (m, MsiState::default())),
            msix: f.msix,
            msix_table: vec![
                MsixEntry {
                    addr: 0,
                    data: 0,
                    ctrl: 1
                };
                entries
            ],
            guest_ram: guest_ram.to_vec(),
            reserved: reserved.to_vec(),
            max_gpa,
            dropped: 0,
        }
    }

    fn reg_at(&self, off: u16) -> Option<Reg> {
        self.regs
            .iter()
            .copied()
            .find(|r| r.off <= off && off < r.off + r.len)
    }

    /// A guest config read. Misaligned or out-of-range accesses read all-ones.
    pub fn read(&mut self, dev: &mut impl ConfigSpace, off: u16, w: Width) -> u32 {
        if !off.is_multiple_of(w.bytes()) || off as u32 + w.bytes() as u32 > CFG_SIZE as u32 {
            return w.ones();
        }
        let mut v = 0u32;
        let mut i = 0;
        while i < w.bytes() {
            let at = off + i;
            match self.reg_at(at) {
                None => {
                    v |= 0xff << (8 * i);
                    i += 1;
                }
                Some(r) => {
                    let end = (r.off + r.len).min(off + w.bytes());
                    let val = self.read_reg(dev, r, at, end - at);
                    v |= val << (8 * i);
                    i = end - off;
                }
            }
        }
        v
    }

    /// `len` bytes of register `r` from `at`.
    fn read_reg(&mut self, dev: &mut impl ConfigSpace, r: Reg, at: u16, len: u16) -> u32 {
        let whole: u32 = match r.kind {
            Kind::DevRo => return dev_read(dev, self.bdf, at, len),
            Kind::Const(c) => c,
            Kind::Command => self.cmd as u32,
            Kind::Status => {
                let s = dev.read16(self.bdf, STATUS) & !STATUS_CAP_LIST;
                let caps = self.regs.iter().any(|r| matches!(r.kind, Kind::CapHdr(..)));
                (s | if caps { STATUS_CAP_LIST } else { 0 }) as u32
            }
            Kind::CacheLine => self.cache_line as u32,
            Kind::IntLine => self.int_line as u32,
            Kind::Bar(i) => self.bar_value(i),
            Kind::CapHdr(id, next) => id as u32 | (next as u32) << 8,
            Kind::DevCtl | Kind::MsixCtl => dev.read16(self.bdf, r.off) as u32,
            Kind::MsiCtl | Kind::MsiAddrLo | Kind::MsiAddrHi | Kind::MsiData => {
                let (m, s) = self.msi.expect("MSI register implies MSI");
                match r.kind {
                    Kind::MsiCtl => {
                        let mmc = (m.vectors.trailing_zeros() as u16) << 1;
                        (s.ctl & 0x71 | mmc | (m.is64 as u16) << 7 | (m.maskable as u16) << 8)
                            as u32
                    }
                    Kind::MsiAddrLo => s.addr as u32,
                    Kind::MsiAddrHi => (s.addr >> 32) as u32,
                    _ => s.data as u32,
                }
            }
            Kind::MsiMask => dev.read32(self.bdf, r.off),
        };
        let shift = 8 * (at - r.off) as u32;
        let v = whole.checked_shr(shift).unwrap_or(0);
        if len >= 4 {
            v
        } else {
            v & ((1u32 << (8 * len)) - 1)
        }
    }

    /// A guest config write. Returns what the hypervisor must do.
    pub fn write(&mut self, dev: &mut impl ConfigSpace, off: u16, w: Width, v: u32) -> Vec<Event> {
        let mut ev = Vec::new();
        if !off.is_multiple_of(w.bytes()) || off as u32 + w.bytes() as u32 > CFG_SIZE as u32 {
            self.drop_write(off, w.bytes(), &mut ev);
            return ev;
        }
        let mut i = 0;
        while i < w.bytes() {
            let at = off + i;
            let Some(r) = self.reg_at(at) else {
                self.drop_write(at, 1, &mut ev);
                i += 1;
                continue;
            };
            let end = (r.off + r.len).min(off + w.bytes());
            let part = v.checked_shr(8 * i as u32).unwrap_or(0);
            self.write_reg(dev, r, at, end - at, part, &mut ev);
            i = end - off;
        }
        ev
    }

    fn drop_write(&mut self, off: u16, width: u16, ev: &mut Vec<Event>) {
        if self.dropped == 0 {
            ev.push(Event::DroppedWrite {
                off,
                width: width as u8,
            });
        }
        self.dropped += 1;
    }

    /// Merges a partial write of `len` bytes at `at` into the register's old value.
    fn merge(r: Reg, old: u32, at: u16, len: u16, v: u32) -> u32 {
        let shift = 8 * (at - r.off) as u32;
        let mask = if len >= 4 {
            u32::MAX
        } else {
            (1u32 << (8 * len)) - 1
        };
        (old & !(mask << shift)) | ((v & mask) << shift)
    }

    fn write_reg(
        &mut self,
        dev: &mut impl ConfigSpace,
        r: Reg,
        at: u16,
        len: u16,
        v: u32,
        ev: &mut Vec<Event>,
    ) {
        match r.kind {
            Kind::DevRo | Kind::Const(_) | Kind::CapHdr(..) => self.drop_write(at, len, ev),
            Kind::CacheLine => self.cache_line = v as u8,
            Kind::IntLine => self.int_line = v as u8,
            Kind::Status => {
                // Only the RW1C error bits, and only those the guest writes.
                let new = Self::merge(r, 0, at, len, v) as u16 & 0xf900;
                if new != 0 {
                    dev.write16(self.bdf, STATUS, new);
                }
            }
            Kind::Command => {
                let new = Self::merge(r, self.cmd as u32, at, len, v) as u16 & CMD_GUEST;
                self.command(dev, new, ev);
            }
            Kind::Bar(i) => {
                if self.cmd & (CMD_MEMORY | CMD_IO) != 0 {
                    // Xen vPCI: a BAR write while decoding is ignored.
                    self.drop_write(at, len, ev);
                    return;
                }
                let old = self.bar_value(i);
                let new = Self::merge(r, old, at, len, v);
                self.set_bar(i, new);
            }
            Kind::DevCtl => {
                let old = dev.read16(self.bdf, r.off);
                let want = Self::merge(r, old as u32, at, len, v) as u16;
                let new = (old & !DEVCTL_GUEST) | (want & DEVCTL_GUEST);
                if new != old {
                    dev.write16(self.bdf, r.off, new);
                }
            }
            Kind::MsixCtl => {
                // Enable and function mask reach the device; the table it uses holds
                // only entries the hypervisor programmed (all masked after reset).
                let old = dev.read16(self.bdf, r.off);
                let want = Self::merge(r, old as u32, at, len, v) as u16;
                let new = (old & !0xc000) | (want & 0xc000);
                if new != old {
                    dev.write16(self.bdf, r.off, new);
                }
            }
            Kind::MsiMask => {
                let old = dev.read32(self.bdf, r.off);
                let (m, _) = self.msi.expect("MSI");
                let valid = if m.vectors >= 32 {
                    u32::MAX
                } else {
                    (1u32 << m.vectors) - 1
                };
                let new = Self::merge(r, old, at, len, v) & valid;
                dev.write32(self.bdf, r.off, new);
            }
            Kind::MsiCtl | Kind::MsiAddrLo | Kind::MsiAddrHi | Kind::MsiData => {
                self.msi_write(dev, r, at, len, v, ev)
            }
        }
    }
}

/// Reads `len` bytes at `at` from the device in naturally aligned pieces.
fn dev_read(dev: &mut impl ConfigSpace, bdf: Bdf, at: u16, len: u16) -> u32 {
    if len == 4 && at.is_multiple_of(4) {
        return dev.read32(bdf, at);
    }
    if len == 2 && at.is_multiple_of(2) {
        return dev.read16(bdf, at) as u32;
    }
    let mut v = 0;
    for i in 0..len.min(4) {
        v |= (dev.read8(bdf, at + i) as u32) << (8 * i);
    }
    v
}
