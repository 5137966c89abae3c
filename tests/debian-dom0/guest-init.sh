#!/bin/sh
# /init of the domUs that package_dom0.rs creates in the Debian dom0 (busybox, the
# kernel's xen-blkfront). Disk xvda: phase 1 writes p1 at 1 MiB and reads it back; then
# the guest waits for "go" on its console (dom0 restarts sluice-blkback meanwhile) and
# phase 2 writes p2 at 3 MiB and reads both back; then it waits for "bye" and powers off.
# Reads follow a page-cache drop, so they reach the backend.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.list); do insmod "$m"; done
i=0
while [ ! -b /dev/xvda ] && [ $i -lt 300 ]; do sleep 1; i=$((i + 1)); done
put() { dd if="/$1" of=/dev/xvda bs=64k seek="$2" conv=fsync 2>/dev/null; }
same() {
  echo 3 > /proc/sys/vm/drop_caches
  dd if=/dev/xvda bs=64k skip="$2" count=16 2>/dev/null | cmp -s - "/$1"
}
say() { if [ "$2" = 0 ]; then echo "@@GUEST $1 PASS"; else echo "@@GUEST $1 FAIL"; fi; }
wait_word() { while read -r w < /dev/console; do [ "$w" = "$1" ] && return; done; }
put p1.bin 16 && same p1.bin 16
say phase1 $?
wait_word go
put p2.bin 48 && same p1.bin 16 && same p2.bin 48
say phase2 $?
wait_word bye
echo "@@GUEST bye"
poweroff -f
