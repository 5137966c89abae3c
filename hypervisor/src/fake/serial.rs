//! The fake serial port: the hypervisor log of this thread, for tests to read.

use std::cell::RefCell;
use std::string::String;

std::thread_local! {
    static LOG: RefCell<String> = const { RefCell::new(String::new()) };
}

pub struct Serial;

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        LOG.with(|l| l.borrow_mut().push_str(s));
        Ok(())
    }
}

pub fn lock() -> Serial {
    Serial
}

/// Takes what was logged so far.
pub fn take_log() -> String {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// No input on the fake serial port.
pub fn try_read() -> Option<u8> {
    None
}
