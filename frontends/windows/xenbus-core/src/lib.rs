//! Hardware-independent logic of the Windows xenbus driver.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;
