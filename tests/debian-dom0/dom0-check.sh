#!/bin/bash
# Checks run in the Debian 12 dom0 by tests/tests/package_dom0.rs, one phase per call:
#   bash dom0-check.sh install|boot|pv|pvh|domu|virsh|purge (diag PHASE: after a failure)
# Each check prints "@@CHECK phase/name PASS|FAIL detail"; the exit status is the number
# of failures. The payload disk (debs, this script, the guest's initramfs and patterns)
# is mounted at $P. wait_for bounds a wait (a hang fails the check); no check is timed.
set -u
P=/mnt/payload
phase=$1
fails=0
ABI=$(uname -r)
KERNEL=/boot/vmlinuz-$ABI
DIAG=/root/diag-$phase.log
# wait_for (shared with the domU's checks)
. "$P/lib.sh"

pass() { echo "@@CHECK $phase/$1 PASS ${2:-}"; }
fail() {
  echo "@@CHECK $phase/$1 FAIL ${2:-}"
  fails=$((fails + 1))
}
# check NAME CMD...: CMD's exit status decides; its last lines explain a failure.
check() {
  local name=$1 out rc=0
  shift
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    rc=1
    fail "$name" "$(printf '%s' "$out" | tail -n 8 | tr '\n' '|')"
  fi
  printf '== %s\n%s\n' "$name" "$out" >> "$DIAG"
  return $rc
}
not() { ! "$@"; }
mono() { systemctl show -p "$2" --value "$1"; }
# Unit $2 started after unit $1 was up (monotonic timestamps, both set).
started_after() {
  local a b
  a=$(mono "$1" ActiveEnterTimestampMonotonic)
  b=$(mono "$2" ExecMainStartTimestampMonotonic)
  echo "$1 active at $a us, $2 started at $b us"
  [ "${a:-0}" -gt 0 ] && [ "${b:-0}" -gt "$a" ]
}
kernel_blkback_absent() { not grep -q '^xen_blkback ' /proc/modules; }
status_has() { sluice status | tee -a "$DIAG" | grep -Eq "$1"; }
no_path() {
  local left=""
  for f in "$@"; do [ -e "$f" ] || [ -L "$f" ] && left="$left $f"; done
  [ -z "$left" ] || { echo "left behind:$left"; return 1; }
}
# json_ok CMD... -- EXPR: CMD prints JSON; the Python EXPR over it (as f) must be true.
json_ok() {
  local args=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  "${args[@]}" | python3 -c "import json, sys; f = json.load(sys.stdin); ok = $2; print(json.dumps(f)); sys.exit(0 if ok else 1)"
}
# No failed unit; the failed ones are named when there are some.
no_failed_units() {
  local f
  f=$(systemctl --failed --no-legend --plain)
  [ -z "$f" ] && return 0
  echo "$f"
  systemctl status --no-pager -n 15 $(echo "$f" | awk '{print $1}')
  return 1
}
no_units() {
  local u
  u=$(systemctl list-unit-files --no-legend 'sluice-blkback*' 'sluice-consoleback*')
  echo "$u"
  [ -z "$u" ]
}
console_log() { echo "/var/log/xen/console/guest-$1.log"; }
guest_says() { grep -q "@@GUEST $2" "$(console_log "$1")"; }
# guest_phase DOMID PHASE: waits for the guest's verdict on its console log (written by
# sluice-consoleback) and passes only on PASS.
guest_phase() {
  wait_for 900 grep -Eq "@@GUEST $2 (PASS|FAIL)" "$(console_log "$1")" || {
    echo "no verdict; console log:"
    tail -n 20 "$(console_log "$1")"
    return 1
  }
  guest_says "$1" "$2 PASS"
}
# Types a word into the guest's console through the pty sluice-consoleback serves.
type_word() { echo "$2" > "$(xenstore-read "/local/domain/$1/console/tty")"; }
same_as() { dd if="$1" bs=64k skip="$2" count=16 2> /dev/null | cmp -s - "$P/$3"; }

