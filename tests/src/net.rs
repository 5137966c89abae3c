//! Guests' vifs in the test bed: the guest's end of a vif driven by a module of ours
//! ([`crate::NetFrontend::Module`], e.g. `sluice-netfront.ko`) and its reload check
//! ([`crate::Workload::NetReloadFrontend`]). The transfers themselves are
//! [`crate::Workload::Net`]'s `check_net` (in `images.rs`), the same for either
//! frontend and either backend.

use crate::scenario::GuestStep;

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
