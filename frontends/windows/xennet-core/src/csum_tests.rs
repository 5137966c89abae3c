//! Frames built here, checksums checked against a reference written apart (a plain
//! 16-bit sum over an explicit pseudo-header), and a backend's fill-in emulated.

use super::*;
use alloc::vec;
use alloc::vec::Vec;

const SRC4: [u8; 4] = [10, 0, 0, 1];
const DST4: [u8; 4] = [10, 0, 0, 2];
const SRC6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 1];

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

/// Ethernet + IP + TCP (20-byte header) or UDP + `data`, then `pad` zero bytes; the
/// L4 checksum field holds 0x1234 (garbage) and the IPv4 header checksum 0.
fn frame(v6: bool, proto: u8, data: &[u8], pad: usize) -> Vec<u8> {
    let mut l4 = if proto == TCP {
        let mut t = vec![0u8; 20];
        t[0..4].copy_from_slice(&[0x12, 0x34, 0x00, 0x50]);
        t[12] = 5 << 4;
        t[16..18].copy_from_slice(&[0x12, 0x34]);
        t
    } else {
        let mut u = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0x12, 0x34];
        u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        u
    };
    l4.extend_from_slice(data);
    let mut f = vec![0xff; 12];
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&SRC6);
        f.extend_from_slice(&DST6);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
    }
    f.extend_from_slice(&l4);
    f.extend(core::iter::repeat_n(0, pad));
    f
}

fn l3_len(v6: bool) -> usize {
    if v6 {
        40
    } else {
        20
    }
}

