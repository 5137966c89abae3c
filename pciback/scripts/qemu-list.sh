#!/bin/bash
# Runs `sluice-pci list` inside a QEMU q35 guest (the host's Debian kernel, busybox
# initramfs) with intel-iommu and QEMU's e1000e, nvme, edu, an ICH9 multi-function
# device and a PCIe-to-PCI bridge with two edus; checks the rows against Linux's
# own IOMMU groups. Usage: pciback/scripts/qemu-list.sh [KERNEL]   (from the repo root)
set -euo pipefail
KERNEL=${1:-$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)}
cargo build -q -p sluice-pciback --features std --bin sluice-pci
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
S=$W/root; mkdir -p $S/{bin,proc,sys,dev}
cp /usr/bin/busybox target/debug/sluice-pci $S/bin/
for l in $(ldd target/debug/sluice-pci | grep -o '/[^ ]*'); do mkdir -p "$S$(dirname "$l")"; cp -L "$l" "$S$l"; done
cat > $S/init <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo SLUICE-PCI-BEGIN
/bin/sluice-pci list
/bin/sluice-pci list --json > /json && echo "json rows: $(/bin/busybox grep -c '"address"' /json)"
echo "sysfs functions: $(/bin/busybox ls /sys/bus/pci/devices | /bin/busybox wc -l)"
echo SLUICE-PCI-END
/bin/busybox poweroff -f
INIT
chmod +x $S/init
(cd $S && find . | cpio -o -H newc 2>/dev/null | gzip) > $W/initrd.gz
truncate -s 16M $W/nvme.img
timeout 600 qemu-system-x86_64 -M q35 -m 512 -smp 1 -nographic -no-reboot \
  -kernel "$KERNEL" -initrd $W/initrd.gz -append "console=ttyS0 intel_iommu=on iommu=pt quiet panic=-1" \
  -device intel-iommu -netdev user,id=n0,restrict=on -device e1000e,netdev=n0 \
  -drive file=$W/nvme.img,if=none,id=nv,format=raw -device nvme,drive=nv,serial=sl1 -device edu \
  -device pcie-root-port,id=rp1,chassis=1 -device pcie-pci-bridge,id=br1,bus=rp1 \
  -device edu,bus=br1,addr=1 -device edu,bus=br1,addr=2 > $W/log 2>&1
OUT=$(tr -d '\r' < $W/log | sed -n '/SLUICE-PCI-BEGIN/,/SLUICE-PCI-END/p')
echo "$OUT"
fail() { echo "qemu-list: FAIL: $1"; exit 1; }
grep -q '^0000:00:00.0 .*no: host bridge' <<<"$OUT" || fail "host bridge"
grep -q '8086:10d3 .* yes$' <<<"$OUT" || fail "e1000e assignable"
grep -q '1b36:0010 .* flr .* yes$' <<<"$OUT" || fail "nvme with FLR"
grep -q '^0000:02:01.0 .*with group: 0000:01:00.0 0000:02:02.0$' <<<"$OUT" || fail "edu behind the bridge"
grep -q '^0000:00:1f.0 .*with group: 0000:00:1f.2 0000:00:1f.3$' <<<"$OUT" || fail "ICH9 multi-function group"
J=$(sed -n 's/^json rows: //p' <<<"$OUT"); N=$(sed -n 's/^sysfs functions: //p' <<<"$OUT")
[ -n "$J" ] && [ "$J" = "$N" ] || fail "json rows $J vs sysfs $N"
echo "qemu-list: PASS ($N functions)"
