//! Guests' vifs in the test bed: the guest's end of a vif driven by a module of ours
//! ([`crate::NetFrontend::Module`], e.g. `sluice-netfront.ko`) and its reload check
//! ([`crate::Workload::NetReloadFrontend`]). The transfers themselves are
//! [`crate::Workload::Net`]'s `check_net` (in `images.rs`), the same for either
//! frontend and either backend.

use crate::scenario::{GuestStep, NetBackend, NetMisbehaviour, Workload};
use anyhow::{bail, Context, Result};

/// Where a step's netfront module lives in the guest's initramfs.
pub fn guest_module_path(step: &GuestStep) -> Option<String> {
    let (ko, _) = step.vif.as_ref()?.module()?;
    let name = ko.file_name()?.to_string_lossy().to_string();
    Some(format!("/lib/modules/step-{}-{name}", step.name))
}

/// The guest's `check_net_reload ME PEER KO MODULE QUEUES` (appended to
/// `/lib/sluice-checks.sh`).
///
/// Every xenbus frontend module is pinned while a device is bound to it: since Linux
/// 5.5 `xenbus_dev_probe` takes a reference on the driver's module and
/// `xenbus_dev_remove` drops it, so `rmmod` with the vif bound is refused with EAGAIN
/// (busybox `rmmod` asks not to wait) for stock `xen-netfront` as for ours. The check
/// therefore unbinds the vif first, then wants the module's reference count at 0
/// (anything else is a reference our driver leaked: a netdev, a socket, a module get)
/// before `rmmod`.
pub const GUEST_CHECK_NET_RELOAD: &str = r#"
# check_net_reload ME PEER KO MODULE QUEUES: see tests/src/net.rs.
check_net_reload() {
  me=$1; peer=$2; ko=$3; mod=$4; q=$5
  grep -q "^$mod " /proc/modules || { echo "$mod is not loaded"; return 1; }
  x ip link set eth0 down || return 1
  held=$(cat /sys/module/$mod/refcnt)
  # With the vif bound, xenbus's own reference pins the module: rmmod is refused.
  if rmmod "$mod" 2>/tmp/rmmod.err; then
    echo "rmmod $mod succeeded with the vif bound (xenbus held no module reference?)"; return 1
  fi
  echo "rmmod with the vif bound: refused as for any xenbus frontend ($(cat /tmp/rmmod.err)), $held reference(s)"
  n=0
  for d in /sys/bus/xen/devices/vif-*; do
    [ -e "$d/driver" ] || continue
    bounded 60 sh -c "echo ${d##*/} > $d/driver/unbind"
    rc=$?; [ $rc -eq 0 ] || { echo "unbinding ${d##*/} failed or hung (rc=$rc)"; return 1; }
    n=$((n+1))
  done
  [ $n -ge 1 ] || { echo "no vif bound to $mod"; return 1; }
  left=$(cat /sys/module/$mod/refcnt)
  echo "$mod references: $held with $n vif(s) bound, $left after unbinding"
  [ "$left" = 0 ] || { echo "$mod still holds $left reference(s) with no device bound: a leak"; return 1; }
  [ -e /sys/class/net/eth0 ] && { echo "eth0 still there after the unbind"; return 1; }
  bounded 60 rmmod "$mod"
  rc=$?; [ $rc -eq 0 ] || { echo "rmmod $mod failed or hung (rc=$rc)"; return 1; }
  grep -q "^$mod " /proc/modules && { echo "$mod still loaded"; return 1; }
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than|still in use|unregister_netdevice: waiting"; then
    echo "the kernel complained while unloading (above)"; return 1
  fi
  x insmod "$ko" || { echo "insmod $ko again failed"; return 1; }
  # 8 MiB each way after the reload (64 before it): a TCG step stays within its limit.
  check_net "$me" "$peer" "$q" 8 || { echo "traffic after the reload failed"; return 1; }
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than"; then
    echo "the kernel complained after the reload (above)"; return 1
  fi
  echo "@@SUMMARY $id: unbound ($held -> $left module references), rmmod, insmod, then ping both ways and 8 MiB each way with sha256 equal again"
}
"#;

