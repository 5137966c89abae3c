//! Reset and quarantine of an assigned function, as a state machine the caller
//! drives (the hypervisor on assignment and when the owning domain dies):
//! bus master and decode off first, then a bounded wait for pending transactions,
//! then the best reset available (FLR, AF FLR, D3hot->D0, secondary bus reset),
//! BARs restored, then the caller moves the function into the quarantine IOMMU
//! domain (Xen's `iommu=quarantine`): never back into the hypervisor's or another
//! domain's address space. The machine never sleeps: it asks for delays.
use crate::config::*;
use crate::inventory::Function;
use alloc::vec::Vec;
use sluice_iommu::Bdf;

/// Which reset was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Flr,
    AfFlr,
    Pm,
    /// Secondary bus reset through this bridge: every function below it is reset.
    Bus(Bdf),
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Call `step` again after this many milliseconds.
    Delay(u32),
    /// Move the function (and its group's aliases) into the quarantine IOMMU
    /// domain, then call [`ResetMachine::quarantined`].
    Quarantine,
    Done(Outcome),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub method: Option<Method>,
    /// Transactions were still pending when the wait bound ran out (the reset went on,
    /// as Linux's does; the quarantine domain catches late DMA).
    pub pending_timed_out: bool,
    /// The function still read all-ones after the reset when the ready bound ran out.
    pub not_ready: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    Wait(u32),
    Reset,
    AfterReset(u8),
    Ready(u32),
    Restore,
    Quarantine,
    Done,
}

/// Polls of the Vendor ID after a reset, 10 ms apart, until it reads other than
/// all-ones (Linux waits up to 60 s for a device to come back from reset).
pub const READY_POLLS: u32 = 6000;

/// Polls of the pending bit, 10 ms apart (Linux waits up to 4 x 2^n ms, about 1 s in all).
pub const PENDING_POLLS: u32 = 100;

pub struct ResetMachine {
    bdf: Bdf,
    exp: Option<u16>,
    af: Option<u16>,
    pm: Option<u16>,
    method: Option<Method>,
    state: State,
    saved: Vec<(u16, u32)>,
    timed_out: bool,
    not_ready: bool,
}

impl ResetMachine {
    pub fn new(f: &Function) -> Self {
        let r = f.resets;
        let method = if r.flr {
            Some(Method::Flr)
        } else if r.af_flr {
            Some(Method::AfFlr)
        } else if r.pm {
            Some(Method::Pm)
        } else {
            r.bus.map(Method::Bus)
        };
        ResetMachine {
            bdf: f.bdf,
            exp: f.cap(CAP_PCIE),
            af: f.cap(CAP_AF),
            pm: f.cap(CAP_PM),
            method,
            state: State::Start,
            saved: Vec::new(),
            timed_out: false,
            not_ready: false,
        }
    }

    fn pending(&self, cfg: &mut impl ConfigSpace) -> bool {
        match (self.method, self.exp, self.af) {
            (Some(Method::AfFlr), _, Some(af)) => {
                cfg.read8(self.bdf, af + AF_STATUS) & AF_STATUS_TP != 0
            }
            (_, Some(exp), _) => cfg.read16(self.bdf, exp + EXP_DEVSTA) & EXP_DEVSTA_TRPND != 0,
            (_, None, Some(af)) => cfg.read8(self.bdf, af + AF_STATUS) & AF_STATUS_TP != 0,
            _ => false,
        }
    }

