//! DMA protection at boot: the DMAR (VT-d) or IVRS (AMD-Vi) table is parsed, every unit
//! it names is brought up through `sluice-iommu` with no device attached to any domain —
//! so every DMA of every PCI device faults — and faults are drained and logged. Each
//! hypervisor domain owns an (empty) IOMMU domain per unit, ready for device assignment.
//!
//! Everything here is safe code; the machine side is `arch::iommu::IommuHal`.

use crate::acpi::{self, PciFunction, Platform};
use crate::arch::iommu::IommuHal;
use crate::arch::phys;
use crate::log;
use crate::mm::{FrameAllocator, FramePool, PAGE};
use alloc::vec::Vec;
use core::fmt;
use sluice_iommu::acpi::dmar::Dmar;
use sluice_iommu::acpi::ivrs::Ivrs;
use sluice_iommu::acpi::AcpiError;
use sluice_iommu::amdvi::{AmdVi, AmdViConfig};
use sluice_iommu::vtd::regs::{ExtCapabilities, ECAP};
use sluice_iommu::vtd::{Vtd, VtdConfig};
use sluice_iommu::{Bdf, Coverage, DomainId, Fault, FaultKind, Iommu, IommuHw};

/// Table frames per VT-d unit (root, queue, interrupt table, context tables and the
/// domains' page tables).
const VTD_POOL_PAGES: usize = 256;
/// Per AMD-Vi unit: the 2 MiB device table plus as much again for everything else.
const AMDVI_POOL_PAGES: usize = 1024;
/// A VT-d register block: CAP/ECAP place the fault recording and IOTLB registers at most
/// 0x3ff0 + 256 * 16 bytes in, so 20 KiB bound every register the driver touches.
const VTD_REGS: u64 = 0x5000;
/// An AMD-Vi register block (16 KiB; the driver uses the first 0x2028 bytes).
const AMDVI_REGS: u64 = 0x4000;
/// Faults logged one by one; later ones are only counted.
const FAULTS_LOGGED: u64 = 32;

