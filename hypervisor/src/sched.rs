//! The scheduler and the exit loop: what every CPU shares ([`World`], behind one
//! lock), round-robin picking of vCPUs, a vCPU's slice on a CPU (#VMEXIT handling),
//! the TLB kick-and-wait (`sync_vcpus`), leaving and tearing down a domain.

use crate::arch::smp::MAX_CPUS;
use crate::arch::svm::{Svm, SvmVcpu};
use crate::domain::{Domain, RunState};
use crate::hypercall::After;
use crate::mm::FrameAllocator;
use crate::virt::{Exit, VcpuState, VirtBackend};
use crate::{
    arch, console_in, evtchn, hvm, hypercall, intercept, iommu, log, passthrough, time, vsmp,
};
use crate::{MAX_DOMAINS, TIME_SLICE_NS};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

mod teardown;

use teardown::teardown;

/// What every CPU shares, behind one lock: the domains (with their event-channel and
/// grant state), the frame allocator, the IOMMU. A CPU holds it to pick a vCPU and to
/// handle each exit; never while a guest runs.
pub(crate) struct World {
    pub(crate) domains: [Option<Domain>; MAX_DOMAINS],
    /// What each domain slot was made from (to make it again when its guest reboots).
    pub(crate) launches: [Option<crate::launch::Launch>; MAX_DOMAINS],
    pub(crate) fa: FrameAllocator,
    pub(crate) protection: Option<iommu::Protection>,
    /// The machine's PCI functions and groups, made when a domain first asks for one.
    pub(crate) inventory: Option<passthrough::Inventory>,
    /// The boot CPU's backend: APs take its permission maps.
    pub(crate) svm: Svm,
    pub(crate) clock: time::Clock,
    /// The LAPIC timer's initial count for a slice (calibrated on the boot CPU).
    pub(crate) tick_count: u32,
    /// Round-robin cursor into `domains`.
    pub(crate) next: usize,
    pub(crate) stats: [CpuStats; MAX_CPUS],
    /// CPUs that joined the scheduler, and their APIC ids.
    pub(crate) online: [Option<u32>; MAX_CPUS],
    /// CPUs asleep in HLT until their next tick (a CPU making a vCPU runnable kicks one).
    pub(crate) idle: [bool; MAX_CPUS],
    /// Frames the CPUs took for themselves (AP stacks, SVM save areas): not domains'.
    pub(crate) cpu_frames: u64,
    /// Where typed serial input goes (the Ctrl-A x3 switch key).
    pub(crate) console_in: console_in::ConsoleIn,
}

#[derive(Default, Clone, Copy)]
pub(crate) struct CpuStats {
    /// vCPU slices started on this CPU.
    pub(crate) slices: u64,
    pub(crate) exits: u64,
    pub(crate) hypercalls: u64,
    pub(crate) preemptions: u64,
}

pub(crate) static WORLD: spin::Once<Mutex<World>> = spin::Once::new();
/// Per CPU: #VMEXITs so far, counted before the CPU takes the lock, so a CPU holding it
/// can wait for another to have left its guest.
pub(crate) static VMEXITS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: between taking a vCPU and its #VMEXIT (the guest may run).
pub(crate) static IN_GUEST: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