# busybox_guest NAME TYPE DISK: /root/NAME.cfg, a small guest (busybox initramfs,
# xen-blkfront, guest-init.sh) of xl type TYPE whose disk DISK sluice-blkback serves.
busybox_guest() {
  cat > "/root/$1.cfg" << CFG
name = "$1"
type = "$2"
kernel = "$KERNEL"
ramdisk = "$P/guest.cpio"
extra = "console=hvc0 quiet"
memory = 128
disk = [ "backendtype=phy,script=block-userspace,vdev=xvda,target=$3" ]
CFG
  # QEMU TCG's SVM has no nrip-save: Xen cannot emulate an intercepted RDTSCP
  # of a PVH guest, so the TSC is not intercepted (../shared/docs/testbed.md).
  [ "$2" = pvh ] && echo 'tsc_mode = "native"' >> "/root/$1.cfg"
  return 0
}
# prepare_domu DISK: puts the modules package, the patterns and domu-check.sh (the
# domU's init) into the domU's root file system.
prepare_domu() {
  mkdir -p /mnt/domu && mount "$1" /mnt/domu || return 1
  mkdir -p /mnt/domu/root/sluice-domu &&
    cp "$P"/sluice-frontends-modules-"$ABI"_*.deb "$P"/p1.bin "$P"/p2.bin "$P"/domu-check.sh "$P"/lib.sh \
      /mnt/domu/root/sluice-domu/ &&
    chmod 755 /mnt/domu/root/sluice-domu/domu-check.sh
  local rc=$?
  umount /mnt/domu || return 1
  return $rc
}
# relay_domu_checks LOG: the domU's own "@@DOMU-CHECK name PASS|FAIL detail" lines as
# checks of this phase; none at all is a failure.
relay_domu_checks() {
  local name verdict detail n=0
  while read -r _ name verdict detail; do
    n=$((n + 1))
    if [ "$verdict" = PASS ]; then pass "domu/$name"; else fail "domu/$name" "$detail"; fi
  done < <(grep -ao "@@DOMU-CHECK .*" "$1" | tr -d "\r")
  [ "$n" -gt 0 ] || fail domu-checks "no @@DOMU-CHECK line in $1"
}
vbd_nodes_gone() { not xenstore-read "/local/domain/$1/device/vbd/51728/state"; }
# reattach_xvdb DOMID DISK LOG: `xl block-detach` of the domU's xvdb, then, once the
# domU says its xenbus dropped the device, `xl block-attach` of the same disk and vdev,
# served by sluice-blkback again; the domU's xen-blkfront takes the new device.
reattach_xvdb() {
  check block-detach timeout 300 xl block-detach "$1" xvdb || return
  check frontend-nodes-removed wait_for 120 vbd_nodes_gone "$1"
  check block-list-without-xvdb not sh -c "xl block-list $1 | grep -qw 51728"
  wait_for 1200 grep -aq "@@DOMU-DETACHED" "$3"
  check domu-dropped-device grep -a "@@DOMU-DETACHED yes" "$3" || return
  check block-attach timeout 300 xl block-attach "$1" \
    "backendtype=phy,script=block-userspace,vdev=xvdb,target=$2"
  check xvdb-served-again wait_for 300 status_has "dom $1 xvdb +Connected"
}
# A guest on DISK (a by-id path) through its phases; DOMID names it. With RESTART, dom0
# restarts sluice-blkback between phase 1 and 2. END: how the guest ends, `bye` (it powers
# off) or `virsh-destroy` (libvirt destroys it; the backend lets the disk go).
guest_run() {
  local id=$1 disk=$2 restart=$3 end=${4:-bye} old new
  check phase1 guest_phase "$id" phase1
  check served-by-sluice wait_for 120 status_has "dom $id xvda +Connected +w $disk .*requests [1-9][0-9]* errors 0"
  check status-json-device json_ok sluice status --json -- \
    "any(d['domid'] == $id and d['vdev'] == 'xvda' and d['state'] == 'Connected' and d['image'] == '$disk' and d['requests'] > 0 and d['errors'] == 0 for d in f['devices'])"
  check kernel-blkback-absent kernel_blkback_absent
  if [ "$restart" = restart ]; then
    old=$(systemctl show -p MainPID --value sluice-blkback)
    check restart-blkback systemctl restart sluice-blkback
    new=$(systemctl show -p MainPID --value sluice-blkback)
    check new-daemon test "$new" != 0 -a "$new" != "$old"
  fi
  type_word "$id" go
  check phase2 guest_phase "$id" phase2
  if [ "$restart" = restart ]; then
    # The new daemon answered phase 2's requests.
    check served-after-restart wait_for 120 status_has "dom $id xvda +Connected .*requests [1-9][0-9]* errors 0"
  fi
  if [ "$end" = virsh-destroy ]; then
    check virsh-destroy timeout 300 virsh -c xen:///system destroy virsh1
    check virsh-list-without not sh -c "virsh -c xen:///system list --all --name | grep -qx virsh1"
  else
    type_word "$id" bye
  fi
  check guest-gone wait_for 300 not xl list "$id"
  check backend-released wait_for 120 not status_has "dom $id xvda"
  check image-p1 same_as "$disk" 16 p1.bin
  check image-p2 same_as "$disk" 48 p2.bin
}

