//! Where a netif queue's thread spends its time: counts always, phase times with
//! `sluice-netback --profile` (the phases and clocks are `sluice_dom0::profile`'s; why
//! timing is opt-in is written there). One per queue thread, logged when it stops.

pub use sluice_dom0::profile::bump;
use sluice_dom0::profile::{ms, raise, thread_cpu, write_phases, ClockCosts, Phase};
use std::cell::Cell;
use std::fmt;
use std::time::Instant;

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
        }
    }
}

impl NetProfile {
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
