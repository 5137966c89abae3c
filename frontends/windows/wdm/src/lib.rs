//! The one unsafe layer of Sluice's Windows drivers (the Windows counterpart of
//! `frontends/linux/kernel`): bindgen bindings to the WDM DDK, the pool allocator, the
//! panic handler (a bug check), `DbgPrintEx` logging, port I/O, CPUID/MSR, hypercalls
//! and the WDM plumbing of a PnP bus driver ([`pnp`]). Driver crates are
//! `#![deny(unsafe_code)]` and reach the kernel only through this crate.

#![no_std]
#![allow(clippy::missing_safety_doc)]

extern crate alloc;

mod bushandle;
pub mod busif;
pub mod child;
pub mod hw;
pub mod log;
pub mod ndis;
pub mod ndis_sys;
pub mod pnp;
pub mod registry;
pub mod storport;
pub mod sync;
pub mod xen;

/// Raw DDK bindings (bindgen over mingw-w64's `ntddk.h`, allowlisted in build.rs).
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused,
    unnecessary_transmutes,
    clippy::all
)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

use core::alloc::{GlobalAlloc, Layout};

/// `'Slce'` as the pool tag (little-endian: shows as "Slce" in pool tools).
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"Slce");
/// `NonPagedPoolNx`: non-executable, non-paged pool (Windows 8 and later).
const NON_PAGED_POOL_NX: sys::POOL_TYPE = 512;
/// Pool blocks are 16-byte aligned on x64; blocks of a page or more are page aligned.
const POOL_ALIGN: usize = 16;
const PAGE_SIZE: usize = 4096;

struct PoolAllocator;

// SAFETY: ExAllocatePoolWithTag/ExFreePoolWithTag are callable at IRQL <= DISPATCH_LEVEL
// for non-paged pool, and the layout's alignment is honoured or the allocation refused.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ok = layout.align() <= POOL_ALIGN
            || (layout.align() <= PAGE_SIZE && layout.size() >= PAGE_SIZE);
        if !ok || layout.size() == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: see the impl's comment; a null return is Rust's allocation failure.
        unsafe {
            sys::ExAllocatePoolWithTag(NON_PAGED_POOL_NX, layout.size() as u64, POOL_TAG).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with the same tag.
        unsafe { sys::ExFreePoolWithTag(ptr.cast(), POOL_TAG) }
    }
}

#[global_allocator]
static ALLOCATOR: PoolAllocator = PoolAllocator;

/// The bug-check code of a Rust panic in a Sluice driver (`'SLPN'`); the first
/// parameter is the line of the panic.
pub const BUGCHECK_RUST_PANIC: u32 = u32::from_be_bytes(*b"SLPN");

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::log!("sluice: panic: {}", info);
    let line = info.location().map(|l| l.line()).unwrap_or(0);
    // SAFETY: KeBugCheckEx never returns; it stops the system with our code.
    unsafe { sys::KeBugCheckEx(BUGCHECK_RUST_PANIC, line as u64, 0, 0, 0) };
    #[allow(unreachable_code)]
    loop {}
}

/// MSVC's marker that floating point is used; the kernel saves no FP state for us, so
/// the drivers use none, but `core` references the symbol.
#[used]
#[no_mangle]
pub static _fltused: i32 = 0;

// `__chkstk`: the stack probe the compiler calls (RAX = frame size) before a frame of
// 4 KiB or more (prebuilt `core`'s sort scratch, for one). MSVC's CRT has it; the kernel
// exports none. It touches each page of the new frame from the top down, as MSVC's
// does, so a frame past the end of the (non-growing) kernel stack faults on the guard
// page (a bug check) instead of writing below it; it changes no register but the flags
// (RAX and RCX are restored).
core::arch::global_asm!(
    ".globl __chkstk",
    "__chkstk:",
    "push rcx",
    "push rax",
    // RSP of the caller before its `call`: above our two pushes and the return address.
    "lea rcx, [rsp + 24]",
    "2:",
    "cmp rax, 0x1000",
    "jb 3f",
    "sub rcx, 0x1000",
    "test byte ptr [rcx], 0",
    "sub rax, 0x1000",
    "jmp 2b",
    "3:",
    "sub rcx, rax",
    "test byte ptr [rcx], 0",
    "pop rax",
    "pop rcx",
    "ret",
);

/// The personality routine named by the unwind tables of the prebuilt `core`/`alloc`
/// for x86_64-pc-windows-msvc (built with panic=unwind: MSVC's C++ EH personality). The
/// drivers are panic=abort, so no Rust panic ever unwinds, and the kernel exports no C++
/// runtime. If SEH exception dispatch ever walks a Rust frame, the answer is "no handler
/// here" (`ExceptionContinueSearch`), in both the search and the unwind pass. (Building
/// core/alloc with `-Zbuild-std` and panic=abort removes the reference too, at ~5 min of
/// extra build per cold CI run; see README.)
#[no_mangle]
pub extern "C" fn __CxxFrameHandler3(
    _record: *mut core::ffi::c_void,
    _frame: *mut core::ffi::c_void,
    _context: *mut core::ffi::c_void,
    _dispatcher: *mut core::ffi::c_void,
) -> i32 {
    const EXCEPTION_CONTINUE_SEARCH: i32 = 1;
    EXCEPTION_CONTINUE_SEARCH
}

/// A kernel `NTSTATUS`.
pub type NtStatus = i32;
/// `STATUS_SUCCESS`.
pub const STATUS_SUCCESS: NtStatus = 0;
/// `STATUS_UNSUCCESSFUL`.
pub const STATUS_UNSUCCESSFUL: NtStatus = 0xC000_0001_u32 as i32;
/// `STATUS_NOT_SUPPORTED`.
pub const STATUS_NOT_SUPPORTED: NtStatus = 0xC000_00BB_u32 as i32;
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub const STATUS_INSUFFICIENT_RESOURCES: NtStatus = 0xC000_009A_u32 as i32;
/// `STATUS_DEVICE_CONFIGURATION_ERROR`.
pub const STATUS_DEVICE_CONFIGURATION_ERROR: NtStatus = 0xC000_0182_u32 as i32;
/// `STATUS_NO_SUCH_DEVICE`.
pub const STATUS_NO_SUCH_DEVICE: NtStatus = 0xC000_000E_u32 as i32;

/// `DriverEntry` for a driver crate: `driver_entry!(init)` exports the entry point the
/// linker's `/ENTRY:DriverEntry` names and calls `init(driver)`.
#[macro_export]
macro_rules! driver_entry {
    ($init:path) => {
        #[no_mangle]
        pub extern "system" fn DriverEntry(
            driver: *mut $crate::sys::DRIVER_OBJECT,
            registry_path: *mut $crate::sys::UNICODE_STRING,
        ) -> $crate::NtStatus {
            $init($crate::Driver::from_raw(driver, registry_path))
        }
    };
}

/// The driver object and registry path given to `DriverEntry`.
pub struct Driver(
    pub(crate) *mut sys::DRIVER_OBJECT,
    pub(crate) *mut sys::UNICODE_STRING,
);

impl Driver {
    #[doc(hidden)]
    pub fn from_raw(p: *mut sys::DRIVER_OBJECT, registry: *mut sys::UNICODE_STRING) -> Self {
        Driver(p, registry)
    }
}
