//! What each function is: enumeration over the config-space seam, capability walks
//! (bounded: a loop or an out-of-range pointer is an error, never a hang), BARs and
//! ROM sized by the write-ones protocol with decode off, MSI/MSI-X, and resets.
use crate::config::*;
use alloc::vec::Vec;
use sluice_iommu::Bdf;

/// Why a function's config space cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// The capability list visits `at` twice.
    CapLoop { at: u16 },
    /// A capability pointer outside 0x40..=0xfc (or an extended one outside 0x100..0x1000).
    CapOutOfRange { ptr: u16 },
    /// A 64-bit BAR in the last slot.
    Bar64InLastSlot { bar: u8 },
    /// MSI-X table or PBA not inside an implemented memory BAR.
    MsixOutsideBar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub id: u8,
    pub off: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCap {
    pub id: u16,
    pub version: u8,
    pub off: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Mem32,
    Mem64,
    Io,
}

/// One implemented BAR (the upper half of a 64-bit BAR is not listed apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    pub size: u64,
    /// The host address programmed in it at inventory time.
    pub addr: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub off: u16,
    pub is64: bool,
    pub maskable: bool,
    /// Vectors the function can use (1..=32).
    pub vectors: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msix {
    pub off: u16,
    pub entries: u16,
    pub table_bir: u8,
    pub table_off: u32,
    pub pba_bir: u8,
    pub pba_off: u32,
}

impl Msix {
    pub fn table_len(&self) -> u64 {
        self.entries as u64 * 16
    }
    pub fn pba_len(&self) -> u64 {
        (self.entries as u64).div_ceil(64) * 8
    }
}

/// Resets the function can be given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resets {
    /// PCIe function-level reset (DevCap FLR).
    pub flr: bool,
    /// Advanced Features FLR (conventional PCI).
    pub af_flr: bool,
    /// D3hot -> D0 with No_Soft_Reset clear.
    pub pm: bool,
    /// Secondary bus reset through this parent bridge (resets the whole bus).
    pub bus: Option<Bdf>,
}

impl Resets {
    pub fn any(&self) -> bool {
        self.flr || self.af_flr || self.pm || self.bus.is_some()
    }
}

/// One PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Class, subclass, prog-if.
    pub class: u32,
    pub multifunction: bool,
    /// Type-1 header: the buses it forwards.
    pub bridge: Option<(u8, u8)>,
    /// The bridge this function sits behind (None on the first bus).
    pub parent: Option<Bdf>,
    /// PCIe port type, if the function has a PCIe capability.
    pub pcie_type: Option<u8>,
    pub caps: Vec<Cap>,
    pub ext_caps: Vec<ExtCap>,
    pub bars: Vec<Bar>,
    pub rom_size: u32,
    pub msi: Option<Msi>,
    pub msix: Option<Msix>,
    pub resets: Resets,
    /// ACS with SV, RR, CR and UF enabled.
    pub acs: bool,
    pub defect: Option<Defect>,
}

impl Function {
    pub fn cap(&self, id: u8) -> Option<u16> {
        self.caps.iter().find(|c| c.id == id).map(|c| c.off)
    }
    pub fn ext_cap(&self, id: u16) -> Option<u16> {
        self.ext_caps.iter().find(|c| c.id == id).map(|c| c.off)
    }
    pub fn is_host_bridge(&self) -> bool {
        self.class >> 8 == 0x0600
    }
    pub fn is_iommu(&self) -> bool {
        self.class >> 8 == 0x0806
    }
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }
}

