//! dom0's shell text: the helpers of its init and step scripts, its finish and
//! diagnostics scripts, and the hotplug scripts for userspace-served disks and vifs.

/// Shell helpers for dom0's init and step scripts.
pub(super) const DOM0_LIB: &str = r#"
start_daemon() {
  n=$1; shift
  if [ -e /run/sluice-$n.pid ] && kill -0 "$(cat /run/sluice-$n.pid)" 2>/dev/null; then return 0; fi
: >/run/sluice-$n.args
  for a in "$@"; do printf '%s\n' "$a" >>/run/sluice-$n.args; done
  /sluice/bin/$n "$@" >>/var/log/sluice/$n.log 2>&1 &
  echo $! >/run/sluice-$n.pid
}
# restart_daemon NAME: SIGKILL (kill_daemon), then start it with the arguments of its
# last start.
restart_daemon() {
  kill_daemon "$1"
  set -- "$1"
  [ -e /run/sluice-$1.args ] && while IFS= read -r a; do set -- "$@" "$a"; done < /run/sluice-$1.args
  start_daemon "$@"
}
# SIGKILL, no clean-up: what a crash looks like to the guests.
kill_daemon() {
  [ -e /run/sluice-$1.pid ] || return 0
  p=$(cat /run/sluice-$1.pid); rm -f /run/sluice-$1.pid
  kill -9 "$p" 2>/dev/null
  i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  echo "killed $1 (pid $p)" >> /var/log/sluice/$1.log
}
stop_daemon() {
  [ -e /run/sluice-$1.pid ] || return 0
  p=$(cat /run/sluice-$1.pid); rm -f /run/sluice-$1.pid
  kill "$p" 2>/dev/null
  i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -9 "$p" 2>/dev/null; true
}
# backend_idle NAME: the daemon uses under a quarter of a CPU over 4 s (no thread
# spins, e.g. on a ring it gave up on).
backend_idle() {
  p=$(cat /run/sluice-$1.pid 2>/dev/null) && kill -0 "$p" 2>/dev/null || { echo "$1 is not running"; return 1; }
  t0=$(awk '{print $14 + $15}' /proc/$p/stat)
  sleep 4
  t1=$(awk '{print $14 + $15}' /proc/$p/stat)
  echo "$1 (pid $p): $((t1 - t0)) CPU ticks in 4 s ($(ls /proc/$p/task | wc -l) threads)"
  [ $((t1 - t0)) -lt 100 ]
}
# destroy_after_writes DOMAIN DEV: in the background, once dom0's disk DEV (a link to
# the virtio disk) completed 200 more writes, `xl destroy DOMAIN` (mid-write).
writes_of() { d=$(readlink -f /dev/$1); awk '{print $5}' /sys/block/${d##*/}/stat; }
destroy_after_writes() {
  n0=$(writes_of $2) || return 1
  ( until [ "$(writes_of $2)" -ge $((n0 + 200)) ]; do sleep 0.1; done
    xl destroy $1 && echo "@@DOM0-DESTROYED $1 after $(($(writes_of $2) - n0)) writes to $2" ) </dev/null >/dev/console 2>&1 &
  # The step script waits for it before it ends (the console closes first).
  destroyer=$!
}
# journal_pending: requests taken and not answered in sluice-blkback's crash journals
# (the state word of each 128-byte entry after the 64-byte header: 1 or 2).
journal_pending() {
  for f in /run/sluice/blkback/vbd-*; do
    [ -e "$f" ] && od -An -v -tu4 -w128 -j64 "$f"
  done | awk '$1 == 1 || $1 == 2 { n++ } END { print n + 0 }'
}
# restart_midwrite NAME ARGS...: SIGKILLs block daemon NAME while its journal shows a
# request in flight and starts it again, until the new daemon reports having served
# unanswered requests again (60 tries at most). The kill comes at once after the
# journal was read (pid and log count taken before): on a quiet host the requests seen
# in flight were often answered before a slower kill landed (20 tries missed in a CI
# run of 2026-12-06).
restart_midwrite() {
  n=$1; shift; try=0
  while [ $try -lt 60 ]; do
    try=$((try+1)); i=0
    before=$(grep -c 'unanswered served again' /var/log/sluice/$n.log)
    p=$(cat /run/sluice-$n.pid 2>/dev/null)
    until [ "$(journal_pending)" -gt 0 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "no request in flight for 60 s"; return 1; }; sleep 0.1; done
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    kill_daemon $n && start_daemon $n "$@" || return 1
    i=0
    until [ "$(grep -c 'unanswered served again' /var/log/sluice/$n.log)" -gt "$before" ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "$n did not take the device over"; return 1; }; sleep 0.1; done
    got=$(grep 'unanswered served again' /var/log/sluice/$n.log | tail -n 1 | sed 's/.*taken up to [0-9]*, \([0-9]*\) unanswered.*/\1/')
    echo "@@DOM0-RESTART try $try: $got unanswered request(s) served again"
    [ "$got" -gt 0 ] && { echo "@@DOM0-KILLED-MIDWRITE $got after $try kill(s)"; return 0; }
  done
  return 1
}
# action_or_gone DOMAIN: after `xl create -c` or `xl console` returned, runs the one
# command the harness types (a dom0 action) and returns 0; returns 1 as soon as the
# domain is gone (a guest that powered off: no waiting out the 30 s), 0 after 30 s.
# The harness types `COMMAND @@SUM <first 16 hex digits of its sha256>`: a line that
# Xen's serial input garbled (seen under TCG: a letter replaced) is refused with
# @@DOM0-ACTION-GARBLED and typed again, never run.
action_or_gone() {
  i=0
  while [ $i -lt 30 ]; do
    if read -t 1 -r line; then
      cmd=${line% @@SUM *}
      h=$(printf '%s' "$cmd" | sha256sum)
      case "$h" in
        "${line##* @@SUM }"*) [ "$cmd" != "$line" ] && [ ${#line} -eq $((${#cmd} + 23)) ] ;;
        *) false ;;
      esac || { echo "@@DOM0-ACTION-GARBLED $1"; continue; }
      echo "@@DOM0-ACTION-RUN $1"
      eval "$cmd"; echo "@@DOM0-ACTION-DONE $1 rc=$?"; return 0
    fi
    xl domid "$1" >/dev/null 2>&1 || return 1
    i=$((i+1))
  done
  return 0
}
# console_rt DOMAIN N: types a line into secondary console N's pty (sluice-consoleback's)
# and checks the guest's answer: `SHA <sha256 of the line>`.
console_rt() {
  d=$(xl domid $1) || return 1
  i=0; until [ "$(xenstore-read /local/domain/0/backend/console/$d/$2/state 2>/dev/null)" = 4 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "console $2 never connected"; return 1; }; sleep 0.1; done
  tty=$(xenstore-read /local/domain/$d/device/console/$2/tty) || return 1
  line="sluice-consfront-$d-$2-$(cut -d' ' -f1 /proc/uptime)"
  want=$(printf '%s\n' "$line" | sha256sum); want=${want%% *}
  exec 6<>"$tty"
  printf '%s\n' "$line" >&6
  ans=; read -t 120 -r ans <&6
  exec 6>&-
  ans=$(printf '%s' "$ans" | tr -d '\r')
  echo "@@DOM0-CONSOLE-RT typed $line on $tty; guest answered: $ans"
  [ "$ans" = "SHA $want" ]
}
# Every daemon with a pid file must still run.
check_daemons() {
  for f in /run/sluice-*.pid; do
    [ -e "$f" ] || continue
    kill -0 "$(cat $f)" 2>/dev/null || { n=${f#/run/sluice-}; echo "@@DAEMON-DEAD ${n%.pid}"; }
  done
}
# dom0_cpu STEP WHEN: a log line with dom0's CPU ticks (/proc/stat "cpu": user nice
# system idle iowait irq softirq steal) for the benches' readers.
dom0_cpu() {
  echo "@@DOM0CPU $1 $2 $(awk '$1 == "cpu" { print $2, $3, $4, $5, $6, $7, $8, $9 }' /proc/stat)"
}
# perf_begin / perf_end STEP: where perf is in dom0 (SLUICE_DOM0_PERF=1), sample every
# CPU (cpu-clock, 250 Hz, with call chains) from the guest's creation to its end, then
# print as @@PERF lines the samples per command and, for the busiest commands but the
# idle task, the functions with the most samples in them (self) and under them
# (inclusive: call chains, so a function on several stacks of one sample counts once
# per stack), in percent of that command's samples.
perf_begin() {
  perf_pid=
  [ -x /usr/bin/perf ] || return 0
  perf record -a -g -F 250 -e cpu-clock -o /tmp/perf.data >/tmp/perf.log 2>&1 &
  perf_pid=$!
}
perf_end() {
  [ -n "$perf_pid" ] || return 0
  kill -INT $perf_pid; wait $perf_pid
  r="perf report -i /tmp/perf.data --stdio -q"
  $r --no-children --sort comm -g none --percent-limit 0.5 2>/dev/null | awk -v s="$1" 'NF { print "@@PERF", s, "comm", $0 }'
  for c in $($r --no-children --sort comm -g none 2>/dev/null | awk 'NF && $2 != "swapper" { print $2 }' | head -n 3); do
    $r --no-children --comms "$c" --percentage relative --sort sym -g none --percent-limit 1 2>/dev/null \
      | awk -v s="$1" -v c="$c" 'NF { print "@@PERF", s, c, "self", $0 }' | head -n 25
    $r --children --comms "$c" --percentage relative --sort sym -g none --percent-limit 4 2>/dev/null \
      | awk -v s="$1" -v c="$c" 'NF { print "@@PERF", s, c, "incl", $0 }' | head -n 45
  done
  rm -f /tmp/perf.data
}
# The previous guest's teardown (hotplug detach) finishes after its console closed.
wait_guests_gone() {
  i=0
  while [ "$(xenstore-list /local/domain 2>/dev/null | wc -l)" -gt 1 ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
}
use_kernel_blkback() {
  grep -q '^xen_blkback ' /proc/modules && return 0
  while read -r ko; do insmod "$ko" || echo "@@DOM0-WARN insmod $ko failed"; done < /sluice/blkback.list
}
# Guests' network (Workload::Net): dom0's ends of the transfers.
net_listen() {
  # A listener left by a step's first run (its guest died before connecting) holds the
  # port; no other nc runs in dom0 while a listener is set up.
  killall nc 2> /dev/null
  rm -f /tmp/net-rx.bin /tmp/net-rx.done /tmp/net-fifo; mkfifo /tmp/net-fifo || return 1
  (nc -l -p "$1" < /tmp/net-fifo > /tmp/net-rx.bin; echo $? > /tmp/net-rx.done) &
  exec 4>/tmp/net-fifo
  sleep 1
}
# gone DOMAIN: true once the step's guest no longer exists (it crashed or powered off):
# a transfer with it then ends at once instead of waiting out TCP's timeouts.
gone() { ! xl domid "$1" > /dev/null 2>&1; }
net_received() {
  i=0
  until [ -e /tmp/net-rx.done ]; do
    i=$((i+1)); [ $i -gt 1200 ] && { echo "nothing received"; return 1; }
    [ $((i % 10)) = 0 ] && gone "$2" && { echo "the guest is gone"; return 1; }
    sleep 0.5
  done
  exec 4>&-
  s=$(sha256sum < /tmp/net-rx.bin); s=${s%% *}
  echo "dom0 received $(wc -c < /tmp/net-rx.bin) bytes (nc rc $(cat /tmp/net-rx.done)), sha256 $s"
  # net_send answers with as many MiB as the guest sent (check_net's MIB).
  echo $(( $(wc -c < /tmp/net-rx.bin) / 1048576 )) > /tmp/net-mib
  rm -f /tmp/net-rx.bin
  [ "$s" = "$1" ]
}
net_send() {
  mib=$(cat /tmp/net-mib 2>/dev/null); [ "${mib:-0}" -gt 0 ] 2>/dev/null || mib=64
  dd if=/dev/urandom of=/tmp/net-tx.bin bs=1M count=$mib 2>/dev/null || return 1
  t0=$(cut -d' ' -f1 /proc/uptime)
  i=0
  while :; do
    nc "$1" 5002 < /tmp/net-tx.bin & p=$!
    while kill -0 $p 2> /dev/null; do
      gone "$2" && { kill $p; echo "the guest is gone"; return 1; }
      sleep 1
    done
    wait $p && break
    i=$((i+1)); [ $i -gt 10 ] && return 1; sleep 1
  done
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "@@NET dom0-to-guest $mib MiB in $(awk "BEGIN{print $t1 - $t0}") s"
}
net_sent() {
  s=$(sha256sum < /tmp/net-tx.bin); s=${s%% *}
  echo "dom0 sent sha256 $s"
  rm -f /tmp/net-tx.bin
  [ "$s" = "$1" ]
}
use_kernel_netback() {
  grep -q '^xen_netback ' /proc/modules && return 0
  while read -r ko; do insmod "$ko" || echo "@@DOM0-WARN insmod $ko failed"; done < /sluice/netback.list
}
drop_kernel_netback() {
  grep -q '^xen_netback ' /proc/modules || return 0
  i=0; until rmmod xen_netback 2>/dev/null; do
    i=$((i+1)); [ $i -gt 40 ] && { echo "@@DOM0-WARN xen_netback stays loaded"; return 1; }; sleep 0.5
  done
}
drop_kernel_blkback() {
  grep -q '^xen_blkback ' /proc/modules || return 0
  i=0; until rmmod xen_blkback 2>/dev/null; do
    i=$((i+1)); [ $i -gt 40 ] && { echo "@@DOM0-WARN xen_blkback stays loaded"; return 1; }; sleep 0.5
  done
}
"#;

pub(super) const DOM0_FINISH: &str = r#"for f in /var/log/sluice/*.log; do
  [ -e "$f" ] || continue
  echo "@@DAEMON-LOG-BEGIN ${f##*/}"; cat "$f"; echo "@@DAEMON-LOG-END ${f##*/}"
done
sync
echo "@@DOM0-POWEROFF"
poweroff -f
"#;

pub(super) const DOM0_DIAG: &str = r#"echo "@@DIAG-BEGIN"
xl list
for f in /var/log/xen/*.log; do [ -e "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
echo "== xl dmesg"; xl dmesg | tail -n 30
echo "== dmesg"; dmesg | tail -n 30
for f in /var/log/sluice/*.log; do [ -e "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
echo "@@DIAG-END"
"#;

/// The libxl hotplug script for userspace-served vifs: the one `sluice-backends` ships.
pub(super) const USERSPACE_VIF_SCRIPT_TEXT: &str =
    include_str!("../../../packaging/backends/vif-userspace");

/// The libxl hotplug script for userspace-served disks: the one `sluice-backends` ships.
pub(super) const USERSPACE_BLOCK_SCRIPT_TEXT: &str =
    include_str!("../../../packaging/backends/block-userspace");
