//! The ring geometry and notification rule against Xen's own `io/ring.h`, compiled.
//!
//! A C probe (built with the system `cc` against `/usr/include/xen`) instantiates
//! `DEFINE_RING_TYPES` for the real protocols (blkif, netif tx/rx/ctrl) and for
//! synthetic request/response pairs whose union needs size rounding, and prints: the
//! header field offsets, `offsetof(ring)`, `sizeof(ring[0])`, `__CONST_RING_SIZE` for
//! 1, 2, 4 and 8 pages, and `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` on a table of
//! (old, new, event) triples. Each number must equal ours.
//!
//! Missing `cc` or headers fail the test (`cargo xtask setup` installs them).

use sluice_abi::blkif::{BlkifRequest, BlkifResponse};
use sluice_abi::netif::{
    NetifCtrlRequest, NetifCtrlResponse, NetifRxRequest, NetifRxResponse, NetifTxRequest,
    NetifTxResponse,
};
use sluice_abi::ring::{
    entry_size, needs_notify, ring_size, SringHeader, ENTRIES_OFFSET, PVT_OFFSET, REQ_EVENT_OFFSET,
    REQ_PROD_OFFSET, RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};
use std::collections::BTreeMap;
use std::mem::offset_of;
use std::process::Command;

const PAGES: [usize; 4] = [1, 2, 4, 8];

/// (C ring tag, our slot size) for each ring type the probe instantiates.
fn rings() -> Vec<(&'static str, usize)> {
    vec![
        ("blkif", entry_size::<BlkifRequest, BlkifResponse>()),
        ("netif_tx", entry_size::<NetifTxRequest, NetifTxResponse>()),
        ("netif_rx", entry_size::<NetifRxRequest, NetifRxResponse>()),
        (
            "xen_netif_ctrl",
            entry_size::<NetifCtrlRequest, NetifCtrlResponse>(),
        ),
        // union { uint32_t[3]; uint64_t } = 16: size rounded up to the larger alignment.
        ("syn_12_8", entry_size::<[u32; 3], u64>()),
        // union { uint8_t[3]; uint16_t } = 4.
        ("syn_3_2", entry_size::<[u8; 3], u16>()),
        // union { uint8_t[1]; uint8_t[1] } = 1: 4032 entries fit a page -> 2048.
        ("syn_1_1", entry_size::<[u8; 1], [u8; 1]>()),
        // 200-byte entries: 20 fit a page -> 16.
        ("syn_200_8", entry_size::<[u64; 25], u64>()),
    ]
}

/// (old, new, event) triples for the notification rule, including wrap-around.
const NOTIFY_CASES: [(u32, u32, u32); 12] = [
    (0, 1, 1),
    (1, 2, 1),
    (0, 5, 3),
    (0, 5, 6),
    (0, 5, 0),
    (3, 3, 3),
    (u32::MAX - 1, 2, 0),
    (u32::MAX - 1, 2, 3),
    (u32::MAX - 1, 2, u32::MAX),
    (u32::MAX - 1, 2, u32::MAX - 1),
    (100, 132, 132),
    (100, 132, 133),
];

const PROBE_HEAD: &str = r#"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* Older interface versions spell the barriers mb()/rmb()/wmb(). */
#define mb()  __sync_synchronize()
#define rmb() __sync_synchronize()
#define wmb() __sync_synchronize()
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
struct syn_12_8_req { uint32_t a[3]; };   struct syn_12_8_rsp { uint64_t x; };
struct syn_3_2_req { uint8_t a[3]; };     struct syn_3_2_rsp { uint16_t x; };
struct syn_1_1_req { uint8_t a; };        struct syn_1_1_rsp { uint8_t x; };
struct syn_200_8_req { uint64_t a[25]; }; struct syn_200_8_rsp { uint64_t x; };
DEFINE_RING_TYPES(syn_12_8, struct syn_12_8_req, struct syn_12_8_rsp);
DEFINE_RING_TYPES(syn_3_2, struct syn_3_2_req, struct syn_3_2_rsp);
DEFINE_RING_TYPES(syn_1_1, struct syn_1_1_req, struct syn_1_1_rsp);
DEFINE_RING_TYPES(syn_200_8, struct syn_200_8_req, struct syn_200_8_rsp);

static unsigned notify(unsigned old, unsigned new, unsigned event) {
    static union { struct blkif_sring s; char page[4096]; } u;
    blkif_front_ring_t r;
    int n;
    memset(&u, 0, sizeof(u));
    FRONT_RING_INIT(&r, &u.s, 4096);
    u.s.req_prod = old;
    u.s.req_event = event;
    r.req_prod_pvt = new;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r, n);
    return n ? 1 : 0;
}

