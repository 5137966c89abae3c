//! The hypercall numbers (`__HYPERVISOR_*`, `xen/xen.h`) and the `console_io`
//! sub-commands (`CONSOLEIO_*`, also `xen.h`).

use crate::enums::xen_enum;

xen_enum! {
    /// Hypercall numbers (`__HYPERVISOR_*`).
    pub enum Hypercall: u64 as "hypercall" {
        /// `__HYPERVISOR_set_trap_table`
        SetTrapTable = 0 => "__HYPERVISOR_set_trap_table",
        /// `__HYPERVISOR_mmu_update`
        MmuUpdate = 1 => "__HYPERVISOR_mmu_update",
        /// `__HYPERVISOR_set_gdt`
        SetGdt = 2 => "__HYPERVISOR_set_gdt",
        /// `__HYPERVISOR_stack_switch`
        StackSwitch = 3 => "__HYPERVISOR_stack_switch",
        /// `__HYPERVISOR_set_callbacks`
        SetCallbacks = 4 => "__HYPERVISOR_set_callbacks",
        /// `__HYPERVISOR_fpu_taskswitch`
        FpuTaskswitch = 5 => "__HYPERVISOR_fpu_taskswitch",
        /// `__HYPERVISOR_sched_op_compat` (obsolete)
        SchedOpCompat = 6 => "__HYPERVISOR_sched_op_compat",
        /// `__HYPERVISOR_platform_op`
        PlatformOp = 7 => "__HYPERVISOR_platform_op",
        /// `__HYPERVISOR_set_debugreg`
        SetDebugreg = 8 => "__HYPERVISOR_set_debugreg",
        /// `__HYPERVISOR_get_debugreg`
        GetDebugreg = 9 => "__HYPERVISOR_get_debugreg",
        /// `__HYPERVISOR_update_descriptor`
        UpdateDescriptor = 10 => "__HYPERVISOR_update_descriptor",
        /// `__HYPERVISOR_memory_op` ([`XenMemOp`](super::XenMemOp))
        MemoryOp = 12 => "__HYPERVISOR_memory_op",
        /// `__HYPERVISOR_multicall`
        Multicall = 13 => "__HYPERVISOR_multicall",
        /// `__HYPERVISOR_update_va_mapping`
        UpdateVaMapping = 14 => "__HYPERVISOR_update_va_mapping",
        /// `__HYPERVISOR_set_timer_op`
        SetTimerOp = 15 => "__HYPERVISOR_set_timer_op",
        /// `__HYPERVISOR_event_channel_op_compat` (obsolete)
        EventChannelOpCompat = 16 => "__HYPERVISOR_event_channel_op_compat",
        /// `__HYPERVISOR_xen_version` ([`XenVer`](super::XenVer))
        XenVersion = 17 => "__HYPERVISOR_xen_version",
        /// `__HYPERVISOR_console_io` ([`ConsoleIo`])
        ConsoleIo = 18 => "__HYPERVISOR_console_io",
        /// `__HYPERVISOR_physdev_op_compat` (obsolete)
        PhysdevOpCompat = 19 => "__HYPERVISOR_physdev_op_compat",
        /// `__HYPERVISOR_grant_table_op` ([`crate::grant_table::GntTabOp`])
        GrantTableOp = 20 => "__HYPERVISOR_grant_table_op",
        /// `__HYPERVISOR_vm_assist`
        VmAssist = 21 => "__HYPERVISOR_vm_assist",
        /// `__HYPERVISOR_update_va_mapping_otherdomain`
        UpdateVaMappingOtherdomain = 22 => "__HYPERVISOR_update_va_mapping_otherdomain",
        /// `__HYPERVISOR_iret`
        Iret = 23 => "__HYPERVISOR_iret",
        /// `__HYPERVISOR_vcpu_op` ([`VcpuOp`](super::VcpuOp))
        VcpuOp = 24 => "__HYPERVISOR_vcpu_op",
        /// `__HYPERVISOR_set_segment_base`
        SetSegmentBase = 25 => "__HYPERVISOR_set_segment_base",
        /// `__HYPERVISOR_mmuext_op`
        MmuextOp = 26 => "__HYPERVISOR_mmuext_op",
        /// `__HYPERVISOR_xsm_op`
        XsmOp = 27 => "__HYPERVISOR_xsm_op",
        /// `__HYPERVISOR_nmi_op`
        NmiOp = 28 => "__HYPERVISOR_nmi_op",
        /// `__HYPERVISOR_sched_op` ([`SchedOp`](super::SchedOp))
        SchedOp = 29 => "__HYPERVISOR_sched_op",
        /// `__HYPERVISOR_callback_op`
        CallbackOp = 30 => "__HYPERVISOR_callback_op",
        /// `__HYPERVISOR_xenoprof_op`
        XenoprofOp = 31 => "__HYPERVISOR_xenoprof_op",
        /// `__HYPERVISOR_event_channel_op` ([`crate::event_channel::EvtchnOp`])
        EventChannelOp = 32 => "__HYPERVISOR_event_channel_op",
        /// `__HYPERVISOR_physdev_op`
        PhysdevOp = 33 => "__HYPERVISOR_physdev_op",
        /// `__HYPERVISOR_hvm_op`
        HvmOp = 34 => "__HYPERVISOR_hvm_op",
        /// `__HYPERVISOR_sysctl`
        Sysctl = 35 => "__HYPERVISOR_sysctl",
        /// `__HYPERVISOR_domctl`
        Domctl = 36 => "__HYPERVISOR_domctl",
        /// `__HYPERVISOR_kexec_op`
        KexecOp = 37 => "__HYPERVISOR_kexec_op",
        /// `__HYPERVISOR_tmem_op`
        TmemOp = 38 => "__HYPERVISOR_tmem_op",
        /// `__HYPERVISOR_argo_op`
        ArgoOp = 39 => "__HYPERVISOR_argo_op",
        /// `__HYPERVISOR_xenpmu_op`
        XenpmuOp = 40 => "__HYPERVISOR_xenpmu_op",
        /// `__HYPERVISOR_dm_op`
        DmOp = 41 => "__HYPERVISOR_dm_op",
        /// `__HYPERVISOR_hypfs_op`
        HypfsOp = 42 => "__HYPERVISOR_hypfs_op",
        /// `__HYPERVISOR_arch_0` (x86: `mca`)
        Arch0 = 48 => "__HYPERVISOR_arch_0",
        /// `__HYPERVISOR_arch_1` (x86: `paging_domctl_cont`)
        Arch1 = 49 => "__HYPERVISOR_arch_1",
        /// `__HYPERVISOR_arch_2`
        Arch2 = 50 => "__HYPERVISOR_arch_2",
        /// `__HYPERVISOR_arch_3`
        Arch3 = 51 => "__HYPERVISOR_arch_3",
        /// `__HYPERVISOR_arch_4`
        Arch4 = 52 => "__HYPERVISOR_arch_4",
        /// `__HYPERVISOR_arch_5`
        Arch5 = 53 => "__HYPERVISOR_arch_5",
        /// `__HYPERVISOR_arch_6`
        Arch6 = 54 => "__HYPERVISOR_arch_6",
        /// `__HYPERVISOR_arch_7`
        Arch7 = 55 => "__HYPERVISOR_arch_7",
    }
}

xen_enum! {
    /// `HYPERVISOR_console_io` commands (`CONSOLEIO_*`).
    pub enum ConsoleIo: u32 as "console_io op" {
        /// Write to Xen's console.
        Write = 0 => "CONSOLEIO_write",
        /// Read from Xen's console (privileged).
        Read = 1 => "CONSOLEIO_read",
    }
}
