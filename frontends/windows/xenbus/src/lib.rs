//! xenbus.sys (placeholder entry while the toolchain is brought up).
#![no_std]
#![deny(unsafe_code)]

fn init(_d: sluice_wdm::Driver) -> sluice_wdm::NtStatus {
    sluice_wdm::log!("xenbus: loaded");
    sluice_wdm::STATUS_SUCCESS
}

sluice_wdm::driver_entry!(init);
