//! A fake PCI segment for host tests: functions described as data (header, BARs,
//! capabilities as bytes), with the register behaviour the core relies on: BAR and
//! ROM sizing by writing ones, write masks, FLR (PCIe and AF), D3hot->D0, secondary
//! bus reset, and a transactions-pending bit that clears after a given number of reads.
//! Every write that reaches a function is logged.
use crate::config::*;
use alloc::vec;
use alloc::vec::Vec;
use sluice_iommu::Bdf;

/// One BAR of a fake function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeBar {
    Mem32 { size: u32, prefetch: bool },
    Mem64 { size: u64, prefetch: bool },
    Io { size: u32 },
}

/// One function of the fake segment.
#[derive(Clone, Debug)]
pub struct FakeFunction {
    pub bdf: Bdf,
    pub cfg: Vec<u8>,
    /// Bits software may change (BAR and ROM registers are handled apart).
    pub wmask: Vec<u8>,
    pub bars: [Option<FakeBar>; 6],
    pub rom_size: u32,
    /// Every (offset, width, value) written to this function, in order.
    pub writes: Vec<(u16, Width, u32)>,
    /// Every (offset, width) read from this function, in order.
    pub reads: Vec<(u16, Width)>,
    /// Reads of the pending bits that still report transactions pending (u32::MAX: forever).
    pub pending_reads: u32,
    /// Reads of the Vendor ID after each reset that still return all-ones (u32::MAX: never back).
    pub ready_reads: u32,
    not_ready_left: u32,
    pub flr_count: u32,
    pub pm_resets: u32,
    pub bus_resets: u32,
    /// BAR or ROM writes made while the command register decoded memory or I/O.
    pub sized_with_decode_on: u32,
    next_cap: u16,
    last_cap: u16,
    last_ecap: u16,
    ecap_lens: Vec<(u16, u16)>,
    pm_was_d3: bool,
    bus_reset_pulses: u32,
}

impl FakeFunction {
    /// A type-0 endpoint.
    pub fn endpoint(bdf: Bdf, vendor: u16, device: u16, class: u32) -> Self {
        let mut f = FakeFunction {
            bdf,
            cfg: vec![0; CFG_SIZE as usize],
            wmask: vec![0; CFG_SIZE as usize],
            bars: [None; 6],
            rom_size: 0,
            writes: Vec::new(),
            reads: Vec::new(),
            pending_reads: 0,
            ready_reads: 0,
            not_ready_left: 0,
            flr_count: 0,
            pm_resets: 0,
            bus_resets: 0,
            sized_with_decode_on: 0,
            next_cap: 0x40,
            last_cap: 0,
            last_ecap: 0,
            ecap_lens: Vec::new(),
            pm_was_d3: false,
            bus_reset_pulses: 0,
        };
        f.put16(VENDOR_ID, vendor);
        f.put16(DEVICE_ID, device);
        f.put32(REVISION, class << 8 | 1);
        f.put16(COMMAND, 0);
        f.wmask[COMMAND as usize] = 0xff;
        f.wmask[COMMAND as usize + 1] = 0x07;
        f.wmask[INTERRUPT_LINE as usize] = 0xff;
        f.cfg[INTERRUPT_PIN as usize] = 1;
        f
    }

    /// A type-1 bridge forwarding buses `secondary..=subordinate`.
    pub fn bridge(bdf: Bdf, vendor: u16, device: u16, secondary: u8, subordinate: u8) -> Self {
        let mut f = Self::endpoint(bdf, vendor, device, 0x060400);
        f.cfg[HEADER_TYPE as usize] = 1;
        f.cfg[PRIMARY_BUS as usize] = bdf.bus;
        f.cfg[SECONDARY_BUS as usize] = secondary;
        f.cfg[SUBORDINATE_BUS as usize] = subordinate;
        f.wmask[BRIDGE_CONTROL as usize] = 0xff;
        f
    }

    /// Places the next capability at `off` (a multiple of 4, at least 0x40).
    pub fn next_cap_at(mut self, off: u16) -> Self {
        self.next_cap = off;
        self
    }

