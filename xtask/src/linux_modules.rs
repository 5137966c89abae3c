//! Sluice's Linux kernel modules (`frontends/linux/`) for a stock Debian kernel whose
//! build has no Rust support, and the `linux-modules` suite that loads them.
//!
//! Build, per module:
//! 1. discover the installed kernel headers (`/lib/modules/<v>/build` with a `.config`,
//!    matching a `/boot/vmlinuz-<v>`), never a hard-coded version;
//! 2. compile a probe C file with Kbuild and read its `.o.cmd`: the C flags (kept for
//!    clang/bindgen where clang understands them) and the objtool command;
//! 3. `cargo build` the Rust crate for `x86_64-unknown-none` with `-Zbuild-std=core,alloc`
//!    and the kernel's code-generation flags, some read from the headers' `.config`;
//! 4. take the crate's own LTO object out of the staticlib (not compiler_builtins), run
//!    objtool on it with the kernel's module arguments;
//! 5. Kbuild links it next to the module's C shim (`make -C <headers> M=<dir>`); any
//!    compiler, objtool or modpost warning fails the build;
//! 6. sign it with a generated key (`build/linux-modules/keys/`, git-ignored).
//!
//! The suite then boots the stock kernel (`/boot/vmlinuz-<v>`) in QEMU TCG with a busybox
//! initramfs holding the module: insmod, check the log and taint, rmmod, poweroff.

use crate::util::{cargo, root, run};
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod boot_suite;
mod xen_suites;

pub use boot_suite::run_suite;
pub use xen_suites::{run_blkfront_xen, run_blkfront_xen_sluice, run_console_xen};

/// A module: its `.ko` name, its Rust crate (in `frontends/linux/`) and the crate's
/// library name (the staticlib is `lib<lib>.a`).
struct Module {
    name: &'static str,
    krate: &'static str,
    lib: &'static str,
    /// Loads only in a Xen guest: outside Xen its init must refuse with ENODEV (which
    /// still proves every symbol it imports resolves in the stock kernel).
    xen_only: bool,
}

const MODULES: &[Module] = &[
    Module {
        name: "sluice-hello",
        krate: "sluice-hello",
        lib: "sluice_hello",
        xen_only: false,
    },
    Module {
        name: "sluice-blkfront",
        krate: "sluice-blkfront",
        lib: "sluice_blkfront",
        xen_only: true,
    },
    Module {
        name: "sluice-netfront",
        krate: "sluice-netfront",
        lib: "sluice_netfront",
        xen_only: true,
    },
    Module {
        name: "sluice-consfront",
        krate: "sluice-consfront",
        lib: "sluice_consfront",
        xen_only: true,
    },
];

/// Taint bits a module of ours may add: O (out-of-tree, 4096) and E (unsigned or signed
/// with a key the kernel does not trust, 8192).
const ALLOWED_TAINT: u64 = 4096 | 8192;

/// The installed kernel the modules are built for.
pub struct Kernel {
    pub version: String,
    /// `/lib/modules/<v>/build`: Kbuild's entry point (the headers).
    pub build: PathBuf,
    /// `/boot/vmlinuz-<v>`: booted by the suite.
    pub image: PathBuf,
    config: String,
}

impl Kernel {
    fn config_enabled(&self, option: &str) -> bool {
        self.config
            .lines()
            .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
    }
}

/// Finds the newest kernel that has both headers and an image installed.
pub fn discover_kernel() -> Result<Kernel> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/lib/modules").context("reading /lib/modules")? {
        let version = entry?.file_name().to_string_lossy().into_owned();
        let build = Path::new("/lib/modules").join(&version).join("build");
        let image = Path::new("/boot").join(format!("vmlinuz-{version}"));
        if build.join(".config").is_file() && image.is_file() {
            found.push((version, build, image));
        }
    }
    found.sort_by_key(|a| version_key(&a.0));
    let (version, build, image) = found.pop().context(
        "no kernel with both headers (/lib/modules/<v>/build/.config) and /boot/vmlinuz-<v>: \
         install linux-headers-amd64 and linux-image-amd64 (cargo xtask setup)",
    )?;
    let config = fs::read_to_string(build.join(".config"))?;
    Ok(Kernel {
        version,
        build,
        image,
        config,
    })
}

