//! `cargo xtask setup`: install what the project needs, only where it is missing.

use crate::util::{have, run as run_cmd};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Debian packages the tests and the demo use. Each entry says why it is here.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "linux-headers-amd64",
        "kernel headers + Kbuild for Sluice's Linux modules (frontends/linux)",
    ),
    (
        "libclang-dev",
        "bindgen (kernel bindings of frontends/linux)",
    ),
    ("make", "Kbuild of frontends/linux modules"),
    ("openssl", "module signing key of frontends/linux"),
    ("kmod", "modinfo checks of frontends/linux modules"),
    ("qemu-system-x86", "QEMU TCG: every end-to-end suite"),
    (
        "mmdebstrap",
        "the Debian 12 dom0 image of suite package-dom0 (tests/src/debian_dom0.rs)",
    ),
    (
        "grub-pc-bin",
        "GRUB's BIOS image: the hypervisor's multiboot2 boot (grub-mkrescue)",
    ),
    (
        "grub-common",
        "grub-mkrescue: the hypervisor's multiboot2 ISO",
    ),
    ("xorriso", "grub-mkrescue writes the ISO with it"),
    ("mtools", "grub-mkrescue's EFI image (mformat)"),
    ("libxen-dev", "Xen public headers: the abi layout test"),
    ("gcc", "the abi layout probe is compiled C"),
    ("busybox-static", "initramfs /init for dom0 and domUs"),
    ("cpio", "packing initramfs images"),
    (
        "linux-image-amd64",
        "dom0 and domU kernel + modules of the Xen test bed",
    ),
    (
        "e2fsprogs",
        "mkfs/e2fsck in test-bed guests; host-side e2fsck/debugfs of disk images",
    ),
    (
        "fio",
        "the fio benches (cargo xtask bench fio-*): copied into the test bed's dom0 and guests",
    ),
    (
        "iperf3",
        "the net bench (cargo xtask bench iperf): copied into the test bed's dom0 and guests",
    ),
    (
        "util-linux",
        "flock in the test bed's dom0 (Debian installs it everywhere; listed to be sure)",
    ),
    ("git", "the commit stamped on every benchmark's output"),
    (
        "lintian",
        "checks the Debian packages (cargo xtask package, suite package)",
    ),
    (
        "dpkg-dev",
        "dpkg-deb and its helpers: building the Debian packages",
    ),
    (
        "mingw-w64-x86-64-dev",
        "DDK headers (bindgen) and export lists of the Windows drivers (frontends/windows)",
    ),
    (
        "llvm",
        "llvm-dlltool: import libraries of the Windows drivers from their .def files",
    ),
    (
        "osslsigncode",
        "Authenticode signing and verification of the Windows drivers, catalogs and MSI",
    ),
    ("wixl", "the Windows drivers' MSI (msitools' WiX compiler)"),
    (
        "msitools",
        "msiinfo: the windows suite checks the MSI's tables",
    ),
];

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

pub fn run_apt(pkgs: &[&str]) -> Result<()> {
    if !have("apt-get") {
        bail!(
            "these Debian packages are missing and apt-get is not available: {}",
            pkgs.join(" ")
        );
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut prefix: Vec<&str> = Vec::new();
    if !is_root {
        if !have("sudo") {
            bail!(
                "missing Debian packages ({}) and not root without sudo: run `apt-get install {}` as root",
                pkgs.join(" "),
                pkgs.join(" ")
            );
        }
        prefix.push("sudo");
    }
    let apt = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = prefix.clone();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut c = Command::new(all[0]);
        c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run_cmd(&mut c)
    };
    apt(&["update", "-qq"]).context("apt-get update")?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(pkgs);
    apt(&args).context("apt-get install")
}

pub fn run() -> Result<()> {
    let missing = missing_packages();
    if !missing.is_empty() {
        eprintln!("setup: installing {}", missing.join(" "));
        run_apt(&missing)?;
    }
    // rust-toolchain.toml names the targets and components; rustup installs them on
    // first use, but an older rustup does not, so ask explicitly (a no-op when present).
    if have("rustup") {
        let toolchain = toolchain_channel()?;
        let list = |what: &str| -> Result<String> {
            let out = Command::new("rustup")
                .args([what, "list", "--installed", "--toolchain", &toolchain])
                .output()
                .with_context(|| format!("rustup {what} list"))?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let targets = list("target")?;
        for t in toolchain_list("targets")? {
            if !targets.lines().any(|l| l.trim() == t) {
                run_cmd(Command::new("rustup").args([
                    "target",
                    "add",
                    "--toolchain",
                    &toolchain,
                    &t,
                ]))?;
            }
        }
        // Installed components are listed with their host triple ("rust-src" has none).
        let components = list("component")?;
        for c in toolchain_list("components")? {
            if !components
                .lines()
                .any(|l| l.trim() == c || l.trim().starts_with(&format!("{c}-")))
            {
                run_cmd(Command::new("rustup").args([
                    "component",
                    "add",
                    "--toolchain",
                    &toolchain,
                    &c,
                ]))?;
            }
        }
    } else {
        eprintln!("setup: rustup not found; assuming the toolchain already has x86_64-unknown-none and rust-src");
    }
    // A nightly toolchain with Miri: the abi-ring-miri and abi-fuzz-smoke suites (they
    // say SKIPPED without one). Not pinned: Miri and cargo-fuzz follow nightly.
    if have("rustup") && !have_nightly() {
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "miri,rust-src",
        ]))?;
    }
    // cargo-deb: `cargo xtask package` builds sluice-backends with it.
    if !have("cargo-deb") {
        run_cmd(crate::util::cargo().args(["install", "--locked", "cargo-deb"]))?;
    }
    // cargo-fuzz: the abi-fuzz-smoke suite runs fuzz/ with it.
    if !have("cargo-fuzz") {
        run_cmd(crate::util::cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    Ok(())
}

/// True when rustup has a nightly toolchain.
pub fn have_nightly() -> bool {
    Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("nightly"))
        })
        .unwrap_or(false)
}

/// A string list from rust-toolchain.toml (`targets`, `components`), one line each.
fn toolchain_list(key: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(crate::util::root().join("rust-toolchain.toml"))
        .context("reading rust-toolchain.toml")?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(key)
                .and_then(|r| r.trim().strip_prefix('='))
                .map(str::to_string)
        })
        .map(|v| {
            v.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|x| x.trim().trim_matches('"').to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

/// The `channel` from rust-toolchain.toml.
pub fn toolchain_channel() -> Result<String> {
    let text = std::fs::read_to_string(crate::util::root().join("rust-toolchain.toml"))
        .context("reading rust-toolchain.toml")?;
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("channel")
                .and_then(|r| r.trim().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .context("rust-toolchain.toml has no channel")
}
