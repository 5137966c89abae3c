//! Which functions may be given to a guest, and as what unit. A group is the set of
//! functions that can alias or peer each other's DMA: every function behind a
//! PCIe-to-PCI (or conventional PCI) bridge, or the functions of a multi-function
//! device without ACS. A group is assigned whole or refused with a reason.
//!
//! Reserved memory (VT-d RMRR, AMD-Vi IVMD), Xen's behaviour (vtd/iommu.c
//! `intel_iommu_assign_device`): a device with an RMRR is assignable and the RMRR
//! is identity-mapped in the guest's IOMMU domain; an RMRR whose scope names other
//! devices too ("shared") is refused (-EPERM) unless the toolstack passed
//! `rdm_policy=relaxed`, which only warns. Sluice implements that, with one
//! refinement Xen lists as a TODO: a region shared only by members of the same group
//! is not "shared", since the group goes to one domain whole.
use crate::inventory::{Defect, Function};
use alloc::vec::Vec;
use sluice_iommu::Bdf;

/// A firmware-reserved DMA range (inclusive end) and the functions it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    pub base: u64,
    pub end: u64,
    pub scope: Vec<Bdf>,
}

/// Xen's `rdm_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdmPolicy {
    Strict,
    Relaxed,
}

/// What the caller knows that config space does not say.
pub struct Policy<'a> {
    /// Functions the hypervisor itself uses (its serial port, ...).
    pub hypervisor_uses: &'a [Bdf],
    /// Functions that are IOMMUs (AMD-Vi is a PCI function).
    pub iommu_functions: &'a [Bdf],
    /// Whether an IOMMU translates this function's DMA (DMAR scopes / IVRS device entries).
    pub covered: &'a dyn Fn(Bdf) -> bool,
    pub reserved: &'a [ReservedRegion],
    pub rdm: RdmPolicy,
}

/// Why a group cannot be assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    HostBridge(Bdf),
    Iommu(Bdf),
    UsedByHypervisor(Bdf),
    NotCoveredByIommu(Bdf),
    /// A bridge or port on its own: not a device a guest drives.
    NotAnEndpoint(Bdf),
    Defective(Bdf, Defect),
    /// An RMRR/IVMD that also names a function outside the group (strict policy).
    SharedReservedRegion {
        bdf: Bdf,
        base: u64,
        other: Bdf,
    },
}

/// A unit of assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The endpoint functions the guest gets.
    pub members: Vec<Bdf>,
    /// Bridges in the group: not given to the guest, but their requester ids (and
    /// a PCIe-to-PCI bridge's secondary-bus id) are DMA aliases the IOMMU must route
    /// to the same domain.
    pub aliases: Vec<Bdf>,
    /// Ranges to identity-map in the guest's IOMMU domain (inclusive ends).
    pub unity_maps: Vec<(u64, u64)>,
    /// Shared reserved regions allowed by the relaxed policy (Xen: "risky").
    pub warnings: Vec<Refusal>,
    pub verdict: Result<(), Refusal>,
}

impl Group {
    pub fn contains(&self, bdf: Bdf) -> bool {
        self.members.contains(&bdf) || self.aliases.contains(&bdf)
    }
}

fn find(inv: &[Function], bdf: Bdf) -> Option<&Function> {
    inv.iter().find(|f| f.bdf == bdf)
}

/// A bridge whose downstream requests carry its id (or its secondary bus's): a
/// PCIe-to-PCI bridge, or a bridge without a PCIe capability.
fn aliasing_bridge(f: &Function) -> bool {
    f.bridge.is_some()
        && (f.pcie_type.is_none() || f.pcie_type == Some(crate::config::EXP_TYPE_PCIE_TO_PCI))
}

