//! Page-aligned buffers for grant copy. `IOCTL_GNTDEV_GRANT_COPY` splits every segment
//! at the page boundaries of our (local) side and pins each piece's page: a 4096-byte
//! piece at an unaligned address is two hypervisor copy operations and two page pins,
//! at a page-aligned one a single one. So RX frames are read with their data starting
//! on a page, and TX packets are laid out so that their slots fall on the same offsets
//! in our pages as in the guest's ([`tx_start`]).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Xen's (and x86's) page size.
pub const PAGE: usize = 4096;

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Zeroed, page-aligned bytes.
pub struct PageBuf(Box<[Page]>);

impl PageBuf {
    /// At least `len` bytes (whole pages).
    pub fn new(len: usize) -> Self {
        Self(vec![Page([0; PAGE]); len.div_ceil(PAGE)].into_boxed_slice())
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_bytes()
    }
}

/// Copy operations the kernel makes of a local piece of `len` bytes at `addr` (one per
/// page it touches; 0 for an empty piece).
pub fn local_ops(addr: usize, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (addr + len - 1) / PAGE - addr / PAGE + 1
    }
}

/// Where in a page-aligned buffer a TX packet starts, given its data slots' (guest
/// page offset, length): the second slot then starts at its own guest offset within
/// our page, so the slots after the first (netfront's page fragments: the first ends
/// on a page boundary, the rest start at 0) each take one operation. A packet of one
/// slot keeps that slot's own offset (it fits in one page since it fits in the guest's).
pub fn tx_start(slots: &[(u16, u16)]) -> usize {
    match slots {
        [] => 0,
        [(off, _)] => usize::from(*off) % PAGE,
        [(_, len0), (off1, _), ..] => {
            (usize::from(*off1) + PAGE - usize::from(*len0) % PAGE) % PAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buffers_are_page_aligned() {
        let mut b = PageBuf::new(PAGE + 1);
        assert_eq!(b.bytes().len(), 2 * PAGE);
        assert_eq!(b.bytes_mut().as_ptr() as usize % PAGE, 0);
    }

    #[test]
    fn ops_count_pages_touched() {
        assert_eq!(local_ops(0, 0), 0);
        assert_eq!(local_ops(0, PAGE), 1);
        assert_eq!(local_ops(10, PAGE), 2);
        assert_eq!(local_ops(PAGE - 1, 2), 2);
        assert_eq!(local_ops(PAGE, 3 * PAGE), 3);
    }

    #[test]
    fn netfront_layout_takes_one_op_per_fragment_slot() {
        // Headers (66 bytes at 200), then a fragment from offset 1000 to the page's
        // end, then two whole pages, then 500 bytes.
        let slots = [(200, 66), (1000, 3096), (0, 4096), (0, 4096), (0, 500)];
        let start = tx_start(&slots);
        let mut at = start;
        let mut ops = Vec::new();
        for (_, len) in slots {
            ops.push(local_ops(at, usize::from(len)));
            at += usize::from(len);
        }
        assert_eq!(ops[1..], [1, 1, 1, 1]);
        assert!(ops[0] <= 2);
    }

    proptest! {
        #[test]
        fn a_packet_always_fits_its_buffer(
            slots in proptest::collection::vec((0u16..4096, 0u16..=4096), 0..20)
        ) {
            // Whatever the slots say, the start is within the first page, so a packet
            // of at most 65535 bytes fits in tx.rs's `TX_BUF` (4095 + 65535 bytes).
            prop_assert!(tx_start(&slots) < PAGE);
        }
    }
}
