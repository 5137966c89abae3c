//! Access to physical memory through the boot identity map of the low 4 GiB.
//!
//! Callers pass addresses of frames the hypervisor owns (its frame allocator's, or a
//! guest frame found through that guest's nested page table); every access is checked
//! against the identity-mapped window so a wrong address panics instead of faulting, and
//! none of these safe functions reaches the hypervisor's own image (its code, data,
//! stacks and page tables, all inside `image_range`): a bug in the safe code above
//! cannot make them read or overwrite the hypervisor, or hand it to a guest.

const MAPPED_END: u64 = 4 << 30;

/// Whether `[pa, pa + len)` is inside the identity map and outside the image.
fn allowed(pa: u64, len: u64) -> bool {
    let (img_start, img_end) = super::boot::image_range();
    pa >= 0x400
        && pa
            .checked_add(len)
            .is_some_and(|e| e <= MAPPED_END && (e <= img_start || pa >= img_end))
}

fn check(pa: u64, len: usize) {
    assert!(
        allowed(pa, len as u64),
        "physical access outside the identity map or into the hypervisor image: {pa:#x}+{len:#x}"
    );
}

pub fn read(pa: u64, buf: &mut [u8]) {
    check(pa, buf.len());
    // SAFETY: the range is inside the identity map (checked) and in memory the caller
    // owns; byte copies have no alignment needs.
    unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf.as_mut_ptr(), buf.len()) }
}

pub fn write(pa: u64, buf: &[u8]) {
    check(pa, buf.len());
    // SAFETY: as in `read`.
    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), pa as *mut u8, buf.len()) }
}

pub fn read_u64(pa: u64) -> u64 {
    check(pa, 8);
    assert!(pa.is_multiple_of(8));
    // SAFETY: aligned, inside the identity map, owned by the caller.
    unsafe { core::ptr::read_volatile(pa as *const u64) }
}

pub fn write_u64(pa: u64, v: u64) {
    check(pa, 8);
    assert!(pa.is_multiple_of(8));
    // SAFETY: as in `read_u64`.
    unsafe { core::ptr::write_volatile(pa as *mut u64, v) }
}

/// Atomically ORs `bits` into the u64 at `pa` (a LOCK OR: memory a guest on another CPU
/// updates with atomic instructions too, as event-channel bitmaps); returns the old value.
pub fn fetch_or_u64(pa: u64, bits: u64) -> u64 {
    check(pa, 8);
    assert!(pa.is_multiple_of(8));
    // SAFETY: aligned, inside the identity map, owned by the caller (or a guest frame
    // the caller found through the guest's NPT); AtomicU64 has u64's layout.
    let a = unsafe { core::sync::atomic::AtomicU64::from_ptr(pa as *mut u64) };
    a.fetch_or(bits, core::sync::atomic::Ordering::SeqCst)
}

/// Atomically ANDs `bits` into the u64 at `pa` (LOCK AND); returns the old value.
pub fn fetch_and_u64(pa: u64, bits: u64) -> u64 {
    check(pa, 8);
    assert!(pa.is_multiple_of(8));
    // SAFETY: as in `fetch_or_u64`.
    let a = unsafe { core::sync::atomic::AtomicU64::from_ptr(pa as *mut u64) };
    a.fetch_and(bits, core::sync::atomic::Ordering::SeqCst)
}

/// Atomically replaces the u32 at `pa` with `new` if it still holds `current` (LOCK
/// CMPXCHG: a grant entry the granter may change on another CPU); Err(the value seen).
pub fn cmpxchg_u32(pa: u64, current: u32, new: u32) -> Result<u32, u32> {
    check(pa, 4);
    assert!(pa.is_multiple_of(4));
    // SAFETY: as in `fetch_or_u64`; AtomicU32 has u32's layout.
    let a = unsafe { core::sync::atomic::AtomicU32::from_ptr(pa as *mut u32) };
    a.compare_exchange(
        current,
        new,
        core::sync::atomic::Ordering::SeqCst,
        core::sync::atomic::Ordering::SeqCst,
    )
}