/// Orders "6.1.0-56-amd64" numerically by its digit groups.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn out_dir() -> PathBuf {
    root().join("build/linux-modules")
}

fn linux_dir() -> PathBuf {
    root().join("frontends/linux")
}

/// Kbuild's view of a C file: its compiler flags and the objtool command it ran after.
struct KbuildFlags {
    clang_args: Vec<String>,
    objtool: Vec<String>,
}

/// Runs `make -C <headers> M=<dir> ARGS`, failing on errors and on any warning.
fn kbuild(kernel: &Kernel, dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("make")
        .arg("-C")
        .arg(&kernel.build)
        .arg(format!("M={}", dir.display()))
        .args(args)
        .output()
        .context(
            "cannot run make: run `cargo xtask setup` (installs make and the kernel headers)",
        )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("Kbuild in {} failed:\n{text}", dir.display());
    }
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning") || l.contains("WARNING"))
        .collect();
    if !warnings.is_empty() {
        bail!(
            "Kbuild in {} warned (objtool, modpost or the compiler):\n{}",
            dir.display(),
            warnings.join("\n")
        );
    }
    Ok(text)
}

/// Compiles a probe file with Kbuild and derives clang's flags from its command line.
fn kbuild_flags(kernel: &Kernel) -> Result<KbuildFlags> {
    let dir = out_dir().join("probe");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("probe.c"), "#include <linux/module.h>\n")?;
    fs::write(dir.join("Kbuild"), "obj-m := probe.o\n")?;
    kbuild(kernel, &dir, &["probe.o"])?;
    let cmd =
        fs::read_to_string(dir.join(".probe.o.cmd")).context("Kbuild left no .probe.o.cmd")?;
    let line = cmd
        .lines()
        .find(|l| l.starts_with("cmd_"))
        .context(".probe.o.cmd has no cmd_ line")?;
    let line = line.split_once(":=").map(|x| x.1).unwrap_or(line);
    let (compile, objtool) = line.split_once(';').unwrap_or((line, ""));
    let clang_args = clang_args_from_gcc(compile, &kernel.build);
    ensure!(
        clang_args.iter().any(|a| a == "-D__KERNEL__"),
        "unexpected Kbuild command line: {compile}"
    );
    let objtool: Vec<String> = objtool
        .split_whitespace()
        .filter(|a| !a.ends_with("probe.o"))
        .map(|a| {
            if let Some(rel) = a.strip_prefix("./") {
                kernel.build.join(rel).to_string_lossy().into_owned()
            } else {
                a.to_string()
            }
        })
        .collect();
    ensure!(
        objtool.first().is_some_and(|t| t.ends_with("objtool")),
        "Kbuild ran no objtool after compiling (unexpected for an x86-64 kernel): {line}"
    );
    Ok(KbuildFlags {
        clang_args,
        objtool,
    })
}

/// Keeps the flags that decide what the headers mean (include paths, forced includes,
/// defines, the C standard) and drops code-generation and GCC-only flags, which bindgen
/// does not need. Relative include paths are relative to the headers directory.
fn clang_args_from_gcc(cmd: &str, build: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = cmd.split_whitespace();
    let abs = |p: &str| -> String {
        match p.strip_prefix("./") {
            Some(rel) => build.join(rel).to_string_lossy().into_owned(),
            None if p == "." => build.to_string_lossy().into_owned(),
            None => p.to_string(),
        }
    };
    while let Some(w) = words.next() {
        if w == "-include" || w == "-isystem" {
            if let Some(p) = words.next() {
                out.push(w.to_string());
                out.push(abs(p));
            }
        } else if let Some(p) = w.strip_prefix("-I") {
            out.push(format!("-I{}", abs(p)));
        } else if (w.starts_with("-D")
            && !w.starts_with("-DKBUILD_")
            && !w.starts_with("-D__KBUILD_"))
            || w.starts_with("-U")
            || w.starts_with("-std=")
            || w == "-nostdinc"
            || w == "-fshort-wchar"
        {
            out.push(w.to_string());
        }
    }
    out.extend(
        [
            "-D__BINDGEN__",
            "-DMODULE",
            "-fno-builtin",
            "--target=x86_64-linux-gnu",
            "-Wno-unknown-warning-option",
        ]
        .map(String::from),
    );
    out
}

