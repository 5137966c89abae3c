//! The data path of one device: reads, writes, flushes, discards and indirect requests
//! land in the image; hostile requests get errors and touch nothing; a read-only disk
//! refuses writes; a full ring in flight at once; a barrier orders the writes around it.

use crate::common::*;
use sluice_abi::blkif::{BlkifRequestDiscard, BlkifRequestIndirect};
use sluice_abi::types::GrantRef;
use std::os::unix::fs::MetadataExt;

pub(crate) fn read_write_flush_discard_indirect(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(5, 51712, "w");
    for (k, v) in [
        ("sectors", "2048"),
        ("sector-size", "512"),
        ("feature-discard", "1"),
        ("feature-flush-cache", "1"),
        ("info", "0"),
    ] {
        wait_for(&w.store.connect(), &format!("{be}/{k}"), v);
    }
    let mut f = Front::connect(&w, w.guest(5), &be, &fe, 0, 1);

    // Write two segments: sectors 2..=7 of page A (0x11) then 0..=3 of page B (0x22).
    let (a, _) = f.data_page(0, Some(0x11), true);
    let (b, _) = f.data_page(1, Some(0x22), true);
    let segs = [
        BlkifRequestSegment::new(a, 2, 7),
        BlkifRequestSegment::new(b, 0, 3),
    ];
    assert_eq!(f.rw(BlkifOp::Write, 100, &segs), BlkifRsp::Okay);
    let data = image_bytes(&img, 100, 10 * 512);
    assert!(data[..6 * 512].iter().all(|&x| x == 0x11));
    assert!(data[6 * 512..].iter().all(|&x| x == 0x22));
    assert_eq!(
        image_bytes(&img, 99, 512),
        vec![0xee; 512],
        "guard sector before"
    );
    assert_eq!(
        image_bytes(&img, 110, 512),
        vec![0xee; 512],
        "guard sector after"
    );

    // Read them back into a fresh page at offset 1024.
    let (c, cpage) = f.data_page(2, Some(0), false);
    assert_eq!(
        f.rw(BlkifOp::Read, 104, &[BlkifRequestSegment::new(c, 2, 5)]),
        BlkifRsp::Okay
    );
    let mut got = vec![0u8; 4 * 512];
    f.guest
        .mem()
        .read_bytes(cpage * XEN_PAGE_SIZE + 1024, &mut got)
        .unwrap();
    assert!(got[..2 * 512].iter().all(|&x| x == 0x11) && got[2 * 512..].iter().all(|&x| x == 0x22));

    // Flush without and with data.
    assert_eq!(f.rw(BlkifOp::FlushDiskcache, 0, &[]), BlkifRsp::Okay);
    assert_eq!(
        f.rw(
            BlkifOp::FlushDiskcache,
            200,
            &[BlkifRequestSegment::new(a, 0, 0)]
        ),
        BlkifRsp::Okay
    );
    assert_eq!(image_bytes(&img, 200, 512), vec![0x11; 512]);

    // Indirect: 20 full pages in one request (one indirect page of descriptors).
    let mut descs = vec![];
    for i in 0..20 {
        let (g, _) = f.data_page(10 + i, Some(i as u8 + 1), true);
        descs.push(BlkifRequestSegment::new(g, 0, 7));
    }
    let (ind, ipage) = f.data_page(40, Some(0), true);
    f.guest
        .mem()
        .write_bytes(ipage * XEN_PAGE_SIZE, descs.as_bytes())
        .unwrap();
    let id = f.id();
    let mut grefs = [GrantRef(0); 8];
    grefs[0] = GrantRef(ind);
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Write as u8,
        nr_segments: 20,
        id,
        sector_number: 512,
        indirect_grefs: grefs,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Okay);
    for i in 0..20u64 {
        assert_eq!(
            image_bytes(&img, 512 + 8 * i, 4096),
            vec![i as u8 + 1; 4096]
        );
    }

    // Discard punches a hole: zeroes, fewer blocks allocated.
    let before = std::fs::metadata(&img).unwrap().blocks();
    let id = f.id();
    let d = BlkifRequestDiscard {
        operation: BlkifOp::Discard as u8,
        id,
        sector_number: 1024,
        nr_sectors: 1024,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&d))), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 1024, 1024 * 512), vec![0; 1024 * 512]);
    assert!(
        std::fs::metadata(&img).unwrap().blocks() < before,
        "discard left the blocks allocated"
    );
    assert_eq!(image_bytes(&img, 1023, 512), vec![0xee; 512]);
}

