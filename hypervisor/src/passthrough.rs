//! PCI passthrough, the machine side: `assign=` checked against `sluice-pciback`'s
//! inventory and groups, the function reset and put in the domain's IOMMU domain (its
//! RAM at IOVA = GPA, nothing else), its config space served by `vpci` over the ECAM,
//! BARs mapped where the guest places them, MSIs remapped to a hypervisor vector and
//! injected at the guest's; DMA faults named by domain and device; at the domain's
//! death, before its frames are freed: BARs unmapped, bus master off, pending DMA
//! drained, reset, quarantine.

use crate::acpi::{self, Platform};
use crate::arch::{lapic, phys};
use crate::domain::Domain;
use crate::hypercall::After;
use crate::iommu::Protection;
use crate::log;
use crate::mm::{FrameAllocator, Owner, PAGE};
use crate::sched::World;
use crate::virt::{Exit, VcpuState};
use crate::vpci::{self, Assigned, DomainPci};
use alloc::boxed::Box;
use alloc::vec::Vec;
use sluice_pciback::assign::{self, Group, Policy, RdmPolicy, Refusal};
use sluice_pciback::config::Width;
use sluice_pciback::inventory::{self, Function};
use sluice_pciback::reset::{ResetMachine, Step};
use sluice_pciback::vcfg::VirtualConfig;
use sluice_pciback::{Bdf, ConfigSpace};

mod dump;
mod event;
mod mmio;

pub use dump::dump;

/// Guest BARs may be placed below this (the NPT and the test guests' page tables cover
/// 64 GiB).
const MAX_GUEST_GPA: u64 = 1 << 36;
/// Guest-physical ranges no BAR may cover besides RAM: the IOAPIC, HPET and LAPIC
/// windows (where the guest expects those) and its ECAM window, half-open.
const GUEST_RESERVED: [(u64, u64); 2] = [
    (0xFEC0_0000, 0xFF00_0000),
    (vpci::ECAM_GPA, vpci::ECAM_GPA + vpci::ECAM_SIZE),
];
/// Bound on a reset's total delay (ms): pending-transaction and ready waits included.
const RESET_BUDGET_MS: u32 = 2000;

/// The machine's PCI config space over its ECAM (8/16/32-bit accesses).
pub struct Ecam<'a>(pub &'a Platform);

impl ConfigSpace for Ecam<'_> {
    fn read(&mut self, bdf: Bdf, off: u16, w: Width) -> u32 {
        match acpi::config_space(self.0, bdf) {
            Some(cfg) if off < 4096 && off.is_multiple_of(w.bytes()) => {
                let pa = cfg + u64::from(off);
                match w {
                    Width::B1 => phys::mmio_read_u8(pa).into(),
                    Width::B2 => phys::mmio_read_u16(pa).into(),
                    Width::B4 => phys::mmio_read_u32(pa),
                }
            }
            _ => w.ones(),
        }
    }
    fn write(&mut self, bdf: Bdf, off: u16, w: Width, v: u32) {
        if let Some(cfg) = acpi::config_space(self.0, bdf) {
            if off < 4096 && off.is_multiple_of(w.bytes()) {
                let pa = cfg + u64::from(off);
                match w {
                    Width::B1 => phys::mmio_write_u8(pa, v as u8),
                    Width::B2 => phys::mmio_write_u16(pa, v as u16),
                    Width::B4 => phys::mmio_write_u32(pa, v),
                }
            }
        }
    }
}

/// The machine's functions and groups, made once (BAR sizing writes to every
/// function, so only when a domain asks for a device, before any runs).
pub struct Inventory {
    pub functions: Vec<Function>,
    pub groups: Vec<Group>,
    /// Host interrupt slots (lapic::DEVICE_VECTOR + n) in use.
    slots: [bool; lapic::DEVICE_SLOTS],
    /// The boot CPU's APIC id: every remapped MSI goes there.
    bsp_apic: u8,
}

