//! Guests' vifs in the test bed: the guest's end of a vif driven by a module of ours
//! ([`crate::NetFrontend::Module`], e.g. `sluice-netfront.ko`) and its reload check
//! ([`crate::Workload::NetReloadFrontend`]). The transfers themselves are
//! [`crate::Workload::Net`]'s `check_net` (in `images/guest_sh.rs`), the same for either
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

/// The guest's `check_net_jumbo ME PEER QUEUES` ([`crate::Workload::NetJumbo`],
/// appended to `/lib/sluice-checks.sh`).
///
/// busybox `ping` has no `-M do`, so "unfragmented" is proven from the guest's own
/// counters around each round of pings (3 guest → dom0, 3 dom0 → guest, each answered):
/// `FragCreates` (IP fragments the guest made: of its requests and answers) and
/// `ReasmReqds` (fragments it received: of dom0's requests and answers) in
/// `/proc/net/snmp` must not move, and eth0's byte counters must grow by at least a
/// 9000-byte packet per request and answer (6 x 9000 each way), i.e. each crossed the
/// vif whole, as one frame larger than 1500 bytes. Back at MTU 1500, the same 8972-byte
/// pings must show fragments in both counters: the negative control of the method.
pub const GUEST_CHECK_NET_JUMBO: &str = r#"
# snmp_ip NAME: the kernel's IP counter NAME (/proc/net/snmp: a header line, then values).
snmp_ip() {
  awk -v k="$1" '$1 == "Ip:" { if (c) { print $c; exit } for (i = 2; i <= NF; i++) if ($i == k) c = i }' /proc/net/snmp
}
eth0_stat() { cat /sys/class/net/eth0/statistics/$1; }
# net_sized_pings ME PEER SIZE: 3 pings of SIZE data bytes from the guest to dom0, then
# 3 from dom0 to the guest; sets frag, reasm, txb, rxb to how much FragCreates,
# ReasmReqds and eth0's tx_bytes and rx_bytes grew.
net_sized_pings() {
  me=$1; peer=$2; size=$3
  f0=$(snmp_ip FragCreates); r0=$(snmp_ip ReasmReqds); tb0=$(eth0_stat tx_bytes); rb0=$(eth0_stat rx_bytes)
  [ -n "$f0" ] && [ -n "$r0" ] || { echo "no FragCreates/ReasmReqds in /proc/net/snmp"; return 1; }
  x ping -c 3 -W 10 -s "$size" "$peer" || { echo "the guest cannot ping dom0 with $size data bytes"; return 1; }
  dom0 "net-ping-$size" "$me" || { echo "dom0 cannot ping the guest with $size data bytes"; return 1; }
  frag=$(( $(snmp_ip FragCreates) - f0 )); reasm=$(( $(snmp_ip ReasmReqds) - r0 ))
  txb=$(( $(eth0_stat tx_bytes) - tb0 )); rxb=$(( $(eth0_stat rx_bytes) - rb0 ))
  echo "pings of $size data bytes at MTU $(cat /sys/class/net/eth0/mtu): $frag fragment(s) made, $reasm received; eth0 $txb bytes out, $rxb in"
}
# net_whole_pings ME PEER SIZE: the pings crossed unfragmented, each a packet of
# SIZE + 28 bytes (3 requests and 3 answers each way).
net_whole_pings() {
  net_sized_pings "$1" "$2" "$3" || return 1
  want=$(( 6 * ($3 + 28) ))
  [ "$frag" = 0 ] && [ "$reasm" = 0 ] || { echo "$3-byte pings were fragmented ($frag made, $reasm received)"; return 1; }
  [ "$txb" -ge "$want" ] && [ "$rxb" -ge "$want" ] || { echo "eth0 moved $txb / $rxb bytes, less than $want each way"; return 1; }
}
# check_net_jumbo ME PEER QUEUES: MTU 9000 on dom0's vif interface and bridge and on
# eth0, 8972-byte pings both ways unfragmented, 8 MiB each way over TCP (sha256
# compared); then MTU 1500 again: 1472-byte pings unfragmented, 8972-byte ones
# fragmented.
check_net_jumbo() {
  me=$1; peer=$2; q=$3
  net_up "$me" "$q" || return 1
  dom0 net-mtu 9000 || { echo "dom0 could not set MTU 9000 on the vif and the bridge"; return 1; }
  x ip link set dev eth0 mtu 9000 || { echo "eth0 refuses MTU 9000 (max_mtu, feature-sg?)"; return 1; }
  [ "$(cat /sys/class/net/eth0/mtu)" = 9000 ] || { echo "eth0's MTU is $(cat /sys/class/net/eth0/mtu), not 9000"; return 1; }
  net_whole_pings "$me" "$peer" 8972 || return 1
  big="$txb/$rxb bytes out/in"
  check_net "$me" "$peer" "$q" 8 || { echo "8 MiB each way at MTU 9000 failed"; return 1; }
  x ip link set dev eth0 mtu 1500 || { echo "eth0 refuses MTU 1500 again"; return 1; }
  dom0 net-mtu 1500 || { echo "dom0 could not set MTU 1500 again"; return 1; }
  net_whole_pings "$me" "$peer" 1472 || { echo "MTU 1500 does not work again"; return 1; }
  net_sized_pings "$me" "$peer" 8972 || { echo "8972-byte pings fail at MTU 1500"; return 1; }
  [ "$frag" -ge 6 ] && [ "$reasm" -ge 6 ] || { echo "8972-byte pings at MTU 1500: $frag fragment(s) made, $reasm received (want >= 6 each: the counters do not see fragments?)"; return 1; }
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace"; then
    echo "the kernel complained (above)"; return 1
  fi
  echo "@@SUMMARY $id: MTU 9000 on dom0's vif + bridge and eth0: 8972-byte pings both ways unfragmented ($big, no fragment made or received), 8 MiB each way over TCP with sha256 equal; MTU 1500 again: 1472-byte pings unfragmented, 8972-byte pings in fragments ($frag made, $reasm received)"
}
"#;

