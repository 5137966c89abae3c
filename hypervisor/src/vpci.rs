//! A domain's PCI: the functions assigned to it (`assign=BB:DD.F[,...]` on its command
//! line), seen through `sluice-pciback`'s virtual config space over the PCI config
//! ports 0xCF8/0xCFC, their BARs placed by the guest, and their MSIs, remapped by the
//! IOMMU to a hypervisor vector and injected at the guest's vector. Safe, machine-free
//! logic (host-tested in `tests/vpci.rs`); the machine side is `passthrough.rs`.
//!
//! Guest-controlled values (the CF8 latch, config writes, MSI address/data) are read
//! once from the exit's registers and checked here before anything reaches a device.

use alloc::vec::Vec;
use sluice_pciback::config::Width;
use sluice_pciback::vcfg::{Event, VirtualConfig};
use sluice_pciback::{Bdf, ConfigSpace};

/// At most this many functions in one `assign=` list.
pub const MAX_ASSIGN: usize = 8;
/// The PCI configuration mechanism #1 ports.
pub const CF8: u16 = 0xCF8;
pub const CFC: u16 = 0xCFC;
/// The guest's ECAM window (PCI Express enhanced configuration, segment 0, buses 0-255:
/// 1 MiB a bus, 4 KiB a function), described by the MCFG of a domain with devices and
/// reserved in its E820; never mapped, every access trapped and emulated
/// (crate::emulate) into the same virtual config space as 0xCF8/0xCFC. Where QEMU's q35
/// puts its own.
/// The guest's host bridge, emulated at 00:00.0 of every domain with devices (a PC has
/// one there; the host's own is never assignable). Linux without DMI (a PVH guest)
/// trusts config mechanism #1 only if bus 0 shows a host bridge, a VGA function or an
/// Intel/Compaq one (arch/x86/pci/direct.c `pci_sanity_check`), and with no mechanism
/// #1 it refuses the MCFG window reserved only in E820: a domain given only, say, an
/// NVMe drive had no PCI at all.
pub const HOST_BRIDGE: Bdf = Bdf::new(0, 0, 0);
/// Its ids (QEMU's generic PCIe host bridge, 1b36:0008: not q35's 8086:29c0, the host's
/// under which the tests run, so a guest can tell them apart) and class (06/00/00),
/// revision 0.
const HOST_BRIDGE_ID: u32 = 0x0008_1B36;
const HOST_BRIDGE_CLASS: u32 = 0x0600_0000;

/// A read of the emulated host bridge's config space: ids, class, header type 0 and
/// zero elsewhere (command, status, BARs, capabilities, extended space); it takes no
/// writes.
fn host_bridge_read(off: u16, w: Width) -> u32 {
    let dword = match off & !3 {
        0x00 => HOST_BRIDGE_ID,
        0x08 => HOST_BRIDGE_CLASS,
        _ => 0,
    };
    (dword >> ((off & 3) * 8)) & w.ones()
}

pub const ECAM_GPA: u64 = 0xB000_0000;
pub const ECAM_SIZE: u64 = 256 << 20;

/// Whether a command line asks for devices (then the domain gets an ECAM window).
pub fn wants_devices(cmdline: &str) -> bool {
    parse_assign(cmdline).is_ok_and(|l| !l.is_empty())
}

/// Why an `assign=` list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not `BB:DD.F` in hex with DD < 32 and F < 8 (the word is given).
    BadBdf,
    TooMany,
    Duplicate(Bdf),
}

fn hex(s: &str, max: u8) -> Option<u8> {
    // Hex digits only (from_str_radix alone takes a leading '+').
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(s, 16).ok().filter(|&v| v <= max)
}

/// Parses one `BB:DD.F` (segment 0).
pub fn parse_bdf(s: &str) -> Option<Bdf> {
    let (bus, rest) = s.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    Some(Bdf::new(hex(bus, 0xff)?, hex(dev, 31)?, hex(func, 7)?))
}

