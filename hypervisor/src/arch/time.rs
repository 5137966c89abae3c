//! TSC calibration against the PIT (channel 2, gate through port 0x61).

use x86_64::instructions::port::Port;

/// TSC ticks per second, measured over 10 ms of PIT time.
pub fn calibrate_tsc_hz() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const COUNT: u16 = (PIT_HZ / 100) as u16;
    let mut ctl = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: the PIT and port 0x61 belong to the hypervisor (no guest gets port I/O);
    // channel 2 drives only the PC speaker gate, which stays disabled (bit 1 clear).
    unsafe {
        let c = ctl.read();
        ctl.write((c & !0x02) | 0x01); // gate on, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        ch2.write(COUNT as u8);
        ch2.write((COUNT >> 8) as u8);
        let t0 = core::arch::x86_64::_rdtsc();
        while ctl.read() & 0x20 == 0 {}
        let t1 = core::arch::x86_64::_rdtsc();
        (t1 - t0) * 100
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}