/// What the frames of a dead domain with devices are filled with before they are freed.
const POISON: u8 = 0xD5;

static PLATFORM: spin::Once<Platform> = spin::Once::new();

/// Records the platform for config-space accesses after boot.
pub fn set_platform(pf: Platform) {
    PLATFORM.call_once(|| pf);
}

fn ecam() -> Option<Ecam<'static>> {
    PLATFORM.get().map(Ecam)
}

impl Inventory {
    pub fn new(prot: &Protection) -> Option<Inventory> {
        let pf = PLATFORM.get()?;
        let mut cfg = Ecam(pf);
        let functions = inventory::enumerate(&mut cfg, 0, pf.ecam_buses.0, pf.ecam_buses.1);
        let covered = |b: Bdf| prot.unit_for(b).is_some();
        let policy = Policy {
            hypervisor_uses: &[],
            iommu_functions: &[],
            covered: &covered,
            reserved: &[],
            rdm: RdmPolicy::Strict,
        };
        let groups = assign::groups(&functions, &policy);
        log!(
            "passthrough: {} functions, {} groups ({} assignable)",
            functions.len(),
            groups.len(),
            groups.iter().filter(|g| g.verdict.is_ok()).count()
        );
        Some(Inventory {
            functions,
            groups,
            slots: [false; lapic::DEVICE_SLOTS],
            bsp_apic: lapic::id() as u8,
        })
    }
}

/// Why an `assign=` request was refused.
enum Refused {
    Parse(vpci::ParseError),
    NoFunction(Bdf),
    NoGroup(Bdf),
    Group(Refusal),
    /// The group holds a function the request does not name.
    PartOfGroup {
        bdf: Bdf,
        other: Bdf,
    },
    NoIommu,
    Iommu(Bdf, sluice_iommu::Error),
    AlreadyAssigned(Bdf),
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refused::Parse(e) => write!(f, "bad assign= list: {e:?}"),
            Refused::NoFunction(b) => write!(f, "no function {b}"),
            Refused::NoGroup(b) => write!(f, "{b} is in no group"),
            Refused::Group(r) => write!(f, "group refused: {r:?}"),
            Refused::PartOfGroup { bdf, other } => write!(
                f,
                "{bdf} shares its IOMMU group with {other} (no ACS isolation): assign the whole group"
            ),
            Refused::NoIommu => write!(f, "no IOMMU: a device would reach all memory"),
            Refused::Iommu(b, e) => write!(f, "{b}: IOMMU: {e}"),
            Refused::AlreadyAssigned(b) => write!(f, "{b} is assigned to another domain"),
        }
    }
}

/// Assigns what `d`'s command line names (nothing: Ok). On refusal the domain must not
/// run (as `xl create` fails); the reason is logged.
pub fn assign_at_create(
    d: &mut Domain,
    cmdline: &str,
    prot: Option<&mut Protection>,
    inv: &mut Option<Inventory>,
    fa: &mut FrameAllocator,
    assigned_elsewhere: &dyn Fn(Bdf) -> bool,
) -> bool {
    let wanted = match vpci::parse_assign(cmdline) {
        Ok(w) if w.is_empty() => return true,
        Ok(w) => w,
        Err(e) => return refuse(d, Refused::Parse(e)),
    };
    let Some(prot) = prot else {
        return refuse(d, Refused::NoIommu);
    };
    if inv.is_none() {
        *inv = Inventory::new(prot);
    }
    let Some(inv) = inv.as_mut() else {
        return refuse(d, Refused::NoIommu);
    };
    match assign(d, &wanted, prot, inv, fa, assigned_elsewhere) {
        Ok(()) => true,
        Err(r) => {
            release(d, prot, inv, fa);
            refuse(d, r)
        }
    }
}

fn refuse(d: &Domain, r: Refused) -> bool {
    log!(
        "passthrough: d{} ({}): assignment REFUSED: {}",
        d.id,
        d.name(),
        r
    );
    false
}

