//! The guest-memory API of a domain: every access the hypervisor makes to a guest's
//! memory on its behalf goes through [`Domain::translate`], which walks the nested page
//! table and honours its write permission (a read-only grant mapping stays read-only for
//! the hypervisor too), and the audit of what a domain's NPT reaches.

use super::{Access, Domain, ADDR_MASK, NPT_WRITABLE};
use crate::addr::{Gpa, Hpa};
use crate::arch::phys;
use crate::mm::{FrameAllocator, Owner, PAGE};
use crate::virt::{VcpuState, VirtBackend};
use sluice_abi::hypercall::XenErrno;

impl<B: VirtBackend + Clone> Domain<B> {
    /// The guest-memory API: the host address behind guest-physical `gpa` for `access`
    /// (None: not in the domain's memory, not mapped, or a write to a read-only page).
    /// Every access the hypervisor makes to guest memory on a guest's behalf goes
    /// through here, so the nested page table's permission applies to it too.
    pub fn translate(&self, gpa: Gpa, access: Access) -> Option<Hpa> {
        if gpa.0 >= self.mem_bytes {
            return None;
        }
        let (e, hpa) = self.lookup(gpa.0)?;
        if access == Access::Write && e & NPT_WRITABLE == 0 {
            return None;
        }
        Some(hpa)
    }

    /// The host address behind guest-physical `gpa` for reading.
    pub fn gpa_to_hpa(&self, gpa: Gpa) -> Option<Hpa> {
        self.translate(gpa, Access::Read)
    }

    /// Writes guest-physical memory (each page must be writable in the NPT): EFAULT
    /// otherwise, before anything is written.
    pub fn write_gpa(&self, gpa: Gpa, data: &[u8]) -> Result<(), XenErrno> {
        self.check_range(gpa, data.len(), Access::Write)?;
        let (mut gpa, mut data) = (gpa, data);
        while !data.is_empty() {
            let hpa = self.translate(gpa, Access::Write).ok_or(XenErrno::Efault)?;
            let n = ((PAGE - gpa.offset()) as usize).min(data.len());
            phys::write(hpa.0, &data[..n]);
            data = &data[n..];
            gpa = Gpa(gpa.0 + n as u64);
        }
        Ok(())
    }

    /// EFAULT unless every page of `[gpa, gpa + len)` allows `access`.
    fn check_range(&self, gpa: Gpa, len: usize, access: Access) -> Result<(), XenErrno> {
        let end = gpa.0.checked_add(len as u64).ok_or(XenErrno::Efault)?;
        let mut page = gpa.0 & !(PAGE - 1);
        while page < end {
            self.translate(Gpa(page), access).ok_or(XenErrno::Efault)?;
            page += PAGE;
        }
        Ok(())
    }

    pub fn read_gpa(&self, mut gpa: Gpa, mut buf: &mut [u8]) -> Result<(), XenErrno> {
        while !buf.is_empty() {
            let hpa = self.gpa_to_hpa(gpa).ok_or(XenErrno::Efault)?;
            let n = ((PAGE - gpa.offset()) as usize).min(buf.len());
            phys::read(hpa.0, &mut buf[..n]);
            buf = &mut buf[n..];
            gpa = Gpa(gpa.0 + n as u64);
        }
        Ok(())
    }

