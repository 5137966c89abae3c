//! Connecting a device: reads the frontend's ring nodes (order, queues, protocol,
//! persistent grants), maps each ring, binds its event channel and starts one queue
//! thread per ring (its journal, its I/O engine); on any failure the queues already
//! started are stopped again.

use super::{Backend, Device, DeviceError, IoEngine, QueueThread, MAX_RING_PAGE_ORDER};
use crate::persistent::PersistentGrants;
use crate::ring_server::Queue;
use sluice_abi::blkif::BlkifBackRing;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_dom0::xenstore::XBT_NULL;
use sluice_dom0::{EventChannels, EvtchnError, GrantMap, GrantMapper, XenStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl<S, G, F, E> Backend<S, G, F>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    G::Mapping: 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
{
    pub(super) fn connect(&self, be: &str, dev: &mut Device) -> Result<(), DeviceError> {
        let fe = dev.fe.clone();
        let order = self
            .xs
            .read_u64(XBT_NULL, &format!("{fe}/ring-page-order"))?
            .unwrap_or(0);
        if order > MAX_RING_PAGE_ORDER.into() {
            return Err(DeviceError::Bad {
                path: format!("{fe}/ring-page-order"),
                why: format!("{order} exceeds {MAX_RING_PAGE_ORDER}"),
            });
        }
        let nq = self
            .xs
            .read_u64(XBT_NULL, &format!("{fe}/multi-queue-num-queues"))?
            .unwrap_or(1);
        if nq == 0 || nq > self.max_queues.into() {
            return Err(DeviceError::Bad {
                path: format!("{fe}/multi-queue-num-queues"),
                why: format!("{nq} queues (1..={} offered)", self.max_queues),
            });
        }
        if let Some(p) = self.xs.read_opt(XBT_NULL, &format!("{fe}/protocol"))? {
            let p = p.trim_end_matches('\0');
            if p != "x86_64-abi" {
                return Err(DeviceError::Bad {
                    path: format!("{fe}/protocol"),
                    why: format!("ring protocol {p:?} is not supported (x86_64-abi only)"),
                });
            }
        }
        // Both ends must agree (the frontend writes its own node before Initialised);
        // anything but "1" (garbage included) means grant copy.
        let persistent = self.persistent_limit > 0
            && self
                .xs
                .read_opt(XBT_NULL, &format!("{fe}/feature-persistent"))?
                .is_some_and(|v| v.trim_end_matches('\0') == "1");
        let disk = dev
            .disk
            .clone()
            .ok_or_else(|| DeviceError::Missing(format!("{be}/params")))?;
        let mut started = Vec::new();
        for q in 0..nq {
            let dir = if nq == 1 {
                fe.clone()
            } else {
                format!("{fe}/queue-{q}")
            };
            let refs: Vec<GrantRef> = if order == 0 {
                vec![GrantRef(
                    self.number(&format!("{dir}/ring-ref"), u32::MAX.into())? as u32,
                )]
            } else {
                (0..1u32 << order)
                    .map(|i| {
                        self.number(&format!("{dir}/ring-ref{i}"), u32::MAX.into())
                            .map(|v| GrantRef(v as u32))
                    })
                    .collect::<Result<_, _>>()?
            };
            let remote_port =
                EvtchnPort(self.number(&format!("{dir}/event-channel"), u32::MAX.into())? as u32);
            let ring_id = [
                dev.fe_id.into(),
                refs[0].0,
                refs.len() as u32,
                remote_port.0,
            ];
            let journal = self.journal_dir.as_ref().map(|d| {
                let leaf = be.strip_prefix(&self.root).unwrap_or(be).trim_matches('/');
                d.join(format!("vbd-{}-q{q}", leaf.replace('/', "-")))
            });
            let takeover = dev.takeover;
            let mapping = match self.grants.map(DomId(dev.fe_id), &refs, true) {
                Ok(m) => m,
                Err(e) => {
                    stop_all(&mut started);
                    return Err(e.into());
                }
            };
            // Check the ring geometry before spawning.
            if let Err(e) = BlkifBackRing::resume(mapping.mem()) {
                stop_all(&mut started);
                return Err(e.into());
            }
            let bound = (self.open_evtchn)().and_then(|ev| {
                let port = ev.bind_interdomain(DomId(dev.fe_id), remote_port)?;
                Ok((ev, port))
            });
            let (evtchn, port) = match bound {
                Ok(b) => b,
                Err(e) => {
                    stop_all(&mut started);
                    return Err(e.into());
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            let dead = Arc::new(AtomicBool::new(false));
            let name = format!("{} queue {q}", dev.name);
            let engine = self.engine;
            let cache_limit = self.persistent_limit;
            let (zero_copy, coalesce, merge) = (self.zero_copy, self.coalesce, self.merge);
            let log = dev.log.clone();
            let (grants, stats, stop2, dead2, disk2, domid) = (
                self.grants.clone(),
                dev.stats.clone(),
                stop.clone(),
                dead.clone(),
                disk.clone(),
                dev.fe_id,
            );
            let join = std::thread::Builder::new()
                .name(format!("blkback-q{q}"))
                .spawn(move || {
                    let file = journal.as_deref().and_then(|path| {
                        let slots = BlkifBackRing::resume(mapping.mem()).ok()?.size();
                        crate::journal::open_file(path, slots, takeover, &name)
                    });
                    let Ok((ring, mut ledger)) = crate::journal::attach(
                        mapping.mem(),
                        file.as_ref(),
                        takeover,
                        ring_id,
                        &name,
                    ) else {
                        dead2.store(true, Ordering::Release);
                        return;
                    };
                    let queue = Queue {
                        domid,
                        disk: &disk2,
                        grants: &*grants,
                        evtchn,
                        port,
                        stop: &stop2,
                        name: &name,
                        persistent: persistent.then(|| PersistentGrants::new(domid, cache_limit)),
                        profile: Default::default(),
                        buffers: Default::default(),
                        zero_copy: std::cell::Cell::new(zero_copy),
                        coalesce,
                        merge,
                        log: &log,
                    };
                    let uring = match engine {
                        IoEngine::Uring => match sluice_xen_sys::IoQueue::new(256) {
                            Ok(q) => Some(q),
                            Err(e) => {
                                tracing::warn!(
                                    "{name}: io_uring unavailable ({e}); synchronous I/O"
                                );
                                None
                            }
                        },
                        IoEngine::Sync => None,
                    };
                    let served = match uring {
                        Some(mut io) => queue.serve_async(ring, &stats, &mut io, &mut ledger),
                        None => queue.serve(ring, &stats, &mut ledger),
                    };
                    if let Err(e) = served {
                        tracing::error!("{name}: {e}; disconnecting this device");
                        dead2.store(true, Ordering::Release);
                    }
                    let (allocated, reused) = queue.buffers.counts();
                    tracing::info!(
                        "{name}: profile: {}; buffers: {allocated} allocated, {reused} reused",
                        queue.profile
                    );
                    if let Some(c) = &queue.persistent {
                        let s = c.stats();
                        tracing::info!(
                            "{name}: persistent grants: {} mapped, {} reused, {} purged, \
                             {} copied (cache full), {} fell back to grant copy; unmapping {}",
                            s.mapped,
                            s.hits,
                            s.purged,
                            s.full,
                            s.failed,
                            c.len()
                        );
                    }
                    // Unmaps the persistent grants, then the ring.
                    drop(queue);
                    drop(mapping);
                });
            match join {
                Ok(j) => started.push(QueueThread {
                    stop,
                    dead,
                    join: Some(j),
                }),
                Err(e) => {
                    stop_all(&mut started);
                    return Err(DeviceError::Spawn(e));
                }
            }
        }
        dev.queues = started;
        dev.takeover = false;
        tracing::info!(
            "{}: connected ({nq} queue(s), ring order {order}, {})",
            dev.name,
            if persistent {
                "persistent grants"
            } else {
                "grant copy"
            }
        );
        self.write_state(be, dev, XenbusState::Connected)?;
        Ok(())
    }
}

fn stop_all(started: &mut Vec<QueueThread>) {
    for q in started.iter() {
        q.stop.store(true, Ordering::Release);
    }
    for q in started.iter_mut() {
        if let Some(j) = q.join.take() {
            let _ = j.join();
        }
    }
    started.clear();
}