/// The guest's `check_net_perf ME PEER QUEUES SECONDS` ([`crate::Workload::NetPerf`],
/// appended to `/lib/sluice-checks.sh`): eth0 up (as `check_net` brings it), then
/// `iperf3 -c PEER` for SECONDS each: guest → dom0 and dom0 → guest (`-R`), 1 and 4
/// streams, one `@@NETPERF DIR STREAMS MBIT/S` line each, the rate iperf3's receiver
/// side counted. A run that fails, hangs past SECONDS + 60 s or prints no rate fails
/// the check.
pub const GUEST_CHECK_NET_PERF: &str = r#"
# check_net_perf ME PEER QUEUES SECONDS: see tests/src/net.rs.
check_net_perf() {
  # Not t or p: bounded (a shell function) sets those.
  me=$1; peer=$2; q=$3; secs=$4
  net_up "$me" "$q" || return 1
  for dir in guest-to-dom0 dom0-to-guest; do
    r=; [ $dir = dom0-to-guest ] && r=-R
    for streams in 1 4; do
      bounded $((secs + 60)) iperf3 -c "$peer" -t "$secs" -P "$streams" $r -f m > /tmp/iperf3.out 2>&1
      rc=$?
      [ $rc -eq 0 ] || { cat /tmp/iperf3.out; echo "iperf3 $dir with $streams stream(s) failed or hung (rc=$rc)"; return 1; }
      mbit=$(grep ' receiver$' /tmp/iperf3.out | tail -n 1 | awk '{for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i-1)}')
      [ -n "$mbit" ] || { cat /tmp/iperf3.out; echo "iperf3 $dir with $streams stream(s) printed no receiver rate"; return 1; }
      echo "@@NETPERF $dir $streams $mbit"
    done
  done
  echo "@@SUMMARY $id: iperf3 $secs s per run, guest to dom0 and dom0 to guest, 1 and 4 streams, each rate reported"
}
"#;

/// The guest's `check_net_reattach ME PEER QUEUES` ([`crate::Workload::NetDetachAttach`],
/// appended to `/lib/sluice-checks.sh`): with eth0 up, dom0 runs `xl network-detach`;
/// eth0 must be gone within 60 s (the frontend saw the backend close and removed the
/// netdev); dom0 runs `xl network-attach` with the same specification (a new devid, the
/// same MAC), and the new eth0 must carry traffic (`check_net` with 8 MiB each way) with
/// a clean kernel log.
pub const GUEST_CHECK_NET_REATTACH: &str = r#"
# check_net_reattach ME PEER QUEUES: see tests/src/net.rs.
check_net_reattach() {
  me=$1; peer=$2; q=$3
  [ -e /sys/class/net/eth0 ] || { echo "no eth0 before the detach"; return 1; }
  before=$(ls -d /sys/bus/xen/devices/vif-* | tr '\n' ' ')
  dom0 net-detach vif || { echo "xl network-detach failed"; return 1; }
  i=0; while [ -e /sys/class/net/eth0 ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "eth0 still there 60 s after xl network-detach"; return 1; }; sleep 0.1
  done
  echo "eth0 gone after the detach (xenbus devices before: $before)"
  dom0 net-attach vif || { echo "xl network-attach failed"; return 1; }
  check_net "$me" "$peer" "$q" 8 || { echo "traffic after the re-attach failed"; return 1; }
  after=$(ls -d /sys/bus/xen/devices/vif-* | tr '\n' ' ')
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than"; then
    echo "the kernel complained (above)"; return 1
  fi
  echo "@@SUMMARY $id: xl network-detach took eth0 away ($before), xl network-attach brought it back ($after): ping both ways and 8 MiB each way with sha256 equal"
}
"#;

