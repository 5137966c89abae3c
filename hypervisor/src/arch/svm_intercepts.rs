//! The VMCB intercept words every guest runs with, and the exit codes they produce, as
//! the AMD APM vol. 2 (appendix B, "VMCB Layout, Control Area", and "SVM Intercept
//! Exit Codes") defines them. No `unsafe`: xtask compiles this file into a host test
//! that checks each bit against the APM's exit-code numbering (vector 3 bit n exits
//! with 0x60 + n, vector 4 bit n with 0x80 + n, exception n with 0x40 + n).

#![allow(dead_code)] // the bits left clear are named too, for the host test

/// Exception vectors intercepted (VMCB offset 0x08, bit n = vector n): #DB (1) and
/// #AC (17), which a guest can otherwise make the CPU deliver forever (XSA-156: a #DB
/// or #AC raised while delivering itself, with no interrupt window in between).
pub const EXC_DB: u32 = 1;
pub const EXC_AC: u32 = 17;
pub const INTERCEPT_EXCEPTIONS: u32 = (1 << EXC_DB) | (1 << EXC_AC);

// Vector 3 (VMCB offset 0x0C).
pub const I_INTR: u32 = 1 << 0;
pub const I_NMI: u32 = 1 << 1;
pub const I_RDPMC: u32 = 1 << 15;
pub const I_CPUID: u32 = 1 << 18;
pub const I_INVD: u32 = 1 << 22;
pub const I_HLT: u32 = 1 << 24;
pub const I_INVLPGA: u32 = 1 << 26;
pub const I_IOIO: u32 = 1 << 27;
pub const I_MSR: u32 = 1 << 28;
pub const I_SHUTDOWN: u32 = 1 << 31;

// Vector 4 (VMCB offset 0x10).
pub const I2_VMRUN: u32 = 1 << 0;
pub const I2_VMMCALL: u32 = 1 << 1;
pub const I2_VMLOAD: u32 = 1 << 2;
pub const I2_VMSAVE: u32 = 1 << 3;
pub const I2_STGI: u32 = 1 << 4;
pub const I2_CLGI: u32 = 1 << 5;
pub const I2_SKINIT: u32 = 1 << 6;
/// Bit 7 is RDTSCP: not intercepted (it runs natively; TSC_AUX is loaded per vCPU).
pub const I2_RDTSCP: u32 = 1 << 7;
pub const I2_WBINVD: u32 = 1 << 9;
pub const I2_MONITOR: u32 = 1 << 10;
pub const I2_MWAIT: u32 = 1 << 11;
pub const I2_MWAIT_ARMED: u32 = 1 << 12;
pub const I2_XSETBV: u32 = 1 << 13;

pub const INTERCEPT_MISC1: u32 =
    I_INTR | I_NMI | I_RDPMC | I_CPUID | I_INVD | I_HLT | I_INVLPGA | I_IOIO | I_MSR | I_SHUTDOWN;
pub const INTERCEPT_MISC2: u32 = I2_VMRUN
    | I2_VMMCALL
    | I2_VMLOAD
    | I2_VMSAVE
    | I2_STGI
    | I2_CLGI
    | I2_SKINIT
    | I2_WBINVD
    | I2_MONITOR
    | I2_MWAIT
    | I2_MWAIT_ARMED
    | I2_XSETBV;

// Exit codes (EXITCODE, VMCB offset 0x70).
pub const EXIT_EXCP_BASE: u64 = 0x40;
pub const EXIT_INTR: u64 = 0x60;
pub const EXIT_NMI: u64 = 0x61;
pub const EXIT_RDPMC: u64 = 0x6F;
pub const EXIT_CPUID: u64 = 0x72;
pub const EXIT_INVD: u64 = 0x76;
pub const EXIT_HLT: u64 = 0x78;
pub const EXIT_INVLPGA: u64 = 0x7A;
pub const EXIT_IOIO: u64 = 0x7B;
pub const EXIT_MSR: u64 = 0x7C;
pub const EXIT_SHUTDOWN: u64 = 0x7F;
pub const EXIT_VMRUN: u64 = 0x80;
pub const EXIT_VMMCALL: u64 = 0x81;
pub const EXIT_VMLOAD: u64 = 0x82;
pub const EXIT_VMSAVE: u64 = 0x83;
pub const EXIT_STGI: u64 = 0x84;
pub const EXIT_CLGI: u64 = 0x85;
pub const EXIT_SKINIT: u64 = 0x86;
pub const EXIT_RDTSCP: u64 = 0x87;
pub const EXIT_WBINVD: u64 = 0x89;
pub const EXIT_MONITOR: u64 = 0x8A;
pub const EXIT_MWAIT: u64 = 0x8B;
pub const EXIT_MWAIT_ARMED: u64 = 0x8C;
pub const EXIT_XSETBV: u64 = 0x8D;
pub const EXIT_NPF: u64 = 0x400;
