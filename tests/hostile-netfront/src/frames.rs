//! What the hostile netfront puts on the wire: TX slots, extra-info slots, ARP.

use sluice_abi::netif::{GrantRef, NetTxFlags, NetifExtraInfo, NetifTxRequest};
use std::net::Ipv4Addr;
use zerocopy::IntoBytes;

/// Who we are on the wire.
pub struct Ident {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub peer: Ipv4Addr,
}

/// A TX request slot.
pub fn tx(gref: u32, offset: u16, flags: NetTxFlags, id: u16, size: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref: GrantRef(gref),
        offset,
        flags: flags.bits(),
        id,
        size,
    }
}

/// An extra-info slot of raw type `t` (flags: `more`).
pub fn extra(t: u8, more: bool) -> NetifTxRequest {
    let e = NetifExtraInfo {
        extra_type: t,
        flags: u8::from(more),
        ..Default::default()
    };
    let mut b = [0u8; size_of::<NetifTxRequest>()];
    let src = e.as_bytes();
    b[..src.len()].copy_from_slice(src);
    zerocopy::FromBytes::read_from_bytes(&b).expect("an extra-info slot is a TX slot")
}

/// A broadcast ARP request for `who.peer` (60 bytes, padded).
pub fn arp_request(who: &Ident) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&who.mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&who.mac);
    f[28..32].copy_from_slice(&who.ip.octets());
    f[38..42].copy_from_slice(&who.peer.octets());
    f
}

pub fn is_arp_reply(f: &[u8], who: &Ident) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && f[20..22] == [0, 2]
        && f[28..32] == who.peer.octets()
        && f[38..42] == who.ip.octets()
}
