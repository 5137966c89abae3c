//! Radix I/O page tables shared by VT-d second-level and AMD-Vi host page tables.
//!
//! Both formats are 512-entry, 4 KiB tables indexed by 9 IOVA bits per level, with leaves
//! possible at 4 KiB (level 1), 2 MiB (level 2) and 1 GiB (level 3). They differ only in
//! how an entry is encoded, which [`PteFormat`] captures. The logic here: mapping with the
//! largest page the alignment and hardware allow, refusing overlaps before touching
//! anything, splitting a superpage when part of it is unmapped, merging a table of
//! contiguous leaves back into a superpage, and freeing emptied tables only after the
//! caller has flushed the IOMMU's caches ([`Changes::freed`]).

use crate::error::{Error, Result};
use crate::hal::{Hal, PhysAddr, PAGE_SIZE};
use alloc::vec::Vec;
use bitflags::bitflags;
use core::marker::PhantomData;

bitflags! {
    /// What a device may do through a mapping.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Perm: u8 {
        /// The device may read (DMA from memory).
        const READ = 1;
        /// The device may write (DMA to memory).
        const WRITE = 2;
    }
}

/// A decoded page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not present.
    Absent,
    /// Points to the next-level table.
    Table(PhysAddr),
    /// Maps a page of the size this level covers.
    Leaf { pa: PhysAddr, perm: Perm },
}

/// An entry encoding.
pub trait PteFormat {
    /// The raw value of a non-present entry; new tables are filled with it.
    const ABSENT: u64;
    /// Decodes `raw`, found in a table at `level` (1 = 4 KiB leaves).
    fn decode(raw: u64, level: u8) -> Entry;
    /// An entry at `level` pointing to a table of level `level - 1`.
    fn table(child: PhysAddr, level: u8) -> u64;
    /// A leaf at `level` (level 2: 2 MiB, level 3: 1 GiB).
    fn leaf(pa: PhysAddr, level: u8, perm: Perm) -> u64;
}

/// Bytes one entry at `level` covers.
pub const fn entry_size(level: u8) -> u64 {
    1 << (12 + 9 * (level as u32 - 1))
}

fn index(iova: u64, level: u8) -> u64 {
    (iova >> (12 + 9 * (level as u32 - 1))) & 511
}

/// What a map or unmap changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Bytes newly mapped or unmapped.
    pub bytes: u64,
    /// Tables no longer referenced. The hardware may still cache them: flush the
    /// affected range, then hand them to [`PageTable::release`].
    pub freed: Vec<PhysAddr>,
    /// Superpages split into smaller pages.
    pub splits: u32,
    /// Tables of contiguous leaves merged into a superpage.
    pub merges: u32,
}

/// One domain's I/O page table.
pub struct PageTable<F: PteFormat> {
    root: PhysAddr,
    levels: u8,
    max_leaf_level: u8,
    tables: usize,
    /// Merge full tables of contiguous leaves into superpages after a map.
    pub merge: bool,
    _format: PhantomData<F>,
}

impl<F: PteFormat> PageTable<F> {
    /// An empty table with `levels` levels (3: 39-bit, 4: 48-bit IOVA) and leaves allowed
    /// up to `max_leaf_level` (1: 4 KiB only, 2: 2 MiB, 3: 1 GiB).
    pub fn new<H: Hal + ?Sized>(hal: &H, levels: u8, max_leaf_level: u8) -> Result<Self> {
        if !(2..=6).contains(&levels) || !(1..=3).contains(&max_leaf_level) {
            return Err(Error::Unsupported("page-table geometry"));
        }
        let mut t = PageTable {
            root: 0,
            levels,
            max_leaf_level: max_leaf_level.min(levels),
            tables: 0,
            merge: true,
            _format: PhantomData,
        };
        t.root = t.new_table(hal)?;
        Ok(t)
    }

    /// Physical address of the top-level table.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Number of levels.
    pub fn levels(&self) -> u8 {
        self.levels
    }

    /// Tables currently in use, the root included.
    pub fn table_count(&self) -> usize {
        self.tables
    }

    /// One past the highest IOVA this table can map (`u64::MAX` when the table covers
    /// all 64 bits, as 6-level AMD-Vi tables do).
    pub fn limit(&self) -> u64 {
        1u64.checked_shl(12 + 9 * u32::from(self.levels))
            .unwrap_or(u64::MAX)
    }

    fn new_table<H: Hal + ?Sized>(&mut self, hal: &H) -> Result<PhysAddr> {
        let pa = hal.alloc_frames(1, PAGE_SIZE).ok_or(Error::OutOfMemory)?;
        if F::ABSENT != 0 {
            for i in 0..512 {
                hal.write_phys_u64(pa + i * 8, F::ABSENT);
            }
        }
        self.tables += 1;
        Ok(pa)
    }

