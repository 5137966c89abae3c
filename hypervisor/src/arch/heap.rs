//! The hypervisor heap (`alloc`): a linked-list allocator over frames the frame
//! allocator handed out once at boot and that are never returned. Only `sluice-iommu`
//! and boot-time parsing use it; nothing allocates in interrupt context.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `[start, start + len)` to the allocator. Returns false (and does nothing) when
/// the heap was already set up or the range is outside the identity map.
pub fn init(start: u64, len: u64) -> bool {
    let mut heap = HEAP.lock();
    if heap.size() != 0 || !super::phys::mapped(start, len) {
        return false;
    }
    // SAFETY: the range is inside the identity map (checked), consists of frames the
    // frame allocator handed out for this purpose and nothing else references (the
    // caller never frees them), and the heap is initialised only once (checked above,
    // under the lock).
    unsafe { heap.init(start as *mut u8, len as usize) };
    true
}

/// Bytes in use and total.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.used(), heap.size())
}
