//! The debug key's dump (crate::console_in: Ctrl-] then `q`; Xen's 'q' and 'i' keys):
//! one line per vCPU of a domain, saying whether it runs, waits or sleeps, where, its
//! RIP and IF, what waits in V_IRQ, its LAPIC's TPR / ISR / IRR and the vector it was
//! last given, its raised device vectors, upcall, timers and poll. For a hang: a vCPU
//! asleep with an interrupt waiting, or a vector left in service, shows here.

use crate::domain::Domain;
use crate::virt::VcpuState;
use alloc::string::String;
use core::fmt::{self, Write};

/// The vectors set in 256 bits, as hex ("-" when none; the first 8, then a count).
pub struct Vectors<'a>(pub &'a [u64; 4]);

impl fmt::Display for Vectors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = (0..256usize).filter(|&v| self.0[v / 64] & 1 << (v % 64) != 0);
        let mut n = 0;
        for v in set {
            if n < 8 {
                write!(f, "{}{v:#x}", if n == 0 { "" } else { "," })?;
            }
            n += 1;
        }
        match n {
            0 => f.write_str("-"),
            9.. => write!(f, ",+{}", n - 8),
            _ => Ok(()),
        }
    }
}

/// A deadline relative to `now` (system time, ns), in microseconds.
struct In(Option<u64>, u64);

impl fmt::Display for In {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(t) if t >= self.1 => write!(f, "+{}us", (t - self.1) / 1000),
            Some(t) => write!(f, "-{}us", (self.1 - t) / 1000),
        }
    }
}

/// The dump's line for vCPU `k` of `d`.
pub fn vcpu_line(d: &Domain, k: usize) -> String {
    let v = &d.vcpus[k];
    let e = &d.smp.ev[k];
    let now = d.clock.now_ns();
    let mut s = String::new();
    let _ = write!(s, "dump: d{} vCPU {}: {:?}", d.id, k, v.state);
    match (&v.slot, v.running_on) {
        (_, Some(c)) => {
            let _ = write!(s, ", on CPU {c}");
        }
        (Some(r), None) => {
            let _ = write!(
                s,
                ", rip {:#x} IF {} V_IRQ {}",
                r.rip(),
                r.rflags() >> 9 & 1,
                r.virq().map_or("-".into(), |x| alloc::format!("{x:#x}"))
            );
        }
        (None, None) => s.push_str(", no state"),
    }
    let l = &v.lapic;
    let _ = write!(
        s,
        "; LAPIC TPR {:#x} ISR {} IRR {} given {}; upcall vector {:#x} pending {}",
        l.tpr,
        Vectors(&l.isr),
        Vectors(&e.irr),
        e.injected.map_or("-".into(), |x| alloc::format!("{x:#x}")),
        e.upcall_vector,
        crate::evtchn::upcall_pending(d, k) as u8
    );
    if let Some(p) = d.pci.as_ref() {
        let _ = write!(s, "; device vectors raised {}", Vectors(&p.raised(k)));
    }
    let _ = write!(
        s,
        "; timer {} periodic {} poll {} ({} ports); due {}",
        In(e.timer_deadline, now),
        In(e.periodic_deadline(), now),
        In(e.poll_deadline, now),
        e.poll_n,
        d.interrupt_due(k) as u8
    );
    s
}

/// Logs the dump of domain `d`: a line for the domain, one per vCPU.
pub fn domain(d: &Domain) {
    crate::log!(
        "dump: d{} ({}){}: {} device MSIs injected; exits: {}",
        d.id,
        d.name(),
        if d.dying { " dying" } else { "" },
        d.pci.as_ref().map_or(0, |p| p.injected),
        crate::vsmp::Exits(&d.smp.exits)
    );
    for k in 0..d.nr_vcpus {
        crate::log!("{}", vcpu_line(d, k));
    }
}
