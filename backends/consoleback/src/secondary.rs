//! Secondary consoles (`device/console/<n>`, n >= 1): xenbus devices whose frontend (in
//! the guest) grants its own ring page and allocates its event channel, unlike console
//! 0, which the toolstack builds.
//!
//! The toolstack (or [`add_console`]) writes the backend directory
//! `/local/domain/0/backend/console/<d>/<n>` and the frontend's
//! `/local/domain/<d>/device/console/<n>`. Once the frontend is Initialised or
//! Connected, its `ring-ref` and `port` are read once and checked, the page mapped, the
//! channel bound, a pty opened (its path in the frontend's `tty`, where `xl console -n
//! <n>` looks), and the backend state set Connected. From then on the console is served
//! exactly as console 0 ([`ConsoleBackend::serve`]: same wakeup budget, same
//! rate-limited warnings, a hostile ring stops that console only). A frontend that
//! closes has its console stopped and the backend returns to InitWait, ready for a new
//! ring (a frontend driver unbound and another bound, a module reloaded).

use crate::daemon::{Console, ConsoleBackend, ConsoleError};
use sluice_abi::types::{is_ordinary_domid, GrantRef};
use sluice_abi::xenbus::XenbusState;
use sluice_abi::xs_wire::{XsPermAccess, XsPermission};
use sluice_dom0::xenstore::{backend_device_dirs, transaction, XBT_NULL};
use sluice_dom0::{EventChannels, EvtchnError, GrantMapper, XenStore, XsError};

/// Where this backend's secondary consoles are (it runs in dom0).
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/console";

/// The largest console number served (libxl numbers channels from 1 up; a bound keeps
/// a hostile toolstack entry from naming absurd nodes).
pub const MAX_CONSOLE: u32 = 255;

fn parse_dir(dir: &str) -> Option<(u16, u32)> {
    let mut it = dir
        .strip_prefix(BACKEND_ROOT)?
        .strip_prefix('/')?
        .split('/');
    let d: u16 = it.next()?.parse().ok()?;
    let n: u32 = it.next()?.parse().ok()?;
    (it.next().is_none() && is_ordinary_domid(d) && d != 0 && (1..=MAX_CONSOLE).contains(&n))
        .then_some((d, n))
}

fn frontend_dir(d: u16, n: u32) -> String {
    format!("/local/domain/{d}/device/console/{n}")
}

impl<S, G, F, E> ConsoleBackend<S, G, F>
where
    S: XenStore + 'static,
    G: GrantMapper + 'static,
    G::Mapping: 'static,
    F: Fn() -> Result<E, EvtchnError>,
    E: EventChannels + 'static,
{
    /// Starts secondary consoles whose frontend published a ring, stops those whose
    /// frontend closed or whose domain or backend directory went away.
    pub(crate) fn reconcile_secondary(&mut self, doms: &[u16]) {
        let mut seen = Vec::new();
        for dir in backend_device_dirs(&*self.xs, BACKEND_ROOT) {
            let Some((d, n)) = parse_dir(&dir) else {
                continue;
            };
            if !doms.contains(&d) {
                continue;
            }
            seen.push((d, n));
            let fe = frontend_dir(d, n);
            let state = self
                .xs
                .read_opt(XBT_NULL, &format!("{fe}/state"))
                .ok()
                .flatten()
                .and_then(|v| v.parse::<XenbusState>().ok());
            let ready = matches!(
                state,
                Some(XenbusState::Initialised | XenbusState::Connected)
            );
            if !ready {
                self.failed_secondary.retain(|&k| k != (d, n));
                if let Some(g) = self.secondary.remove(&(d, n)) {
                    g.stop();
                    tracing::info!("domain {d} console {n}: frontend closed");
                    let _ = self.set_state(&dir, XenbusState::InitWait);
                }
                continue;
            }
            if self.secondary.contains_key(&(d, n)) || self.failed_secondary.contains(&(d, n)) {
                continue;
            }
            match self.start_secondary(d, n, &dir, &fe) {
                Ok(g) => {
                    self.secondary.insert((d, n), g);
                }
                Err(e) => {
                    // Once per frontend connection: not retried until it starts again.
                    tracing::warn!("domain {d} console {n}: not served: {e}");
                    self.failed_secondary.push((d, n));
                    let _ = self.set_state(&dir, XenbusState::Closed);
                }
            }
        }
        let gone: Vec<(u16, u32)> = self
            .secondary
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(g) = self.secondary.remove(&k) {
                g.stop();
                tracing::info!("domain {} console {}: closed", k.0, k.1);
            }
        }
        self.failed_secondary.retain(|k| seen.contains(k));
        self.secondary_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| seen.contains(k));
    }

    fn set_state(&self, dir: &str, state: XenbusState) -> Result<(), XsError> {
        self.xs.write(
            XBT_NULL,
            &format!("{dir}/state"),
            state.xenstore_value().as_bytes(),
        )
    }

    fn start_secondary(
        &self,
        d: u16,
        n: u32,
        dir: &str,
        fe: &str,
    ) -> Result<crate::daemon::Guest, ConsoleError> {
        let frontend_id = self.xs.read_u64(XBT_NULL, &format!("{dir}/frontend-id"))?;
        if frontend_id != Some(u64::from(d)) {
            return Err(XsError::NotANumber {
                path: format!("{dir}/frontend-id"),
                value: format!("{frontend_id:?}"),
            }
            .into());
        }
        // Each guest-written value read once, checked as a u32 before use.
        let num = |key: &str| -> Result<u32, ConsoleError> {
            let path = format!("{fe}/{key}");
            let v = self.xs.read_opt(XBT_NULL, &path)?.unwrap_or_default();
            v.trim().parse::<u32>().map_err(|_| {
                XsError::NotANumber {
                    path,
                    value: v.chars().take(32).collect(),
                }
                .into()
            })
        };
        let gref = num("ring-ref")?;
        let port = num("port")?;
        let (guest, counters) = self.serve(Console {
            domid: d,
            gref: GrantRef(gref),
            port,
            name: format!("domain {d} console {n}"),
            log_file: format!("guest-{d}-console{n}.log"),
            tty_node: format!("{fe}/tty"),
        })?;
        self.secondary_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((d, n), counters);
        self.set_state(dir, XenbusState::Connected)?;
        Ok(guest)
    }
}

