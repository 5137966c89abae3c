//! The one unsafe layer of Sluice's Linux kernel modules.
//!
//! Linked into a module built by Kbuild next to a C shim (`frontends/linux/kbuild`):
//! this crate holds the bindgen bindings to the kernel APIs Sluice uses ([`bindings`]),
//! the Xen frontend seams over Linux's Xen APIs ([`xen`]: xenbus device, pages,
//! grants, event channels, xenstore), xenbus, blk-mq and network drivers without `unsafe` in the
//! module ([`xenbus`], [`blk`], [`net`], tty lines [`tty`]: the macros generate the `extern "C"` entry points), a
//! kernel mutex and BH spinlock ([`sync`]), logging through `printk` ([`pr_info!`] and friends), the
//! global allocator over `krealloc`/`kfree`, and the panic handler. Module crates are
//! `#![deny(unsafe_code)]`: every `unsafe` of a module is here.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod blk;
pub mod net;
pub mod sync;
pub mod tty;
pub mod xen;
pub mod xenbus;

/// Generates a module's `init` / `exit` entry points (called by its C shim) from safe
/// functions: `module_hooks!(sluice_hello_init => init, sluice_hello_exit => exit);`.
#[macro_export]
macro_rules! module_hooks {
    ($init_sym:ident => $init:path, $exit_sym:ident => $exit:path) => {
        /// Module init (C shim).
        #[no_mangle]
        pub extern "C" fn $init_sym() -> core::ffi::c_int {
            $init()
        }
        /// Module exit (C shim).
        #[no_mangle]
        pub extern "C" fn $exit_sym() {
            $exit()
        }
    };
}

use core::alloc::{GlobalAlloc, Layout};
use core::fmt::{self, Write};

/// bindgen's output for `wrapper.h`, allowlisted in `build.rs`.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all
)]
pub mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

/// printk log levels (`KERN_*`: SOH followed by the level digit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `KERN_ERR`.
    Err,
    /// `KERN_WARNING`.
    Warning,
    /// `KERN_INFO`.
    Info,
}

impl Level {
    fn digit(self) -> u8 {
        match self {
            Level::Err => b'3',
            Level::Warning => b'4',
            Level::Info => b'6',
        }
    }
}

/// A line being formatted on the stack before it goes to printk in one call (one
/// printk per line keeps lines from different CPUs apart). Longer lines are cut.
struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Logs one line at `level`; use the `pr_*` macros.
pub fn print(level: Level, args: fmt::Arguments<'_>) {
    let mut line = LineBuf {
        buf: [0; 256],
        len: 0,
    };
    let _ = line.write_fmt(args);
    // "\x01<level>%.*s\n": SOH + level selects the log level, as KERN_INFO does.
    let fmt: [u8; 9] = [1, level.digit(), b'%', b'.', b'*', b's', b'\n', 0, 0];
    // SAFETY: `fmt` is a NUL-terminated format taking an int length and a char pointer;
    // `line.buf[..line.len]` is initialised and outlives the call; printk copies it.
    unsafe {
        bindings::_printk(
            fmt.as_ptr().cast(),
            line.len as core::ffi::c_int,
            line.buf.as_ptr(),
        );
    }
}

/// `pr_info`: `pr_info!("sluice: {} queues", n)`.
#[macro_export]
macro_rules! pr_info {
    ($($arg:tt)*) => { $crate::print($crate::Level::Info, format_args!($($arg)*)) };
}

/// `pr_warn`.
#[macro_export]
macro_rules! pr_warn {
    ($($arg:tt)*) => { $crate::print($crate::Level::Warning, format_args!($($arg)*)) };
}

/// `pr_err`.
#[macro_export]
macro_rules! pr_err {
    ($($arg:tt)*) => { $crate::print($crate::Level::Err, format_args!($($arg)*)) };
}

/// kmalloc's guaranteed alignment for any size (`ARCH_KMALLOC_MINALIGN` on x86-64).
const KMALLOC_MIN_ALIGN: usize = 8;

/// The kernel heap as Rust's global allocator. kmalloc aligns power-of-two sizes
/// naturally, so a layout with a larger alignment is served by rounding its size up to
/// a power of two at least as large as the alignment.
struct KernelAllocator;

fn kmalloc_size(layout: Layout) -> usize {
    if layout.align() <= KMALLOC_MIN_ALIGN {
        layout.size()
    } else {
        layout.size().max(layout.align()).next_power_of_two()
    }
}

// SAFETY: krealloc/kfree return and take kmalloc memory of at least the asked size, with
// the alignment `kmalloc_size` guarantees. The flags follow the context
// (`sluice_gfp_for_context`): GFP_NOIO where the task may sleep (module init/exit, xenbus
// callbacks, work items, blk-mq queues marked BLOCKING; never recursing into block I/O
// from a block driver's own I/O path), GFP_ATOMIC in softirq (a net driver's NAPI poll
// and transmit) or under a spinlock.
unsafe impl GlobalAlloc for KernelAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: krealloc(NULL, n, flags) is kmalloc(n, flags).
        unsafe {
            bindings::krealloc(
                core::ptr::null(),
                kmalloc_size(layout),
                bindings::sluice_gfp_for_context(),
            )
            .cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above (the GlobalAlloc contract).
        unsafe { bindings::kfree(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(l) => l,
            Err(_) => return core::ptr::null_mut(),
        };
        // SAFETY: `ptr` came from this allocator; krealloc keeps the contents and, for
        // the rounded size, the alignment.
        unsafe {
            bindings::krealloc(
                ptr.cast(),
                kmalloc_size(new_layout),
                bindings::sluice_gfp_for_context(),
            )
            .cast()
        }
    }
}

#[global_allocator]
static ALLOCATOR: KernelAllocator = KernelAllocator;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    pr_err!("sluice: Rust panic: {}", info);
    // SAFETY: BUG() takes no arguments; it oopses the current task and does not return.
    unsafe { bindings::sluice_bug() };
    #[allow(clippy::empty_loop)]
    loop {}
}