fn assign(
    d: &mut Domain,
    wanted: &[Bdf],
    prot: &mut Protection,
    inv: &mut Inventory,
    fa: &mut FrameAllocator,
    assigned_elsewhere: &dyn Fn(Bdf) -> bool,
) -> Result<(), Refused> {
    // Every check before anything is touched.
    for &bdf in wanted {
        if !inv.functions.iter().any(|f| f.bdf == bdf) {
            return Err(Refused::NoFunction(bdf));
        }
        let g = assign::group_of(&inv.groups, bdf).ok_or(Refused::NoGroup(bdf))?;
        g.verdict.map_err(Refused::Group)?;
        if let Some(&other) = g.members.iter().find(|m| !wanted.contains(m)) {
            return Err(Refused::PartOfGroup { bdf, other });
        }
        if assigned_elsewhere(bdf) {
            return Err(Refused::AlreadyAssigned(bdf));
        }
    }
    let Some(mut cfg) = ecam() else {
        return Err(Refused::NoIommu);
    };
    let mut io = d.iommu.take().ok_or(Refused::NoIommu)?;
    let mut pci = Box::new(DomainPci::default());
    let r = attach_all(d, wanted, prot, inv, fa, &mut cfg, &mut io, &mut pci);
    d.iommu = Some(io);
    // Whatever was attached is in `pci`: on failure the caller releases it.
    d.pci = Some(pci);
    r
}

#[allow(clippy::too_many_arguments)]
fn attach_all(
    d: &Domain,
    wanted: &[Bdf],
    prot: &mut Protection,
    inv: &mut Inventory,
    fa: &FrameAllocator,
    cfg: &mut Ecam,
    io: &mut crate::iommu::IommuDomain,
    pci: &mut DomainPci,
) -> Result<(), Refused> {
    for &bdf in wanted {
        let f = inv
            .functions
            .iter()
            .find(|f| f.bdf == bdf)
            .ok_or(Refused::NoFunction(bdf))?;
        let u = prot.unit_for(bdf).ok_or(Refused::NoIommu)?;
        // Reset first (bus master off, drain, best reset, BARs restored).
        let outcome = reset(cfg, f, &d.clock);
        if !Protection::ram_mapped(io, u) {
            let pages = map_ram(d.id, d.mem_bytes, &|g| d_gpa(d, g), prot, io, u, fa)
                .map_err(|e| Refused::Iommu(bdf, e))?;
            Protection::set_ram_mapped(io, u);
            log!(
                "passthrough: d{} ({}): IOMMU domain {} maps its RAM at IOVA = GPA ({} pages, nothing else)",
                d.id,
                d.name(),
                io.first_id().unwrap_or(0),
                pages
            );
        }
        let aliases = assign::group_of(&inv.groups, bdf)
            .map(|g| g.aliases.clone())
            .unwrap_or_default();
        for b in core::iter::once(bdf).chain(aliases) {
            prot.attach(io, u, b).map_err(|e| Refused::Iommu(b, e))?;
        }
        let slot = inv.slots.iter().position(|s| !s);
        if let Some(s) = slot {
            inv.slots[s] = true;
        }
        let vcfg = VirtualConfig::new(f, &[(0, d.mem_bytes)], &GUEST_RESERVED, MAX_GUEST_GPA);
        log!(
            "passthrough: d{} ({}): assigned {} ({:04x}:{:04x}), reset {}, in its IOMMU domain; host MSI vector {}",
            d.id,
            d.name(),
            bdf,
            f.vendor,
            f.device,
            outcome,
            Slot(slot)
        );
        pci.functions.push(Assigned {
            host: bdf,
            unit: u,
            vcfg,
            bars: Vec::new(),
            msi: None,
            msix: Vec::new(),
            slot,
        });
    }
    Ok(())
}

struct Slot(Option<usize>);
impl core::fmt::Display for Slot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "{:#x}", lapic::DEVICE_VECTOR as usize + s),
            None => write!(f, "none free (its MSIs stay off)"),
        }
    }
}

