use crate::srb::{function, reply, status, Completion, Reply, SCSISTAT_CHECK_CONDITION};
use crate::Sense;
use alloc::vec;
use sluice_abi::blkif::VdiskInfo;
use sluice_blkfront_core::{DiscardInfo, DiskInfo, FlushKind, IoOp};

fn disk() -> DiskInfo {
    DiskInfo {
        sectors: 2048,
        sector_size: 512,
        physical_sector_size: 512,
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

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

const LUN0: (u8, u8, u8) = (0, 0, 0);

#[test]
fn read_becomes_io_when_the_buffer_matches() {
    let d = disk();
    let r = reply(function::EXECUTE_SCSI, LUN0, &read10(8, 4), 2048, Some(&d));
    assert_eq!(
        r,
        Reply::Io {
            op: IoOp::Read,
            sector: 8,
            bytes: 2048
        }
    );
    // A buffer that disagrees with the CDB's length is refused, never half-served.
    for len in [0, 2047, 2049, 4096] {
        let r = reply(function::EXECUTE_SCSI, LUN0, &read10(8, 4), len, Some(&d));
        assert_eq!(r, Reply::Complete(Completion::check(Sense::INVALID_FIELD)));
    }
}

#[test]
fn only_target_0_lun_0_exists() {
    let d = disk();
    let cdb = [0u8; 6]; // TEST UNIT READY
    let ok = reply(function::EXECUTE_SCSI, LUN0, &cdb, 0, Some(&d));
    assert_eq!(ok, Reply::Complete(Completion::io_done(true)));
    for (addr, want) in [
        ((1, 0, 0), status::NO_DEVICE),
        ((0, 1, 0), status::NO_DEVICE),
        ((0, 0, 1), status::INVALID_LUN),
        ((0, 255, 255), status::NO_DEVICE),
    ] {
        match reply(function::EXECUTE_SCSI, addr, &cdb, 0, Some(&d)) {
            Reply::Complete(c) => assert_eq!(c.srb_status, want, "{addr:?}"),
            r => panic!("{addr:?}: {r:?}"),
        }
    }
}

#[test]
fn no_backend_means_no_device() {
    for f in [function::EXECUTE_SCSI, function::FLUSH, function::SHUTDOWN] {
        match reply(f, LUN0, &[0x12, 0, 0, 0, 36, 0], 36, None) {
            Reply::Complete(c) => assert_eq!(c.srb_status, status::NO_DEVICE),
            r => panic!("{r:?}"),
        }
    }
}

#[test]
fn refusals_carry_autosense() {
    let d = disk();
    let c = match reply(function::EXECUTE_SCSI, LUN0, &[0xff; 16], 0, Some(&d)) {
        Reply::Complete(c) => c,
        r => panic!("{r:?}"),
    };
    assert_eq!(c.srb_status, status::ERROR | status::AUTOSENSE_VALID);
    assert_eq!(c.scsi_status, SCSISTAT_CHECK_CONDITION);
    assert_eq!(c.sense, Some(Sense::INVALID_OPCODE.bytes()));
    // Past the end of the disk.
    let r = reply(
        function::EXECUTE_SCSI,
        LUN0,
        &read10(2047, 2),
        1024,
        Some(&d),
    );
    assert_eq!(
        r,
        Reply::Complete(Completion::check(Sense::LBA_OUT_OF_RANGE))
    );
    // A short CDB (READ 10 in 6 bytes).
    let r = reply(
        function::EXECUTE_SCSI,
        LUN0,
        &read10(0, 1)[..6],
        512,
        Some(&d),
    );
    assert_eq!(r, Reply::Complete(Completion::check(Sense::INVALID_FIELD)));
    // A backend error.
    assert_eq!(
        Completion::io_done(false),
        Completion::check(Sense::MEDIUM_ERROR)
    );
}

#[test]
fn answers_are_cut_to_the_buffer_and_underruns_say_so() {
    let d = disk();
    // INQUIRY with allocation length 36 into a 96-byte buffer: 36 bytes, underrun.
    let inq = [0x12, 0, 0, 0, 36, 0];
    let c = match reply(function::EXECUTE_SCSI, LUN0, &inq, 96, Some(&d)) {
        Reply::Complete(c) => c,
        r => panic!("{r:?}"),
    };
    assert_eq!(c.data.len(), 36);
    assert_eq!(c.srb_status, status::DATA_OVERRUN);
    // The same into an 8-byte buffer: 8 bytes, success.
    let c = match reply(function::EXECUTE_SCSI, LUN0, &inq, 8, Some(&d)) {
        Reply::Complete(c) => c,
        r => panic!("{r:?}"),
    };
    assert_eq!((c.data.len(), c.srb_status), (8, status::SUCCESS));
    // READ CAPACITY (10) into exactly 8 bytes: last LBA 2047, 512-byte blocks.
    let c = match reply(function::EXECUTE_SCSI, LUN0, &[0x25; 10], 8, Some(&d)) {
        Reply::Complete(c) => c,
        r => panic!("{r:?}"),
    };
    assert_eq!(c.data, vec![0, 0, 7, 0xff, 0, 0, 2, 0]);
}

#[test]
fn flush_and_shutdown_flush_when_the_backend_can() {
    let mut d = disk();
    for f in [function::FLUSH, function::SHUTDOWN] {
        assert_eq!(
            reply(f, LUN0, &[], 0, Some(&d)),
            Reply::Io {
                op: IoOp::Flush,
                sector: 0,
                bytes: 0
            }
        );
    }
    let sync = [0x35u8; 10];
    assert!(matches!(
        reply(function::EXECUTE_SCSI, LUN0, &sync, 0, Some(&d)),
        Reply::Io {
            op: IoOp::Flush,
            ..
        }
    ));
    d.flush = None;
    for f in [function::FLUSH, function::SHUTDOWN] {
        assert_eq!(
            reply(f, LUN0, &[], 0, Some(&d)),
            Reply::Complete(Completion::io_done(true))
        );
    }
}

#[test]
fn unmap_list_must_fit_the_buffer() {
    let d = disk();
    let mut cdb = [0u8; 10];
    cdb[0] = 0x42;
    cdb[7..9].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(
        reply(function::EXECUTE_SCSI, LUN0, &cdb, 24, Some(&d)),
        Reply::Unmap { param_len: 24 }
    );
    assert_eq!(
        reply(function::EXECUTE_SCSI, LUN0, &cdb, 23, Some(&d)),
        Reply::Complete(Completion::check(Sense::INVALID_FIELD))
    );
    let mut ro = d;
    ro.info = VdiskInfo::READONLY;
    assert_eq!(
        reply(function::EXECUTE_SCSI, LUN0, &cdb, 24, Some(&ro)),
        Reply::Complete(Completion::check(Sense::WRITE_PROTECTED))
    );
}

#[test]
fn other_functions() {
    for (f, want) in [
        (function::RESET_BUS, status::SUCCESS),
        (function::RESET_DEVICE, status::SUCCESS),
        (function::RESET_LOGICAL_UNIT, status::SUCCESS),
        (function::PNP, status::SUCCESS),
        (function::POWER, status::SUCCESS),
        (function::IO_CONTROL, status::INVALID_REQUEST),
        (0x01, status::INVALID_REQUEST), // CLAIM_DEVICE
        (0xff, status::INVALID_REQUEST),
    ] {
        match reply(f, LUN0, &[], 0, None) {
            Reply::Complete(c) => assert_eq!(c.srb_status, want, "function {f:#x}"),
            r => panic!("{r:?}"),
        }
    }
}
