//! PVH entry: 32-bit protected mode, paging off, `ebx` = `hvm_start_info`. Builds an
//! identity map of the first 4 GiB (2 MiB pages: real Xen puts a PVH domain's console
//! page just below 4 GiB), enters long mode, calls `guest_main(start_info)`.

core::arch::global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18            /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start32
    .popsection

    .section .pvh32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    movl $g_stack_top, %esp
    movl %ebx, g_start_info
    movl $g_pdpt, %eax
    orl $3, %eax
    movl %eax, g_pml4
    movl $g_pd, %eax
    orl $3, %eax
    movl %eax, g_pdpt
    addl $4096, %eax
    movl %eax, g_pdpt + 8
    addl $4096, %eax
    movl %eax, g_pdpt + 16
    addl $4096, %eax
    movl %eax, g_pdpt + 24
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, g_pd(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 1b
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $g_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt g_gdt_ptr
    ljmp $0x08, $g_long_mode

    .code64
g_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movabsq $g_stack_top, %rsp
    movl g_start_info, %edi
    call guest_main
2:  hlt
    jmp 2b

    /* A secondary vCPU (VCPUOP_initialise: 32-bit, paging off, esp and ebx as given):
       vCPU 0's page tables and GDT, long mode, then guest_ap_main(ebx, esp). */
    .code32
    .global pvh_ap_start32
pvh_ap_start32:
    cli
    movl %esp, %ebp
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $g_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt g_gdt_ptr
    ljmp $0x08, $g_ap_long_mode

    .code64
g_ap_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %ebp, %esp
    movl %ebx, %edi
    movq %rsp, %rsi
    call guest_ap_main
3:  hlt
    jmp 3b

    .section .rodata
    .balign 8
g_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
g_gdt_ptr:
    .word g_gdt_ptr - g_gdt - 1
    .long g_gdt

    .section .bss
    .balign 4096
g_pml4:
    .skip 4096
g_pdpt:
    .skip 4096
g_pd:
    .skip 4 * 4096
    .global g_hypercall_page
g_hypercall_page:
    .skip 4096
g_stack:
    .skip 64 * 1024
g_stack_top:
    .global g_ap_stack_top
g_ap_stack:
    .skip 16 * 1024
g_ap_stack_top:
g_start_info:
    .skip 8
"#,
    options(att_syntax)
);