fn d_gpa(d: &Domain, gpa: u64) -> Option<u64> {
    d.gpa_to_hpa(crate::addr::Gpa(gpa)).map(|h| h.0)
}

/// Maps the domain's own RAM frames at IOVA = GPA (runs of contiguous frames).
fn map_ram(
    id: u16,
    mem_bytes: u64,
    hpa_of: &dyn Fn(u64) -> Option<u64>,
    prot: &mut Protection,
    io: &crate::iommu::IommuDomain,
    u: usize,
    fa: &FrameAllocator,
) -> Result<u64, sluice_iommu::Error> {
    let mine =
        |gpa: u64| hpa_of(gpa).filter(|&h| fa.owner(crate::addr::Hpa(h)) == Owner::Domain(id));
    let mut pages = 0;
    let mut gpa = 0;
    while gpa < mem_bytes {
        let Some(start) = mine(gpa) else {
            gpa += PAGE;
            continue;
        };
        let mut n = 1;
        while gpa + n * PAGE < mem_bytes && mine(gpa + n * PAGE) == Some(start + n * PAGE) {
            n += 1;
        }
        prot.map(io, u, gpa, start, n * PAGE)?;
        pages += n;
        gpa += n * PAGE;
    }
    Ok(pages)
}

/// Runs pciback's reset machine up to its quarantine step (delays spun, bounded).
fn reset(cfg: &mut Ecam, f: &Function, clock: &crate::time::Clock) -> &'static str {
    let mut m = ResetMachine::new(f);
    let mut waited = 0u32;
    loop {
        match m.step(cfg) {
            Step::Delay(ms) => {
                waited += ms;
                if waited > RESET_BUDGET_MS {
                    return "timed out";
                }
                let until = clock.now_ns() + u64::from(ms) * 1_000_000;
                while clock.now_ns() < until {
                    core::hint::spin_loop();
                }
            }
            Step::Quarantine => {
                let o = m.quarantined();
                return match o.method {
                    Some(method) => method_name(method),
                    None => "none available (bus master off, BARs restored)",
                };
            }
            Step::Done(o) => {
                return match o.method {
                    Some(m) => method_name(m),
                    None => "none available (bus master off, BARs restored)",
                }
            }
        }
    }
}

fn method_name(m: sluice_pciback::reset::Method) -> &'static str {
    use sluice_pciback::reset::Method;
    match m {
        Method::Flr => "FLR",
        Method::AfFlr => "AF FLR",
        Method::Pm => "D3hot->D0",
        Method::Bus(_) => "secondary bus reset",
    }
}

/// Undoes a partial or whole assignment: functions to quarantine (domain death too).
fn release(d: &mut Domain, prot: &mut Protection, inv: &mut Inventory, fa: &mut FrameAllocator) {
    let Some(mut pci) = d.pci.take() else { return };
    let mut cfg = ecam();
    for a in pci.functions.iter_mut() {
        // MSI-X entries masked at the device (through its BAR, so before the BARs go),
        // their remapping entries and slots freed.
        while let Some(&(entry, _)) = a.msix.first() {
            event::msix_mask(a, entry, prot, inv);
        }
        // The guest loses the BARs next, so it cannot restart DMA while this runs.
        for b in a.bars.drain(..) {
            d.unmap_mmio(fa, b.guest, b.size / PAGE);
        }
        if let Some(r) = a.msi.take() {
            let _ = prot.unmap_msi(a.unit, a.host, r.irte);
        }
        let how = match (cfg.as_mut(), inv.functions.iter().find(|f| f.bdf == a.host)) {
            (Some(c), Some(f)) => reset(c, f, &d.clock),
            _ => "not possible (no inventory)",
        };
        let q = prot.quarantine(a.unit, a.host);
        if let Some(s) = a.slot.take() {
            inv.slots[s] = false;
            lapic::take_device_irqs(s);
        }
        log!(
            "passthrough: d{} ({}): {}: bus master off, pending DMA drained, reset {}; {}",
            d.id,
            d.name(),
            a.host,
            how,
            match q {
                Ok(()) => alloc::format!("in quarantine ({} functions there)", prot.quarantined()),
                Err(e) => alloc::format!("quarantine FAILED: {e}"),
            }
        );
    }
}

