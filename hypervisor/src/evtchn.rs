//! 2-level event channels: per-domain port tables, delivery into the shared_info
//! pending/mask bitmaps and vcpu_info, and the EVTCHNOP_* hypercalls.

use crate::addr::Hpa;
use crate::arch::phys;
use crate::domain::Domain;
use sluice_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq,
    EvtchnClose, EvtchnOp, EvtchnSend, EvtchnStat, EvtchnStatus, Virq,
};
use sluice_abi::hypercall::XenErrno;
use sluice_abi::types::DOMID_SELF;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Ports per domain (the 2-level ABI allows 4096; this table holds the first 128).
pub const NR_PORTS: usize = 128;
const PENDING_OFF: u64 = 2048; // shared_info.evtchn_pending
const MASK_OFF: u64 = 2560; // shared_info.evtchn_mask

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Free,
    Unbound {
        remote: u16,
    },
    Interdomain {
        remote: u16,
        remote_port: u32,
    },
    Virq(u32),
    /// An IPI port (EVTCHNOP_bind_ipi) notifying this vCPU.
    Ipi(u32),
    /// The PV console's port (crate::hvm::console_drain is its other end).
    Console,
}

/// The word of shared_info `si`'s bitmap at `base` holding `port`, and its bit.
fn bit(si: Hpa, base: u64, port: u32) -> (Hpa, u64) {
    (
        Hpa(si.0 + base + (port as u64 / 64) * 8),
        1u64 << (port % 64),
    )
}

pub fn is_pending(d: &Domain, port: u32) -> bool {
    let (pa, m) = bit(d.shared_info, PENDING_OFF, port);
    phys::read_u64(pa.0) & m != 0
}

/// Marks `port` pending in `d`; raises the upcall on the vCPU the port notifies and
/// wakes it unless masked; a vCPU polling the port wakes even if it is masked.
pub fn set_pending(d: &mut Domain, port: u32) {
    for k in 0..d.nr_vcpus {
        let e = &d.smp.ev[k];
        if e.poll_ports[..e.poll_n].contains(&port) {
            d.end_poll(k);
        }
    }
    let si = d.shared_info;
    let (pa, m) = bit(si, PENDING_OFF, port);
    // The guest may run on another CPU: its bitmaps change under us (atomically).
    let old = phys::fetch_or_u64(pa.0, m);
    let (ma, mm) = bit(si, MASK_OFF, port);
    if old & m == 0 && phys::read_u64(ma.0) & mm == 0 {
        raise_upcall(d, port);
    }
}

fn raise_upcall(d: &mut Domain, port: u32) {
    // The notified vCPU's vcpu_info (shared_info's or where it registered it):
    // evtchn_upcall_pending at 0, evtchn_pending_sel at 8.
    let k = (d.smp.notify[port as usize % NR_PORTS] as usize).min(d.nr_vcpus - 1);
    let Some(vi) = crate::hvm::vcpu_info_pa(d, k) else {
        return d.wake(k);
    };
    phys::fetch_or_u64(vi + 8, 1 << (port / 64));
    let mut was = [0u8];
    phys::read(vi, &mut was);
    phys::write(vi, &[1]);
    if was[0] == 0 {
        crate::vsmp::assert_upcall(d, k);
    } else {
        d.wake(k);
    }
}

/// Whether vCPU `k` has an upcall pending (SCHEDOP_block returns at once then).
pub fn upcall_pending(d: &Domain, k: usize) -> bool {
    let mut b = [0u8];
    if let Some(vi) = crate::hvm::vcpu_info_pa(d, k) {
        phys::read(vi, &mut b);
    }
    b[0] != 0
}

fn read_arg<T: FromBytes + IntoBytes + Immutable + Default>(
    d: &Domain,
    gva: u64,
) -> Result<T, XenErrno> {
    let mut t = T::default();
    d.copy_from_guest(gva, t.as_mut_bytes())?;
    Ok(t)
}

fn port_index(d: &Domain, port: u32) -> Result<usize, XenErrno> {
    let p = port as usize;
    if p == 0 || p >= NR_PORTS || d.evtchn[p] == Port::Free {
        return Err(XenErrno::Einval);
    }
    Ok(p)
}

fn alloc_port(d: &Domain) -> Result<usize, XenErrno> {
    (1..NR_PORTS)
        .find(|&p| d.evtchn[p] == Port::Free)
        .ok_or(XenErrno::Enospc)
}

/// A domain by id among all domains, other than the caller at index `cur`.
fn other(doms: &mut [Option<Domain>], cur: usize, id: u16) -> Result<&mut Domain, XenErrno> {
    doms.iter_mut()
        .enumerate()
        .filter(|(i, _)| *i != cur)
        .find_map(|(_, d)| d.as_mut().filter(|d| d.id == id))
        .ok_or(XenErrno::Esrch)
}