/// Checks a step's [`Workload::NetMisbehavingBackend`]s: a userspace vif driven by a
/// module of ours, served by a daemon the step names.
pub fn validate_misbehaving(step: &GuestStep) -> Result<()> {
    let n = step
        .workloads
        .iter()
        .filter(|w| matches!(w, Workload::NetMisbehavingBackend { .. }))
        .count();
    if n == 0 {
        return Ok(());
    }
    let ok = step
        .vif
        .as_ref()
        .is_some_and(|v| v.backend == NetBackend::Userspace && v.module().is_some());
    if !ok || step.net_daemon.is_none() {
        bail!(
            "step {}: a misbehaving net backend needs a userspace vif driven by a module of ours and a named net daemon (GuestStep::with_net_daemon)",
            step.name
        );
    }
    Ok(())
}

/// The guest's line for [`Workload::NetMisbehavingBackend`] `mode` in step `idx`.
pub fn misbehaving_line(idx: usize, step: &GuestStep, mode: NetMisbehaviour) -> Result<String> {
    let module = step
        .vif
        .as_ref()
        .and_then(|v| v.module().map(|(_, m)| m))
        .context("validated: a misbehaving-backend step's vif has a module")?;
    let ko = guest_module_path(step).context("validated: the module's path")?;
    Ok(format!(
        "(check_net_misbehaving {} {} {ko} {module} {} \"{}\" {} {}); report $id $?",
        crate::images::guest_ip(idx),
        crate::scenario::NET_DOM0_IP,
        mode.name(),
        mode.log_line(),
        u8::from(mode.fails_device()),
        crate::run::limit(60).as_secs()
    ))
}

