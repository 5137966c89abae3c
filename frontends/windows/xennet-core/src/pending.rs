//! OID requests that must wait (MiniportOidRequest while the adapter's state is out
//! for PASSIVE work, e.g. the negotiation after a backend state change): pended
//! (`NDIS_STATUS_PENDING`, never a wait in the request's thread) and completed with
//! `NdisMOidRequestComplete` when the state comes back, in arrival order; a cancelled
//! one leaves the queue (completed `NDIS_STATUS_REQUEST_ABORTED`). NDIS hands a
//! miniport one OID request at a time, so the queue is short; it is bounded anyway.

use alloc::collections::VecDeque;

/// Most requests pended at once (beyond: answered NDIS_STATUS_RESOURCES).
pub const MAX_PENDING: usize = 8;

/// What to do with an arriving request.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// The state is here: answer it now.
    Now(T),
    /// Kept: return NDIS_STATUS_PENDING.
    Pended,
    /// The queue is full: fail it (RESOURCES).
    Full(T),
}

/// The pended requests (`T`: the glue's request handle).
#[derive(Debug)]
pub struct OidGate<T> {
    queue: VecDeque<T>,
}

impl<T> Default for OidGate<T> {
    fn default() -> Self {
        OidGate {
            queue: VecDeque::new(),
        }
    }
}

impl<T> OidGate<T> {
    /// A request arrives; `state_out`: the adapter's state is away (decided under the
    /// state's lock, which also covers [`ready`](Self::ready), so none is lost between
    /// the two). One arriving while others wait waits behind them.
    pub fn arrive(&mut self, req: T, state_out: bool) -> Arrival<T> {
        if !state_out && self.queue.is_empty() {
            Arrival::Now(req)
        } else if self.queue.len() >= MAX_PENDING {
            Arrival::Full(req)
        } else {
            self.queue.push_back(req);
            Arrival::Pended
        }
    }

    /// The state is back: the next pended request to answer and complete.
    pub fn ready(&mut self) -> Option<T> {
        self.queue.pop_front()
    }

    /// MiniportCancelOidRequest: the pended request `is` picks, to complete aborted.
    pub fn cancel(&mut self, is: impl Fn(&T) -> bool) -> Option<T> {
        let i = self.queue.iter().position(is)?;
        self.queue.remove(i)
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// None waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid::{self, code, Info};
    use alloc::vec::Vec;

    /// A fake adapter: OIDs answered from `Info` only while the state is home.
    struct Adapter {
        info: Option<Info>,
        gate: OidGate<(u32, u32)>,
        completed: Vec<(u32, Result<Vec<u8>, oid::OidError>)>,
    }

    impl Adapter {
        fn request(&mut self, id: u32, oid: u32) -> Option<Result<Vec<u8>, oid::OidError>> {
            match self.gate.arrive((id, oid), self.info.is_none()) {
                Arrival::Now((_, o)) => Some(oid::query(o, self.info.as_ref().unwrap(), 64)),
                Arrival::Pended => None,
                Arrival::Full(_) => Some(Err(oid::OidError::NotSupported)),
            }
        }
        fn put_back(&mut self, info: Info) {
            self.info = Some(info);
            while let Some((id, o)) = self.gate.ready() {
                let a = oid::query(o, self.info.as_ref().unwrap(), 64);
                self.completed.push((id, a));
            }
        }
    }

    #[test]
    fn requests_wait_for_the_state_and_complete_in_order_when_it_returns() {
        let mut a = Adapter {
            info: Some(Info::default()),
            gate: OidGate::default(),
            completed: Vec::new(),
        };
        assert!(a
            .request(1, code::GEN_MEDIA_CONNECT_STATUS)
            .unwrap()
            .is_ok());
        // The negotiation takes the state out: requests pend, nothing blocks.
        let mut info = a.info.take().unwrap();
        assert_eq!(a.request(2, code::GEN_MEDIA_CONNECT_STATUS), None);
        assert_eq!(a.request(3, code::E802_3_CURRENT_ADDRESS), None);
        assert_eq!(
            a.gate.cancel(|r| r.0 == 3),
            Some((3, code::E802_3_CURRENT_ADDRESS))
        );
        assert_eq!(a.request(4, code::GEN_MEDIA_CONNECT_STATUS), None);
        // The negotiation connected: the answers say so.
        info.link_up = true;
        a.put_back(info);
        let ids: Vec<u32> = a.completed.iter().map(|c| c.0).collect();
        assert_eq!(ids, [2, 4]);
        assert_eq!(a.completed[0].1.as_deref().unwrap(), [0, 0, 0, 0]);
        assert!(a.gate.is_empty());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut g = OidGate::default();
        for i in 0..MAX_PENDING {
            assert_eq!(g.arrive(i, true), Arrival::Pended);
        }
        assert_eq!(g.arrive(99, true), Arrival::Full(99));
        // Home again, but older ones wait: the new one queues behind them.
        assert_eq!(g.arrive(100, false), Arrival::Full(100));
        assert_eq!(g.ready(), Some(0));
        assert_eq!(g.arrive(101, false), Arrival::Pended);
        assert_eq!(g.len(), MAX_PENDING);
    }
}
