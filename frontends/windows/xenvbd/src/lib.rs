//! xenvbd.sys: Sluice's Storport virtual miniport for a Xen virtual block device (one
//! adapter per `SLUICEXEN\VBD` child of xenbus.sys, one disk at target 0 LUN 0).
//!
//! DriverEntry registers the miniport (`StorPortInitialize`, Windows 8+ virtual
//! miniport); HwStartIo hands each SRB to `sluice_xenvbd_core::srb::reply`, which
//! answers it (INQUIRY, READ CAPACITY, MODE SENSE, sense data for refusals) or names
//! the block I/O to send. The block I/O path (blkfront-core over xenbus' interface) is
//! not connected yet: without a connected backend the adapter reports no disk (every
//! SRB to the LUN completes with SRB_STATUS_NO_DEVICE), which is what Storport's bus
//! scan sees. See frontends/windows/README.md.
//!
//! Device logic only: every `unsafe` is in `sluice-wdm`; the decisions are
//! `sluice-xenvbd-core`'s, host-tested.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use sluice_blkfront_core::DiskInfo;
use sluice_wdm::storport::{Limits, Miniport, Srb};
use sluice_wdm::{log, NtStatus};
use sluice_xenvbd_core::srb::{reply, Completion, Reply};

/// Largest transfer reported to Storport: 32 pages (128 KiB), the SG elements of one
/// SRB bounded accordingly.
const MAX_TRANSFER: u32 = 128 * 1024;

/// One adapter: the disk once its backend is connected.
#[derive(Default)]
struct Adapter {
    disk: Option<DiskInfo>,
}

fn finish(srb: Srb, c: &Completion) {
    srb.complete(
        c.srb_status,
        c.scsi_status,
        &c.data,
        c.sense.as_ref().map(|s| &s[..]),
    );
}

impl Miniport for Adapter {
    fn find_adapter(&mut self) -> Option<Limits> {
        log!("xenvbd: adapter found (no backend connection yet: no disk reported)");
        Some(Limits {
            max_transfer: MAX_TRANSFER,
            // An unaligned buffer of MAX_TRANSFER bytes spans one page more.
            max_breaks: MAX_TRANSFER / 4096 + 1,
        })
    }

    fn start_io(&mut self, srb: Srb) {
        let r = reply(
            srb.function,
            srb.address,
            srb.cdb(),
            srb.data_len(),
            self.disk.as_ref(),
        );
        match r {
            Reply::Complete(c) => finish(srb, &c),
            // Only reachable with a connected disk, which needs the block I/O path:
            // until it exists, the request is answered as a unit that is not ready.
            Reply::Io { .. } | Reply::Unmap { .. } => finish(
                srb,
                &Completion::check(sluice_xenvbd_core::Sense::NOT_READY),
            ),
        }
    }
}

fn new_adapter() -> Box<dyn Miniport> {
    Box::new(Adapter::default())
}

fn init(driver: sluice_wdm::Driver) -> NtStatus {
    log!("xenvbd: Sluice xenvbd {} loaded", env!("CARGO_PKG_VERSION"));
    let s = sluice_wdm::storport::initialize(&driver, new_adapter);
    if s != sluice_wdm::STATUS_SUCCESS {
        log!("xenvbd: StorPortInitialize: {:#x}", s);
    }
    s
}

sluice_wdm::driver_entry!(init);
