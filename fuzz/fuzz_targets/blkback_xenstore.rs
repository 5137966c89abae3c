//! xenstore node values as `sluice-blkback` parses them: the toolstack's and a hostile
//! frontend's nodes (`mode`, `ring-ref`/`ring-refN`, `event-channel`, `ring-page-order`,
//! `multi-queue-num-queues`, `queue-N/...`, `protocol`, `feature-persistent`, `state`)
//! hold fuzzed values (numbers near the limits, valid grant references and ports, text,
//! non-UTF-8 bytes, missing nodes) while the real `Backend` walks the xenbus state
//! machine over dom0's fake xenstore, grants and event channels.
//!
//! Checks: nothing panics or hangs; the backend's `state` node is always one of ours
//! (1-6); a device it reports Connected had a ring order and queue count within what it
//! offered; a device it refused says why (`error` node) and is Closing or Closed.
#![no_main]

#[path = "common/xs_world.rs"]
mod xs_world;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sluice_blkback::{Backend, IoEngine};
use sluice_dom0::xenstore::XBT_NULL;
use sluice_dom0::XenStore;
use std::sync::{Arc, OnceLock};
use xs_world::{Kind, Val, World};

const ROOT: &str = "/local/domain/0/backend/vbd";
const DOMID: u16 = 7;

#[derive(Arbitrary, Debug)]
struct Input {
    mode: Val,
    ring_ref: Val,
    ring_refs: [Val; 4],
    event_channel: Val,
    order: Val,
    queues: Val,
    /// (queue, which node: 0 ring-ref, 1 ring-ref0, 2 event-channel, value)
    queue_nodes: Vec<(u8, u8, Val)>,
    protocol: Val,
    persistent: Val,
    /// Frontend states written, one backend pass after each.
    states: Vec<Val>,
}

fn image() -> &'static str {
    static IMG: OnceLock<String> = OnceLock::new();
    IMG.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("sluice-fuzz-{}.img", std::process::id()));
        std::fs::File::create(&p).unwrap().set_len(1 << 20).unwrap();
        p.to_str().unwrap().to_string()
    })
}

fuzz_target!(|input: Input| {
    let w = World::new(DOMID);
    let xs = &w.xs;
    let be = format!("{ROOT}/{DOMID}/51712");
    let fe = format!("/local/domain/{DOMID}/device/vbd/51712");
    for (k, v) in [
        ("frontend", fe.as_str()),
        ("frontend-id", &DOMID.to_string()),
        ("params", image()),
        ("online", "1"),
        ("state", "1"),
    ] {
        xs.write(XBT_NULL, &format!("{be}/{k}"), v.as_bytes())
            .unwrap();
    }
    w.put(&format!("{be}/mode"), &input.mode, Kind::Plain);
    xs.write(XBT_NULL, &format!("{fe}/backend"), be.as_bytes())
        .unwrap();
    xs.write(XBT_NULL, &format!("{fe}/state"), b"1").unwrap();
    w.put(&format!("{fe}/ring-ref"), &input.ring_ref, Kind::GrantRef);
    for (i, v) in input.ring_refs.iter().enumerate() {
        w.put(&format!("{fe}/ring-ref{i}"), v, Kind::GrantRef);
    }
    w.put(
        &format!("{fe}/event-channel"),
        &input.event_channel,
        Kind::Port,
    );
    w.put(&format!("{fe}/ring-page-order"), &input.order, Kind::Plain);
    w.put(
        &format!("{fe}/multi-queue-num-queues"),
        &input.queues,
        Kind::Plain,
    );
    for (q, which, v) in input.queue_nodes.iter().take(8) {
        let (key, kind) = match which % 3 {
            0 => ("ring-ref", Kind::GrantRef),
            1 => ("ring-ref0", Kind::GrantRef),
            _ => ("event-channel", Kind::Port),
        };
        w.put(&format!("{fe}/queue-{}/{key}", q % 5), v, kind);
    }
    w.put(&format!("{fe}/protocol"), &input.protocol, Kind::Plain);
    w.put(
        &format!("{fe}/feature-persistent"),
        &input.persistent,
        Kind::Plain,
    );

    let mut backend = Backend::new(
        Arc::new(w.store.connect()),
        Arc::new(w.grants.clone()),
        {
            let hub = w.hub.clone();
            move || Ok(hub.endpoint(0))
        },
        ROOT,
        4,
    )
    .with_engine(IoEngine::Sync);
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
        let num = |k: &str| {
            xs.read_opt(XBT_NULL, &format!("{fe}/{k}"))
                .ok()
                .flatten()
                .and_then(|v| v.parse::<u64>().ok())
        };
        if state == "4" {
            assert!(num("ring-page-order").unwrap_or(0) <= 4);
            assert!((1..=4).contains(&num("multi-queue-num-queues").unwrap_or(1)));
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
    // The toolstack removes the device: every queue thread stops.
    w.remove_device(&be, || backend.reconcile());
});