/// Why the IOMMU could not be brought up.
#[derive(Debug)]
pub enum InitError {
    /// Neither DMAR nor IVRS.
    NoTable,
    /// The table's address or length is impossible.
    Unreadable(&'static str),
    /// The table is malformed.
    Acpi(&'static str, AcpiError),
    /// It names no remapping unit.
    NoUnits(&'static str),
    /// A unit's register block is unusable.
    BadUnit { base: u64, why: &'static str },
    /// No contiguous frames for a unit's tables.
    NoMemory { base: u64 },
    /// The driver refused (timeouts, missing features).
    Driver {
        base: u64,
        error: sluice_iommu::Error,
    },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NoTable => write!(f, "no DMAR or IVRS table"),
            InitError::Unreadable(t) => write!(f, "{t} table outside memory or too large"),
            InitError::Acpi(t, e) => write!(f, "{t} table malformed: {e}"),
            InitError::NoUnits(t) => write!(f, "{t} table names no remapping unit"),
            InitError::BadUnit { base, why } => write!(f, "unit at {base:#x}: {why}"),
            InitError::NoMemory { base } => {
                write!(f, "unit at {base:#x}: no contiguous frames for its tables")
            }
            InitError::Driver { base, error } => write!(f, "unit at {base:#x}: {error}"),
        }
    }
}

enum Driver {
    Vtd(alloc::boxed::Box<Iommu<Vtd<IommuHal>>>),
    AmdVi(alloc::boxed::Box<Iommu<AmdVi<IommuHal>>>),
}

/// Runs `$body` with `$i` bound to the unit's `Iommu`, whatever its vendor.
macro_rules! with_iommu {
    ($driver:expr, $i:ident => $body:expr) => {
        match $driver {
            Driver::Vtd($i) => $body,
            Driver::AmdVi($i) => $body,
        }
    };
}

mod assign;

struct Unit {
    base: u64,
    coverage: Coverage,
    driver: Driver,
}

impl Unit {
    fn hal(&self) -> &IommuHal {
        match &self.driver {
            Driver::Vtd(i) => i.hw_ref().hal(),
            Driver::AmdVi(i) => i.hw_ref().hal(),
        }
    }
}

/// The IOMMU units, up and blocking every device.
pub struct Protection {
    units: Vec<Unit>,
    /// Functions behind some unit (every one blocked).
    pub blocked: usize,
    faults: u64,
    /// Per unit: the quarantine domain, made when a function first needs it.
    quarantine: Vec<Option<DomainId>>,
    /// Functions in quarantine (unit, function).
    quarantined: Vec<(usize, Bdf)>,
}

/// A hypervisor domain's IOMMU domains, one per unit (no device attached yet).
#[derive(Debug)]
pub struct IommuDomain {
    ids: Vec<DomainId>,
    /// Units whose part has the domain's RAM mapped (on the first assigned function).
    ram_mapped: Vec<usize>,
}

impl IommuDomain {
    /// The id in the first unit (for the log).
    pub fn first_id(&self) -> Option<DomainId> {
        self.ids.first().copied()
    }
}

/// The unit claiming `device`: one naming it explicitly, else one covering all of its
/// segment (DMAR INCLUDE_PCI_ALL, IVHD "all" entries).
fn owner(units: &[(u64, Coverage)], device: Bdf) -> Option<usize> {
    let explicit = units.iter().position(|(_, c)| !c.all && c.covers(device));
    explicit.or_else(|| units.iter().position(|(_, c)| c.all && c.covers(device)))
}

/// Checks a unit's register block: page aligned, not RAM, inside the identity map.
fn check_regs(fa: &FrameAllocator, base: u64, len: u64) -> Result<(), InitError> {
    let why = if base == 0 || !base.is_multiple_of(PAGE) {
        "register base not page aligned"
    } else if fa.overlaps_ram(base, PAGE) {
        "register block overlaps RAM (usable, firmware or the first MiB)"
    } else if !phys::mapped(base, len) {
        "register block outside the identity map (above 4 GiB)"
    } else {
        return Ok(());
    };
    Err(InitError::BadUnit { base, why })
}

fn pool(
    fa: &mut FrameAllocator,
    base: u64,
    pages: usize,
    align: u64,
) -> Result<FramePool, InitError> {
    let start = fa
        .alloc_contiguous(pages as u64, align)
        .ok_or(InitError::NoMemory { base })?;
    Ok(FramePool::new(start, pages))
}

/// Brings up every unit of the DMAR or IVRS table; logs each unit and what it blocks.
pub fn init(
    pf: &Platform,
    fa: &mut FrameAllocator,
    functions: &[PciFunction],
) -> Result<Protection, InitError> {
    let mut units = Vec::new();
    if let Some(loc) = pf.dmar {
        let table = acpi::copy_table(loc).ok_or(InitError::Unreadable("DMAR"))?;
        let dmar = Dmar::parse(&table).map_err(|e| InitError::Acpi("DMAR", e))?;
        if dmar.units.is_empty() {
            return Err(InitError::NoUnits("DMAR"));
        }
        for drhd in &dmar.units {
            check_regs(fa, drhd.base, VTD_REGS)?;
            let ecap = ExtCapabilities::decode(phys::mmio_read_u64(drhd.base + ECAP));
            let coherent = ecap.raw & 1 != 0;
            let config = VtdConfig {
                register_invalidation: false,
                interrupt_remapping: ecap.interrupt_remapping && ecap.queued_invalidation,
            };
            let hal = IommuHal::new(
                pool(fa, drhd.base, VTD_POOL_PAGES, PAGE)?,
                (drhd.base, VTD_REGS),
                coherent,
            );
            let vtd = Vtd::new(hal, drhd.base, drhd.coverage(), config).map_err(|error| {
                InitError::Driver {
                    base: drhd.base,
                    error,
                }
            })?;
            units.push(Unit {
                base: drhd.base,
                coverage: drhd.coverage(),
                driver: Driver::Vtd(alloc::boxed::Box::new(Iommu::new(vtd))),
            });
        }
        if !dmar.reserved_regions.is_empty() {
            log!(
                "iommu: DMAR lists {} reserved memory regions (RMRR): not mapped, the devices using them are blocked too",
                dmar.reserved_regions.len()
            );
        }
    } else if let Some(loc) = pf.ivrs {
        let table = acpi::copy_table(loc).ok_or(InitError::Unreadable("IVRS"))?;
        let ivrs = Ivrs::parse(&table).map_err(|e| InitError::Acpi("IVRS", e))?;
        // Type 0x11/0x40 blocks may describe a unit a type 0x10 block already did: one
        // driver per register block.
        let mut bases: Vec<u64> = Vec::new();
        for ivhd in &ivrs.units {
            if bases.contains(&ivhd.base) {
                continue;
            }
            bases.push(ivhd.base);
            check_regs(fa, ivhd.base, AMDVI_REGS)?;
            // The capability header's NpCache bit (26); unreadable: assume it is set
            // (flushing after map as well is always correct).
            let cap_bdf = Bdf::from_requester_id(ivhd.segment, ivhd.device_id);
            let header = match ivhd.capability_offset {
                off @ 0x40..=0xfc if off % 4 == 0 => acpi::config_read(pf, cap_bdf, off),
                _ => u32::MAX,
            };
            let np_cache = header & 0xff != 0x0f || header & (1 << 26) != 0;
            let config = AmdViConfig {
                np_cache,
                va_bits: ivrs.va_bits(),
            };
            let hal = IommuHal::new(
                pool(fa, ivhd.base, AMDVI_POOL_PAGES, 2 << 20)?,
                (ivhd.base, AMDVI_REGS),
                true,
            );
            let amd = AmdVi::new(hal, ivhd.base, ivhd.coverage(), config).map_err(|error| {
                InitError::Driver {
                    base: ivhd.base,
                    error,
                }
            })?;
            units.push(Unit {
                base: ivhd.base,
                coverage: ivhd.coverage(),
                driver: Driver::AmdVi(alloc::boxed::Box::new(Iommu::new(amd))),
            });
        }
        if units.is_empty() {
            return Err(InitError::NoUnits("IVRS"));
        }
        if !ivrs.memory.is_empty() {
            log!(
                "iommu: IVRS lists {} memory definitions (IVMD): not mapped, the devices using them are blocked too",
                ivrs.memory.len()
            );
        }
    } else {
        return Err(InitError::NoTable);
    }

    let claims: Vec<(u64, Coverage)> = units.iter().map(|u| (u.base, u.coverage.clone())).collect();
    let mut per_unit = alloc::vec![0usize; units.len()];
    let mut uncovered = Vec::new();
    for f in functions {
        match owner(&claims, f.bdf) {
            Some(u) => per_unit[u] += 1,
            None => uncovered.push(f.bdf),
        }
    }
    for (u, n) in units.iter().zip(&per_unit) {
        let all = if uncovered.is_empty() && units.len() == 1 {
            "all "
        } else {
            ""
        };
        match &u.driver {
            Driver::Vtd(i) => {
                let v = i.hw_ref();
                log!(
                    "iommu: VT-d at {:#x} ({}-bit, {}{}{}): DMA translation on, {}{} devices blocked",
                    u.base,
                    v.address_width(),
                    if v.queued() { "QI" } else { "register invalidation" },
                    if v.interrupt_remapping() { ", IR" } else { ", no IR" },
                    if v.ecap.raw & 1 != 0 { "" } else { ", non-coherent: tables flushed" },
                    all,
                    n
                );
            }
            Driver::AmdVi(i) => {
                let a = i.hw_ref();
                log!(
                    "iommu: AMD-Vi at {:#x} ({}-bit, {} levels{}, IR): DMA translation on, {}{} devices blocked",
                    u.base,
                    (12 + 9 * u32::from(a.page_table_levels())).min(64),
                    a.page_table_levels(),
                    if a.flush_on_map() { ", NpCache" } else { "" },
                    all,
                    n
                );
            }
        }
    }
    if !uncovered.is_empty() {
        log!(
            "iommu: {} devices behind no IOMMU unit: NOT protected from DMA: {:?}",
            uncovered.len(),
            uncovered
        );
    }
    Ok(Protection {
        quarantine: alloc::vec![None; units.len()],
        quarantined: Vec::new(),
        units,
        blocked: per_unit.iter().sum(),
        faults: 0,
    })
}

impl Protection {
    /// An empty IOMMU domain in every unit (every device stays blocked).
    pub fn create_domain(&mut self) -> Result<IommuDomain, sluice_iommu::Error> {
        let mut ids = Vec::with_capacity(self.units.len());
        for u in &mut self.units {
            match with_iommu!(&mut u.driver, i => i.create_domain()) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    self.destroy_domain(IommuDomain {
                        ids,
                        ram_mapped: Vec::new(),
                    });
                    return Err(e);
                }
            }
        }
        Ok(IommuDomain {
            ids,
            ram_mapped: Vec::new(),
        })
    }

