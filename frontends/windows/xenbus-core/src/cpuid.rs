//! Finding Xen by CPUID: the hypervisor leaves from 0x4000_0000 up in steps of 0x100
//! (Xen moves its leaves to 0x4000_0100 when it also offers Viridian/Hyper-V leaves),
//! signature "XenVMMXenVMM", then the version leaf and the hypercall-page MSR leaf.

/// What CPUID says about Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCpuid {
    /// The base leaf (0x4000_0000 or 0x4000_0100, ...).
    pub base: u32,
    /// Xen's major and minor version.
    pub version: (u16, u16),
    /// The MSR that takes the hypercall page's physical address.
    pub hypercall_msr: u32,
    /// How many hypercall pages Xen wants (1 on every Xen so far).
    pub hypercall_pages: u32,
}

/// The signature in EBX, ECX, EDX.
pub const SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";

/// Finds Xen with `cpuid(leaf) -> [eax, ebx, ecx, edx]`. `None` when there is no Xen, or
/// its leaves are not usable (max leaf below base + 2, no hypercall page).
pub fn detect(cpuid: impl Fn(u32) -> [u32; 4]) -> Option<XenCpuid> {
    (0x4000_0000u32..0x4001_0000)
        .step_by(0x100)
        .find_map(|base| {
            let [max, b, c, d] = cpuid(base);
            let mut sig = [0u8; 12];
            sig[..4].copy_from_slice(&b.to_le_bytes());
            sig[4..8].copy_from_slice(&c.to_le_bytes());
            sig[8..].copy_from_slice(&d.to_le_bytes());
            if &sig != SIGNATURE || max < base + 2 {
                return None;
            }
            let [ver, ..] = cpuid(base + 1);
            let [pages, msr, ..] = cpuid(base + 2);
            if pages == 0 || pages > 8 {
                return None;
            }
            Some(XenCpuid {
                base,
                version: ((ver >> 16) as u16, ver as u16),
                hypercall_msr: msr,
                hypercall_pages: pages,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig_regs() -> [u32; 3] {
        let s = SIGNATURE;
        [
            u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
            u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
        ]
    }

    fn xen_at(base: u32, max_off: u32, pages: u32) -> impl Fn(u32) -> [u32; 4] {
        move |leaf| {
            let [b, c, d] = sig_regs();
            match leaf.wrapping_sub(base) {
                0 => [base + max_off, b, c, d],
                1 => [(4 << 16) | 17, 0, 0, 0],
                2 => [pages, 0x4000_0000, 0, 0],
                _ if leaf == 0x4000_0000 => [0x4000_0005, 0x7263_694d, 0x666f_736f, 0x7648_2074],
                _ => [0; 4],
            }
        }
    }

    #[test]
    fn finds_xen_at_the_first_base() {
        let x = detect(xen_at(0x4000_0000, 5, 1)).unwrap();
        assert_eq!(x.base, 0x4000_0000);
        assert_eq!(x.version, (4, 17));
        assert_eq!(x.hypercall_msr, 0x4000_0000);
        assert_eq!(x.hypercall_pages, 1);
    }

    #[test]
    fn finds_xen_behind_viridian_leaves() {
        // Hyper-V's "Microsoft Hv" at 0x4000_0000, Xen at 0x4000_0100.
        assert_eq!(detect(xen_at(0x4000_0100, 5, 1)).unwrap().base, 0x4000_0100);
    }

    #[test]
    fn no_xen_or_unusable_leaves() {
        assert_eq!(detect(|_| [0; 4]), None);
        assert_eq!(
            detect(xen_at(0x4000_0000, 1, 1)),
            None,
            "max leaf too small"
        );
        assert_eq!(detect(xen_at(0x4000_0000, 5, 0)), None, "no hypercall page");
        assert_eq!(
            detect(xen_at(0x4000_0000, 5, 1000)),
            None,
            "absurd page count"
        );
    }
}
