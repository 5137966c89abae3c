//! [`Workload::HostileNetfront`]: `sluice-hostile-netfront` (`tests/hostile-netfront`)
//! attacks sluice-netback from a domU through the step's second vif while the first
//! keeps working; dom0 then checks the daemon's log.
//!
//! The step's guest gets two vifs (`device/vif/0` with [`crate::images::vif_mac`],
//! `device/vif/1` with [`hostile_mac`]); xen-netfront binds both at boot; the guest
//! check (`check_hostile_net`) gives vif 0's interface the step's address, unbinds
//! vif 1 from xen-netfront (`/sys/bus/xen/drivers/vif/unbind`: netfront closes it and
//! the backend follows to Closed) and runs the hostile program on `device/vif/1`,
//! which resets it to Initialising and attacks; meanwhile vif 0 pings dom0 every
//! second, and every ping must be answered (at least 3). After the guest, dom0 greps
//! the net daemon's log for each of [`HOSTILE_NET_LOG_LINES`] and counts its lines
//! (at most [`HOSTILE_NET_LOG_MAX_LINES`]).

use crate::error::Failure;
use crate::scenario::{Boot, GuestStep, Workload};
use anyhow::{bail, Result};
use std::fmt::Write;

/// Where the hostile netfront lives in the guest.
pub const HOSTILE_NET_BIN: &str = "/sbin/sluice-hostile-netfront";

/// Lines sluice-netback logs for what the hostile netfront does; dom0 greps its log
/// for each after the step.
pub const HOSTILE_NET_LOG_LINES: &[&str] = &[
    // xenstore garbage and fatal ring errors: the vif closed with an error node.
    "closing the vif",
    "disconnecting this vif",
    // Bad packets, dropped.
    "dropping: netif tx packet",
    "tx grant .* does not copy",
    "rx grant .* does not copy",
    // What Linux netback disconnects for.
    "(fatal)",
    "continues past the published requests",
    // The flood: rate limited, the rest counted.
    "similar message(s) suppressed",
];

/// Most lines sluice-netback's log may hold after the step (the whole boot's log):
/// the flood of 4096 bad packets alone would be as many lines without the rate limit.
pub const HOSTILE_NET_LOG_MAX_LINES: u64 = 1500;

/// The MAC of the hostile step's second vif.
pub fn hostile_mac(step_idx: usize) -> String {
    format!("00:16:3e:00:98:{step_idx:02x}")
}

/// The address the hostile program uses on the bridge.
pub fn hostile_ip(step_idx: usize) -> String {
    format!("10.99.0.{}", 200 + step_idx)
}

/// Whether `step` runs the hostile netfront.
pub fn has(step: &GuestStep) -> bool {
    step.workloads
        .iter()
        .any(|w| matches!(w, Workload::HostileNetfront))
}

/// The guest's check line.
pub fn guest_line(step_idx: usize, me: &str) -> String {
    format!(
        "(check_hostile_net {me} {} {} {}); report $id $?",
        crate::scenario::NET_DOM0_IP,
        hostile_ip(step_idx),
        crate::run::limit(1).as_secs_f64()
    )
}

/// dom0's part of the step script, after the guest: grep the net daemons' logs.
pub fn dom0_script(boot: &Boot, step: &GuestStep, s: &mut String) {
    if !has(step) {
        return;
    }
    for d in boot.daemons.iter().filter(|d| d.serves_net) {
        for l in HOSTILE_NET_LOG_LINES {
            let _ = writeln!(
                s,
                "if grep -q '{l}' /var/log/sluice/{n}.log; then echo \"@@DOM0-NETLOG-HAS {n}: {l}\"; else echo \"@@DOM0-NETLOG-LACKS {n}: {l}\"; fi",
                n = d.name
            );
        }
        let _ = writeln!(
            s,
            "echo \"@@DOM0-NETLOG-SIZE {n}: $(wc -l < /var/log/sluice/{n}.log) lines\"",
            n = d.name
        );
    }
}

