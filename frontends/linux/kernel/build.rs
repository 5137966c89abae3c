//! Generates the kernel bindings with bindgen.
//!
//! The clang arguments come from `cargo xtask` (`SLUICE_KERNEL_CLANG_ARGS`, one per
//! line): Kbuild's own C flags for a probe file of the installed kernel headers, minus
//! the GCC-only ones. Only what Sluice calls is allowlisted.

use std::env;
use std::path::PathBuf;

const FUNCTIONS: &[&str] = &[
    "_printk",
    "krealloc",
    "kfree",
    "sluice_gfp_kernel",
    "sluice_gfp_atomic",
    "sluice_gfp_noio",
    "sluice_gfp_for_context",
    "sluice_bug",
    // Xen glue shared by the frontends (kbuild/common/sluice_xen.h)
    "gnttab_grant_foreign_access",
    "gnttab_try_end_foreign_access",
    "xenbus_switch_state",
    "sluice_xen_(nodename|otherend|otherend_id|get_drvdata|set_drvdata|alloc_pages|free_pages|virt_to_gfn|num_cpus)",
    "sluice_xs_.*",
    "sluice_evtchn_.*",
    "sluice_mutex_.*",
    "sluice_spin_.*",
    "sluice_msleep",
    // network-device glue shared by net frontends (kbuild/common/sluice_net.h)
    "sluice_net_.*",
    "sluice_skb_.*",
    // tty glue (kbuild/common/sluice_tty.h)
    "sluice_tty_.*",
    // sluice-blkfront's block glue
    "sbf_.*",
];

const VARS: &[&str] = &["sbf_sts_.*"];

const TYPES: &[&str] = &["sbf_rq_kind"];

/// Kernel structs Rust only passes pointers to.
const OPAQUE: &[&str] = &[
    "xenbus_device",
    "gendisk",
    "request",
    "sluice_evtchn",
    "net_device",
    "sk_buff",
    "sluice_tty",
];

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_KERNEL_CLANG_ARGS");
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=../kbuild/common/sluice_helpers.h");
    println!("cargo:rerun-if-changed=../kbuild/common/sluice_xen.h");
    println!("cargo:rerun-if-changed=../kbuild/common/sluice_net.h");
    println!("cargo:rerun-if-changed=../kbuild/common/sluice_tty.h");
    println!("cargo:rerun-if-changed=../kbuild/sluice-blkfront/sluice_blkfront_shim.h");
    let args = env::var("SLUICE_KERNEL_CLANG_ARGS").unwrap_or_else(|_| {
        panic!(
            "SLUICE_KERNEL_CLANG_ARGS is not set: build the Linux modules with \
             `cargo xtask test --suite linux-modules`, which derives it from the kernel headers"
        )
    });
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut builder = bindgen::Builder::default()
        .header(manifest.join("wrapper.h").to_string_lossy())
        .clang_args(args.lines().filter(|l| !l.is_empty()))
        .clang_arg(format!(
            "-I{}",
            manifest.join("../kbuild/common").to_string_lossy()
        ))
        .clang_arg(format!(
            "-I{}",
            manifest.join("../kbuild/sluice-blkfront").to_string_lossy()
        ))
        .use_core()
        .ctypes_prefix("core::ffi")
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .formatter(bindgen::Formatter::None);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for t in OPAQUE {
        builder = builder.opaque_type(t);
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on the kernel headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .expect("cannot write bindings.rs");
}