    /// A function from a config-space dump (256 or 4096 bytes), with its BARs and ROM
    /// size as data; the writable bits are those the core uses (command, interrupt
    /// line, bridge control, PM state, PCIe device control, MSI, MSI-X control, AF).
    pub fn from_config(bdf: Bdf, bytes: &[u8], bars: &[(usize, FakeBar)], rom_size: u32) -> Self {
        let mut f = Self::endpoint(bdf, 0, 0, 0);
        let n = bytes.len().min(CFG_SIZE as usize);
        f.cfg[..n].copy_from_slice(&bytes[..n]);
        // As after a reset: the dump carries the guest kernel's command register.
        f.put16(COMMAND, 0);
        for &(i, b) in bars {
            f.bars[i] = Some(b);
        }
        f.rom_size = rom_size;
        if f.is_bridge() {
            f.wmask[BRIDGE_CONTROL as usize] = 0xff;
        }
        let mut p = f.cfg[CAP_PTR as usize] as u16 & !3;
        for _ in 0..48 {
            if p < 0x40 {
                break;
            }
            let at = p as usize;
            match f.cfg[at] {
                CAP_PM => f.wmask[at + 4] = 0x03,
                CAP_PCIE => f.wmask[at + 8..at + 10].fill(0xff),
                CAP_MSI => {
                    f.wmask[at + 2] = 0x71;
                    f.wmask[at + 4..(at + 0x18).min(0x100)].fill(0xff);
                }
                CAP_MSIX => f.wmask[at + 3] = 0xc0,
                CAP_AF => f.wmask[at + AF_CTRL as usize] = AF_CTRL_FLR,
                _ => {}
            }
            p = f.cfg[at + 1] as u16 & !3;
        }
        f
    }

    pub fn multifunction(mut self) -> Self {
        self.cfg[HEADER_TYPE as usize] |= 0x80;
        self
    }

    pub fn bar(mut self, i: usize, b: FakeBar) -> Self {
        self.bars[i] = Some(b);
        let off = BAR0 + 4 * i as u16;
        let flags = match b {
            FakeBar::Mem32 { prefetch, .. } => (prefetch as u32) << 3,
            FakeBar::Mem64 { prefetch, .. } => 0x4 | (prefetch as u32) << 3,
            FakeBar::Io { .. } => 1,
        };
        self.put32(off, flags);
        self
    }

    pub fn rom(mut self, size: u32) -> Self {
        self.rom_size = size;
        self
    }

    /// Appends a capability: `body` is what follows its id and next pointer.
    pub fn cap(mut self, id: u8, body: &[u8]) -> Self {
        let at = self.next_cap;
        self.cfg[at as usize] = id;
        self.cfg[at as usize + 2..at as usize + 2 + body.len()].copy_from_slice(body);
        if self.last_cap == 0 {
            self.cfg[CAP_PTR as usize] = at as u8;
            let st = self.get16(STATUS) | STATUS_CAP_LIST;
            self.put16(STATUS, st);
        } else {
            self.cfg[self.last_cap as usize + 1] = at as u8;
        }
        self.last_cap = at;
        self.next_cap = (at + 2 + body.len() as u16 + 3) & !3;
        self
    }

    /// Appends an extended capability (version 1): `body` follows its header.
    pub fn ext_cap(mut self, id: u16, body: &[u8]) -> Self {
        let at = if self.last_ecap == 0 {
            0x100
        } else {
            let h = self.get32(self.last_ecap);
            let len = self.ecap_len(self.last_ecap);
            let next = (self.last_ecap + len + 3) & !3;
            self.put32(self.last_ecap, h | (next as u32) << 20);
            next
        };
        self.put32(at, id as u32 | 1 << 16);
        self.cfg[at as usize + 4..at as usize + 4 + body.len()].copy_from_slice(body);
        self.cfg_len_note(at, body.len() as u16);
        self.last_ecap = at;
        self
    }

    fn cfg_len_note(&mut self, at: u16, len: u16) {
        self.ecap_lens.push((at, 4 + len));
    }
    fn ecap_len(&self, at: u16) -> u16 {
        self.ecap_lens.iter().find(|e| e.0 == at).map_or(4, |e| e.1)
    }

