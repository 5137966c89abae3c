//! The shared info page and per-vCPU info (`xen/xen.h`, `xen/arch-x86/xen.h`,
//! `xen/arch-x86/xen-x86_64.h`), x86_64 layout.
//!
//! A guest maps the shared info page with `XENMEM_add_to_physmap`
//! (`XENMAPSPACE_shared_info`); Xen keeps per-vCPU event state and time there, and the
//! 2-level event channel pending/mask bitmaps.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// vCPUs whose [`VcpuInfo`] lives in the shared info page (`XEN_LEGACY_MAX_VCPUS`);
/// others register theirs with `VCPUOP_register_vcpu_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// Words of the 2-level event channel bitmaps: `sizeof(xen_ulong_t) * 8`.
pub const EVTCHN_WORDS: usize = 64;

/// [`VcpuTimeInfo::flags`]: the TSC is stable across vCPUs (`XEN_PVCLOCK_TSC_STABLE_BIT`).
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// [`VcpuTimeInfo::flags`]: the guest was stopped (`XEN_PVCLOCK_GUEST_STOPPED`).
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// Per-vCPU system time (`struct vcpu_time_info`), the pvclock ABI.
///
/// Readers retry while `version` is odd or changed: Xen increments it before and after
/// an update.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Update counter; odd while an update is in progress.
    pub version: u32,
    /// Padding (explicit in C).
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at the last update.
    pub system_time: u64,
    /// TSC-to-ns multiplier (32.32 fixed point after `tsc_shift`).
    pub tsc_to_system_mul: u32,
    /// Shift applied to the TSC delta before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    /// Padding (explicit in C).
    pub pad1: [u8; 2],
}

impl VcpuTimeInfo {
    /// System time in ns at TSC value `tsc`: `system_time + ((tsc - tsc_timestamp) <<
    /// tsc_shift) * tsc_to_system_mul >> 32`, wrapping like the C reference.
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta = delta.checked_shl(self.tsc_shift as u32).unwrap_or(0);
        } else {
            delta = delta
                .checked_shr(self.tsc_shift.unsigned_abs() as u32)
                .unwrap_or(0);
        }
        let scaled = ((delta as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(scaled)
    }
}

/// Architecture part of [`VcpuInfo`] on x86_64 (`struct arch_vcpu_info`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault (PV guests).
    pub cr2: u64,
    /// Padding (explicit in C) to make `vcpu_info` 64 bytes.
    pub pad: u64,
}

/// Per-vCPU event and time state (`struct vcpu_info`), 64 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Set by the guest to mask upcalls (PV; `XEN_HAVE_PV_UPCALL_MASK` on x86).
    pub evtchn_upcall_mask: u8,
    /// Padding (implicit in C).
    pub _pad0: [u8; 6],
    /// Selector: which words of `evtchn_pending` have pending bits.
    pub evtchn_pending_sel: u64,
    /// Architecture part.
    pub arch: ArchVcpuInfo,
    /// System time.
    pub time: VcpuTimeInfo,
}

/// Architecture part of [`SharedInfo`] on x86_64 (`struct arch_shared_info`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Valid entries of the p2m table (PV).
    pub max_pfn: u64,
    /// Frame of the p2m frame-list list (PV).
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// Root of the address space of `p2m_vaddr` (PV).
    pub p2m_cr3: u64,
    /// Virtual address of the linear p2m list (PV).
    pub p2m_vaddr: u64,
    /// Generation count of the p2m mapping (PV).
    pub p2m_generation: u64,
}

/// The shared info page (`struct shared_info`), 3136 bytes at the start of its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SharedInfo {
    /// vCPUs 0..32.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bits, one per port.
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// 2-level event channel mask bits, one per port.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Wallclock update counter (same protocol as [`VcpuTimeInfo::version`]).
    pub wc_version: u32,
    /// Wallclock seconds at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture part.
    pub arch: ArchSharedInfo,
}

impl SharedInfo {
    /// Wallclock seconds at system time 0, both halves.
    pub fn wc_sec(&self) -> u64 {
        (self.wc_sec_hi as u64) << 32 | self.wc_sec as u64
    }

    /// Word index and bit of event channel `port` in the 2-level bitmaps, or `None` if
    /// the port is beyond them.
    pub fn evtchn_bit(port: u32) -> Option<(usize, u64)> {
        let word = port as usize / 64;
        (word < EVTCHN_WORDS).then(|| (word, 1u64 << (port % 64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvclock_scaling() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5,
            tsc_to_system_mul: 1 << 31, // 0.5 ns per shifted tick
            tsc_shift: 1,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(1100), 5 + 100);
        assert_eq!(SharedInfo::evtchn_bit(65), Some((1, 2)));
        assert_eq!(SharedInfo::evtchn_bit(4096), None);
    }
}
