//! Where a netif queue's thread spends its time: counts always, phase times with
//! `sluice-netback --profile` (the phases and clocks are `sluice_dom0::profile`'s; why
//! timing is opt-in is written there). One per queue thread, logged when it stops.

pub use sluice_dom0::profile::bump;
use sluice_dom0::profile::{ms, raise, thread_cpu, write_phases, ClockCosts, IntervalStart, Phase};
use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// A queue's counters.
pub struct NetProfile {
    started: Instant,
    costs: ClockCosts,
    /// Turns that moved guest packets to the tap.
    pub tx_turns: Cell<u64>,
    /// Guest packets parsed (good or dropped), their ring slots and data bytes.
    pub tx_packets: Cell<u64>,
    /// Ring slots of those packets (data and extra info).
    pub tx_slots: Cell<u64>,
    /// Bytes of the good packets.
    pub tx_bytes: Cell<u64>,
    /// Hypervisor copy operations those TX grant copies make (one per page of ours a
    /// segment touches: `IOCTL_GNTDEV_GRANT_COPY` splits there).
    pub tx_ops: Cell<u64>,
    /// Grant copies of TX data (one ioctl per turn).
    pub tx_copy: Phase,
    /// Mappings of TX grants (`--tx-map`: one ioctl and one mmap per turn).
    pub tx_map: Phase,
    /// Their unmapping (munmap and one ioctl per turn).
    pub tx_unmap: Phase,
    /// Frames written to the tap (one syscall each).
    pub tap_write: Phase,
    /// Turns that gave tap frames to the guest.
    pub rx_turns: Cell<u64>,
    /// Frames given to the guest.
    pub rx_frames: Cell<u64>,
    /// RX requests they used (data and GSO extra).
    pub rx_slots: Cell<u64>,
    /// Bytes of those frames.
    pub rx_bytes: Cell<u64>,
    /// Most frames in one turn.
    pub rx_batch_max: Cell<u64>,
    /// Reads of the tap (each a syscall; the last of a turn usually finds nothing).
    pub tap_read: Phase,
    /// Hypervisor copy operations of the RX grant copies (as `tx_ops`).
    pub rx_ops: Cell<u64>,
    /// Grant copies of RX data (one ioctl per turn).
    pub rx_copy: Phase,
    /// Frames that waited for the guest to post RX requests.
    pub rx_held: Cell<u64>,
    /// Notifications sent (TX and RX).
    pub notifies: Cell<u64>,
    /// Syscalls for the tap and the waits: without io_uring each tap read, tap write
    /// and `poll`; with it, each `io_uring_enter` (a batch of writes, a wait).
    pub tap_calls: Cell<u64>,
    /// Event-channel wakeups read and unmasked in the io_uring (no syscall of their own).
    pub evtchn_ring: Cell<u64>,
    /// Waits in `poll(2)` with nothing to do.
    pub wait: Phase,
    /// Event-channel drains after a wait (read the pending ports, unmask each).
    pub drain: Phase,
    /// Where the last [`NetProfile::interval`] line left off.
    mark: Cell<Mark>,
}

/// The counters an interval line is the difference of.
#[derive(Clone, Copy, Default)]
struct Mark {
    start: IntervalStart,
    tx_packets: u64,
    tx_bytes: u64,
    rx_frames: u64,
    rx_bytes: u64,
}

impl Default for NetProfile {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            costs: ClockCosts::measure(),
            tx_turns: Cell::new(0),
            tx_packets: Cell::new(0),
            tx_slots: Cell::new(0),
            tx_bytes: Cell::new(0),
            tx_ops: Cell::new(0),
            tx_copy: Phase::default(),
            tx_map: Phase::default(),
            tx_unmap: Phase::default(),
            tap_write: Phase::default(),
            rx_turns: Cell::new(0),
            rx_frames: Cell::new(0),
            rx_slots: Cell::new(0),
            rx_bytes: Cell::new(0),
            rx_ops: Cell::new(0),
            rx_batch_max: Cell::new(0),
            tap_read: Phase::default(),
            rx_copy: Phase::default(),
            rx_held: Cell::new(0),
            notifies: Cell::new(0),
            tap_calls: Cell::new(0),
            evtchn_ring: Cell::new(0),
            wait: Phase::default(),
            drain: Phase::default(),
            mark: Cell::new(Mark {
                start: IntervalStart::now(),
                ..Mark::default()
            }),
        }
    }
}

