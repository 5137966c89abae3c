//! The config-space access seam and the register offsets used by this crate.
use sluice_iommu::Bdf;

/// Access width of one config-space access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    B1 = 1,
    B2 = 2,
    B4 = 4,
}

impl Width {
    pub const fn bytes(self) -> u16 {
        self as u16
    }
    /// All-ones of this width: what an absent function or a hidden register reads.
    pub const fn ones(self) -> u32 {
        match self {
            Width::B1 => 0xff,
            Width::B2 => 0xffff,
            Width::B4 => 0xffff_ffff,
        }
    }
    pub fn from_bytes(n: usize) -> Option<Self> {
        match n {
            1 => Some(Width::B1),
            2 => Some(Width::B2),
            4 => Some(Width::B4),
            _ => None,
        }
    }
}

/// Size of a PCIe function's configuration space (ECAM).
pub const CFG_SIZE: u16 = 4096;

/// Config-space access to the machine's functions (ECAM in the hypervisor, sysfs or
/// a fake elsewhere). `off` is within 0..4096 and naturally aligned for its width;
/// callers in this crate never pass anything else. An absent function reads all-ones.
pub trait ConfigSpace {
    fn read(&mut self, bdf: Bdf, off: u16, w: Width) -> u32;
    fn write(&mut self, bdf: Bdf, off: u16, w: Width, v: u32);

    fn read8(&mut self, bdf: Bdf, off: u16) -> u8 {
        self.read(bdf, off, Width::B1) as u8
    }
    fn read16(&mut self, bdf: Bdf, off: u16) -> u16 {
        self.read(bdf, off, Width::B2) as u16
    }
    fn read32(&mut self, bdf: Bdf, off: u16) -> u32 {
        self.read(bdf, off, Width::B4)
    }
    fn write8(&mut self, bdf: Bdf, off: u16, v: u8) {
        self.write(bdf, off, Width::B1, v.into())
    }
    fn write16(&mut self, bdf: Bdf, off: u16, v: u16) {
        self.write(bdf, off, Width::B2, v.into())
    }
    fn write32(&mut self, bdf: Bdf, off: u16, v: u32) {
        self.write(bdf, off, Width::B4, v)
    }
}

// Type 0/1 header.
pub const VENDOR_ID: u16 = 0x00;
pub const DEVICE_ID: u16 = 0x02;
pub const COMMAND: u16 = 0x04;
pub const STATUS: u16 = 0x06;
pub const REVISION: u16 = 0x08;
pub const CLASS_PROG: u16 = 0x09;
pub const CACHE_LINE: u16 = 0x0c;
pub const HEADER_TYPE: u16 = 0x0e;
pub const BAR0: u16 = 0x10;
pub const PRIMARY_BUS: u16 = 0x18;
pub const SECONDARY_BUS: u16 = 0x19;
pub const SUBORDINATE_BUS: u16 = 0x1a;
pub const SUBSYSTEM_VENDOR: u16 = 0x2c;
pub const SUBSYSTEM_ID: u16 = 0x2e;
pub const ROM0: u16 = 0x30;
pub const CAP_PTR: u16 = 0x34;
pub const ROM1: u16 = 0x38;
pub const INTERRUPT_LINE: u16 = 0x3c;
pub const INTERRUPT_PIN: u16 = 0x3d;
pub const BRIDGE_CONTROL: u16 = 0x3e;

pub const CMD_IO: u16 = 1 << 0;
pub const CMD_MEMORY: u16 = 1 << 1;
pub const CMD_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
pub const STATUS_CAP_LIST: u16 = 1 << 4;
pub const BRIDGE_CTL_BUS_RESET: u16 = 1 << 6;

// Capability ids.
pub const CAP_PM: u8 = 0x01;
pub const CAP_MSI: u8 = 0x05;
pub const CAP_VENDOR: u8 = 0x09;
pub const CAP_PCIE: u8 = 0x10;
pub const CAP_MSIX: u8 = 0x11;
pub const CAP_AF: u8 = 0x13;
// Extended capability ids.
pub const ECAP_ACS: u16 = 0x000d;
pub const ECAP_ARI: u16 = 0x000e;
pub const ECAP_SRIOV: u16 = 0x0010;
pub const ECAP_REBAR: u16 = 0x0015;
pub const ECAP_VSEC: u16 = 0x000b;

// PCIe capability fields (offsets from the capability).
pub const EXP_FLAGS: u16 = 2;
pub const EXP_DEVCAP: u16 = 4;
pub const EXP_DEVCTL: u16 = 8;
pub const EXP_DEVSTA: u16 = 0xa;
pub const EXP_DEVCAP_FLR: u32 = 1 << 28;
pub const EXP_DEVCTL_BCR_FLR: u16 = 1 << 15;
pub const EXP_DEVSTA_TRPND: u16 = 1 << 5;
/// PCIe port types (flags bits 7:4).
pub const EXP_TYPE_PCIE_TO_PCI: u8 = 0x7;
pub const EXP_TYPE_ROOT_PORT: u8 = 0x4;
pub const EXP_TYPE_DOWNSTREAM: u8 = 0x6;

// AF capability.
pub const AF_CAP: u16 = 3;
pub const AF_CTRL: u16 = 4;
pub const AF_STATUS: u16 = 5;
pub const AF_CAP_TP: u8 = 1 << 0;
pub const AF_CAP_FLR: u8 = 1 << 1;
pub const AF_CTRL_FLR: u8 = 1 << 0;
pub const AF_STATUS_TP: u8 = 1 << 0;

// PM capability.
pub const PM_CTRL: u16 = 4;
pub const PM_CTRL_STATE_MASK: u16 = 3;
pub const PM_CTRL_NO_SOFT_RESET: u16 = 1 << 3;

// ACS (from the extended capability).
pub const ACS_CAP: u16 = 4;
pub const ACS_CTRL: u16 = 6;
pub const ACS_SV: u16 = 1 << 0;
pub const ACS_RR: u16 = 1 << 2;
pub const ACS_CR: u16 = 1 << 3;
pub const ACS_UF: u16 = 1 << 4;
/// What Linux requires enabled for isolation (REQ_ACS_FLAGS).
pub const ACS_REQUIRED: u16 = ACS_SV | ACS_RR | ACS_CR | ACS_UF;

/// A read-only config-space snapshot (bytes read from sysfs, where unprivileged readers
/// get 64, or a dump): reads past it are all-ones, writes are ignored.
pub struct Snapshot(pub alloc::vec::Vec<u8>);

impl ConfigSpace for Snapshot {
    fn read(&mut self, _: Bdf, off: u16, w: Width) -> u32 {
        let o = off as usize;
        match self.0.get(o..o + w.bytes() as usize) {
            Some(b) => b.iter().rev().fold(0, |v, &x| v << 8 | x as u32),
            None => w.ones(),
        }
    }
    fn write(&mut self, _: Bdf, _: u16, _: Width, _: u32) {}
}
