//! The bus interface: what xenbus gives each child device (xenvbd, later xennet) in
//! answer to `IRP_MN_QUERY_INTERFACE` for [`INTERFACE_GUID`], version
//! [`INTERFACE_VERSION`]. On the wire it is a `#[repr(C)]` table of `extern "C"`
//! functions behind Windows' `INTERFACE` header (`sluice_wdm::busif`); this module is
//! its Rust-side contract, [`BusInterface`], which the driver's FFI handle implements
//! and the host tests' fake bus implements too.
//!
//! # The contract (both sides rely on it)
//!
//! * **Lifetime.** The interface is valid from a successful `IRP_MN_QUERY_INTERFACE`
//!   until the child calls `InterfaceDereference` (once, at its adapter's teardown,
//!   after its last call and after it closed its ports and removed its watches). The
//!   bus keeps the child's state alive meanwhile, even across the child PDO's
//!   removal: a call after removal fails (`NoResources`/`ENODEV`), never touches freed
//!   memory.
//! * **IRQL.** Grants ([`grant_access`](BusInterface::grant_access),
//!   [`end_access`](BusInterface::end_access)) and
//!   [`evtchn_notify`](BusInterface::evtchn_notify) at `IRQL <= DISPATCH_LEVEL`
//!   (I/O submission and completion run there). Everything else (event channel
//!   allocation, binding and closing; xenstore; watches) at `PASSIVE_LEVEL` only: they
//!   wait for xenstored or take the bus' passive lock.
//! * **Callbacks.** An [`EventCallback`] runs in the bus' interrupt DPC at
//!   `DISPATCH_LEVEL`, once per delivery of its port's event (events that arrive
//!   together may be delivered once), never concurrently with itself for one port; it
//!   must not block and must not call the PASSIVE functions. A [`WatchCallback`] runs
//!   at `PASSIVE_LEVEL` in the bus' xenstore work item, after the bus dropped its
//!   xenstore lock, so it may call xenstore functions; it runs at least once after
//!   registration (xenstored fires a new watch at once) and after each change,
//!   possibly coalesced. Both callbacks' `ctx` must stay valid until the port is
//!   closed / the watch removed *and* the close/removal returned: the bus removes the
//!   callback from its tables first, and a DPC already running is waited out
//!   (`KeFlushQueuedDpcs`) before `evtchn_close` returns.
//! * **Isolation.** Grant references come from the one grant table the bus owns, each
//!   tagged with its child: children never collide, a child ends only its own refs,
//!   notifies/binds/closes only its own ports and removes only its own watches; each
//!   holds at most a quota of each ([`crate::grants`], [`crate::ports`],
//!   [`crate::watches`]). A child that goes away without cleaning up is cleaned up by
//!   the bus (ports closed, watches removed, grants the backend no longer maps ended).
//! * **Values.** Paths and values from xenstore are backend-controlled: the child
//!   checks what it reads (blkfront-core does). `backend_domid` and `backend_path`
//!   were read from the child's frontend node by the bus when it reported the child.

use alloc::string::String;
use alloc::vec::Vec;
use sluice_abi::types::{DomId, EvtchnPort, GrantRef};
use sluice_front_seams::{GrantInUse, SeamError};

use crate::watches::WatchId;

/// `{5b1c7a3e-9d2f-4e61-a8c4-3f0b6d5e2a91}`: Sluice's xenbus child interface (as
/// Windows lays a GUID out: `Data1` u32, `Data2` u16, `Data3` u16, `Data4` 8 bytes).
pub const INTERFACE_GUID: (u32, u16, u16, [u8; 8]) = (
    0x5b1c_7a3e,
    0x9d2f,
    0x4e61,
    [0xa8, 0xc4, 0x3f, 0x0b, 0x6d, 0x5e, 0x2a, 0x91],
);
/// The one version both sides speak; a different `Version` in the query is refused
/// (`STATUS_NOT_SUPPORTED`), as is a `Size` smaller than the table.
pub const INTERFACE_VERSION: u16 = 1;

/// Called in the bus DPC when the port it is bound to fires: `func(ctx, port)`.
#[derive(Clone, Copy, Debug)]
pub struct EventCallback {
    /// The function.
    pub func: extern "C" fn(ctx: usize, port: u32),
    /// Its argument (the child's adapter state, as an address).
    pub ctx: usize,
}

/// Called at PASSIVE_LEVEL when a watched path changes: `func(ctx, watch id)`.
#[derive(Clone, Copy, Debug)]
pub struct WatchCallback {
    /// The function.
    pub func: extern "C" fn(ctx: usize, id: u64),
    /// Its argument.
    pub ctx: usize,
}