# libvirtd's libxl driver answers (virsh capabilities), or the reason it failed to
# initialize, from libvirtd's journal. Bounded: 40 tries.
libxl_driver_up() {
  local n=0 why
  while [ $n -lt 40 ]; do
    why=$(journalctl -b -u libvirtd --no-pager -o cat)
    if echo "$why" | grep -q 'state driver failed'; then
      echo "$why" | grep -E 'internal error|state driver failed' | sort -u
      return 1
    fi
    timeout 30 virsh -c xen:///system capabilities > /dev/null 2>&1 && return 0
    n=$((n + 1))
    sleep 5
  done
  return 1
}
# virsh create, a second try when the first failed (libxl kills the stock `block` hotplug
# script after 40 s, which a loaded TCG dom0 can overrun): each try's outcome is printed.
virsh_create() {
  local i
  for i in 1 2; do
    if timeout 420 virsh -c xen:///system create /root/virsh1.xml; then
      echo "virsh create: try $i passed" | tee /dev/tty
      return 0
    fi
    echo "virsh create: try $i failed" | tee /dev/tty
    grep -a -E 'timeout|unable to add' /var/log/libvirt/libxl/libxl-driver.log | tail -n 3
    timeout 120 virsh -c xen:///system destroy virsh1 > /dev/null 2>&1
  done
  return 1
}
# The host CPU model libvirt named (from Xen's hw_caps), and those hw_caps.
host_cpu_model() {
  xl info | grep -E '^hw_caps'
  timeout 120 virsh -c xen:///system capabilities | grep -m 1 -o '<model>.*</model>'
}
# What libvirt, libxl, the hotplug scripts and the backend got to when `virsh create`
# failed or hung (printed into the serial log).
virsh_diag() {
  # What libvirt's libxl driver decodes the host CPU from (libxlCapsNodeData: Xen's
  # physinfo hw_cap words, CPUID 1 EDX/ECX, 80000001 EDX/ECX, D:1 EAX, 7:0 EBX/ECX,
  # 80000007 EDX), and the CPU dom0 sees.
  echo "== xl info"; xl info | grep -E '^(hw_caps|virt_caps|xen_version)'
  echo "== cpuinfo"; grep -m 2 -E '^(flags|model name)' /proc/cpuinfo
  echo "== ps"; ps -eo pid,ppid,stat,wchan:20,etime,args --forest | grep -v '\[' | tail -n 60
  echo "== xl list"; xl list
  echo "== xenstore backend"; xenstore-ls -f /local/domain/0/backend 2> /dev/null | head -n 60
  echo "== xenstore guest"; xenstore-ls -f /local/domain 2> /dev/null | grep -v '^/local/domain/0/' | head -n 60
  local f
  for f in /var/log/libvirt/libxl/libxl-driver.log /var/log/libvirt/libxl/virsh1.log \
    /var/log/xen/xen-hotplug.log; do
    echo "== $f"; tail -n 80 "$f"
  done
  echo "== journal"
  journalctl -b --no-pager -n 80 -u libvirtd -u sluice-blkback -u sluice-consoleback
} 2>&1

case $phase in
install)
  check apt-install apt install -y "$P"/sluice-backends_*.deb
  check apt-install-modules apt install -y "$P"/sluice-frontends-modules-"$ABI"_*.deb
  check installed dpkg-query -W -f '${Status}' sluice-backends
  check not-enabled-by-install test "$(systemctl is-enabled sluice-blkback)" = disabled
  check not-started-by-install not systemctl is-active sluice-blkback
  check hotplug-script test -x /etc/xen/scripts/block-userspace
  check modules-found test "$(modinfo -n sluice-blkfront)" = "/lib/modules/$ABI/updates/sluice/sluice-blkfront.ko"
  check modules-signed sh -c "modinfo -F signer sluice-blkfront | grep -q ."
  check modprobe-hello modprobe sluice-hello
  check rmmod-hello modprobe -r sluice-hello
  # What README.install tells a user: keep xen_blkback out, enable both units.
  cp /usr/share/doc/sluice-backends/examples/sluice-blacklist-xen-blkback.conf /etc/modprobe.d/
  check enable systemctl enable sluice-blkback sluice-consoleback
  ;;