    /// Translates a guest-virtual address through the guest's own page tables (paging
    /// off, or 4-level long-mode paging with 2 MiB / 1 GiB pages). Every table entry is
    /// read through the guest-memory API (its RAM only); a non-canonical address, 5-level
    /// paging (CR4.LA57), a table entry not present or one with the size bit where it is
    /// reserved (PML4) give EFAULT.
    pub fn gva_to_gpa(&self, gva: u64) -> Result<Gpa, XenErrno> {
        let Some(v) = self.vcpus[self.cur].slot.as_ref() else {
            return Err(XenErrno::Efault);
        };
        if v.cr0() & (1 << 31) == 0 {
            return Ok(Gpa(gva & 0xFFFF_FFFF));
        }
        // 32-bit and PAE guest paging are not supported by the guest ABI here, nor
        // 5-level paging (LA57 is not offered).
        if !v.long_mode() || v.cr4() & (1 << 12) != 0 || ((gva as i64) << 16 >> 16) as u64 != gva {
            return Err(XenErrno::Efault);
        }
        let mut table = v.cr3() & ADDR_MASK;
        for level in (0..4).rev() {
            let mut b = [0u8; 8];
            self.read_gpa(Gpa(table + ((gva >> (12 + 9 * level)) & 0x1FF) * 8), &mut b)?;
            let e = u64::from_le_bytes(b);
            if e & 1 == 0 || (level == 3 && e & 0x80 != 0) {
                return Err(XenErrno::Efault);
            }
            if level > 0 && e & 0x80 != 0 {
                let size_mask = (1u64 << (12 + 9 * level)) - 1;
                return Ok(Gpa((e & ADDR_MASK & !size_mask) | (gva & size_mask)));
            }
            table = e & ADDR_MASK;
        }
        Ok(Gpa(table | (gva & 0xFFF)))
    }

    /// Copies from guest-virtual memory; any unmapped byte gives `-EFAULT`.
    pub fn copy_from_guest(&self, mut gva: u64, mut buf: &mut [u8]) -> Result<(), XenErrno> {
        while !buf.is_empty() {
            let gpa = self.gva_to_gpa(gva)?;
            let n = ((PAGE - (gva & 0xFFF)) as usize).min(buf.len());
            self.read_gpa(gpa, &mut buf[..n])?;
            buf = &mut buf[n..];
            gva = gva.wrapping_add(n as u64);
        }
        Ok(())
    }

    /// Copies to guest-virtual memory; any unmapped or read-only (in the guest's page
    /// tables' translation or the NPT) page gives `-EFAULT`, before anything is written.
    pub fn copy_to_guest(&self, gva: u64, data: &[u8]) -> Result<(), XenErrno> {
        let end = gva.checked_add(data.len() as u64).ok_or(XenErrno::Efault)?;
        let mut page = gva & !(PAGE - 1);
        while page < end {
            let gpa = self.gva_to_gpa(page)?;
            self.check_range(Gpa(gpa.0 & !(PAGE - 1)), 1, Access::Write)?;
            page += PAGE;
        }
        let (mut gva, mut data) = (gva, data);
        while !data.is_empty() {
            let gpa = self.gva_to_gpa(gva)?;
            let n = ((PAGE - (gva & 0xFFF)) as usize).min(data.len());
            self.write_gpa(gpa, &data[..n])?;
            data = &data[n..];
            gva = gva.wrapping_add(n as u64);
        }
        Ok(())
    }

    /// Checks every frame the domain's nested page table reaches: its own RAM, its own
    /// hypervisor frames (shared_info, grant frames) or a frame it holds a grant mapping
    /// of; never a free frame, another hypervisor frame or another domain's unmapped.
    /// Returns how many break that (0 on a healthy machine; logged, and counted in
    /// `fa.bad_reaches`, when not).
    pub fn audit(&self, fa: &mut FrameAllocator) -> u64 {
        let mut bad = 0;
        self.for_each_frame(&mut |f| {
            let ok = match fa.owner(f) {
                Owner::Domain(o) if o == self.id => true,
                Owner::Xen => {
                    f == self.shared_info
                        || self.grant.frames[..self.nr_grant_frames as usize].contains(&f)
                }
                Owner::Domain(_) => self.grant_maps.iter().flatten().any(|m| m.frame == f),
                Owner::NotRam => self.pci.as_ref().is_some_and(|p| p.owns_mmio(f.0)),
                Owner::Free => false,
            };
            if !ok {
                crate::log!(
                    "d{}: HYPERVISOR BUG: reaches frame {:#x} ({:?})",
                    self.id,
                    f,
                    fa.owner(f)
                );
                bad += 1;
            }
        });
        fa.bad_reaches += bad;
        bad
    }
}
