//! sluice-netback's TX by mapping (`--tx-map`) on the fake Xen world: packets reach the
//! tap whole with their offloads, from the mapped pages (one mapping per batch), a
//! batch with a bad grant falls back to grant copy and drops only the bad packet, and
//! a packet whose headers pass the copied head is copied out whole.

mod common;
use common::*;

#[test]
fn mapped_tx_packets_reach_the_tap_with_their_offloads() {
    let w = World::tx_by_map(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let maps = w.grants.maps_made();
    // A checksum-offload UDP packet split over two pages at odd offsets (netfront's frags).
    let frame = udp_frame(1100);
    let g1 = f.fill(DATA, 100, &frame[..60]);
    let g2 = f.fill(DATA + 1, 7, &frame[60..]);
    let rsp = f.send(&[
        tx(
            g1,
            100,
            NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED | NetTxFlags::MORE_DATA,
            1,
            1100,
        ),
        tx(g2, 7, NetTxFlags::empty(), 2, 1040),
    ]);
    assert_eq!(
        rsp.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, 0), (2, 0)]
    );
    let (h, data) = read_frame(&tap);
    assert_eq!(data, frame);
    assert_eq!(
        (h.flags, h.csum_start, h.csum_offset),
        (vnet::F_NEEDS_CSUM, 34, 6)
    );
    assert_eq!(w.grants.maps_made(), maps + 1, "one mapping for the batch");
    assert_eq!(
        w.grants.live_mappings(),
        2,
        "only the two rings stay mapped"
    );

    // A TSO packet over three pages: its head (headers) copied, the rest mapped.
    let frame = tcp_frame(9000);
    let g: Vec<GrantRef> = (0..3)
        .map(|i| {
            f.fill(
                DATA + 2 + i,
                0,
                &frame[i * 4096..(9000).min((i + 1) * 4096)],
            )
        })
        .collect();
    let extra = NetifExtraInfo::encode(
        &NetifExtra::Gso {
            size: 1448,
            gso_type: NetifGsoType::TcpV4,
            features: 0,
        },
        false,
    );
    let rsp = f.send(&[
        tx(
            g[0],
            0,
            NetTxFlags::CSUM_BLANK | NetTxFlags::MORE_DATA | NetTxFlags::EXTRA_INFO,
            3,
            9000,
        ),
        extra_slot(&extra),
        tx(g[1], 0, NetTxFlags::MORE_DATA, 4, 4096),
        tx(g[2], 0, NetTxFlags::empty(), 5, 9000 - 8192),
    ]);
    assert_eq!(
        rsp.iter().map(|r| r.status).collect::<Vec<_>>(),
        [0, NetifRsp::Null.raw(), 0, 0]
    );
    let (h, data) = read_frame(&tap);
    assert_eq!(data, frame);
    assert_eq!(
        (h.gso_type, h.gso_size, h.hdr_len, h.csum_start),
        (vnet::GSO_TCPV4, 1448, 54, 34)
    );
    assert_eq!(w.grants.maps_made(), maps + 2);
}

#[test]
fn a_batch_with_a_bad_grant_is_copied_and_only_the_bad_packet_dropped() {
    let w = World::tx_by_map(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    let maps = w.grants.maps_made();
    let frame = udp_frame(300);
    let good = f.fill(DATA, 0, &frame);
    // Published together: one turn, one batch, whose mapping fails on the bad grant.
    let rsp = f.send(&[
        tx(good, 0, NetTxFlags::empty(), 1, 300),
        tx(GrantRef(9999), 0, NetTxFlags::empty(), 2, 300),
        tx(good, 0, NetTxFlags::empty(), 3, 300),
    ]);
    assert_eq!(
        rsp.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, 0), (2, NetifRsp::Error.raw()), (3, 0)]
    );
    assert_eq!(read_frame(&tap).1, frame);
    assert_eq!(read_frame(&tap).1, frame);
    assert_eq!(w.grants.maps_made(), maps, "nothing mapped");
    assert_eq!(w.grants.live_mappings(), 2);
}

#[test]
fn headers_past_the_copied_head_are_copied_out_whole() {
    let w = World::tx_by_map(1);
    let f = connected(&w, 5);
    let tap = w.tap(VIF, 0);
    // IPv6, a 256-byte hop-by-hop header, then TCP at byte 310 (past TX_HEAD).
    let mut frame = vec![0u8; 2000];
    frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    frame[14] = 0x60;
    frame[20] = 0; // next header: hop-by-hop
    frame[54] = 6; // hop-by-hop's next header: TCP
    frame[55] = 31; // (31 + 1) * 8 = 256 bytes
    frame[310 + 12] = 5 << 4;
    for (i, b) in frame.iter_mut().enumerate().skip(330) {
        *b = i as u8;
    }
    const { assert!(310 > sluice_netback::tx::TX_HEAD) };
    let g = f.fill(DATA, 0, &frame);
    let rsp = f.send(&[tx(
        g,
        0,
        NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED,
        1,
        2000,
    )]);
    assert_eq!(rsp[0].status, 0);
    let (h, data) = read_frame(&tap);
    assert_eq!(data, frame);
    assert_eq!(
        (h.flags, h.csum_start, h.csum_offset),
        (vnet::F_NEEDS_CSUM, 310, 16)
    );
}
