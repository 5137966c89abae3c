//! System time (ns since boot) from the TSC, and the Xen PV clock parameters that let a
//! guest compute the same time from its own RDTSC.

use crate::arch::{phys, time};

#[derive(Clone, Copy)]
pub struct Clock {
    tsc0: u64,
    pub hz: u64,
    /// ns = ((tsc_delta << shift) * mul) >> 32
    mul: u32,
    shift: i8,
}

impl Clock {
    pub fn calibrate() -> Clock {
        let hz = time::calibrate_tsc_hz().max(1_000_000);
        let mut shift = 0i8;
        while (hz << shift) < 1_000_000_000 {
            shift += 1;
        }
        let mul = ((1_000_000_000u128 << 32) / ((hz as u128) << shift)) as u32;
        Clock {
            tsc0: time::rdtsc(),
            hz,
            mul,
            shift,
        }
    }

    fn scale(&self, delta: u64) -> u64 {
        ((((delta as u128) << self.shift) * self.mul as u128) >> 32) as u64
    }

    pub fn now_ns(&self) -> u64 {
        self.scale(time::rdtsc().wrapping_sub(self.tsc0))
    }

    /// Writes vcpu_info.time (struct vcpu_time_info, at offset 32 of the vcpu_info at
    /// host-physical `vcpu_info`), with the version odd while it changes.
    pub fn publish(&self, vcpu_info: u64) {
        let t = vcpu_info + 32;
        let mut v = [0u8; 4];
        phys::read(t, &mut v);
        let version = u32::from_le_bytes(v).wrapping_add(1) | 1;
        phys::write(t, &version.to_le_bytes());
        let tsc = time::rdtsc();
        let system_time = self.scale(tsc.wrapping_sub(self.tsc0));
        phys::write_u64(t + 8, tsc);
        phys::write_u64(t + 16, system_time);
        phys::write(t + 24, &self.mul.to_le_bytes());
        phys::write(t + 28, &[self.shift as u8, 1]); // flags: TSC stable
        phys::write(t, &version.wrapping_add(1).to_le_bytes());
    }
}