/// rustc flags for kernel code; the mitigation flags follow the kernel's `.config`.
fn rustflags(kernel: &Kernel) -> Vec<String> {
    let mut f: Vec<String> = [
        "-Crelocation-model=static",
        "-Ccode-model=kernel",
        "-Cno-redzone=yes",
        "-Cforce-unwind-tables=no",
        "-Zplt=yes",
        "-Zfunction-sections=no",
    ]
    .map(String::from)
    .to_vec();
    if kernel.config_enabled("CONFIG_RETPOLINE") {
        f.push("-Zretpoline-external-thunk".into());
    }
    if kernel.config_enabled("CONFIG_RETHUNK") {
        f.push("-Zfunction-return=thunk-extern".into());
    }
    if kernel.config_enabled("CONFIG_X86_KERNEL_IBT") {
        f.push("-Zcf-protection=branch".into());
        f.push("-Cjump-tables=no".into());
    }
    f
}

/// `cargo` for the frontends/linux workspace with the kernel's flags and bindgen args.
fn kernel_cargo(kernel: &Kernel, flags: &KbuildFlags) -> Command {
    let mut c = cargo();
    c.current_dir(linux_dir())
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(kernel).join("\x1f"))
        .env("SLUICE_KERNEL_CLANG_ARGS", flags.clang_args.join("\n"))
        .env_remove("RUSTFLAGS");
    c
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("linux-modules"),
        None => root().join("target/linux-modules"),
    }
}

const BUILD_STD: [&str; 4] = [
    "-Zbuild-std=core,alloc",
    "--target",
    "x86_64-unknown-none",
    "--release",
];

/// Takes the crate's own object out of its staticlib.
fn extract_object(lib: &Path, krate_lib: &str, dest: &Path) -> Result<()> {
    let listing = Command::new("ar").arg("t").arg(lib).output()?;
    ensure!(listing.status.success(), "ar t {} failed", lib.display());
    let members: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|m| m.starts_with(&format!("{krate_lib}-")) && m.ends_with(".o"))
        .map(String::from)
        .collect();
    ensure!(
        members.len() == 1,
        "expected one LTO object of {krate_lib} in {}, found {members:?}",
        lib.display()
    );
    let obj = Command::new("ar")
        .arg("p")
        .arg(lib)
        .arg(&members[0])
        .output()?;
    ensure!(obj.status.success(), "ar p failed");
    fs::write(dest, obj.stdout)?;
    Ok(())
}

/// The signing key: generated once, kept in `build/linux-modules/keys/`.
pub struct SigningKey {
    pub pem: PathBuf,
    pub x509: PathBuf,
    pub der: PathBuf,
}

fn signing_key() -> Result<SigningKey> {
    let dir = out_dir().join("keys");
    fs::create_dir_all(&dir)?;
    let key = SigningKey {
        pem: dir.join("signing_key.pem"),
        x509: dir.join("signing_key.x509"),
        der: dir.join("signing_key.der"),
    };
    if !key.pem.is_file() || !key.der.is_file() {
        let conf = dir.join("x509.genkey");
        fs::write(
            &conf,
            "[ req ]\ndefault_bits = 4096\ndistinguished_name = req_distinguished_name\n\
             prompt = no\nstring_mask = utf8only\nx509_extensions = myexts\n\n\
             [ req_distinguished_name ]\nO = Sluice\nCN = Sluice module signing key\n\n\
             [ myexts ]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\n",
        )?;
        run(Command::new("openssl")
            .args([
                "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "36500", "-batch", "-x509",
            ])
            .arg("-config")
            .arg(&conf)
            .args(["-outform", "PEM", "-out"])
            .arg(&key.pem)
            .arg("-keyout")
            .arg(&key.pem))?;
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&key.pem)
            .arg("-out")
            .arg(&key.der))?;
    }
    // sign-file takes the certificate in DER as its "x509" argument.
    fs::copy(&key.der, &key.x509)?;
    Ok(key)
}

