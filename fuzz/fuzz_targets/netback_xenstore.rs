//! xenstore node values as `sluice-netback` parses them: a hostile frontend's nodes
//! (`tx-ring-ref`, `rx-ring-ref`, `event-channel`, `event-channel-tx`/`-rx`,
//! `request-rx-copy`, `feature-rx-notify`, `feature-sg`, `feature-gso-tcpv4`/`v6`,
//! `feature-no-csum-offload`, `feature-ipv6-csum-offload`, `multi-queue-num-queues`,
//! `queue-N/...`, `state`) hold fuzzed values (numbers near the limits, valid grant
//! references and ports, text, non-UTF-8 bytes, missing nodes) while the real `Backend`
//! walks the xenbus state machine over dom0's fake xenstore, grants and event channels
//! (datagram sockets for taps).
//!
//! Checks: nothing panics or hangs; the backend's `state` node is always one of ours
//! (1-6); a vif it reports Connected had a queue count within what it offered; a vif it
//! refused says why (`error` node) and is Closing or Closed.
#![no_main]

#[path = "common/xs_world.rs"]
mod xs_world;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sluice_abi::netif::keys;
use sluice_dom0::xenstore::XBT_NULL;
use sluice_dom0::XenStore;
use sluice_netback::Backend;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use xs_world::{Kind, Val, World};

const ROOT: &str = "/local/domain/0/backend/vif";
const DOMID: u16 = 9;
const MAX_QUEUES: u32 = 2;

#[derive(Arbitrary, Debug)]
struct Input {
    tx_ring_ref: Val,
    rx_ring_ref: Val,
    event_channel: Val,
    event_channel_tx: Val,
    event_channel_rx: Val,
    rx_copy: Val,
    rx_notify: Val,
    /// feature-sg, -gso-tcpv4, -gso-tcpv6, -no-csum-offload, -ipv6-csum-offload
    features: [Val; 5],
    queues: Val,
    /// (queue, which node: 0 tx-ring-ref, 1 rx-ring-ref, 2 event-channel,
    /// 3 event-channel-tx, 4 event-channel-rx, value)
    queue_nodes: Vec<(u8, u8, Val)>,
    hotplug_connected: bool,
    /// Frontend states written, one backend pass after each.
    states: Vec<Val>,
}

fuzz_target!(|input: Input| {
    let w = World::new(DOMID);
    let xs = &w.xs;
    let be = format!("{ROOT}/{DOMID}/0");
    let fe = format!("/local/domain/{DOMID}/device/vif/0");
    for (k, v) in [
        ("frontend", fe.as_str()),
        ("frontend-id", &DOMID.to_string()),
        ("handle", "0"),
        ("online", "1"),
        ("state", "1"),
    ] {
        xs.write(XBT_NULL, &format!("{be}/{k}"), v.as_bytes())
            .unwrap();
    }
    if input.hotplug_connected {
        xs.write(XBT_NULL, &format!("{be}/hotplug-status"), b"connected")
            .unwrap();
    }
    xs.write(XBT_NULL, &format!("{fe}/backend"), be.as_bytes())
        .unwrap();
    xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
    w.put(
        &format!("{fe}/{}", keys::TX_RING_REF),
        &input.tx_ring_ref,
        Kind::GrantRef,
    );
    w.put(
        &format!("{fe}/{}", keys::RX_RING_REF),
        &input.rx_ring_ref,
        Kind::GrantRef,
    );
    w.put(
        &format!("{fe}/{}", keys::EVENT_CHANNEL),
        &input.event_channel,
        Kind::Port,
    );
    w.put(
        &format!("{fe}/{}", keys::EVENT_CHANNEL_TX),
        &input.event_channel_tx,
        Kind::Port,
    );
    w.put(
        &format!("{fe}/{}", keys::EVENT_CHANNEL_RX),
        &input.event_channel_rx,
        Kind::Port,
    );
    w.put(
        &format!("{fe}/{}", keys::REQUEST_RX_COPY),
        &input.rx_copy,
        Kind::Plain,
    );
    w.put(
        &format!("{fe}/{}", keys::FEATURE_RX_NOTIFY),
        &input.rx_notify,
        Kind::Plain,
    );
    for (k, v) in [
        keys::FEATURE_SG,
        keys::FEATURE_GSO_TCPV4,
        keys::FEATURE_GSO_TCPV6,
        keys::FEATURE_NO_CSUM_OFFLOAD,
        keys::FEATURE_IPV6_CSUM_OFFLOAD,
    ]
    .iter()
    .zip(&input.features)
    {
        w.put(&format!("{fe}/{k}"), v, Kind::Plain);
    }
    w.put(
        &format!("{fe}/{}", keys::MULTI_QUEUE_NUM_QUEUES),
        &input.queues,
        Kind::Plain,
    );
    for (q, which, v) in input.queue_nodes.iter().take(10) {
        let (key, kind) = match which % 5 {
            0 => (keys::TX_RING_REF, Kind::GrantRef),
            1 => (keys::RX_RING_REF, Kind::GrantRef),
            2 => (keys::EVENT_CHANNEL, Kind::Port),
            3 => (keys::EVENT_CHANNEL_TX, Kind::Port),
            _ => (keys::EVENT_CHANNEL_RX, Kind::Port),
        };
        w.put(&format!("{fe}/queue-{}/{key}", q % 3), v, kind);
    }

    let taps: Arc<std::sync::Mutex<Vec<UnixDatagram>>> = Arc::default();
    let held = taps.clone();
    let mut backend = Backend::new(
        Arc::new(w.store.connect()),
        Arc::new(w.grants.clone()),
        {
            let hub = w.hub.clone();
            move || Ok(hub.endpoint(0))
        },
        Box::new(move |_name: &str| -> Result<UnixDatagram, String> {
            let (ours, theirs) = UnixDatagram::pair().map_err(|e| e.to_string())?;
            ours.set_nonblocking(true).map_err(|e| e.to_string())?;
            held.lock().unwrap().push(theirs);
            Ok(ours)
        }),
        ROOT,
        MAX_QUEUES,
    );
    backend.reconcile();
    for s in input.states.iter().take(6) {
        w.put(&format!("{fe}/state"), s, Kind::Plain);
        backend.reconcile();
        let state = xs.read_opt(XBT_NULL, &format!("{be}/state")).unwrap();
        let state = state.as_deref().unwrap_or("1");
        assert!(
            matches!(state, "1" | "2" | "3" | "4" | "5" | "6"),
            "backend state {state:?}"
        );
        let queues = xs
            .read_opt(XBT_NULL, &format!("{fe}/{}", keys::MULTI_QUEUE_NUM_QUEUES))
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u64>().ok());
        if state == "4" {
            assert!((1..=u64::from(MAX_QUEUES)).contains(&queues.unwrap_or(1)));
        }
        if xs
            .read_opt(XBT_NULL, &format!("{be}/error"))
            .ok()
            .flatten()
            .is_some()
        {
            assert!(matches!(state, "5" | "6"), "refused, yet state {state}");
        }
    }
    // The toolstack removes the vif: every queue thread stops.
    w.remove_device(&be, || backend.reconcile());
    drop(taps);
});
