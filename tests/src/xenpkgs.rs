//! Debian's Xen 4.17 packages, fetched with `apt-get download` and unpacked with
//! `dpkg -x` into `build/xen-pkgs/` (nothing is installed on the host). Idempotent: a
//! stamp file names the unpacked package set, and downloaded `.deb`s are reused.

use crate::paths::xen_pkgs_dir;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The hypervisor, the `xl` toolstack and the libraries it loads.
pub const XEN_PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "libxenmisc4.17",
    "libxenstore4",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
];

/// The unpacked package tree.
#[derive(Debug, Clone)]
pub struct XenTree {
    /// Root of the unpacked tree (`boot/`, `etc/xen`, `usr/...`).
    pub root: PathBuf,
    cache: PathBuf,
}

impl XenTree {
    /// Downloads what is missing and unpacks once; later calls only check the stamp.
    pub fn ensure() -> Result<XenTree> {
        let cache = xen_pkgs_dir();
        let debs = cache.join("debs");
        let root = cache.join("root");
        let stamp = cache.join("unpacked.stamp");
        let want = XEN_PACKAGES.join("\n");
        if fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) && root.is_dir() {
            return Ok(XenTree { root, cache });
        }
        fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        let missing: Vec<&str> = XEN_PACKAGES
            .iter()
            .copied()
            .filter(|p| find_deb(&debs, p).is_none())
            .collect();
        if !missing.is_empty() && apt_download(&debs, &missing).is_err() {
            // Stale package lists are the usual cause; refresh once and retry.
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            apt_download(&debs, &missing)?;
        }
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        fs::create_dir_all(&root)?;
        for p in XEN_PACKAGES {
            let deb = find_deb(&debs, p).with_context(|| format!("{p}: no .deb after download"))?;
            let st = Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&root)
                .status()
                .context("running dpkg -x")?;
            if !st.success() {
                bail!("dpkg -x {} failed: {st}", deb.display());
            }
        }
        fs::write(&stamp, want)?;
        Ok(XenTree { root, cache })
    }

    /// `usr/lib/xen-4.17/bin`: xl, xenstored, xenconsoled, ...
    pub fn tools_dir(&self) -> Result<PathBuf> {
        let lib = self.root.join("usr/lib");
        for e in fs::read_dir(&lib)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("xen-")
                && e.path().join("bin/xl").exists()
            {
                return Ok(e.path().join("bin"));
            }
        }
        bail!("no usr/lib/xen-*/bin/xl in {}", self.root.display())
    }

    /// The tools dir as dom0 sees it (`/usr/lib/xen-4.17/bin`).
    pub fn tools_dir_in_guest(&self) -> Result<String> {
        let t = self.tools_dir()?;
        Ok(format!("/{}", t.strip_prefix(&self.root)?.display()))
    }

    /// `usr/lib/x86_64-linux-gnu` of the tree (the Xen libraries).
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("usr/lib/x86_64-linux-gnu")
    }

    /// The hypervisor as an uncompressed multiboot image QEMU's `-kernel` loads.
    pub fn hypervisor(&self) -> Result<PathBuf> {
        let out = self.cache.join("xen.bin");
        if out.exists() {
            return Ok(out);
        }
        let boot = self.root.join("boot");
        let gz = fs::read_dir(&boot)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy();
                n.starts_with("xen-") && n.ends_with(".gz")
            })
            .with_context(|| format!("no xen-*.gz in {}", boot.display()))?;
        let o = Command::new("gzip").arg("-dc").arg(&gz).output()?;
        if !o.status.success() {
            bail!("gzip -dc {} failed", gz.display());
        }
        let tmp = out.with_extension("tmp");
        fs::write(&tmp, &o.stdout)?;
        fs::rename(&tmp, &out)?;
        Ok(out)
    }
}

fn find_deb(dir: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            (n.starts_with(&prefix) && n.ends_with(".deb")).then(|| e.path())
        })
}

fn apt_download(dir: &Path, pkgs: &[&str]) -> Result<()> {
    let st = Command::new("apt-get")
        .arg("download")
        .arg("-qq")
        .args(pkgs)
        .current_dir(dir)
        .status()
        .context("running apt-get download")?;
    if !st.success() {
        bail!("apt-get download {} failed: {st}", pkgs.join(" "));
    }
    Ok(())
}
