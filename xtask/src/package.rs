//! `cargo xtask package`: the Debian packages of a Xen dom0 install, in target/debian/.
//!
//! - `sluice-backends`: cargo-deb from `tools/sluice/Cargo.toml` (files in
//!   `packaging/backends/`): the daemons, their units, the `sluice` command.
//! - `sluice-frontends-modules-<kernel ABI>`: the Linux modules built and signed by
//!   [`crate::linux_modules::build`] for the installed Debian kernel, packed with
//!   `dpkg-deb` under `/lib/modules/<abi>/updates/sluice/`.
//!
//! The `package` suite checks both: `dpkg-deb -c` contents, lintian (errors fail, the
//! warnings we accept are listed with their reason), an unpacked tree (`dpkg-deb -x`)
//! whose units pass `systemd-analyze verify` and whose binaries run.

use crate::util::{cargo, root, run};
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = "0.1.0-1";

/// Lintian tags accepted, each with why.
const LINTIAN_ACCEPTED: &[(&str, &str)] = &[
    (
        "no-manual-page",
        "no man pages yet: `--help` of each binary",
    ),
    (
        "initial-upload-closes-no-bugs",
        "not uploaded to Debian: no ITP bug",
    ),
];

/// The built packages.
pub struct Debs {
    pub backends: PathBuf,
    pub modules: PathBuf,
    pub kernel: String,
}

fn out_dir() -> PathBuf {
    root().join("target/debian")
}