/// The functions named by the `assign=` word of a domain's command line (none: empty).
pub fn parse_assign(cmdline: &str) -> Result<Vec<Bdf>, ParseError> {
    let Some(list) = cmdline.split(' ').find_map(|w| w.strip_prefix("assign=")) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for word in list.split(',') {
        let bdf = parse_bdf(word).ok_or(ParseError::BadBdf)?;
        if out.contains(&bdf) {
            return Err(ParseError::Duplicate(bdf));
        }
        if out.len() == MAX_ASSIGN {
            return Err(ParseError::TooMany);
        }
        out.push(bdf);
    }
    Ok(out)
}

/// A guest MSI message, checked: fixed delivery to one vCPU (MADT APIC id 2k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMsi {
    pub vector: u8,
    pub vcpu: usize,
}

/// Checks the guest's MSI address/data: the interrupt window 0xFEExxxxx, physical
/// destination of one of its vCPUs, fixed delivery, edge, vector 16..=255.
pub fn guest_msi(addr: u64, data: u32, nr_vcpus: usize) -> Result<GuestMsi, &'static str> {
    if addr >> 20 != 0xFEE {
        return Err("address outside the interrupt window 0xfee00000");
    }
    if addr & (1 << 2) != 0 {
        return Err("logical destination mode");
    }
    if addr & (1 << 4) != 0 {
        return Err("remappable format (the guest has no IOMMU)");
    }
    if (data >> 8) & 7 != 0 {
        return Err("delivery mode other than fixed");
    }
    if data & (1 << 15) != 0 {
        return Err("level trigger");
    }
    let vector = data as u8;
    if vector < 16 {
        return Err("vector below 16");
    }
    let dest = ((addr >> 12) & 0xff) as usize;
    if !dest.is_multiple_of(2) || dest / 2 >= nr_vcpus {
        return Err("destination is none of the domain's vCPUs");
    }
    Ok(GuestMsi {
        vector,
        vcpu: dest / 2,
    })
}

/// A BAR mapped into the guest: `size` bytes of host `host` at guest `guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedBar {
    pub index: u8,
    pub guest: u64,
    pub host: u64,
    pub size: u64,
}

/// An MSI routed to the guest: the remapping entry, the host slot, the guest's vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiRoute {
    pub irte: u32,
    pub slot: usize,
    pub guest: GuestMsi,
}

/// One assigned function.
pub struct Assigned {
    pub host: Bdf,
    /// The IOMMU unit translating it.
    pub unit: usize,
    pub vcfg: VirtualConfig,
    pub bars: Vec<MappedBar>,
    pub msi: Option<MsiRoute>,
    /// Unmasked MSI-X entries: (entry, route), each with a host slot of its own.
    pub msix: Vec<(u16, MsiRoute)>,
    /// Its host interrupt slot (one per function, for MSI), if one was free.
    pub slot: Option<usize>,
}

/// A domain's assigned functions and its pending device interrupts.
#[derive(Default)]
pub struct DomainPci {
    pub functions: Vec<Assigned>,
    /// The CF8 address latch (mechanism #1).
    cf8: u32,
    /// Guest vectors raised and not yet injected, per vCPU (an IRR: one MSI while its
    /// vector is pending is merged with it, as the LAPIC does).
    pending: [[u64; 4]; crate::domain::MAX_VCPUS],
    /// MSIs injected so far.
    pub injected: u64,
    /// Guest-physical pages whose frame changed since the IOMMU mirrored them.
    pub stale: Vec<u64>,
}

/// Where in an assigned function's trapped MSI-X pages a guest access falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixArea {
    /// Offset into the MSI-X table (emulated: the virtual table).
    Table(u64),
    /// Offset into the PBA (reads pass through to the device; writes dropped).
    Pba(u64),
    /// Elsewhere in a trapped page (passed through to the device).
    Other,
}

/// A guest access at a trapped MSI-X page: function index, area, and the host
/// address of the same byte in the device's BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixHit {
    pub function: usize,
    pub area: MsixArea,
    pub host: u64,
}

