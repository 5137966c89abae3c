//! Address newtypes, so a guest-physical address cannot be used where a host-physical
//! one is meant (or a frame number where an address is): `Gpa` / `Gfn` are a domain's
//! view (translated through its nested page table), `Hpa` / `Mfn` the machine's.

use crate::mm::PAGE;

/// A guest-physical address (behind the domain's nested page table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gpa(pub u64);
/// A host-physical address (a frame the hypervisor owns or lent to a domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hpa(pub u64);
/// A guest frame number (`Gpa >> 12`), as guests name pages in the Xen ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gfn(pub u64);
/// A machine frame number (`Hpa >> 12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mfn(pub u64);

impl Gfn {
    /// Its address; `None` when a guest-supplied number overflows.
    pub fn gpa(self) -> Option<Gpa> {
        self.0.checked_mul(PAGE).map(Gpa)
    }
}

impl Gpa {
    pub fn offset(self) -> u64 {
        self.0 % PAGE
    }
    pub fn is_page_aligned(self) -> bool {
        self.0.is_multiple_of(PAGE)
    }
}

impl Hpa {
    pub fn mfn(self) -> Mfn {
        Mfn(self.0 / PAGE)
    }
    /// The page this address is in.
    pub fn page(self) -> Hpa {
        Hpa(self.0 & !(PAGE - 1))
    }
}

macro_rules! hex {
    ($($t:ty),*) => {$(
        impl core::fmt::LowerHex for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::LowerHex::fmt(&self.0, f)
            }
        }
    )*};
}
hex!(Gpa, Hpa, Gfn, Mfn);