/// The dying domain `i`'s functions leave it, before its IOMMU domain and frames go.
pub fn teardown(w: &mut World, i: usize) {
    let (Some(d), Some(prot), Some(inv)) = (
        w.domains[i].as_mut(),
        w.protection.as_mut(),
        w.inventory.as_mut(),
    ) else {
        return;
    };
    if d.pci.is_none() {
        return;
    }
    release(d, prot, inv, &mut w.fa);
    // Its devices are stopped and quarantined: poison its RAM before it is freed, so a
    // late DMA into it would show at the end (`check_watched`).
    let mut gpa = 0;
    while gpa < d.mem_bytes {
        if let Some(h) = d_gpa(d, gpa) {
            if w.fa.owner(crate::addr::Hpa(h)) == Owner::Domain(d.id) {
                phys::fill(h, PAGE as usize, POISON);
                w.fa.watch(crate::addr::Hpa(h));
            }
        }
        gpa += PAGE;
    }
}

/// At the end: the poisoned frames of dead domains that had devices, still free since
/// they were freed (the frame table's watch mark: a frame handed out again is not
/// checked), must be unchanged (the allocator's free-list link in the first 8 bytes
/// aside). False (and logged) if a device wrote into one after its domain died.
pub fn check_watched(w: &mut World) -> bool {
    if w.inventory.is_none() {
        return true;
    }
    let (mut checked, mut changed) = (0u64, 0u64);
    let mut page = [0u8; PAGE as usize];
    w.fa.for_each_watched(|h| {
        phys::read(h, &mut page);
        checked += 1;
        if page[8..].iter().any(|&b| b != POISON) {
            changed += 1;
            if changed <= 4 {
                log!("passthrough: freed frame {:#x} CHANGED after its domain died: a device wrote into it", h);
            }
        }
    });
    if checked > 0 {
        log!(
            "passthrough: {} freed frames of dead domains with devices checked (those never handed out again): {} changed since they were freed{}",
            checked,
            changed,
            if changed == 0 { " (no DMA after death)" } else { "" }
        );
    }
    changed == 0
}

/// Handles config-port I/O and ECAM accesses for domain `i` (Some) or leaves the exit
/// to the rest.
pub fn exit(w: &mut World, i: usize, exit: &Exit) -> Option<After> {
    if let &Exit::NestedPageFault {
        gpa,
        flags,
        delivering,
    } = exit
    {
        return mmio::mmio_exit(w, i, gpa, flags, delivering);
    }
    let &Exit::Io {
        port,
        input,
        size,
        string,
        next_rip,
        ..
    } = exit
    else {
        return None;
    };
    if !(vpci::CF8..vpci::CFC + 4).contains(&port) {
        return None;
    }
    let d = w.domains[i].as_mut()?;
    d.vcpu().set_rip(next_rip);
    if string {
        // INS/OUTS on config ports: not emulated (no guest uses them); reads give ones.
        return Some(After::Continue);
    }
    let rax = d.vcpu().rax();
    let value = rax as u32;
    let Some(mut pci) = d.pci.take() else {
        if input {
            let ones = match size {
                1 => 0xFF,
                2 => 0xFFFF,
                _ => 0xFFFF_FFFF,
            };
            d.vcpu().set_rax(rax | ones);
        }
        return Some(After::Continue);
    };
    let effects = match ecam() {
        Some(mut cfg) => pci.pio(&mut cfg, port, size, input, value),
        None => vpci::PioEffects {
            value: input.then_some(u32::MAX),
            events: Vec::new(),
        },
    };
    if let Some(v) = effects.value {
        let keep = match size {
            1 => !0xFF,
            2 => !0xFFFF,
            // IN EAX writes EAX, which zero-extends into RAX.
            _ => 0,
        };
        d.vcpu().set_rax((rax & keep) | u64::from(v));
    }
    for (k, e) in effects.events {
        event::event(
            d,
            &mut pci,
            k,
            e,
            w.protection.as_mut(),
            w.inventory.as_mut(),
            &mut w.fa,
        );
    }
    d.pci = Some(pci);
    Some(After::Continue)
}