/// The guest's `check_net_misbehaving ME PEER KO MODULE MODE LINE FAILS SECS`
/// ([`Workload::NetMisbehavingBackend`], appended to `/lib/sluice-checks.sh`): the module
/// loaded (again) and connected to the hostile backend, eth0 up with a static ARP entry
/// for PEER (no answer needed), then pings every 10 ms (1000 bytes) until, within SECS,
/// the module's LINE is among the kernel log's new lines and, when FAILS is 1, eth0's
/// carrier is off (a dropped packet: carrier still on, `rx_dropped` counted). Then the
/// kernel log is clean (no WARNING, BUG, Oops, call trace or hung task; Debian's 6.1.192
/// reports a TX watchdog timeout with a `NETDEV WATCHDOG` line, not a WARN), the vif
/// unbinds and `rmmod` succeeds, each bounded, and no eth0 is left.
pub const GUEST_CHECK_NET_MISBEHAVING: &str = r#"
# check_net_misbehaving ME PEER KO MODULE MODE LINE FAILS SECS: see tests/src/net.rs.
net_complaints() {
  dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than|still in use|unregister_netdevice: waiting"
}
check_net_misbehaving() {
  me=$1; peer=$2; ko=$3; mod=$4; mode=$5; line=$6; fails=$7; secs=$8
  # The kernel log's lines of this round: all of it for the module loaded at boot (this
  # is the first round), else those after this insmod.
  from=1
  if [ -e /tmp/net-misbehaving-round ] && grep -q "^$mod " /proc/modules; then
    # An earlier round failed before its unload: unload here so that this mode gets a
    # connection of its own (a round's result does not depend on the one before).
    echo "$mod still loaded from a failed round: unbinding and unloading it first"
    for d in /sys/bus/xen/devices/vif-*; do
      [ -e "$d/driver" ] && bounded "$secs" sh -c "echo ${d##*/} > $d/driver/unbind"
    done
    bounded "$secs" rmmod "$mod" || { echo "cannot unload $mod"; return 1; }
  fi
  touch /tmp/net-misbehaving-round
  if ! grep -q "^$mod " /proc/modules; then
    from=$(($(dmesg | wc -l) + 1))
    x insmod "$ko" || { echo "insmod $ko failed"; return 1; }
  fi
  now() { cut -d. -f1 /proc/uptime; }
  end=$(($(now) + secs))
  until [ -e /sys/class/net/eth0 ]; do [ $(now) -gt $end ] && { echo "no eth0"; return 1; }; sleep 0.2; done
  sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 2>/dev/null
  ip -4 addr show dev eth0 | grep -q " $me/24 " || x ip addr add "$me/24" dev eth0 || return 1
  x ip link set eth0 up || return 1
  until dmesg | tail -n +$from | grep -q "sluice-netfront: eth0: connected"; do
    [ $(now) -gt $end ] && { echo "eth0 never connected to the $mode backend"; dmesg | tail -n +$from | tail -n 8; return 1; }; sleep 0.5
  done
  x arp -i eth0 -s "$peer" 02:00:00:00:99:01 || return 1
  t0=$(now); end=$((t0 + secs))
  ping -q -c 3000 -i 0.01 -s 1000 -W 1 "$peer" > /dev/null 2>&1 &
  pp=$!
  found=
  while [ $(now) -le $end ]; do
    if dmesg | tail -n +$from | grep -q "sluice-netfront: eth0: .*$line"; then
      if [ "$fails" = 0 ] || [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ]; then found=1; break; fi
    fi
    sleep 0.5
  done
  t1=$(now)
  kill $pp 2>/dev/null; wait $pp 2>/dev/null
  got=$(dmesg | tail -n +$from | grep "sluice-netfront: eth0: .*$line" | head -n 1 | sed 's/^\[[^]]*\] //')
  if [ -z "$found" ]; then
    echo "$mode backend: no '$line' line (with carrier off: $fails) within $secs s; carrier $(cat /sys/class/net/eth0/carrier 2>/dev/null); the driver said:"
    dmesg | tail -n +$from | grep -i "netfront\|eth0" | tail -n 8; return 1
  fi
  carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null)
  dropped=$(cat /sys/class/net/eth0/statistics/rx_dropped)
  if [ "$fails" = 0 ]; then
    [ "$carrier" = 1 ] || { echo "$mode backend: eth0 lost its carrier over a dropped packet"; return 1; }
    [ "$dropped" -ge 1 ] || { echo "$mode backend: rx_dropped is $dropped"; return 1; }
  fi
  c=$(net_complaints); [ -z "$c" ] || { echo "$c"; echo "the kernel complained (above)"; return 1; }
  x ip link set eth0 down || return 1
  for d in /sys/bus/xen/devices/vif-*; do
    [ -e "$d/driver" ] || continue
    bounded "$secs" sh -c "echo ${d##*/} > $d/driver/unbind"
    rc=$?; [ $rc -eq 0 ] || { echo "unbinding ${d##*/} failed or hung (rc=$rc)"; return 1; }
  done
  [ -e /sys/class/net/eth0 ] && { echo "eth0 still there after the unbind"; return 1; }
  bounded "$secs" rmmod "$mod"
  rc=$?; [ $rc -eq 0 ] || { echo "rmmod $mod failed or hung (rc=$rc)"; return 1; }
  grep -q "^$mod " /proc/modules && { echo "$mod still loaded"; return 1; }
  c=$(net_complaints); [ -z "$c" ] || { echo "$c"; echo "the kernel complained while unloading (above)"; return 1; }
  echo "@@SUMMARY $id: $mode backend: after $((t1 - t0)) s '$got', carrier $carrier, rx_dropped $dropped; kernel log clean; vif unbound, $mod unloaded"
}
"#;

/// One iperf3 run of [`crate::Workload::NetPerf`].
#[derive(Debug, Clone, PartialEq)]
pub struct NetPerfSample {
    pub step: String,
    /// Who served the step's vif.
    pub backend: crate::NetBackend,
    /// `guest-to-dom0` or `dom0-to-guest`.
    pub direction: String,
    pub streams: u32,
    pub mbit_per_s: f64,
}