    /// Destroys a domain's IOMMU domains (it has no devices: assignment is not built).
    pub fn destroy_domain(&mut self, d: IommuDomain) {
        for (u, id) in self.units.iter_mut().zip(d.ids) {
            if let Err(e) = with_iommu!(&mut u.driver, i => i.destroy_domain(id)) {
                log!(
                    "iommu: unit at {:#x}: destroying domain {}: {}",
                    u.base,
                    id,
                    e
                );
            }
        }
    }

    /// Drains every unit's fault log; logs the first faults, counts all. Returns the
    /// faults drained now.
    pub fn drain_faults(&mut self, mut seen: impl FnMut(&Fault)) -> u64 {
        let mut n = 0;
        for u in &mut self.units {
            let base = u.base;
            let total = &mut self.faults;
            let mut out = |f: Fault| {
                *total += 1;
                n += 1;
                if *total <= FAULTS_LOGGED {
                    log!(
                        "iommu: fault: {} {} at {:#x}: code {:#x} ({})",
                        f.device,
                        match f.kind {
                            FaultKind::Read => "read",
                            FaultKind::Write => "write",
                            FaultKind::Interrupt => "interrupt",
                            FaultKind::Other => "event",
                        },
                        f.address,
                        f.code,
                        f.reason
                    );
                } else if *total == FAULTS_LOGGED + 1 {
                    log!("iommu: further faults are counted, not logged");
                }
                seen(&f);
            };
            if let Err(e) = with_iommu!(&mut u.driver, i => i.drain_faults(&mut out)) {
                log!("iommu: unit at {:#x}: draining faults: {}", base, e);
            }
        }
        n
    }