/// Builds both packages.
pub fn build() -> Result<Debs> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "sluice",
        "-p",
        "sluice-blkback",
        "-p",
        "sluice-netback",
        "-p",
        "sluice-consoleback",
    ]))?;
    run(cargo().args(["deb", "-p", "sluice", "--no-build", "--strip"]))?;
    let backends = out_dir().join(format!("sluice-backends_{VERSION}_amd64.deb"));
    ensure!(
        backends.is_file(),
        "cargo-deb wrote no {}",
        backends.display()
    );
    let (kernel, kos) = crate::linux_modules::build()?;
    let modules = modules_deb(&kernel.version, &kos)?;
    eprintln!(
        "package: {}\npackage: {}",
        backends.display(),
        modules.display()
    );
    Ok(Debs {
        backends,
        modules,
        kernel: kernel.version,
    })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::create_dir_all(path.parent().unwrap())?;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn modules_deb(abi: &str, kos: &[PathBuf]) -> Result<PathBuf> {
    let name = format!("sluice-frontends-modules-{abi}");
    let tree = out_dir().join(format!("{name}.tree"));
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    let moddir = tree.join(format!("lib/modules/{abi}/updates/sluice"));
    fs::create_dir_all(&moddir)?;
    for ko in kos {
        let dest = moddir.join(ko.file_name().unwrap());
        fs::copy(ko, &dest)?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
    }
    let doc = tree.join(format!("usr/share/doc/{name}"));
    let cert = root().join("build/linux-modules/keys/signing_key.der");
    let mok = tree.join("usr/share/sluice/mok/sluice-module-signing.der");
    fs::create_dir_all(mok.parent().unwrap())?;
    fs::copy(&cert, &mok).with_context(|| format!("the signing certificate {}", cert.display()))?;
    fs::set_permissions(&mok, fs::Permissions::from_mode(0o644))?;
    write(
        &doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: sluice\n\n\
         Files: *\nCopyright: 2026 The Sluice authors\nLicense: GPL-2\n \
         On Debian systems, the complete text of the GNU General Public License\n \
         version 2 can be found in /usr/share/common-licenses/GPL-2.\n",
        0o644,
    )?;
    write(
        &doc.join("README.Debian"),
        &format!(
            include_str!("../../packaging/modules/README.Debian"),
            abi = abi
        ),
        0o644,
    )?;
    let changelog = format!(
        "{name} ({VERSION}) unstable; urgency=medium\n\n  * Sluice's Linux frontend modules for {abi}.\n\n \
         -- Sluice developers <sluice@example.invalid>  Sun, 06 Dec 2026 06:00:00 +0000\n"
    );
    let cl = doc.join("changelog.Debian");
    write(&cl, &changelog, 0o644)?;
    run(Command::new("gzip").args(["-9nf"]).arg(&cl))?;
    let size_kib = dir_size(&tree)? / 1024 + 1;
    let names: Vec<String> = kos
        .iter()
        .map(|k| k.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    write(
        &tree.join("DEBIAN/control"),
        &format!(
            "Package: {name}\nVersion: {VERSION}\nArchitecture: amd64\nSection: kernel\n\
             Priority: optional\nMaintainer: Sluice developers <sluice@example.invalid>\n\
             Depends: linux-image-{abi}, kmod\nInstalled-Size: {size_kib}\n\
             Description: Sluice's Rust Xen frontend modules for Linux {abi}\n{}",
            description_lines(&format!(
                "Prebuilt, signed out-of-tree modules ({}) for the Debian kernel ABI \
                 {abi}, installed under /lib/modules/{abi}/updates/sluice.",
                names.join(", ")
            ))
        ),
        0o644,
    )?;
    let depmod = format!(
        "#!/bin/sh\nset -e\nif [ -e /boot/System.map-{abi} ]; then\n\tdepmod -a -F /boot/System.map-{abi} {abi} || true\nelse\n\tdepmod -a {abi} || true\nfi\n"
    );
    write(&tree.join("DEBIAN/postinst"), &depmod, 0o755)?;
    write(&tree.join("DEBIAN/postrm"), &depmod, 0o755)?;
    let deb = out_dir().join(format!("{name}_{VERSION}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    Ok(deb)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}

fn output(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().with_context(|| format!("{cmd:?}"))?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

/// The `package` suite: build both packages and check them.
pub fn run_suite() -> Result<()> {
    let debs = build()?;
    check_contents(&debs)?;
    for deb in [&debs.backends, &debs.modules] {
        check_lintian(deb)?;
    }
    check_unpacked(&debs)
}

/// `package-dom0`: both packages installed with apt into a real Debian 12 dom0 under
/// Xen 4.17 in QEMU, used by `xl` and `virsh` guests, purged
/// (`tests/tests/package_dom0.rs`; the dom0 image is cached in `build/debian-dom0/`).
pub fn run_dom0_suite() -> Result<()> {
    build()?;
    run(cargo().args([
        "test",
        "-p",
        "sluice-testbed",
        "--test",
        "package_dom0",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]))
}

fn check_contents(debs: &Debs) -> Result<()> {
    let list = output(Command::new("dpkg-deb").arg("-c").arg(&debs.backends))?;
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/sbin/sluice-blkback"),
        ("-rwxr-xr-x", "./usr/sbin/sluice-netback"),
        ("-rwxr-xr-x", "./usr/sbin/sluice-consoleback"),
        ("-rwxr-xr-x", "./usr/sbin/sluice-console-add"),
        ("-rwxr-xr-x", "./usr/bin/sluice"),
        ("-rwxr-xr-x", "./etc/xen/scripts/block-userspace"),
        ("-rwxr-xr-x", "./etc/xen/scripts/vif-userspace"),
        ("-rw-r--r--", "./etc/sluice/sluice.conf"),
        ("-rw-r--r--", "./etc/logrotate.d/sluice-consoleback"),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/sluice-blkback.service",
        ),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/sluice-netback.service",
        ),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/sluice-consoleback.service",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/sluice-backends/examples/sluice-blacklist-xen-blkback.conf",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/sluice-backends/examples/sluice-blacklist-xen-netback.conf",
        ),
    ] {
        ensure!(
            list.lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "sluice-backends lacks {mode} {path}:\n{list}"
        );
    }
    // The blacklist is opt-in: never active by installing the package.
    ensure!(
        !list.contains("./etc/modprobe.d/"),
        "sluice-backends must not install a modprobe.d file:\n{list}"
    );
    let conffiles = output(
        Command::new("dpkg-deb")
            .args(["-I"])
            .arg(&debs.backends)
            .arg("conffiles"),
    )?;
    for c in [
        "/etc/sluice/sluice.conf",
        "/etc/xen/scripts/block-userspace",
        "/etc/xen/scripts/vif-userspace",
        "/etc/logrotate.d/sluice-consoleback",
    ] {
        ensure!(
            conffiles.lines().any(|l| l == c),
            "{c} not a conffile:\n{conffiles}"
        );
    }
    let list = output(Command::new("dpkg-deb").arg("-c").arg(&debs.modules))?;
    for ko in [
        "sluice-blkfront.ko",
        "sluice-consfront.ko",
        "sluice-hello.ko",
    ] {
        let p = format!("./lib/modules/{}/updates/sluice/{ko}", debs.kernel);
        ensure!(
            list.lines().any(|l| l.ends_with(&p)),
            "modules package lacks {p}:\n{list}"
        );
    }
    let postinst = output(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&debs.modules)
            .arg("postinst"),
    )?;
    ensure!(
        postinst.contains(&format!("depmod -a {}", debs.kernel)),
        "{postinst}"
    );
    eprintln!("package: contents ok");
    Ok(())
}