pub fn event_channel_op(
    doms: &mut [Option<Domain>],
    cur: usize,
    cmd: u64,
    arg: u64,
) -> Result<i64, XenErrno> {
    let me = doms[cur].as_ref().map(|d| d.id).ok_or(XenErrno::Esrch)?;
    let op = u32::try_from(cmd)
        .ok()
        .and_then(EvtchnOp::from_raw)
        .ok_or(XenErrno::Enosys)?;
    match op {
        EvtchnOp::AllocUnbound => {
            let d = doms[cur].as_mut().ok_or(XenErrno::Esrch)?;
            let mut a: EvtchnAllocUnbound = read_arg(d, arg)?;
            if a.dom != DOMID_SELF && a.dom != me {
                return Err(XenErrno::Eperm);
            }
            let remote = if a.remote_dom == DOMID_SELF {
                me
            } else {
                a.remote_dom
            };
            let p = alloc_port(d)?;
            a.port = p as u32;
            d.copy_to_guest(arg, a.as_bytes())?;
            d.evtchn[p] = Port::Unbound { remote };
            Ok(0)
        }
        EvtchnOp::BindInterdomain => {
            let mut a: EvtchnBindInterdomain = read_arg(doms[cur].as_ref().unwrap(), arg)?;
            let remote_id = if a.remote_dom == DOMID_SELF {
                me
            } else {
                a.remote_dom
            };
            if remote_id == me {
                // Loopback channels are not supported yet.
                return Err(XenErrno::Einval);
            }
            let rp = a.remote_port as usize;
            {
                let r = other(doms, cur, remote_id)?;
                if rp == 0 || rp >= NR_PORTS || r.evtchn[rp] != (Port::Unbound { remote: me }) {
                    return Err(XenErrno::Einval);
                }
            }
            let d = doms[cur].as_mut().unwrap();
            let lp = alloc_port(d)?;
            a.local_port = lp as u32;
            d.copy_to_guest(arg, a.as_bytes())?;
            d.evtchn[lp] = Port::Interdomain {
                remote: remote_id,
                remote_port: rp as u32,
            };
            // Like Xen, the new local port starts pending.
            set_pending(d, lp as u32);
            let r = other(doms, cur, remote_id)?;
            r.evtchn[rp] = Port::Interdomain {
                remote: me,
                remote_port: lp as u32,
            };
            Ok(0)
        }
        EvtchnOp::BindVirq => {
            let d = doms[cur].as_mut().ok_or(XenErrno::Esrch)?;
            let mut a: EvtchnBindVirq = read_arg(d, arg)?;
            // VIRQ_TIMER and VIRQ_DEBUG, per vCPU as in Xen (a vCPU the domain lacks
            // ENOENT, one bound already on it EEXIST); others EINVAL.
            let virq = Virq::from_raw(a.virq);
            if !matches!(virq, Some(Virq::Timer) | Some(Virq::Debug)) {
                return Err(XenErrno::Einval);
            }
            let k = a.vcpu as usize;
            if k >= d.nr_vcpus {
                return Err(XenErrno::Enoent);
            }
            let bound = (1..NR_PORTS)
                .any(|p| d.evtchn[p] == Port::Virq(a.virq) && d.smp.notify[p] as usize == k);
            if bound {
                return Err(XenErrno::Eexist);
            }
            let p = alloc_port(d)?;
            a.port = p as u32;
            d.copy_to_guest(arg, a.as_bytes())?;
            d.evtchn[p] = Port::Virq(a.virq);
            d.smp.notify[p] = k as u8;
            if virq == Some(Virq::Timer) {
                d.smp.ev[k].virq_timer = Some(p as u32);
            }
            Ok(0)
        }
        EvtchnOp::BindIpi => {
            // A port for IPIs to a vCPU of the domain (ENOENT if it has none such).
            let d = doms[cur].as_mut().ok_or(XenErrno::Esrch)?;
            let mut a: EvtchnBindIpi = read_arg(d, arg)?;
            if a.vcpu as usize >= d.nr_vcpus {
                return Err(XenErrno::Enoent);
            }
            let p = alloc_port(d)?;
            a.port = p as u32;
            d.copy_to_guest(arg, a.as_bytes())?;
            d.evtchn[p] = Port::Ipi(a.vcpu);
            d.smp.notify[p] = a.vcpu as u8;
            Ok(0)
        }
        EvtchnOp::BindVcpu => {
            // As Xen's evtchn_bind_vcpu: a vCPU the domain lacks ENOENT; per-vCPU
            // VIRQs and IPI ports EINVAL; unbound and interdomain ports (the console's
            // too) notify the new vCPU from now on.
            let d = doms[cur].as_mut().ok_or(XenErrno::Esrch)?;
            let a: EvtchnBindVcpu = read_arg(d, arg)?;
            let p = port_index(d, a.port)?;
            if a.vcpu as usize >= d.nr_vcpus {
                return Err(XenErrno::Enoent);
            }
            match d.evtchn[p] {
                Port::Virq(_) | Port::Ipi(_) | Port::Free => Err(XenErrno::Einval),
                _ => {
                    d.smp.notify[p] = a.vcpu as u8;
                    Ok(0)
                }
            }
        }
        EvtchnOp::Send => {
            let a: EvtchnSend = read_arg(doms[cur].as_ref().unwrap(), arg)?;
            let d = doms[cur].as_mut().unwrap();
            let p = port_index(d, a.port)?;
            match d.evtchn[p] {
                Port::Interdomain {
                    remote,
                    remote_port,
                } => {
                    if let Ok(r) = other(doms, cur, remote) {
                        set_pending(r, remote_port);
                    }
                    Ok(0)
                }
                Port::Ipi(_) => {
                    set_pending(d, p as u32);
                    Ok(0)
                }
                Port::Console => {
                    crate::hvm::console_drain(d);
                    Ok(0)
                }
                // Xen drops a send on an unbound port silently.
                _ => Ok(0),
            }
        }
        EvtchnOp::Close => {
            let a: EvtchnClose = read_arg(doms[cur].as_ref().unwrap(), arg)?;
            let d = doms[cur].as_mut().unwrap();
            let p = port_index(d, a.port)?;
            let was = d.evtchn[p];
            d.evtchn[p] = Port::Free;
            d.smp.notify[p] = 0;
            for e in d.smp.ev.iter_mut() {
                if e.virq_timer == Some(p as u32) {
                    e.virq_timer = None;
                }
            }
            if let Port::Interdomain {
                remote,
                remote_port,
            } = was
            {
                if let Ok(r) = other(doms, cur, remote) {
                    r.evtchn[remote_port as usize] = Port::Unbound { remote: me };
                }
            }
            Ok(0)
        }
        EvtchnOp::Unmask => {
            let a: EvtchnSend = read_arg(doms[cur].as_ref().unwrap(), arg)?;
            let d = doms[cur].as_mut().unwrap();
            let p = port_index(d, a.port)? as u32;
            let (ma, mm) = bit(d.shared_info, MASK_OFF, p);
            // Atomic: another vCPU of the domain may change the word meanwhile.
            phys::fetch_and_u64(ma.0, !mm);
            let (pa, pm) = bit(d.shared_info, PENDING_OFF, p);
            if phys::read_u64(pa.0) & pm != 0 {
                raise_upcall(d, p);
            }
            Ok(0)
        }
        EvtchnOp::Status => {
            let d = doms[cur].as_mut().unwrap();
            let mut s: EvtchnStatus = read_arg(d, arg)?;
            if s.dom != DOMID_SELF && s.dom != me {
                return Err(XenErrno::Eperm);
            }
            let p = s.port as usize;
            if p >= NR_PORTS {
                return Err(XenErrno::Einval);
            }
            let (status, u) = match d.evtchn[p] {
                Port::Free => (EvtchnStat::Closed, [0, 0]),
                Port::Unbound { remote } => (EvtchnStat::Unbound, [remote as u32, 0]),
                Port::Interdomain {
                    remote,
                    remote_port,
                } => (EvtchnStat::Interdomain, [remote as u32, remote_port]),
                Port::Virq(v) => (EvtchnStat::Virq, [v, 0]),
                Port::Ipi(_) => (EvtchnStat::Ipi, [0, 0]),
                Port::Console => (EvtchnStat::Interdomain, [0, 0]),
            };
            s.status = status as u32;
            s.vcpu = d.smp.notify[p] as u32;
            s.u = u;
            d.copy_to_guest(arg, s.as_bytes())?;
            Ok(0)
        }
        _ => Err(XenErrno::Enosys),
    }
}

/// Closes every channel of the domain at `cur` (it is being destroyed): the remote ends
/// of its interdomain channels become unbound, as in Xen.
pub fn close_all(doms: &mut [Option<Domain>], cur: usize) {
    let Some(d) = doms[cur].as_mut() else { return };
    let me = d.id;
    let ports = d.evtchn;
    d.evtchn = [Port::Free; NR_PORTS];
    for e in d.smp.ev.iter_mut() {
        e.virq_timer = None;
    }
    for p in ports {
        if let Port::Interdomain {
            remote,
            remote_port,
        } = p
        {
            if let Ok(r) = other(doms, cur, remote) {
                r.evtchn[remote_port as usize] = Port::Unbound { remote: me };
            }
        }
    }
}
