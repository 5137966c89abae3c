//! Byte-compatibility of every wire struct and constant with Xen's installed public
//! headers (`/usr/include/xen`, package libxen-dev).
//!
//! One table (`structs.rs`) drives both sides: for each struct it names the C type and,
//! for each field, the C member path and the Rust field path. From it the test writes a C
//! probe that prints `sizeof`/`_Alignof` of every struct and `offsetof`/`sizeof` of every
//! member, compiles it with the system `cc`, runs it, and compares each number with
//! `size_of`/`align_of`/`offset_of!` on the Rust side. Rust-only padding fields are
//! listed too, and the test checks that fields plus padding account for every byte of
//! the Rust struct, so a field missing from the table is caught as well.
//! Constants (every value of every typed enum, flags, limits: `constants.rs`) are checked
//! the same way; `probe.rs` writes, compiles and runs the C side.
//!
//! Missing `cc` or headers fail the test (never skip it): `cargo xtask setup` installs
//! them.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_abi::*;

struct Field {
    c: &'static str,
    rust: &'static str,
    offset: usize,
    size: usize,
}

struct Struct {
    c: &'static str,
    rust: &'static str,
    size: usize,
    align: usize,
    /// The Rust type models only a prefix of the C type (its size may be smaller).
    prefix_only: bool,
    fields: Vec<Field>,
    /// Rust-only padding fields: (name, size).
    pads: Vec<(&'static str, usize)>,
}

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    core::mem::size_of::<F>()
}

macro_rules! layout {
    ($(
        $c:literal => $ty:ty $([prefix $prefix:tt])? {
            $( $cf:literal => $($rf:ident).+ ),* $(,)?
        } $( pad { $($pf:ident),* $(,)? } )?
    );* $(;)?) => {
        vec![$(
            Struct {
                c: $c,
                rust: stringify!($ty),
                size: core::mem::size_of::<$ty>(),
                align: core::mem::align_of::<$ty>(),
                prefix_only: false $( || $prefix )?,
                fields: vec![$(
                    Field {
                        c: $cf,
                        rust: stringify!($($rf).+),
                        offset: core::mem::offset_of!($ty, $($rf).+),
                        size: field_size::<$ty, _>(|s| &s.$($rf).+),
                    }
                ),*],
                pads: vec![$($(
                    (stringify!($pf), field_size::<$ty, _>(|s| &s.$pf))
                ),*)?],
            }
        ),*]
    };
}

mod constants;
mod probe;
mod structs;

use constants::{enum_constants, other_constants, string_constants};
use probe::{probe_source, run_probe};
use structs::structs;

