#!/bin/sh
# PID 1 of the Debian 12 domU that the `domu` phase of dom0-check.sh boots: the same
# Debian image as dom0 (a copy, nothing of Sluice installed), Debian's kernel and initrd,
# root on xvda through the kernel's xen-blkfront, both disks served by sluice-blkback.
# It installs the modules package as a user would, loads sluice-blkfront beside
# xen-blkfront, moves xvdb from xen-blkfront to it through sysfs, writes p1 at 1 MiB and
# p2 at 3 MiB, reads both back after a cache drop, and gives the disk back.
# Each check prints "@@DOMU-CHECK name PASS|FAIL detail" on hvc0 (sluice-consoleback's
# log in dom0); "@@DOMU-END fails=N" last, then it powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
D=/root/sluice-domu
ABI=$(uname -r)
fails=0
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -o remount,rw /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

check() {
  name=$1
  shift
  if out=$("$@" 2>&1); then
    echo "@@DOMU-CHECK $name PASS"
  else
    echo "@@DOMU-CHECK $name FAIL $(printf '%s' "$out" | tail -n 6 | tr '\n' '|')"
    fails=$((fails + 1))
  fi
}
# wait_for
. "$D/lib.sh"
driver_of() { basename "$(readlink "/sys/bus/xen/devices/$1/driver")"; }
# xvdb_by DRIVER: xvdb is a live disk of DRIVER and /dev/xvdb is its node (not the node
# of the disk the other driver just removed).
xvdb_by() {
  [ "$(driver_of vbd-51728)" = "$1" ] && [ -b /dev/xvdb ] &&
    [ "$(cat /sys/block/xvdb/dev)" = "$(stat -c '%Hr:%Lr' /dev/xvdb)" ]
}
put() { dd if="$D/$1" of=/dev/xvdb bs=64k seek="$2" conv=fsync 2> /dev/null; }
same() {
  echo 3 > /proc/sys/vm/drop_caches
  dd if=/dev/xvdb bs=64k skip="$2" count=16 2> /dev/null | cmp - "$D/$1"
}
rw() { put "$1" "$2" && same "$1" "$2"; }

check apt-install apt-get install -y "$D"/sluice-frontends-modules-"$ABI"_*.deb
check modules-found test "$(modinfo -n sluice-blkfront)" = "/lib/modules/$ABI/updates/sluice/sluice-blkfront.ko"
check modules-signed sh -c "modinfo -F signer sluice-blkfront | grep -q ."
# The root disk is the kernel's xen-blkfront's: ours must load beside it.
check root-on-xen-blkfront test "$(driver_of vbd-51712)" = vbd
check modprobe-beside-xen-blkfront modprobe sluice-blkfront
check unbind-xen-blkfront sh -c 'echo vbd-51728 > /sys/bus/xen/drivers/vbd/unbind'
check bind-sluice-blkfront sh -c 'echo vbd-51728 > /sys/bus/xen/drivers/sluice-vbd/bind'
check xvdb-by-sluice-blkfront wait_for 120 xvdb_by sluice-vbd
check write-read-p1 rw p1.bin 16
check write-read-p2 rw p2.bin 48
check reread-p1 same p1.bin 16
# Back to the kernel's driver, and ours unloads.
check unbind-sluice-blkfront sh -c 'echo vbd-51728 > /sys/bus/xen/drivers/sluice-vbd/unbind'
check rmmod-sluice-blkfront modprobe -r sluice-blkfront
# Back to the kernel's driver: not from inside the guest. xenbus keeps the state of the
# device sluice-blkfront gave up (its in-kernel dev->state) Closed, and xen-blkfront
# answers the backend's InitWait only from Initialising, which xenbus sets only on a
# device it creates (Linux 6.1 blkback_changed). So, as a user would, the toolstack
# gives the guest a new device: dom0 runs `xl block-detach`, this guest drops the old
# xenbus device, dom0 runs `xl block-attach` of the same disk and vdev (its phase
# domu), and xen-blkfront takes the new device by itself (no bind here).
no_driver() { [ ! -e /sys/bus/xen/devices/vbd-51728/driver ]; }
check xvdb-left-without-driver no_driver
echo "@@DOMU-WANT-DETACH"
gone() { [ ! -e /sys/bus/xen/devices/vbd-51728 ]; }
# dom0 attaches only after "yes": an attach before this guest saw the device's node go
# would leave the old device in place (xenbus reads the node when its watch fires).
if wait_for 900 gone; then
  echo "@@DOMU-CHECK xenbus-device-dropped-after-detach PASS"
  echo "@@DOMU-DETACHED yes"
  check xvdb-by-xen-blkfront-on-new-device wait_for 900 xvdb_by vbd
  check reread-p2-by-xen-blkfront same p2.bin 48
else
  echo "@@DOMU-CHECK xenbus-device-dropped-after-detach FAIL vbd-51728 still there"
  fails=$((fails + 1))
  echo "@@DOMU-DETACHED no"
fi
echo "@@DOMU-END fails=$fails"
sync
umount /tmp /run 2> /dev/null
mount -o remount,ro /
poweroff -f
