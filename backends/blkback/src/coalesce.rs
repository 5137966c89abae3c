//! When the io_uring engine sends the notification a frontend asked for.
//!
//! The ring's rule (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`) says when a frontend wants an
//! event: when a push crosses its `rsp_event`. Sending it at once costs the guest an
//! interrupt per batch of responses, and with a few requests in flight that is about one
//! per request (the bench's guests took 0.74-0.91 interrupts per 4 KiB request against
//! both backends). With coalescing, responses are still pushed at once (a frontend that
//! is running sees them), but the notification owed waits while other I/O of the queue
//! is in flight, for at most `limit` more rounds that complete something; it goes at
//! once when nothing is left in flight, when a wait finds nothing completed (after
//! `IO_WAIT`), and always with `limit` 0 (off). So a response's event is late by at most
//! `limit` completions or one `IO_WAIT`, never indefinitely.

/// Rounds an owed notification may wait by default: 2 was ahead of 0 (sent at once) in
/// every job and triple of the same-boot bench (docs/bench.md, 2026-12-07).
pub const DEFAULT_ROUNDS: u32 = 2;

/// The notification owed to the frontend, and how long it has waited.
#[derive(Debug, Default)]
pub struct Coalesce {
    limit: u32,
    owed: bool,
    rounds: u32,
    timed_out: bool,
}

impl Coalesce {
    /// `limit`: rounds an owed notification may wait while I/O is in flight (0: none).
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// A push crossed the frontend's `rsp_event`: it wants an event.
    pub fn owe(&mut self) {
        self.owed = true;
    }

    /// A wait with I/O in flight returned: `completed` whether it brought a completion
    /// (false: it timed out).
    pub fn waited(&mut self, completed: bool) {
        if self.owed {
            self.rounds += 1;
            self.timed_out |= !completed;
        }
    }

    /// Whether to send the owed notification now, with `in_flight` I/O outstanding; a
    /// `true` settles it.
    pub fn due(&mut self, in_flight: usize) -> bool {
        let due = self.owed
            && (self.limit == 0 || in_flight == 0 || self.timed_out || self.rounds >= self.limit);
        if due {
            *self = Self::new(self.limit);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::Coalesce;

    #[test]
    fn off_notifies_at_once() {
        let mut c = Coalesce::new(0);
        assert!(!c.due(3), "nothing owed");
        c.owe();
        assert!(c.due(3));
        assert!(!c.due(3), "settled");
    }

    #[test]
    fn waits_while_io_is_in_flight_for_at_most_limit_rounds() {
        let mut c = Coalesce::new(2);
        c.owe();
        assert!(!c.due(4));
        c.waited(true);
        c.owe(); // another push: still one notification
        assert!(!c.due(3));
        c.waited(true);
        assert!(c.due(2), "two rounds waited");
        assert!(!c.due(2));
    }

    #[test]
    fn goes_when_nothing_is_in_flight() {
        let mut c = Coalesce::new(8);
        c.owe();
        assert!(!c.due(1));
        assert!(c.due(0));
    }

    #[test]
    fn goes_after_a_wait_that_timed_out() {
        let mut c = Coalesce::new(8);
        c.owe();
        c.waited(false);
        assert!(c.due(5));
    }

    #[test]
    fn rounds_before_anything_is_owed_do_not_count() {
        let mut c = Coalesce::new(1);
        c.waited(false);
        c.waited(true);
        c.owe();
        assert!(!c.due(2), "the timeout and the round came before the debt");
        c.waited(true);
        assert!(c.due(2));
    }
}
