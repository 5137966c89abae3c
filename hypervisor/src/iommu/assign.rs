//! Device assignment on top of boot-time protection: a hypervisor domain's IOMMU domain
//! gets the domain's RAM at IOVA = GPA and its assigned functions; a function leaving a
//! domain goes to the quarantine IOMMU domain (Xen's `iommu=quarantine`: an empty
//! domain, every DMA of the function faults), never back to a domain's address space.

use super::{owner, Driver, IommuDomain, Protection};
use alloc::vec::Vec;
use sluice_iommu::{Bdf, MsiMessage, Perm};

type R<T> = Result<T, sluice_iommu::Error>;

impl Protection {
    /// The unit translating `bdf`'s DMA.
    pub fn unit_for(&self, bdf: Bdf) -> Option<usize> {
        let claims: Vec<(u64, sluice_iommu::Coverage)> = self
            .units
            .iter()
            .map(|u| (u.base, u.coverage.clone()))
            .collect();
        owner(&claims, bdf)
    }

    /// Maps `[iova, iova + len)` to `pa` (read/write) in unit `u`'s part of `io`.
    pub fn map(&mut self, io: &IommuDomain, u: usize, iova: u64, pa: u64, len: u64) -> R<()> {
        let id = io.ids[u];
        with_iommu!(&mut self.units[u].driver, i => i.map(id, iova, pa, len, Perm::READ | Perm::WRITE))
    }

    /// Unmaps `[iova, iova + len)` in unit `u`'s part of `io` (flushed on return).
    pub fn unmap(&mut self, io: &IommuDomain, u: usize, iova: u64, len: u64) -> R<u64> {
        let id = io.ids[u];
        with_iommu!(&mut self.units[u].driver, i => i.unmap(id, iova, len))
    }

    /// Whether unit `u`'s part of `io` has RAM mapped yet.
    pub fn ram_mapped(io: &IommuDomain, u: usize) -> bool {
        io.ram_mapped.contains(&u)
    }

    /// Records that unit `u`'s part of `io` has the domain's RAM.
    pub fn set_ram_mapped(io: &mut IommuDomain, u: usize) {
        if !io.ram_mapped.contains(&u) {
            io.ram_mapped.push(u);
        }
    }

    /// Moves `bdf` (whatever it was attached to) into `io`.
    pub fn attach(&mut self, io: &IommuDomain, u: usize, bdf: Bdf) -> R<()> {
        let id = io.ids[u];
        self.release(u, bdf)?;
        with_iommu!(&mut self.units[u].driver, i => i.attach(id, bdf))
    }

    /// Detaches `bdf` from its domain (the quarantine one included); blocked after.
    fn release(&mut self, u: usize, bdf: Bdf) -> R<()> {
        let attached = with_iommu!(&self.units[u].driver, i => i.domain_of(bdf)).is_some();
        if attached {
            with_iommu!(&mut self.units[u].driver, i => i.detach(bdf))?;
        }
        self.quarantined.retain(|&(_, b)| b != bdf);
        Ok(())
    }

    /// Puts `bdf` into unit `u`'s quarantine domain (made on first use).
    pub fn quarantine(&mut self, u: usize, bdf: Bdf) -> R<()> {
        let q = match self.quarantine[u] {
            Some(q) => q,
            None => {
                let q = with_iommu!(&mut self.units[u].driver, i => i.create_domain())?;
                self.quarantine[u] = Some(q);
                q
            }
        };
        self.release(u, bdf)?;
        with_iommu!(&mut self.units[u].driver, i => i.attach(q, bdf))?;
        self.quarantined.push((u, bdf));
        Ok(())
    }

    /// Functions in quarantine.
    pub fn quarantined(&self) -> usize {
        self.quarantined.len()
    }

    /// At the end (every domain gone): detaches the quarantined functions (blocked, as
    /// at boot) and destroys the quarantine domains, so the leak check sees none.
    pub fn end_quarantine(&mut self) {
        for (u, bdf) in core::mem::take(&mut self.quarantined) {
            let _ = with_iommu!(&mut self.units[u].driver, i => i.detach(bdf));
        }
        for u in 0..self.units.len() {
            if let Some(q) = self.quarantine[u].take() {
                let _ = with_iommu!(&mut self.units[u].driver, i => i.destroy_domain(q));
            }
        }
    }

    /// An interrupt-remapping entry for `bdf`'s MSI: host `vector` at `apic_id`.
    pub fn map_msi(&mut self, u: usize, bdf: Bdf, vector: u8, apic_id: u8) -> R<(u32, MsiMessage)> {
        with_iommu!(&mut self.units[u].driver, i => i.map_msi(bdf, vector, apic_id))
    }

    /// Invalidates an interrupt-remapping entry.
    pub fn unmap_msi(&mut self, u: usize, bdf: Bdf, index: u32) -> R<()> {
        with_iommu!(&mut self.units[u].driver, i => i.unmap_msi(bdf, index))
    }

    /// Whether the first unit remaps interrupts (MSIs of assigned functions need it).
    pub fn interrupt_remapping(&self, u: usize) -> bool {
        match &self.units[u].driver {
            Driver::Vtd(i) => i.hw_ref().interrupt_remapping(),
            Driver::AmdVi(_) => true,
        }
    }

    /// Table frames the units keep once made, whatever happens to the devices (VT-d
    /// context tables, one per bus that had a device attached; AMD-Vi interrupt tables,
    /// one per device that had an MSI remapped): not leaks.
    pub fn kept_frames(&self) -> usize {
        self.units
            .iter()
            .map(|u| match &u.driver {
                Driver::Vtd(i) => i.hw_ref().context_tables(),
                Driver::AmdVi(i) => i.hw_ref().interrupt_tables(),
            })
            .sum()
    }
}
