use super::*;
use alloc::vec;
use sluice_blkfront_core::{DiscardInfo, FlushKind};

fn disk(sector_size: u32, sectors: u64) -> DiskInfo {
    DiskInfo {
        sectors,
        sector_size,
        physical_sector_size: sector_size,
        info: VdiskInfo::empty(),
        flush: Some(FlushKind::FlushDiskcache),
        discard: Some(DiscardInfo {
            granularity: 4096,
            alignment: 0,
            secure: false,
        }),
        persistent: false,
        max_indirect_segments: 0,
    }
}

fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn reads_and_writes_become_block_io_in_512_byte_sectors() {
    let d = disk(4096, 8 * 1000); // 1000 blocks of 4 KiB
    assert_eq!(
        translate(&read16(10, 2), &d),
        Ok(Action::Io {
            op: IoOp::Read,
            sector: 80,
            bytes: 8192
        })
    );
    let w10 = [0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0];
    assert_eq!(
        translate(&w10, &d),
        Ok(Action::Io {
            op: IoOp::Write,
            sector: 40,
            bytes: 4096
        })
    );
    assert_eq!(translate(&read16(999, 1), &d).map(|_| ()), Ok(()));
}

#[test]
fn out_of_range_and_overflowing_lbas_are_refused() {
    let d = disk(512, 1000);
    assert_eq!(translate(&read16(999, 2), &d), Err(Sense::LBA_OUT_OF_RANGE));
    assert_eq!(
        translate(&read16(u64::MAX, 2), &d),
        Err(Sense::LBA_OUT_OF_RANGE)
    );
    assert_eq!(translate(&read16(1000, 0), &d), Ok(Action::Good));
}

#[test]
fn read_only_disks_refuse_writes_and_unmap() {
    let mut d = disk(512, 1000);
    d.info = VdiskInfo::READONLY;
    assert_eq!(
        translate(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &d),
        Err(Sense::WRITE_PROTECTED)
    );
    assert_eq!(
        translate(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &d),
        Err(Sense::WRITE_PROTECTED)
    );
    let ms = translate(&[0x1a, 0, 0x08, 0, 255, 0], &d).unwrap();
    let Action::Data(v) = ms else { panic!() };
    assert_eq!(v[2] & 0x80, 0x80, "MODE SENSE shows write protect");
}

#[test]
fn short_unknown_and_bad_cdbs() {
    let d = disk(512, 1000);
    assert_eq!(translate(&[], &d), Err(Sense::INVALID_OPCODE));
    assert_eq!(
        translate(&[0x88, 0, 0], &d),
        Err(Sense::INVALID_FIELD),
        "short CDB"
    );
    assert_eq!(
        translate(&[0xc0; 16], &d),
        Err(Sense::INVALID_OPCODE),
        "vendor opcode"
    );
    assert_eq!(
        translate(&[0x04, 0, 0, 0, 0, 0], &d),
        Err(Sense::INVALID_OPCODE),
        "FORMAT UNIT"
    );
    assert_eq!(
        translate(&[0x12, 0, 0x80, 0, 36, 0], &d),
        Err(Sense::INVALID_FIELD),
        "page without EVPD"
    );
}

