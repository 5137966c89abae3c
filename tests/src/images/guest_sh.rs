//! The guests' shell text: /init, the fio jobs (also run in dom0), and the check
//! functions each workload's step line calls.

/// The guest's /init: modules (blkfront only if the step loads it at boot), then the
/// step named on the kernel command line.
pub(super) const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -sf /proc/mounts /etc/mtab
step=$(sed -n 's/.*sluice\.step=\([a-z0-9-]*\).*/\1/p' /proc/cmdline)
# The step's blkfront: its own module (GuestStep::with_blkfront_module) or the kernel's.
blkfront_ko() {
  if [ -e "/steps/$step.blkfront" ]; then cat "/steps/$step.blkfront"; else grep blkfront /modules.list | head -n 1; fi
}
while read -r ko; do
  # A step without blkfront at boot leaves its disks to a userspace frontend.
  args=
  case "$ko" in *blkfront*)
    [ -e "/steps/$step.noblkfront" ] && continue
    ko=$(blkfront_ko)
    [ -e "/steps/$step.blkfront-args" ] && args=$(cat "/steps/$step.blkfront-args") ;;
  *xen-netfront*)
    # The step's vif frontend: a module of ours (GuestStep::with_vif_frontend) or the kernel's.
    [ -e "/steps/$step.netfront" ] && ko=$(cat "/steps/$step.netfront") ;;
  esac
  insmod "$ko" $args || echo "@@GUEST-WARN insmod $ko $args failed"
done < /modules.list
echo "@@GUEST-BEGIN $step"
. /lib/sluice-checks.sh
. "/steps/$step.sh"
sync
echo "@@GUEST-END $step"
poweroff -f
"#;

