//! Event channels of the bus' children: which child allocated each port and which
//! callback its events go to. The bus' interrupt DPC routes a pending port through
//! [`PortTable::route`]; a port nobody holds (the xenstore port, a stale or foreign
//! one) has no callback. A child may notify, bind or close only its own ports, and
//! holds at most [`MAX_PER_OWNER`].

use crate::grants::Owner;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use sluice_abi::types::EvtchnPort;
use sluice_front_seams::SeamError;

/// Ports one child may hold (blkfront: one per queue; netfront: two per queue).
pub const MAX_PER_OWNER: usize = 32;
/// `EPERM`: another child's port.
pub const EPERM: i32 = 1;

/// Ports in use, with their owner and callback.
pub struct PortTable<C> {
    ports: BTreeMap<u32, (Owner, Option<C>)>,
}

impl<C> Default for PortTable<C> {
    fn default() -> Self {
        PortTable {
            ports: BTreeMap::new(),
        }
    }
}

impl<C: Clone> PortTable<C> {
    /// Whether `owner` may allocate another port.
    pub fn may_add(&self, owner: Owner) -> Result<(), SeamError> {
        if self.held_by(owner) >= MAX_PER_OWNER {
            Err(SeamError::NoResources)
        } else {
            Ok(())
        }
    }

    /// Records `port` (just allocated for `owner`) with no callback yet. Over quota is
    /// `NoResources`; a port already recorded (Xen never hands out an open port
    /// twice) is `EPERM`, and stays its owner's.
    pub fn add(&mut self, owner: Owner, port: EvtchnPort) -> Result<(), SeamError> {
        self.may_add(owner)?;
        if self.ports.contains_key(&port.0) {
            return Err(SeamError::Errno(EPERM));
        }
        self.ports.insert(port.0, (owner, None));
        Ok(())
    }

    /// Sets (or replaces) the callback of `owner`'s `port`.
    pub fn bind(&mut self, owner: Owner, port: EvtchnPort, callback: C) -> Result<(), SeamError> {
        match self.ports.get_mut(&port.0) {
            Some((o, cb)) if *o == owner => {
                *cb = Some(callback);
                Ok(())
            }
            _ => Err(SeamError::Errno(EPERM)),
        }
    }

    /// Whether `port` is `owner`'s (to notify it).
    pub fn owns(&self, owner: Owner, port: EvtchnPort) -> bool {
        matches!(self.ports.get(&port.0), Some((o, _)) if *o == owner)
    }

    /// Forgets `owner`'s `port`; `true` if it was theirs (the caller then closes it).
    pub fn remove(&mut self, owner: Owner, port: EvtchnPort) -> bool {
        if self.owns(owner, port) {
            self.ports.remove(&port.0);
            true
        } else {
            false
        }
    }

    /// The callback an event on `port` goes to.
    pub fn route(&self, port: EvtchnPort) -> Option<C> {
        self.ports.get(&port.0).and_then(|(_, cb)| cb.clone())
    }

    /// Ports `owner` holds.
    pub fn held_by(&self, owner: Owner) -> usize {
        self.ports.values().filter(|(o, _)| *o == owner).count()
    }

    /// Forgets every port of `owner`; returns them, for the caller to close.
    pub fn remove_owner(&mut self, owner: Owner) -> Vec<EvtchnPort> {
        let mine: Vec<u32> = self
            .ports
            .iter()
            .filter(|(_, (o, _))| *o == owner)
            .map(|(p, _)| *p)
            .collect();
        for p in &mine {
            self.ports.remove(p);
        }
        mine.into_iter().map(EvtchnPort).collect()
    }
}
