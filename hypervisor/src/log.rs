//! The hypervisor log on COM1.

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use core::fmt::Write;
        let _ = writeln!($crate::arch::serial::Serial, $($arg)*);
    }};
}
