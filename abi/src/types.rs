//! Scalar types and reserved values shared by every Xen interface (`xen.h`).

/// A domain id (`domid_t`).
pub type DomId = u16;
/// An event channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;
/// An index into a domain's grant table (`grant_ref_t`).
pub type GrantRef = u32;
/// A handle for a grant mapping, returned by `GNTTABOP_map_grant_ref` (`grant_handle_t`).
pub type GrantHandle = u32;
/// A guest frame number (`xen_pfn_t`; `unsigned long`, 64 bits on x86_64).
pub type XenPfn = u64;
/// A guest pointer passed in a hypercall argument struct (`XEN_GUEST_HANDLE(...)`): a
/// guest virtual address, 64 bits on x86_64.
pub type GuestHandle = u64;

/// The calling domain, where an interface accepts "myself" (`DOMID_SELF`).
pub const DOMID_SELF: DomId = 0x7FF0;
/// Domain ids at or above this are reserved and name no ordinary domain
/// (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// Pseudo-domain for I/O mappings (`DOMID_IO`).
pub const DOMID_IO: DomId = 0x7FF1;
/// Pseudo-domain owning Xen's own pages (`DOMID_XEN`).
pub const DOMID_XEN: DomId = 0x7FF2;
/// Pseudo-domain owning shared copy-on-write pages (`DOMID_COW`).
pub const DOMID_COW: DomId = 0x7FF3;
/// Pages with no known owner (`DOMID_INVALID`).
pub const DOMID_INVALID: DomId = 0x7FF4;
/// The idle domain (`DOMID_IDLE`).
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask of the bits a valid domain id may use (`DOMID_MASK`).
pub const DOMID_MASK: DomId = 0x7FFF;

/// Whether `dom` names an ordinary domain (not one of the reserved pseudo-domains).
pub const fn is_ordinary_domid(dom: DomId) -> bool {
    dom < DOMID_FIRST_RESERVED
}
