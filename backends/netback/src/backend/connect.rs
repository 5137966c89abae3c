//! Connecting a vif: checks the frontend's required features and reads what it takes
//! (SG, GSO, checksum offload, queues, split event channels), maps each queue's TX and
//! RX rings, binds its event channel(s), opens its tap queue and starts its thread.

use super::{Backend, QueueThread, Vif, VifError};
use crate::profile::NetProfile;
use crate::queue::{Features, Frames, Queue};
use sluice_abi::netif::{keys, NetifRxBackRing, NetifTxBackRing};
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::XBT_NULL;
use sluice_dom0::{warn_limited, EventChannels, EvtchnError, GrantMap, GrantMapper, XenStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl<S, G, F, E, T> Backend<S, G, F, T>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
    T: Frames + 'static,
{
    pub(super) fn connect(&self, be: &str, v: &mut Vif<T>) -> Result<(), VifError> {
        let fe = v.fe.clone();
        if !self.flag(&format!("{fe}/{}", keys::REQUEST_RX_COPY)) {
            return Err(VifError::Bad {
                path: format!("{fe}/{}", keys::REQUEST_RX_COPY),
                why: "receive-side flipping is not supported (request-rx-copy must be 1)".into(),
            });
        }
        if !self.flag(&format!("{fe}/{}", keys::FEATURE_RX_NOTIFY)) {
            return Err(VifError::Bad {
                path: format!("{fe}/{}", keys::FEATURE_RX_NOTIFY),
                why: "feature-rx-notify is mandatory".into(),
            });
        }
        let sg = self.flag(&format!("{fe}/{}", keys::FEATURE_SG));
        let features = Features {
            sg,
            gso4: sg && self.flag(&format!("{fe}/{}", keys::FEATURE_GSO_TCPV4)),
            gso6: sg && self.flag(&format!("{fe}/{}", keys::FEATURE_GSO_TCPV6)),
            csum4: !self.flag(&format!("{fe}/{}", keys::FEATURE_NO_CSUM_OFFLOAD)),
            csum6: self.flag(&format!("{fe}/{}", keys::FEATURE_IPV6_CSUM_OFFLOAD)),
        };
        let nq = self
            .xs
            .read_u64(XBT_NULL, &format!("{fe}/{}", keys::MULTI_QUEUE_NUM_QUEUES))?
            .unwrap_or(1);
        if nq == 0 || nq > self.max_queues.into() {
            return Err(VifError::Bad {
                path: format!("{fe}/{}", keys::MULTI_QUEUE_NUM_QUEUES),
                why: format!("{nq} queues (1..={} offered)", self.max_queues),
            });
        }
        // The kernel may give us partial checksums only if the frontend takes both
        // families' (the tap has one switch); TSO needs them.
        let csum = features.csum4 && features.csum6;
        let offloads = (csum, csum && features.gso4, csum && features.gso6);
        let ifname = Self::ifname(v).to_string();
        v.taps.truncate(1);
        for q in 1..nq {
            let t =
                (self.open_tap)(&ifname).map_err(|e| VifError::Tap(format!("queue {q}: {e}")))?;
            v.taps.push(Arc::new(t));
        }
        let first = v
            .taps
            .first()
            .ok_or_else(|| VifError::Tap("no tap".into()))?;
        first
            .set_offloads(offloads.0, offloads.1, offloads.2)
            .map_err(|e| VifError::Tap(e.to_string()))?;
        let mut started = Vec::new();
        for q in 0..nq as usize {
            match self.start_queue(v, q, nq, features) {
                Ok(t) => started.push(t),
                Err(e) => {
                    for t in &started {
                        t.stop.store(true, Ordering::Release);
                    }
                    for mut t in started {
                        if let Some(j) = t.join.take() {
                            let _ = j.join();
                        }
                    }
                    return Err(e);
                }
            }
        }
        v.queues = started;
        tracing::info!(
            "{}: connected ({nq} queue(s), {features:?}, tap offloads csum/tso4/tso6 {offloads:?})",
            v.name
        );
        self.write_state(be, v, XenbusState::Connected)?;
        Ok(())
    }

    fn start_queue(
        &self,
        v: &Vif<T>,
        q: usize,
        nq: u64,
        features: Features,
    ) -> Result<QueueThread, VifError> {
        let dir = if nq == 1 {
            v.fe.clone()
        } else {
            format!("{}/queue-{q}", v.fe)
        };
        let gref = |k: &str| -> Result<GrantRef, VifError> {
            Ok(GrantRef(
                self.number(&format!("{dir}/{k}"), u32::MAX.into())? as u32,
            ))
        };
        let port = |k: &str| -> Result<Option<EvtchnPort>, VifError> {
            let p = format!("{dir}/{k}");
            match self.xs.read_opt(XBT_NULL, &p)? {
                None => Ok(None),
                Some(_) => Ok(Some(EvtchnPort(self.number(&p, u32::MAX.into())? as u32))),
            }
        };
        let tx_ref = gref(keys::TX_RING_REF)?;
        let rx_ref = gref(keys::RX_RING_REF)?;
        let (tx_remote, rx_remote) =
            match (port(keys::EVENT_CHANNEL_TX)?, port(keys::EVENT_CHANNEL_RX)?) {
                (Some(t), Some(r)) => (t, Some(r)),
                (None, None) => (
                    port(keys::EVENT_CHANNEL)?.ok_or_else(|| {
                        VifError::Missing(format!("{dir}/{}", keys::EVENT_CHANNEL))
                    })?,
                    None,
                ),
                _ => {
                    return Err(VifError::Bad {
                        path: dir.clone(),
                        why: "only one of event-channel-tx / event-channel-rx".into(),
                    })
                }
            };
        let domid = DomId(v.fe_id);
        let tx_map = self.grants.map(domid, &[tx_ref], true)?;
        let rx_map = self.grants.map(domid, &[rx_ref], true)?;
        // Attach at the shared rsp_prod (a fresh ring: 0): a restarted daemon serves what
        // the frontend published while none ran, and answers nothing twice.
        NetifTxBackRing::resume(tx_map.mem())?;
        NetifRxBackRing::resume(rx_map.mem())?;
        let evtchn = (self.open_evtchn)()?;
        let tx_port = evtchn.bind_interdomain(domid, tx_remote)?;
        let rx_port = match rx_remote {
            Some(r) => evtchn.bind_interdomain(domid, r)?,
            None => tx_port,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let name = format!("{} queue {q}", v.name);
        let tx_by_map = self.tx_map;
        let uring = self.uring;
        let (grants, stats, log, tap, stop2, dead2) = (
            self.grants.clone(),
            v.stats.clone(),
            v.log.clone(),
            v.taps[q].clone(),
            stop.clone(),
            dead.clone(),
        );
        let join = std::thread::Builder::new()
            .name(format!("netback-q{q}"))
            .spawn(move || {
                let (Ok(tx), Ok(rx)) = (
                    NetifTxBackRing::resume(tx_map.mem()),
                    NetifRxBackRing::resume(rx_map.mem()),
                ) else {
                    dead2.store(true, Ordering::Release);
                    return;
                };
                let profile = NetProfile::default();
                let queue = Queue {
                    name: &name,
                    domid,
                    grants: &*grants,
                    evtchn,
                    tx_port,
                    rx_port,
                    tap: &*tap,
                    features,
                    stop: &stop2,
                    log: &log,
                    stats: &stats,
                    profile: &profile,
                    tx_map: tx_by_map,
                    uring,
                };
                if let Err(e) = queue.serve(tx, rx) {
                    warn_limited!(log, "disconnect", "{name}: {e}; disconnecting this vif");
                    dead2.store(true, Ordering::Release);
                }
                if log.admit("profile").is_some() {
                    tracing::info!("{name}: profile: {profile}");
                }
                drop(queue);
                drop((tx_map, rx_map));
            })
            .map_err(VifError::Spawn)?;
        Ok(QueueThread {
            stop,
            dead,
            join: Some(join),
        })
    }
}
