//! The SCSI side of xenvbd, Sluice's Storport virtual miniport: Windows' disk
//! stack sends SCSI CDBs; [`translate`] turns each into a `blkfront-core` block I/O
//! (READ/WRITE 10/16, SYNCHRONIZE CACHE, UNMAP) or answers it from the disk's
//! `DiskInfo` (INQUIRY and its VPD pages, READ CAPACITY 10/16, MODE SENSE 6/10, TEST
//! UNIT READY, REPORT LUNS), and refuses the rest with fixed-format sense data, as a
//! SCSI disk would. [`segments`] checks a request's scatter-gather list into blkfront
//! segments; [`unmap_ranges`] reads an UNMAP parameter list (bounded, range-checked).
//! [`srb`] turns a whole SRB (function, address, CDB, buffer length) into Storport's
//! completion fields or a block I/O: what `xenvbd.sys`'s HwStartIo does with it.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod answers;
pub mod disk;
pub mod srb;

use alloc::vec::Vec;
use sluice_abi::blkif::VdiskInfo;
use sluice_blkfront_core::{DiskInfo, IoOp, IoSegment};

pub use answers::{inquiry, mode_sense, read_capacity10, read_capacity16, report_luns};

/// Bytes per blkif sector.
pub const SECTOR: u64 = 512;
/// UNMAP block descriptors accepted per command (what VPD page B0 advertises).
pub const MAX_UNMAP_DESCRIPTORS: usize = 64;

/// Fixed-format sense data (SPC-4 4.5.3): key, additional sense code and qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// ASC.
    pub asc: u8,
    /// ASCQ.
    pub ascq: u8,
}

impl Sense {
    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: Sense = Sense {
        key: 0x5,
        asc: 0x20,
        ascq: 0,
    };
    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Sense = Sense {
        key: 0x5,
        asc: 0x21,
        ascq: 0,
    };
    /// ILLEGAL REQUEST, INVALID FIELD IN CDB.
    pub const INVALID_FIELD: Sense = Sense {
        key: 0x5,
        asc: 0x24,
        ascq: 0,
    };
    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_PARAMETER: Sense = Sense {
        key: 0x5,
        asc: 0x26,
        ascq: 0,
    };
    /// DATA PROTECT, WRITE PROTECTED.
    pub const WRITE_PROTECTED: Sense = Sense {
        key: 0x7,
        asc: 0x27,
        ascq: 0,
    };
    /// MEDIUM ERROR, UNRECOVERED READ ERROR (a failed backend I/O).
    pub const MEDIUM_ERROR: Sense = Sense {
        key: 0x3,
        asc: 0x11,
        ascq: 0,
    };
    /// NOT READY, LOGICAL UNIT NOT READY (the device failed or is reconnecting).
    pub const NOT_READY: Sense = Sense {
        key: 0x2,
        asc: 0x04,
        ascq: 0,
    };

    /// The 18 bytes of fixed-format sense data.
    pub fn bytes(self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = self.key;
        s[7] = 10;
        s[12] = self.asc;
        s[13] = self.ascq;
        s
    }
}

/// What to do with a CDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a block I/O: `op` from 512-byte `sector`, `bytes` of data (the SRB's buffer
    /// must be exactly that long; [`segments`] checks it).
    Io {
        /// Read, write or flush.
        op: IoOp,
        /// First 512-byte sector.
        sector: u64,
        /// Data bytes.
        bytes: u64,
    },
    /// UNMAP: read the parameter list from the data buffer, then [`unmap_ranges`].
    Unmap {
        /// Parameter list length.
        param_len: usize,
    },
    /// Answer at once with these bytes (cut to the allocation length).
    Data(Vec<u8>),
    /// Answer at once with GOOD status and no data.
    Good,
}

fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// 512-byte sectors per logical block (1 for 512, 8 for 4096), and the disk's size
/// in logical blocks.
fn geometry(d: &DiskInfo) -> (u64, u64) {
    let per = (d.sector_size as u64 / SECTOR).max(1);
    (per, d.sectors / per)
}

fn io(d: &DiskInfo, lba: u64, blocks: u64, write: bool) -> Result<Action, Sense> {
    let (per, total) = geometry(d);
    match lba.checked_add(blocks) {
        Some(end) if end <= total => {}
        _ => return Err(Sense::LBA_OUT_OF_RANGE),
    }
    if write && d.info.contains(VdiskInfo::READONLY) {
        return Err(Sense::WRITE_PROTECTED);
    }
    if blocks == 0 {
        return Ok(Action::Good);
    }
    Ok(Action::Io {
        op: if write { IoOp::Write } else { IoOp::Read },
        sector: lba * per,
        bytes: blocks * per * SECTOR,
    })
}