boot)
  check system-running systemctl is-system-running --wait
  check no-failed-units no_failed_units
  check blkback-active systemctl is-active sluice-blkback
  check consoleback-active systemctl is-active sluice-consoleback
  # Debian 12 starts xenstored from /etc/init.d/xen (xen.service).
  check blkback-after-xenstored started_after xen.service sluice-blkback.service
  check consoleback-after-xenstored started_after xen.service sluice-consoleback.service
  check xenstored-running pgrep -x oxenstored\|xenstored
  check xenconsoled-stopped not pgrep -x xenconsoled
  check kernel-blkback-absent kernel_blkback_absent
  check doctor sluice doctor
  check doctor-json json_ok sluice doctor --json -- 'f and all(x["ok"] for x in f)'
  check status-daemons status_has "sluice-blkback +running \(pid [0-9]+\)"
  check status-consoleback status_has "sluice-consoleback +running \(pid [0-9]+\)"
  check status-json json_ok sluice status --json -- \
    'all(d["pids"] for d in f["daemons"]) and len(f["daemons"]) == 2'
  ;;
pv)
  disk=/dev/disk/by-id/virtio-guest-pv
  busybox_guest pv1 pv "$disk"
  if check xl-create timeout 900 xl create /root/pv1.cfg; then
    guest_run "$(xl domid pv1)" "$disk" restart
  fi
  ;;
pvh)
  # The same guest as PVH (xen-blkfront and hvc_xen over the HVM console ring).
  disk=/dev/disk/by-id/virtio-guest-pvh
  busybox_guest pvh1 pvh "$disk"
  if check xl-create timeout 900 xl create /root/pvh1.cfg; then
    guest_run "$(xl domid pvh1)" "$disk" no-restart
  fi
  ;;
domu)
  # A Debian 12 domU (a copy of this image: nothing of Sluice in it) booted from a disk
  # sluice-blkback serves; it installs the modules package itself (domu-check.sh).
  root=/dev/disk/by-id/virtio-domu-root
  data=/dev/disk/by-id/virtio-domu-data
  check domu-prepare prepare_domu "$root"
  cat > /root/domu.cfg << CFG
name = "domu"
type = "pv"
kernel = "$KERNEL"
ramdisk = "/boot/initrd.img-$ABI"
extra = "root=/dev/xvda rw init=/root/sluice-domu/domu-check.sh console=hvc0 quiet"
memory = 512
disk = [ "backendtype=phy,script=block-userspace,vdev=xvda,target=$root",
         "backendtype=phy,script=block-userspace,vdev=xvdb,target=$data" ]
CFG
  if check xl-create timeout 900 xl create /root/domu.cfg; then
    id=$(xl domid domu)
    if check domu-served-by-sluice wait_for 300 status_has "dom $id xvda +Connected"; then
      log=$(console_log "$id")
      # The domU gives xvdb up; the toolstack gives it a new xenbus device
      # (domu-check.sh says why the guest cannot rebind xen-blkfront itself).
      if check domu-wants-detach wait_for 1500 grep -aq "@@DOMU-WANT-DETACH" "$log"; then
        reattach_xvdb "$id" "$data" "$log"
      fi
      check domu-ended wait_for 1500 grep -aq "@@DOMU-END" "$log"
      relay_domu_checks "$(console_log "$id")"
      check domu-gone wait_for 300 not xl list "$id"
      check domu-data-p1 same_as "$data" 16 p1.bin
      check domu-data-p2 same_as "$data" 48 p2.bin
    else
      # What the domU and the backend got to (the serial log keeps it), then no long wait.
      echo "== domU console"; tail -n 60 "$(console_log "$id")"
      echo "== xl list"; xl list
      echo "== backend"; xenstore-ls -f "/local/domain/0/backend/vbd/$id" | head -n 40
      echo "== sluice status"; sluice status
      xl destroy "$id"
    fi
  fi
  ;;
