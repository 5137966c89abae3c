//! The INF validator's rules for a `Net` (NDIS miniport) package: the install section
//! says `Characteristics` (exactly one of NCF_VIRTUAL 0x1 / NCF_PHYSICAL 0x4) and
//! `BusType`, and its `AddReg` sets `Ndi\Service` to the service, `Ndi\Interfaces`
//! UpperRange "ndis5" and LowerRange "ethernet", and the standardized keywords
//! (`*IfType` 6, `*MediaType` 0, `*PhysicalMediaType`, `*IfConnectorPresent`,
//! `*ConnectionType`, `*DirectionType`, `*AccessType`, `*HardwareLoopback`) as
//! REG_DWORDs; the service binary is under `%12%` (run from the driver store, `%13%`,
//! needs Windows build 25319 for network drivers).

use crate::inf::{fields, parse_num, Inf};
use std::collections::BTreeMap;

/// The keywords a Net INF must set, with the value required (None: any DWORD).
const KEYWORDS: &[(&str, Option<u32>)] = &[
    ("*IfType", Some(6)),
    ("*MediaType", Some(0)),
    ("*PhysicalMediaType", None),
    ("*IfConnectorPresent", None),
    ("*ConnectionType", None),
    ("*DirectionType", None),
    ("*AccessType", None),
    ("*HardwareLoopback", None),
];

/// Checks install section `sec` of a Net INF for service `service`.
pub(crate) fn install(inf: &Inf, sec: &str, service: &str, p: &mut Vec<String>) {
    match inf.value(sec, "Characteristics").and_then(parse_num) {
        Some(c) if (c & 0x1 != 0) != (c & 0x4 != 0) => {}
        _ => p.push(format!(
            "[{sec}] Characteristics lacks exactly one of NCF_VIRTUAL/NCF_PHYSICAL"
        )),
    }
    if inf.value(sec, "BusType").and_then(parse_num).is_none() {
        p.push(format!("[{sec}] has no BusType"));
    }
    // (key path lowercased, value name) -> data
    let mut reg: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut dwords: BTreeMap<String, u32> = BTreeMap::new();
    for (k, v) in inf.section(sec).unwrap_or_default() {
        if !k.eq_ignore_ascii_case("AddReg") {
            continue;
        }
        for s in fields(v) {
            let Some(lines) = inf.section(&s) else {
                p.push(format!("AddReg section [{s}] is missing"));
                continue;
            };
            for (_, line) in lines {
                let f = fields(line);
                if f.len() != 5 || !f[0].eq_ignore_ascii_case("HKR") {
                    continue;
                }
                reg.insert(
                    (f[1].to_ascii_lowercase(), f[2].to_ascii_lowercase()),
                    f[4].clone(),
                );
                if f[1].is_empty() && parse_num(&f[3]) == Some(0x0001_0001) {
                    if let Some(n) = parse_num(&f[4]) {
                        dwords.insert(f[2].to_ascii_lowercase(), n);
                    }
                }
            }
        }
    }
    let get =
        |key: &str, name: &str| reg.get(&(key.to_ascii_lowercase(), name.to_ascii_lowercase()));
    if !get("Ndi", "Service").is_some_and(|s| s.eq_ignore_ascii_case(service)) {
        p.push(format!("[{sec}] AddReg sets no Ndi\\Service = {service}"));
    }
    if !get("Ndi\\Interfaces", "UpperRange").is_some_and(|s| s.eq_ignore_ascii_case("ndis5")) {
        p.push(format!(
            "[{sec}] AddReg sets no Ndi\\Interfaces UpperRange ndis5"
        ));
    }
    if !get("Ndi\\Interfaces", "LowerRange").is_some_and(|s| {
        s.split(',')
            .any(|r| r.trim().eq_ignore_ascii_case("ethernet"))
    }) {
        p.push(format!(
            "[{sec}] AddReg sets no Ndi\\Interfaces LowerRange ethernet"
        ));
    }
    for (name, want) in KEYWORDS {
        match (dwords.get(&name.to_ascii_lowercase()), want) {
            (None, _) => p.push(format!("[{sec}] AddReg sets no REG_DWORD {name}")),
            (Some(v), Some(w)) if v != w => p.push(format!("[{sec}] {name} is {v}, not {w}")),
            _ => {}
        }
    }
}

/// Checks a Net service's binary location.
pub(crate) fn service_binary(binary: &str, s: &str, p: &mut Vec<String>) {
    if !binary.starts_with("%12%\\") {
        p.push(format!(
            "[{s}] ServiceBinary {binary}: a network driver runs from %12% (DIRID 13 needs build 25319)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::inf::{validate, Expect};

    const XENNET: &str = include_str!("../../xennet/xennet.inx");

    fn xennet() -> String {
        XENNET.replace("$DRIVERVER$", "12/07/2026,0.1.0.0")
    }

    fn want() -> Expect<'static> {
        Expect {
            catalog: "xennet.cat",
            class: "Net",
            hardware_ids: &["SLUICEXEN\\VIF"],
            files: &["xennet.sys"],
            service: "xennet",
            boot_group: None,
        }
    }

    #[test]
    fn xennet_inf_is_valid_and_net_rules_bite() {
        assert_eq!(validate(&xennet(), &want()), Vec::<String>::new());
        let cases: &[(&str, &str, &str)] = &[
            ("Characteristics = 0x84", "Characteristics = 0x85", "NCF_"),
            ("Characteristics = 0x84\n", "", "NCF_"),
            ("BusType         = 15\n", "", "BusType"),
            (
                "Service,            0, \"xennet\"",
                "Service, 0, \"other\"",
                "Ndi\\Service",
            ),
            ("\"ndis5\"", "\"ndis4\"", "UpperRange"),
            ("\"ethernet\"", "\"wlan\"", "LowerRange"),
            (
                "*IfType,            0x00010001, 6",
                "*IfType, 0x00010001, 71",
                "*IfType is 71",
            ),
            (
                "*MediaType,         0x00010001, 0",
                "*MediaType, 0x00000000, 0",
                "*MediaType",
            ),
            (
                "HKR, ,               *AccessType,        0x00010001, 2\n",
                "",
                "*AccessType",
            ),
            ("%12%\\xennet.sys", "%13%\\xennet.sys", "25319"),
            (
                "AddReg          = XenNet_Ndi",
                "AddReg = Nowhere",
                "AddReg section",
            ),
        ];
        for (from, to, needle) in cases {
            assert!(xennet().contains(from), "case {from:?} does not apply");
            let bad = xennet().replacen(from, to, 1);
            let problems = validate(&bad, &want());
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{from:?} -> {to:?}: expected a problem with {needle:?}, got {problems:?}"
            );
        }
    }
}
