//! `xen-passthrough` (opt-in): the peer of Sluice's `passthrough-linux` NIC check on
//! the test bed's real Xen 4.17. QEMU gets an IOMMU (`intel-iommu,intremap=on,
//! caching-mode=on` unless `SLUICE_XENPT_IOMMU` names another) and an `e1000e` at
//! 00:07.0 on `-netdev user,restrict=on` with one `hostfwd` port on 127.0.0.1; dom0
//! (Debian's 6.1) hides it with `xen-pciback` (`xl pci-assignable-add`); a PV domU
//! (Debian's kernel, `pci = [ '00:07.0' ]`) loads `xen-pcifront` and `e1000e`, takes a
//! DHCP lease from QEMU, and the host sends it 16 MiB whose sha256 it must report.
//! `SLUICE_XENPT_XEN_ARGS` replaces the IOMMU words on Xen's line (default
//! `iommu=verbose`), `SLUICE_XENPT_XL_OPTS` adds options after the BDF in `pci = [...]`.
//! A failure names the stage and the Xen, libxl and guest lines that show it.

use sluice_testbed::paths::{kernel_cache_dir, logs_dir, run_dir};
use sluice_testbed::pci_passthrough::{
    free_port, guest_initramfs, payload, spawn_sender, PassedNic,
};
use sluice_testbed::{run_boot, Boot, ConsoleBackend, GuestStep};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const BOOT: &str = "xen-passthrough";
const SEND_BYTES: usize = 16 << 20;

fn env_or(k: &str, default: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| default.into())
}

/// Lines of `text` that say what Xen did with its IOMMU and the NIC, libxl's errors,
/// and the guest's markers: what a failure shows.
fn evidence(text: &str) -> String {
    let keep = |l: &str| {
        let xen = l.starts_with("(XEN)")
            && [
                "VT-d",
                "IOMMU",
                "iommu",
                "I/O virt",
                "emapping",
                "DMAR",
                "AMD-Vi",
                "x2APIC",
                "0000:00:07.0",
                "MSI",
            ]
            .iter()
            .any(|k| l.contains(k));
        xen || l.contains("libxl: error")
            || l.contains("@@XENPT")
            || l.contains("@@DOM0-PCI")
            || l.contains("@@DOM0-FAIL")
            || l.contains("pcifront")
            || l.contains("pciback")
    };
    let mut out: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| keep(l))
        .collect();
    out.dedup();
    if out.len() > 120 {
        out.drain(..out.len() - 120);
    }
    out.iter().map(|l| format!("    | {l}\n")).collect()
}

/// The first stage that did not happen, from the serial log.
fn stage(text: &str, want: &str) -> String {
    let has = |s: &str| text.contains(s);
    if has("I/O virtualisation disabled") || !has("I/O virtualisation enabled") {
        "Xen did not enable an IOMMU (no `I/O virtualisation enabled`)".into()
    } else if has("@@DOM0-FAIL") || !has("@@DOM0-PCI-ASSIGNABLE 0000:00:07.0") {
        "dom0 could not make 00:07.0 assignable (xl pci-assignable-add)".into()
    } else if !has("@@XENPT BEGIN") {
        "the PV guest with pci=['00:07.0'] did not start (xl create)".into()
    } else if has("@@XENPT NO-ETH0") {
        "the guest's e1000e did not come up behind xen-pcifront".into()
    } else if !has("@@XENPT DHCP udhcpc: lease of 10.0.2.15") {
        "the guest got no DHCP lease through the passed-through e1000e".into()
    } else if !has(&format!("@@XENPT SHA {want}")) {
        "the guest did not receive the 16 MiB intact".into()
    } else {
        "(every stage passed)".into()
    }
}

