//! Hypercall numbers, sub-commands and argument structs (`xen/xen.h`, `sched.h`,
//! `version.h`, `features.h`, `vcpu.h`, `memory.h`) and Xen's errno values
//! (`xen/errno.h`).
//!
//! On x86_64 a hypercall puts its number in `rax` and up to five arguments in `rdi`,
//! `rsi`, `rdx`, `r10`, `r8`; it returns in `rax`, `-errno` ([`XenErrno`]) on failure.
//! Argument structs are passed by guest address.

mod errno;
mod hvm;
mod memory;
mod numbers;
mod sched;
mod vcpu;
mod version;

pub use self::errno::{hypercall_result, HypercallError, XenErrno};
pub use self::hvm::{
    HvmOp, HvmParam, XenHvmEvtchnUpcallVector, XenHvmParam, HVM_NR_PARAMS,
    HVM_PARAM_CALLBACK_IRQ_TYPE_MASK, HVM_PARAM_CALLBACK_TYPE_GSI,
    HVM_PARAM_CALLBACK_TYPE_PCI_INTX, HVM_PARAM_CALLBACK_TYPE_VECTOR,
};
pub use self::memory::{
    XenAddToPhysmap, XenMapSpace, XenMemOp, XenMemoryMap, XenMemoryReservation,
    XenRemoveFromPhysmap, XENMAPIDX_GRANT_TABLE_STATUS,
};
pub use self::numbers::{ConsoleIo, Hypercall};
pub use self::sched::{SchedOp, SchedPoll, SchedRemoteShutdown, SchedShutdown, ShutdownReason};
pub use self::vcpu::{
    VcpuOp, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer,
    VCPU_SSHOTTMR_FUTURE,
};
pub use self::version::{
    XenFeature, XenFeatureInfo, XenVer, XENFEAT_NR_SUBMAPS, XEN_CAPABILITIES_INFO_LEN,
    XEN_EXTRAVERSION_LEN,
};
pub use crate::types::{GuestHandle, RawDomId, RawEvtchnPort, XenPfn};
