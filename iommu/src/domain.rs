//! The vendor-neutral API: domains, device attachment, mappings, flushes, faults and
//! remapped MSIs, over any [`IommuHw`] (VT-d or AMD-Vi).
//!
//! A domain is one I/O address space (one page table, one hardware domain id). Every
//! device starts blocked; attaching it to a domain makes exactly that domain's mappings
//! reachable to it. Unmapping flushes the IOTLB before the call returns and before any
//! freed table is reused, so when `unmap` returns no device can reach the old pages.

use crate::error::{Error, Result};
use crate::hal::{Hal, PhysAddr};
use crate::pagetable::{PageTable, Perm, PteFormat};
use crate::Bdf;
use alloc::collections::BTreeMap;

/// A domain handle (the hardware domain id, widened).
pub type DomainId = u32;

/// An MSI address/data pair to program into a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// What a reported fault was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A DMA read was refused.
    Read,
    /// A DMA write was refused.
    Write,
    /// An interrupt request was refused.
    Interrupt,
    /// Anything else the hardware reports (table errors, command errors...).
    Other,
}

/// One fault, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The requester.
    pub device: Bdf,
    /// The IOVA (or the interrupt index / table address for non-DMA faults).
    pub address: u64,
    pub kind: FaultKind,
    /// The vendor's reason code (VT-d fault reason, AMD-Vi event code).
    pub code: u16,
    /// The vendor's reason in words.
    pub reason: &'static str,
}

/// What a vendor driver provides to [`Iommu`].
pub trait IommuHw {
    type Hal: Hal;
    type Format: PteFormat;
    /// The HAL the driver runs on.
    fn hal(&self) -> &Self::Hal;
    /// Page-table levels for new domains.
    fn levels(&self) -> u8;
    /// Largest leaf level the hardware supports (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
    fn max_leaf_level(&self) -> u8;
    /// Hardware domain ids available to domains.
    fn domain_ids(&self) -> core::ops::Range<u32>;
    /// True when the device is behind this IOMMU.
    fn covers(&self, device: Bdf) -> bool;
    /// Points the device at a page table under domain id `did`, then makes the hardware
    /// forget anything cached for the device.
    fn attach(&mut self, device: Bdf, did: u16, root: PhysAddr) -> Result<()>;
    /// Blocks the device again and flushes what the hardware cached for it.
    fn detach(&mut self, device: Bdf, did: u16) -> Result<()>;
    /// Invalidates cached translations of `did` for `range` (`None`: all of the domain),
    /// and waits until the hardware is done. `tables_freed`: paging-structure caches
    /// must be flushed too.
    fn flush(&mut self, did: u16, range: Option<(u64, u64)>, tables_freed: bool) -> Result<()>;
    /// True when not-present to present changes must be flushed as well (VT-d caching
    /// mode, AMD-Vi NpCache).
    fn flush_on_map(&self) -> bool;
    /// Hands every pending fault to `out`; returns how many.
    fn drain_faults(&mut self, out: &mut dyn FnMut(Fault)) -> Result<usize>;
    /// Programs an interrupt-remapping entry delivering `vector` to the local APIC
    /// `dest_apic_id` for requests from `device` only; returns the entry index and the
    /// MSI message the device must send.
    fn map_msi(&mut self, device: Bdf, vector: u8, dest_apic_id: u8) -> Result<(u32, MsiMessage)>;
    /// Invalidates an interrupt-remapping entry: later MSIs using it are blocked.
    fn unmap_msi(&mut self, device: Bdf, index: u32) -> Result<()>;
    /// Invalidation commands issued so far (IOTLB, context/device table, interrupt
    /// entries; wait/completion descriptors not counted).
    fn invalidations(&self) -> u64;
}

struct Domain<F: PteFormat> {
    table: PageTable<F>,
    devices: usize,
}

/// One IOMMU unit behind the vendor-neutral API.
pub struct Iommu<D: IommuHw> {
    hw: D,
    domains: BTreeMap<DomainId, Domain<D::Format>>,
    devices: BTreeMap<Bdf, DomainId>,
}

impl<D: IommuHw> Iommu<D> {
    /// Wraps an initialised driver.
    pub fn new(hw: D) -> Self {
        Iommu {
            hw,
            domains: BTreeMap::new(),
            devices: BTreeMap::new(),
        }
    }

    /// The driver, for vendor-specific calls.
    pub fn hw(&mut self) -> &mut D {
        &mut self.hw
    }

    /// The driver, read-only (capabilities, configuration).
    pub fn hw_ref(&self) -> &D {
        &self.hw
    }

    /// Domains that exist now.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Creates an empty domain (no mappings, no devices).
    pub fn create_domain(&mut self) -> Result<DomainId> {
        let id = self
            .hw
            .domain_ids()
            .find(|id| !self.domains.contains_key(id))
            .ok_or(Error::NoDomainIds)?;
        let table = PageTable::new(self.hw.hal(), self.hw.levels(), self.hw.max_leaf_level())?;
        self.domains.insert(id, Domain { table, devices: 0 });
        Ok(id)
    }