/// What a config-port access asks the machine side to do.
pub struct PioEffects {
    /// The value an IN returns (None for an OUT).
    pub value: Option<u32>,
    /// Events of the function at that index in `functions`.
    pub events: Vec<(usize, Event)>,
}

impl DomainPci {
    /// The assigned function at host (= guest) `bdf`.
    pub fn find(&self, bdf: Bdf) -> Option<usize> {
        self.functions.iter().position(|f| f.host == bdf)
    }

    /// Whether host frame `hpa` is inside a BAR mapped into this guest (the audit).
    pub fn owns_mmio(&self, hpa: u64) -> bool {
        self.functions
            .iter()
            .flat_map(|f| f.bars.iter())
            .any(|b| hpa >= b.host && hpa - b.host < b.size)
    }

    /// Whether `[gpa, gpa + size)` lies in a trapped MSI-X page (table or PBA) of a BAR
    /// the guest has mapped, and where; an access that is not wholly inside one such
    /// page is None (unhandleable for the caller).
    pub fn msix_hit(&self, gpa: u64, size: u64) -> Option<MsixHit> {
        let end = gpa.checked_add(size)?;
        for (k, f) in self.functions.iter().enumerate() {
            let Some(m) = f.vcfg.msix() else { continue };
            for b in &f.bars {
                if gpa < b.guest || end > b.guest + b.size {
                    continue;
                }
                let off = gpa - b.guest;
                let page = off & !0xFFF;
                let trapped = f
                    .vcfg
                    .trapped()
                    .iter()
                    .any(|t| t.bar == b.index && page >= t.start && page < t.end);
                if !trapped || (end - 1 - b.guest) & !0xFFF != page {
                    continue;
                }
                let inside = |bir: u8, start: u32, len: u64| {
                    (bir == b.index && off >= u64::from(start) && off - u64::from(start) < len)
                        .then(|| off - u64::from(start))
                };
                let area = if let Some(o) = inside(m.table_bir, m.table_off, m.table_len()) {
                    MsixArea::Table(o)
                } else if let Some(o) = inside(m.pba_bir, m.pba_off, m.pba_len()) {
                    MsixArea::Pba(o)
                } else {
                    MsixArea::Other
                };
                return Some(MsixHit {
                    function: k,
                    area,
                    host: b.host + off,
                });
            }
        }
        None
    }

    /// An IN or OUT of `size` bytes at `port` (0xCF8..=0xCFF); `value` is what an OUT
    /// writes. Functions not assigned to this domain read all-ones and ignore writes.
    pub fn pio(
        &mut self,
        dev: &mut impl ConfigSpace,
        port: u16,
        size: u8,
        input: bool,
        value: u32,
    ) -> PioEffects {
        let Some(w) = Width::from_bytes(size as usize) else {
            return PioEffects {
                value: input.then_some(u32::MAX),
                events: Vec::new(),
            };
        };
        let mut events = Vec::new();
        let ones = w.ones();
        let read = if port == CF8 && w == Width::B4 {
            if input {
                Some(self.cf8)
            } else {
                // Enable, bus, device, function, register (dword); reserved bits 0.
                self.cf8 = value & 0x80FF_FFFC;
                None
            }
        } else if (CFC..CFC + 4).contains(&port) {
            let off = (self.cf8 & 0xFC) as u16 + (port - CFC);
            let bdf = Bdf::new(
                (self.cf8 >> 16) as u8,
                ((self.cf8 >> 11) & 31) as u8,
                ((self.cf8 >> 8) & 7) as u8,
            );
            let enabled = self.cf8 & 1 << 31 != 0;
            self.config(
                dev,
                enabled.then_some(bdf),
                off,
                w,
                input,
                value,
                &mut events,
            )
        } else {
            // 0xCF8 narrower than a dword, 0xCF9 (reset control) ...: nothing here.
            input.then_some(ones)
        };
        PioEffects {
            value: read.map(|v| v & ones),
            events,
        }
    }

