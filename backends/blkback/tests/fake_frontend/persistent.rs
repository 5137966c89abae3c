//! Persistent grants (`feature-persistent`): mapped once and reused, unmapped on close;
//! grant copy without agreement; a full cache copies; per-queue caches across
//! reconnects; hostile grant references.

use crate::common::*;
use sluice_abi::blkif::BlkifRequestIndirect;
use sluice_abi::types::GrantRef;

/// Frontend closes (Closing, Closed) and restarts (Initialising), as Linux's blkfront
/// does on reconnect; returns once the backend is Closed (its queues joined).
fn close_and_restart(f: &Front) {
    let (fe, be) = (&f.fe, &f.be);
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"5").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "5");
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"6").unwrap();
    wait_for(&f.xs, &format!("{be}/state"), "6");
    f.xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
}

fn write_pages(f: &mut Front, sector: u64, grefs: &[u32]) -> BlkifRsp {
    let segs: Vec<_> = grefs
        .iter()
        .map(|&g| BlkifRequestSegment::new(g, 0, 7))
        .collect();
    f.rw(BlkifOp::Write, sector, &segs)
}

/// With both ends agreeing, each data and indirect page is mapped once, on first use,
/// and reused; no grant copy at all; everything is unmapped when the frontend closes.
pub(crate) fn persistent_grants_are_reused_and_unmapped_on_close(engine: IoEngine) {
    let w = World::new(1, Cfg::new(engine, true));
    let (be, fe, img) = w.add_disk(20, 51712, "w");
    wait_for(&w.store.connect(), &format!("{be}/feature-persistent"), "1");
    let mut f = Front::connect(&w, w.guest(20), &be, &fe, 0, 1);
    assert_eq!(
        (w.grants.maps_made(), w.grants.live_mappings()),
        (1, 1),
        "the ring"
    );
    let (a, _) = f.data_page(0, Some(0x31), false);
    let (b, _) = f.data_page(1, Some(0x32), false);
    let (c, cpage) = f.data_page(2, Some(0), false);
    let mut descs = vec![];
    let mut pages = vec![];
    for i in 0..20 {
        let (g, _) = f.data_page(10 + i, Some(0x40 + i as u8), false);
        descs.push(BlkifRequestSegment::new(g, 0, 7));
        pages.push(g);
    }
    let (ind, ipage) = f.data_page(40, Some(0), false);
    f.guest
        .mem()
        .write_bytes(ipage * XEN_PAGE_SIZE, descs.as_bytes())
        .unwrap();
    for round in 0..5u64 {
        assert_eq!(write_pages(&mut f, 8 * round, &[a, b]), BlkifRsp::Okay);
        assert_eq!(
            f.rw(
                BlkifOp::Read,
                8 * round + 8,
                &[BlkifRequestSegment::new(c, 0, 7)]
            ),
            BlkifRsp::Okay
        );
        let mut got = vec![0u8; 4096];
        f.guest
            .mem()
            .read_bytes(cpage * XEN_PAGE_SIZE, &mut got)
            .unwrap();
        assert_eq!(got, vec![0x32; 4096], "round {round}: read back page b");
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
    }
    for i in 0..20u64 {
        assert_eq!(
            image_bytes(&img, 512 + 8 * i, 4096),
            vec![0x40 + i as u8; 4096]
        );
    }
    // 3 + 20 data pages + 1 indirect page, each mapped exactly once; no grant copy.
    assert_eq!(w.grants.maps_made(), 1 + 24);
    assert_eq!(w.grants.live_mappings(), 1 + 24);
    assert_eq!(w.grants.segments_copied(), 0);
    for g in [a, b, c, ind].into_iter().chain(pages.iter().copied()) {
        assert_eq!(f.guest.mapped(g), 1, "gref {g}");
    }
    assert!(
        !f.guest.try_revoke(a),
        "a persistent grant stays mapped while connected"
    );
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0, "all unmapped on disconnect");
    assert!(f.guest.try_revoke(a) && f.guest.try_revoke(ind));
}