/// `fio_jobs DEV SECONDS`: the fio benchmark of [`Workload::Fio`], the same in a guest
/// and in dom0. One `@@FIO` line per job: IOPS and KiB/s from fio's terse output (v3:
/// fields 7-8 read bandwidth and IOPS, 48-49 write), and the mean completion latency
/// in microseconds (fields 16 and 57).
pub(super) const FIO_JOBS: &str = r#"
fio_jobs() {
  dev=$1; t=$2
  common="--filename=$dev --ioengine=libaio --direct=1 --norandommap --randrepeat=0 --output-format=terse --terse-version=3"
  for job in "seqwrite-1m --rw=write --bs=1M --iodepth=8" \
             "randread-4k --rw=randread --bs=4k --iodepth=32 --time_based --runtime=$t" \
             "randwrite-4k --rw=randwrite --bs=4k --iodepth=32 --time_based --runtime=$t" \
             "seqread-1m --rw=read --bs=1M --iodepth=8 --time_based --runtime=$t"; do
    name=${job%% *}
    s0=$(fio_counts "$dev")
    out=$(fio --name=$name $common ${job#* } 2>&1) || { echo "fio $name failed: $out"; return 1; }
    s1=$(fio_counts "$dev")
    echo "$out" | awk -F';' -v n=$name '$1 == "3" { printf "@@FIO %s read_kibs=%s read_iops=%s write_kibs=%s write_iops=%s read_clat_us=%s write_clat_us=%s\n", n, $7, $8, $48, $49, $16, $57 }'
    # Load-independent counts (a log line only): requests the driver completed, sectors,
    # and block-frontend interrupts (xen-blkfront's "blkif", sluice-blkfront's own); then
    # the CPU time of all the machine's CPUs in USER_HZ ticks (/proc/stat): busy (user,
    # nice, system, irq, softirq), idle (idle, iowait) and steal (runnable, not run by
    # the hypervisor). (An `if`, not `&&`: where DEV has no stat file, e.g. a symlink in
    # dom0, a failed test as the loop's last command would be the function's status.)
    if [ -n "$s0" ]; then
      echo "$s0 $s1" | awk -v n=$name '{ h = NF / 2; d = h - 8
        for (k = 1; k <= 8; k++) c[k] = $(h + d + k) - $(d + k)
        printf "@@FIOSTAT %s reads=%d read_sectors=%d writes=%d write_sectors=%d irqs=%d cpu_busy=%d cpu_idle=%d cpu_steal=%d\n", n, $(h+1)-$1, $(h+3)-$3, $(h+5)-$5, $(h+7)-$7, $(h+d)-$d, c[1]+c[2]+c[3]+c[6]+c[7], c[4]+c[5], c[8] }'
    fi
  done
  return 0
}
# fio_counts DEV: its /sys/block stat fields, the block frontends' interrupt count and
# the first eight fields of /proc/stat's "cpu" line (user nice system idle iowait irq
# softirq steal) (nothing when DEV has no stat file, e.g. a file in dom0).
fio_counts() {
  f=/sys/block/${1##*/}/stat
  [ -r "$f" ] || return 0
  i=$(awk '/blkif|sluice-blkfront/ { for (k = 2; k <= NF && $k ~ /^[0-9]+$/; k++) t += $k } END { print t + 0 }' /proc/interrupts)
  c=$(awk '$1 == "cpu" { print $2, $3, $4, $5, $6, $7, $8, $9 }' /proc/stat)
  echo "$(cat "$f") $i $c"
}
"#;

/// The guest's check functions. Each runs in a subshell; `report` turns its status into
/// a PASS/FAIL/CRASH line (a status above 128 is a signal).
pub(super) const GUEST_CHECKS: &str = r#"
report() {
  if [ "$2" -eq 0 ]; then echo "@@CHECK $1 PASS"
  elif [ "$2" -gt 128 ]; then echo "@@CHECK $1 CRASH rc=$2"
  else echo "@@CHECK $1 FAIL rc=$2"; fi
}
# Runs a command; a death by signal ends the check with that status.
x() { "$@"; r=$?; [ $r -gt 128 ] && { echo "killed by signal: $*"; exit $r; }; return $r; }
# wait_dev DEV [SECONDS]: until the block device exists (20 s by default).
wait_dev() {
  i=0; n=$((${2:-20} * 5))
  while [ ! -b "$1" ]; do i=$((i+1)); [ $i -gt $n ] && { echo "no $1 after ${2:-20} s"; return 1; }; sleep 0.2; done
}
# wait_gone DEV: until the block device is gone (120 s).
wait_gone() {
  i=0
  while [ -b "$1" ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "$1 still there after 120 s"; return 1; }; sleep 0.2; done
}
# put DEV FILE SECTOR: writes the 1 MiB FILE at 512-byte SECTOR, synced to the disk.
put() {
  x dd if="$2" of="$1" bs=64k seek=$(($3 * 512)) oflag=seek_bytes conv=fsync 2>/dev/null || { echo "write at sector $3 failed"; return 1; }
}
# same DEV SECTOR SHA [SECTORS]: the SECTORS (2048) at SECTOR, read uncached, hash to SHA.
same() {
  x blockdev --flushbufs "$1" || return 1
  echo 3 > /proc/sys/vm/drop_caches
  x dd if="$1" of=/tmp/readback bs=64k skip=$(($2 * 512)) count=$((${4:-2048} * 512)) iflag=skip_bytes,count_bytes 2>/dev/null || { echo "read at sector $2 failed"; return 1; }
  got=$(sha /tmp/readback) || return 1
  rm -f /tmp/readback
  [ "$got" = "$3" ] || { echo "sector $2: read back $got, expected $3"; return 1; }
}
# dom0 VERB DISK: asks the harness to have dom0 do VERB (detach, attach, restart-backend)
# for DISK while it is idle, and waits for the answer typed on the console.
dom0() {
  tok="$1-$2-$(cut -d' ' -f1 /proc/uptime)"
  echo "@@ACTION $tok $1 $2"
  while read -t 600 -r l; do
    case "$l" in
      "@@GO $tok rc=0") echo "@@ACTION-ACK $tok"; return 0 ;;
      "@@GO $tok "*) echo "@@ACTION-ACK $tok"; echo "dom0 could not $1 $2 (${l#@@GO $tok })"; return 1 ;;
    esac
  done
  echo "no answer from dom0 to $1 $2"; return 1
}
sha() { s=$(x sha256sum "$@") || return 1; echo "${s%% *}"; }
# check_secondary_console: dom0 adds device/console/1 (sluice-console-add, served by
# sluice-consoleback); the kernel's hvc_xen binds it first, so it is unbound from that
# driver and bound to sluice-consfront through sysfs; dom0 then types a line into the
# console's pty and the guest answers on /dev/sluicecons1 with the line's sha256.
check_secondary_console() {
  d=/sys/bus/xen/devices/console-1
  dom0 console-add 1 || return 1
  i=0; until [ -e $d/driver ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "device/console/1 never bound"; return 1; }; sleep 0.1; done
  first=$(basename "$(readlink $d/driver)")
  echo "console-1 first bound by $first"
  insmod /lib/modules/sluice-consfront.ko || { echo "insmod sluice-consfront failed"; return 1; }
  echo console-1 > /sys/bus/xen/drivers/$first/unbind || { echo "unbind from $first failed"; return 1; }
  echo console-1 > /sys/bus/xen/drivers/sluice-consfront/bind || { echo "bind to sluice-consfront failed"; return 1; }
  now=$(basename "$(readlink $d/driver)")
  [ "$now" = sluice-consfront ] || { echo "console-1 bound to $now"; return 1; }
  i=0; until dmesg | grep -q 'sluicecons1: connected'; do i=$((i+1)); [ $i -gt 600 ] && { echo "sluicecons1 never connected"; dmesg | grep sluice-consfront; return 1; }; sleep 0.1; done
  [ -c /dev/sluicecons1 ] || { echo "no /dev/sluicecons1"; return 1; }
  exec 5<>/dev/sluicecons1
  stty -F /dev/sluicecons1 raw -echo || return 1
  ( read -r l <&5; h=$(printf '%s\n' "$l" | sha256sum); printf 'SHA %s\n' "${h%% *}" >&5 ) &
  reader=$!
  dom0 console-rt 1 || { kill $reader 2>/dev/null; return 1; }
  wait $reader
  exec 5>&-
  # Unbind and unload: the line goes, nothing is left behind.
  echo console-1 > /sys/bus/xen/drivers/sluice-consfront/unbind || { echo "unbind from sluice-consfront failed"; return 1; }
  [ ! -e /dev/sluicecons1 ] || { echo "/dev/sluicecons1 still there after unbind"; return 1; }
  rmmod sluice_consfront || { echo "rmmod sluice-consfront failed"; return 1; }
  echo "@@SUMMARY $id: device/console/1 added by dom0 (sluice-console-add), moved from $first to sluice-consfront.ko (sysfs unbind/bind); a line dom0 typed into sluice-consoleback's pty reached /dev/sluicecons1 and its sha256 came back; unbound and rmmod'ed"
}
check_roundtrip() {
  echo "@@RT-READY"
  read -t 300 -r line || { echo "no line typed"; return 1; }
  h=$(printf %s "$line" | sha256sum)
  echo "@@RT-ECHO ${h%% *}"
}
check_read() {
  dev=$1; mib=$2; rounds=$3
  wait_dev "$dev" || return 1
  round=0
  while [ $round -lt "$rounds" ]; do
    t0=$(cut -d' ' -f1 /proc/uptime)
    x dd if="$dev" of=/dev/null bs=1M count="$mib" iflag=direct 2>/dev/null || { echo "read failed"; return 1; }
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "@@READ $(basename $dev) mib=$mib t0=$t0 t1=$t1"
    round=$((round+1))
  done
}
check_pattern() {
  dev=$1; file=$2; want=$3; shift 3
  wait_dev "$dev" || return 1
  for s in "$@"; do
    x dd if="$file" of="$dev" bs=64k seek=$((s * 512)) oflag=seek_bytes conv=fsync 2>/dev/null || { echo "write at $s failed"; return 1; }
  done
  x blockdev --flushbufs "$dev" || return 1
  echo 3 > /proc/sys/vm/drop_caches
  for s in "$@"; do
    x dd if="$dev" of=/tmp/readback bs=64k skip=$((s * 512)) count=1048576 iflag=skip_bytes,count_bytes 2>/dev/null || { echo "read at $s failed"; return 1; }
    got=$(sha /tmp/readback) || return 1
    [ "$got" = "$want" ] || { echo "sector $s: read back $got, wrote $want"; return 1; }
  done
  rm -f /tmp/readback
  echo "@@SUMMARY $id: 3 x 1 MiB written at sectors $*, read back uncached, sha256 match"
}
check_discard() {
  dev=$1; file=$2; want=$3; s=$4
  wait_dev "$dev" || return 1
  max=$(cat /sys/block/${dev##*/}/queue/discard_max_bytes)
  [ "$max" -gt 0 ] || { echo "${dev##*/} offers no discard (discard_max_bytes 0)"; return 1; }
  for i in 0 1 2 3 4; do put "$dev" "$file" $((s + i * 2048)) || return 1; done
  same "$dev" "$s" "$want" || return 1
  x blkdiscard -o $((s * 512)) -l 4194304 "$dev" || { echo "blkdiscard failed"; return 1; }
  zero=$(dd if=/dev/zero bs=1M count=4 2>/dev/null | sha256sum); zero=${zero%% *}
  same "$dev" "$s" "$zero" 8192 || { echo "the discarded 4 MiB do not read as zeroes"; return 1; }
  same "$dev" $((s + 4 * 2048)) "$want" || { echo "the MiB after the discarded range changed"; return 1; }
  echo "@@SUMMARY $id: 5 MiB written at sector $s, first 4 MiB discarded (blkdiscard; discard_max_bytes $max), read back as zeroes, 5th MiB intact"
}
check_reattach() {
  dev=$1; file=$2; want=$3; s=$4
  wait_dev "$dev" || return 1
  put "$dev" "$file" "$s" && same "$dev" "$s" "$want" || return 1
  dom0 detach "${dev##*/}" || return 1
  wait_gone "$dev" || return 1
  dom0 attach "${dev##*/}" || return 1
  wait_dev "$dev" 120 || return 1
  same "$dev" "$s" "$want" || return 1
  echo "@@SUMMARY $id: 1 MiB written, disk detached (xl block-detach) and re-attached (xl block-attach) while idle, read back"
}
check_backend_restart() {
  dev=$1; f1=$2; sha1=$3; s1=$4; f2=$5; sha2=$6; s2=$7
  wait_dev "$dev" || return 1
  put "$dev" "$f1" "$s1" && same "$dev" "$s1" "$sha1" || return 1
  dom0 restart-backend "${dev##*/}" || return 1
  same "$dev" "$s1" "$sha1" || { echo "after the backend restart"; return 1; }
  put "$dev" "$f2" "$s2" && same "$dev" "$s2" "$sha2" || { echo "after the backend restart"; return 1; }
  echo "@@SUMMARY $id: backend killed (SIGKILL) and restarted with the disk idle; earlier data read back, new 1 MiB written and read back"
}
check_frontend_reload() {
  dev=$1; file=$2; want=$3; s=$4
  wait_dev "$dev" || return 1
  mod=$(sed -n 's/^\([a-z_]*blkfront\) .*/\1/p' /proc/modules | head -n 1)
  ko=$(blkfront_ko)
  [ -n "$mod" ] && [ -n "$ko" ] || { echo "no blkfront module loaded"; return 1; }
  put "$dev" "$file" "$s" && same "$dev" "$s" "$want" || return 1
  # xenbus holds a reference on a frontend driver's module for each device bound to
  # it: unbind them first (what unloading a xenbus frontend takes).
  for d in /sys/bus/xen/devices/vbd-*; do
    [ -e "$d/driver" ] || continue
    echo "${d##*/}" > "$d/driver/unbind" || { echo "unbinding ${d##*/} failed"; return 1; }
  done
  wait_gone "$dev" || return 1
  x rmmod "$mod" || { echo "rmmod $mod failed (module users: $(cat /sys/module/$mod/refcnt))"; return 1; }
  x insmod "$ko" || { echo "insmod $ko failed"; return 1; }
  wait_dev "$dev" 120 || return 1
  same "$dev" "$s" "$want" || return 1
  echo "@@SUMMARY $id: $mod unloaded with the disk idle (devices unbound, rmmod) and loaded again; the disk came back and the data read back"
}
check_fio() {
  wait_dev "$1" || return 1
  . /lib/sluice-fio.sh
  fio_jobs "$1" "$2" || return 1
  echo "@@SUMMARY $id: fio ran; frontend module $(sed -n 's/^\([a-z_]*blkfront\) .*/\1/p' /proc/modules | head -n 1)"
}
# Crash consistency (Workload::CrashKill / CrashDestroy / CrashVerify). Writer W's
# record R: 256 KiB at byte (W * 96 + R) * 256 KiB, each 512-byte sector a line naming
# writer, record and sector (any lost, stale or misplaced sector shows).
CRASH_RECORDS=96
crash_rec() { awk -v w=$1 -v r=$2 'BEGIN { for (s = 0; s < 512; s++) printf "%-511s\n", "sluice-crash writer=" w " record=" r " sector=" s }'; }
# crash_writer DEV W [print]: writes records with O_DIRECT, each followed by fsync (a
# flush request); once both completed the record is acknowledged: counted in
# /tmp/crash-acked-W (and printed as @@ACK W R with `print`).
crash_writer() {
  i=0
  while [ ! -e /tmp/crash-stop ] && [ $i -lt $CRASH_RECORDS ]; do
    crash_rec $2 $i > /tmp/crash-rec-$2
    dd if=/tmp/crash-rec-$2 of=$1 bs=256k count=1 seek=$((($2 * CRASH_RECORDS + i) * 262144)) oflag=seek_bytes,direct conv=fsync 2>/tmp/crash-dd-$2 \
      || { echo "writer $2: record $i: $(cat /tmp/crash-dd-$2)" >> /tmp/crash-fail; return 1; }
    i=$((i+1)); echo $i > /tmp/crash-acked-$2
    [ "$3" = print ] && echo "@@ACK $2 $((i-1))"
  done
  return 0
}
crash_acked() { cat /tmp/crash-acked-$1 2>/dev/null || echo 0; }
# crash_load DEV: fio random writes at depth 8 on the last 32 MiB (answers complete
# out of order; rate-limited to leave the slow TCG guest time for the writers), until
# killed.
crash_load() {
  fio --name=load --filename=$1 --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=8 --rate_iops=200 \
    --offset=96M --size=32M --time_based --runtime=3600 --norandommap --randrepeat=0 \
    --output=/tmp/crash-fio.log </dev/null >/dev/null 2>&1 &
  echo $! > /tmp/crash-fio.pid
}
crash_start() {
  rm -f /tmp/crash-*
  crash_load $1
  for w in 0 1 2 3; do crash_writer $1 $w $2 </dev/null & done
}
# crash_wait_acked N: until every writer acknowledged at least N records (each writer
# its own N when given four numbers); 600 s at most.
crash_wait_acked() {
  t=0
  for w in 0 1 2 3; do
    eval n=\${$((w + 1)):-$1}
    while [ "$(crash_acked $w)" -lt "$n" ]; do
      [ -e /tmp/crash-fail ] && { cat /tmp/crash-fail; return 1; }
      t=$((t+1)); [ $t -gt 3000 ] && { echo "writer $w: $(crash_acked $w) records acknowledged, waited for $n"; return 1; }
      sleep 0.2
    done
  done
}
crash_stop() {
  touch /tmp/crash-stop
  p=$(cat /tmp/crash-fio.pid)
  kill -0 "$p" 2>/dev/null || echo "fio stopped early (an I/O error?): $(tr '\n' ' ' < /tmp/crash-fio.log | head -c 600)" >> /tmp/crash-fail
  kill "$p" 2>/dev/null
  wait
  [ ! -e /tmp/crash-fail ] || { cat /tmp/crash-fail; return 1; }
}
# crash_verify DEV N0 N1 N2 N3: records 0..Nw-1 of writer w read back (O_DIRECT) as written.
crash_verify() {
  dev=$1; shift; total=0
  for w in 0 1 2 3; do
    n=$1; shift; i=0
    while [ $i -lt "$n" ]; do
      crash_rec $w $i > /tmp/crash-want
      x dd if=$dev of=/tmp/crash-got bs=256k count=1 skip=$((($w * CRASH_RECORDS + i) * 262144)) iflag=skip_bytes,direct 2>/dev/null || { echo "reading writer $w record $i failed"; return 1; }
      cmp -s /tmp/crash-want /tmp/crash-got || { echo "writer $w record $i (acknowledged) reads back wrong: $(head -c 80 /tmp/crash-got | tr -c '[:print:]' .)"; return 1; }
      i=$((i+1)); total=$((total+1))
    done
  done
  echo "$total acknowledged records read back intact"
}
check_crash_kill() {
  dev=$1
  wait_dev "$dev" || return 1
  crash_start "$dev"
  crash_wait_acked 1 || return 1
  dom0 restart-backend-midwrite "${dev##*/}" || return 1
  a0=$(crash_acked 0); a1=$(crash_acked 1); a2=$(crash_acked 2); a3=$(crash_acked 3)
  # The guest carries on: every writer acknowledges two more records.
  crash_wait_acked $((a0 + 2)) $((a1 + 2)) $((a2 + 2)) $((a3 + 2)) || { echo "after the backend restart"; return 1; }
  crash_stop || return 1
  n="$(crash_acked 0) $(crash_acked 1) $(crash_acked 2) $(crash_acked 3)"
  out=$(crash_verify "$dev" $n) || { echo "$out"; return 1; }
  fio=$(grep -o 'issued rwts: total=[0-9,]*' /tmp/crash-fio.log | head -n 1)
  echo "@@SUMMARY $id: sluice-blkback SIGKILLed (with requests in flight) and restarted under 4 record writers (O_DIRECT + fsync) and fio randwrite at depth 8 (${fio:-fio printed no totals}); no I/O error; records acknowledged per writer: $n ($a0 $a1 $a2 $a3 when the restart returned); $out"
}
check_crash_destroy() {
  dev=$1
  wait_dev "$dev" || return 1
  dom0 destroy-after-writes "${dev##*/}" || return 1
  echo "@@CRASH-WRITING $id"
  crash_start "$dev" print
  wait
  echo "the writers stopped before the guest was destroyed: $(cat /tmp/crash-fail 2>/dev/null)"
  return 1
}
check_crash_verify() {
  dev=$1
  wait_dev "$dev" || return 1
  echo "@@ACKS-READY"
  read -t 300 -r line || { echo "no acknowledged counts typed"; return 1; }
  set -- $line
  [ "$1" = acked ] && [ $# -eq 5 ] || { echo "bad line typed: $line"; return 1; }
  shift
  out=$(crash_verify "$dev" "$@") || { echo "$out"; return 1; }
  echo "@@SUMMARY $id: a fresh guest on the disk of a guest destroyed (xl destroy) mid-write: acknowledged records per writer $*; $out"
}
check_read_only() {
  dev=$1
  wait_dev "$dev" || return 1
  ro=$(blockdev --getro "$dev") || return 1
  [ "$ro" = 1 ] || { echo "${dev##*/} is not read-only in the guest (getro $ro)"; return 1; }
  x dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null || { echo "reading ${dev##*/} failed"; return 1; }
  if dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct 2>/dev/null; then
    echo "a write to read-only ${dev##*/} succeeded"; return 1
  fi
  echo "@@SUMMARY $id: ${dev##*/} is read-only in the guest, reads work, an O_DIRECT write is refused"
}
check_sector_size() {
  dev=$1; want=$2
  wait_dev "$dev" || return 1
  got=$(cat /sys/block/${dev##*/}/queue/logical_block_size)
  [ "$got" = "$want" ] || { echo "${dev##*/}: logical block size $got, expected $want"; return 1; }
  echo "@@SUMMARY $id: ${dev##*/} has $got-byte logical sectors"
}
# bounded SECS CMD...: runs CMD; its status, or 124 if it still runs after SECS (left
# running: a task stuck in the kernel cannot be killed).
bounded() {
  t=$1; shift
  "$@" & p=$!
  i=0
  while kill -0 $p 2>/dev/null; do
    i=$((i+1)); [ $i -gt $((t * 5)) ] && return 124; sleep 0.2
  done
  wait $p
}
# check_misbehaving DEV MODE LINE SECS: DEV's backend misbehaves in MODE at the first
# write: a read before works (wrong-ring: nothing is ever answered), the write fails
# within SECS, the kernel log has blkfront's LINE for DEV, and a read fails afterwards.
check_misbehaving() {
  dev=$1; mode=$2; line=$3; t=$4; d=${dev##*/}
  wait_dev "$dev" 60 || return 1
  if [ "$mode" != wrong-ring ]; then
    bounded "$t" dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null
    rc=$?; [ $rc -eq 0 ] || { echo "$d: the read before the misbehaviour failed (rc=$rc)"; return 1; }
  fi
  t0=$(cut -d. -f1 /proc/uptime)
  bounded "$t" dd if=/dev/zero of="$dev" bs=4k count=1 seek=64 oflag=direct 2>/dev/null
  rc=$?; t1=$(cut -d. -f1 /proc/uptime)
  [ $rc -eq 124 ] && { echo "$d: the write still waits after $t s (a hang)"; return 1; }
  [ $rc -eq 0 ] && { echo "$d: the write to a $mode backend succeeded"; return 1; }
  dmesg | grep -q "sluice-blkfront: $d: .*$line" || {
    echo "$d: no 'sluice-blkfront: $d: ... $line' in the kernel log:"; dmesg | grep -i "$d\|blkfront" | tail -n 8; return 1; }
  bounded "$t" dd if="$dev" of=/dev/null bs=4k count=1 skip=128 iflag=direct 2>/dev/null
  rc=$?; [ $rc -eq 0 ] && { echo "$d: a read after the failure succeeded"; return 1; }
  [ $rc -eq 124 ] && { echo "$d: a read after the failure still waits after $t s"; return 1; }
  echo "@@SUMMARY $id: $mode backend: the write failed after $((t1 - t0)) s with the driver's line ($(dmesg | grep "sluice-blkfront: $d: .*$line" | head -n 1 | sed 's/^\[[^]]*\] //')); the device stays failed"
}
# net_up ME [QUEUES]: the netfront's eth0 (QUEUES tx and rx queues when given) up with
# the static address ME/24 (once: a later check finds it up).
net_up() {
  me=$1; q=$2
  i=0; until [ -e /sys/class/net/eth0 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "no eth0"; return 1; }; sleep 0.1; done
  if ! ip -4 addr show dev eth0 | grep -q " $me/24 "; then
    x ip addr add "$me/24" dev eth0 || return 1
  fi
  x ip link set eth0 up || return 1
  i=0; until [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; do i=$((i+1)); [ $i -gt 600 ] && { echo "eth0 has no carrier"; return 1; }; sleep 0.1; done
  tq=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l); rq=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)
  echo "eth0 $(cat /sys/class/net/eth0/address) mtu $(cat /sys/class/net/eth0/mtu) up, $tq tx / $rq rx queues"
  if [ -n "$q" ]; then
    [ "$tq" = "$q" ] && [ "$rq" = "$q" ] || { echo "eth0 has $tq tx / $rq rx queues, not $q"; return 1; }
  fi
}
# check_net ME PEER [QUEUES] [MIB]: net_up, ping both ways, then MIB (64) MiB of random
# data over TCP each way (busybox nc; a fifo keeps each listener's stdin open so it never
# half-closes first); dom0 compares the sha256 (net-* actions) and sends back as many
# MiB as it received.
check_net() {
  me=$1; peer=$2; q=$3; mib=${4:-64}
  net_up "$me" "$q" || return 1
  x ping -c 3 -W 10 "$peer" || { echo "the guest cannot ping dom0"; return 1; }
  dom0 net-ping "$me" || { echo "dom0 cannot ping the guest"; return 1; }
  x dd if=/dev/urandom of=/tmp/net.bin bs=1M count=$mib 2>/dev/null || return 1
  s=$(sha /tmp/net.bin) || return 1
  dom0 net-listen 5001 || return 1
  t0=$(cut -d' ' -f1 /proc/uptime)
  n=0; until x nc "$peer" 5001 < /tmp/net.bin; do n=$((n+1)); [ $n -gt 10 ] && { echo "sending to dom0 failed"; return 1; }; sleep 1; done
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "@@NET guest-to-dom0 $mib MiB in $(awk "BEGIN{print $t1 - $t0}") s"
  rm -f /tmp/net.bin
  dom0 net-received "$s" || { echo "dom0 did not receive the guest's $mib MiB (sha256 $s)"; return 1; }
  rm -f /tmp/net-fifo /tmp/net-rx.bin; mkfifo /tmp/net-fifo || return 1
  nc -l -p 5002 < /tmp/net-fifo > /tmp/net-rx.bin &
  pid=$!
  exec 3>/tmp/net-fifo
  dom0 net-send "$me" || { exec 3>&-; kill $pid 2>/dev/null; echo "dom0 could not send"; return 1; }
  wait $pid; rc=$?
  exec 3>&-
  [ $rc -eq 0 ] || { echo "nc -l exited $rc"; return 1; }
  echo "received $(wc -c < /tmp/net-rx.bin) bytes from dom0"
  s=$(sha /tmp/net-rx.bin) || return 1
  rm -f /tmp/net-rx.bin
  dom0 net-sent "$s" || { echo "the guest received other bytes than dom0 sent (sha256 $s)"; return 1; }
}
# check_net_restart ME PEER: dom0 kills sluice-netback (SIGKILL) and starts it again;
# the vif comes back without the guest doing anything: ping both ways.
check_net_restart() {
  me=$1; peer=$2
  dom0 net-restart netback || { echo "dom0 could not restart the net backend"; return 1; }
  n=0; until ping -c 1 -W 3 "$peer" >/dev/null 2>&1; do
    n=$((n+1)); [ $n -gt 40 ] && { echo "no ping answer after the backend restart"; return 1; }
  done
  x ping -c 3 -W 10 "$peer" || { echo "the guest cannot ping dom0 after the restart"; return 1; }
  dom0 net-ping "$me" || { echo "dom0 cannot ping the guest after the restart"; return 1; }
}
# check_unload SECS: the kernel log is clean (no WARNING splat, BUG, Oops, call trace or
# hung task),
# then every vbd is unbound and blkfront unloaded, each within SECS; no disk is left.
check_unload() {
  t=$1
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than"; then
    echo "the kernel complained (above)"; return 1
  fi
  mod=$(sed -n 's/^\([a-z_]*blkfront\) .*/\1/p' /proc/modules | head -n 1)
  [ -n "$mod" ] || { echo "no blkfront module loaded"; return 1; }
  for d in /sys/bus/xen/devices/vbd-*; do
    [ -e "$d/driver" ] || continue
    bounded "$t" sh -c "echo ${d##*/} > $d/driver/unbind"
    rc=$?; [ $rc -eq 0 ] || { echo "unbinding ${d##*/} failed or hung (rc=$rc)"; return 1; }
  done
  bounded "$t" rmmod "$mod"
  rc=$?; [ $rc -eq 0 ] || { echo "rmmod $mod failed or hung (rc=$rc)"; return 1; }
  grep -q "^$mod " /proc/modules && { echo "$mod still loaded"; return 1; }
  left=$(ls /sys/block | grep '^xvd')
  [ -z "$left" ] || { echo "disks left after rmmod: $left"; return 1; }
  if dmesg | grep -E "WARNING: CPU|cut here|BUG:|Oops|Call Trace|blocked for more than"; then
    echo "the kernel complained while unloading (above)"; return 1
  fi
  # Grants a backend kept mapped stay granted (their pages quarantined): the driver
  # ends them without the grant table's "still in use" warnings.
  if dmesg | grep "still in use"; then echo "a grant was ended while in use (above)"; return 1; fi
  echo "@@SUMMARY $id: kernel log clean; every vbd unbound (failed devices included) and $mod unloaded"
}
# check_hostile DEV DEVID FILE SECTOR SCALE: sluice-hostile-blkfront attacks the backend of
# device DEVID (no blkfront is loaded), writing the start of FILE at SECTOR once
# validly; dom0 then checks that the backend idles and detaches the device; then
# blkfront is loaded for the guest's other disks.
check_hostile() {
  dev=$1; devid=$2; file=$3; s=$4; scale=$5; steady_devid=$6; steady_s=$7
  for n in gntalloc evtchn xenbus; do [ -e /dev/xen/$n ] || { echo "no /dev/xen/$n"; return 1; }; done
  grep -q blkfront /proc/modules && { echo "a blkfront is loaded: the device is not free"; return 1; }
  steady=""
  [ -n "$steady_devid" ] && steady="--steady-devid $steady_devid --steady-sector $steady_s"
  x /sbin/sluice-hostile-blkfront --devid "$devid" --data "$file" --sector "$s" --timeout-scale "$scale" $steady
  rc=$?
  idle=0; dom0 backend-idle "${dev##*/}" || idle=1
  # The toolstack removes the device the backend gave up on, so that blkfront (stock,
  # or sluice-blkfront, which would wait for it) finds only the other disks.
  dom0 detach "${dev##*/}" || return 1
  i=0
  while [ -e /sys/bus/xen/devices/vbd-$devid ]; do
    i=$((i+1)); [ $i -gt 300 ] && { echo "vbd-$devid still there 60 s after the detach"; return 1; }; sleep 0.2
  done
  ko=$(blkfront_ko)
  x insmod "$ko" || { echo "insmod $ko failed"; return 1; }
  [ $rc -eq 0 ] || { echo "hostile frontend: $rc failed check(s)"; return 1; }
  [ $idle -eq 0 ] || { echo "the backend does not idle after the attack"; return 1; }
  echo "@@SUMMARY $id: every hostile-frontend check passed (bad rings and xenstore garbage refused, hostile requests answered with errors, valid I/O read back, runaway ring disconnected); backend idle afterwards; device detached by the toolstack; blkfront loaded for the other disks${steady:+; meanwhile device $steady_devid kept serving a well-behaved frontend}"
}
check_ext4() {
  dev=$1; file=$2; want=$3
  wait_dev "$dev" || return 1
  x mkfs.ext4 -q -F "$dev" || { echo "mkfs.ext4 failed"; return 1; }
  mkdir -p /mnt/t
  x mount -t ext4 "$dev" /mnt/t || { echo "mount failed"; return 1; }
  x cp "$file" /mnt/t/pattern.bin || return 1
  mkdir -p /mnt/t/dir
  n=0
  while [ $n -lt 16 ]; do echo "sluice file $n" > /mnt/t/dir/file-$n.txt || return 1; n=$((n+1)); done
  x dd if="$file" of=/mnt/t/dir/big.bin bs=4096 count=128 2>/dev/null || return 1
  x sync
  (cd /mnt/t && find . -type f | sort | xargs sha256sum) > /tmp/sums || return 1
  files=$(wc -l < /tmp/sums)
  bytes=$(cat $(cd /mnt/t && find . -type f | sed 's|^\.|/mnt/t|') | wc -c)
  x umount /mnt/t || { echo "umount failed"; return 1; }
  x e2fsck -fn "$dev" > /tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; echo "e2fsck found problems"; return 1; }
  echo 3 > /proc/sys/vm/drop_caches
  x mount -t ext4 "$dev" /mnt/t || { echo "remount failed"; return 1; }
  (cd /mnt/t && sha256sum -c /tmp/sums > /tmp/check.log 2>&1) || { cat /tmp/check.log; echo "checksums differ after remount"; return 1; }
  got=$(sha /mnt/t/pattern.bin) || return 1
  [ "$got" = "$want" ] || { echo "pattern.bin: $got, expected $want"; return 1; }
  # fstrim: 16 MiB of random data reach the disk, the file is deleted, fstrim discards
  # the free space; the host then finds the image holding no more data than the file
  # system uses (run.rs, host_ext4).
  x dd if=/dev/urandom of=/mnt/t/trim.bin bs=65536 count=256 2>/dev/null || return 1
  x sync
  rm /mnt/t/trim.bin && x sync || return 1
  out=$(fstrim -v /mnt/t 2>&1) || { echo "fstrim failed: $out"; return 1; }
  trimmed=$(echo "$out" | sed -n 's/.*[ (]\([0-9][0-9]*\) bytes.*/\1/p')
  [ "${trimmed:-0}" -ge 16777216 ] || { echo "fstrim trimmed ${trimmed:-?} bytes, want >= 16 MiB: $out"; return 1; }
  x umount /mnt/t || return 1
  echo "@@SUMMARY $id: mkfs.ext4, $files files ($bytes bytes) written and synced, e2fsck clean, remounted, $files/$files sha256 match; 16 MiB file deleted, fstrim trimmed $trimmed bytes"
}
"#;