/// The smallest toolstack step that gives domain `d` secondary console `n` served by
/// this daemon: the backend and frontend directories as libxl writes them for a
/// console (`libxl__device_console_add`), with `type` `sluice` instead of `ioemu` (so
/// no QEMU device model is needed or started), in one transaction. The frontend
/// directory is the guest's to write (its ring), the read-only nodes and the backend
/// directory dom0's.
pub fn add_console<S: XenStore + ?Sized>(
    xs: &S,
    d: u16,
    n: u32,
    name: &str,
) -> Result<(), XsError> {
    if !is_ordinary_domid(d) || d == 0 || !(1..=MAX_CONSOLE).contains(&n) {
        return Err(XsError::NotANumber {
            path: format!("{BACKEND_ROOT}/{d}/{n}"),
            value: "domain must be a guest, console 1..=255".into(),
        });
    }
    let be = format!("{BACKEND_ROOT}/{d}/{n}");
    let fe = frontend_dir(d, n);
    let dom0_owned = [
        XsPermission {
            access: XsPermAccess::None,
            domid: 0,
        },
        XsPermission {
            access: XsPermAccess::Read,
            domid: d,
        },
    ];
    let guest_owned = [
        XsPermission {
            access: XsPermAccess::None,
            domid: d,
        },
        XsPermission {
            access: XsPermAccess::Read,
            domid: 0,
        },
    ];
    let ds = d.to_string();
    // Each node gets its permissions: a node created in a transaction has those of
    // its parent at the time, and the directories are new here too.
    let back: [(&str, &str); 6] = [
        ("frontend", &fe),
        ("frontend-id", &ds),
        ("online", "1"),
        ("state", "1"),
        ("protocol", "vt100"),
        ("name", name),
    ];
    let front: [(&str, &str); 4] = [
        ("backend", &be),
        ("backend-id", "0"),
        ("state", "1"),
        ("protocol", "vt100"),
    ];
    let front_ro: [(&str, &str); 5] = [
        ("name", name),
        ("limit", "1048576"),
        ("type", "sluice"),
        ("output", "pty"),
        ("tty", ""),
    ];
    let nodes = back
        .iter()
        .map(|&(k, v)| (format!("{be}/{k}"), v, &dom0_owned))
        .chain(
            front
                .iter()
                .map(|&(k, v)| (format!("{fe}/{k}"), v, &guest_owned)),
        )
        .chain(
            front_ro
                .iter()
                .map(|&(k, v)| (format!("{fe}/{k}"), v, &dom0_owned)),
        )
        .collect::<Vec<_>>();
    transaction(xs, 16, |tx| {
        xs.mkdir(tx, &be)?;
        xs.set_perms(tx, &be, &dom0_owned)?;
        xs.mkdir(tx, &fe)?;
        xs.set_perms(tx, &fe, &guest_owned)?;
        for (path, value, perms) in &nodes {
            xs.write(tx, path, value.as_bytes())?;
            xs.set_perms(tx, path, *perms)?;
        }
        Ok(())
    })
}