impl World {
    /// The next runnable vCPU that no CPU runs, round-robin over the domains; taken out
    /// of its domain for `cpu` to run. Returns (domain index, vCPU index, vCPU).
    fn pick(&mut self, cpu: usize) -> Option<(usize, usize, SvmVcpu)> {
        let n = self.domains.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            let Some(d) = self.domains[i].as_mut() else {
                continue;
            };
            if d.dying {
                continue;
            }
            // Round-robin among its vCPUs too.
            let nv = d.nr_vcpus;
            let Some(k) = (0..nv).map(|j| (d.next_vcpu + j) % nv).find(|&k| {
                let v = &d.vcpus[k];
                v.state == RunState::Runnable && v.running_on.is_none() && v.slot.is_some()
            }) else {
                continue;
            };
            d.next_vcpu = k + 1;
            if d.on_cpu() {
                d.side_by_side += 1;
            }
            let last_here = d.last_vcpu_on[cpu] as usize;
            let v = &mut d.vcpus[k];
            let Some(mut s) = v.slot.take() else {
                continue;
            };
            // ASIDs are global (the domain id, shared by its vCPUs): this CPU's TLB may
            // hold stale entries for it if the vCPU ran elsewhere since, if another of
            // its vCPUs ran here last, or if its NPT changed meanwhile.
            if v.flush_pending || v.last_cpu != Some(cpu) || last_here != k {
                s.flush_tlb();
                v.flush_pending = false;
            }
            v.running_on = Some(cpu);
            v.last_cpu = Some(cpu);
            d.last_vcpu_on[cpu] = k as u8;
            if let Some(vi) = hvm::vcpu_info_pa(d, k) {
                d.clock.publish(vi);
            }
            vsmp::before_entry(d, k, &mut s);
            hvm::runstate_switch(d, k, true);
            self.next = i + 1;
            self.stats[cpu].slices += 1;
            return Some((i, k, s));
        }
        None
    }

    /// Interrupts each other CPU running a vCPU that something became due for (an
    /// event, an IPI, a wake-up), so it enters again with it; no wait.
    fn kick_flagged(&mut self, cpu: usize) {
        for d in self.domains.iter_mut().flatten() {
            for k in 0..d.nr_vcpus {
                if !core::mem::take(&mut d.smp.ev[k].kick) {
                    continue;
                }
                let other = d.vcpus[k].running_on.filter(|&c| c != cpu);
                if let Some(apic) = other.and_then(|c| self.online[c]) {
                    arch::lapic::kick(apic);
                }
            }
        }
    }

    /// Kicks one sleeping CPU if a vCPU is runnable that no CPU runs (an event or a
    /// shutdown just freed one), so it need not wait for that CPU's tick.
    fn wake_idle(&mut self) {
        let waiting = self.domains.iter().flatten().any(|d| {
            !d.dying
                && d.vcpus[..d.nr_vcpus]
                    .iter()
                    .any(|v| v.state == RunState::Runnable && v.running_on.is_none())
        });
        if !waiting {
            return;
        }
        if let Some(c) = (0..MAX_CPUS).find(|&c| self.idle[c]) {
            self.idle[c] = false;
            if let Some(apic) = self.online[c] {
                arch::lapic::kick(apic);
            }
        }
    }

    /// Makes every other CPU running a vCPU whose nested page table changed (a grant
    /// unmapped or revoked) leave its guest, so no stale translation outlives this
    /// exit's handling (it flushes when it takes the lock again). Also kicks the other
    /// vCPUs of a dying domain off their CPUs. Then no CPU can use a translation removed
    /// before: the frames the allocator held back for that become reusable.
    fn sync_vcpus(&mut self, cpu: usize) {
        for d in self.domains.iter().flatten() {
            for v in d.vcpus.iter() {
                let Some(c) = v.running_on else { continue };
                if c == cpu || !(v.flush_pending || d.dying) {
                    continue;
                }
                let Some(apic) = self.online[c] else { continue };
                // A CPU already out of its guest waits for this lock: no wait then.
                // One about to enter takes the kick at VMRUN and exits at once.
                let seen = VMEXITS[c].load(Ordering::SeqCst);
                arch::lapic::kick(apic);
                while IN_GUEST[c].load(Ordering::SeqCst)
                    && VMEXITS[c].load(Ordering::SeqCst) == seen
                {
                    core::hint::spin_loop();
                }
            }
        }
        passthrough::resync(self);
        self.fa.tlbs_synced();
    }
}