    /// Faults drained since boot.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Table frames in use (all units) and frees the pools refused.
    pub fn table_frames(&self) -> (usize, u64) {
        self.units.iter().fold((0, 0), |(n, b), u| {
            (n + u.hal().frames_in_use(), b + u.hal().bad_frees())
        })
    }

    /// IOMMU domains that exist (all units).
    pub fn domains(&self) -> usize {
        self.units
            .iter()
            .map(|u| with_iommu!(&u.driver, i => i.domain_count()))
            .sum()
    }

    /// True for an AMD-Vi unit (whose event log QEMU 7.2 never writes).
    pub fn vendor(&self) -> &'static str {
        match self.units.first().map(|u| &u.driver) {
            Some(Driver::Vtd(_)) => "VT-d",
            Some(Driver::AmdVi(_)) => "AMD-Vi",
            None => "none",
        }
    }
}

/// edu (QEMU's educational device, PCI 1234:11e8): its DMA engine writes its 4 KiB
/// buffer (device address 0x40000) to memory.
const EDU_ID: (u16, u16) = (0x1234, 0x11e8);
const EDU_BUFFER: u64 = 0x4_0000;
/// Bytes per DMA (QEMU 7.2's edu refuses a transfer ending exactly at its buffer end).
const EDU_DMA_LEN: u64 = 2048;
const EDU_BAR_LEN: u64 = 1 << 20;

