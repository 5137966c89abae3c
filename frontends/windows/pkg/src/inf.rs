//! A validator of driver INF files, for what Sluice's INFs use (the rules of
//! Microsoft's INF reference that InfVerif checks first). [`validate`] returns every
//! problem found, so one run names them all.
//!
//! Rules: sections parse and are unique; `[Version]` has `Signature = "$WINDOWS NT$"`,
//! a `Class` with its own `ClassGuid`, `Provider`, the expected `CatalogFile`, a valid
//! `DriverVer` (`MM/DD/YYYY,a.b.c.d`) and `PnpLockdown = 1`; `[Manufacturer]` names
//! NTamd64-decorated models sections that exist; the models list exactly the expected
//! hardware IDs; each install section (`.NTamd64`, `.NT` or bare) exists, its `CopyFiles`
//! sections exist and every file they copy is in `[SourceDisksFiles]` on a disk of
//! `[SourceDisksNames]`, with a `[DestinationDirs]` entry; its `.Services` section adds a
//! service with `SPSVCINST_ASSOCSERVICE` whose section says a kernel driver
//! (`ServiceType = 1`) with valid start and error-control values and a `ServiceBinary`
//! that is a copied file under dirid 12 or 13; every `%token%` is defined in
//! `[Strings]`; the package's files are exactly those of `[SourceDisksFiles]`. A
//! `SCSIAdapter` (Storport miniport) service is in `LoadOrderGroup = SCSI miniport` and
//! its `AddReg` sets `Parameters\PnpInterface` to a REG_DWORD 1 (what Storport reads to
//! bind the miniport on that interface type). A boot-start service ([`Expect::boot_group`])
//! has `StartType = 0` and its `LoadOrderGroup`. A `Net` package: `inf_net`.

use std::collections::{BTreeMap, BTreeSet};

/// Setup classes Sluice's drivers use, with their GUIDs (devguid.h).
pub const CLASSES: &[(&str, &str)] = &[
    ("System", "{4d36e97d-e325-11ce-bfc1-08002be10318}"),
    ("SCSIAdapter", "{4d36e97b-e325-11ce-bfc1-08002be10318}"),
    ("Net", "{4d36e972-e325-11ce-bfc1-08002be10318}"),
];

/// What the INF must say.
#[derive(Debug)]
pub struct Expect<'a> {
    /// `CatalogFile`.
    pub catalog: &'a str,
    /// The setup class.
    pub class: &'a str,
    /// Hardware IDs of the models sections, exactly.
    pub hardware_ids: &'a [&'a str],
    /// Files of the package besides the INF and the catalog.
    pub files: &'a [&'a str],
    /// The service the INF installs.
    pub service: &'a str,
    /// Boot start in this load order group (`StartType = 0`, `LoadOrderGroup`).
    pub boot_group: Option<&'a str>,
}

/// An INF: sections in order, each a list of (key, value) lines; a line without `=`
/// has an empty key.
#[derive(Debug, Default)]
pub struct Inf {
    sections: BTreeMap<String, Vec<(String, String)>>,
}

impl Inf {
    /// Parses an INF; the errors are syntax problems.
    pub fn parse(text: &str) -> Result<Inf, Vec<String>> {
        let mut inf = Inf::default();
        let mut errors = Vec::new();
        let mut current: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    errors.push(format!("line {}: unterminated section header", n + 1));
                    continue;
                };
                let key = name.trim().to_ascii_lowercase();
                if inf.sections.contains_key(&key) {
                    errors.push(format!("line {}: section [{}] appears twice", n + 1, name));
                }
                inf.sections.entry(key.clone()).or_default();
                current = Some(key);
                continue;
            }
            let Some(sec) = &current else {
                errors.push(format!("line {}: text before the first section", n + 1));
                continue;
            };
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => (String::new(), line.to_string()),
            };
            inf.sections.get_mut(sec).unwrap().push((k, v));
        }
        if errors.is_empty() {
            Ok(inf)
        } else {
            Err(errors)
        }
    }

    /// A section's lines (names are case-insensitive).
    pub fn section(&self, name: &str) -> Option<&[(String, String)]> {
        self.sections
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
    }

    /// The first value of `key` in `section` (keys are case-insensitive).
    pub fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section)?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Drops a `;` comment that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

pub(crate) fn fields(v: &str) -> Vec<String> {
    v.split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .collect()
}