/// One CPU's scheduler: round-robin over the runnable vCPUs of every domain (a vCPU on
/// one CPU at a time); a vCPU runs until it yields, blocks, halts, ends or its time
/// slice (this CPU's LAPIC tick) is over. Returns once every domain has ended.
pub(crate) fn cpu_loop(cpu: usize, svm: &Svm, world: &Mutex<World>) {
    loop {
        let mut guard = world.lock();
        let w = &mut *guard;
        w.idle[cpu] = false;
        if cpu == 0 {
            passthrough::drain_faults(w);
            if serial_input(&mut w.domains, &mut w.console_in) > 0 {
                dump(w);
            }
        }
        passthrough::pump(w);
        fire_timers(&mut w.domains);
        w.kick_flagged(cpu);
        if let Some((i, k, mut vcpu)) = w.pick(cpu) {
            // A device interrupt raised while the vCPU was off its CPU.
            if let Some(d) = w.domains[i].as_mut() {
                passthrough::before_entry(d, k, &mut vcpu);
            }
            // Another vCPU still waiting (one whose slice just ended here): an idle CPU
            // takes it.
            w.wake_idle();
            // The slice's time starts now: the tick restarts so it comes at its end.
            let slice_end = w.clock.now_ns() + TIME_SLICE_NS - TICK_SLACK_NS;
            arch::lapic::restart_tick(w.tick_count);
            drop(guard);
            run_slice(cpu, svm, world, i, k, vcpu, slice_end);
            continue;
        }
        if w.domains.iter().all(Option::is_none) {
            return;
        }
        let running = w.domains.iter().flatten().any(|d| d.on_cpu());
        let next = w
            .domains
            .iter()
            .flatten()
            .flat_map(|d| d.smp.ev[..d.nr_vcpus].iter().map(|e| e.next_deadline()))
            .flatten()
            .min();
        if !running && next.is_none() {
            // Nothing runs or is runnable, yet some are blocked and no timer exists
            // to wake them: wake them (SCHEDOP_block may return spuriously).
            for d in w.domains.iter_mut().flatten() {
                for v in d.vcpus.iter_mut() {
                    if v.state == RunState::Blocked {
                        v.state = RunState::Runnable;
                    }
                }
            }
            // Domains whose vCPUs are all down cannot go on: ended.
            for i in 0..w.domains.len() {
                let stuck = w.domains[i].as_ref().is_some_and(|d| {
                    d.vcpus[..d.nr_vcpus]
                        .iter()
                        .all(|v| v.state == RunState::Down)
                });
                if stuck {
                    if let Some(d) = w.domains[i].as_mut() {
                        log!("domain {} ({}): every vCPU down: ended", d.id, d.name());
                        hypercall::apply(d, After::Kill);
                    }
                    teardown(w, cpu, i);
                }
            }
            continue;
        }
        let clock = w.clock;
        let tick = w.tick_count;
        match next.map(|t| t.saturating_sub(clock.now_ns())) {
            // A timer due very soon: wait for it here.
            Some(left) if left < SPIN_NS => {
                let t = clock.now_ns() + left;
                drop(guard);
                while clock.now_ns() < t {
                    core::hint::spin_loop();
                }
            }
            // Due within a slice: sleep until then (this CPU's tick shortened to it, as
            // Xen's idle CPUs sleep until their next timer), or a kick. Spinning instead
            // would take a host core from the running vCPUs under TCG.
            Some(left) if left < TIME_SLICE_NS => {
                w.idle[cpu] = true;
                drop(guard);
                let count = (left as u128 * tick as u128 / TIME_SLICE_NS as u128) as u32;
                arch::lapic::start_periodic_count(count.max(1));
                arch::lapic::wait_for_interrupt();
                arch::lapic::start_periodic_count(tick);
            }
            // Else sleep until this CPU's next tick, or a kick (taken even if it
            // comes before the HLT: it stays pending while interrupts are off).
            _ => {
                w.idle[cpu] = true;
                drop(guard);
                arch::lapic::wait_for_interrupt();
            }
        }
    }
}

/// A timer due sooner than this is waited for spinning, not sleeping.
const SPIN_NS: u64 = 50_000;

/// An interrupt exit this close to the slice's end is taken for the tick (the LAPIC
/// timer and the TSC-based clock need not agree to the nanosecond).
const TICK_SLACK_NS: u64 = TIME_SLICE_NS / 10;