/// The bus interface as a child driver's core uses it (see the module's contract).
pub trait BusInterface {
    /// Grants `domid` access to guest frame `frame` (`IRQL <= DISPATCH_LEVEL`).
    fn grant_access(&self, domid: DomId, frame: u64, readonly: bool)
        -> Result<GrantRef, SeamError>;
    /// Ends one of our grants unless the backend still maps it (`<= DISPATCH_LEVEL`).
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantInUse>;
    /// `EVTCHNOP_alloc_unbound` for `remote` (PASSIVE).
    fn evtchn_alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, SeamError>;
    /// Sends the port's events to `cb` (PASSIVE).
    fn evtchn_bind(&self, port: EvtchnPort, cb: EventCallback) -> Result<(), SeamError>;
    /// `EVTCHNOP_send` on one of our ports (`<= DISPATCH_LEVEL`); others are ignored.
    fn evtchn_notify(&self, port: EvtchnPort);
    /// Unbinds and closes one of our ports (PASSIVE); others are ignored.
    fn evtchn_close(&self, port: EvtchnPort);
    /// Reads a node (PASSIVE); `Ok(None)` if absent. `tx` 0: no transaction.
    fn xs_read(&self, tx: u32, path: &str) -> Result<Option<String>, SeamError>;
    /// Writes a node (PASSIVE).
    fn xs_write(&self, tx: u32, path: &str, value: &str) -> Result<(), SeamError>;
    /// A node's children (PASSIVE); empty if absent.
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, SeamError>;
    /// Starts a transaction (PASSIVE).
    fn xs_transaction_start(&self) -> Result<u32, SeamError>;
    /// Ends one; `SeamError::Xenstore(EAGAIN)` means retry it all (PASSIVE).
    fn xs_transaction_end(&self, tx: u32, commit: bool) -> Result<(), SeamError>;
    /// Watches `path` (PASSIVE).
    fn watch(&self, path: &str, cb: WatchCallback) -> Result<WatchId, SeamError>;
    /// Removes one of our watches (PASSIVE).
    fn unwatch(&self, id: WatchId);
    /// Our frontend node, `device/<kind>/<id>`.
    fn frontend_path(&self) -> &str;
    /// The backend's node (from `<frontend>/backend`).
    fn backend_path(&self) -> &str;
    /// The backend's domain (from `<frontend>/backend-id`).
    fn backend_domid(&self) -> DomId;
}

/// A [`SeamError`] as the FFI table returns it (`i32`, 0 for success): xenstore
/// errnos as themselves (1..=0xffff), other errnos with bit 16 set, `NoResources` as
/// -1, `OutOfBounds` as -2 (its detail is not carried).
pub fn encode_error(e: SeamError) -> i32 {
    match e {
        SeamError::Xenstore(n) if (1..=0xffff).contains(&n) => n,
        SeamError::Errno(n) if (1..=0xffff).contains(&n) => 0x1_0000 | n,
        SeamError::NoResources => -1,
        SeamError::OutOfBounds { .. } => -2,
        // An errno out of range is reported as EIO.
        SeamError::Xenstore(_) | SeamError::Errno(_) => 0x1_0000 | 5,
    }
}

/// The inverse of [`encode_error`]; `Ok` for 0. A code no bus sends (a broken or
/// foreign provider) is `Errno(EIO)`.
pub fn decode_error(code: i32) -> Result<(), SeamError> {
    match code {
        0 => Ok(()),
        -1 => Err(SeamError::NoResources),
        -2 => Err(SeamError::OutOfBounds {
            offset: 0,
            len: 0,
            size: 0,
        }),
        n @ 1..=0xffff => Err(SeamError::Xenstore(n)),
        n if n & !0xffff == 0x1_0000 && n & 0xffff != 0 => Err(SeamError::Errno(n & 0xffff)),
        _ => Err(SeamError::Errno(5)),
    }
}

/// `EAGAIN`.
const EAGAIN: i32 = 11;
/// Transaction retries on `EAGAIN`.
pub const MAX_TX_RETRIES: usize = 8;

/// Writes every pair in one transaction over `bus`, retried on `EAGAIN` (bounded).
pub fn write_all(
    bus: &(impl BusInterface + ?Sized),
    writes: &[(&str, &str)],
) -> Result<(), SeamError> {
    for _ in 0..MAX_TX_RETRIES {
        let tx = bus.xs_transaction_start()?;
        let failed = writes
            .iter()
            .find_map(|(p, v)| bus.xs_write(tx, p, v).err());
        let end = bus.xs_transaction_end(tx, failed.is_none());
        if let Some(e) = failed {
            return Err(e);
        }
        match end {
            Ok(()) => return Ok(()),
            Err(SeamError::Xenstore(EAGAIN)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SeamError::Xenstore(EAGAIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_ffi_table_intact() {
        for e in [
            SeamError::Xenstore(2),
            SeamError::Xenstore(11),
            SeamError::Errno(1),
            SeamError::Errno(0xffff),
            SeamError::NoResources,
        ] {
            let c = encode_error(e);
            assert_ne!(c, 0, "{e:?} is not success");
            assert_eq!(decode_error(c), Err(e));
        }
        assert_eq!(decode_error(0), Ok(()));
        assert!(matches!(
            decode_error(encode_error(SeamError::OutOfBounds {
                offset: 1,
                len: 2,
                size: 3
            })),
            Err(SeamError::OutOfBounds { .. })
        ));
        // Out-of-range errnos and codes no bus sends are EIO, never success.
        assert_eq!(
            decode_error(encode_error(SeamError::Errno(0))),
            Err(SeamError::Errno(5))
        );
        for bad in [-3, i32::MIN, 0x2_0001, 0x1_0000, i32::MAX] {
            assert_eq!(decode_error(bad), Err(SeamError::Errno(5)), "{bad:#x}");
        }
    }
}