/// The host's reading of dom0's lines: the check's (id, summary).
pub fn dom0_check(name: &str, step: &GuestStep, text: &str) -> Result<Option<(String, String)>> {
    if !has(step) {
        return Ok(None);
    }
    if let Some(l) = text.lines().find(|l| l.contains("@@DOM0-NETLOG-LACKS")) {
        bail!(Failure::Check(format!(
            "{name}: the net backend did not log: {}",
            l.trim()
        )));
    }
    let has = text
        .lines()
        .filter(|l| l.contains("@@DOM0-NETLOG-HAS"))
        .count();
    let mut sizes = vec![];
    for l in text.lines().filter(|l| l.contains("@@DOM0-NETLOG-SIZE ")) {
        let lines: u64 = l
            .rsplit(": ")
            .next()
            .and_then(|v| v.trim().strip_suffix(" lines"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Failure::Infrastructure(format!("{name}: bad log size line {l:?}")))?;
        if lines > HOSTILE_NET_LOG_MAX_LINES {
            bail!(Failure::Check(format!(
                "{name}: the net backend's log grew to {lines} lines (at most {HOSTILE_NET_LOG_MAX_LINES})"
            )));
        }
        sizes.push(lines);
    }
    if has == 0 || sizes.is_empty() {
        bail!(Failure::Infrastructure(format!(
            "{name}: dom0 reported nothing of the net backend's log"
        )));
    }
    Ok(Some((
        format!("{name}/{}/dom0-log", Workload::HostileNetfront.id()),
        format!(
            "sluice-netback logged each kind of refusal ({has} line kinds); its whole log after a flood of 4096 bad packets: {sizes:?} line(s)"
        ),
    )))
}

/// The guest's shell function.
pub const GUEST_CHECK_HOSTILE_NET: &str = r#"
# check_hostile_net ME PEER HOSTILE_IP SCALE: xen-netfront bound vif-0 and vif-1; vif-0's
# interface takes ME, vif-1 is unbound and sluice-hostile-netfront attacks its backend
# (as HOSTILE_IP) while vif-0 pings PEER every second: every ping must be answered.
check_hostile_net() {
  me=$1; peer=$2; hip=$3; scale=$4
  for n in gntalloc evtchn xenbus; do [ -e /dev/xen/$n ] || { echo "no /dev/xen/$n"; return 1; }; done
  i=0; until [ -d /sys/bus/xen/devices/vif-0/net ] && [ -d /sys/bus/xen/devices/vif-1/net ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "xen-netfront did not bind both vifs"; return 1; }; sleep 0.1
  done
  dev=$(ls /sys/bus/xen/devices/vif-0/net | head -n 1)
  x ip addr add "$me/24" dev "$dev" || return 1
  x ip link set "$dev" up || return 1
  i=0; until [ "$(cat /sys/class/net/$dev/carrier 2>/dev/null)" = 1 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "$dev has no carrier"; return 1; }; sleep 0.1; done
  x ping -c 3 -W 10 "$peer" || { echo "vif-0 ($dev) cannot ping dom0"; return 1; }
  x sh -c 'echo vif-1 > /sys/bus/xen/drivers/vif/unbind' || { echo "unbinding vif-1 failed"; return 1; }
  [ -e /sys/bus/xen/devices/vif-1/driver ] && { echo "vif-1 still bound"; return 1; }
  rm -f /tmp/hn-stop /tmp/hn-pings
  ( ok=0; bad=0
    while [ ! -e /tmp/hn-stop ]; do
      if ping -c 1 -W 10 "$peer" >/dev/null 2>&1; then ok=$((ok+1)); else bad=$((bad+1)); fi
      sleep 1
    done
    echo "$ok $bad" > /tmp/hn-pings ) &
  pp=$!
  x /sbin/sluice-hostile-netfront --devid 1 --ip "$hip" --peer "$peer" --timeout-scale "$scale"
  rc=$?
  touch /tmp/hn-stop; wait $pp
  read ok bad < /tmp/hn-pings
  echo "vif-0 ($dev) during the attack: $ok ping(s) answered, $bad not"
  [ $rc -eq 0 ] || { echo "hostile netfront: $rc failed check(s)"; return 1; }
  [ "$bad" = 0 ] && [ "$ok" -ge 3 ] || { echo "vif-0 did not keep working during the attack"; return 1; }
  x ping -c 3 -W 10 "$peer" || { echo "vif-0 cannot ping dom0 after the attack"; return 1; }
  echo "@@SUMMARY $id: every hostile-netfront check passed (xenstore garbage refused and the vif offered again, bad packets answered ERROR, bad RX pages answered ERROR, what Linux netback disconnects for disconnected, ARP through the vif after each); meanwhile vif-0 answered all $ok pings to dom0"
}
"#;
