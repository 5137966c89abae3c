//! Commands answered from the disk's description, without the backend.

use crate::{geometry, Sense, MAX_UNMAP_DESCRIPTORS};
use alloc::vec;
use alloc::vec::Vec;
use sluice_abi::blkif::VdiskInfo;
use sluice_blkfront_core::DiskInfo;

fn cut(mut v: Vec<u8>, alloc_len: usize) -> Vec<u8> {
    v.truncate(alloc_len);
    v
}

/// INQUIRY: standard data, or VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB2.
pub fn inquiry(cdb: &[u8], d: &DiskInfo) -> Result<Vec<u8>, Sense> {
    let alloc_len = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
    let cdrom = d.info.contains(VdiskInfo::CDROM);
    let peripheral = if cdrom { 0x05 } else { 0x00 };
    if cdb[1] & 1 == 0 {
        if cdb[2] != 0 {
            return Err(Sense::INVALID_FIELD);
        }
        let mut v = vec![0u8; 36];
        v[0] = peripheral;
        v[1] = if d.info.contains(VdiskInfo::REMOVABLE) || cdrom {
            0x80
        } else {
            0
        };
        v[2] = 0x06; // SPC-4
        v[3] = 0x02; // response data format
        v[4] = 31;
        v[8..16].copy_from_slice(b"SLUICE  ");
        v[16..32].copy_from_slice(b"XEN PV DISK     ");
        v[32..36].copy_from_slice(b"0001");
        return Ok(cut(v, alloc_len));
    }
    let page = cdb[2];
    let mut pages = vec![0x00, 0x80, 0x83];
    if d.discard.is_some() {
        pages.extend_from_slice(&[0xb0, 0xb2]);
    }
    let body: Vec<u8> = match page {
        0x00 => pages.clone(),
        0x80 => b"sluice-vbd".to_vec(),
        0x83 => {
            // One T10 vendor-ID designator (ASCII).
            let id = b"SLUICE  xen-vbd";
            let mut v = vec![0x02, 0x01, 0x00, id.len() as u8];
            v.extend_from_slice(id);
            v
        }
        0xb0 if d.discard.is_some() => {
            let mut v = vec![0u8; 60];
            // Maximum unmap LBA count (all), descriptor count, granularity.
            v[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
            v[20..24].copy_from_slice(&(MAX_UNMAP_DESCRIPTORS as u32).to_be_bytes());
            let gran = d
                .discard
                .map(|x| x.granularity / d.sector_size.max(1))
                .unwrap_or(0);
            v[24..28].copy_from_slice(&gran.to_be_bytes());
            v
        }
        0xb2 if d.discard.is_some() => vec![0, 0x80, 0x02, 0], // LBPU, thin provisioned
        _ => return Err(Sense::INVALID_FIELD),
    };
    let mut v = vec![peripheral, page];
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(&body);
    Ok(cut(v, alloc_len))
}

/// READ CAPACITY (10): last LBA (saturated) and block length.
pub fn read_capacity10(d: &DiskInfo) -> Vec<u8> {
    let (_, total) = geometry(d);
    let last = total.saturating_sub(1).min(u32::MAX as u64) as u32;
    let mut v = last.to_be_bytes().to_vec();
    v.extend_from_slice(&d.sector_size.to_be_bytes());
    v
}

/// READ CAPACITY (16): last LBA, block length, physical-block exponent, LBPME.
pub fn read_capacity16(d: &DiskInfo, alloc_len: usize) -> Vec<u8> {
    let (_, total) = geometry(d);
    let mut v = vec![0u8; 32];
    v[..8].copy_from_slice(&total.saturating_sub(1).to_be_bytes());
    v[8..12].copy_from_slice(&d.sector_size.to_be_bytes());
    let ratio = (d.physical_sector_size / d.sector_size.max(1)).max(1);
    v[13] = ratio.trailing_zeros() as u8 & 0x0f;
    if d.discard.is_some() {
        v[14] = 0x80;
    }
    cut(v, alloc_len)
}

/// MODE SENSE (6) and (10): the write-protect bit, and the caching page (WCE when the
/// backend can flush).
pub fn mode_sense(cdb: &[u8], d: &DiskInfo) -> Result<Vec<u8>, Sense> {
    let ten = cdb[0] == 0x5a;
    let page = cdb[2] & 0x3f;
    if page != 0x08 && page != 0x3f {
        return Err(Sense::INVALID_FIELD);
    }
    let alloc_len = if ten {
        u16::from_be_bytes([cdb[7], cdb[8]]) as usize
    } else {
        cdb[4] as usize
    };
    let mut caching = vec![0u8; 20];
    caching[0] = 0x08;
    caching[1] = 18;
    if d.flush.is_some() {
        caching[2] = 0x04; // WCE
    }
    let wp = if d.info.contains(VdiskInfo::READONLY) {
        0x80
    } else {
        0
    };
    let mut v = if ten {
        let len = (6 + caching.len()) as u16;
        let mut h = len.to_be_bytes().to_vec();
        h.extend_from_slice(&[0, wp, 0, 0, 0, 0]);
        h
    } else {
        vec![(3 + caching.len()) as u8, 0, wp, 0]
    };
    v.extend_from_slice(&caching);
    Ok(cut(v, alloc_len))
}

/// REPORT LUNS: LUN 0 only.
pub fn report_luns(alloc_len: usize) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[3] = 8;
    cut(v, alloc_len)
}
