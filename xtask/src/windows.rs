//! `cargo xtask windows`: Sluice's Windows drivers built, signed and packaged on Linux,
//! and the `windows` suite that checks the result (no Windows runs here).
//!
//! Build: llvm-dlltool turns `frontends/windows/lib/*.def` into import libraries;
//! cargo builds the driver workspace for `x86_64-pc-windows-msvc` (rust-lld as a
//! kernel-driver link, `frontends/windows/.cargo/config.toml`); each `<driver>.dll`
//! becomes `<driver>.sys`, its `.inx` becomes the `.inf` (DriverVer stamped); a test
//! certificate (generated once, `target/windows-build/keys/`, never shipped) signs every `.sys` with
//! osslsigncode; `sluice_winpkg::cat` writes each package's catalog, which osslsigncode
//! signs; wixl makes one MSI of it all, signed too.

use crate::util::{cargo, root, run, step};
use anyhow::{bail, ensure, Context, Result};
use sluice_winpkg::{cat, inf, pe};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One driver package: its crate, hardware IDs, class and service.
struct Driver {
    name: &'static str,
    class: &'static str,
    hardware_ids: &'static [&'static str],
    /// Boot start in this load order group (checked in the INF).
    boot_group: Option<&'static str>,
}

const DRIVERS: &[Driver] = &[
    Driver {
        name: "xenbus",
        class: "System",
        hardware_ids: &[
            "PCI\\VEN_5853&DEV_0001",
            "PCI\\VEN_5853&DEV_0002",
            "PCI\\VEN_5853&DEV_C000",
        ],
        boot_group: Some("Boot Bus Extender"),
    },
    Driver {
        name: "xenvbd",
        class: "SCSIAdapter",
        hardware_ids: &["SLUICEXEN\\VBD"],
        boot_group: Some("SCSI miniport"),
    },
    Driver {
        name: "xennet",
        class: "Net",
        hardware_ids: &["SLUICEXEN\\VIF"],
        boot_group: None,
    },
];

/// Kernel modules a driver may import from, with the import library that lists what
/// each exports (mingw-w64's; storport has none there, so our own .def is its list).
const KERNEL_MODULES: &[(&str, &str)] = &[
    ("ntoskrnl.exe", "/usr/x86_64-w64-mingw32/lib/libntoskrnl.a"),
    ("hal.dll", "/usr/x86_64-w64-mingw32/lib/libhal.a"),
    ("ndis.sys", "/usr/x86_64-w64-mingw32/lib/libndis.a"),
    ("storport.sys", ""),
];

const MSI: &str = "sluice-windows-drivers.msi";
const CERT: &str = "sluice-test-signing.cer";

fn win_dir() -> PathBuf {
    root().join("frontends/windows")
}

fn out_dir() -> PathBuf {
    root().join("target/windows")
}

/// Build-only files kept out of the deliverables: import libraries, unsigned
/// intermediates, and the test-signing key (private: never shipped).
fn build_dir() -> PathBuf {
    root().join("target/windows-build")
}

fn tool(name: &str) -> Command {
    Command::new(name)
}

/// The commit date as MM/DD/YYYY (a reproducible DriverVer date) and as Unix time.
fn commit_date() -> (String, u64) {
    let out = Command::new("git")
        .args(["log", "-1", "--format=%cd %ct", "--date=format:%m/%d/%Y"])
        .current_dir(root())
        .output();
    if let Ok(o) = out {
        let s = String::from_utf8_lossy(&o.stdout);
        let mut it = s.split_whitespace();
        if let (Some(d), Some(t)) = (it.next(), it.next().and_then(|t| t.parse().ok())) {
            return (d.to_string(), t);
        }
    }
    ("01/01/2026".into(), 1_767_225_600)
}