    /// One config access of width `w` at `off` of `bdf` (None: nothing addressed): what
    /// a read gives (all-ones unless the function is assigned here, or is the emulated
    /// host bridge, and the offset aligned); a write goes to the function's virtual
    /// config space (the host bridge takes none).
    #[allow(clippy::too_many_arguments)]
    fn config(
        &mut self,
        dev: &mut impl ConfigSpace,
        bdf: Option<Bdf>,
        off: u16,
        w: Width,
        input: bool,
        value: u32,
        events: &mut Vec<(usize, Event)>,
    ) -> Option<u32> {
        let target = bdf
            .filter(|_| off.is_multiple_of(w.bytes()))
            .and_then(|b| self.find(b));
        match (target, input) {
            (Some(i), true) => Some(self.functions[i].vcfg.read(dev, off, w)),
            (Some(i), false) => {
                let ev = self.functions[i].vcfg.write(dev, off, w, value & w.ones());
                events.extend(ev.into_iter().map(|e| (i, e)));
                None
            }
            (None, true)
                if bdf == Some(HOST_BRIDGE) && off.is_multiple_of(w.bytes()) && off < 0x1000 =>
            {
                Some(host_bridge_read(off, w))
            }
            (None, true) => Some(w.ones()),
            (None, false) => None,
        }
    }

    /// An emulated access of `size` bytes at `off` into the ECAM window (`value`: what a
    /// write stores): bus, device, function and register from the offset, as the
    /// specification lays them out. 8-byte accesses read all-ones and write nothing
    /// (config space is 1/2/4-byte), as do unaligned ones and absent functions.
    pub fn ecam(
        &mut self,
        dev: &mut impl ConfigSpace,
        off: u64,
        size: u8,
        input: bool,
        value: u64,
    ) -> (u64, Vec<(usize, Event)>) {
        let mut events = Vec::new();
        let ones = if size >= 8 {
            u64::MAX
        } else {
            (1 << (size * 8)) - 1
        };
        let (Some(w), true) = (Width::from_bytes(size as usize), off < ECAM_SIZE) else {
            return (ones, events);
        };
        let bdf = Bdf::new(
            (off >> 20) as u8,
            ((off >> 15) & 31) as u8,
            ((off >> 12) & 7) as u8,
        );
        let read = self.config(
            dev,
            Some(bdf),
            (off & 0xFFF) as u16,
            w,
            input,
            value as u32,
            &mut events,
        );
        (read.map_or(ones, u64::from) & ones, events)
    }

    /// Raises guest `vector` on vCPU `vcpu` (a remapped MSI arrived).
    pub fn raise(&mut self, m: GuestMsi) {
        if let Some(p) = self.pending.get_mut(m.vcpu) {
            p[m.vector as usize / 64] |= 1 << (m.vector % 64);
        }
    }

    /// Whether vCPU `k` has a device interrupt to take.
    pub fn due(&self, k: usize) -> bool {
        self.pending
            .get(k)
            .is_some_and(|p| p.iter().any(|&w| w != 0))
    }

    /// vCPU `k`'s raised device vectors not yet injected.
    pub fn raised(&self, k: usize) -> [u64; 4] {
        self.pending.get(k).copied().unwrap_or_default()
    }

    /// Takes vCPU `k`'s highest pending vector.
    pub fn take(&mut self, k: usize) -> Option<u8> {
        let p = self.pending.get_mut(k)?;
        let i = (0..4).rev().find(|&i| p[i] != 0)?;
        let bit = 63 - p[i].leading_zeros() as usize;
        p[i] &= !(1 << bit);
        Some((i * 64 + bit) as u8)
    }
}

/// Before vCPU `k` enters: injects its highest pending device vector unless an
/// interrupt is already waiting to be taken (then at a later entry).
pub fn before_entry<V: crate::virt::VcpuState>(pci: &mut DomainPci, k: usize, v: &mut V) {
    if v.virq_pending() {
        return;
    }
    if let Some(vector) = pci.take(k) {
        v.set_virq(vector);
        pci.injected += 1;
    }
}