    fn check_range(&self, iova: u64, len: u64) -> Result<u64> {
        if len == 0 || !iova.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned { iova, len });
        }
        let end = iova.checked_add(len).ok_or(Error::OutOfRange {
            iova,
            len,
            limit: self.limit(),
        })?;
        if end > self.limit() {
            return Err(Error::OutOfRange {
                iova,
                len,
                limit: self.limit(),
            });
        }
        Ok(end)
    }

    /// Maps `[iova, iova + len)` to `[pa, pa + len)`. Fails without changing anything when
    /// the range is unaligned, too high, or overlaps an existing mapping.
    pub fn map<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        iova: u64,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
    ) -> Result<Changes> {
        let end = self.check_range(iova, len)?;
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned { iova: pa, len });
        }
        if pa.checked_add(len).is_none_or(|e| e > 1 << 52) {
            return Err(Error::BadPhysical { pa });
        }
        if perm.is_empty() {
            return Err(Error::EmptyPermission);
        }
        if let Some(at) = self.first_mapped(hal, self.root, self.levels, iova, end) {
            return Err(Error::Overlap { iova: at });
        }
        let mut changes = Changes::default();
        if let Err(e) = self.map_in(hal, self.root, self.levels, iova, pa, end, perm) {
            // The range was free before: unmapping it restores the previous state.
            let undo = self.unmap(hal, iova, len)?;
            self.release(hal, undo.freed);
            return Err(e);
        }
        changes.bytes = len;
        if self.merge && self.max_leaf_level > 1 {
            self.merge_in(hal, self.root, self.levels, iova, end, &mut changes);
        }
        Ok(changes)
    }

    fn first_mapped<H: Hal + ?Sized>(
        &self,
        hal: &H,
        table: PhysAddr,
        level: u8,
        iova: u64,
        end: u64,
    ) -> Option<u64> {
        let size = entry_size(level);
        let mut cur = iova;
        while cur < end {
            let base = cur & !(size - 1);
            let chunk_end = end.min(base.saturating_add(size));
            match F::decode(hal.read_phys_u64(table + index(cur, level) * 8), level) {
                Entry::Absent => {}
                Entry::Leaf { .. } => return Some(cur),
                Entry::Table(child) => {
                    if let Some(at) = self.first_mapped(hal, child, level - 1, cur, chunk_end) {
                        return Some(at);
                    }
                }
            }
            cur = chunk_end;
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn map_in<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        table: PhysAddr,
        level: u8,
        iova: u64,
        pa: PhysAddr,
        end: u64,
        perm: Perm,
    ) -> Result<()> {
        let size = entry_size(level);
        let mut cur = iova;
        while cur < end {
            let base = cur & !(size - 1);
            let chunk_end = end.min(base.saturating_add(size));
            let target = pa + (cur - iova);
            let slot = table + index(cur, level) * 8;
            let whole = cur == base
                && chunk_end == base.saturating_add(size)
                && target.is_multiple_of(size);
            if level == 1 || (whole && level <= self.max_leaf_level) {
                hal.write_phys_u64(slot, F::leaf(target, level, perm));
            } else {
                let child = match F::decode(hal.read_phys_u64(slot), level) {
                    Entry::Table(child) => child,
                    Entry::Absent => {
                        let child = self.new_table(hal)?;
                        hal.barrier();
                        hal.write_phys_u64(slot, F::table(child, level));
                        child
                    }
                    Entry::Leaf { .. } => return Err(Error::Overlap { iova: cur }),
                };
                self.map_in(hal, child, level - 1, cur, target, chunk_end, perm)?;
            }
            cur = chunk_end;
        }
        Ok(())
    }

    /// Replaces tables whose 512 entries are contiguous leaves with identical permissions
    /// by one superpage leaf, bottom-up, within the tables that `[iova, end)` touches.
    fn merge_in<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        table: PhysAddr,
        level: u8,
        iova: u64,
        end: u64,
        changes: &mut Changes,
    ) {
        let size = entry_size(level);
        let mut cur = iova;
        while cur < end {
            let base = cur & !(size - 1);
            let chunk_end = end.min(base.saturating_add(size));
            let slot = table + index(cur, level) * 8;
            if let Entry::Table(child) = F::decode(hal.read_phys_u64(slot), level) {
                if level > 2 {
                    self.merge_in(hal, child, level - 1, cur, chunk_end, changes);
                }
                if level <= self.max_leaf_level {
                    if let Some((pa, perm)) = self.uniform(hal, child, level - 1, size) {
                        hal.write_phys_u64(slot, F::leaf(pa, level, perm));
                        changes.freed.push(child);
                        self.tables -= 1;
                        changes.merges += 1;
                    }
                }
            }
            cur = chunk_end;
        }
    }

    /// The first leaf's address and permission when all entries of `table` are leaves
    /// mapping one contiguous, `parent_size`-aligned range with one permission.
    fn uniform<H: Hal + ?Sized>(
        &self,
        hal: &H,
        table: PhysAddr,
        level: u8,
        parent_size: u64,
    ) -> Option<(PhysAddr, Perm)> {
        let leaf = |i: u64| match F::decode(hal.read_phys_u64(table + i * 8), level) {
            Entry::Leaf { pa, perm } => Some((pa, perm)),
            _ => None,
        };
        // Cheap rejection first: most tables are not full.
        let (first, perm) = leaf(0)?;
        let (last, last_perm) = leaf(511)?;
        let size = entry_size(level);
        if first % parent_size != 0 || last != first + 511 * size || last_perm != perm {
            return None;
        }
        for i in 1..511 {
            if leaf(i)? != (first + i * size, perm) {
                return None;
            }
        }
        Some((first, perm))
    }

    /// The level and base IOVA of the leaf mapping `iova`, if any.
    fn leaf_at<H: Hal + ?Sized>(&self, hal: &H, iova: u64) -> Option<(u8, u64)> {
        let mut table = self.root;
        let mut level = self.levels;
        loop {
            match F::decode(hal.read_phys_u64(table + index(iova, level) * 8), level) {
                Entry::Absent => return None,
                Entry::Leaf { .. } => return Some((level, iova & !(entry_size(level) - 1))),
                Entry::Table(child) => {
                    if level == 1 {
                        return None;
                    }
                    table = child;
                    level -= 1;
                }
            }
        }
    }

    /// Unmaps whatever is mapped in `[iova, iova + len)` (holes are allowed), splitting a
    /// superpage that straddles either end. Returns the bytes unmapped and the tables to
    /// release after the flush.
    pub fn unmap<H: Hal + ?Sized>(&mut self, hal: &H, iova: u64, len: u64) -> Result<Changes> {
        let end = self.check_range(iova, len)?;
        // Splitting needs new tables; allocate them all first so that running out of
        // memory leaves the table untouched.
        let mut needed = 0;
        for edge in [iova, end - 1] {
            if let Some((level, base)) = self.leaf_at(hal, edge) {
                let size = entry_size(level);
                if base < iova || base.saturating_add(size) > end {
                    needed += usize::from(level - 1);
                }
            }
        }
        let mut spares = Vec::with_capacity(needed);
        for _ in 0..needed {
            match self.new_table(hal) {
                Ok(t) => spares.push(t),
                Err(e) => {
                    self.tables -= spares.len();
                    self.release(hal, spares);
                    return Err(e);
                }
            }
        }
        let mut changes = Changes::default();
        self.unmap_in(
            hal,
            self.root,
            self.levels,
            iova,
            end,
            &mut spares,
            &mut changes,
        );
        self.tables -= spares.len();
        self.release(hal, spares);
        Ok(changes)
    }

    #[allow(clippy::too_many_arguments)]
    fn unmap_in<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        table: PhysAddr,
        level: u8,
        iova: u64,
        end: u64,
        spares: &mut Vec<PhysAddr>,
        changes: &mut Changes,
    ) {
        let size = entry_size(level);
        let mut cur = iova;
        while cur < end {
            let base = cur & !(size - 1);
            let chunk_end = end.min(base.saturating_add(size));
            let whole = cur == base && chunk_end == base.saturating_add(size);
            let slot = table + index(cur, level) * 8;
            match F::decode(hal.read_phys_u64(slot), level) {
                Entry::Absent => {}
                Entry::Leaf { .. } if whole => {
                    hal.write_phys_u64(slot, F::ABSENT);
                    changes.bytes += size;
                }
                Entry::Leaf { pa, perm } => {
                    // Split: the new table maps the same range with the next page size;
                    // it is complete before it replaces the leaf.
                    let Some(child) = spares.pop() else {
                        unreachable!("unmap pre-allocates a table for every split");
                    };
                    let child_size = entry_size(level - 1);
                    for i in 0..512 {
                        hal.write_phys_u64(
                            child + i * 8,
                            F::leaf(pa + i * child_size, level - 1, perm),
                        );
                    }
                    hal.barrier();
                    hal.write_phys_u64(slot, F::table(child, level));
                    changes.splits += 1;
                    self.unmap_in(hal, child, level - 1, cur, chunk_end, spares, changes);
                }
                Entry::Table(child) => {
                    self.unmap_in(hal, child, level - 1, cur, chunk_end, spares, changes);
                    if whole || self.is_empty(hal, child) {
                        hal.write_phys_u64(slot, F::ABSENT);
                        changes.freed.push(child);
                        self.tables -= 1;
                    }
                }
            }
            cur = chunk_end;
        }
    }

    fn is_empty<H: Hal + ?Sized>(&self, hal: &H, table: PhysAddr) -> bool {
        (0..512).all(|i| F::decode(hal.read_phys_u64(table + i * 8), 1) == Entry::Absent)
    }

    /// Returns tables to the HAL (after the IOMMU's caches were flushed).
    pub fn release<H: Hal + ?Sized>(&mut self, hal: &H, tables: Vec<PhysAddr>) {
        for t in tables {
            hal.free_frames(t, 1);
        }
    }

    /// Where `iova` goes: physical address, permission and the level of the leaf.
    pub fn translate<H: Hal + ?Sized>(&self, hal: &H, iova: u64) -> Option<(PhysAddr, Perm, u8)> {
        if iova >= self.limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.levels;
        loop {
            match F::decode(hal.read_phys_u64(table + index(iova, level) * 8), level) {
                Entry::Absent => return None,
                Entry::Leaf { pa, perm } => {
                    return Some((pa + (iova & (entry_size(level) - 1)), perm, level))
                }
                Entry::Table(child) => {
                    if level == 1 {
                        return None;
                    }
                    table = child;
                    level -= 1;
                }
            }
        }
    }

    /// Frees every table, the root included (the domain is gone and flushed).
    pub fn destroy<H: Hal + ?Sized>(mut self, hal: &H) {
        self.free_subtree(hal, self.root, self.levels);
    }

    fn free_subtree<H: Hal + ?Sized>(&mut self, hal: &H, table: PhysAddr, level: u8) {
        if level > 1 {
            for i in 0..512 {
                if let Entry::Table(child) = F::decode(hal.read_phys_u64(table + i * 8), level) {
                    self.free_subtree(hal, child, level - 1);
                }
            }
        }
        hal.free_frames(table, 1);
        self.tables -= 1;
    }
}