/// Walks the capability list: at most 48 entries, each pointer in 0x40..=0xfc.
pub fn capabilities(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Result<Vec<Cap>, Defect> {
    let mut out = Vec::new();
    if cfg.read16(bdf, STATUS) & STATUS_CAP_LIST == 0 {
        return Ok(out);
    }
    let mut seen = [false; 64];
    let mut ptr = (cfg.read8(bdf, CAP_PTR) & !3) as u16;
    while ptr != 0 {
        if !(0x40..=0xfc).contains(&ptr) {
            return Err(Defect::CapOutOfRange { ptr });
        }
        if core::mem::replace(&mut seen[(ptr / 4) as usize], true) {
            return Err(Defect::CapLoop { at: ptr });
        }
        let hdr = cfg.read16(bdf, ptr);
        out.push(Cap {
            id: hdr as u8,
            off: ptr,
        });
        ptr = (hdr >> 8) & 0xfc;
    }
    Ok(out)
}

/// Walks the extended capability list from 0x100: at most 960 entries, each in 0x100..0x1000.
pub fn ext_capabilities(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Result<Vec<ExtCap>, Defect> {
    let mut out = Vec::new();
    let mut seen = [0u64; 16];
    let mut ptr: u16 = 0x100;
    loop {
        let hdr = cfg.read32(bdf, ptr);
        if hdr == 0 || hdr == u32::MAX {
            return Ok(out);
        }
        let slot = (ptr / 4) as usize;
        if seen[slot / 64] & (1 << (slot % 64)) != 0 {
            return Err(Defect::CapLoop { at: ptr });
        }
        seen[slot / 64] |= 1 << (slot % 64);
        out.push(ExtCap {
            id: hdr as u16,
            version: (hdr >> 16 & 0xf) as u8,
            off: ptr,
        });
        let next = (hdr >> 20) as u16 & 0xffc;
        if next == 0 {
            return Ok(out);
        }
        if next < 0x100 {
            return Err(Defect::CapOutOfRange { ptr: next });
        }
        ptr = next;
    }
}

/// Sizes one register by the write-ones protocol; returns what reads back, after
/// restoring the original. Decode must already be off.
fn probe(cfg: &mut impl ConfigSpace, bdf: Bdf, off: u16, ones: u32) -> (u32, u32) {
    let orig = cfg.read32(bdf, off);
    cfg.write32(bdf, off, ones);
    let back = cfg.read32(bdf, off);
    cfg.write32(bdf, off, orig);
    (orig, back)
}

/// Sizes the BARs and the ROM with memory and I/O decode off; restores the
/// command register. Returns the BARs, the ROM size, and a defect if any.
pub fn size_bars(
    cfg: &mut impl ConfigSpace,
    bdf: Bdf,
    nbars: u8,
    rom: u16,
) -> (Vec<Bar>, u32, Option<Defect>) {
    let cmd = cfg.read16(bdf, COMMAND);
    cfg.write16(bdf, COMMAND, cmd & !(CMD_MEMORY | CMD_IO));
    let mut bars = Vec::new();
    let mut defect = None;
    let mut i = 0u8;
    while i < nbars {
        let off = BAR0 + 4 * i as u16;
        let (orig, back) = probe(cfg, bdf, off, u32::MAX);
        if back == 0 || back == u32::MAX && orig == u32::MAX {
            i += 1;
            continue;
        }
        if back & 1 == 1 {
            let mask = back & 0xffff_fffc;
            let size = (!mask).wrapping_add(1) & 0xffff;
            if size != 0 {
                bars.push(Bar {
                    index: i,
                    kind: BarKind::Io,
                    prefetchable: false,
                    size: size as u64,
                    addr: (orig & 0xffff_fffc) as u64,
                });
            }
            i += 1;
            continue;
        }
        let prefetchable = back & 8 != 0;
        if back & 6 == 4 {
            if i + 1 >= nbars {
                defect = Some(Defect::Bar64InLastSlot { bar: i });
                break;
            }
            let (orig_hi, back_hi) = probe(cfg, bdf, off + 4, u32::MAX);
            let mask = (back_hi as u64) << 32 | (back & !0xf) as u64;
            let size = (!mask).wrapping_add(1);
            if mask != 0 {
                bars.push(Bar {
                    index: i,
                    kind: BarKind::Mem64,
                    prefetchable,
                    size,
                    addr: (orig_hi as u64) << 32 | (orig & !0xf) as u64,
                });
            }
            i += 2;
        } else {
            let mask = back & !0xf;
            if mask != 0 {
                let size = (!mask).wrapping_add(1) as u64;
                bars.push(Bar {
                    index: i,
                    kind: BarKind::Mem32,
                    prefetchable,
                    size,
                    addr: (orig & !0xf) as u64,
                });
            }
            i += 1;
        }
    }
    let (_, back) = probe(cfg, bdf, rom, 0xffff_f800);
    let rom_mask = back & 0xffff_f800;
    let rom_size = if rom_mask == 0 {
        0
    } else {
        (!rom_mask).wrapping_add(1)
    };
    cfg.write16(bdf, COMMAND, cmd);
    (bars, rom_size, defect)
}

/// Reads everything the core needs about one present function.
pub fn describe(cfg: &mut impl ConfigSpace, bdf: Bdf, parent: Option<Bdf>) -> Function {
    let vendor = cfg.read16(bdf, VENDOR_ID);
    let device = cfg.read16(bdf, DEVICE_ID);
    let class = cfg.read32(bdf, REVISION) >> 8;
    let ht = cfg.read8(bdf, HEADER_TYPE);
    let bridge = (ht & 0x7f == 1).then(|| {
        (
            cfg.read8(bdf, SECONDARY_BUS),
            cfg.read8(bdf, SUBORDINATE_BUS),
        )
    });
    let mut f = Function {
        bdf,
        vendor,
        device,
        class,
        multifunction: ht & 0x80 != 0,
        bridge,
        parent,
        pcie_type: None,
        caps: Vec::new(),
        ext_caps: Vec::new(),
        bars: Vec::new(),
        rom_size: 0,
        msi: None,
        msix: None,
        resets: Resets::default(),
        acs: false,
        defect: None,
    };
    let (nbars, rom) = match ht & 0x7f {
        0 => (6, ROM0),
        1 => (2, ROM1),
        _ => (0, ROM0),
    };
    if nbars > 0 {
        let (bars, rom_size, d) = size_bars(cfg, bdf, nbars, rom);
        f.bars = bars;
        f.rom_size = rom_size;
        f.defect = d;
    }
    match capabilities(cfg, bdf) {
        Ok(c) => f.caps = c,
        Err(d) => {
            f.defect = Some(d);
            return f;
        }
    }
    if let Some(exp) = f.cap(CAP_PCIE) {
        f.pcie_type = Some((cfg.read16(bdf, exp + EXP_FLAGS) >> 4 & 0xf) as u8);
        f.resets.flr = cfg.read32(bdf, exp + EXP_DEVCAP) & EXP_DEVCAP_FLR != 0;
        match ext_capabilities(cfg, bdf) {
            Ok(e) => f.ext_caps = e,
            Err(d) => f.defect = Some(d),
        }
    }
    if let Some(af) = f.cap(CAP_AF) {
        let c = cfg.read8(bdf, af + AF_CAP);
        f.resets.af_flr = c & (AF_CAP_TP | AF_CAP_FLR) == AF_CAP_TP | AF_CAP_FLR;
    }
    if let Some(pm) = f.cap(CAP_PM) {
        f.resets.pm = cfg.read16(bdf, pm + PM_CTRL) & PM_CTRL_NO_SOFT_RESET == 0;
    }
    f.resets.bus = parent;
    if let Some(acs) = f.ext_cap(ECAP_ACS) {
        f.acs = cfg.read16(bdf, acs + ACS_CTRL) & ACS_REQUIRED == ACS_REQUIRED;
    }
    if let Some(off) = f.cap(CAP_MSI) {
        let ctl = cfg.read16(bdf, off + 2);
        f.msi = Some(Msi {
            off,
            is64: ctl & 0x80 != 0,
            maskable: ctl & 0x100 != 0,
            vectors: 1 << (ctl >> 1 & 7).min(5),
        });
    }
    if let Some(off) = f.cap(CAP_MSIX) {
        let ctl = cfg.read16(bdf, off + 2);
        let t = cfg.read32(bdf, off + 4);
        let p = cfg.read32(bdf, off + 8);
        let m = Msix {
            off,
            entries: (ctl & 0x7ff) + 1,
            table_bir: (t & 7) as u8,
            table_off: t & !7,
            pba_bir: (p & 7) as u8,
            pba_off: p & !7,
        };
        let inside = |bir: u8, o: u32, len: u64| {
            f.bar(bir).is_some_and(|b| {
                b.kind != BarKind::Io && (o as u64).checked_add(len).is_some_and(|e| e <= b.size)
            })
        };
        if !inside(m.table_bir, m.table_off, m.table_len())
            || !inside(m.pba_bir, m.pba_off, m.pba_len())
        {
            f.defect = Some(Defect::MsixOutsideBar);
        }
        f.msix = Some(m);
    }
    f
}

/// Enumerates from `first_bus` (the ECAM's first bus), following bridges to their
/// secondary buses within `first_bus..=last_bus`. Each bus is scanned at most once,
/// so a bridge pointing back up or at a scanned bus cannot make it loop.
pub fn enumerate(
    cfg: &mut impl ConfigSpace,
    segment: u16,
    first_bus: u8,
    last_bus: u8,
) -> Vec<Function> {
    let mut out = Vec::new();
    let mut scanned = [false; 256];
    let mut todo: Vec<(u8, Option<Bdf>)> = alloc::vec![(first_bus, None)];
    while let Some((bus, parent)) = todo.pop() {
        if core::mem::replace(&mut scanned[bus as usize], true) {
            continue;
        }
        for dev in 0..32 {
            for func in 0..8 {
                let mut bdf = Bdf::new(bus, dev, func);
                bdf.segment = segment;
                if cfg.read16(bdf, VENDOR_ID) == 0xffff {
                    if func == 0 {
                        break;
                    }
                    continue;
                }
                let f = describe(cfg, bdf, parent);
                let mf = f.multifunction;
                if let Some((sec, _)) = f.bridge {
                    if sec > bus && sec <= last_bus {
                        todo.push((sec, Some(bdf)));
                    }
                }
                out.push(f);
                if func == 0 && !mf {
                    break;
                }
            }
        }
    }
    out.sort_by_key(|f| f.bdf);
    out
}
