//! The well-behaved frontend on another device (`--steady-devid`) that must keep
//! working while the attack runs.

use crate::front::{Front, CLOSED, CLOSING};
use crate::ring::{rw, seg, Conn};
use anyhow::{bail, Context, Result};
use sluice_abi::blkif::{BlkifFrontRing, BlkifOp, BlkifRequestSegment, BlkifRsp};
use sluice_abi::shared::XEN_PAGE_SIZE;
use sluice_hostile_common::secs;
use sluice_xen_sys::{GntallocDevice, GrantedPages};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes the steady device writes and reads back per round (8 pages, one request each).
pub(crate) const STEADY_BYTES: usize = 8 * XEN_PAGE_SIZE;
/// Rounds the steady device must complete while the attack runs.
pub(crate) const STEADY_MIN_ROUNDS: u64 = 3;

/// A well-behaved frontend on `devid`: connects, then until `stop` writes a fresh
/// pattern of [`STEADY_BYTES`] at `sector` and reads it back, failing on any error or
/// mismatch; then closes the device and resets it to Initialising (backend InitWait).
/// Returns the rounds completed.
pub(crate) fn steady_device(
    devid: u32,
    sector: u64,
    started: &AtomicBool,
    stop: &AtomicBool,
) -> Result<u64> {
    let result = (|| -> Result<u64> {
        let f = Front::open(devid)?;
        let be_id = f.be_id;
        let (s0, ok) = f.wait_be(|s| s == 2, secs(30));
        if !ok {
            bail!("backend state {s0}, never InitWait");
        }
        let gnt = GntallocDevice::open()?;
        let ring = gnt.alloc(be_id, 1, true)?;
        let out = gnt.alloc(be_id, 8, true)?;
        let back = gnt.alloc(be_id, 8, true)?;
        let port = f.connect(&ring).context("connecting")?;
        started.store(true, Ordering::Release);
        let mut c = Conn {
            ring: BlkifFrontRing::attach(ring.mem(), 0)?,
            ev: &f.ev,
            port,
        };
        let segs = |p: &GrantedPages| -> Vec<BlkifRequestSegment> {
            p.grefs().iter().map(|&g| seg(g, 0, 7)).collect()
        };
        let mut rounds = 0u64;
        let mut id = 0x57ea_0000u64;
        while !stop.load(Ordering::Acquire) {
            let fill: Vec<u8> = (0..STEADY_BYTES)
                .map(|i| (i as u64 ^ rounds.wrapping_mul(0x9e37)) as u8)
                .collect();
            out.mem().write_bytes(0, &fill)?;
            back.mem().fill(0, STEADY_BYTES, 0)?;
            for (op, pages) in [(BlkifOp::Write, &out), (BlkifOp::Read, &back)] {
                id += 1;
                let rsp = c.submit(&[rw(op, id, sector, &segs(pages))])?;
                if rsp[0].id != id || rsp[0].status != BlkifRsp::Okay as i16 {
                    bail!(
                        "round {rounds}: {op:?} answered id {:#x} status {} (want {id:#x}, 0)",
                        rsp[0].id,
                        rsp[0].status
                    );
                }
            }
            let mut got = vec![0u8; STEADY_BYTES];
            back.mem().read_bytes(0, &mut got)?;
            if got != fill {
                bail!("round {rounds}: the data read back differs from what was written");
            }
            rounds += 1;
        }
        // Hand the device over: Closing, Closed, then Initialising again.
        f.set_state(CLOSING)?;
        let (s, ok) = f.wait_be(|s| s == CLOSING || s == CLOSED, secs(20));
        if !ok {
            bail!("after {rounds} rounds: backend state {s} after our Closing");
        }
        f.set_state(CLOSED)?;
        let (s, ok) = f.wait_be(|s| s == CLOSED, secs(20));
        if !ok {
            bail!("after {rounds} rounds: backend state {s} after our Closed");
        }
        f.clear();
        f.set_state(1)?;
        let (s, ok) = f.wait_be(|s| s == 2, secs(20));
        if !ok {
            bail!("after {rounds} rounds: backend state {s} after our reset (want InitWait)");
        }
        Ok(rounds)
    })();
    // Never leave the attack waiting for us.
    started.store(true, Ordering::Release);
    result
}