#[test]
fn capacity_inquiry_and_flush() {
    let d = disk(512, 1 << 40);
    let Ok(Action::Data(c10)) = translate(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &d) else {
        panic!()
    };
    assert_eq!(
        c10,
        [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0],
        "saturated for READ CAPACITY(16)"
    );
    let mut c16 = [0u8; 16];
    c16[0] = 0x9e;
    c16[1] = 0x10;
    c16[13] = 32;
    let Ok(Action::Data(v)) = translate(&c16, &d) else {
        panic!()
    };
    assert_eq!(&v[..8], &((1u64 << 40) - 1).to_be_bytes());
    assert_eq!(v[14] & 0x80, 0x80, "LBPME with discard");
    let Ok(Action::Data(inq)) = translate(&[0x12, 0, 0, 0, 36, 0], &d) else {
        panic!()
    };
    assert_eq!((&inq[8..14], inq.len()), (&b"SLUICE"[..], 36));
    let Ok(Action::Data(short)) = translate(&[0x12, 0, 0, 0, 5, 0], &d) else {
        panic!()
    };
    assert_eq!(short.len(), 5, "cut to the allocation length");
    let Ok(Action::Data(vpd)) = translate(&[0x12, 1, 0, 0, 255, 0], &d) else {
        panic!()
    };
    assert_eq!(&vpd[4..], &[0x00, 0x80, 0x83, 0xb0, 0xb2]);
    assert_eq!(
        translate(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &d),
        Ok(Action::Io {
            op: IoOp::Flush,
            sector: 0,
            bytes: 0
        })
    );
    let mut nf = d;
    nf.flush = None;
    nf.discard = None;
    assert_eq!(
        translate(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &nf),
        Ok(Action::Good)
    );
    assert_eq!(
        translate(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &nf),
        Err(Sense::INVALID_OPCODE)
    );
}

fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let mut v = vec![0u8; 8];
    v[2..4].copy_from_slice(&((descs.len() * 16) as u16).to_be_bytes());
    for (lba, n) in descs {
        v.extend_from_slice(&lba.to_be_bytes());
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
    }
    v
}

#[test]
fn unmap_lists_are_checked_and_bounded() {
    let d = disk(4096, 8 * 100);
    assert_eq!(
        unmap_ranges(&unmap_list(&[(1, 2), (5, 0)]), &d),
        Ok(vec![(8, 16)])
    );
    assert_eq!(
        unmap_ranges(&unmap_list(&[(99, 2)]), &d),
        Err(Sense::LBA_OUT_OF_RANGE)
    );
    assert_eq!(
        unmap_ranges(&unmap_list(&[(u64::MAX, 2)]), &d),
        Err(Sense::LBA_OUT_OF_RANGE)
    );
    let many: Vec<(u64, u32)> = (0..(MAX_UNMAP_DESCRIPTORS as u64 + 1))
        .map(|i| (i, 1))
        .collect();
    assert_eq!(
        unmap_ranges(&unmap_list(&many), &d),
        Err(Sense::INVALID_PARAMETER)
    );
    let mut lying = unmap_list(&[(1, 1)]);
    lying[2..4].copy_from_slice(&64u16.to_be_bytes());
    assert_eq!(
        unmap_ranges(&lying, &d),
        Err(Sense::INVALID_PARAMETER),
        "length past the buffer"
    );
}

#[test]
fn scatter_gather_becomes_whole_sector_segments() {
    let s = segments(&[(1u32, 0, 4096), (2, 512, 1024)], 5120).unwrap();
    assert_eq!((s[0].first_sect, s[0].last_sect), (0, 7));
    assert_eq!((s[1].page, s[1].first_sect, s[1].last_sect), (2, 1, 2));
    assert_eq!(
        segments(&[(1u32, 100, 512)], 512),
        Err(Sense::INVALID_FIELD),
        "unaligned"
    );
    assert_eq!(
        segments(&[(1u32, 3584, 1024)], 1024),
        Err(Sense::INVALID_FIELD),
        "crosses the page"
    );
    assert_eq!(
        segments(&[(1u32, 0, 512)], 1024),
        Err(Sense::INVALID_FIELD),
        "short of the transfer"
    );
    assert_eq!(
        segments::<u32>(&[(1, 0, 0)], 0),
        Err(Sense::INVALID_FIELD),
        "empty piece"
    );
}

#[test]
fn sense_bytes_are_fixed_format() {
    let s = Sense::LBA_OUT_OF_RANGE.bytes();
    assert_eq!((s[0], s[2], s[7], s[12], s[13]), (0x70, 5, 10, 0x21, 0));
}