fn import_libs(lib: &Path) -> Result<()> {
    // Made in a scratch folder, then copied over only where they changed, and stale
    // ones removed: wdm/build.rs links every .lib here and reruns when one changes.
    let scratch = build_dir().join("lib.new");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    fs::create_dir_all(lib)?;
    let mut made = Vec::new();
    for def in fs::read_dir(win_dir().join("lib"))? {
        let def = def?.path();
        if def.extension().is_some_and(|e| e == "def") {
            let name = format!("{}.lib", def.file_stem().unwrap().to_string_lossy());
            run(tool("llvm-dlltool")
                .args(["-m", "i386:x86-64", "-d"])
                .arg(&def)
                .arg("-l")
                .arg(scratch.join(&name)))?;
            let new = fs::read(scratch.join(&name))?;
            if fs::read(lib.join(&name)).ok().as_deref() != Some(&new[..]) {
                fs::write(lib.join(&name), &new)?;
            }
            made.push(name);
        }
    }
    for old in fs::read_dir(lib)? {
        let old = old?;
        if !made.iter().any(|m| *m == old.file_name().to_string_lossy()) {
            fs::remove_file(old.path())?;
        }
    }
    fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// Generates the test-signing key and certificate once (kept across builds).
fn test_cert(keys: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = keys.join("test-signing.key.pem");
    let cert = keys.join("test-signing.cert.pem");
    if !key.exists() || !cert.exists() {
        fs::create_dir_all(keys)?;
        run(tool("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-sha256", "-days", "3650",
            ])
            .args([
                "-subj",
                "/CN=Sluice test driver signing (TEST ONLY)/O=Sluice",
            ])
            .args(["-addext", "extendedKeyUsage=codeSigning"])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
    }
    Ok((key, cert))
}

fn sign(key: &Path, cert: &Path, desc: &str, input: &Path, output: &Path) -> Result<()> {
    let _ = fs::remove_file(output);
    let mut c = tool("osslsigncode");
    c.args(["sign", "-h", "sha256", "-n", desc]);
    // Page hashes for PE images (FORCE_INTEGRITY images are checked page by page).
    if input.extension().is_some_and(|e| e == "sys") {
        c.arg("-ph");
    }
    run(c
        .arg("-certs")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-in")
        .arg(input)
        .arg("-out")
        .arg(output))
}

/// Builds everything into target/windows/; returns that folder.
pub fn build() -> Result<PathBuf> {
    let out = out_dir();
    let work = build_dir().join("work");
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&out)?;
    let lib = build_dir().join("lib");
    step("import libraries (llvm-dlltool)", || import_libs(&lib))?;
    step(
        "driver workspace (x86_64-pc-windows-msvc, rust-lld)",
        || {
            run(cargo()
                .current_dir(win_dir())
                .args(["build", "--release", "--locked"])
                .env("SLUICE_WIN_LIBDIR", &lib)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR"))
        },
    )?;
    let (key, cert) = test_cert(&build_dir().join("keys"))?;
    let (date, time) = commit_date();
    let version = format!("{}.0", env!("CARGO_PKG_VERSION"));
    for d in DRIVERS {
        let built = win_dir().join(format!(
            "target/x86_64-pc-windows-msvc/release/{}.dll",
            d.name
        ));
        let unsigned = work.join(format!("{}.sys", d.name));
        fs::copy(&built, &unsigned).with_context(|| format!("{built:?}"))?;
        let sys = out.join(format!("{}.sys", d.name));
        sign(&key, &cert, &format!("Sluice {}", d.name), &unsigned, &sys)?;
        let inx = fs::read_to_string(win_dir().join(format!("{0}/{0}.inx", d.name)))?;
        let inf_text = inx.replace("$DRIVERVER$", &format!("{date},{version}"));
        let inf_path = out.join(format!("{}.inf", d.name));
        fs::write(&inf_path, &inf_text)?;
        let members = [
            cat::Member::from_file(&format!("{}.inf", d.name), inf_text.as_bytes())?,
            cat::Member::from_file(&format!("{}.sys", d.name), &fs::read(&sys)?)?,
        ];
        let mut id = [0u8; 16];
        id[..d.name.len().min(16)].copy_from_slice(&d.name.as_bytes()[..d.name.len().min(16)]);
        let unsigned_cat = work.join(format!("{}.cat", d.name));
        fs::write(&unsigned_cat, cat::build(&members, "2:10.0", id, time)?)?;
        sign(
            &key,
            &cert,
            &format!("Sluice {}", d.name),
            &unsigned_cat,
            &out.join(format!("{}.cat", d.name)),
        )?;
    }
    // The certificate users import into the test store (DER).
    run(tool("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(out.join(CERT)))?;
    fs::copy(win_dir().join("INSTALL.md"), out.join("README.md"))?;
    step("MSI (wixl)", || msi(&out, &work, &key, &cert))?;
    Ok(out)
}

fn msi(out: &Path, work: &Path, key: &Path, cert: &Path) -> Result<()> {
    let mut files = String::new();
    for d in DRIVERS {
        for ext in ["sys", "inf", "cat"] {
            let name = format!("{}.{ext}", d.name);
            files.push_str(&format!(
                "          <File Id=\"{}_{ext}\" Name=\"{name}\" Source=\"{name}\" />\n",
                d.name
            ));
        }
    }
    let wxs = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="Sluice Xen PV drivers (test-signed)" Language="1033"
           Version="{ver}" Manufacturer="Sluice"
           UpgradeCode="6f1d2c0e-5a54-4f8e-9b1e-53c1d1ce0001">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perMachine"
             Description="Sluice Xen PV drivers: driver packages and the test-signing certificate" />
    <Media Id="1" Cabinet="drivers.cab" EmbedCab="yes" />
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="SluiceDir" Name="Sluice">
          <Directory Id="DriversDir" Name="Drivers">
            <Component Id="DriverPackages" Guid="6f1d2c0e-5a54-4f8e-9b1e-53c1d1ce0002" Win64="yes">
{files}            </Component>
            <Component Id="TestCertificate" Guid="6f1d2c0e-5a54-4f8e-9b1e-53c1d1ce0003" Win64="yes">
              <File Id="test_cert" Name="{cert_name}" Source="{cert}" />
              <File Id="readme" Name="README.md" Source="{readme}" />
            </Component>
          </Directory>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Drivers" Level="1">
      <ComponentRef Id="DriverPackages" />
      <ComponentRef Id="TestCertificate" />
    </Feature>
  </Product>
</Wix>
"#,
        ver = env!("CARGO_PKG_VERSION"),
        cert_name = CERT,
        cert = CERT,
        readme = "README.md",
    );
    let wxs_path = work.join("drivers.wxs");
    fs::write(&wxs_path, wxs)?;
    let unsigned = work.join(MSI);
    let _ = fs::remove_file(&unsigned);
    // wixl takes File sources relative to its working directory.
    run(tool("wixl")
        .current_dir(out)
        .args(["-a", "x64", "-o"])
        .arg(&unsigned)
        .arg(&wxs_path))?;
    sign(
        key,
        cert,
        "Sluice Xen PV drivers",
        &unsigned,
        &out.join(MSI),
    )
}

/// `osslsigncode verify` with the test certificate as the trust anchor; its output.
fn verify(cert: &Path, args: &[&Path], catalog: Option<&Path>) -> Result<String> {
    let mut c = tool("osslsigncode");
    c.arg("verify")
        .arg("-CAfile")
        .arg(cert)
        .args(["-ignore-cdp"]);
    if let Some(cat) = catalog {
        c.arg("-catalog").arg(cat);
    }
    for a in args {
        c.arg("-in").arg(a);
    }
    let o = c.output().context("osslsigncode")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    ensure!(
        o.status.success() && text.contains("Signature verification: ok"),
        "osslsigncode verify {args:?} (catalog {catalog:?}) failed:\n{text}"
    );
    Ok(text)
}

/// The `windows` suite: the driver workspace's fmt and clippy (the host workspace's
/// static checks do not reach it), builds the packages, then checks every file.
pub fn run_suite() -> Result<()> {
    step("driver workspace: fmt --check, clippy -D warnings", || {
        run(cargo()
            .current_dir(win_dir())
            .args(["fmt", "--all", "--", "--check"]))?;
        run(cargo()
            .current_dir(win_dir())
            .args(["clippy", "--release", "--locked", "--", "-D", "warnings"])
            .env("SLUICE_WIN_LIBDIR", build_dir().join("lib"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR"))
    })?;
    let out = build()?;
    // Our .def files name only functions the kernel modules export (mingw-w64's import
    // libraries as the export lists), and the list reader is not vacuous.
    for (module, lib) in KERNEL_MODULES.iter().filter(|(_, l)| !l.is_empty()) {
        let exports = pe::import_library_exports(&fs::read(lib)?)?;
        ensure!(
            !exports.contains("SluiceNoSuchFunction") && exports.len() > 50,
            "{lib}: implausible export list ({} names)",
            exports.len()
        );
        let stem = module.split('.').next().unwrap();
        if win_dir().join(format!("lib/{stem}.def")).exists() {
            for name in def_exports(module)? {
                ensure!(
                    exports.contains(&name),
                    "lib/{stem}.def: {module} does not export {name}"
                );
            }
        }
    }
    let cert = build_dir().join("keys/test-signing.cert.pem");
    let work = build_dir().join("work");
    let mut checked = 0;
    let mut imported: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for d in DRIVERS {
        let sys = out.join(format!("{}.sys", d.name));
        let data = fs::read(&sys)?;
        let img = pe::check_driver(&data).with_context(|| format!("{sys:?}"))?;
        for (dll, names) in &img.imports {
            imported
                .entry(dll.clone())
                .or_default()
                .extend(names.iter().cloned());
            let Some((_, lib)) = KERNEL_MODULES.iter().find(|(m, _)| m == dll) else {
                bail!("{}: imports from {dll}, not a kernel module", d.name);
            };
            let exports = if lib.is_empty() {
                def_exports(dll)?
            } else {
                pe::import_library_exports(&fs::read(lib)?)?
            };
            for n in names {
                ensure!(exports.contains(n), "{}: {dll} does not export {n}", d.name);
            }
        }
        eprintln!(
            "{}.sys: PE32+ AMD64, native, NX/DYNAMIC_BASE/FORCE_INTEGRITY, {} bytes of relocations, checksum {:#x} ok, imports {:?}",
            d.name, img.reloc_size, img.checksum,
            img.imports.iter().map(|(k, v)| (k.as_str(), v.len())).collect::<Vec<_>>()
        );
        verify(&cert, &[&sys], None)?;
        let catf = out.join(format!("{}.cat", d.name));
        verify(&cert, &[&sys], Some(&catf))?;
        let listed = cat::members(&fs::read(&catf)?)?;
        let inf_path = out.join(format!("{}.inf", d.name));
        let inf_text = fs::read_to_string(&inf_path)?;
        for (name, hash) in &listed {
            let want = cat::Member::from_file(name, &fs::read(out.join(name))?)?.hash;
            ensure!(*hash == want, "{}: catalog hash of {name} is stale", d.name);
        }
        let mut names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        let inf_name = format!("{}.inf", d.name);
        let sys_name = format!("{}.sys", d.name);
        ensure!(
            names == [inf_name.as_str(), sys_name.as_str()],
            "catalog lists {names:?}"
        );
        let problems = inf::validate(
            &inf_text,
            &inf::Expect {
                catalog: &format!("{}.cat", d.name),
                class: d.class,
                hardware_ids: d.hardware_ids,
                files: &[&sys_name],
                service: d.name,
                boot_group: d.boot_group,
            },
        );
        ensure!(problems.is_empty(), "{inf_name}: {problems:#?}");
        // Negative controls: a flipped byte in the image must fail the signature, the
        // catalog and the checksum checks.
        let mut bad = data.clone();
        let at = 0x400 + 17;
        bad[at] ^= 0x5a;
        let bad_path = work.join(format!("tampered-{}.sys", d.name));
        fs::write(&bad_path, &bad)?;
        ensure!(
            verify(&cert, &[&bad_path], None).is_err(),
            "tampered image verified"
        );
        ensure!(
            verify(&cert, &[&bad_path], Some(&catf)).is_err(),
            "tampered image found in the catalog"
        );
        ensure!(
            pe::check_driver(&bad).is_err(),
            "tampered image kept a valid checksum"
        );
        checked += 1;
    }
    // Each .def lists only what the drivers call.
    for (module, _) in KERNEL_MODULES {
        let stem = module.split('.').next().unwrap();
        if win_dir().join(format!("lib/{stem}.def")).exists() {
            let def = def_exports(module)?;
            let used = imported.get(*module).cloned().unwrap_or_default();
            let unused: Vec<_> = def.difference(&used).collect();
            ensure!(
                unused.is_empty(),
                "lib/{stem}.def names functions no driver calls: {unused:?}"
            );
        }
    }
    let msi = out.join(MSI);
    verify(&cert, &[&msi], None)?;
    let o = tool("msiinfo")
        .arg("export")
        .arg(&msi)
        .arg("File")
        .output()?;
    let files = String::from_utf8_lossy(&o.stdout);
    let o = tool("msiinfo")
        .arg("export")
        .arg(&msi)
        .arg("Component")
        .output()?;
    let comps = String::from_utf8_lossy(&o.stdout);
    for d in DRIVERS {
        for ext in ["sys", "inf", "cat"] {
            let f = format!("{}.{ext}", d.name);
            ensure!(
                files.lines().any(|l| l
                    .split('\t')
                    .any(|c| c == f || c.ends_with(&format!("|{f}")))),
                "the MSI lacks {f}:\n{files}"
            );
        }
    }
    ensure!(files.contains(CERT), "the MSI lacks the test certificate");
    for c in ["DriverPackages", "TestCertificate"] {
        ensure!(
            comps.lines().any(|l| l.starts_with(c)),
            "the MSI lacks component {c}:\n{comps}"
        );
    }
    println!("windows: {checked} driver package(s) checked: 0 failed");
    Ok(())
}

/// Export names of our own .def for a module ("storport.sys" -> lib/storport.def).
fn def_exports(module: &str) -> Result<std::collections::BTreeSet<String>> {
    let stem = module.split('.').next().unwrap();
    let text = fs::read_to_string(win_dir().join(format!("lib/{stem}.def")))?;
    Ok(text
        .lines()
        .skip_while(|l| !l.trim().eq_ignore_ascii_case("EXPORTS"))
        .skip(1)
        .map(|l| l.split(';').next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}
