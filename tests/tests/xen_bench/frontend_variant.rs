//! `fio-frontend-variant`: A = stock xen-blkfront, B = sluice-blkfront.ko as shipped,
//! C = sluice-blkfront.ko with the module arguments in `SLUICE_BLKFRONT_C_ARGS`, against
//! the backends in `SLUICE_FRONTEND_BACKENDS` (`kblk`, `sblk` or both, the default);
//! each triple's order rotates (A B C, B C A, C A B).

use super::*;

/// C's module arguments (split on spaces).
fn c_args() -> Vec<String> {
    std::env::var("SLUICE_BLKFRONT_C_ARGS")
        .expect("SLUICE_BLKFRONT_C_ARGS names C's module arguments: cargo xtask bench fio-frontend-variant")
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The backends this run covers (tag, backend, label).
fn backends() -> Vec<&'static (&'static str, BlockBackend, &'static str)> {
    let want = std::env::var("SLUICE_FRONTEND_BACKENDS").unwrap_or_default();
    FRONTEND_BACKENDS
        .iter()
        .filter(|(tag, _, _)| want.is_empty() || want.split([',', ' ']).any(|w| w == *tag))
        .collect()
}

pub(super) fn frontend_variant_plan(size: Size) -> Plan {
    let ko = blkfront_ko();
    let args = c_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steps = Vec::new();
    for (tag, backend, _) in backends() {
        for i in 0..size.pairs {
            let a = guest(&format!("{tag}-{i}"), backend, size, &fio(size));
            let b = guest(&format!("{tag}-sbf-{i}"), backend, size, &fio(size))
                .with_blkfront_module(ko.clone());
            let c = guest(&format!("{tag}-sbfc-{i}"), backend, size, &fio(size))
                .with_blkfront_module(ko.clone())
                .with_blkfront_args(&args);
            let mut triple = [a, b, c];
            triple.rotate_left(i % 3);
            steps.extend(triple);
        }
    }
    Plan {
        daemons: sluice_blkback(),
        steps,
        fio_in_dom0: false,
    }
}

pub(super) fn frontend_variant_report(report: &BootReport, size: Size) -> usize {
    size.banner("fio-frontend-variant");
    check_frontend_modules(report);
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!(
        "fio, {} guests, A = xen-blkfront, B = sluice-blkfront (as shipped), C = sluice-blkfront {}; cells A / B / C; 4k jobs in IOPS, 1m jobs in MiB/s; {} s each",
        guests_label(),
        c_args().join(" "),
        size.fio_seconds
    );
    let mut cols = vec!["backend".to_string(), "job".into()];
    cols.extend((1..=size.pairs).map(|i| format!("triple {i}")));
    cols.extend(["median B/A".into(), "median C/A".into()]);
    header(&cols);
    let backends = backends();
    for (tag, _, label) in &backends {
        for job in JOBS {
            let row = super::three_way::triple_row(
                size.pairs,
                |step| get(step, job),
                |i| {
                    [
                        format!("{tag}-{i}"),
                        format!("{tag}-sbf-{i}"),
                        format!("{tag}-sbfc-{i}"),
                    ]
                },
            );
            eprintln!("| {label} | {job} | {row}");
        }
    }
    backends.len()
}
