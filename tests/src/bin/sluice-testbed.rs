//! `sluice-testbed demo`: the entry point `cargo xtask demo` runs.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => sluice_testbed::demo::run(),
        _ => {
            eprintln!("usage: sluice-testbed demo");
            std::process::exit(2);
        }
    }
}