/// The reference: the RFC 1071 sum over pseudo-header + L4 bytes with the field 0.
fn reference(f: &[u8], v6: bool, proto: u8, l4_len: usize) -> u16 {
    let l4 = 14 + l3_len(v6);
    let mut bytes = Vec::new();
    if v6 {
        bytes.extend_from_slice(&SRC6);
        bytes.extend_from_slice(&DST6);
        bytes.extend_from_slice(&(l4_len as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        bytes.extend_from_slice(&SRC4);
        bytes.extend_from_slice(&DST4);
        bytes.extend_from_slice(&[0, proto]);
        bytes.extend_from_slice(&(l4_len as u16).to_be_bytes());
    }
    let mut seg = f[l4..l4 + l4_len].to_vec();
    let at = if proto == TCP { 16 } else { 6 };
    seg[at] = 0;
    seg[at + 1] = 0;
    bytes.extend_from_slice(&seg);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut s: u32 = 0;
    for w in bytes.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    let c = !(s as u16);
    if c == 0 && proto == UDP {
        0xffff
    } else {
        c
    }
}

fn field(f: &[u8], v6: bool, proto: u8) -> u16 {
    let at = 14 + l3_len(v6) + if proto == TCP { 16 } else { 6 };
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// What netback does with csum_blank: sum from the L4 header with the field as is.
fn backend_fills(f: &[u8], v6: bool, l4_len: usize) -> u16 {
    let l4 = 14 + l3_len(v6);
    !fold(sum(&f[l4..l4 + l4_len], 0))
}

const ALL: BackendCaps = BackendCaps {
    csum4: true,
    csum6: true,
    tso4: true,
    tso6: true,
};

#[test]
fn tx_checksums_left_to_the_backend_come_out_right() {
    for v6 in [false, true] {
        for proto in [TCP, UDP] {
            for n in [0, 1, 333, 1400] {
                let mut f = frame(v6, proto, &payload(n, 3), 0);
                let ck = if proto == TCP {
                    tx_bits::TCP
                } else {
                    tx_bits::UDP
                };
                let p = tx_prepare(&mut f, ck, 0, ALL).unwrap();
                assert_eq!(p.off.csum, TxCsum::Partial);
                assert_eq!(p.off.gso, None);
                let l4_len = n + if proto == TCP { 20 } else { 8 };
                let want = reference(&f, v6, proto, l4_len);
                let got = backend_fills(&f, v6, l4_len);
                // UDP's 0 -> 0xffff is the backend's business.
                let zero_udp = proto == UDP && got == 0 && want == 0xffff;
                assert!(
                    got == want || zero_udp,
                    "{v6} {proto} {n}: {got:#x} {want:#x}"
                );
            }
        }
    }
}

#[test]
fn without_backend_offload_the_checksum_is_computed_here() {
    for v6 in [false, true] {
        for proto in [TCP, UDP] {
            let mut f = frame(v6, proto, &payload(101, 9), 0);
            let ck = tx_bits::TCP | tx_bits::UDP;
            let p = tx_prepare(&mut f, ck, 0, BackendCaps::default()).unwrap();
            assert_eq!(p.off, TxOffload::default());
            let l4_len = 101 + if proto == TCP { 20 } else { 8 };
            assert_eq!(field(&f, v6, proto), reference(&f, v6, proto, l4_len));
        }
    }
}

#[test]
fn ethernet_padding_is_not_payload_and_the_ipv4_header_checksum_is_filled() {
    let mut f = frame(false, UDP, &payload(5, 1), 13);
    let ck = tx_bits::IS_IPV4 | tx_bits::UDP | tx_bits::IP_HEADER;
    tx_prepare(&mut f, ck, 0, BackendCaps::default()).unwrap();
    assert_eq!(field(&f, false, UDP), reference(&f, false, UDP, 13));
    assert_eq!(fold(sum(&f[14..34], 0)), 0xffff);
}

#[test]
fn lso_becomes_one_gso_packet_with_lengths_and_pseudo_header_linux_expects() {
    for v6 in [false, true] {
        let data = payload(20000, 5);
        let mut f = frame(v6, TCP, &data, 0);
        // NDIS' LSO: IP length 0, pseudo-header sum without the length.
        if v6 {
            f[18..20].copy_from_slice(&[0, 0]);
        } else {
            f[16..18].copy_from_slice(&[0, 0]);
        }
        let p = tx_prepare(&mut f, 0, 1448 | lso_bits::TYPE_V2, ALL).unwrap();
        let t = if v6 {
            NetifGsoType::TcpV6
        } else {
            NetifGsoType::TcpV4
        };
        assert_eq!(p.off.gso, Some((t, 1448)));
        assert_eq!(p.off.csum, TxCsum::Partial);
        assert_eq!(p.lso_complete, Some(lso_bits::TYPE_V2));
        let h = parse(&f, false).expect("lengths now right");
        assert_eq!(h.l4_len, 20020);
        if !v6 {
            assert_eq!(fold(sum(&f[14..34], 0)), 0xffff);
        }
        let got = backend_fills(&f, v6, 20020);
        assert_eq!(got, reference(&f, v6, TCP, 20020));
        // LSO v1 wants the TCP payload written back.
        let mut f1 = frame(v6, TCP, &data, 0);
        let p1 = tx_prepare(&mut f1, 0, 1448, ALL).unwrap();
        assert_eq!(p1.lso_complete, Some(20000));
    }
}

#[test]
fn requests_that_cannot_be_met_are_refused() {
    let mut udp = frame(false, UDP, &payload(3000, 1), 0);
    assert_eq!(tx_prepare(&mut udp, 0, 1448, ALL), Err(Refused::Unparsable));
    let mut v6 = frame(true, TCP, &payload(3000, 1), 0);
    let no6 = BackendCaps { tso6: false, ..ALL };
    assert_eq!(tx_prepare(&mut v6, 0, 1448, no6), Err(Refused::NoTso));
    let mut empty = frame(false, TCP, &[], 0);
    assert_eq!(tx_prepare(&mut empty, 0, 1448, ALL), Err(Refused::BadMss));
    // IPv6 with an extension header (hop-by-hop), an IPv4 fragment, a truncated frame,
    // a UDP frame asked for a TCP checksum.
    let mut ext = frame(true, TCP, &payload(10, 1), 0);
    ext[20] = 0;
    assert_eq!(
        tx_prepare(&mut ext, tx_bits::TCP, 0, ALL),
        Err(Refused::Unparsable)
    );
    let mut frag = frame(false, TCP, &payload(10, 1), 0);
    frag[20] = 0x20;
    assert_eq!(
        tx_prepare(&mut frag, tx_bits::TCP, 0, ALL),
        Err(Refused::Unparsable)
    );
    let mut short = frame(false, TCP, &payload(10, 1), 0);
    short.truncate(40);
    assert_eq!(
        tx_prepare(&mut short, tx_bits::TCP, 0, ALL),
        Err(Refused::Unparsable)
    );
    let mut u = frame(false, UDP, &payload(10, 1), 0);
    assert_eq!(
        tx_prepare(&mut u, tx_bits::TCP, 0, ALL),
        Err(Refused::Unparsable)
    );
    // No request: the frame is left alone.
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let before = arp.clone();
    assert_eq!(
        tx_prepare(&mut arp, 0, 0, ALL).unwrap().off,
        TxOffload::default()
    );
    assert_eq!(arp, before);
}

#[test]
fn received_blank_checksums_are_filled_and_vouched_frames_marked() {
    for v6 in [false, true] {
        for proto in [TCP, UDP] {
            let mut f = frame(v6, proto, &payload(777, 2), 0);
            if !v6 {
                let h = parse(&f, false).unwrap();
                fill_ipv4(&mut f, &h);
            }
            let bits = rx_info(&mut f, true, false);
            let l4_len = 777 + if proto == TCP { 20 } else { 8 };
            assert_eq!(field(&f, v6, proto), reference(&f, v6, proto, l4_len));
            let l4 = if proto == TCP {
                rx_bits::TCP_SUCCEEDED
            } else {
                rx_bits::UDP_SUCCEEDED
            };
            let ip = if v6 { 0 } else { rx_bits::IP_SUCCEEDED };
            assert_eq!(bits, l4 | ip);
        }
    }
    // Validated, IPv4 header checksum wrong: the L4 bit only, nothing rewritten.
    let mut f = frame(false, TCP, &payload(50, 2), 0);
    let before = f.clone();
    assert_eq!(rx_info(&mut f, false, true), rx_bits::TCP_SUCCEEDED);
    assert_eq!(f, before);
    assert_eq!(rx_info(&mut f, false, false), 0);
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(rx_info(&mut arp, true, true), 0);
}