/// No agreement, no mappings: grant copy as before, whichever side says no (or says
/// garbage).
pub(crate) fn grant_copy_without_agreement(engine: IoEngine) {
    for (frontend, limit, offered) in [
        (None, PERSISTENT_GRANTS_PER_QUEUE, "1"),
        (Some("0"), PERSISTENT_GRANTS_PER_QUEUE, "1"),
        (Some("yes"), PERSISTENT_GRANTS_PER_QUEUE, "1"),
        (Some("1"), 0, "0"),
    ] {
        let cfg = Cfg {
            persistent: false,
            limit,
            ..Cfg::new(engine, false)
        };
        let w = World::new(1, cfg);
        let (be, fe, img) = w.add_disk(21, 51712, "w");
        wait_for(
            &w.store.connect(),
            &format!("{be}/feature-persistent"),
            offered,
        );
        let mut f = Front::connect_with(&w, w.guest(21), &be, &fe, 0, 1, frontend);
        let (a, _) = f.data_page(0, Some(0x51), false);
        for i in 0..3 {
            assert_eq!(write_pages(&mut f, 8 * i, &[a]), BlkifRsp::Okay);
        }
        assert_eq!(image_bytes(&img, 16, 4096), vec![0x51; 4096]);
        assert_eq!(
            w.grants.maps_made(),
            1,
            "{frontend:?}/{limit}: only the ring"
        );
        assert_eq!(w.grants.segments_copied(), 3, "{frontend:?}/{limit}");
        assert!(f.guest.try_revoke(a), "not kept mapped");
    }
}

/// Beyond the limit a new reference is copied, not mapped, and nothing is evicted; the
/// count never exceeds the limit (the default 1056 too), even for one request with more
/// pages than the limit; the data is right either way.
pub(crate) fn persistent_grants_full_cache_copies(engine: IoEngine) {
    let cfg = Cfg {
        limit: 4,
        ..Cfg::new(engine, true)
    };
    let w = World::new(1, cfg);
    let (be, fe, img) = w.add_disk(22, 51712, "w");
    let mut f = Front::connect(&w, w.guest(22), &be, &fe, 0, 1);
    let g: Vec<u32> = (0..5)
        .map(|i| f.data_page(i, Some(0x60 + i as u8), false).0)
        .collect();
    assert_eq!(write_pages(&mut f, 0, &g[..4]), BlkifRsp::Okay);
    assert_eq!(w.grants.segments_copied(), 0);
    assert_eq!(write_pages(&mut f, 64, &g[4..5]), BlkifRsp::Okay);
    assert_eq!(f.guest.mapped(g[4]), 0, "g4 copied, not mapped");
    assert_eq!(w.grants.segments_copied(), 1);
    assert_eq!(image_bytes(&img, 64, 4096), vec![0x64; 4096]);
    for (i, &r) in g[..4].iter().enumerate() {
        assert_eq!(f.guest.mapped(r), 1, "g{i} kept");
    }
    assert_eq!(w.grants.live_mappings(), 1 + 4);
    // One request of 11 pages through a full cache of 4: right data, still 4 mappings.
    let many: Vec<u32> = (0..11)
        .map(|i| f.data_page(20 + i, Some(0x70 + i as u8), false).0)
        .collect();
    assert_eq!(write_pages(&mut f, 128, &many), BlkifRsp::Okay);
    for i in 0..11u64 {
        assert_eq!(
            image_bytes(&img, 128 + 8 * i, 4096),
            vec![0x70 + i as u8; 4096]
        );
    }
    // A generation (4 uses) after the first turned-away use, the least recently used
    // mapping not used since goes (5 % of 4, at least one): g0 at the request's 5th
    // page, g1 at its 9th; those two pages were mapped, the other 9 copied.
    assert_eq!(w.grants.live_mappings(), 1 + 4);
    assert_eq!(w.grants.segments_copied(), 1 + 9);
    assert_eq!((f.guest.mapped(g[0]), f.guest.mapped(g[1])), (0, 0));
    assert_eq!((f.guest.mapped(many[4]), f.guest.mapped(many[8])), (1, 1));
    // A read gives the disk's bytes in a page mapped at the start and in one mapped
    // after a purge.
    let (r, r_page) = f.data_page(40, Some(0), false);
    let segs = [
        BlkifRequestSegment::new(g[2], 0, 7),
        BlkifRequestSegment::new(r, 0, 7),
    ];
    assert_eq!(f.rw(BlkifOp::Read, 128, &segs), BlkifRsp::Okay);
    let mut got = vec![0u8; 4096];
    for (page, want) in [(64 + 2, 0x70), (r_page, 0x71)] {
        f.guest.page(page).read_bytes(0, &mut got).unwrap();
        assert_eq!(got, vec![want; 4096], "page {page}");
    }
    // (r was mapped: g3 was purged a generation after the purge at the 9th page.)
    assert_eq!(w.grants.segments_copied(), 1 + 9);
    assert_eq!((f.guest.mapped(g[3]), f.guest.mapped(r)), (0, 1));
    assert_eq!(w.grants.live_mappings(), 1 + 4);
    drop(w);

    // The default limit: 1100 distinct references (all of a few pages) in 100 requests.
    let w = World::new(1, Cfg::new(engine, true));
    let (be, fe, _) = w.add_disk(23, 51712, "w");
    let mut f = Front::connect(&w, w.guest(23), &be, &fe, 0, 1);
    for r in 0..100u64 {
        let refs: Vec<u32> = (0..11)
            .map(|_| f.guest.grant(64 + r as usize % 32, false))
            .collect();
        assert_eq!(write_pages(&mut f, 88 * (r % 20), &refs), BlkifRsp::Okay);
        assert!(w.grants.live_mappings() <= 1 + PERSISTENT_GRANTS_PER_QUEUE);
    }
    assert_eq!(w.grants.live_mappings(), 1 + PERSISTENT_GRANTS_PER_QUEUE);
    assert_eq!(w.grants.maps_made(), 1 + PERSISTENT_GRANTS_PER_QUEUE);
    assert_eq!(
        w.grants.segments_copied(),
        1100 - PERSISTENT_GRANTS_PER_QUEUE
    );
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0);
}

