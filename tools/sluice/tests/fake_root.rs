//! `sluice doctor` and `sluice status` over fake dom0 roots (host tests; the daemons'
//! behaviour on real Xen is proven by the xen-* suites).

use sluice::{doctor, status, Root};
use sluice_dom0::xenstore::{FakeXenStore, XenStore, XBT_NULL};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn put(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A dom0 with everything Sluice needs.
fn healthy() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    put(d, "proc/101/comm", "xenstored\n");
    put(d, "proc/202/comm", "sluice-blkback\n");
    // Linux cuts comm at 15 bytes.
    put(d, "proc/203/comm", "sluice-consoleb\n");
    put(d, "proc/self/comm", "sluice\n");
    put(d, "dev/xen/gntdev", "");
    put(d, "dev/xen/evtchn", "");
    put(d, "sys/module/xen_gntdev/refcnt", "1\n");
    for s in ["block-userspace", "vif-userspace"] {
        put(d, &format!("etc/xen/scripts/{s}"), "#!/bin/sh\n");
        fs::set_permissions(
            d.join("etc/xen/scripts").join(s),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    fs::create_dir_all(d.join("etc/systemd/system/multi-user.target.wants")).unwrap();
    for u in sluice::UNITS {
        put(d, &format!("lib/systemd/system/{u}"), "[Unit]\n");
        symlink(
            format!("/lib/systemd/system/{u}"),
            d.join("etc/systemd/system/multi-user.target.wants").join(u),
        )
        .unwrap();
    }
    t
}

fn problems(root: &Path) -> Vec<&'static str> {
    doctor::run(&Root::new(root), &[])
        .unwrap()
        .into_iter()
        .filter(|f| !f.ok)
        .inspect(|f| assert!(f.fix.is_some(), "{f:?} has no fix"))
        .map(|f| f.check)
        .collect()
}

#[test]
fn healthy_dom0_has_no_problem() {
    let t = healthy();
    assert_eq!(problems(t.path()), Vec::<&str>::new());
    assert_eq!(
        doctor::run(&Root::new(t.path()), &[]).unwrap().len(),
        doctor::CHECKS.len()
    );
}

#[test]
fn each_breakage_is_found_alone() {
    type Break = fn(&Path);
    let cases: &[(&str, Break)] = &[
        ("xenstored", |d| {
            fs::remove_dir_all(d.join("proc/101")).unwrap()
        }),
        ("gntdev", |d| {
            fs::remove_file(d.join("dev/xen/gntdev")).unwrap()
        }),
        ("evtchn", |d| {
            fs::remove_file(d.join("dev/xen/evtchn")).unwrap()
        }),
        ("kernel-blkback", |d| {
            put(d, "sys/module/xen_blkback/refcnt", "0\n")
        }),
        ("kernel-netback", |d| {
            put(d, "sys/module/xen_netback/refcnt", "0\n");
            put(d, "proc/204/comm", "sluice-netback\n");
        }),
        ("xenconsoled", |d| put(d, "proc/150/comm", "xenconsoled\n")),
        ("hotplug-scripts", |d| {
            fs::set_permissions(
                d.join("etc/xen/scripts/block-userspace"),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap()
        }),
        ("units", |d| {
            fs::remove_file(
                d.join("etc/systemd/system/multi-user.target.wants/sluice-blkback.service"),
            )
            .unwrap()
        }),
    ];
    assert_eq!(cases.len(), doctor::CHECKS.len(), "a case per check");
    for (name, breakit) in cases {
        let t = healthy();
        breakit(t.path());
        assert_eq!(problems(t.path()), vec![*name], "breaking {name}");
    }
}

#[test]
fn kernel_netback_is_a_problem_only_where_sluice_netback_serves_vifs() {
    let t = healthy();
    let d = t.path();
    put(d, "sys/module/xen_netback/refcnt", "0\n");
    // Kernel netback serving vifs, sluice-netback not enabled: a choice, not a problem.
    assert_eq!(problems(d), Vec::<&str>::new());
    let f = doctor::run(&Root::new(d), &[]).unwrap();
    let n = f.iter().find(|f| f.check == "kernel-netback").unwrap();
    assert!(n.detail.contains("xen_netback serves vifs"), "{n:?}");
    // The unit's ExecStartPre names the check: refused, with the fix.
    let f = doctor::run(&Root::new(d), &["kernel-netback".into()]).unwrap();
    assert!(!f[0].ok, "{f:?}");
    let fix = f[0].fix.as_deref().unwrap();
    assert!(fix.contains("rmmod xen_netback"), "{fix}");
    assert!(fix.contains("sluice-blacklist-xen-netback.conf"), "{fix}");
    // sluice-netback enabled (not running yet): a problem in the full run too.
    symlink(
        "/lib/systemd/system/sluice-netback.service",
        d.join("etc/systemd/system/multi-user.target.wants/sluice-netback.service"),
    )
    .unwrap();
    assert_eq!(problems(d), vec!["kernel-netback"]);
    // And without xen_netback, the named check passes.
    fs::remove_dir_all(d.join("sys/module/xen_netback")).unwrap();
    let f = doctor::run(&Root::new(d), &["kernel-netback".into()]).unwrap();
    assert!(f[0].ok, "{f:?}");
}

#[test]
fn oxenstored_counts_and_units_missing_differs_from_disabled() {
    let t = healthy();
    fs::remove_dir_all(t.path().join("proc/101")).unwrap();
    put(t.path(), "proc/7/comm", "oxenstored\n");
    fs::remove_file(
        t.path()
            .join("lib/systemd/system/sluice-consoleback.service"),
    )
    .unwrap();
    let f = doctor::run(&Root::new(t.path()), &[]).unwrap();
    let units = f.iter().find(|f| f.check == "units").unwrap();
    assert!(
        units
            .detail
            .contains("sluice-consoleback.service not installed"),
        "{units:?}"
    );
    assert!(!units.detail.contains("sluice-blkback"), "{units:?}");
    assert!(f.iter().find(|f| f.check == "xenstored").unwrap().ok);
}

#[test]
fn empty_root_fails_every_check_but_the_absent_peers() {
    let t = tempfile::tempdir().unwrap();
    let p = problems(t.path());
    assert_eq!(
        p,
        vec!["xenstored", "gntdev", "evtchn", "hotplug-scripts", "units"]
    );
}

#[test]
fn only_runs_named_checks_and_refuses_unknown() {
    let t = healthy();
    put(t.path(), "sys/module/xen_blkback/refcnt", "0\n");
    let r = Root::new(t.path());
    let f = doctor::run(&r, &["kernel-blkback".into()]).unwrap();
    assert_eq!(f.len(), 1);
    assert!(!f[0].ok && f[0].fix.as_ref().unwrap().contains("rmmod xen_blkback"));
    assert!(doctor::run(&r, &["nope".into()])
        .unwrap_err()
        .contains("unknown check"));
}

#[test]
fn binary_exit_code_and_json() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let t = healthy();
    let run = |args: &[&str]| {
        Command::new(bin)
            .arg("--root")
            .arg(t.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["doctor"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("0 problems\n"));
    put(t.path(), "sys/module/xen_blkback/refcnt", "0\n");
    let out = run(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["kernel-blkback"]);
    // status without xenstore: daemons still reported, the reason given.
    let out = run(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["daemons"][0]["pids"], serde_json::json!([202]));
    assert_eq!(v["daemons"][1]["pids"], serde_json::json!([203]));
    assert!(v["xenstore_error"].as_str().unwrap().contains("xenbus"));
    for verb in ["status", "doctor"] {
        let h = Command::new(bin).args([verb, "--help"]).output().unwrap();
        assert!(h.status.success() && String::from_utf8_lossy(&h.stdout).contains("--json"));
    }
}

#[test]
fn status_reads_backend_nodes() {
    let store = FakeXenStore::new();
    let xs = store.connect();
    let w = |p: &str, v: &str| xs.write(XBT_NULL, p, v.as_bytes()).unwrap();
    let be = "/local/domain/0/backend/vbd/3/51712";
    let fe = "/local/domain/3/device/vbd/51712";
    for (k, v) in [
        ("params", "/srv/g.img"),
        ("mode", "w"),
        ("dev", "xvda"),
        ("state", "4"),
        ("frontend", fe),
        ("feature-persistent", "1"),
        ("feature-discard", "1"),
        ("feature-flush-cache", "1"),
        ("sector-size", "512"),
    ] {
        w(&format!("{be}/{k}"), v);
    }
    for (k, v) in [
        ("feature-persistent", "0"),
        ("ring-page-order", "2"),
        ("protocol", "x86_64-abi"),
    ] {
        w(&format!("{fe}/{k}"), v);
    }
    // A second device whose frontend negotiated persistent grants, listed after dom 3.
    let be2 = "/local/domain/0/backend/vbd/7/51728";
    let fe2 = "/local/domain/7/device/vbd/51728";
    for (k, v) in [
        ("params", "/dev/vg/x"),
        ("mode", "r"),
        ("dev", "xvdb"),
        ("state", "9"),
    ] {
        w(&format!("{be2}/{k}"), v);
    }
    w(&format!("{be2}/frontend"), fe2);
    w(&format!("{be2}/feature-persistent"), "1");
    w(&format!("{fe2}/feature-persistent"), "1");
    // Junk a guest cannot write but a broken toolstack might: skipped, not a panic.
    w("/local/domain/0/backend/vbd/x/y/params", "junk");

    let d = status::devices(&xs, 0);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        (d[0].domid, d[0].devid, d[0].vdev.as_str()),
        (3, 51712, "xvda")
    );
    assert_eq!(d[0].image, "/srv/g.img");
    assert_eq!(d[0].state, "Connected");
    assert_eq!(
        d[0].features,
        [
            "flush-cache",
            "discard",
            "ring-page-order=2",
            "sector-size=512",
            "protocol=x86_64-abi"
        ]
    );
    assert_eq!(d[0].requests, None);
    let mut d = d;
    // sluice-blkback's status file (the format its own test checks it writes).
    status::apply_counts(
        &mut d,
        0,
        "{\"devices\":{\"/local/domain/0/backend/vbd/3/51712\":{\"ok\":10,\"failed\":2}}}\n",
    );
    assert_eq!((d[0].requests, d[0].errors), (Some(12), Some(2)));
    assert_eq!((d[1].requests, d[1].errors), (None, None));
    status::apply_counts(&mut d, 0, "{not json");
    assert_eq!(d[0].requests, Some(12));
    assert_eq!((d[1].domid, d[1].mode.as_str()), (7, "r"));
    assert_eq!(d[1].features, ["persistent-grants"]);
    assert_eq!(d[1].state, "invalid (9)");
    let text = status::Status {
        daemons: vec![],
        devices: d,
        xenstore_error: None,
    }
    .render();
    assert!(
        text.contains("dom 3 xvda   Connected    w /srv/g.img"),
        "{text}"
    );
}

#[test]
fn pci_list_reads_sysfs_under_the_root() {
    use sluice_pciback::fake::qemu;
    use sluice_pciback::Bdf;
    use std::os::unix::fs::symlink;
    let t = tempfile::tempdir().unwrap();
    let devs = t.path().join("sys/bus/pci/devices");
    std::fs::create_dir_all(&devs).unwrap();
    for (name, f, group) in [
        ("0000:00:00.0", qemu::host_bridge(Bdf::new(0, 0, 0)), 0),
        ("0000:00:01.0", qemu::e1000e(Bdf::new(0, 1, 0)), 1),
    ] {
        let dir = t.path().join("sys/devices/pci0000:00").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config"), &f.cfg).unwrap();
        let g = t.path().join(format!("sys/kernel/iommu_groups/{group}"));
        std::fs::create_dir_all(g.join("devices")).unwrap();
        symlink(&dir, g.join("devices").join(name)).unwrap();
        symlink(&g, dir.join("iommu_group")).unwrap();
        symlink(&dir, devs.join(name)).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_sluice");
    let root = t.path().to_str().unwrap();
    let out = std::process::Command::new(bin)
        .args(["--root", root, "pci", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |a: &str| text.lines().find(|l| l.starts_with(a)).unwrap().to_string();
    assert!(line("0000:00:00.0").ends_with("no: host bridge"), "{text}");
    assert!(line("0000:00:01.0").contains("8086:10d3"), "{text}");
    assert!(line("0000:00:01.0").ends_with("yes"), "{text}");
    let out = std::process::Command::new(bin)
        .args(["--root", root, "pci", "list", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().map(|a| a.len()), Some(2), "{v}");
    // No sysfs under the root: an error naming the directory, not a panic.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(["--root", empty.path().to_str().unwrap(), "pci", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sys/bus/pci/devices"));
}