/// Translates a CDB for a disk `d`. The CDB comes from the disk stack (trusted to be a
/// CDB, not to be valid): its length and fields are checked.
pub fn translate(cdb: &[u8], d: &DiskInfo) -> Result<Action, Sense> {
    let op = *cdb.first().ok_or(Sense::INVALID_OPCODE)?;
    let need = match op >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => return Err(Sense::INVALID_OPCODE),
    };
    if cdb.len() < need {
        return Err(Sense::INVALID_FIELD);
    }
    match op {
        0x00 => Ok(Action::Good), // TEST UNIT READY
        0x12 => inquiry(cdb, d).map(Action::Data),
        0x1a | 0x5a => mode_sense(cdb, d).map(Action::Data),
        0x25 => Ok(Action::Data(read_capacity10(d))),
        0x9e if cdb[1] & 0x1f == 0x10 => {
            Ok(Action::Data(read_capacity16(d, be32(&cdb[10..]) as usize)))
        }
        0xa0 => Ok(Action::Data(report_luns(be32(&cdb[6..]) as usize))),
        0x28 => io(d, be32(&cdb[2..]), be16(&cdb[7..]), false),
        0x2a => io(d, be32(&cdb[2..]), be16(&cdb[7..]), true),
        0x88 => io(d, be64(&cdb[2..]), be32(&cdb[10..]), false),
        0x8a => io(d, be64(&cdb[2..]), be32(&cdb[10..]), true),
        0x35 | 0x91 => {
            // SYNCHRONIZE CACHE (10/16): a flush if the backend has one, else nothing
            // to do (no write cache to empty).
            if d.flush.is_some() {
                Ok(Action::Io {
                    op: IoOp::Flush,
                    sector: 0,
                    bytes: 0,
                })
            } else {
                Ok(Action::Good)
            }
        }
        0x42 => {
            if d.discard.is_none() {
                return Err(Sense::INVALID_OPCODE);
            }
            if d.info.contains(VdiskInfo::READONLY) {
                return Err(Sense::WRITE_PROTECTED);
            }
            Ok(Action::Unmap {
                param_len: be16(&cdb[7..]) as usize,
            })
        }
        _ => Err(Sense::INVALID_OPCODE),
    }
}

/// An UNMAP parameter list as blkfront discards (512-byte sector, count): at most
/// [`MAX_UNMAP_DESCRIPTORS`], each inside the disk; zero-length descriptors dropped.
pub fn unmap_ranges(list: &[u8], d: &DiskInfo) -> Result<Vec<(u64, u64)>, Sense> {
    if list.len() < 8 {
        return Ok(Vec::new());
    }
    let desc_len = be16(&list[2..]) as usize;
    if !desc_len.is_multiple_of(16) || 8 + desc_len > list.len() {
        return Err(Sense::INVALID_PARAMETER);
    }
    let n = desc_len / 16;
    if n > MAX_UNMAP_DESCRIPTORS {
        return Err(Sense::INVALID_PARAMETER);
    }
    let (per, total) = geometry(d);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let b = &list[8 + 16 * i..8 + 16 * (i + 1)];
        let (lba, blocks) = (be64(b), be32(&b[8..]));
        match lba.checked_add(blocks) {
            Some(end) if end <= total => {}
            _ => return Err(Sense::LBA_OUT_OF_RANGE),
        }
        if blocks > 0 {
            out.push((lba * per, blocks * per));
        }
    }
    Ok(out)
}

/// A scatter-gather list (page, offset in page, length) as blkfront segments: every
/// piece must be whole 512-byte sectors inside its 4 KiB page, and the pieces must add
/// up to `bytes`.
pub fn segments<Pg: Copy>(
    sg: &[(Pg, usize, usize)],
    bytes: u64,
) -> Result<Vec<IoSegment<Pg>>, Sense> {
    let mut total = 0u64;
    let mut out = Vec::with_capacity(sg.len());
    for &(page, off, len) in sg {
        let ok = len > 0
            && off.is_multiple_of(SECTOR as usize)
            && len.is_multiple_of(SECTOR as usize)
            && off.checked_add(len).is_some_and(|e| e <= 4096);
        if !ok {
            return Err(Sense::INVALID_FIELD);
        }
        out.push(IoSegment {
            page,
            first_sect: (off / SECTOR as usize) as u8,
            last_sect: ((off + len) / SECTOR as usize - 1) as u8,
        });
        total += len as u64;
    }
    if total != bytes {
        return Err(Sense::INVALID_FIELD);
    }
    Ok(out)
}

#[cfg(test)]
mod srb_tests;
#[cfg(test)]
mod tests;
