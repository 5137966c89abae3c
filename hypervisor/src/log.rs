//! The hypervisor log on COM1 (one line at a time: CPUs take the serial lock).

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use core::fmt::Write;
        let _ = writeln!($crate::arch::serial::lock(), $($arg)*);
    }};
}