    /// Destroys a domain with no devices attached, freeing its page tables.
    pub fn destroy_domain(&mut self, id: DomainId) -> Result<()> {
        let domain = self.domains.get(&id).ok_or(Error::NoSuchDomain(id))?;
        if domain.devices != 0 {
            return Err(Error::DomainBusy(id));
        }
        self.hw.flush(id as u16, None, true)?;
        if let Some(domain) = self.domains.remove(&id) {
            domain.table.destroy(self.hw.hal());
        }
        Ok(())
    }

    /// Attaches a device to a domain. Attaching it again to the same domain is a no-op.
    pub fn attach(&mut self, id: DomainId, device: Bdf) -> Result<()> {
        let root = self
            .domains
            .get(&id)
            .ok_or(Error::NoSuchDomain(id))?
            .table
            .root();
        if !self.hw.covers(device) {
            return Err(Error::UnknownDevice(device));
        }
        match self.devices.get(&device) {
            Some(&d) if d == id => return Ok(()),
            Some(&domain) => return Err(Error::AlreadyAttached { device, domain }),
            None => {}
        }
        self.hw.attach(device, id as u16, root)?;
        self.devices.insert(device, id);
        if let Some(d) = self.domains.get_mut(&id) {
            d.devices += 1;
        }
        Ok(())
    }

    /// Detaches a device: it is blocked again.
    pub fn detach(&mut self, device: Bdf) -> Result<()> {
        let id = *self
            .devices
            .get(&device)
            .ok_or(Error::NotAttached(device))?;
        self.hw.detach(device, id as u16)?;
        self.devices.remove(&device);
        if let Some(d) = self.domains.get_mut(&id) {
            d.devices -= 1;
        }
        Ok(())
    }

    /// The domain a device is attached to.
    pub fn domain_of(&self, device: Bdf) -> Option<DomainId> {
        self.devices.get(&device).copied()
    }

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` with `perm` in domain `id`.
    pub fn map(
        &mut self,
        id: DomainId,
        iova: u64,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
    ) -> Result<()> {
        let domain = self.domains.get_mut(&id).ok_or(Error::NoSuchDomain(id))?;
        let changes = domain.table.map(self.hw.hal(), iova, pa, len, perm)?;
        if self.hw.flush_on_map() || !changes.freed.is_empty() {
            self.hw
                .flush(id as u16, Some((iova, len)), !changes.freed.is_empty())?;
        }
        domain.table.release(self.hw.hal(), changes.freed);
        Ok(())
    }

    /// Unmaps whatever is mapped in `[iova, iova + len)`; returns the bytes unmapped.
    /// When it returns, the hardware holds no translation for the range.
    pub fn unmap(&mut self, id: DomainId, iova: u64, len: u64) -> Result<u64> {
        let domain = self.domains.get_mut(&id).ok_or(Error::NoSuchDomain(id))?;
        let changes = domain.table.unmap(self.hw.hal(), iova, len)?;
        if changes.bytes != 0 || !changes.freed.is_empty() {
            self.hw
                .flush(id as u16, Some((iova, len)), !changes.freed.is_empty())?;
        }
        domain.table.release(self.hw.hal(), changes.freed);
        Ok(changes.bytes)
    }

    /// Invalidates everything the hardware cached for the domain.
    pub fn flush(&mut self, id: DomainId) -> Result<()> {
        if !self.domains.contains_key(&id) {
            return Err(Error::NoSuchDomain(id));
        }
        self.hw.flush(id as u16, None, true)
    }

    /// Where `iova` leads in domain `id` (physical address, permission, leaf level).
    pub fn translate(&self, id: DomainId, iova: u64) -> Option<(PhysAddr, Perm, u8)> {
        self.domains.get(&id)?.table.translate(self.hw.hal(), iova)
    }

    /// Page tables in use by domain `id`.
    pub fn table_count(&self, id: DomainId) -> Option<usize> {
        Some(self.domains.get(&id)?.table.table_count())
    }

    /// Hands every pending fault to `out`; returns how many.
    pub fn drain_faults(&mut self, out: &mut dyn FnMut(Fault)) -> Result<usize> {
        self.hw.drain_faults(out)
    }

    /// Programs a remapped MSI for `device` (see [`IommuHw::map_msi`]).
    pub fn map_msi(
        &mut self,
        device: Bdf,
        vector: u8,
        dest_apic_id: u8,
    ) -> Result<(u32, MsiMessage)> {
        if !self.hw.covers(device) {
            return Err(Error::UnknownDevice(device));
        }
        self.hw.map_msi(device, vector, dest_apic_id)
    }

    /// Invalidates a remapped MSI entry.
    pub fn unmap_msi(&mut self, device: Bdf, index: u32) -> Result<()> {
        self.hw.unmap_msi(device, index)
    }
}

#[cfg(test)]
mod tests;
