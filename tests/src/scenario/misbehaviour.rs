//! The misbehaviours of the hostile dom0 backends ([`BackendMisbehaviour`],
//! [`NetMisbehaviour`]) and what the hostile frontend's step expects of the block
//! backend (`HOSTILE_*`).

/// How `sluice-hostile-blkback` misbehaves on a disk ([`Workload::MisbehavingBackend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendMisbehaviour {
    /// Answers the first write with an id no slot has.
    BogusId,
    /// Pushes a response for a request never sent at the first write.
    Unsolicited,
    /// Answers the first write as a read.
    OpMismatch,
    /// Maps a grant that is not the ring: never answers (the frontend's I/O timeout).
    WrongRing,
    /// Serves reads, then stops answering at the first write without a state change.
    Vanish,
}

impl BackendMisbehaviour {
    /// Every mode.
    pub const ALL: [BackendMisbehaviour; 5] = [
        BackendMisbehaviour::BogusId,
        BackendMisbehaviour::Unsolicited,
        BackendMisbehaviour::OpMismatch,
        BackendMisbehaviour::WrongRing,
        BackendMisbehaviour::Vanish,
    ];

    /// The mode's name on `sluice-hostile-blkback`'s command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendMisbehaviour::BogusId => "bogus-id",
            BackendMisbehaviour::Unsolicited => "unsolicited",
            BackendMisbehaviour::OpMismatch => "op-mismatch",
            BackendMisbehaviour::WrongRing => "wrong-ring",
            BackendMisbehaviour::Vanish => "vanish",
        }
    }

    /// What `sluice-blkfront` logs (after `sluice-blkfront: xvdX: `).
    pub fn log_line(self) -> &'static str {
        match self {
            BackendMisbehaviour::BogusId => "response id 0xdeadbeef is out of range",
            BackendMisbehaviour::Unsolicited => "answers no request in flight",
            BackendMisbehaviour::OpMismatch => "has operation 0, the request 1",
            BackendMisbehaviour::WrongRing | BackendMisbehaviour::Vanish => "I/O timed out",
        }
    }
}

/// How `sluice-hostile-netback` misbehaves at a connection
/// ([`Workload::NetMisbehavingBackend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMisbehaviour {
    /// A TX response with id 0xdead (never sent).
    BogusId,
    /// RX `rsp_prod` 8 past the posted requests.
    Unsolicited,
    /// Stops answering, state stays Connected (the TX watchdog's timeout).
    Vanish,
    /// An RX response with data past its page and a garbage extra-info slot.
    BadRx,
    /// TX `rsp_prod` 0x40000000 ahead.
    Runaway,
}

impl NetMisbehaviour {
    /// Every mode.
    pub const ALL: [NetMisbehaviour; 5] = [
        NetMisbehaviour::BogusId,
        NetMisbehaviour::Unsolicited,
        NetMisbehaviour::BadRx,
        NetMisbehaviour::Runaway,
        NetMisbehaviour::Vanish,
    ];

    /// The mode's name on `sluice-hostile-netback`'s command line.
    pub fn name(self) -> &'static str {
        match self {
            NetMisbehaviour::BogusId => "bogus-id",
            NetMisbehaviour::Unsolicited => "unsolicited",
            NetMisbehaviour::Vanish => "vanish",
            NetMisbehaviour::BadRx => "bad-rx",
            NetMisbehaviour::Runaway => "runaway",
        }
    }

    /// What `sluice-netfront` logs (after `sluice-netfront: eth0: `).
    pub fn log_line(self) -> &'static str {
        match self {
            NetMisbehaviour::BogusId => "tx response id 57005 out of range; device failed",
            NetMisbehaviour::Unsolicited | NetMisbehaviour::Runaway => {
                "ring: peer's rsp_prod [0-9]* is impossible"
            }
            NetMisbehaviour::Vanish => "backend not answering; device failed",
            NetMisbehaviour::BadRx => "malformed rx packet",
        }
    }

    /// Whether the device fails; a malformed RX packet is only dropped and counted,
    /// as xen-netfront does (netfront-core's design: PROOF.md).
    pub fn fails_device(self) -> bool {
        self != NetMisbehaviour::BadRx
    }
}

/// Bytes `sluice-hostile-blkfront` writes validly (its `VALID_BYTES`: 4 direct + 16
/// indirect pages), at [`Workload::regions`].
pub const HOSTILE_WRITE_BYTES: u64 = 20 * 4096;

/// Sectors the hostile frontend's steady device writes ([`GuestStep::hostile_steady_disk`];
/// its `STEADY_BYTES`).
pub const HOSTILE_STEADY_SECTORS: u64 = 8 * 4096 / crate::pattern::SECTOR;

/// Lines sluice-blkback logs when it refuses what the hostile frontend does; dom0 greps
/// its log for each after a [`Workload::HostileFrontend`] step.
pub const HOSTILE_LOG_LINES: &[&str] = &[
    "refusing request",
    "grant copy of gref",
    "lie outside the disk",
    "is not a number",
    "closing the device",
    "disconnecting this device",
    // The flood of bad requests: rate limited, the rest counted.
    "similar message(s) suppressed",
];

/// Most lines the block backend's log may hold after the hostile frontend's step: its
/// flood of 10^4 bad requests alone would be as many lines without the log rate limit
/// (the whole log held 341 lines after a flood of 10^5).
pub const HOSTILE_LOG_MAX_LINES: u64 = 2000;
