//! The guest's local APIC, emulated in x2APIC mode (MSRs 0x800-0x8FF, so no MMIO
//! instruction decoding): each vCPU's APIC is presented enabled in x2APIC mode from its
//! start (IA32_APIC_BASE EN|EXTD, as firmware may leave it; Linux then takes
//! "x2apic: enabled by BIOS"). APIC ids are 2 x the vCPU id, as Xen's. Registers follow
//! the SDM's x2APIC table: reserved or read-only ones are #GP on write, write-only ones
//! (EOI, SELF IPI) #GP on read, as the hardware and Xen's vlapic.
//!
//! Kept per vCPU: TPR, SVR, the LVTs, ESR, the timer's registers (no LAPIC timer runs:
//! a PVH guest takes Xen's PV timer), the in-service vectors of fixed IPIs. ICR writes
//! (INIT, STARTUP, fixed IPIs) and the requested vectors are crate::vsmp's.

use crate::domain::Domain;

pub const MSR_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ADDR: u64 = 0xFEE0_0000;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;
/// Version 0x14 with 6 LVT entries (max LVT 5), as Xen's vlapic.
const VERSION: u64 = 0x0005_0014;

/// One vCPU's APIC registers.
#[derive(Debug, Clone, Copy)]
pub struct VLapic {
    pub tpr: u8,
    pub svr: u32,
    /// LVT CMCI, timer, thermal, PMC, LINT0, LINT1, error (masked at reset).
    pub lvt: [u32; 7],
    pub esr: u32,
    pub tmict: u32,
    pub tdcr: u32,
    /// In-service vectors (256 bits).
    pub isr: [u64; 4],
}

impl Default for VLapic {
    fn default() -> Self {
        VLapic {
            tpr: 0,
            svr: 0xFF,
            lvt: [1 << 16; 7],
            esr: 0,
            tmict: 0,
            tdcr: 0,
            isr: [0; 4],
        }
    }
}

impl VLapic {
    /// Ends the highest in-service vector (EOI).
    pub fn eoi(&mut self) {
        for w in (0..4).rev() {
            if self.isr[w] != 0 {
                let b = 63 - self.isr[w].leading_zeros();
                self.isr[w] &= !(1 << b);
                return;
            }
        }
    }
}

/// The APIC id of vCPU `k`.
pub fn apic_id(k: usize) -> u32 {
    2 * k as u32
}

fn lvt_index(reg: u32) -> Option<usize> {
    match reg {
        0x2F => Some(0),
        0x32..=0x37 => Some(reg as usize - 0x32 + 1),
        _ => None,
    }
}

/// An APIC MSR access by the current vCPU: `None` when `index` is not one (the caller
/// goes on), `Some(Ok(v))` with the value read (0 for a write), `Some(Err(()))` for #GP.
pub fn msr(d: &mut Domain, index: u32, write: bool, value: u64) -> Option<Result<u64, ()>> {
    let k = d.cur;
    if index == MSR_APIC_BASE {
        let bsp = if k == 0 { APIC_BASE_BSP } else { 0 };
        let base = APIC_BASE_ADDR | APIC_BASE_EN | APIC_BASE_EXTD | bsp;
        // Leaving x2APIC mode or moving the APIC is refused (#GP), the BSP bit ignored.
        return Some(match write {
            false => Ok(base),
            true if value & !APIC_BASE_BSP == base & !APIC_BASE_BSP => Ok(0),
            true => Err(()),
        });
    }
    if !(0x800..=0x8FF).contains(&index) {
        return None;
    }
    let reg = index - 0x800;
    let id = apic_id(k);
    let l = &mut d.vcpus[k].lapic;
    let r = match (reg, write) {
        (0x02, false) => Ok(id as u64),
        (0x03, false) => Ok(VERSION),
        (0x08, false) => Ok(l.tpr as u64),
        (0x08, true) if value >> 8 == 0 => {
            l.tpr = value as u8;
            Ok(0)
        }
        (0x0A, false) => Ok(l.tpr as u64),
        (0x0B, true) if value == 0 => {
            l.eoi();
            Ok(0)
        }
        (0x0D, false) => Ok((((id >> 4) << 16) | (1 << (id & 0xF))) as u64),
        (0x0F, false) => Ok(l.svr as u64),
        (0x0F, true) if value >> 13 == 0 => {
            l.svr = value as u32;
            Ok(0)
        }
        (0x10..=0x17, false) => {
            Ok((l.isr[(reg as usize - 0x10) / 2] >> (32 * (reg & 1))) & 0xFFFF_FFFF)
        }
        (0x18..=0x1F, false) => Ok(0),
        (0x20..=0x27, false) => {
            let irr = d.smp.ev[k].irr[(reg as usize - 0x20) / 2];
            Ok((irr >> (32 * (reg & 1))) & 0xFFFF_FFFF)
        }
        (0x28, false) => Ok(l.esr as u64),
        (0x28, true) if value == 0 => {
            l.esr = 0;
            Ok(0)
        }
        (0x38, false) => Ok(l.tmict as u64),
        (0x38, true) if value >> 32 == 0 => {
            l.tmict = value as u32;
            Ok(0)
        }
        (0x39, false) => Ok(0),
        (0x3E, false) => Ok(l.tdcr as u64),
        (0x3E, true) if value >> 32 == 0 => {
            l.tdcr = value as u32 & 0xB;
            Ok(0)
        }
        (0x30, false) => Ok(0),
        (0x30, true) => {
            crate::vsmp::icr_write(d, value);
            Ok(0)
        }
        // SELF IPI: a fixed IPI to itself.
        (0x3F, true) if value >> 8 == 0 => {
            crate::vsmp::icr_write(d, value | 1 << 18);
            Ok(0)
        }
        _ => match lvt_index(reg) {
            Some(i) if !write => Ok(l.lvt[i] as u64),
            Some(i) if value >> 32 == 0 => {
                l.lvt[i] = value as u32;
                Ok(0)
            }
            _ => Err(()),
        },
    };
    Some(r)
}