impl NetPerfSample {
    /// Parses `@@NETPERF DIR STREAMS MBIT/S`.
    pub fn parse(step: &str, backend: crate::NetBackend, line: &str) -> Option<Self> {
        let mut f = line.trim().strip_prefix("@@NETPERF ")?.split_whitespace();
        let direction = f.next()?;
        if direction != "guest-to-dom0" && direction != "dom0-to-guest" {
            return None;
        }
        let streams = f.next()?.parse().ok()?;
        let mbit_per_s: f64 = f.next()?.parse().ok()?;
        if f.next().is_some() || !mbit_per_s.is_finite() || mbit_per_s < 0.0 {
            return None;
        }
        Some(NetPerfSample {
            step: step.into(),
            backend,
            direction: direction.into(),
            streams,
            mbit_per_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetBackend;

    #[test]
    fn misbehaving_backend_steps_need_a_module_vif_and_a_named_daemon() {
        use crate::{GuestStep, GuestType, NetFrontend};
        let w = [Workload::NetMisbehavingBackend {
            mode: NetMisbehaviour::Unsolicited,
        }];
        let ko = std::path::PathBuf::from("/x/sluice-netfront.ko");
        let good = GuestStep::new("h", GuestType::Pv, &[], &w)
            .with_vif_frontend(NetBackend::Userspace, NetFrontend::Module(ko.clone()))
            .with_net_daemon("hostile-netback");
        assert!(validate_misbehaving(&good).is_ok());
        let line = misbehaving_line(3, &good, NetMisbehaviour::Unsolicited).unwrap();
        assert!(
            line.starts_with(
                "(check_net_misbehaving 10.99.0.13 10.99.0.1 /lib/modules/step-h-sluice-netfront.ko sluice_netfront unsolicited \"ring: peer's rsp_prod [0-9]* is impossible\" 1 "
            ),
            "{line}"
        );
        let stock = GuestStep::new("h", GuestType::Pv, &[], &w)
            .with_vif(NetBackend::Userspace)
            .with_net_daemon("hostile-netback");
        let unnamed = GuestStep::new("h", GuestType::Pv, &[], &w)
            .with_vif_frontend(NetBackend::Userspace, NetFrontend::Module(ko.clone()));
        let kernel = GuestStep::new("h", GuestType::Pv, &[], &w)
            .with_vif_frontend(NetBackend::Kernel, NetFrontend::Module(ko))
            .with_net_daemon("hostile-netback");
        for bad in [stock, unnamed, kernel] {
            assert!(validate_misbehaving(&bad).is_err());
        }
        assert_eq!(
            NetMisbehaviour::ALL
                .iter()
                .filter(|m| !m.fails_device())
                .count(),
            1
        );
    }

    #[test]
    fn netperf_lines_parse_and_garbage_is_refused() {
        let s = NetPerfSample::parse(
            "k1",
            NetBackend::Kernel,
            "@@NETPERF dom0-to-guest 4 812.5\r",
        )
        .unwrap();
        assert_eq!(
            (s.direction.as_str(), s.streams, s.mbit_per_s),
            ("dom0-to-guest", 4, 812.5)
        );
        for bad in [
            "@@NETPERF sideways 1 3",
            "@@NETPERF guest-to-dom0 x 3",
            "@@NETPERF guest-to-dom0 1",
            "@@NETPERF guest-to-dom0 1 NaN",
            "@@NETPERF guest-to-dom0 1 -4",
            "@@NETPERF guest-to-dom0 1 3 4",
            "@@NET guest-to-dom0 64 MiB in 3 s",
        ] {
            assert!(
                NetPerfSample::parse("k", NetBackend::Kernel, bad).is_none(),
                "{bad}"
            );
        }
    }
}