impl NetProfile {
    /// With timing on (`--profile`), once `every` has passed since the last one: what
    /// this queue moved since then (packets, bytes, the thread's CPU), as one line
    /// (how the queues of a vif share the traffic over time); `None` otherwise.
    pub fn interval(&self, every: Duration) -> Option<String> {
        let last = self.mark.get();
        let (start, passed) = last.start.due(every)?;
        let span = passed.span;
        let m = Mark {
            start,
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            rx_frames: self.rx_frames.get(),
            rx_bytes: self.rx_bytes.get(),
        };
        self.mark.set(m);
        let (rx_frames, rx_bytes) = (m.rx_frames - last.rx_frames, m.rx_bytes - last.rx_bytes);
        let (tx_packets, tx_bytes) = (m.tx_packets - last.tx_packets, m.tx_bytes - last.tx_bytes);
        let mbit = |b: u64| b as f64 * 8.0 / span.as_secs_f64().max(1e-3) / 1e6;
        Some(format!(
            "last {:.0} ms: rx {rx_frames} frames ({:.0} Mbit/s, {:.0} B/frame), tx {tx_packets} packets ({:.0} Mbit/s, {:.0} B/packet), thread cpu {:.0} ms",
            ms(span),
            mbit(rx_bytes),
            rx_bytes as f64 / rx_frames.max(1) as f64,
            mbit(tx_bytes),
            tx_bytes as f64 / tx_packets.max(1) as f64,
            ms(passed.cpu),
        ))
    }

    /// Counts one RX turn of `frames`.
    pub fn rx_turn(&self, frames: usize) {
        bump(&self.rx_turns, 1);
        raise(&self.rx_batch_max, frames as u64);
    }
}

impl fmt::Display for NetProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |a: &Cell<u64>, b: &Cell<u64>| a.get() as f64 / b.get().max(1) as f64;
        write!(
            f,
            "{:.0} ms, thread cpu {:.0} ms; tx {} packets ({} MiB, {:.0} B/packet, {:.1} \
             slots/packet, {:.1} copy ops/packet, {:.1} packets/turn); rx {} frames ({} MiB, \
             {:.0} B/frame, {:.1} slots/frame, {:.1} copy ops/frame, {:.1} frames/turn, max {}), {} waited for rx requests; \
             {} notifications; {} tap/wait syscalls ({:.2} per frame), {} event-channel wakeups in the ring;",
            ms(self.started.elapsed()),
            ms(thread_cpu()),
            self.tx_packets.get(),
            self.tx_bytes.get() >> 20,
            per(&self.tx_bytes, &self.tx_packets),
            per(&self.tx_slots, &self.tx_packets),
            per(&self.tx_ops, &self.tx_packets),
            per(&self.tx_packets, &self.tx_turns),
            self.rx_frames.get(),
            self.rx_bytes.get() >> 20,
            per(&self.rx_bytes, &self.rx_frames),
            per(&self.rx_slots, &self.rx_frames),
            per(&self.rx_ops, &self.rx_frames),
            per(&self.rx_frames, &self.rx_turns),
            self.rx_batch_max.get(),
            self.rx_held.get(),
            self.notifies.get(),
            self.tap_calls.get(),
            self.tap_calls.get() as f64
                / (self.tx_packets.get() + self.rx_frames.get()).max(1) as f64,
            self.evtchn_ring.get(),
        )?;
        write_phases(
            f,
            &[
                ("tx-copy", &self.tx_copy),
                ("tx-map", &self.tx_map),
                ("tx-unmap", &self.tx_unmap),
                ("tap-write", &self.tap_write),
                ("tap-read", &self.tap_read),
                ("rx-copy", &self.rx_copy),
                ("wait", &self.wait),
                ("drain", &self.drain),
            ],
        )?;
        write!(f, " ({})", self.costs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_line_counts_only_what_moved_since_the_last_one() {
        let p = NetProfile::default();
        sluice_dom0::profile::enable_timing(false);
        assert_eq!(p.interval(Duration::ZERO), None, "only with --profile");
        sluice_dom0::profile::enable_timing(true);
        assert_eq!(p.interval(Duration::from_secs(3600)), None, "not due yet");
        bump(&p.rx_frames, 5);
        bump(&p.rx_bytes, 5000);
        bump(&p.tx_packets, 2);
        let first = p.interval(Duration::ZERO).expect("due");
        assert!(
            first.contains("rx 5 frames") && first.contains("1000 B/frame"),
            "{first}"
        );
        assert!(first.contains("tx 2 packets"), "{first}");
        bump(&p.rx_frames, 1);
        let second = p.interval(Duration::ZERO).expect("due");
        assert!(
            second.contains("rx 1 frames") && second.contains("tx 0 packets"),
            "{second}"
        );
    }
}