/// Per-queue caches; reconnecting (with or without the feature) starts from nothing;
/// a toolstack detach unmaps everything.
pub(crate) fn persistent_grants_across_reconnect(engine: IoEngine) {
    let w = World::new(2, Cfg::new(engine, true));
    let (be, fe, img) = w.add_disk(24, 51712, "w");
    let guest = w.guest(24);
    let mut f = Front::connect(&w, guest.clone(), &be, &fe, 0, 2);
    let (a, _) = f.data_page(0, Some(0x24), false);
    for q in 0..2 {
        let id = f.id();
        let mut req = BlkifRequest {
            operation: BlkifOp::Write as u8,
            nr_segments: 1,
            id,
            sector_number: 8 * q as u64,
            ..Default::default()
        };
        req.seg[0] = BlkifRequestSegment::new(a, 0, 7);
        assert_eq!(status(f.submit(q, req)), BlkifRsp::Okay);
    }
    assert_eq!(guest.mapped(a), 2, "one mapping per queue");
    assert_eq!(w.grants.live_mappings(), 2 + 2);
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0);
    for k in [
        "multi-queue-num-queues",
        "queue-0",
        "queue-1",
        "feature-persistent",
    ] {
        f.xs.rm(XBT_NULL, &format!("{fe}/{k}")).unwrap();
    }
    // Reconnect without the feature: grant copy.
    let mut f2 = Front::connect_with(&w, guest.clone(), &be, &fe, 0, 1, None);
    let copied = w.grants.segments_copied();
    assert_eq!(write_pages(&mut f2, 16, &[a]), BlkifRsp::Okay);
    assert_eq!(w.grants.segments_copied(), copied + 1);
    assert_eq!((guest.mapped(a), w.grants.live_mappings()), (0, 1));
    close_and_restart(&f2);
    assert_eq!(w.grants.live_mappings(), 0);
    // And with it again: mapped afresh.
    let mut f3 = Front::connect(&w, guest.clone(), &be, &fe, 0, 1);
    let (b, _) = f3.data_page(1, Some(0x25), false);
    assert_eq!(write_pages(&mut f3, 24, &[a, b]), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 24, 8192)[..4096], vec![0x24; 4096][..]);
    assert_eq!((guest.mapped(a), guest.mapped(b)), (1, 1));
    // The toolstack detaches it: everything unmapped.
    f3.xs
        .write(XBT_NULL, &format!("{be}/online"), b"0")
        .unwrap();
    f3.xs.write(XBT_NULL, &format!("{be}/state"), b"5").unwrap();
    wait_for(&f3.xs, &format!("{be}/state"), "6");
    assert_eq!(w.grants.live_mappings(), 0);
    assert!(guest.try_revoke(a) && guest.try_revoke(b));
}

