//! COM1 (16550 UART at 0x3F8) for the hypervisor's log, and isa-debug-exit.

use core::fmt;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;

pub fn init() {
    let regs: [(u16, u8); 7] = [
        (1, 0x00), // interrupts off
        (3, 0x80), // DLAB
        (0, 0x01), // 115200 baud
        (1, 0x00),
        (3, 0x03), // 8N1
        (2, 0xC7), // FIFO on, cleared
        (4, 0x03), // DTR | RTS
    ];
    for (off, val) in regs {
        // SAFETY: COM1 is the hypervisor's own UART; no guest is given these ports.
        unsafe { Port::<u8>::new(COM1 + off).write(val) };
    }
}

pub fn write_byte(b: u8) {
    let mut lsr = Port::<u8>::new(COM1 + 5);
    let mut thr = Port::<u8>::new(COM1);
    // SAFETY: as in `init`; polling the line status register has no side effects.
    unsafe {
        while lsr.read() & 0x20 == 0 {}
        thr.write(b);
    }
}

/// A byte received on COM1, if one is waiting (polled: the UART's interrupts are off).
pub fn try_read() -> Option<u8> {
    let mut lsr = Port::<u8>::new(COM1 + 5);
    let mut rbr = Port::<u8>::new(COM1);
    // SAFETY: as in `init`; reading RBR only when LSR says data is ready.
    unsafe { (lsr.read() & 1 != 0).then(|| rbr.read()) }
}

pub struct Serial;

static SERIAL: spin::Mutex<Serial> = spin::Mutex::new(Serial);

/// The UART for one log line; CPUs wait for each other's lines to end.
pub fn lock() -> spin::MutexGuard<'static, Serial> {
    SERIAL.lock()
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                write_byte(b'\r');
            }
            write_byte(b);
        }
        Ok(())
    }
}

/// Ends the QEMU run: exit status becomes `(code << 1) | 1`.
pub fn qemu_exit(code: u32) -> ! {
    // SAFETY: isa-debug-exit at 0xf4 ends the machine; on hardware without it the write
    // is ignored and the CPU halts below.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Masks both legacy PICs: the hypervisor polls; no stray IRQ reaches a guest.
pub fn mask_pics() {
    // SAFETY: writing the PIC interrupt-mask registers only masks IRQ lines.
    unsafe {
        Port::<u8>::new(0x21).write(0xFF);
        Port::<u8>::new(0xA1).write(0xFF);
    }
}
