//! Multiboot v1 and multiboot2 entry: 32-bit protected mode to long mode with the
//! hypervisor's own page tables (the low 4 GiB identity-mapped by 2 MiB pages), SSE
//! enabled for FXSAVE, then `hv_main(info_pa, magic)` (EBX, EAX at entry).
//!
//! The v1 header uses the a.out kludge (flag bit 16) because QEMU's `-kernel` refuses ELF64
//! multiboot images otherwise (platform.md). The multiboot2 header (GRUB's `multiboot2`)
//! follows it, with the same load addresses (address tag) and entry (entry address tag),
//! so GRUB loads the same flat image the same way, whatever the ELF headers say.

core::arch::global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
hv_mb_header:
    .long 0x1BADB002
    .long 0x00010002
    .long -(0x1BADB002 + 0x00010002)
    .long hv_mb_header
    .long __image_start
    .long __load_end
    .long __image_end
    .long _start32

    .balign 8
hv_mb2_header:
    .long 0xE85250D6
    .long 0
    .long hv_mb2_header_end - hv_mb2_header
    .long -(0xE85250D6 + (hv_mb2_header_end - hv_mb2_header))
    /* address tag: header, load start, load end, bss end */
    .word 2, 0
    .long 24
    .long hv_mb2_header
    .long __image_start
    .long __load_end
    .long __image_end
    /* entry address tag (12 bytes, padded to 8) */
    .word 3, 0
    .long 12
    .long _start32
    .long 0
    /* end tag */
    .word 0, 0
    .long 8
hv_mb2_header_end:

    .section .boot32, "ax"
    .code32
    .global _start32
_start32:
    cli
    movl $hv_boot_stack_top, %esp
    movl %ebx, hv_mb_info
    movl %eax, hv_mb_magic
    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories */
    movl $hv_pdpt, %eax
    orl $3, %eax
    movl %eax, hv_pml4
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $hv_pds, %eax
    orl $3, %eax
    movl %eax, hv_pdpt(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jne 1b
    /* 2048 x 2 MiB: present, writable, large */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, hv_pds(,%ecx,8)
    movl %ecx, %eax
    shrl $11, %eax
    movl %eax, hv_pds+4(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 2b
    /* CR4: PAE | OSFXSR | OSXMMEXCPT */
    movl %cr4, %eax
    orl $0x620, %eax
    movl %eax, %cr4
    movl $hv_pml4, %eax
    movl %eax, %cr3
    /* EFER.LME */
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    /* CR0: PG | PE | MP, EM and TS clear */
    movl %cr0, %eax
    andl $0xFFFFFFF3, %eax
    orl $0x80000003, %eax
    movl %eax, %cr0
    lgdt hv_boot_gdt_ptr
    ljmp $0x08, $hv_long_mode

    .code64
hv_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movabsq $hv_boot_stack_top, %rsp
    movl hv_mb_info, %edi
    movl hv_mb_magic, %esi
    call hv_main
3:  cli
    hlt
    jmp 3b

    /* An application processor, from the real-mode trampoline (smp.rs) in 32-bit
       protected mode with flat segments: the BSP's page tables, long mode, the stack
       and CPU index the BSP left in HV_AP_STACK_TOP / HV_AP_CPU, then hv_ap_main. */
    .code32
    .global hv_ap_start32
hv_ap_start32:
    movl %cr4, %eax
    orl $0x620, %eax
    movl %eax, %cr4
    movl $hv_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    andl $0xFFFFFFF3, %eax
    orl $0x80000003, %eax
    movl %eax, %cr0
    lgdt hv_boot_gdt_ptr
    ljmp $0x08, $hv_ap_long_mode

    .code64
hv_ap_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq HV_AP_STACK_TOP(%rip), %rsp
    movl HV_AP_CPU(%rip), %edi
    call hv_ap_main
4:  cli
    hlt
    jmp 4b

    /* The real-mode trampoline, copied to 0x8000 (SIPI vector 0x08: CS=0x0800, IP=0)
       by smp.rs; addresses are absolute with DS=0. */
    .section .rodata
    .balign 16
    .global hv_ap_trampoline
    .code16
hv_ap_trampoline:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (0x8000 + hv_ap_tgdt_ptr - hv_ap_trampoline)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(0x8000 + hv_ap_t32 - hv_ap_trampoline)
    .code32
hv_ap_t32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $hv_ap_start32, %eax
    jmp *%eax
    .balign 8
hv_ap_tgdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
hv_ap_tgdt_ptr:
    .word 23
    .long 0x8000 + hv_ap_tgdt - hv_ap_trampoline
    .global hv_ap_trampoline_end
hv_ap_trampoline_end:
    .code64

    .section .rodata
    .balign 8
hv_boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
hv_boot_gdt_ptr:
    .word hv_boot_gdt_ptr - hv_boot_gdt - 1
    .long hv_boot_gdt

    .section .bss
    .balign 4096
hv_pml4:
    .skip 4096
hv_pdpt:
    .skip 4096
hv_pds:
    .skip 4 * 4096
hv_boot_stack:
    .skip 1024 * 1024
    .global hv_boot_stack_top
hv_boot_stack_top:
hv_mb_info:
    .skip 8
hv_mb_magic:
    .skip 8
"#,
    options(att_syntax)
);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The physical range the hypervisor image (with its .bss) occupies.
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

#[no_mangle]
extern "C" fn hv_main(mb_info: u32, magic: u32) -> ! {
    crate::hv_main(mb_info, magic)
}
