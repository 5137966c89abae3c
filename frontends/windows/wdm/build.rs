//! Generates the WDM bindings with bindgen from mingw-w64's DDK headers
//! (`/usr/x86_64-w64-mingw32/include/ddk`, Debian package `mingw-w64-x86-64-dev`), for
//! the `x86_64-w64-mingw32` clang target (LLP64 and MS bitfield layout, as MSVC's).
//! Only what the drivers call is allowlisted; the types follow from the functions.

use std::env;
use std::path::PathBuf;

const FUNCTIONS: &[&str] = &[
    "DbgPrintEx",
    "KeBugCheckEx",
    "ExAllocatePoolWithTag",
    "ExFreePoolWithTag",
    "IoCreateDevice",
    "IoDeleteDevice",
    "IoAttachDeviceToDeviceStack",
    "IoDetachDevice",
    "IofCallDriver",
    "IofCompleteRequest",
    "IoInvalidateDeviceRelations",
    "IoConnectInterrupt",
    "IoDisconnectInterrupt",
    "KeInitializeEvent",
    "KeSetEvent",
    "KeWaitForSingleObject",
    "KeInitializeDpc",
    "KeInsertQueueDpc",
    "MmMapIoSpace",
    "MmUnmapIoSpace",
    "MmGetPhysicalAddress",
    "ObfReferenceObject",
    "KeFlushQueuedDpcs",
    "KeAcquireSpinLockRaiseToDpc",
    "KeReleaseSpinLock",
    "IoAllocateIrp",
    "IoFreeIrp",
    "ExQueueWorkItem",
    "ZwOpenKey",
    "ZwCreateKey",
    "ZwQueryValueKey",
    "ZwSetValueKey",
    "ZwClose",
    "MmMapLockedPagesSpecifyCache",
];

const TYPES: &[&str] = &[
    "DRIVER_OBJECT",
    "DEVICE_OBJECT",
    "IRP",
    "IO_STACK_LOCATION",
    "CM_RESOURCE_LIST",
    "CM_PARTIAL_RESOURCE_DESCRIPTOR",
    "DEVICE_RELATIONS",
    "PNP_DEVICE_STATE",
    "DPFLTR_TYPE",
    "POOL_TYPE",
    "MEMORY_CACHING_TYPE",
    "KINTERRUPT_MODE",
    "DEVICE_RELATION_TYPE",
    "BUS_QUERY_ID_TYPE",
    "EVENT_TYPE",
    "KWAIT_REASON",
    "MODE",
    "INTERFACE",
    "GUID",
    "WORK_QUEUE_ITEM",
    "WORK_QUEUE_TYPE",
    "OBJECT_ATTRIBUTES",
    "KEY_VALUE_PARTIAL_INFORMATION",
    "KEY_VALUE_INFORMATION_CLASS",
    "MDL",
    // storport (mingw-w64's srb.h: the SRB and port configuration; the
    // virtual-miniport structures it lacks are declared in src/storport.rs).
    "SCSI_REQUEST_BLOCK",
    "HW_INITIALIZATION_DATA",
    "PORT_CONFIGURATION_INFORMATION",
    "SCSI_ADAPTER_CONTROL_TYPE",
    "SCSI_SUPPORTED_CONTROL_TYPE_LIST",
    "SCSI_NOTIFICATION_TYPE",
    "SCSI_ADAPTER_CONTROL_STATUS",
];

const VARS: &[&str] = &[
    "IRP_MJ_.*",
    "IRP_MN_.*",
    "CmResourceType.*",
    "FILE_DEVICE_.*",
    "DO_.*",
    "DPFLTR_.*",
    "IO_NO_INCREMENT",
    "SRB_FUNCTION_.*",
    "SRB_STATUS_.*",
    "SRB_FLAGS_DATA_.*",
    "SP_RETURN_.*",
];

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-env-changed=SLUICE_MINGW_INCLUDE");
    println!("cargo:rerun-if-env-changed=SLUICE_WIN_LIBDIR");
    // The import libraries llvm-dlltool made from ../lib/*.def (`cargo xtask windows`).
    // Every `<module>.lib` there is linked (one per .def: ntoskrnl today; hal, storport,
    // ndis when a driver calls them).
    if let Ok(dir) = env::var("SLUICE_WIN_LIBDIR") {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rerun-if-changed={dir}");
        let mut libs: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".lib")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        libs.sort();
        for l in libs {
            println!("cargo:rerun-if-changed={dir}/{l}.lib");
            println!("cargo:rustc-link-lib=dylib={l}");
        }
    }
    let inc = env::var("SLUICE_MINGW_INCLUDE")
        .unwrap_or_else(|_| "/usr/x86_64-w64-mingw32/include".to_string());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut builder = bindgen::Builder::default()
        .header(manifest.join("wrapper.h").to_string_lossy())
        .clang_arg("--target=x86_64-w64-mingw32")
        .clang_arg("-nostdlibinc")
        .clang_arg(format!("-isystem{inc}/ddk"))
        .clang_arg(format!("-isystem{inc}"))
        .clang_args(clang_builtin_include().map(|d| format!("-isystem{d}")))
        .clang_arg("-D_AMD64_")
        .clang_arg("-D_KERNEL_MODE")
        .clang_arg("-DNTDDI_VERSION=0x0A000000")
        .clang_arg("-D_WIN32_WINNT=0x0A00")
        .use_core()
        .ctypes_prefix("core::ffi")
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .formatter(bindgen::Formatter::None);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    let bindings = builder
        .generate()
        .expect("bindgen over mingw-w64's ntddk.h (is mingw-w64-x86-64-dev installed?)");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("writing bindings.rs");
}

/// clang's own headers (`mm_malloc.h`, intrinsics): libclang loaded at run time does not
/// always find its resource directory, so name it (Debian: libclang-common-N-dev).
fn clang_builtin_include() -> Option<String> {
    if let Ok(d) = env::var("SLUICE_CLANG_INCLUDE") {
        return Some(d);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
        .flat_map(|e| {
            std::fs::read_dir(e.path().join("lib/clang"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path().join("include"))
        .filter(|p| p.join("mm_malloc.h").exists())
        .collect();
    found.sort();
    found.pop().map(|p| p.to_string_lossy().into_owned())
}