    /// PCIe capability with the given port type, FLR bit in DevCap.
    pub fn pcie(self, port_type: u8, flr: bool) -> Self {
        let mut b = [0u8; 0x3a];
        b[0] = 2 | port_type << 4; // flags: version 2
        let devcap: u32 = if flr { EXP_DEVCAP_FLR } else { 0 };
        b[2..6].copy_from_slice(&devcap.to_le_bytes());
        let at = self.next_cap;
        let mut s = self.cap(CAP_PCIE, &b);
        s.wmask[(at + EXP_DEVCTL) as usize] = 0xff;
        s.wmask[(at + EXP_DEVCTL) as usize + 1] = 0xff;
        s
    }

    /// PM capability; `no_soft_reset` is PMCSR bit 3.
    pub fn pm(self, no_soft_reset: bool) -> Self {
        let mut b = [0u8; 6];
        b[0] = 3; // PMC version 3
        b[2] = if no_soft_reset {
            PM_CTRL_NO_SOFT_RESET as u8
        } else {
            0
        };
        let at = self.next_cap;
        let mut s = self.cap(CAP_PM, &b);
        s.wmask[(at + PM_CTRL) as usize] = 0x03;
        s
    }

    /// MSI capability: 64-bit address, per-vector masking as asked, `vectors` (a power of two).
    pub fn msi(self, is64: bool, maskable: bool, vectors: u8) -> Self {
        let mmc = vectors.trailing_zeros() as u16;
        let ctl: u16 = mmc << 1 | (is64 as u16) << 7 | (maskable as u16) << 8;
        let mut b = [0u8; 22];
        b[0..2].copy_from_slice(&ctl.to_le_bytes());
        let at = self.next_cap;
        let mut s = self.cap(CAP_MSI, &b);
        for i in 2..24 {
            s.wmask[(at + i) as usize] = 0xff;
        }
        s.wmask[(at + 2) as usize] = 0x71; // enable + MME
        s.wmask[(at + 3) as usize] = 0;
        s
    }

    /// MSI-X capability: `n` vectors, table and PBA at (BIR, offset).
    pub fn msix(self, n: u16, table: (u8, u32), pba: (u8, u32)) -> Self {
        let mut b = [0u8; 10];
        b[0..2].copy_from_slice(&(n - 1).to_le_bytes());
        b[2..6].copy_from_slice(&(table.1 | table.0 as u32).to_le_bytes());
        b[6..10].copy_from_slice(&(pba.1 | pba.0 as u32).to_le_bytes());
        let at = self.next_cap;
        let mut s = self.cap(CAP_MSIX, &b);
        s.wmask[(at + 3) as usize] = 0xc0;
        s
    }

    /// AF capability (conventional PCI FLR).
    pub fn af(self, flr: bool) -> Self {
        let b = [6, AF_CAP_TP | if flr { AF_CAP_FLR } else { 0 }, 0, 0];
        let at = self.next_cap;
        let mut s = self.cap(CAP_AF, &b);
        s.wmask[(at + AF_CTRL) as usize] = AF_CTRL_FLR;
        s
    }

    /// ACS extended capability with every isolation control bit set as `enabled`.
    pub fn acs(self, enabled: bool) -> Self {
        let caps: u16 = 0x7f;
        let ctl: u16 = if enabled { ACS_REQUIRED } else { 0 };
        let mut b = [0u8; 4];
        b[0..2].copy_from_slice(&caps.to_le_bytes());
        b[2..4].copy_from_slice(&ctl.to_le_bytes());
        self.ext_cap(ECAP_ACS, &b)
    }