int main(void) {
    printf("hdr.req_prod %zu\n", offsetof(struct blkif_sring, req_prod));
    printf("hdr.req_event %zu\n", offsetof(struct blkif_sring, req_event));
    printf("hdr.rsp_prod %zu\n", offsetof(struct blkif_sring, rsp_prod));
    printf("hdr.rsp_event %zu\n", offsetof(struct blkif_sring, rsp_event));
    printf("hdr.pvt %zu\n", offsetof(struct blkif_sring, pvt));
    printf("hdr.pvt.size %zu\n", sizeof(((struct blkif_sring *)0)->pvt));
    printf("hdr.pad %zu\n", offsetof(struct blkif_sring, __pad));
    printf("hdr.pad.size %zu\n", sizeof(((struct blkif_sring *)0)->__pad));
"#;

fn probe() -> BTreeMap<String, u64> {
    let mut c = String::from(PROBE_HEAD);
    for (tag, _) in rings() {
        c += &format!(
            "    printf(\"{tag}.ring %zu\\n\", offsetof(struct {tag}_sring, ring));\n\
             \x20   printf(\"{tag}.entry %zu\\n\", sizeof(((struct {tag}_sring *)0)->ring[0]));\n"
        );
        for p in PAGES {
            c += &format!(
                "    printf(\"{tag}.size.{p} %lu\\n\", (unsigned long)__CONST_RING_SIZE({tag}, {p} * 4096));\n"
            );
        }
    }
    for (i, (old, new, event)) in NOTIFY_CASES.iter().enumerate() {
        c += &format!("    printf(\"notify.{i} %u\\n\", notify({old}u, {new}u, {event}u));\n");
    }
    c += "    return 0;\n}\n";

    let dir = std::env::temp_dir().join(format!("sluice-ring-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, c).unwrap();
    let cc = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("`cc` not found: run `cargo xtask setup` (installs gcc and libxen-dev)");
    assert!(
        cc.status.success(),
        "compiling the ring probe against /usr/include/xen failed (libxen-dev missing? run `cargo xtask setup`):\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn ring_geometry_and_notify_rule_match_ring_h() {
    let c = probe();
    let get = |k: &str| *c.get(k).unwrap_or_else(|| panic!("probe printed no {k}"));

    assert_eq!(get("hdr.req_prod"), REQ_PROD_OFFSET as u64);
    assert_eq!(get("hdr.req_event"), REQ_EVENT_OFFSET as u64);
    assert_eq!(get("hdr.rsp_prod"), RSP_PROD_OFFSET as u64);
    assert_eq!(get("hdr.rsp_event"), RSP_EVENT_OFFSET as u64);
    assert_eq!(get("hdr.pvt"), PVT_OFFSET as u64);
    assert_eq!(get("hdr.pvt"), offset_of!(SringHeader, pvt) as u64);
    assert_eq!(get("hdr.pvt.size"), 4);
    assert_eq!(get("hdr.pad"), offset_of!(SringHeader, pad) as u64);
    assert_eq!(get("hdr.pad.size"), 44);
    assert_eq!(offset_of!(SringHeader, req_event), REQ_EVENT_OFFSET);
    assert_eq!(offset_of!(SringHeader, rsp_prod), RSP_PROD_OFFSET);
    assert_eq!(offset_of!(SringHeader, rsp_event), RSP_EVENT_OFFSET);

    for (tag, entry) in rings() {
        assert_eq!(
            get(&format!("{tag}.ring")),
            ENTRIES_OFFSET as u64,
            "{tag}: offsetof(ring)"
        );
        assert_eq!(
            get(&format!("{tag}.entry")),
            entry as u64,
            "{tag}: sizeof(ring[0])"
        );
        for p in PAGES {
            assert_eq!(
                Ok(get(&format!("{tag}.size.{p}")) as u32),
                ring_size(p * 4096, entry),
                "{tag}: ring size of {p} pages"
            );
        }
    }
    // Known values, so the comparison is not vacuous.
    assert_eq!(get("blkif.size.1"), 32);
    assert_eq!(get("netif_tx.size.1"), 256);
    assert_eq!(get("syn_1_1.size.1"), 2048);
    assert_eq!(get("syn_200_8.size.1"), 16);

    for (i, &(old, new, event)) in NOTIFY_CASES.iter().enumerate() {
        assert_eq!(
            get(&format!("notify.{i}")) == 1,
            needs_notify(old, new, event),
            "notify rule for old {old}, new {new}, event {event}"
        );
    }
}