fn valid_driver_ver(v: &str) -> bool {
    let f = fields(v);
    let [date, ver] = f.as_slice() else {
        return false;
    };
    let d: Vec<&str> = date.split('/').collect();
    let date_ok = d.len() == 3
        && d[0].len() == 2
        && d[1].len() == 2
        && d[2].len() == 4
        && matches!(d[0].parse::<u32>(), Ok(1..=12))
        && matches!(d[1].parse::<u32>(), Ok(1..=31))
        && matches!(d[2].parse::<u32>(), Ok(1990..=2099));
    let parts: Vec<&str> = ver.split('.').collect();
    let ver_ok = parts.len() == 4 && parts.iter().all(|p| p.parse::<u16>().is_ok());
    date_ok && ver_ok
}

fn valid_hardware_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id.contains('\\')
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ',' && c != '"' && c != ';')
}

/// Checks `text` against the rules in the module documentation.
pub fn validate(text: &str, want: &Expect<'_>) -> Vec<String> {
    let inf = match Inf::parse(text) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut p = Vec::new();
    let v = |k: &str| {
        inf.value("Version", k)
            .map(|s| s.trim_matches('"').to_string())
    };
    if inf.section("Version").is_none() {
        p.push("no [Version] section".to_string());
    }
    if v("Signature").as_deref() != Some("$WINDOWS NT$") {
        p.push("[Version] Signature is not \"$WINDOWS NT$\"".into());
    }
    match (v("Class"), v("ClassGuid")) {
        (Some(c), Some(g)) => {
            if c != want.class {
                p.push(format!("Class is {c}, expected {}", want.class));
            }
            match CLASSES.iter().find(|(n, _)| n.eq_ignore_ascii_case(&c)) {
                Some((_, guid)) if guid.eq_ignore_ascii_case(&g) => {}
                Some((_, guid)) => p.push(format!("ClassGuid {g} is not {c}'s ({guid})")),
                None => p.push(format!("unknown Class {c}")),
            }
        }
        _ => p.push("[Version] needs Class and ClassGuid".into()),
    }
    if v("Provider").is_none() {
        p.push("[Version] has no Provider".into());
    }
    match v("CatalogFile") {
        Some(c) if c.eq_ignore_ascii_case(want.catalog) => {}
        Some(c) => p.push(format!("CatalogFile is {c}, expected {}", want.catalog)),
        None => p.push("[Version] has no CatalogFile".into()),
    }
    match v("DriverVer") {
        Some(d) if valid_driver_ver(&d) => {}
        Some(d) => p.push(format!("DriverVer {d:?} is not MM/DD/YYYY,a.b.c.d")),
        None => p.push("[Version] has no DriverVer".into()),
    }
    if v("PnpLockdown").as_deref() != Some("1") {
        p.push("[Version] PnpLockdown is not 1".into());
    }

    // Source files and disks.
    let disks: BTreeSet<String> = inf
        .section("SourceDisksNames")
        .unwrap_or_default()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    let mut source_files = BTreeSet::new();
    for (k, val) in inf.section("SourceDisksFiles").unwrap_or_default() {
        let disk = fields(val).first().cloned().unwrap_or_default();
        if !disks.contains(&disk) {
            p.push(format!(
                "[SourceDisksFiles] {k}: disk {disk:?} is not in [SourceDisksNames]"
            ));
        }
        source_files.insert(k.to_ascii_lowercase());
    }
    let package: BTreeSet<String> = want.files.iter().map(|f| f.to_ascii_lowercase()).collect();
    if source_files != package {
        p.push(format!(
            "[SourceDisksFiles] lists {source_files:?}, the package has {package:?}"
        ));
    }

    // Models and install sections.
    let mut hwids = BTreeSet::new();
    let mut installs = BTreeSet::new();
    let manufacturer = inf.section("Manufacturer").unwrap_or_default();
    if manufacturer.is_empty() {
        p.push("no [Manufacturer] entries".into());
    }
    for (_, val) in manufacturer {
        let f = fields(val);
        let base = &f[0];
        let decorations = &f[1..];
        if !decorations
            .iter()
            .any(|d| d.to_ascii_lowercase().starts_with("ntamd64"))
        {
            p.push(format!("models {base} have no NTamd64 decoration"));
        }
        for d in decorations {
            let name = format!("{base}.{d}");
            let Some(models) = inf.section(&name) else {
                p.push(format!("models section [{name}] is missing"));
                continue;
            };
            for (desc, line) in models {
                let f = fields(line);
                if f.len() < 2 || desc.is_empty() {
                    p.push(format!("[{name}]: {line:?} is not desc = install, hwid"));
                    continue;
                }
                installs.insert(f[0].clone());
                for id in &f[1..] {
                    if !valid_hardware_id(id) {
                        p.push(format!("[{name}]: bad hardware ID {id:?}"));
                    }
                    hwids.insert(id.to_ascii_uppercase());
                }
            }
        }
    }
    let want_ids: BTreeSet<String> = want
        .hardware_ids
        .iter()
        .map(|h| h.to_ascii_uppercase())
        .collect();
    if hwids != want_ids {
        p.push(format!("hardware IDs {hwids:?}, expected {want_ids:?}"));
    }
    let dest = inf.section("DestinationDirs").unwrap_or_default();
    let has_default_dest = dest
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("DefaultDestDir"));
    let mut copied = BTreeSet::new();
    let mut services = BTreeSet::new();
    for install in &installs {
        let Some(sec) = [
            format!("{install}.NTamd64"),
            format!("{install}.NT"),
            install.clone(),
        ]
        .into_iter()
        .find(|s| inf.section(s).is_some()) else {
            p.push(format!("install section [{install}] is missing"));
            continue;
        };
        if want.class.eq_ignore_ascii_case("Net") {
            crate::inf_net::install(&inf, &sec, want.service, &mut p);
        }
        for (k, val) in inf.section(&sec).unwrap() {
            if !k.eq_ignore_ascii_case("CopyFiles") {
                continue;
            }
            for list in fields(val) {
                if let Some(file) = list.strip_prefix('@') {
                    copied.insert(file.to_ascii_lowercase());
                    continue;
                }
                match inf.section(&list) {
                    Some(files) => {
                        for (_, f) in files {
                            copied.insert(fields(f)[0].to_ascii_lowercase());
                        }
                    }
                    None => p.push(format!("CopyFiles section [{list}] is missing")),
                }
                if !has_default_dest && !dest.iter().any(|(k, _)| k.eq_ignore_ascii_case(&list)) {
                    p.push(format!("no [DestinationDirs] entry for {list}"));
                }
            }
        }
        let svc_sec = format!("{sec}.Services");
        let Some(svcs) = inf.section(&svc_sec) else {
            p.push(format!("[{svc_sec}] is missing"));
            continue;
        };
        for (k, val) in svcs {
            if !k.eq_ignore_ascii_case("AddService") {
                continue;
            }
            let f = fields(val);
            if f.len() < 3 {
                p.push(format!(
                    "[{svc_sec}] AddService {val:?} needs name, flags, section"
                ));
                continue;
            }
            services.insert(f[0].to_ascii_lowercase());
            let flags = u32::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap_or(0);
            if flags & 0x2 == 0 {
                p.push(format!(
                    "AddService {} lacks SPSVCINST_ASSOCSERVICE (0x2)",
                    f[0]
                ));
            }
            let s = &f[2];
            if inf.section(s).is_none() {
                p.push(format!("service section [{s}] is missing"));
                continue;
            }
            let sv = |key: &str| inf.value(s, key).map(|x| x.trim().to_string());
            if sv("ServiceType").as_deref() != Some("1") {
                p.push(format!("[{s}] ServiceType is not 1 (kernel driver)"));
            }
            if !matches!(
                sv("StartType").as_deref(),
                Some("0" | "1" | "2" | "3" | "4")
            ) {
                p.push(format!("[{s}] StartType is not 0..4"));
            }
            if !matches!(sv("ErrorControl").as_deref(), Some("0" | "1" | "2" | "3")) {
                p.push(format!("[{s}] ErrorControl is not 0..3"));
            }
            match sv("ServiceBinary") {
                Some(b) => {
                    let lower = b.to_ascii_lowercase();
                    let file = lower
                        .strip_prefix("%13%\\")
                        .or_else(|| lower.strip_prefix("%12%\\"));
                    if want.class.eq_ignore_ascii_case("Net") {
                        crate::inf_net::service_binary(&b, s, &mut p);
                    }
                    match file {
                        Some(f) if copied.contains(f) => {}
                        _ => p.push(format!(
                            "[{s}] ServiceBinary {b} is not a copied file under %12% or %13%"
                        )),
                    }
                }
                None => p.push(format!("[{s}] has no ServiceBinary")),
            }
            if want.class.eq_ignore_ascii_case("SCSIAdapter") {
                storport_service(&inf, s, &mut p);
            }
            if let Some(g) = want.boot_group {
                if sv("StartType").as_deref() != Some("0") {
                    p.push(format!("[{s}] StartType is not 0 (boot start)"));
                }
                if !sv("LoadOrderGroup").is_some_and(|x| x.eq_ignore_ascii_case(g)) {
                    p.push(format!("[{s}] LoadOrderGroup is not \"{g}\" (boot start)"));
                }
            }
        }
    }
    for f in &copied {
        if !source_files.contains(f) {
            p.push(format!("{f} is copied but not in [SourceDisksFiles]"));
        }
    }
    if !services.contains(&want.service.to_ascii_lowercase()) {
        p.push(format!("no AddService for {}", want.service));
    }

    // Every %token% is defined.
    let strings: BTreeSet<String> = inf
        .section("Strings")
        .unwrap_or_default()
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    for lines in inf.sections.values() {
        for (k, val) in lines {
            for part in [k, val] {
                let mut it = part.split('%');
                it.next();
                while let (Some(tok), Some(_)) = (it.next(), it.clone().next()) {
                    let t = tok.to_ascii_lowercase();
                    if !t.is_empty()
                        && !t.chars().all(|c| c.is_ascii_digit())
                        && !strings.contains(&t)
                    {
                        p.push(format!("%{tok}% is not defined in [Strings]"));
                    }
                    it.next();
                }
            }
        }
    }
    p
}