#[test]
fn layouts_and_constants_match_xen_headers() {
    let structs = structs();
    let ints: Vec<(&str, i64)> = enum_constants()
        .into_iter()
        .chain(other_constants())
        .collect();
    let strs = string_constants();
    let output = run_probe(&probe_source(&structs, &ints, &strs));

    let mut errors = Vec::new();
    let mut seen = BTreeMap::new();
    for line in output.lines() {
        let w: Vec<&str> = line.splitn(5, ' ').collect();
        let num = |k: usize| -> i64 { w[k].parse().unwrap() };
        match w[0] {
            "S" => {
                let s = &structs[num(1) as usize];
                let (size, align) = (num(2) as usize, num(3) as usize);
                *seen.entry("struct").or_insert(0) += 1;
                let size_ok = if s.prefix_only {
                    s.size <= size
                } else {
                    s.size == size
                };
                if !size_ok || s.align != align {
                    errors.push(format!(
                        "{} vs {}: C size {size} align {align}, Rust size {} align {}",
                        s.c, s.rust, s.size, s.align
                    ));
                }
            }
            "F" => {
                let s = &structs[num(1) as usize];
                let f = &s.fields[num(2) as usize];
                let (offset, size) = (num(3) as usize, num(4) as usize);
                *seen.entry("field").or_insert(0) += 1;
                if f.offset != offset || f.size != size {
                    errors.push(format!(
                        "{}.{} vs {}.{}: C offset {offset} size {size}, Rust offset {} size {}",
                        s.c, f.c, s.rust, f.rust, f.offset, f.size
                    ));
                }
            }
            "C" => {
                let (expr, rust) = ints[num(1) as usize];
                *seen.entry("constant").or_insert(0) += 1;
                if num(2) != rust {
                    errors.push(format!("{expr}: C {} Rust {rust}", num(2)));
                }
            }
            "T" => {
                let (expr, rust) = strs[num(1) as usize];
                *seen.entry("string").or_insert(0) += 1;
                let c = w[2..].join(" ");
                if c != rust {
                    errors.push(format!("{expr}: C {c:?} Rust {rust:?}"));
                }
            }
            "E" => {
                let i = num(1) as usize;
                let (errnum, name) = (num(2), w[3]);
                *seen.entry("xsd_error").or_insert(0) += 1;
                match xs_wire::XsErrno::ALL.get(i) {
                    Some(e) if e.name() == name && e.raw() as i64 == errnum => {}
                    other => errors.push(format!(
                        "xsd_errors[{i}] = {{{errnum}, {name}}}, Rust {other:?}"
                    )),
                }
            }
            _ => errors.push(format!("unexpected probe output {line:?}")),
        }
    }
    if seen.get("xsd_error").copied().unwrap_or(0) != xs_wire::XsErrno::ALL.len() {
        errors.push(format!(
            "xsd_errors has {:?} entries, Rust XsErrno has {}",
            seen.get("xsd_error"),
            xs_wire::XsErrno::ALL.len()
        ));
    }
    // Fields plus padding must cover each Rust struct exactly: a Rust field missing from
    // the table would leave bytes unaccounted for.
    for s in &structs {
        let covered: usize = s
            .fields
            .iter()
            .filter(|f| !f.rust.contains('.'))
            .map(|f| f.size)
            .chain(s.pads.iter().map(|p| p.1))
            .sum();
        if !s.fields.is_empty() && covered != s.size {
            errors.push(format!(
                "{}: table lists {covered} bytes of fields and padding, struct has {}",
                s.rust, s.size
            ));
        }
    }
    // Every `#[repr(C)]` struct defined in this crate's protocol modules is in the
    // table (ring/ and shared.rs are layout-tested by tests/ring_layout.rs).
    let listed: Vec<&str> = structs
        .iter()
        .map(|s| s.rust.rsplit("::").next().unwrap().trim())
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // A module may be a folder (`xs_wire/`): every file below src/, named by its path
    // relative to src/.
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for path in files {
        let name = path
            .strip_prefix(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if name.starts_with("ring/") || name == "shared.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut repr_c = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[repr(C") {
                repr_c = true;
            } else if let Some(rest) = line.strip_prefix("pub struct ") {
                let ty: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if repr_c && !listed.contains(&ty.as_str()) {
                    errors.push(format!(
                        "{name}: #[repr(C)] struct {ty} is not in the layout table"
                    ));
                }
                repr_c = false;
            } else if !line.starts_with("#[")
                && !line.starts_with("///")
                && !line.starts_with(')')
                && !line.is_empty()
                && !line.starts_with("Clone")
            {
                repr_c = false;
            }
        }
    }
    let expected_lines = structs.len()
        + structs.iter().map(|s| s.fields.len()).sum::<usize>()
        + ints.len()
        + strs.len()
        + xs_wire::XsErrno::ALL.len();
    if output.lines().count() != expected_lines {
        errors.push(format!(
            "probe printed {} lines, expected {expected_lines}",
            output.lines().count()
        ));
    }
    assert!(
        errors.is_empty(),
        "{} mismatches with /usr/include/xen:\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
    eprintln!(
        "checked {} structs, {} fields, {} constants, {} strings, {} xsd_errors against /usr/include/xen",
        seen.get("struct").unwrap_or(&0),
        seen.get("field").unwrap_or(&0),
        seen.get("constant").unwrap_or(&0),
        seen.get("string").unwrap_or(&0),
        seen.get("xsd_error").unwrap_or(&0)
    );
}