/// The function whose id names this function's group.
fn group_key(inv: &[Function], f: &Function) -> Bdf {
    // The topmost of: an aliasing bridge above, or the upstream port of a switch
    // whose downstream port above lacks ACS (its downstream ports can then route
    // peer-to-peer between each other's devices). Bounded by the inventory size.
    let mut key = None;
    let mut p = f.parent;
    for _ in 0..inv.len() {
        let Some(b) = p.and_then(|b| find(inv, b)) else {
            break;
        };
        if aliasing_bridge(b) {
            key = Some(b.bdf);
        } else if b.pcie_type == Some(crate::config::EXP_TYPE_DOWNSTREAM) && !b.acs {
            key = Some(b.parent.unwrap_or(b.bdf));
        }
        p = b.parent;
    }
    if let Some(k) = key {
        return k;
    }
    if aliasing_bridge(f) {
        return f.bdf;
    }
    let slot: Vec<&Function> = inv
        .iter()
        .filter(|g| {
            g.bdf.segment == f.bdf.segment && g.bdf.bus == f.bdf.bus && g.bdf.device == f.bdf.device
        })
        .collect();
    let f0_mf = slot.iter().any(|g| g.bdf.function == 0 && g.multifunction);
    if f0_mf && slot.len() > 1 && !slot.iter().all(|g| g.acs) {
        let mut k = f.bdf;
        k.function = 0;
        return k;
    }
    f.bdf
}

/// Groups the inventory and decides each group.
pub fn groups(inv: &[Function], policy: &Policy) -> Vec<Group> {
    let mut keys: Vec<(Bdf, Bdf)> = inv.iter().map(|f| (group_key(inv, f), f.bdf)).collect();
    keys.sort();
    let mut out: Vec<Group> = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        let k = keys[i].0;
        let mut g = Group {
            members: Vec::new(),
            aliases: Vec::new(),
            unity_maps: Vec::new(),
            warnings: Vec::new(),
            verdict: Ok(()),
        };
        while i < keys.len() && keys[i].0 == k {
            let f = find(inv, keys[i].1).expect("from inventory");
            if f.bridge.is_some() && !f.is_host_bridge() {
                g.aliases.push(f.bdf);
                if aliasing_bridge(f) {
                    if let Some((sec, _)) = f.bridge {
                        let mut a = Bdf::new(sec, 0, 0);
                        a.segment = f.bdf.segment;
                        g.aliases.push(a);
                    }
                }
            } else {
                g.members.push(f.bdf);
            }
            i += 1;
        }
        g.verdict = decide(inv, policy, &mut g);
        out.push(g);
    }
    out
}

fn decide(inv: &[Function], policy: &Policy, g: &mut Group) -> Result<(), Refusal> {
    if g.members.is_empty() {
        return Err(Refusal::NotAnEndpoint(g.aliases[0]));
    }
    let all: Vec<Bdf> = g.members.iter().chain(g.aliases.iter()).copied().collect();
    for &b in &all {
        let Some(f) = find(inv, b) else { continue };
        if f.is_host_bridge() {
            return Err(Refusal::HostBridge(b));
        }
        if f.is_iommu() || policy.iommu_functions.contains(&b) {
            return Err(Refusal::Iommu(b));
        }
        if policy.hypervisor_uses.contains(&b) {
            return Err(Refusal::UsedByHypervisor(b));
        }
        if let Some(d) = f.defect {
            return Err(Refusal::Defective(b, d));
        }
    }
    for &b in &g.members {
        if !(policy.covered)(b) {
            return Err(Refusal::NotCoveredByIommu(b));
        }
    }
    for r in policy.reserved {
        let Some(&mine) = r.scope.iter().find(|b| all.contains(b)) else {
            continue;
        };
        if let Some(&other) = r.scope.iter().find(|b| !all.contains(b)) {
            let why = Refusal::SharedReservedRegion {
                bdf: mine,
                base: r.base,
                other,
            };
            match policy.rdm {
                RdmPolicy::Strict => return Err(why),
                RdmPolicy::Relaxed => g.warnings.push(why),
            }
        }
        g.unity_maps.push((r.base, r.end));
    }
    Ok(())
}

/// The group holding `bdf`, if any.
pub fn group_of(groups: &[Group], bdf: Bdf) -> Option<&Group> {
    groups.iter().find(|g| g.contains(bdf))
}

/// Unity maps that collide with the guest's RAM (inclusive ranges). libxl refuses
/// such a guest under `rdm_policy=strict` and warns under relaxed; the caller decides.
pub fn unity_conflicts(g: &Group, guest_ram: &[(u64, u64)]) -> Vec<(u64, u64)> {
    g.unity_maps
        .iter()
        .copied()
        .filter(|&(b, e)| guest_ram.iter().any(|&(rb, re)| b <= re && rb <= e))
        .collect()
}