/// A frontend that agreed but hands references it did not grant, or read-only ones,
/// gets BLKIF_RSP_ERROR for that request when the access needs them (a read-only page
/// is fine for a write: it falls back to grant copy); nothing failing stays mapped.
pub(crate) fn hostile_grefs_with_persistent_grants(engine: IoEngine) {
    let w = World::new(1, Cfg::new(engine, true));
    let (be, fe, img) = w.add_disk(25, 51712, "w");
    let mut f = Front::connect(&w, w.guest(25), &be, &fe, 0, 1);
    let (a, apage) = f.data_page(0, Some(0x5a), false);
    let ro = f.guest.grant(apage + 1, true);
    f.guest
        .mem()
        .fill((apage + 1) * XEN_PAGE_SIZE, XEN_PAGE_SIZE, 0x5b)
        .unwrap();
    // Not granted at all, alone and next to a good one; as an indirect page.
    assert_eq!(write_pages(&mut f, 0, &[9999]), BlkifRsp::Error);
    assert_eq!(write_pages(&mut f, 0, &[a, 9999]), BlkifRsp::Error);
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(9999, 0, 7)]),
        BlkifRsp::Error
    );
    let id = f.id();
    let mut grefs = [GrantRef(0); 8];
    grefs[0] = GrantRef(9998);
    let req = BlkifRequestIndirect {
        operation: BlkifOp::Indirect as u8,
        indirect_op: BlkifOp::Read as u8,
        nr_segments: 3,
        id,
        indirect_grefs: grefs,
        ..Default::default()
    };
    assert_eq!(status(f.submit(0, as_slot(&req))), BlkifRsp::Error);
    assert_eq!(
        image_bytes(&img, 0, 8192),
        vec![0xee; 8192],
        "nothing written"
    );
    // Read-only: a read into it fails; a write from it is served through a read-only
    // mapping, kept; a read into it later still fails (grant copy, not the mapping) and
    // leaves the page alone.
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(ro, 0, 7)]),
        BlkifRsp::Error
    );
    assert_eq!(f.guest.mapped(ro), 0);
    assert_eq!(write_pages(&mut f, 8, &[ro]), BlkifRsp::Okay);
    assert_eq!(image_bytes(&img, 8, 4096), vec![0x5b; 4096]);
    assert_eq!((f.guest.mapped(ro), f.guest.mapped_writable(ro)), (1, 0));
    assert_eq!(write_pages(&mut f, 16, &[ro]), BlkifRsp::Okay);
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(ro, 0, 7)]),
        BlkifRsp::Error
    );
    let mut back = vec![0u8; XEN_PAGE_SIZE];
    f.guest
        .mem()
        .read_bytes((apage + 1) * XEN_PAGE_SIZE, &mut back)
        .unwrap();
    assert_eq!(back, vec![0x5b; XEN_PAGE_SIZE], "read-only page untouched");
    assert_eq!((f.guest.mapped(ro), f.guest.mapped_writable(ro)), (1, 0));
    // Flipped to read-only (revoked and granted again read-only under the same number)
    // before the backend mapped it: refused like any read-only page.
    let (flip, fpage) = f.data_page(2, Some(0), false);
    f.guest.revoke(flip);
    f.guest.grant_at(flip, fpage, true);
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(flip, 0, 7)]),
        BlkifRsp::Error
    );
    // Once mapped, a persistent grant stays mapped (Xen keeps a mapped page mapped
    // whatever the guest writes in its grant table): a later flip changes nothing.
    assert_eq!(
        f.rw(BlkifOp::Read, 0, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    f.guest.revoke(a);
    f.guest.grant_at(a, apage, true);
    assert_eq!(
        f.rw(BlkifOp::Read, 8, &[BlkifRequestSegment::new(a, 0, 7)]),
        BlkifRsp::Okay
    );
    // The ring, the good page (writable) and the read-only one are mapped; the device
    // is still connected; close unmaps them.
    assert_eq!(w.grants.live_mappings(), 1 + 2);
    assert_eq!((f.guest.mapped_writable(a), f.guest.mapped(flip)), (1, 0));
    wait_for(&f.xs, &format!("{be}/state"), "4");
    close_and_restart(&f);
    assert_eq!(w.grants.live_mappings(), 0);
}
