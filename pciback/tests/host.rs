//! `sluice pci list` over a fake sysfs tree (config files from the fake devices) and
//! over this machine's real /sys/bus/pci/devices.
use sluice_pciback::fake::{qemu, FakeFunction};
use sluice_pciback::host::{json, list, table, Verdict};
use sluice_pciback::Bdf;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

fn add(
    root: &Path,
    tree_path: &str,
    f: &FakeFunction,
    group: Option<u32>,
    reset_method: Option<&str>,
    driver: Option<&str>,
) {
    let name = tree_path.rsplit('/').next().unwrap();
    let dir = root.join("tree").join(tree_path);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config"), &f.cfg).unwrap();
    if let Some(g) = group {
        let gdir = root.join("groups").join(g.to_string());
        fs::create_dir_all(gdir.join("devices")).unwrap();
        symlink(&dir, gdir.join("devices").join(name)).unwrap();
        symlink(&gdir, dir.join("iommu_group")).unwrap();
    }
    if let Some(r) = reset_method {
        fs::write(dir.join("reset_method"), r).unwrap();
    }
    if let Some(d) = driver {
        let ddir = root.join("drivers").join(d);
        fs::create_dir_all(&ddir).unwrap();
        symlink(&ddir, dir.join("driver")).unwrap();
    }
    fs::create_dir_all(root.join("devices")).unwrap();
    symlink(&dir, root.join("devices").join(name)).unwrap();
}

#[test]
fn fake_sysfs_rows() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    add(
        r,
        "pci0000:00/0000:00:00.0",
        &qemu::host_bridge(Bdf::new(0, 0, 0)),
        Some(0),
        None,
        None,
    );
    add(
        r,
        "pci0000:00/0000:00:01.0",
        &qemu::e1000e(Bdf::new(0, 1, 0)),
        Some(1),
        None,
        Some("e1000e"),
    );
    add(
        r,
        "pci0000:00/0000:00:02.0",
        &qemu::nvme(Bdf::new(0, 2, 0)),
        Some(2),
        Some("flr bus\n"),
        Some("nvme"),
    );
    add(
        r,
        "pci0000:00/0000:00:04.0",
        &qemu::pcie_pci_bridge(Bdf::new(0, 4, 0), 1),
        Some(3),
        None,
        None,
    );
    add(
        r,
        "pci0000:00/0000:00:04.0/0000:01:01.0",
        &qemu::edu(Bdf::new(1, 1, 0)),
        Some(3),
        None,
        None,
    );
    add(
        r,
        "pci0000:00/0000:00:04.0/0000:01:02.0",
        &qemu::edu(Bdf::new(1, 2, 0)),
        Some(3),
        None,
        None,
    );
    add(
        r,
        "pci0000:00/0000:00:06.0",
        &qemu::cap_loop(Bdf::new(0, 6, 0)),
        Some(4),
        None,
        None,
    );
    add(
        r,
        "pci0000:00/0000:00:07.0",
        &qemu::edu(Bdf::new(0, 7, 0)),
        None,
        None,
        None,
    );
    let rows = list(&r.join("devices")).unwrap();
    let row = |a: &str| rows.iter().find(|x| x.address == a).unwrap();
    assert_eq!(rows.len(), 8);
    let e = row("0000:00:01.0");
    assert_eq!(
        (e.vendor, e.device, e.iommu_group, e.driver.as_deref()),
        (0x8086, 0x10d3, Some(1), Some("e1000e"))
    );
    assert!(e.device_name.contains("82574L"), "{}", e.device_name);
    assert_eq!(
        e.resets,
        vec!["pm"],
        "from config space: PM without No_Soft_Reset"
    );
    assert_eq!(e.verdict, Verdict::Yes);
    assert_eq!(
        row("0000:00:02.0").resets,
        vec!["flr", "bus"],
        "from reset_method"
    );
    assert_eq!(
        row("0000:00:00.0").verdict,
        Verdict::No("host bridge".into())
    );
    assert!(matches!(&row("0000:00:04.0").verdict, Verdict::No(w) if w.contains("bridge")));
    assert_eq!(
        row("0000:01:01.0").verdict,
        Verdict::WithGroup(vec!["0000:00:04.0".into(), "0000:01:02.0".into()])
    );
    assert_eq!(
        row("0000:01:01.0").resets,
        vec!["bus"],
        "edu behind a bridge: bus reset only"
    );
    assert!(matches!(&row("0000:00:06.0").verdict, Verdict::No(w) if w.contains("CapLoop")));
    assert!(matches!(&row("0000:00:07.0").verdict, Verdict::No(w) if w.contains("no IOMMU group")));
    let text = table(&rows);
    assert_eq!(text.lines().count(), 9);
    assert!(text.contains("0000:00:01.0  8086:10d3"));
    let j = json(&rows);
    assert_eq!(j[1]["address"], "0000:00:01.0");
    assert_eq!(j[1]["assignable"], true);
    assert_eq!(j[0]["why_not"], "host bridge");
    assert_eq!(j[6]["address"], "0000:01:01.0");
    assert_eq!(j[6]["assign_with"][0], "0000:00:04.0");
}

#[test]
fn short_config_files_do_not_panic() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("0000:00:09.0");
    fs::create_dir_all(&dir).unwrap();
    let f = qemu::nvme(Bdf::new(0, 9, 0));
    // An unprivileged reader gets 64 bytes: the capability pointer leads past them.
    fs::write(dir.join("config"), &f.cfg[..64]).unwrap();
    let rows = list(t.path()).unwrap();
    assert_eq!(rows[0].vendor, 0x1b36);
    let dir = t.path().join("0000:00:0a.0");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config"), [0x86u8, 0x80, 0x01]).unwrap();
    assert_eq!(list(t.path()).unwrap().len(), 2);
}

#[test]
fn real_sysfs_if_present() {
    let root = Path::new("/sys/bus/pci/devices");
    let Ok(dir) = fs::read_dir(root) else { return };
    let n = dir.count();
    let rows = list(root).unwrap();
    assert_eq!(rows.len(), n);
    for r in &rows {
        let v = fs::read_to_string(root.join(&r.address).join("vendor")).unwrap();
        assert_eq!(
            u16::from_str_radix(v.trim().trim_start_matches("0x"), 16).unwrap(),
            r.vendor
        );
        let g = fs::read_link(root.join(&r.address).join("iommu_group")).ok();
        assert_eq!(g.is_some(), r.iommu_group.is_some());
    }
}