/// dom0's `net_mtu MTU` ([`crate::Workload::NetJumbo`], appended to `/sluice/lib.sh`):
/// every vif interface (sluice-netback's taps, kernel netback's vifs: `vifD.N`) and
/// then the bridge `xenbr0` ([`crate::scenario::NET_BRIDGE`]) to MTU, each read back.
pub const DOM0_NET_MTU: &str = r#"
# net_mtu MTU (Workload::NetJumbo): the vif interfaces, then the bridge; read back.
net_mtu() {
  n=0; out=
  for d in /sys/class/net/vif*; do
    [ -e "$d" ] || continue
    ip link set dev "${d##*/}" mtu "$1" || return 1
    n=$((n+1))
  done
  [ $n -ge 1 ] || { echo "no vif interface in dom0"; return 1; }
  ip link set dev xenbr0 mtu "$1" || return 1
  for d in /sys/class/net/vif* /sys/class/net/xenbr0; do
    m=$(cat "$d/mtu"); out="$out ${d##*/}=$m"
    [ "$m" = "$1" ] || { echo "@@DOM0-MTU$out: not $1"; return 1; }
  done
  # What libxl wrote in the backend directory (vif line's mtu=), for the log.
  for d in /sys/class/net/vif*; do
    v=${d##*/vif}; out="$out backend/vif/${v%.*}/${v#*.}/mtu=$(xenstore-read "/local/domain/0/backend/vif/${v%.*}/${v#*.}/mtu" 2>/dev/null || echo none)"
  done
  echo "@@DOM0-MTU$out"
}
"#;

/// The dom0 command of a [`crate::Workload::NetJumbo`] action, `None` for any other:
/// `net-mtu MTU` (68..=65535) and `net-ping-SIZE ADDR` (3 pings of SIZE data bytes,
/// at most 65507, to an IPv4 address). Both values are checked here: they are typed
/// into dom0's shell.
pub fn jumbo_action(verb: &str, arg: &str) -> Option<String> {
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 5 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())?
    };
    if verb == "net-mtu" {
        let mtu = number(arg).filter(|m| (68..=65535).contains(m))?;
        return Some(format!("net_mtu {mtu}"));
    }
    let size = number(verb.strip_prefix("net-ping-")?).filter(|s| *s <= 65507)?;
    let octets: Vec<&str> = arg.split('.').collect();
    let ipv4 = octets.len() == 4 && octets.iter().all(|o| number(o).is_some_and(|v| v < 256));
    ipv4.then(|| format!("ping -c 3 -W 10 -s {size} {arg}"))
}

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
    fn jumbo_actions_take_only_checked_numbers() {
        assert_eq!(
            jumbo_action("net-mtu", "9000").as_deref(),
            Some("net_mtu 9000")
        );
        assert_eq!(
            jumbo_action("net-ping-8972", "10.99.0.10").as_deref(),
            Some("ping -c 3 -W 10 -s 8972 10.99.0.10")
        );
        for (verb, arg) in [
            ("net-mtu", "67"),
            ("net-mtu", "65536"),
            ("net-mtu", "+9000"),
            ("net-mtu", "9000;reboot"),
            ("net-mtu", ""),
            ("net-ping-", "10.99.0.10"),
            ("net-ping-65508", "10.99.0.10"),
            ("net-ping-8972", "10.99.0"),
            ("net-ping-8972", "10.99.0.256"),
            ("net-ping-8972", "10.99.0.1$(x)"),
            ("net-ping", "10.99.0.10"),
            ("net-listen", "5001"),
        ] {
            assert_eq!(jumbo_action(verb, arg), None, "{verb} {arg}");
        }
        assert!(DOM0_NET_MTU.contains(&format!("/sys/class/net/{}", crate::scenario::NET_BRIDGE)));
    }

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