pub(crate) fn hostile_requests_get_errors_and_touch_nothing(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(7, 51712, "w");
    let mut f = Front::connect(&w, w.guest(7), &be, &fe, 0, 1);
    let (a, _) = f.data_page(0, Some(0x55), true);
    let ro = f.guest.grant(65, true);
    let len = std::fs::metadata(&img).unwrap().len();
    // Bad grant reference.
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(9999, 0, 7)]),
        BlkifRsp::Error
    );
    // Read into a read-only grant.
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(ro, 0, 7)]),
        BlkifRsp::Error
    );
    // Past the end, straddling the end, overflowing.
    assert_eq!(
        f.rw(
            BlkifOp::Write,
            SECTORS,
            &[BlkifRequestSegment::new(a, 0, 0)]
        ),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(
            BlkifOp::Write,
            SECTORS - 4,
            &[BlkifRequestSegment::new(a, 0, 7)]
        ),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(
            BlkifOp::Write,
            u64::MAX - 1,
            &[BlkifRequestSegment::new(a, 0, 7)]
        ),
        BlkifRsp::Error
    );
    // Bad segments: last < first, beyond the page, too many, none.
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 5, 2)]),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 8)]),
        BlkifRsp::Error
    );
    let id = f.id();
    let req = BlkifRequest {
        operation: BlkifOp::Write as u8,
        nr_segments: 12,
        id,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, req)), BlkifRsp::Error);
    assert_eq!(f.rw(BlkifOp::Read, 0, &[]), BlkifRsp::Error);
    // Unknown and reserved operations.
    let id = f.id();
    assert_eq!(
        status(f.submit(
            0,
            BlkifRequest {
                operation: 99,
                id,
                ..Default::default()
            }
        )),
        BlkifRsp::EOpNotSupp
    );
    // Discard past the end; indirect with too many segments; indirect page with a bad descriptor.
    let id = f.id();
    let d = BlkifRequestDiscard {
        operation: BlkifOp::Discard as u8,
        id,
        sector_number: SECTORS - 1,
        nr_sectors: 2,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&d))), BlkifRsp::Error);
    let id = f.id();
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Write as u8,
        nr_segments: 4000,
        id,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Error);
    let (ind, ipage) = f.data_page(2, Some(0), true);
    f.guest
        .mem()
        .write_bytes(
            ipage * XEN_PAGE_SIZE,
            [BlkifRequestSegment::new(a, 7, 1)].as_bytes(),
        )
        .unwrap();
    let id = f.id();
    let mut grefs = [GrantRef(0); 8];
    grefs[0] = GrantRef(ind);
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Write as u8,
        nr_segments: 1,
        id,
        indirect_grefs: grefs,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Error);
    // Nothing was written anywhere, the image did not grow, and the device still works.
    assert_eq!(std::fs::metadata(&img).unwrap().len(), len);
    assert_eq!(
        image_bytes(&img, 0, (SECTORS * 512) as usize),
        vec![0xee; (SECTORS * 512) as usize]
    );
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 0)]),
        BlkifRsp::Okay
    );
    assert_eq!(
        w.store
            .connect()
            .read_opt(XBT_NULL, &format!("{be}/state"))
            .unwrap()
            .as_deref(),
        Some("4")
    );
    // The status file counts them: one OKAY, every refusal above as failed (at least
    // the 13 asserted one by one). Written by the daemon's loop, so wait for it.
    let want_ok = format!("\"{be}\":{{\"ok\":1,\"failed\":");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(w.status_file()).unwrap_or_default();
        if t.contains(&want_ok) || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let failed: u64 = text
        .split(&want_ok)
        .nth(1)
        .and_then(|r| r.split('}').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("status file: {text}"));
    assert!(failed >= 13, "status file: {text}");
}

