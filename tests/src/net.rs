//! Network steps of the test bed: a guest with one `vif` on dom0's kernel netback, its
//! dom0 end given an address by a hotplug script of ours (no bridge), and the shell on
//! both ends of [`crate::Workload::Network`]. Every packet stays between dom0 and the
//! domU inside QEMU.
//!
//! dom0 `10.99.0.1/24` on `vif<domid>.0`, the guest `10.99.0.2/24` on `eth0`. The check:
//! the guest loads its netfront module, pings dom0; dom0 pings the guest; 64 MiB of
//! random bytes go each way over TCP (busybox `nc`), each end's sha256 compared in the
//! guest; then, if dom0 could raise its end to MTU 9000 (netback allows it once the
//! frontend offers scatter-gather), both ends go to 9000 and an 8972-byte ping must
//! pass; then the module is unloaded with the link idle and loaded again, and dom0
//! answers a ping once more; the kernel log must stay clean.

/// dom0's hotplug script for test vifs (`script=` on the `vif` line): the interface up
/// with dom0's address, then `hotplug-status connected` as libxl waits for.
pub const VIF_SCRIPT: &str = "vif-sluice-test";

/// [`VIF_SCRIPT`]'s text (libxl runs it with `online`/`offline`, `$vif` and
/// `$XENBUS_PATH` in the environment).
pub const VIF_SCRIPT_TEXT: &str = r#"#!/bin/sh
# Test-bed vif hotplug script: dom0's end of the guest's vif gets 10.99.0.1/24.
case "$1" in
online|add)
  ip link set "$vif" up || exit 1
  ip addr add 10.99.0.1/24 dev "$vif" 2>/dev/null
  xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
offline|remove)
  xenstore-rm "$XENBUS_PATH/hotplug-status" 2>/dev/null ;;
esac
exit 0
"#;

/// The guest's MAC (the toolstack writes it to the frontend's `mac` node).
pub const GUEST_MAC: &str = "00:16:3e:5a:00:02";

/// Receivers are `sleep 100000 | nc -l ...`: busybox's `nc` quits as soon as its stdin
/// ends, so the `sleep` keeps it listening (a shorter one cut slow transfers short: the
/// "stalls" of the first runs, see frontends/linux/README.md).
///
/// dom0's half (in `/sluice/lib.sh`): `net_peer SECS` runs in the background while the
/// guest step runs; it reports to the guest over TCP (port 5003) what it saw.
pub const DOM0_NET_PEER: &str = r#"
# make_64m FILE: 64 MiB: 1 MiB from urandom, 64 times, each copy after its number (cheap
# under TCG; any reordered or lost block changes the sha256).
make_64m() {
  dd if=/dev/urandom of=/tmp/block bs=1M count=1 2>/dev/null
  : > "$1"
  i=0
  while [ $i -lt 64 ]; do printf '%08d' $i >> "$1"; cat /tmp/block >> "$1"; i=$((i+1)); done
  truncate -s 67108864 "$1" 2>/dev/null || { head -c 67108864 "$1" > "$1.t" && mv "$1.t" "$1"; }
}

# net_peer SECS: dom0's end of a network step (see tests/src/net.rs).
net_peer() {
  t=$1; g=10.99.0.2
  make_64m /tmp/to-guest
  to=$(sha256sum < /tmp/to-guest | cut -d' ' -f1)
  rm -f /tmp/from-guest /tmp/net-result
  (sleep 100000 | nc -l -p 5001 > /tmp/from-guest) &
  pinged=no; i=0
  until ping -c 1 -W 1 $g >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt $t ] && break; sleep 1
  done
  ping -c 3 -W 2 $g && pinged=yes
  vif=$(ls /sys/class/net | grep '^vif' | head -n 1)
  mtu=1500; ip link set "$vif" mtu 9000 && mtu=9000
  echo "net-peer: $vif pinged=$pinged mtu=$mtu"
  # Progress every 20 s (diagnostics): dom0's end of the vif and TCP retransmissions.
  (while sleep 20; do
     echo "progress from-guest $(wc -c < /tmp/from-guest) bytes; $vif rx $(cat /sys/class/net/$vif/statistics/rx_packets) tx $(cat /sys/class/net/$vif/statistics/tx_packets) txdrop $(cat /sys/class/net/$vif/statistics/tx_dropped); $(grep '^Tcp:' /proc/net/snmp | tail -n 1 | awk '{print "retrans", $13}')"
   done) &
  peer_progress=$!
  i=0
  until nc -w 5 $g 5002 < /tmp/to-guest; do i=$((i+1)); [ $i -gt $t ] && break; sleep 1; done
  i=0
  while [ "$(wc -c < /tmp/from-guest)" -lt 67108864 ]; do
    i=$((i+1)); [ $i -gt $t ] && break; sleep 1
  done
  from=$(sha256sum < /tmp/from-guest | cut -d' ' -f1)
  kill $peer_progress 2>/dev/null
  echo "RESULT pinged=$pinged to=$to from=$from mtu=$mtu" > /tmp/net-result
  cat /tmp/net-result
  i=0
  until nc -w 5 $g 5003 < /tmp/net-result; do i=$((i+1)); [ $i -gt $t ] && break; sleep 1; done
}
"#;

