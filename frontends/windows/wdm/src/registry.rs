//! REG_DWORD access to the registry by absolute kernel path (`\Registry\Machine\...`),
//! for the unplug records (`sluice_xenbus_core::unplug_request`). PASSIVE_LEVEL only
//! (the `Zw*Key` calls' rule); kernel handles, closed on every path.

use crate::sys;
use alloc::vec::Vec;
use core::ffi::c_void;

const OBJ_CASE_INSENSITIVE: u32 = 0x40;
const OBJ_KERNEL_HANDLE: u32 = 0x200;
const KEY_QUERY_VALUE: u32 = 0x1;
const KEY_SET_VALUE: u32 = 0x2;
const REG_OPTION_NON_VOLATILE: u32 = 0;
const REG_OPTION_VOLATILE: u32 = 1;
const REG_DWORD: u32 = 4;

/// The registry, through `ZwOpenKey`/`ZwCreateKey`/`ZwQueryValueKey`/`ZwSetValueKey`.
pub struct Registry;

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// A counted string over `buf` (which must outlive its use); `None` if too long.
fn counted(buf: &mut [u16]) -> Option<sys::UNICODE_STRING> {
    let bytes = u16::try_from(buf.len() * 2).ok()?;
    Some(sys::UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: buf.as_mut_ptr(),
    })
}

/// How [`open`] opens a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Existing,
    Create,
    /// Created volatile (kept in memory only: gone at the next boot).
    CreateVolatile,
}

/// Opens (or creates) `path` with `access`; the handle or `None`.
fn open(path: &str, access: u32, how: Open) -> Option<sys::HANDLE> {
    let mut name = utf16(path);
    let mut us = counted(&mut name)?;
    // SAFETY: plain data, every field set below.
    let mut oa: sys::OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    oa.Length = core::mem::size_of::<sys::OBJECT_ATTRIBUTES>() as u32;
    oa.ObjectName = &mut us;
    oa.Attributes = OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE;
    let mut h: sys::HANDLE = core::ptr::null_mut();
    // SAFETY: `oa` and the name it points to live across the call; PASSIVE_LEVEL is
    // the caller's rule; a kernel handle is returned in `h` on success only.
    let st = unsafe {
        match how {
            Open::Existing => sys::ZwOpenKey(&mut h, access, &mut oa),
            Open::Create | Open::CreateVolatile => sys::ZwCreateKey(
                &mut h,
                access,
                &mut oa,
                0,
                core::ptr::null_mut(),
                if how == Open::Create {
                    REG_OPTION_NON_VOLATILE
                } else {
                    REG_OPTION_VOLATILE
                },
                core::ptr::null_mut(),
            ),
        }
    };
    (st >= 0).then_some(h)
}

fn close(h: sys::HANDLE) {
    // SAFETY: a handle `open` returned, closed once.
    unsafe { sys::ZwClose(h) };
}

impl sluice_xenbus_core::unplug_request::Registry for Registry {
    fn read_dword(&mut self, key: &str, value: &str) -> Option<u32> {
        let h = open(key, KEY_QUERY_VALUE, Open::Existing)?;
        let mut vname = utf16(value);
        let r = counted(&mut vname).and_then(|mut vn| {
            // KEY_VALUE_PARTIAL_INFORMATION: TitleIndex, Type, DataLength, Data.
            let mut buf = [0u32; 8];
            let mut got = 0u32;
            // SAFETY: `buf` is 32 writable bytes, its size given; the kernel writes at
            // most that and the length used into `got`.
            let st = unsafe {
                sys::ZwQueryValueKey(
                    h,
                    &mut vn,
                    sys::KeyValuePartialInformation,
                    buf.as_mut_ptr() as *mut c_void,
                    core::mem::size_of_val(&buf) as u32,
                    &mut got,
                )
            };
            (st >= 0 && buf[1] == REG_DWORD && buf[2] == 4).then_some(buf[3])
        });
        close(h);
        r
    }

    fn write_dword(&mut self, key: &str, value: &str, data: u32) -> bool {
        write(key, value, data, Open::Create)
    }

    fn write_volatile_dword(&mut self, key: &str, value: &str, data: u32) -> bool {
        write(key, value, data, Open::CreateVolatile)
    }
}

fn write(key: &str, value: &str, data: u32, how: Open) -> bool {
    let Some(h) = open(key, KEY_SET_VALUE, how) else {
        return false;
    };
    let mut vname = utf16(value);
    let ok = counted(&mut vname).is_some_and(|mut vn| {
        let mut d = data;
        // SAFETY: 4 readable bytes of `d` for a REG_DWORD; the name lives across.
        let st = unsafe {
            sys::ZwSetValueKey(
                h,
                &mut vn,
                0,
                REG_DWORD,
                &mut d as *mut u32 as *mut c_void,
                4,
            )
        };
        st >= 0
    });
    close(h);
    ok
}
