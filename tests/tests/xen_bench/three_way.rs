//! The three-way fio benches' plans and reports (`fio-direct-buffered`,
//! `fio-zero-copy`, `fio-variant`): A = kernel blkback, B = sluice-blkback as shipped,
//! C = sluice-blkback with more arguments; each triple's order rotates.

use super::*;

const BUFFERED: &str = "sluice-blkback-buffered";

/// The third contender of a three-way bench: sluice-blkback with more arguments.
pub(super) struct Variant {
    /// Its daemon's name.
    daemon: &'static str,
    /// The arguments.
    args: Vec<String>,
    /// Its guests' step prefix.
    tag: &'static str,
    /// The bench's name and what C is, for the report.
    bench: &'static str,
    label: String,
}

pub(super) fn buffered_variant() -> Variant {
    Variant {
        daemon: BUFFERED,
        args: vec!["--buffered".into()],
        tag: "sbuf",
        bench: "fio-direct-buffered",
        label: "B = sluice-blkback (O_DIRECT), C = sluice-blkback --buffered".into(),
    }
}

/// Zero copy is sluice-blkback's default (since the first run of this bench); C is the
/// bounce-buffer path it replaced.
pub(super) fn zero_copy_variant() -> Variant {
    Variant {
        daemon: "sluice-blkback-bounce",
        args: vec!["--bounce".into()],
        tag: "sbnc",
        bench: "fio-zero-copy",
        label: "B = sluice-blkback (zero copy, as shipped), C = sluice-blkback --bounce".into(),
    }
}

/// C = sluice-blkback with the arguments in `SLUICE_BLKBACK_C_ARGS` (split on spaces):
/// an experiment against the shipped daemon in the same boot.
pub(super) fn env_variant() -> Variant {
    let args = std::env::var("SLUICE_BLKBACK_C_ARGS")
        .expect("SLUICE_BLKBACK_C_ARGS names C's arguments: cargo xtask bench fio-variant");
    Variant {
        daemon: "sluice-blkback-variant",
        args: args.split_whitespace().map(String::from).collect(),
        tag: "svar",
        bench: "fio-variant",
        label: format!("B = sluice-blkback (as shipped), C = sluice-blkback {args}"),
    }
}

pub(super) fn direct_buffered_plan(size: Size) -> Plan {
    three_way_plan(size, &buffered_variant())
}

pub(super) fn three_way_plan(size: Size, v: &Variant) -> Plan {
    let mut daemons = sluice_blkback();
    let mut third = daemons[0].clone();
    third.name = v.daemon.into();
    third.args.extend(v.args.iter().cloned());
    daemons.push(third);
    let mut steps = Vec::new();
    for i in 0..size.pairs {
        let [a, b] = kernel_and_sluice_pair(i, size, &fio(size));
        let c = guest(
            &format!("{}-{i}", v.tag),
            &BlockBackend::Userspace,
            size,
            &fio(size),
        )
        .with_block_daemon(v.daemon);
        // Each contender takes each place once in three triples (A B C, B C A, C A B):
        // a place in the order can favour a column (two runs of 2026-12-07 with the
        // order fixed disagreed on which of B and C was ahead).
        let mut triple = [a, b, c];
        triple.rotate_left(i % 3);
        steps.extend(triple);
    }
    Plan {
        daemons,
        steps,
        fio_in_dom0: false,
    }
}

pub(super) fn direct_buffered_report(report: &BootReport, size: Size) {
    three_way_report(report, size, &buffered_variant())
}

pub(super) fn three_way_report(report: &BootReport, size: Size, v: &Variant) {
    size.banner(v.bench);
    let get = |step: &str, job: &str| fio_figure(&report.fio, step, job);
    eprintln!(
        "fio, {} guests, A = kernel blkback, {}; cells A / B / C; 4k jobs in IOPS, 1m jobs in MiB/s; {} s each",
        guests_label(),
        v.label,
        size.fio_seconds
    );
    let mut cols = vec!["job".to_string()];
    cols.extend((1..=size.pairs).map(|i| format!("triple {i}")));
    cols.extend(["median B/A".into(), "median C/A".into()]);
    header(&cols);
    for job in JOBS {
        let row = triple_row(
            size.pairs,
            |step| get(step, job),
            |i| {
                [
                    format!("kblk-{i}"),
                    format!("sblk-{i}"),
                    format!("{}-{i}", v.tag),
                ]
            },
        );
        eprintln!("| {job} | {row}");
    }
}

/// One table row of a three-way bench: each triple's `A / B / C` (steps `names(i)`),
/// then the medians of B/A and C/A (`figure` reads a step's figure for the row's job).
pub(super) fn triple_row(
    triples: usize,
    figure: impl Fn(&str) -> f64,
    names: impl Fn(usize) -> [String; 3],
) -> String {
    let (mut ba, mut ca, mut cells) = (vec![], vec![], vec![]);
    for i in 0..triples {
        let [a, b, c] = names(i).map(|n| figure(&n));
        ba.push(b / a);
        ca.push(c / a);
        cells.push(format!("{a:.0} / {b:.0} / {c:.0}"));
    }
    format!(
        "{} | {:.2} | {:.2} |",
        cells.join(" | "),
        median(ba),
        median(ca)
    )
}
