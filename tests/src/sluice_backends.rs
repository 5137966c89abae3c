//! Sluice's dom0 daemons for a boot: `sluice-blkback` and `sluice-consoleback` when they
//! are in the workspace (built by cargo), otherwise the stock Linux/Xen backends.

use crate::cargo_bin::{cargo_binary, workspace_has_package};
use crate::scenario::{BlockBackend, ConsoleBackend, Dom0Daemon};
use anyhow::Result;

/// The backends a boot will use, and a line for each saying which and why.
#[derive(Debug, Clone)]
pub struct Backends {
    pub daemons: Vec<Dom0Daemon>,
    pub block: BlockBackend,
    pub console: ConsoleBackend,
    pub notes: Vec<String>,
}

/// The stock backends only (kernel blkback, xenconsoled); `why` goes into the notes.
pub fn stock(why: &str) -> Backends {
    Backends {
        daemons: vec![],
        block: BlockBackend::KernelBlkback,
        console: ConsoleBackend::Xenconsoled,
        notes: vec![
            format!("block backend: Linux kernel xen-blkback ({why})"),
            format!("console backend: xenconsoled ({why})"),
        ],
    }
}

/// Builds whichever Sluice backends exist and picks the stock ones for the rest.
pub fn select() -> Result<Backends> {
    let mut b = Backends {
        daemons: vec![],
        block: BlockBackend::KernelBlkback,
        console: ConsoleBackend::Xenconsoled,
        notes: vec![],
    };
    if workspace_has_package("sluice-blkback") {
        // SLUICE_BLKBACK_ARGS: extra arguments for sluice-blkback in every boot (e.g.
        // `--bounce`, `--buffered`, `--profile`).
        let args: Vec<String> = std::env::var("SLUICE_BLKBACK_ARGS")
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        if !args.is_empty() {
            b.notes
                .push(format!("sluice-blkback arguments: {}", args.join(" ")));
        }
        b.daemons.push(Dom0Daemon {
            name: "sluice-blkback".into(),
            binary: cargo_binary("sluice-blkback", "sluice-blkback")?,
            args,
            serves_block: true,
            serves_net: false,
        });
        b.block = BlockBackend::Userspace;
        b.notes
            .push("block backend: sluice-blkback (Rust, dom0 userspace)".into());
    } else {
        b.notes.push(
            "block backend: Linux kernel xen-blkback (sluice-blkback is not in the workspace yet)"
                .into(),
        );
    }
    if workspace_has_package("sluice-consoleback") {
        b.daemons.push(Dom0Daemon {
            name: "sluice-consoleback".into(),
            binary: cargo_binary("sluice-consoleback", "sluice-consoleback")?,
            args: vec![],
            serves_block: false,
            serves_net: false,
        });
        b.console = ConsoleBackend::Userspace;
        b.notes
            .push("console backend: sluice-consoleback (Rust, dom0 userspace)".into());
    } else {
        b.notes.push(
            "console backend: xenconsoled (sluice-consoleback is not in the workspace yet)".into(),
        );
    }
    Ok(b)
}