/// Runs vCPU `k` of domain `i` on `cpu` until it leaves the CPU; each exit is handled
/// with the lock held, the guest runs without it.
/// An interrupt exit before `slice_end` (clock ns) is not the tick: an assigned device's
/// MSI or another CPU's kick; the vCPU then goes on with its slice.
fn run_slice(
    cpu: usize,
    svm: &Svm,
    world: &Mutex<World>,
    i: usize,
    k: usize,
    mut vcpu: SvmVcpu,
    slice_end: u64,
) {
    svm.begin_slice(&vcpu);
    loop {
        IN_GUEST[cpu].store(true, Ordering::SeqCst);
        let exit = svm.run(&mut vcpu);
        IN_GUEST[cpu].store(false, Ordering::SeqCst);
        VMEXITS[cpu].fetch_add(1, Ordering::SeqCst);
        let mut guard = world.lock();
        let w = &mut *guard;
        let Some(d) = w.domains[i].as_mut() else {
            return;
        };
        d.cur = k;
        vsmp::sync_taken(d, k, &vcpu);
        let v = &mut d.vcpus[k];
        v.slot = Some(vcpu);
        if v.flush_pending {
            v.flush_pending = false;
            d.vcpu().flush_tlb();
        }
        let st = &mut w.stats[cpu];
        st.exits += 1;
        if matches!(exit, Exit::Hypercall) {
            st.hypercalls += 1;
        }
        if d.dying {
            // Another vCPU ended the domain while this one ran.
            arch::lapic::take_pending_interrupt();
            end_slice(w, svm, i, k);
            leave(w, cpu, i, k, After::Kill);
            return;
        }
        let mut after = match passthrough::exit(w, i, &exit) {
            Some(a) => a,
            None => handle_exit(&mut w.domains, &mut w.fa, i, exit),
        };
        if matches!(exit, Exit::ExternalInterrupt) {
            // Only the tick ends the slice; a device's MSI (pumped below, injected at
            // the next entry) or a kick does not, or each interrupt would cost the
            // guest its CPU (found by the MSI latency bench).
            if w.clock.now_ns() < slice_end {
                after = After::Continue;
            } else if let Some(d) = w.domains[i].as_mut() {
                d.preemptions += 1;
                w.stats[cpu].preemptions += 1;
            }
        }
        if matches!(exit, Exit::ExternalInterrupt) {
            passthrough::pump(w);
        }
        if matches!(exit, Exit::Hypercall) {
            w.sync_vcpus(cpu);
        }
        w.kick_flagged(cpu);
        w.wake_idle();
        if after == After::Continue {
            if let Some(d) = w.domains[i].as_mut() {
                if let Some(mut v) = d.vcpus[k].slot.take() {
                    vsmp::before_entry(d, k, &mut v);
                    passthrough::before_entry(d, k, &mut v);
                    d.vcpus[k].slot = Some(v);
                }
            }
            if let Some(v) = w.domains[i].as_mut().and_then(|d| d.vcpus[k].slot.take()) {
                vcpu = v;
                drop(guard);
                continue;
            }
            return;
        }
        end_slice(w, svm, i, k);
        leave(w, cpu, i, k, after);
        if after != After::Yield {
            w.wake_idle();
        }
        // A vCPU whose slice ended is taken again by this CPU unless another waits
        // (`cpu_loop` then kicks an idle CPU for it): no other CPU is woken to race for
        // it, so a lone vCPU stays on its CPU, as on Xen.
        return;
    }
}

/// vCPU `k` of domain `i` (back in its domain) ends its slice: the state it kept in the
/// CPU's registers across its exits is saved (before another CPU may take it).
fn end_slice(w: &mut World, svm: &Svm, i: usize, k: usize) {
    if let Some(v) = w.domains[i].as_mut().and_then(|d| d.vcpus[k].slot.as_mut()) {
        svm.end_slice(v);
    }
}

/// vCPU `k` of domain `i` left `cpu` for `after`; a dead domain is torn down once none
/// of its vCPUs is on a CPU.
fn leave(w: &mut World, cpu: usize, i: usize, k: usize, after: After) {
    let Some(d) = w.domains[i].as_mut() else {
        return;
    };
    d.vcpus[k].running_on = None;
    let was_dying = d.dying;
    hypercall::apply(d, after);
    hvm::runstate_switch(d, k, false);
    if !d.dying {
        return;
    }
    if !was_dying {
        if let After::Shutdown(reason) = after {
            log!(
                "domain {} ({}): shut down, reason {} ({} preemptions)",
                d.id,
                d.name(),
                reason,
                d.preemptions
            );
        }
    }
    if d.on_cpu() {
        // Its other vCPUs leave at their next exit; the last one tears it down.
        w.sync_vcpus(cpu);
        return;
    }
    teardown(w, cpu, i);
}