pub fn zero(pa: u64, len: usize) {
    check(pa, len);
    // SAFETY: as in `write`.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, len) }
}

pub fn fill(pa: u64, len: usize, byte: u8) {
    check(pa, len);
    // SAFETY: as in `write`.
    unsafe { core::ptr::write_bytes(pa as *mut u8, byte, len) }
}

/// A 32-bit device register (e.g. PCI ECAM config space) in the identity map.
pub fn mmio_read_u32(pa: u64) -> u32 {
    check(pa, 4);
    assert!(pa.is_multiple_of(4));
    // SAFETY: aligned, inside the identity map; the caller names a register of a
    // device the hypervisor owns (config space reads have no side effects).
    unsafe { core::ptr::read_volatile(pa as *const u32) }
}

/// Writes a 32-bit device register (e.g. the local APIC) in the identity map.
pub fn mmio_write_u32(pa: u64, v: u32) {
    check(pa, 4);
    assert!(pa.is_multiple_of(4));
    // SAFETY: aligned, inside the identity map; the caller names a register of a
    // device the hypervisor owns.
    unsafe { core::ptr::write_volatile(pa as *mut u32, v) }
}

/// An 8-bit device register (PCI config space of an assigned function) in the identity map.
pub fn mmio_read_u8(pa: u64) -> u8 {
    check(pa, 1);
    // SAFETY: inside the identity map (checked); the caller names a register of a device
    // the hypervisor owns.
    unsafe { core::ptr::read_volatile(pa as *const u8) }
}

/// Writes an 8-bit device register in the identity map.
pub fn mmio_write_u8(pa: u64, v: u8) {
    check(pa, 1);
    // SAFETY: as in `mmio_read_u8`.
    unsafe { core::ptr::write_volatile(pa as *mut u8, v) }
}

/// A 16-bit device register in the identity map (aligned).
pub fn mmio_read_u16(pa: u64) -> u16 {
    check(pa, 2);
    assert!(pa.is_multiple_of(2));
    // SAFETY: aligned, inside the identity map; the caller names a register of a device
    // the hypervisor owns.
    unsafe { core::ptr::read_volatile(pa as *const u16) }
}

/// Writes a 16-bit device register in the identity map (aligned).
pub fn mmio_write_u16(pa: u64, v: u16) {
    check(pa, 2);
    assert!(pa.is_multiple_of(2));
    // SAFETY: as in `mmio_read_u16`.
    unsafe { core::ptr::write_volatile(pa as *mut u16, v) }
}

/// Reads a 64-bit device register (e.g. an IOMMU's) in the identity map.
pub fn mmio_read_u64(pa: u64) -> u64 {
    check(pa, 8);
    assert!(pa.is_multiple_of(8));
    // SAFETY: aligned, inside the identity map; the caller names a register of a
    // device the hypervisor owns.
    unsafe { core::ptr::read_volatile(pa as *const u64) }
}

/// Writes a 64-bit device register in the identity map.
pub fn mmio_write_u64(pa: u64, v: u64) {
    check(pa, 8);
    assert!(pa.is_multiple_of(8));
    // SAFETY: aligned, inside the identity map; the caller names a register of a
    // device the hypervisor owns.
    unsafe { core::ptr::write_volatile(pa as *mut u64, v) }
}

/// True when `[pa, pa + len)` lies inside the identity map and outside the hypervisor
/// image (so the accessors above accept it). Callers check addresses taken from firmware
/// tables with it first.
pub fn mapped(pa: u64, len: u64) -> bool {
    allowed(pa, len)
}

/// Writes back and evicts the cache lines of `[pa, pa + len)` (for devices whose reads
/// do not snoop the CPU caches, e.g. a VT-d unit without ECAP.C), then fences.
pub fn flush_cache(pa: u64, len: usize) {
    check(pa, len);
    let mut line = pa & !63;
    while line < pa + len as u64 {
        // SAFETY: CLFLUSH of a mapped address (checked) only writes the line back; it
        // does not change memory contents. SSE2 (and so CLFLUSH) is part of x86_64.
        unsafe { core::arch::x86_64::_mm_clflush(line as *const u8) };
        line += 64;
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