/// Builds every module; returns the signed `.ko` paths and the kernel they are for.
pub fn build() -> Result<(Kernel, Vec<PathBuf>)> {
    let kernel = discover_kernel()?;
    eprintln!(
        "linux-modules: kernel {} (headers {})",
        kernel.version,
        kernel.build.display()
    );
    let flags = kbuild_flags(&kernel)?;
    run(cargo().current_dir(linux_dir()).args(["fmt", "--check"]))?;
    run(kernel_cargo(&kernel, &flags)
        .args(["clippy", "--workspace"])
        .args(BUILD_STD)
        .args(["--", "-D", "warnings"]))?;
    run(kernel_cargo(&kernel, &flags)
        .args(["build", "--workspace"])
        .args(BUILD_STD))?;
    let key = signing_key()?;
    let sign_file = kernel.build.join("scripts/sign-file");
    let mut kos = Vec::new();
    for m in MODULES {
        let dir = out_dir().join(m.name);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        for src in [
            linux_dir().join("kbuild/common"),
            linux_dir().join("kbuild").join(m.name),
        ] {
            for e in fs::read_dir(&src)? {
                let e = e?;
                fs::copy(e.path(), dir.join(e.file_name()))?;
            }
        }
        let obj = dir.join(format!("{}_rust.o_shipped", m.lib));
        let staticlib = target_dir().join(format!("x86_64-unknown-none/release/lib{}.a", m.lib));
        extract_object(&staticlib, m.lib, &obj)?;
        let objtool = Command::new(&flags.objtool[0])
            .args(&flags.objtool[1..])
            .arg(&obj)
            .output()
            .context("cannot run objtool")?;
        let objtool_out = format!(
            "{}{}",
            String::from_utf8_lossy(&objtool.stdout),
            String::from_utf8_lossy(&objtool.stderr)
        );
        ensure!(
            objtool.status.success() && objtool_out.trim().is_empty(),
            "objtool on the Rust object of {} ({}): {objtool_out}",
            m.name,
            m.krate
        );
        // modpost reads every object's `.cmd` file (for srcversion); Kbuild's copy rule
        // for `_shipped` files writes none.
        fs::write(
            dir.join(format!(".{}_rust.o.cmd", m.lib)),
            format!(
                "cmd_{0}/{1}_rust.o := cp {0}/{1}_rust.o_shipped {0}/{1}_rust.o\n",
                dir.display(),
                m.lib
            ),
        )?;
        kbuild(&kernel, &dir, &["modules"])?;
        let ko = dir.join(format!("{}.ko", m.name));
        run(Command::new(&sign_file)
            .arg("sha256")
            .arg(&key.pem)
            .arg(&key.x509)
            .arg(&ko))?;
        let info = Command::new("modinfo").arg(&ko).output()?;
        let info = String::from_utf8_lossy(&info.stdout);
        ensure!(
            info.lines()
                .any(|l| l.starts_with("signer:") && l.contains("Sluice module signing key")),
            "modinfo {} shows no Sluice signer:\n{info}",
            ko.display()
        );
        ensure!(
            info.lines()
                .any(|l| l.starts_with("vermagic:") && l.contains(&kernel.version)),
            "modinfo {} vermagic is not {}:\n{info}",
            ko.display(),
            kernel.version
        );
        eprintln!("linux-modules: {} built and signed", ko.display());
        kos.push(ko);
    }
    Ok((kernel, kos))
}

/// Builds the modules; returns `sluice-blkfront.ko` (`cargo xtask bench fio-frontends`).
pub fn blkfront_ko() -> Result<PathBuf> {
    let (_, kos) = build()?;
    kos.into_iter()
        .find(|k| k.ends_with("sluice-blkfront.ko"))
        .context("sluice-blkfront.ko was not built")
}

/// Builds the modules; returns `sluice-netfront.ko` (`cargo xtask bench iperf`).
pub fn netfront_ko() -> Result<PathBuf> {
    let (_, kos) = build()?;
    kos.into_iter()
        .find(|k| k.ends_with("sluice-netfront.ko"))
        .context("sluice-netfront.ko was not built")
}
