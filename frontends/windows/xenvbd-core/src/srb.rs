//! What the miniport answers an SRB with: the SRB function and address are checked,
//! the CDB goes through [`translate`], and the outcome becomes Storport's completion
//! fields (SRB status, SCSI status, bytes moved, autosense) or a block I/O to send.
//! The Windows glue (`xenvbd.sys`, HwStartIo) copies these fields in and out of the
//! SRB once; every decision is here, host-tested.

use crate::{translate, Action, Sense};
use alloc::vec::Vec;
use sluice_blkfront_core::{DiskInfo, IoOp};

/// `SRB_FUNCTION_*` (srb.h) the miniport handles.
pub mod function {
    /// A CDB.
    pub const EXECUTE_SCSI: u8 = 0x00;
    /// An IOCTL through the port (none supported).
    pub const IO_CONTROL: u8 = 0x02;
    /// Shutdown: empty the write cache.
    pub const SHUTDOWN: u8 = 0x07;
    /// Flush the write cache.
    pub const FLUSH: u8 = 0x08;
    /// Resets.
    pub const RESET_BUS: u8 = 0x12;
    /// Reset one target.
    pub const RESET_DEVICE: u8 = 0x13;
    /// Reset one LU.
    pub const RESET_LOGICAL_UNIT: u8 = 0x20;
    /// Power notification.
    pub const POWER: u8 = 0x24;
    /// PnP notification.
    pub const PNP: u8 = 0x25;
}

/// `SRB_STATUS_*` (srb.h).
pub mod status {
    /// Done.
    pub const SUCCESS: u8 = 0x01;
    /// Failed; with [`AUTOSENSE_VALID`] the sense buffer says why.
    pub const ERROR: u8 = 0x04;
    /// Try again later (ring full, reconnecting).
    pub const BUSY: u8 = 0x05;
    /// Not a request this miniport serves.
    pub const INVALID_REQUEST: u8 = 0x06;
    /// No device at this address.
    pub const NO_DEVICE: u8 = 0x08;
    /// Completed by a bus reset (Storport retries it).
    pub const BUS_RESET: u8 = 0x0e;
    /// Less data than the buffer (underrun; DataTransferLength says how much).
    pub const DATA_OVERRUN: u8 = 0x12;
    /// No such LUN.
    pub const INVALID_LUN: u8 = 0x20;
    /// The sense buffer is filled.
    pub const AUTOSENSE_VALID: u8 = 0x80;
}

/// `SCSISTAT_CHECK_CONDITION` (scsi.h).
pub const SCSISTAT_CHECK_CONDITION: u8 = 0x02;

/// The completion fields of an SRB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// SrbStatus.
    pub srb_status: u8,
    /// ScsiStatus.
    pub scsi_status: u8,
    /// Bytes to copy into the data buffer (a read-direction answer); its length is
    /// the new DataTransferLength.
    pub data: Vec<u8>,
    /// Fixed-format sense data for the sense buffer (cut to its length).
    pub sense: Option<[u8; 18]>,
}

impl Completion {
    fn status(srb_status: u8) -> Self {
        Completion {
            srb_status,
            scsi_status: 0,
            data: Vec::new(),
            sense: None,
        }
    }

    /// CHECK CONDITION with `sense`.
    pub fn check(sense: Sense) -> Self {
        Completion {
            srb_status: status::ERROR | status::AUTOSENSE_VALID,
            scsi_status: SCSISTAT_CHECK_CONDITION,
            data: Vec::new(),
            sense: Some(sense.bytes()),
        }
    }

    /// The outcome of a block I/O from the backend: GOOD with `bytes` moved, or a
    /// MEDIUM ERROR (blkif has no finer status than error / not supported).
    pub fn io_done(ok: bool) -> Self {
        if ok {
            Completion::status(status::SUCCESS)
        } else {
            Completion::check(Sense::MEDIUM_ERROR)
        }
    }
}