pub(crate) fn read_only_disk(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(8, 51712, "r");
    wait_for(&w.store.connect(), &format!("{be}/info"), "4");
    wait_for(&w.store.connect(), &format!("{be}/feature-discard"), "0");
    let mut f = Front::connect(&w, w.guest(8), &be, &fe, 0, 1);
    let (a, _) = f.data_page(0, Some(1), false);
    assert_eq!(
        f.rw(BlkifOp::Write, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Error
    );
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    assert_eq!(image_bytes(&img, 0, 4096), vec![0xee; 4096]);
}

/// A full ring of writes submitted at once, then reads of them: with io_uring they
/// are in flight together and may be answered in any order.
pub(crate) fn many_in_flight(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(16, 51712, "w");
    let f = Front::connect(&w, w.guest(16), &be, &fe, 0, 1);
    let (port, _) = f.rings[0];
    let mem = f.guest.mem().slice(0, XEN_PAGE_SIZE).unwrap();
    let prod = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
    let mut ring = BlkifFrontRing::attach(mem, prod).unwrap();
    let n = ring.size() as usize;
    for i in 0..n {
        let (g, _) = f.data_page(i, Some(i as u8 + 1), true);
        let mut req = BlkifRequest {
            operation: BlkifOp::Write as u8,
            nr_segments: 1,
            id: 1000 + i as u64,
            sector_number: 8 * i as u64,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(g, 0, 7);
        ring.push_request(&req).unwrap();
    }
    ring.push_requests().unwrap();
    f.ev.notify(EvtchnPort(port)).unwrap();
    let mut ids = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} answered", ids.len());
        match ring.pop_response().unwrap() {
            Some(r) => {
                assert_eq!(status(r), BlkifRsp::Okay);
                ids.push(r.id);
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    ids.sort();
    assert_eq!(ids, (1000..1000 + n as u64).collect::<Vec<_>>());
    for i in 0..n as u64 {
        assert_eq!(image_bytes(&img, 8 * i, 4096), vec![i as u8 + 1; 4096]);
    }
}

/// A barrier (`feature-barrier`) is answered after every request before it and before
/// any after it, and its data lands over the writes before it.
pub(crate) fn barrier_orders_writes(cfg: Cfg) {
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(17, 51712, "w");
    wait_for(&w.store.connect(), &format!("{be}/feature-barrier"), "1");
    let f = Front::connect(&w, w.guest(17), &be, &fe, 0, 1);
    let (port, _) = f.rings[0];
    let mem = f.guest.mem().slice(0, XEN_PAGE_SIZE).unwrap();
    let prod = mem.load_u32_acquire(REQ_PROD_OFFSET).unwrap();
    let mut ring = BlkifFrontRing::attach(mem, prod).unwrap();
    // Ids 1000..1010 before the barrier (all to sector 0..8 * 10), 2000 the barrier
    // (page of 0xbb over sector 0), 3000..3010 after it (elsewhere).
    let write = |id: u64, sector: u64, g: u32, op: BlkifOp| {
        let mut req = BlkifRequest {
            operation: op as u8,
            nr_segments: 1,
            id,
            sector_number: sector,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(g, 0, 7);
        req
    };
    for i in 0..10u64 {
        let (g, _) = f.data_page(i as usize, Some(0x10 + i as u8), true);
        ring.push_request(&write(1000 + i, 8 * i, g, BlkifOp::Write))
            .unwrap();
    }
    let (b, _) = f.data_page(10, Some(0xbb), true);
    ring.push_request(&write(2000, 0, b, BlkifOp::WriteBarrier))
        .unwrap();
    for i in 0..10u64 {
        let (g, _) = f.data_page(11 + i as usize, Some(0x30 + i as u8), true);
        ring.push_request(&write(3000 + i, 512 + 8 * i, g, BlkifOp::Write))
            .unwrap();
    }
    ring.push_requests().unwrap();
    f.ev.notify(EvtchnPort(port)).unwrap();
    let mut ids = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < 21 {
        assert!(Instant::now() < deadline, "{} of 21 answered", ids.len());
        match ring.pop_response().unwrap() {
            Some(r) => {
                assert_eq!(status(r), BlkifRsp::Okay, "response {}", r.id);
                ids.push(r.id);
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let at = ids.iter().position(|&id| id == 2000).unwrap();
    assert!(
        ids[..at].iter().all(|&id| id < 2000) && ids[at + 1..].iter().all(|&id| id > 2000),
        "barrier out of order: {ids:?}"
    );
    assert_eq!(at, 10, "{ids:?}");
    assert_eq!(image_bytes(&img, 0, 4096), vec![0xbb; 4096]);
    for i in 1..10u64 {
        assert_eq!(image_bytes(&img, 8 * i, 4096), vec![0x10 + i as u8; 4096]);
        assert_eq!(
            image_bytes(&img, 512 + 8 * i, 4096),
            vec![0x30 + i as u8; 4096]
        );
    }
}