virsh)
  # Boot 3, on the Intel CPU: libvirt's libxl driver names the host CPU from Xen's
  # hw_caps and does not start without a model (package_dom0.rs, Cpu::Intel). Without
  # VMX Xen runs PV guests only: a PV guest (<os><type>linux</type>, direct kernel boot),
  # its disk <driver name='phy'/> (libxl's backendtype phy: a vbd backend, which
  # sluice-blkback serves; libxl's default `block` hotplug script).
  disk=/dev/disk/by-id/virtio-guest-virsh
  cat > /root/virsh1.xml << XML
<domain type='xen'>
  <name>virsh1</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>linux</type><kernel>$KERNEL</kernel><initrd>$P/guest.cpio</initrd>
    <cmdline>console=hvc0 quiet</cmdline></os>
  <devices>
    <disk type='block' device='disk'>
      <driver name='phy'/><source dev='$disk'/><target dev='xvda' bus='xen'/>
    </disk>
    <console type='pty'><target type='xen' port='0'/></console>
  </devices>
</domain>
XML
  # libvirtd logs at its default level: at debug level (1:libxl into the journal) its
  # own logging kept a loaded TCG dom0 so busy that the stock `block` hotplug script
  # overran libxl's 40 s hotplug timeout (2026-12-07). libxl's errors still go to
  # /var/log/libvirt/libxl/libxl-driver.log.
  check libvirtd-start systemctl start libvirtd
  # libvirtd exits when its libxl driver fails to initialize and systemd starts it
  # anew on the next connection: a client then waits for ever (7 min on 2026-12-06).
  if check libxl-driver libxl_driver_up && check host-cpu-model host_cpu_model &&
    check virsh-create virsh_create; then
    guest_run "$(xl domid virsh1)" "$disk" no-restart virsh-destroy
  else
    virsh_diag
    # A libvirtd that cannot start its driver is started anew on every connection.
    systemctl stop libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd
    timeout 120 virsh -c xen:///system destroy virsh1 > /dev/null 2>&1
    timeout 120 xl destroy virsh1 > /dev/null 2>&1
  fi
  ;;
purge)
  xs_before=$(pgrep -x 'oxenstored|xenstored')
  check apt-purge apt purge -y sluice-backends sluice-frontends-modules-"$ABI"
  check not-installed not dpkg-query -W -f '${Status}' sluice-backends sluice-frontends-modules-"$ABI"
  check no-daemons not pgrep -x 'sluice-blkback|sluice-consoleback'
  check no-files no_path /usr/sbin/sluice-blkback /usr/sbin/sluice-consoleback /usr/bin/sluice \
    /etc/sluice /etc/xen/scripts/block-userspace /etc/logrotate.d/sluice-consoleback \
    /lib/systemd/system/sluice-blkback.service /lib/systemd/system/sluice-consoleback.service \
    /usr/lib/systemd/system/sluice-blkback.service /usr/lib/systemd/system/sluice-consoleback.service \
    /etc/systemd/system/multi-user.target.wants/sluice-blkback.service \
    /etc/systemd/system/multi-user.target.wants/sluice-consoleback.service \
    /var/lib/systemd/deb-systemd-helper-enabled/sluice-blkback.service.dsh-also \
    /usr/share/doc/sluice-backends /lib/modules/"$ABI"/updates/sluice /usr/share/sluice /run/sluice
  # (not 'sluice*': the image's own sluice-testbed-shell.service matches that)
  check no-units no_units
  check no-module not modinfo sluice-blkfront
  # Back to Debian's own console daemon by the package's postrm (no `systemctl restart
  # xen` by hand), xenstored untouched.
  check xenconsoled-back pgrep -x xenconsoled
  check xenstored-kept test "$(pgrep -x 'oxenstored|xenstored')" = "$xs_before"
  ;;
diag)
  # After a failed phase ($2): its checks' output, failed units, the daemons' journal.
  tail -n 80 "/root/diag-$2.log"
  systemctl --failed --no-pager --plain
  journalctl -b --no-pager -n 60 -u sluice-blkback -u sluice-consoleback -u xen -u libvirtd
  exit 0
  ;;
*)
  echo "unknown phase $phase"
  exit 99
  ;;
esac
exit $fails
