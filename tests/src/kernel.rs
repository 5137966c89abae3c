//! The host's Debian kernel (`linux-image-amd64`): dom0 and guest kernel, and its
//! modules with dependencies resolved from `modules.dep`.

use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone)]
pub struct HostKernel {
    /// `uname -r` style version, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// `/boot/vmlinuz-VERSION` (bzImage).
    pub vmlinuz: PathBuf,
    /// `/lib/modules/VERSION`.
    pub modules_dir: PathBuf,
}

/// Orders version strings by their numeric runs (6.1.0-56 > 6.1.0-9).
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0))
        .collect()
}

impl HostKernel {
    /// The newest `/boot/vmlinuz-*` that has a modules directory, or the version named
    /// by `SLUICE_KERNEL_VERSION`.
    pub fn discover() -> Result<HostKernel> {
        let mut versions: Vec<String> = fs::read_dir("/boot")
            .context("reading /boot")?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix("vmlinuz-")
                    .map(str::to_string)
            })
            .filter(|v| {
                Path::new("/lib/modules")
                    .join(v)
                    .join("modules.dep")
                    .exists()
            })
            .collect();
        if let Ok(v) = std::env::var("SLUICE_KERNEL_VERSION") {
            versions.retain(|x| *x == v);
        }
        versions.sort_by_key(|v| version_key(v));
        let Some(version) = versions.pop() else {
            bail!("no /boot/vmlinuz-* with /lib/modules/*/modules.dep: install linux-image-amd64 (cargo xtask setup)");
        };
        Ok(HostKernel {
            vmlinuz: PathBuf::from(format!("/boot/vmlinuz-{version}")),
            modules_dir: PathBuf::from(format!("/lib/modules/{version}")),
            version,
        })
    }

    /// The `.ko` files to load, dependencies first, for the named modules (`-` and `_`
    /// are the same, as for modprobe). Built-in modules are skipped.
    pub fn modules_in_load_order(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let dep_text = fs::read_to_string(self.modules_dir.join("modules.dep"))?;
        let builtin_text =
            fs::read_to_string(self.modules_dir.join("modules.builtin")).unwrap_or_default();
        let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for line in dep_text.lines() {
            let Some((m, rest)) = line.split_once(':') else {
                continue;
            };
            deps.insert(
                module_name(m),
                (
                    m.to_string(),
                    rest.split_whitespace().map(str::to_string).collect(),
                ),
            );
        }
        let by_path: HashMap<&str, String> = deps
            .iter()
            .map(|(n, (p, _))| (p.as_str(), n.clone()))
            .collect();
        let builtin: HashSet<String> = builtin_text.lines().map(module_name).collect();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        fn visit(
            name: &str,
            deps: &HashMap<String, (String, Vec<String>)>,
            by_path: &HashMap<&str, String>,
            seen: &mut HashSet<String>,
            out: &mut Vec<String>,
        ) {
            if !seen.insert(name.to_string()) {
                return;
            }
            if let Some((path, ds)) = deps.get(name) {
                // modules.dep lists the full closure; visiting each keeps the order right
                // regardless of how it is listed.
                for d in ds {
                    if let Some(dn) = by_path.get(d.as_str()) {
                        visit(dn, deps, by_path, seen, out);
                    }
                }
                out.push(path.clone());
            }
        }
        for n in names {
            let n = n.replace('-', "_");
            if deps.contains_key(&n) {
                visit(&n, &deps, &by_path, &mut seen, &mut out);
            } else if !builtin.contains(&n) {
                bail!(
                    "module {n} is neither in modules.dep nor built into {}",
                    self.version
                );
            }
        }
        Ok(out.into_iter().map(|p| self.modules_dir.join(p)).collect())
    }

    /// The kernel as an uncompressed ELF `vmlinux`, cached under `cache`. libxl loads a
    /// bzImage too, but then dom0 decompresses it in userspace under TCG (8-10 s/guest).
    pub fn vmlinux(&self, cache: &Path) -> Result<PathBuf> {
        let out = cache.join(format!("vmlinux-{}", self.version));
        if out.exists() {
            return Ok(out);
        }
        fs::create_dir_all(cache)?;
        let image = fs::read(&self.vmlinuz)
            .with_context(|| format!("reading {}", self.vmlinuz.display()))?;
        // The bzImage carries its payload as one compressed stream; find its magic.
        let candidates: [(&[u8], &[&str]); 3] = [
            (b"\xfd7zXZ\x00", &["xz", "-dc", "--single-stream"]),
            (b"\x28\xb5\x2f\xfd", &["zstd", "-dcq"]),
            (b"\x1f\x8b\x08", &["gzip", "-dc"]),
        ];
        for (magic, cmd) in candidates {
            let mut from = 0;
            while let Some(pos) = find(&image[from..], magic).map(|p| p + from) {
                from = pos + 1;
                let mut child = Command::new(cmd[0])
                    .args(&cmd[1..])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", cmd[0]))?;
                let mut stdin = child.stdin.take().expect("piped");
                let data = image[pos..].to_vec();
                let feeder = std::thread::spawn(move || {
                    use std::io::Write;
                    // gzip stops reading at the end of its stream: a broken pipe is fine.
                    let _ = stdin.write_all(&data);
                });
                let o = child.wait_with_output()?;
                let _ = feeder.join();
                if o.stdout.starts_with(b"\x7fELF") {
                    let tmp = out.with_extension("tmp");
                    fs::write(&tmp, &o.stdout)?;
                    fs::rename(&tmp, &out)?;
                    return Ok(out);
                }
            }
        }
        bail!(
            "could not find a compressed ELF payload in {}",
            self.vmlinuz.display()
        )
    }
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_normalise() {
        assert_eq!(
            module_name("kernel/drivers/block/xen-blkfront.ko"),
            "xen_blkfront"
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
    }

    #[test]
    fn versions_order_numerically() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-56-amd64", "5.10.0-1-amd64"];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(v, ["5.10.0-1-amd64", "6.1.0-9-amd64", "6.1.0-56-amd64"]);
    }
}