/// A Storport miniport's service section: its load order group and the
/// `Parameters\PnpInterface` value of its `AddReg`.
fn storport_service(inf: &Inf, s: &str, p: &mut Vec<String>) {
    let group = inf.value(s, "LoadOrderGroup").map(str::trim);
    if !group.is_some_and(|g| g.eq_ignore_ascii_case("SCSI miniport")) {
        p.push(format!("[{s}] LoadOrderGroup is not \"SCSI miniport\""));
    }
    let mut pnp_interface = false;
    for (k, v) in inf.section(s).unwrap_or_default() {
        if !k.eq_ignore_ascii_case("AddReg") {
            continue;
        }
        for sec in fields(v) {
            let Some(lines) = inf.section(&sec) else {
                p.push(format!("AddReg section [{sec}] is missing"));
                continue;
            };
            for (_, line) in lines {
                let f = fields(line);
                // HKR, "Parameters\PnpInterface", "<type>", 0x00010001 (REG_DWORD), 1
                if f.len() == 5
                    && f[0].eq_ignore_ascii_case("HKR")
                    && f[1].eq_ignore_ascii_case("Parameters\\PnpInterface")
                    && f[2].parse::<u32>().is_ok()
                    && parse_num(&f[3]) == Some(0x0001_0001)
                    && parse_num(&f[4]) == Some(1)
                {
                    pnp_interface = true;
                }
            }
        }
    }
    if !pnp_interface {
        p.push(format!(
            "[{s}] AddReg sets no Parameters\\PnpInterface REG_DWORD 1 (Storport)"
        ));
    }
}