/// A control file's extended description: `text` wrapped at 72 columns, each line
/// indented by one space (Debian policy 5.6.13; lintian warns past 80).
fn description_lines(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 72 {
            out.push_str(&format!(" {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!(" {line}\n"));
    }
    out
}

fn check_lintian(deb: &Path) -> Result<()> {
    let out = output(
        Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(deb),
    )?;
    let mut bad = Vec::new();
    for l in out.lines() {
        let Some((sev, rest)) = l.split_once(": ") else {
            continue;
        };
        if !matches!(sev, "E" | "W") {
            continue;
        }
        let tag = rest
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("");
        if !LINTIAN_ACCEPTED.iter().any(|(t, _)| *t == tag) {
            bad.push(l.to_string());
        }
    }
    if !bad.is_empty() {
        bail!("lintian {}:\n{}", deb.display(), bad.join("\n"));
    }
    eprintln!("package: lintian {} ok (accepted: {})", deb.display(), {
        let t: Vec<&str> = LINTIAN_ACCEPTED.iter().map(|(t, _)| *t).collect();
        t.join(", ")
    });
    Ok(())
}

fn check_unpacked(debs: &Debs) -> Result<()> {
    let dir = out_dir().join("unpacked");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    for deb in [&debs.backends, &debs.modules] {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&dir))?;
    }
    // Units: systemd's own parser; the only complaints allowed are our binaries being
    // absent from this host's /usr (they are in the unpacked tree, checked below).
    let units: Vec<PathBuf> = ["sluice-blkback", "sluice-consoleback", "sluice-netback"]
        .iter()
        .map(|u| dir.join(format!("usr/lib/systemd/system/{u}.service")))
        .collect();
    if crate::util::have("systemd-analyze") {
        let out = output(Command::new("systemd-analyze").arg("verify").args(&units))?;
        for l in out.lines().filter(|l| !l.trim().is_empty()) {
            let ours = [
                "/usr/bin/sluice ",
                "/usr/sbin/sluice-blkback ",
                "/usr/sbin/sluice-consoleback ",
                "/usr/sbin/sluice-netback ",
            ]
            .iter()
            .any(|b| l.contains(&format!("Command {b}is not executable")));
            ensure!(ours, "systemd-analyze verify: {l}");
        }
    } else {
        eprintln!("package: systemd-analyze not found: units not verified");
    }
    for u in &units {
        let text = fs::read_to_string(u)?;
        ensure!(
            text.contains("EnvironmentFile=-/etc/sluice/sluice.conf"),
            "{}",
            u.display()
        );
        ensure!(text.contains("After=xenstored.service"), "{}", u.display());
        for exec in text
            .lines()
            .filter_map(|l| l.split_once("Exec").map(|(_, r)| r))
        {
            let bin = exec
                .split_once('=')
                .map_or("", |(_, v)| v)
                .trim_start_matches('-');
            let bin = bin.split(' ').next().unwrap_or("");
            if bin.contains("sluice") {
                let m = fs::metadata(dir.join(bin.trim_start_matches('/'))).with_context(|| {
                    format!("{bin} named by {} is not in the package", u.display())
                })?;
                ensure!(m.permissions().mode() & 0o111 != 0, "{bin} not executable");
            }
        }
    }
    let consoleback = fs::read_to_string(&units[1])?;
    ensure!(consoleback.contains("Conflicts=xenconsoled.service"));
    // The packaged `sluice` runs, and its doctor over the unpacked tree finds the
    // hotplug script and the units installed (not enabled: the admin enables them).
    let sluice = dir.join("usr/bin/sluice");
    let out = Command::new(&sluice)
        .args(["--root"])
        .arg(&dir)
        .args(["doctor", "--json"])
        .output()?;
    ensure!(
        out.status.code() == Some(1),
        "doctor over a bare tree must find problems"
    );
    let json = String::from_utf8_lossy(&out.stdout);
    let hotplug_ok = json.contains("\"check\": \"hotplug-scripts\",\n    \"ok\": true");
    ensure!(
        hotplug_ok,
        "doctor does not find the packaged hotplug script:\n{json}"
    );
    ensure!(
        json.contains("sluice-blkback.service not enabled"),
        "doctor does not see the packaged units:\n{json}"
    );
    // The blkback unit's refusal, as systemd would run it, with xen_blkback loaded.
    fs::create_dir_all(dir.join("sys/module/xen_blkback"))?;
    let refuse = Command::new(&sluice)
        .arg("--root")
        .arg(&dir)
        .args(["doctor", "--only", "kernel-blkback"])
        .output()?;
    let text = String::from_utf8_lossy(&refuse.stdout);
    ensure!(
        refuse.status.code() == Some(1) && text.contains("rmmod xen_blkback"),
        "the ExecStartPre check does not refuse: {text}"
    );
    // The netback unit's refusal, with xen_netback loaded.
    fs::create_dir_all(dir.join("sys/module/xen_netback"))?;
    let netback = fs::read_to_string(&units[2])?;
    ensure!(
        netback.contains("ExecStartPre=/usr/bin/sluice doctor --only kernel-netback"),
        "the netback unit does not check for xen_netback"
    );
    let refuse = Command::new(&sluice)
        .arg("--root")
        .arg(&dir)
        .args(["doctor", "--only", "kernel-netback"])
        .output()?;
    let text = String::from_utf8_lossy(&refuse.stdout);
    ensure!(
        refuse.status.code() == Some(1) && text.contains("rmmod xen_netback"),
        "the netback ExecStartPre check does not refuse: {text}"
    );
    // Modules: for this kernel, signed by our key (the certificate shipped for MOK).
    for ko in [
        "sluice-blkfront.ko",
        "sluice-consfront.ko",
        "sluice-hello.ko",
    ] {
        let p = dir.join(format!("lib/modules/{}/updates/sluice/{ko}", debs.kernel));
        let info = output(Command::new("modinfo").arg(&p))?;
        ensure!(
            info.lines()
                .any(|l| l.starts_with("vermagic:") && l.contains(&debs.kernel)),
            "{ko}: vermagic is not {}:\n{info}",
            debs.kernel
        );
        ensure!(
            info.contains("Sluice module signing key"),
            "{ko} unsigned:\n{info}"
        );
    }
    ensure!(dir
        .join("usr/share/sluice/mok/sluice-module-signing.der")
        .is_file());
    eprintln!("package: unpacked tree ok ({})", dir.display());
    Ok(())
}

#[cfg(test)]
mod description_tests {
    use super::description_lines;

    #[test]
    fn extended_description_lines_stay_short_and_keep_every_word() {
        let text = "Prebuilt, signed out-of-tree modules (sluice-hello, sluice-blkfront, \
                    sluice-netfront) for the Debian kernel ABI 6.1.0-57-amd64, installed \
                    under /lib/modules/6.1.0-57-amd64/updates/sluice.";
        let d = description_lines(text);
        assert!(
            d.lines().all(|l| l.starts_with(' ') && l.len() <= 73),
            "{d}"
        );
        let words: Vec<&str> = d.split_whitespace().collect();
        assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    }
}