    pub fn get16(&self, off: u16) -> u16 {
        u16::from_le_bytes([self.cfg[off as usize], self.cfg[off as usize + 1]])
    }
    pub fn get32(&self, off: u16) -> u32 {
        let o = off as usize;
        u32::from_le_bytes([
            self.cfg[o],
            self.cfg[o + 1],
            self.cfg[o + 2],
            self.cfg[o + 3],
        ])
    }
    pub fn put16(&mut self, off: u16, v: u16) {
        self.cfg[off as usize..off as usize + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put32(&mut self, off: u16, v: u32) {
        self.cfg[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Where the capability with this id is (first match), 0 if none.
    pub fn cap_at(&self, id: u8) -> u16 {
        let mut p = self.cfg[CAP_PTR as usize] as u16;
        for _ in 0..48 {
            if p < 0x40 {
                return 0;
            }
            if self.cfg[p as usize] == id {
                return p;
            }
            p = self.cfg[p as usize + 1] as u16 & !3;
        }
        0
    }

    fn is_bridge(&self) -> bool {
        self.cfg[HEADER_TYPE as usize] & 0x7f == 1
    }

    fn bar_write(&mut self, off: u16, v: u32) -> bool {
        let nbars = if self.is_bridge() { 2 } else { 6 };
        let rom = if self.is_bridge() { ROM1 } else { ROM0 };
        if off == rom {
            let mask = if self.rom_size == 0 {
                0
            } else {
                !(self.rom_size - 1) & 0xffff_f801
            };
            self.put32(off, v & mask);
            return true;
        }
        if !(BAR0..BAR0 + 4 * nbars).contains(&off) {
            return false;
        }
        let i = ((off - BAR0) / 4) as usize;
        let val = match (self.bars[i], i.checked_sub(1).and_then(|j| self.bars[j])) {
            (Some(FakeBar::Mem32 { size, prefetch }), _) => {
                (v & !(size - 1) & !0xf) | (prefetch as u32) << 3
            }
            (Some(FakeBar::Mem64 { size, prefetch }), _) => {
                (v & !((size - 1) as u32) & !0xf) | 4 | (prefetch as u32) << 3
            }
            (Some(FakeBar::Io { size }), _) => (v & !(size - 1) & 0xffff_fffc) | 1,
            (None, Some(FakeBar::Mem64 { size, .. })) => v & !((size - 1) >> 32) as u32,
            (None, _) => 0,
        };
        self.put32(off, val);
        true
    }

    fn write_cfg(&mut self, off: u16, w: Width, v: u32) {
        self.writes.push((off, w, v));
        let decoding = self.get16(COMMAND) & (CMD_MEMORY | CMD_IO) != 0;
        if w == Width::B4 && self.bar_write(off, v) {
            self.sized_with_decode_on += decoding as u32;
            return;
        }
        let exp = self.cap_at(CAP_PCIE);
        let af = self.cap_at(CAP_AF);
        let pm = self.cap_at(CAP_PM);
        for i in 0..w.bytes() {
            let o = (off + i) as usize;
            let b = (v >> (8 * i)) as u8;
            self.cfg[o] = (self.cfg[o] & !self.wmask[o]) | (b & self.wmask[o]);
        }
        if exp != 0 && self.get16(exp + EXP_DEVCTL) & EXP_DEVCTL_BCR_FLR != 0 {
            self.flr_count += 1;
            self.function_reset();
            let c = self.get16(exp + EXP_DEVCTL) & !EXP_DEVCTL_BCR_FLR;
            self.put16(exp + EXP_DEVCTL, c);
        }
        if af != 0 && self.cfg[(af + AF_CTRL) as usize] & AF_CTRL_FLR != 0 {
            self.flr_count += 1;
            self.function_reset();
            self.cfg[(af + AF_CTRL) as usize] = 0;
        }
        if pm != 0 && (off..off + w.bytes()).contains(&(pm + PM_CTRL)) {
            let st = self.get16(pm + PM_CTRL);
            if st & 3 == 0 && self.pm_was_d3 && st & PM_CTRL_NO_SOFT_RESET == 0 {
                self.pm_resets += 1;
                self.function_reset();
            }
            self.pm_was_d3 = st & 3 == 3;
        }
        if self.is_bridge() && self.get16(BRIDGE_CONTROL) & BRIDGE_CTL_BUS_RESET != 0 {
            self.bus_reset_pulses += 1;
        }
    }

    fn function_reset(&mut self) {
        self.not_ready_left = self.ready_reads;
        self.put16(COMMAND, 0);
    }

    fn read_cfg(&mut self, off: u16, w: Width) -> u32 {
        self.reads.push((off, w));
        if off == VENDOR_ID && self.not_ready_left > 0 {
            if self.not_ready_left != u32::MAX {
                self.not_ready_left -= 1;
            }
            return w.ones();
        }
        let exp = self.cap_at(CAP_PCIE);
        let af = self.cap_at(CAP_AF);
        let pending = (exp != 0 && (off..off + w.bytes()).contains(&(exp + EXP_DEVSTA)))
            || (af != 0 && (off..off + w.bytes()).contains(&(af + AF_STATUS)));
        if pending && self.pending_reads > 0 {
            if self.pending_reads != u32::MAX {
                self.pending_reads -= 1;
            }
            let bit = if exp != 0 && (off..off + w.bytes()).contains(&(exp + EXP_DEVSTA)) {
                (EXP_DEVSTA_TRPND as u32) << (8 * (exp + EXP_DEVSTA - off))
            } else {
                (AF_STATUS_TP as u32) << (8 * (af + AF_STATUS - off))
            };
            return self.raw(off, w) | bit;
        }
        self.raw(off, w)
    }

    fn raw(&self, off: u16, w: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..w.bytes() {
            v |= (self.cfg[(off + i) as usize] as u32) << (8 * i);
        }
        v
    }
}

/// A fake segment: a set of functions, all-ones for anything else.
#[derive(Clone, Debug, Default)]
pub struct FakeBus {
    pub functions: Vec<FakeFunction>,
}

impl FakeBus {
    pub fn new(functions: Vec<FakeFunction>) -> Self {
        FakeBus { functions }
    }
    pub fn get(&self, bdf: Bdf) -> &FakeFunction {
        self.functions
            .iter()
            .find(|f| f.bdf == bdf)
            .expect("no such fake function")
    }
    pub fn get_mut(&mut self, bdf: Bdf) -> &mut FakeFunction {
        self.functions
            .iter_mut()
            .find(|f| f.bdf == bdf)
            .expect("no such fake function")
    }
    /// All writes that reached any function.
    pub fn write_count(&self) -> usize {
        self.functions.iter().map(|f| f.writes.len()).sum()
    }
}

impl ConfigSpace for FakeBus {
    fn read(&mut self, bdf: Bdf, off: u16, w: Width) -> u32 {
        assert!(
            off.is_multiple_of(w.bytes()) && off + w.bytes() <= CFG_SIZE,
            "bad access {off:#x}"
        );
        match self.functions.iter_mut().find(|f| f.bdf == bdf) {
            Some(f) => f.read_cfg(off, w),
            None => w.ones(),
        }
    }
    fn write(&mut self, bdf: Bdf, off: u16, w: Width, v: u32) {
        assert!(
            off.is_multiple_of(w.bytes()) && off + w.bytes() <= CFG_SIZE,
            "bad access {off:#x}"
        );
        let mut pulse = None;
        if let Some(f) = self.functions.iter_mut().find(|f| f.bdf == bdf) {
            let before = f.bus_reset_pulses;
            f.write_cfg(off, w, v);
            if f.bus_reset_pulses != before {
                pulse = Some((
                    f.cfg[SECONDARY_BUS as usize],
                    f.cfg[SUBORDINATE_BUS as usize],
                ));
            }
        }
        if let Some((sec, sub)) = pulse {
            for f in self
                .functions
                .iter_mut()
                .filter(|f| (sec..=sub).contains(&f.bdf.bus))
            {
                f.bus_resets += 1;
                f.function_reset();
            }
        }
    }
}

/// QEMU 7.2 devices: e1000e, nvme, edu and pcie-pci-bridge are their real config
/// bytes (testdata/, dumped from a q35 guest's sysfs) with BAR sizes as data; the
/// others are built; and hostile ones.
pub mod qemu {
    use super::*;

    pub fn host_bridge(bdf: Bdf) -> FakeFunction {
        FakeFunction::endpoint(bdf, 0x8086, 0x29c0, 0x060000)
    }

    fn dump(name: &str) -> &'static [u8] {
        match name {
            "e1000e" => include_bytes!("../testdata/qemu72-q35-0000_00_02.0.cfg"),
            "nvme" => include_bytes!("../testdata/qemu72-q35-0000_00_03.0.cfg"),
            "edu" => include_bytes!("../testdata/qemu72-q35-0000_00_04.0.cfg"),
            _ => include_bytes!("../testdata/qemu72-q35-0000_01_00.0.cfg"),
        }
    }

    /// e1000e (QEMU's config bytes): MMIO 128 KiB, flash 128 KiB, I/O 32, MSI-X BAR
    /// 16 KiB (5 vectors, table at 0, PBA at 0x2000), PM, MSI, PCIe without FLR, ROM 256 KiB.
    pub fn e1000e(bdf: Bdf) -> FakeFunction {
        let m = |size| FakeBar::Mem32 {
            size,
            prefetch: false,
        };
        let bars = [
            (0, m(128 << 10)),
            (1, m(128 << 10)),
            (2, FakeBar::Io { size: 32 }),
            (3, m(16 << 10)),
        ];
        FakeFunction::from_config(bdf, dump("e1000e"), &bars, 256 << 10)
    }

    /// nvme (QEMU's config bytes): one 64-bit 16 KiB BAR holding the MSI-X table
    /// (0x2000) and PBA (0x3000), 65 vectors, PCIe with FLR, PM with No_Soft_Reset.
    pub fn nvme(bdf: Bdf) -> FakeFunction {
        let bars = [(
            0,
            FakeBar::Mem64 {
                size: 16 << 10,
                prefetch: false,
            },
        )];
        FakeFunction::from_config(bdf, dump("nvme"), &bars, 0)
    }

    /// edu (QEMU's config bytes): conventional PCI, 1 MiB MMIO BAR, 64-bit MSI, no reset.
    pub fn edu(bdf: Bdf) -> FakeFunction {
        let bars = [(
            0,
            FakeBar::Mem32 {
                size: 1 << 20,
                prefetch: false,
            },
        )];
        FakeFunction::from_config(bdf, dump("edu"), &bars, 0)
    }

    /// pcie-pci-bridge (QEMU's config bytes: PCIe-to-PCI, type 7, 64-bit 256-byte BAR,
    /// PM, MSI), forwarding bus `sec`.
    pub fn pcie_pci_bridge(bdf: Bdf, sec: u8) -> FakeFunction {
        let bars = [(
            0,
            FakeBar::Mem64 {
                size: 256,
                prefetch: false,
            },
        )];
        let mut f = FakeFunction::from_config(bdf, dump("bridge"), &bars, 0);
        f.cfg[PRIMARY_BUS as usize] = bdf.bus;
        f.cfg[SECONDARY_BUS as usize] = sec;
        f.cfg[SUBORDINATE_BUS as usize] = sec;
        f
    }

    /// A PCIe root port (type 4) with ACS enabled.
    pub fn root_port(bdf: Bdf, sec: u8, sub: u8) -> FakeFunction {
        FakeFunction::bridge(bdf, 0x1b36, 0x000c, sec, sub)
            .pcie(EXP_TYPE_ROOT_PORT, false)
            .acs(true)
    }

    /// A two-function device (ICH9-style LPC + SATA): function 0 says multi-function,
    /// no ACS.
    pub fn multifunction_no_acs(bus: u8, dev: u8) -> [FakeFunction; 2] {
        [
            FakeFunction::endpoint(Bdf::new(bus, dev, 0), 0x8086, 0x2918, 0x060100)
                .multifunction()
                .pcie(9, false),
            FakeFunction::endpoint(Bdf::new(bus, dev, 1), 0x8086, 0x2922, 0x010601)
                .bar(
                    5,
                    FakeBar::Mem32 {
                        size: 4096,
                        prefetch: false,
                    },
                )
                .pcie(9, false),
        ]
    }

    /// A device whose capability list loops (0x40 -> 0x48 -> 0x40).
    pub fn cap_loop(bdf: Bdf) -> FakeFunction {
        let mut f = FakeFunction::endpoint(bdf, 0x1af4, 0xdead, 0xff0000)
            .pm(false)
            .msi(false, false, 1);
        f.cfg[0x48 + 1] = 0x40;
        f
    }

    /// A device whose capability pointer leaves the capability area (0x3c, in the header).
    pub fn cap_out_of_range(bdf: Bdf) -> FakeFunction {
        let mut f = FakeFunction::endpoint(bdf, 0x1af4, 0xbeef, 0xff0000).pm(false);
        f.cfg[0x40 + 1] = 0x3c;
        f
    }

    /// A PCIe device whose extended capability list loops back to 0x100.
    pub fn ext_cap_loop(bdf: Bdf) -> FakeFunction {
        let mut f = FakeFunction::endpoint(bdf, 0x1af4, 0xcafe, 0xff0000)
            .pcie(0, false)
            .acs(false);
        let h = f.get32(0x100);
        f.put32(0x100, (h & 0xfffff) | 0x100 << 20);
        f
    }
}
