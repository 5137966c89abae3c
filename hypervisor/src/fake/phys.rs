//! Fake physical memory: zero-filled 4 KiB pages made on first touch, per thread. The
//! bounds are those of `arch::phys` (the identity map of the low 4 GiB). A test can make
//! the next compare-exchanges of an address fail as if another CPU changed it.

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

const MAPPED_END: u64 = 4 << 30;

std::thread_local! {
    static MEM: RefCell<HashMap<u64, Box<[u8; 4096]>>> = RefCell::new(HashMap::new());
    /// (address, how many more compare-exchanges there fail, bits another CPU flips).
    static INTERFERE: Cell<(u64, u32, u32)> = const { Cell::new((0, 0, 0)) };
}

fn check(pa: u64, len: usize) {
    assert!(
        pa >= 0x400 && pa.checked_add(len as u64).is_some_and(|e| e <= MAPPED_END),
        "physical access outside the identity map: {pa:#x}+{len:#x}"
    );
}

fn with_bytes(pa: u64, len: usize, mut f: impl FnMut(&mut [u8], usize)) {
    check(pa, len);
    MEM.with(|m| {
        let mut m = m.borrow_mut();
        let mut done = 0;
        while done < len {
            let a = pa + done as u64;
            let n = (4096 - (a % 4096) as usize).min(len - done);
            let page = m.entry(a / 4096).or_insert_with(|| Box::new([0; 4096]));
            let o = (a % 4096) as usize;
            f(&mut page[o..o + n], done);
            done += n;
        }
    })
}

pub fn read(pa: u64, buf: &mut [u8]) {
    with_bytes(pa, buf.len(), |m, at| {
        buf[at..at + m.len()].copy_from_slice(m)
    });
}

pub fn write(pa: u64, buf: &[u8]) {
    with_bytes(pa, buf.len(), |m, at| {
        m.copy_from_slice(&buf[at..at + m.len()])
    });
}

pub fn read_u64(pa: u64) -> u64 {
    assert!(pa.is_multiple_of(8));
    let mut b = [0; 8];
    read(pa, &mut b);
    u64::from_le_bytes(b)
}

pub fn write_u64(pa: u64, v: u64) {
    assert!(pa.is_multiple_of(8));
    write(pa, &v.to_le_bytes());
}

pub fn fetch_or_u64(pa: u64, bits: u64) -> u64 {
    let old = read_u64(pa);
    write_u64(pa, old | bits);
    old
}

pub fn fetch_and_u64(pa: u64, bits: u64) -> u64 {
    let old = read_u64(pa);
    write_u64(pa, old & bits);
    old
}

fn read_u32(pa: u64) -> u32 {
    let mut b = [0; 4];
    read(pa, &mut b);
    u32::from_le_bytes(b)
}

pub fn cmpxchg_u32(pa: u64, current: u32, new: u32) -> Result<u32, u32> {
    assert!(pa.is_multiple_of(4));
    let (at, n, flip) = INTERFERE.get();
    if at == pa && n > 0 {
        // Another CPU changed the word just before us.
        INTERFERE.set((at, n - 1, flip));
        let v = read_u32(pa) ^ flip;
        write(pa, &v.to_le_bytes());
        return Err(v);
    }
    let v = read_u32(pa);
    if v != current {
        return Err(v);
    }
    write(pa, &new.to_le_bytes());
    Ok(v)
}

pub fn zero(pa: u64, len: usize) {
    with_bytes(pa, len, |m, _| m.fill(0));
}

pub fn fill(pa: u64, len: usize, byte: u8) {
    with_bytes(pa, len, |m, _| m.fill(byte));
}

pub fn mapped(pa: u64, len: u64) -> bool {
    pa >= 0x400 && pa.checked_add(len).is_some_and(|e| e <= MAPPED_END)
}

/// Test hook: the next `times` compare-exchanges of the word at `pa` fail, each after
/// flipping `bits` of it (a granter rewriting its grant entry on another CPU).
pub fn interfere(pa: u64, times: u32, bits: u32) {
    INTERFERE.set((pa, times, bits));
}