/// Intel VT-d second-level paging entries.
pub struct VtdFormat;

impl PteFormat for VtdFormat {
    const ABSENT: u64 = 0;

    fn decode(raw: u64, level: u8) -> Entry {
        let perm = Perm::from_bits_truncate((raw & 3) as u8);
        let pa = raw & 0x000f_ffff_ffff_f000;
        if perm.is_empty() {
            Entry::Absent
        } else if level == 1 || raw & (1 << 7) != 0 {
            Entry::Leaf { pa, perm }
        } else {
            Entry::Table(pa)
        }
    }

    fn table(child: PhysAddr, _level: u8) -> u64 {
        child | 3
    }

    fn leaf(pa: PhysAddr, level: u8, perm: Perm) -> u64 {
        let ps = if level > 1 { 1 << 7 } else { 0 };
        pa | ps | u64::from(perm.bits())
    }
}

/// AMD-Vi host page-table entries.
///
/// A non-present entry is written as PR=0 with NextLevel=1: hardware ignores every other
/// bit when PR=0, and QEMU 7.2 only logs IO_PAGE_FAULT for a non-present entry whose
/// NextLevel is non-zero (an all-zero entry aborts the DMA silently there).
pub struct AmdViFormat;

impl PteFormat for AmdViFormat {
    const ABSENT: u64 = 1 << 9;

    fn decode(raw: u64, _level: u8) -> Entry {
        if raw & 1 == 0 {
            return Entry::Absent;
        }
        let pa = raw & 0x000f_ffff_ffff_f000;
        let next_level = (raw >> 9) & 7;
        if next_level == 0 || next_level == 7 {
            let mut perm = Perm::empty();
            perm.set(Perm::READ, raw & (1 << 61) != 0);
            perm.set(Perm::WRITE, raw & (1 << 62) != 0);
            Entry::Leaf { pa, perm }
        } else {
            Entry::Table(pa)
        }
    }

    fn table(child: PhysAddr, level: u8) -> u64 {
        child | 1 | (u64::from(level - 1) << 9) | (3 << 61)
    }

    fn leaf(pa: PhysAddr, _level: u8, perm: Perm) -> u64 {
        let mut raw = pa | 1;
        if perm.contains(Perm::READ) {
            raw |= 1 << 61;
        }
        if perm.contains(Perm::WRITE) {
            raw |= 1 << 62;
        }
        raw
    }
}

#[cfg(test)]
mod tests;
