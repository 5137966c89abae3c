//! A staging tree for an initramfs, and packing it as a newc cpio archive.
//!
//! Dynamically linked programs are added with every library `ldd` reports (at
//! `/lib/x86_64-linux-gnu/`), the loader at its interpreter path, so the image needs no
//! `ld.so.cache`.

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where libraries go inside the image.
pub const LIB_DIR: &str = "/lib/x86_64-linux-gnu";

pub struct Initramfs {
    staging: PathBuf,
}

impl Initramfs {
    /// Starts an empty tree at `staging` (removed first if present).
    pub fn new(staging: &Path) -> Result<Self> {
        if staging.exists() {
            fs::remove_dir_all(staging)
                .with_context(|| format!("removing {}", staging.display()))?;
        }
        fs::create_dir_all(staging)?;
        let me = Initramfs {
            staging: staging.to_path_buf(),
        };
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "mnt",
            "lib64",
        ] {
            me.dir(d)?;
        }
        me.dir(LIB_DIR)?;
        Ok(me)
    }

    fn host_path(&self, dst: &str) -> PathBuf {
        self.staging.join(dst.trim_start_matches('/'))
    }

    /// Creates a directory (and parents) in the image.
    pub fn dir(&self, dst: &str) -> Result<()> {
        fs::create_dir_all(self.host_path(dst))?;
        Ok(())
    }

    /// Writes `content` at `dst` with permission bits `mode`.
    pub fn bytes(&self, dst: &str, content: &[u8], mode: u32) -> Result<()> {
        let p = self.host_path(dst);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Copies the host file `src` (following symlinks) to `dst`, keeping its mode.
    pub fn file(&self, src: &Path, dst: &str) -> Result<()> {
        let p = self.host_path(dst);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        if p.exists() {
            fs::remove_file(&p)?;
        }
        fs::copy(src, &p).with_context(|| format!("copying {} to {dst}", src.display()))?;
        Ok(())
    }

    /// Copies a whole host directory tree to `dst` (symlinks kept as symlinks).
    pub fn tree(&self, src: &Path, dst: &str) -> Result<()> {
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(self.host_path(dst))
            .status()?;
        if !st.success() {
            bail!("cp -a {} failed", src.display());
        }
        Ok(())
    }

    /// Creates the symlink `dst -> target`.
    pub fn symlink(&self, target: &str, dst: &str) -> Result<()> {
        let p = self.host_path(dst);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        let _ = fs::remove_file(&p);
        symlink(target, &p).with_context(|| format!("symlink {dst} -> {target}"))?;
        Ok(())
    }

    /// Copies an ELF program and every library `ldd` lists for it. `lib_path` is put in
    /// `LD_LIBRARY_PATH` for ldd so that libraries from an unpacked package tree win.
    pub fn elf(&self, src: &Path, dst: &str, lib_path: &[PathBuf]) -> Result<()> {
        self.file(src, dst)?;
        self.libraries_of(src, lib_path)
    }

    /// Adds the libraries (and loader) `ldd` reports for `src`.
    pub fn libraries_of(&self, src: &Path, lib_path: &[PathBuf]) -> Result<()> {
        let lp = lib_path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let o = Command::new("ldd")
            .arg(src)
            .env("LD_LIBRARY_PATH", lp)
            .stderr(Stdio::null())
            .output()
            .context("running ldd")?;
        let text = String::from_utf8_lossy(&o.stdout);
        if text.contains("not a dynamic executable") || !o.status.success() {
            return Ok(()); // static
        }
        for line in text.lines() {
            let line = line.trim();
            if line.contains("=> not found") {
                bail!("{}: ldd: {line}", src.display());
            }
            if let Some((_, rest)) = line.split_once("=> ") {
                let path = rest.split(" (").next().unwrap_or("").trim();
                if path.starts_with('/') {
                    let name = Path::new(path).file_name().unwrap().to_string_lossy();
                    self.file(Path::new(path), &format!("{LIB_DIR}/{name}"))?;
                }
            } else if line.starts_with('/') {
                // The loader, listed by its interpreter path.
                let path = line.split(" (").next().unwrap_or("").trim();
                self.file(Path::new(path), path)?;
            }
        }
        Ok(())
    }

    /// busybox-static at `/bin/busybox` with a link for each applet.
    pub fn busybox(&self) -> Result<()> {
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .context("busybox not found: install busybox-static (cargo xtask setup)")?;
        self.file(bb, "/bin/busybox")?;
        let o = Command::new(bb).arg("--list-full").output()?;
        for applet in String::from_utf8_lossy(&o.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            if !self.host_path(applet).exists() {
                self.symlink("/bin/busybox", applet)?;
            }
        }
        Ok(())
    }

    /// Packs the tree as an uncompressed newc cpio at `out` (the kernel unpacks it
    /// without decompressing, which is faster under TCG). Returns its size in bytes.
    pub fn pack(&self, out: &Path) -> Result<u64> {
        let file = fs::File::create(out)?;
        let find = Command::new("find")
            .arg(".")
            .current_dir(&self.staging)
            .stdout(Stdio::piped())
            .spawn()?;
        let st = Command::new("cpio")
            .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
            .current_dir(&self.staging)
            .stdin(find.stdout.context("find stdout")?)
            .stdout(file)
            .status()
            .context("running cpio")?;
        if !st.success() {
            bail!("cpio failed: {st}");
        }
        Ok(fs::metadata(out)?.len())
    }
}