#[test]
#[ignore = "boots Xen in QEMU: cargo xtask test --suite xen-passthrough"]
fn e1000e_passed_through_to_a_pv_guest() {
    let dir = run_dir("xen-passthrough-guest");
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = sluice_testbed::kernel::HostKernel::discover().unwrap_or_else(|e| panic!("{e:#}"));
    let vmlinux = kernel
        .vmlinux(&kernel_cache_dir())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let initrd = guest_initramfs(&kernel, &dir).unwrap_or_else(|e| panic!("{e:#}"));
    let data = dir.join("payload.bin");
    let want = payload(&data, SEND_BYTES).unwrap();
    let port = free_port().unwrap();
    let token = format!("{}-{port}", std::process::id());
    let nic = PassedNic {
        iommu: env_or(
            "SLUICE_XENPT_IOMMU",
            "intel-iommu,intremap=on,caching-mode=on",
        ),
        xen_args: env_or("SLUICE_XENPT_XEN_ARGS", "iommu=verbose"),
        xl_options: env_or("SLUICE_XENPT_XL_OPTS", ""),
        host_port: port,
    };
    eprintln!(
        "QEMU -device {}; Xen {}; {}",
        nic.iommu,
        nic.xen_args,
        nic.xl_pci_line()
    );
    // `iommu=soft`: the guest's DMA through Xen's swiotlb (pcifront sets it up late
    // otherwise); `xenpt_token` goes to init's environment.
    // `SLUICE_XENPT_GUEST_ARGS=pci=nomsi`: the driver on INTx instead of MSI-X.
    let guest_args = env_or("SLUICE_XENPT_GUEST_ARGS", "");
    let intx = guest_args.contains("pci=nomsi");
    let cmdline = format!("console=hvc0 iommu=soft loglevel=6 xenpt_token={token} {guest_args}");
    let boot = Boot {
        name: BOOT.into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps: vec![GuestStep::custom_kernel("xenpt", vmlinux, &cmdline)
            .as_pv()
            .with_ramdisk(initrd, 384)
            .with_passed_nic(nic)],
        fio_in_dom0: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let serial = logs_dir(BOOT).join("serial.log");
    let sender = spawn_sender(serial.clone(), token, port, data, stop.clone());
    let result = run_boot(&boot);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender thread");
    if let Some(Ok(took)) = &sent {
        eprintln!(
            "sent {} MiB in {:.1} s",
            SEND_BYTES >> 20,
            took.as_secs_f64()
        );
    }
    let text = std::fs::read_to_string(&serial).unwrap_or_default();
    let stage = stage(&text, &want);
    let evidence = evidence(&text);
    match (&result, &sent) {
        (Ok(report), Some(Ok(took))) => {
            let (_, console) = report
                .consoles
                .iter()
                .find(|(s, _)| s == "xenpt")
                .expect("the guest's console");
            let sha = format!("@@XENPT SHA {want}");
            assert!(console.contains(&sha), "{stage}; want {sha}\n{evidence}");
            // Xen's own IOMMU was on: the device's DMA went through QEMU's VT-d, mapped by
            // Xen for the guest.
            assert!(
                text.contains("(XEN) I/O virtualisation enabled"),
                "Xen's IOMMU was off\n{evidence}"
            );
            let irq = console
                .lines()
                .find(|l| l.contains("@@XENPT IRQ"))
                .unwrap_or("(no IRQ line)");
            // The NIC's interrupts: MSI-X through pcifront, or (pci=nomsi) its INTx pin
            // (GSI 23) as a pirq named `pcifront`.
            let want_irq = if intx {
                "xen-pirq -pcifront eth0"
            } else {
                "xen-pirq -pcifront-msi-x eth0-rx-0"
            };
            assert!(
                irq.contains(want_irq),
                "want {want_irq:?}: {irq}\n{evidence}"
            );
            let remap = if text.contains("(XEN) Interrupt remapping enabled") {
                "interrupt remapping on"
            } else {
                "interrupt remapping off"
            };
            eprintln!("{evidence}");
            eprintln!(
                "PASS xen-passthrough: e1000e passed through by Xen 4.17 to a PV guest: DHCP, \
                 {} MiB from the host in {:.1} s, sha256 {want} matches; Xen's {remap}; {irq}",
                SEND_BYTES >> 20,
                took.as_secs_f64()
            );
        }
        _ => panic!(
            "xen-passthrough: {stage}\nrun: {}\nsend: {}\nevidence (serial log {}):\n{evidence}",
            match &result {
                Ok(_) => "finished".to_string(),
                Err(e) => format!("{e:#}"),
            },
            match &sent {
                Some(Ok(d)) => format!("sent in {:.1} s", d.as_secs_f64()),
                Some(Err(e)) => format!("{e:#}"),
                None => "the guest never listened".into(),
            },
            serial.display()
        ),
    }
}