pub(crate) fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../xenbus/xenbus.inx");

    fn good() -> String {
        GOOD.replace("$DRIVERVER$", "12/06/2026,0.1.0.0")
    }

    fn want() -> Expect<'static> {
        Expect {
            catalog: "xenbus.cat",
            class: "System",
            hardware_ids: &[
                "PCI\\VEN_5853&DEV_0001",
                "PCI\\VEN_5853&DEV_0002",
                "PCI\\VEN_5853&DEV_C000",
            ],
            files: &["xenbus.sys"],
            service: "xenbus",
            boot_group: Some("Boot Bus Extender"),
        }
    }

    #[test]
    fn xenbus_inf_is_valid() {
        assert_eq!(validate(&good(), &want()), Vec::<String>::new());
    }

    /// Each broken rule is reported (negative controls of every check).
    #[test]
    fn each_broken_rule_is_reported() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "Signature   = \"$WINDOWS NT$\"",
                "Signature = \"$CHICAGO$\"",
                "Signature",
            ),
            (
                "{4d36e97d-e325-11ce-bfc1-08002be10318}",
                "{4d36e97b-e325-11ce-bfc1-08002be10318}",
                "ClassGuid",
            ),
            (
                "CatalogFile = xenbus.cat",
                "CatalogFile = other.cat",
                "CatalogFile",
            ),
            ("12/06/2026,0.1.0.0", "2026-12-06,0.1.0.0", "DriverVer"),
            ("12/06/2026,0.1.0.0", "12/06/2026,0.1.70000.0", "DriverVer"),
            ("PnpLockdown = 1", "PnpLockdown = 0", "PnpLockdown"),
            (
                "PCI\\VEN_5853&DEV_C000",
                "PCI\\VEN_5853&DEV_C001",
                "hardware IDs",
            ),
            ("NTamd64.10.0...16299\n", "NTx86\n", "NTamd64"),
            ("[XenBus_Install.NT]", "[XenBus_Inst.NT]", "install section"),
            (
                "CopyFiles = XenBus_CopyFiles",
                "CopyFiles = Nowhere",
                "CopyFiles section",
            ),
            ("xenbus.sys = 1,,", "xenbus.sys = 2,,", "disk"),
            (
                "0x00000002, XenBus_Service",
                "0x00000000, XenBus_Service",
                "ASSOCSERVICE",
            ),
            ("ServiceType    = 1", "ServiceType    = 16", "ServiceType"),
            ("StartType      = 0", "StartType      = 9", "StartType"),
            ("StartType      = 0", "StartType      = 3", "boot start"),
            (
                "LoadOrderGroup = Boot Bus Extender",
                "LoadOrderGroup = System Bus Extender",
                "boot start",
            ),
            ("LoadOrderGroup = Boot Bus Extender\n", "", "LoadOrderGroup"),
            ("ErrorControl   = 1", "ErrorControl   = x", "ErrorControl"),
            ("%13%\\xenbus.sys", "%11%\\xenbus.sys", "ServiceBinary"),
            ("XenBus.SvcDesc         =", "XenBus.Svc =", "not defined"),
            ("DefaultDestDir = 13", "", "DestinationDirs"),
            ("[Strings]", "[Version]", "twice"),
        ];
        for (from, to, needle) in cases {
            assert!(good().contains(from), "case {from:?} does not apply");
            let bad = good().replacen(from, to, 1);
            let problems = validate(&bad, &want());
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{from:?} -> {to:?}: expected a problem with {needle:?}, got {problems:?}"
            );
        }
    }

    const XENVBD: &str = include_str!("../../xenvbd/xenvbd.inx");

    fn xenvbd() -> String {
        XENVBD.replace("$DRIVERVER$", "12/07/2026,0.1.0.0")
    }

    fn want_xenvbd() -> Expect<'static> {
        Expect {
            catalog: "xenvbd.cat",
            class: "SCSIAdapter",
            hardware_ids: &["SLUICEXEN\\VBD"],
            files: &["xenvbd.sys"],
            service: "xenvbd",
            boot_group: Some("SCSI miniport"),
        }
    }

    #[test]
    fn xenvbd_inf_is_valid_and_storport_rules_bite() {
        assert_eq!(validate(&xenvbd(), &want_xenvbd()), Vec::<String>::new());
        let cases: &[(&str, &str, &str)] = &[
            ("LoadOrderGroup = SCSI miniport\n", "", "LoadOrderGroup"),
            (
                "LoadOrderGroup = SCSI miniport",
                "LoadOrderGroup = Base",
                "LoadOrderGroup",
            ),
            ("AddReg         = XenVbd_Parameters\n", "", "PnpInterface"),
            (
                "AddReg         = XenVbd_Parameters",
                "AddReg = Nowhere",
                "AddReg section",
            ),
            (
                "0x00010001, 0x00000001",
                "0x00000000, 0x00000001",
                "PnpInterface",
            ),
            (
                "0x00010001, 0x00000001",
                "0x00010001, 0x00000000",
                "PnpInterface",
            ),
            ("SLUICEXEN\\VBD\n", "SLUICEXEN\\VIF\n", "hardware IDs"),
            ("Class       = SCSIAdapter", "Class       = System", "Class"),
            ("StartType      = 0", "StartType      = 3", "boot start"),
        ];
        for (from, to, needle) in cases {
            assert!(xenvbd().contains(from), "case {from:?} does not apply");
            let bad = xenvbd().replacen(from, to, 1);
            let problems = validate(&bad, &want_xenvbd());
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{from:?} -> {to:?}: expected a problem with {needle:?}, got {problems:?}"
            );
        }
        // The System-class xenbus INF has no such service rules.
        assert_eq!(validate(&good(), &want()), Vec::<String>::new());
    }

    #[test]
    fn package_files_must_match() {
        let mut w = want();
        w.files = &["xenbus.sys", "extra.dll"];
        assert!(validate(&good(), &w)
            .iter()
            .any(|p| p.contains("SourceDisksFiles")));
    }
}