/// What to do with an SRB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Complete it now with these fields.
    Complete(Completion),
    /// Send a block I/O over the data buffer (whose length is `bytes`), complete on
    /// its response ([`Completion::io_done`]).
    Io {
        /// Read, write or flush.
        op: IoOp,
        /// First 512-byte sector.
        sector: u64,
        /// Bytes (the SRB's DataTransferLength).
        bytes: u64,
    },
    /// UNMAP: read `param_len` bytes of parameter list from the data buffer, then
    /// [`crate::unmap_ranges`] and one discard per range.
    Unmap {
        /// Parameter list length (at most the data buffer's).
        param_len: usize,
    },
}

/// The one disk an adapter serves is at path 0, target 0, LUN 0.
fn address(path: u8, target: u8, lun: u8) -> Result<(), Completion> {
    if path != 0 || target != 0 {
        return Err(Completion::status(status::NO_DEVICE));
    }
    if lun != 0 {
        return Err(Completion::status(status::INVALID_LUN));
    }
    Ok(())
}

fn flush(disk: &DiskInfo) -> Reply {
    if disk.flush.is_some() {
        Reply::Io {
            op: IoOp::Flush,
            sector: 0,
            bytes: 0,
        }
    } else {
        Reply::Complete(Completion::status(status::SUCCESS))
    }
}

/// The reply to an SRB (`function`, its address, its CDB and data buffer length) for
/// the adapter's disk, `None` while no backend is connected (the disk is then absent,
/// as an empty slot: Storport's bus scan finds nothing until the disk connects).
pub fn reply(
    function: u8,
    (path, target, lun): (u8, u8, u8),
    cdb: &[u8],
    data_len: usize,
    disk: Option<&DiskInfo>,
) -> Reply {
    match function {
        function::EXECUTE_SCSI => {}
        function::FLUSH | function::SHUTDOWN => {
            return match (address(path, target, lun), disk) {
                (Ok(()), Some(d)) => flush(d),
                (Err(c), _) => Reply::Complete(c),
                (Ok(()), None) => Reply::Complete(Completion::status(status::NO_DEVICE)),
            };
        }
        function::RESET_BUS
        | function::RESET_DEVICE
        | function::RESET_LOGICAL_UNIT
        | function::POWER
        | function::PNP => return Reply::Complete(Completion::status(status::SUCCESS)),
        _ => return Reply::Complete(Completion::status(status::INVALID_REQUEST)),
    }
    if let Err(c) = address(path, target, lun) {
        return Reply::Complete(c);
    }
    let Some(d) = disk else {
        return Reply::Complete(Completion::status(status::NO_DEVICE));
    };
    match translate(cdb, d) {
        Err(s) => Reply::Complete(Completion::check(s)),
        Ok(Action::Good) => Reply::Complete(Completion::status(status::SUCCESS)),
        Ok(Action::Data(mut v)) => {
            // An answer longer than the buffer is cut (the allocation length rules);
            // a shorter one is an underrun, which Windows reports as DATA_OVERRUN
            // with the length moved.
            v.truncate(data_len);
            let srb_status = if v.len() == data_len {
                status::SUCCESS
            } else {
                status::DATA_OVERRUN
            };
            Reply::Complete(Completion {
                srb_status,
                scsi_status: 0,
                data: v,
                sense: None,
            })
        }
        Ok(Action::Io { op, sector, bytes }) => {
            if op != IoOp::Flush && bytes != data_len as u64 {
                // The transfer length of the CDB and the buffer disagree.
                Reply::Complete(Completion::check(Sense::INVALID_FIELD))
            } else {
                Reply::Io { op, sector, bytes }
            }
        }
        Ok(Action::Unmap { param_len }) => {
            if param_len > data_len {
                Reply::Complete(Completion::check(Sense::INVALID_FIELD))
            } else {
                Reply::Unmap { param_len }
            }
        }
    }
}