    pub fn step(&mut self, cfg: &mut impl ConfigSpace) -> Step {
        let b = self.bdf;
        match self.state {
            State::Start => {
                let cmd = cfg.read16(b, COMMAND);
                cfg.write16(
                    b,
                    COMMAND,
                    (cmd & !(CMD_MASTER | CMD_MEMORY | CMD_IO)) | CMD_INTX_DISABLE,
                );
                for off in (BAR0..=0x24).step_by(4) {
                    self.saved.push((off, cfg.read32(b, off)));
                }
                self.state = State::Wait(PENDING_POLLS);
                self.step(cfg)
            }
            State::Wait(left) => {
                if !self.pending(cfg) {
                    self.state = State::Reset;
                    return self.step(cfg);
                }
                if left == 0 {
                    self.timed_out = true;
                    self.state = State::Reset;
                    return self.step(cfg);
                }
                self.state = State::Wait(left - 1);
                Step::Delay(10)
            }
            State::Reset => match self.method {
                None => {
                    self.state = State::Quarantine;
                    self.step(cfg)
                }
                Some(Method::Flr) => {
                    let exp = self.exp.expect("FLR needs PCIe");
                    let c = cfg.read16(b, exp + EXP_DEVCTL);
                    cfg.write16(b, exp + EXP_DEVCTL, c | EXP_DEVCTL_BCR_FLR);
                    self.state = State::Ready(READY_POLLS);
                    Step::Delay(100)
                }
                Some(Method::AfFlr) => {
                    cfg.write8(b, self.af.expect("AF FLR needs AF") + AF_CTRL, AF_CTRL_FLR);
                    self.state = State::Ready(READY_POLLS);
                    Step::Delay(100)
                }
                Some(Method::Pm) => {
                    let pm = self.pm.expect("PM reset needs PM") + PM_CTRL;
                    let c = cfg.read16(b, pm) & !PM_CTRL_STATE_MASK;
                    cfg.write16(b, pm, c | 3);
                    self.state = State::AfterReset(0);
                    Step::Delay(10)
                }
                Some(Method::Bus(bridge)) => {
                    let c = cfg.read16(bridge, BRIDGE_CONTROL);
                    cfg.write16(bridge, BRIDGE_CONTROL, c | BRIDGE_CTL_BUS_RESET);
                    self.state = State::AfterReset(1);
                    Step::Delay(2)
                }
            },
            State::AfterReset(kind) => {
                if kind == 0 {
                    let pm = self.pm.expect("PM") + PM_CTRL;
                    let c = cfg.read16(b, pm) & !PM_CTRL_STATE_MASK;
                    cfg.write16(b, pm, c);
                    self.state = State::Ready(READY_POLLS);
                    Step::Delay(10)
                } else {
                    let Some(Method::Bus(bridge)) = self.method else {
                        unreachable!()
                    };
                    let c = cfg.read16(bridge, BRIDGE_CONTROL);
                    cfg.write16(bridge, BRIDGE_CONTROL, c & !BRIDGE_CTL_BUS_RESET);
                    self.state = State::Ready(READY_POLLS);
                    Step::Delay(1000)
                }
            }
            State::Ready(left) => {
                let id = cfg.read16(b, VENDOR_ID);
                if id != 0xffff && id != 0x0001 {
                    self.state = State::Restore;
                    return self.step(cfg);
                }
                if left == 0 {
                    // Not back: BARs cannot be restored; quarantine it as it is.
                    self.not_ready = true;
                    self.state = State::Quarantine;
                    return self.step(cfg);
                }
                self.state = State::Ready(left - 1);
                Step::Delay(10)
            }
            State::Restore => {
                for &(off, v) in &self.saved {
                    cfg.write32(b, off, v);
                }
                let cmd = cfg.read16(b, COMMAND);
                cfg.write16(
                    b,
                    COMMAND,
                    (cmd & !(CMD_MASTER | CMD_MEMORY | CMD_IO)) | CMD_INTX_DISABLE,
                );
                self.state = State::Quarantine;
                self.step(cfg)
            }
            State::Quarantine => Step::Quarantine,
            State::Done => Step::Done(self.outcome()),
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            method: self.method,
            pending_timed_out: self.timed_out,
            not_ready: self.not_ready,
        }
    }

    /// The caller has put the function in the quarantine domain.
    pub fn quarantined(&mut self) -> Outcome {
        assert_eq!(
            self.state,
            State::Quarantine,
            "quarantined() before Step::Quarantine"
        );
        self.state = State::Done;
        self.outcome()
    }
}