/// The `iommu-selftest` boot option: makes the first edu device DMA-write into a
/// hypervisor frame, then checks the frame is unchanged and that a fault naming edu and
/// the frame was reported. With no IOMMU it shows the write landing (devices are not
/// protected). `now_ns` bounds the wait for the device.
pub fn selftest(
    prot: Option<&mut Protection>,
    pf: &Platform,
    functions: &[PciFunction],
    fa: &mut FrameAllocator,
    now_ns: &dyn Fn() -> u64,
) {
    let Some(edu) = functions
        .iter()
        .find(|f| (f.vendor, f.device) == EDU_ID)
        .map(|f| f.bdf)
    else {
        log!("iommu: selftest: no edu device (1234:11e8): skipped");
        return;
    };
    let bar = acpi::config_read(pf, edu, 0x10);
    let bar = if bar & 0b110 == 0b100 {
        u64::from(bar & !0xf) | u64::from(acpi::config_read(pf, edu, 0x14)) << 32
    } else {
        u64::from(bar & !0xf)
    };
    if bar & 1 != 0
        || bar == 0
        || !phys::mapped(bar, EDU_BAR_LEN)
        || fa.overlaps_ram(bar, EDU_BAR_LEN)
    {
        log!(
            "iommu: selftest: edu {} BAR0 {:#x} unusable: skipped",
            edu,
            bar
        );
        return;
    }
    let Some(frame) = fa.alloc() else {
        log!("iommu: selftest: no free frame: skipped");
        return;
    };
    phys::fill(frame, PAGE as usize, 0x5a);
    // Memory decoding and bus mastering on for the test only.
    let command = acpi::config_read(pf, edu, 4);
    acpi::config_write(pf, edu, 4, (command & 0xffff) | 0x6);
    log!(
        "iommu: selftest: edu {} (BAR0 {:#x}) DMA-writes {} bytes to hypervisor frame {:#x}",
        edu,
        bar,
        EDU_DMA_LEN,
        frame
    );
    phys::mmio_write_u64(bar + 0x80, EDU_BUFFER);
    phys::mmio_write_u64(bar + 0x88, frame);
    phys::mmio_write_u64(bar + 0x90, EDU_DMA_LEN);
    phys::mmio_write_u64(bar + 0x98, 1 | 2); // start, edu -> RAM
    let deadline = now_ns() + 2_000_000_000;
    let mut done = false;
    while now_ns() < deadline {
        if phys::mmio_read_u64(bar + 0x98) & 1 == 0 {
            done = true;
            break;
        }
        core::hint::spin_loop();
    }
    acpi::config_write(pf, edu, 4, command & 0xffff & !0x4);
    let mut page = [0u8; PAGE as usize];
    phys::read(frame, &mut page);
    let changed = page.iter().filter(|&&b| b != 0x5a).count();
    if !done {
        log!("iommu: selftest: edu DMA did not complete within 2 s");
    }
    if changed == 0 {
        log!(
            "iommu: selftest: frame {:#x} unchanged: the DMA was blocked",
            frame
        );
    } else {
        log!(
            "iommu: selftest: frame {:#x}: {} bytes OVERWRITTEN by the device: DMA is NOT blocked",
            frame,
            changed
        );
    }
    match prot {
        Some(p) => {
            let mut named = false;
            p.drain_faults(|f| {
                named |=
                    f.device == edu && f.address & !0xfff == frame && f.kind == FaultKind::Write;
            });
            if named {
                log!(
                    "iommu: selftest: {} reported the fault: edu {} write at {:#x}",
                    p.vendor(),
                    edu,
                    frame
                );
            } else {
                log!(
                    "iommu: selftest: {} reported no fault naming edu {} at {:#x}",
                    p.vendor(),
                    edu,
                    frame
                );
            }
        }
        None => log!("iommu: selftest: no IOMMU to report a fault"),
    }
    fa.free(frame);
}