/// Sends each vCPU whose single-shot timer has expired, or whose periodic timer is due
/// (both raise it, as in Xen), its VIRQ_TIMER; ends polls that timed out.
fn fire_timers(domains: &mut [Option<Domain>]) {
    for d in domains.iter_mut().flatten() {
        let now = d.clock.now_ns();
        for k in 0..d.nr_vcpus {
            if d.smp.ev[k].poll_deadline.is_some_and(|t| now >= t) {
                d.end_poll(k);
            }
            let e = &mut d.smp.ev[k];
            let mut fire = false;
            if e.timer_deadline.is_some_and(|t| now >= t) {
                e.timer_deadline = None;
                fire = true;
            }
            if e.periodic_deadline().is_some_and(|t| now >= t) {
                e.periodic_last = now;
                fire = true;
            }
            if !fire {
                continue;
            }
            match e.virq_timer {
                Some(port) => {
                    if let Some(vi) = hvm::vcpu_info_pa(d, k) {
                        d.clock.publish(vi);
                    }
                    evtchn::set_pending(d, port);
                }
                None => d.wake(k),
            }
        }
    }
}

fn kill(d: &mut Domain, why: core::fmt::Arguments) -> After {
    log!("domain {} ({}): KILLED: {}", d.id, d.name(), why);
    After::Kill
}

/// The debug key (crate::console_in): each CPU's state, each domain's vCPUs
/// (crate::dump), the assigned devices' interrupts.
fn dump(w: &World) {
    for (c, apic) in w.online.iter().enumerate() {
        let Some(apic) = apic else { continue };
        let st = &w.stats[c];
        log!(
            "dump: CPU {} (APIC id {}): {}{} exits so far; {} slices, {} preemptions",
            c,
            apic,
            if IN_GUEST[c].load(Ordering::SeqCst) {
                "in a guest, "
            } else if w.idle[c] {
                "idle, "
            } else {
                ""
            },
            VMEXITS[c].load(Ordering::SeqCst),
            st.slices,
            st.preemptions
        );
    }
    for d in w.domains.iter().flatten() {
        crate::dump::domain(d);
    }
    passthrough::dump(w);
}

/// Typed serial input (up to 64 bytes a scheduling round) goes to the PV console of the
/// chosen domain (crate::console_in: Ctrl-A three times switches); returns the dumps the
/// debug key asked for.
fn serial_input(domains: &mut [Option<Domain>], input: &mut console_in::ConsoleIn) -> usize {
    let mut buf = [0u8; console_in::BATCH];
    let mut n = 0;
    while n < buf.len() {
        match arch::serial::try_read() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    if n > 0 {
        return input.feed(domains, &buf[..n]);
    }
    0
}

/// Handles one exit of the vCPU of domain `i` (back in its domain).
fn handle_exit(
    domains: &mut [Option<Domain>],
    fa: &mut FrameAllocator,
    i: usize,
    exit: Exit,
) -> After {
    let Some(d) = domains[i].as_mut() else {
        return After::Kill;
    };
    let rip = d.vcpu().rip();
    let msr = d.vcpu().regs().rcx as u32;
    vsmp::tally(d, &exit, msr);
    let after = match exit {
        Exit::Hypercall => hypercall::hypercall(domains, i, fa),
        Exit::Cpuid => {
            hypercall::cpuid(d);
            After::Continue
        }
        Exit::Msr { write } => hypercall::msr(d, write),
        Exit::Hlt => {
            d.vcpu().set_rip(rip + 1);
            vsmp::hlt(d)
        }
        Exit::Io {
            port,
            input,
            size,
            string,
            rep,
            next_rip,
        } => hvm::io(
            d,
            hvm::IoExit {
                port,
                input,
                size,
                string,
                rep,
                next_rip,
            },
        ),
        Exit::ExternalInterrupt => {
            // The LAPIC tick (its slice is over), a kick or a device's MSI: taken here;
            // `run_slice` tells them apart by the slice's time.
            arch::lapic::take_pending_interrupt();
            After::Yield
        }
        Exit::NestedPageFault { gpa, flags, .. } => kill(
            d,
            format_args!(
                "nested page fault at gpa {:#x} (flags {:#x}, rip {:#x}): {}",
                gpa,
                flags,
                rip,
                if flags & 1 != 0 {
                    "write to a read-only mapping"
                } else {
                    "not its memory"
                }
            ),
        ),
        Exit::Exception { vector, error_code } => intercept::exception(d, vector, error_code),
        Exit::Insn(insn) => intercept::insn(d, insn),
        Exit::Shutdown => kill(d, format_args!("triple fault (rip {:#x})", rip)),
        Exit::Invalid => kill(d, format_args!("VMRUN refused the guest state")),
        Exit::Other(code) => kill(d, format_args!("unhandled exit {:#x}", code)),
    };
    after
}