/// The guest's half (in `/lib/sluice-checks.sh`): `check_net KO MODULE SECS`.
pub const GUEST_CHECK_NET: &str = r#"
# net_up SECS: eth0 there, up, addressed, carrier on.
net_up() {
  t=$1; i=0
  until [ -e /sys/class/net/eth0 ]; do i=$((i+1)); [ $i -gt $t ] && { echo "no eth0"; return 1; }; sleep 1; done
  ip link set eth0 up || return 1
  ip addr add 10.99.0.2/24 dev eth0 2>/dev/null
  i=0
  until [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; do
    i=$((i+1)); [ $i -gt $t ] && { echo "eth0 has no carrier"; return 1; }; sleep 1
  done
}

# make_64m: as in dom0 (tests/src/net.rs).
make_64m() {
  dd if=/dev/urandom of=/tmp/block bs=1M count=1 2>/dev/null
  : > "$1"
  i=0
  while [ $i -lt 64 ]; do printf '%08d' $i >> "$1"; cat /tmp/block >> "$1"; i=$((i+1)); done
  truncate -s 67108864 "$1" 2>/dev/null || { head -c 67108864 "$1" > "$1.t" && mv "$1.t" "$1"; }
}

# check_net KO MODULE SECS: see tests/src/net.rs.
check_net() {
  ko=$1; mod=$2; t=$3
  insmod "$ko" || { echo "insmod $ko failed"; return 1; }
  net_up $t || return 1
  i=0
  until ping -c 1 -W 1 10.99.0.1 >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt $t ] && { echo "dom0 does not answer pings"; return 1; }; sleep 1
  done
  ping -c 3 -W 2 10.99.0.1 || { echo "ping dom0 failed"; return 1; }
  make_64m /tmp/to-dom0
  # Progress every 20 s while the transfers run (diagnostics only).
  (while sleep 20; do
     echo "@@NET-PROGRESS rx $(wc -c < /tmp/from-dom0 2>/dev/null) bytes; eth0 rx $(cat /sys/class/net/eth0/statistics/rx_packets) pkts $(cat /sys/class/net/eth0/statistics/rx_errors) err $(cat /sys/class/net/eth0/statistics/rx_dropped) drop, tx $(cat /sys/class/net/eth0/statistics/tx_packets) pkts $(cat /sys/class/net/eth0/statistics/tx_dropped) drop, tx timeouts $(cat /sys/class/net/eth0/queues/tx-*/tx_timeout | tr '\n' ' '); $(grep '^Tcp:' /proc/net/snmp | tail -n 1 | awk '{print "retrans", $13}')"
   done) &
  progress=$!
  sent=$(sha256sum < /tmp/to-dom0 | cut -d' ' -f1)
  rm -f /tmp/from-dom0 /tmp/net-result
  (sleep 100000 | nc -l -p 5002 > /tmp/from-dom0) &
  (sleep 100000 | nc -l -p 5003 > /tmp/net-result) &
  start=$(date +%s)
  i=0
  until nc -w 5 10.99.0.1 5001 < /tmp/to-dom0; do
    i=$((i+1)); [ $i -gt $t ] && { echo "cannot send to dom0"; return 1; }; sleep 1
  done
  i=0
  until grep -q 'mtu=' /tmp/net-result 2>/dev/null; do
    i=$((i+1)); [ $i -gt $t ] && { echo "no result from dom0"; return 1; }; sleep 1
  done
  i=0
  while [ "$(wc -c < /tmp/from-dom0)" -lt 67108864 ]; do
    i=$((i+1)); [ $i -gt $t ] && break; sleep 1
  done
  kill $progress 2>/dev/null
  got=$(sha256sum < /tmp/from-dom0 | cut -d' ' -f1)
  r=$(cat /tmp/net-result); mtu=${r##*mtu=}
  echo "dom0: $r"
  echo "guest: sent $sent, got $got ($(wc -c < /tmp/from-dom0) bytes), $(( $(date +%s) - start )) s for both ways"
  case "$r" in *pinged=yes*) ;; *) echo "dom0 could not ping the guest"; return 1 ;; esac
  [ "$r" = "RESULT pinged=yes to=$got from=$sent mtu=$mtu" ] || { echo "sha256 differ"; return 1; }
  rm -f /tmp/to-dom0 /tmp/from-dom0
  if [ "$mtu" = 9000 ]; then
    ip link set eth0 mtu 9000 || { echo "eth0 refuses MTU 9000"; return 1; }
    ping -c 3 -W 3 -s 8972 10.99.0.1 || { echo "8972-byte ping at MTU 9000 failed"; return 1; }
    echo "MTU 9000: 8972-byte pings answered"
  fi
  ip link set eth0 down
  rmmod "$mod" || { echo "rmmod $mod failed"; return 1; }
  [ -e /sys/class/net/eth0 ] && { echo "eth0 still there after rmmod"; return 1; }
  insmod "$ko" || { echo "insmod $ko again failed"; return 1; }
  net_up $t || return 1
  i=0
  until ping -c 1 -W 1 10.99.0.1 >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt $t ] && { echo "no ping after reload"; return 1; }; sleep 1
  done
  echo "reloaded: dom0 answers again"
  if dmesg | grep -E 'WARNING|BUG:|Oops|Call Trace|hung_task|panicked'; then
    echo "kernel log not clean"; return 1
  fi
  dmesg | grep -i 'netfront' | tail -n 8
}
"#;