/// Delivers the remapped MSIs the host vectors counted to their domains' guest vectors.
pub fn pump(w: &mut World) {
    for s in 0..lapic::DEVICE_SLOTS {
        let n = lapic::take_device_irqs(s);
        if n == 0 {
            continue;
        }
        let mut delivered = false;
        for d in w.domains.iter_mut().flatten() {
            let Some(pci) = d.pci.as_mut() else { continue };
            let route = pci.functions.iter().find_map(|a| {
                a.msi
                    .filter(|r| r.slot == s)
                    .or_else(|| a.msix.iter().map(|&(_, r)| r).find(|r| r.slot == s))
            });
            if let Some(r) = route {
                pci.raise(r.guest);
                d.wake(r.guest.vcpu);
                delivered = true;
            }
        }
        if !delivered {
            log!(
                "passthrough: {} interrupts on host slot {} with no route: dropped",
                n,
                s
            );
        }
    }
}

/// Drains the IOMMU's fault log; a fault of an assigned function is reported naming its
/// domain (which runs on: the DMA was blocked, nothing of anyone's was touched).
pub fn drain_faults(w: &mut World) {
    let Some(p) = w.protection.as_mut() else {
        return;
    };
    let mut faults = Vec::new();
    p.drain_faults(|f| faults.push(*f));
    for f in faults {
        let owner = w
            .domains
            .iter()
            .flatten()
            .find(|d| d.pci.as_ref().is_some_and(|p| p.find(f.device).is_some()));
        if let Some(d) = owner {
            log!(
                "passthrough: d{} ({}): DMA fault by its device {} at IOVA {:#x} ({:?}): blocked, reported; the domain runs on",
                d.id,
                d.name(),
                f.device,
                f.address,
                f.kind
            );
        }
    }
}

/// Before the CPUs' TLBs are declared synced (and held-back frames freed): guest pages
/// whose frame changed (add_to_physmap, grant mapping) are remapped in the IOMMU.
pub fn resync(w: &mut World) {
    let Some(prot) = w.protection.as_mut() else {
        return;
    };
    for d in w.domains.iter_mut().flatten() {
        let Some(pci) = d.pci.as_mut() else { continue };
        if pci.stale.is_empty() {
            continue;
        }
        let stale = core::mem::take(&mut pci.stale);
        let units: Vec<usize> = pci.functions.iter().map(|a| a.unit).collect();
        let Some(io) = d.iommu.as_ref() else { continue };
        for &gpa in &stale {
            let hpa = d
                .gpa_to_hpa(crate::addr::Gpa(gpa))
                .map(|h| h.0)
                .filter(|&h| w.fa.owner(crate::addr::Hpa(h)) == Owner::Domain(d.id));
            for &u in &units {
                let _ = prot.unmap(io, u, gpa, PAGE);
                if let Some(h) = hpa {
                    let _ = prot.map(io, u, gpa, h, PAGE);
                }
            }
        }
    }
}

/// Whether `bdf` is assigned to any domain.
pub fn assigned(domains: &[Option<Domain>], bdf: Bdf) -> bool {
    domains
        .iter()
        .flatten()
        .any(|d| d.pci.as_ref().is_some_and(|p| p.find(bdf).is_some()))
}

/// Before vCPU `k` enters: its pending device interrupt, if any.
pub fn before_entry<V: VcpuState>(d: &mut Domain, k: usize, v: &mut V) {
    if let Some(pci) = d.pci.as_mut() {
        vpci::before_entry(pci, k, v);
    }
}
