//! Multiboot v1 entry (32-bit protected mode) to long mode with the low 4 GiB identity
//! mapped by 2 MiB pages, then `kmain(multiboot_info)`.

#![allow(unsafe_code)]

core::arch::global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
mb_header:
    .long 0x1BADB002
    .long 0x00010002
    .long -(0x1BADB002 + 0x00010002)
    .long mb_header
    .long __load_start
    .long __load_end
    .long __bss_end
    .long _start32

    .section .boot32, "ax"
    .code32
    .global _start32
_start32:
    cli
    movl $boot_stack_top, %esp
    movl %ebx, mb_info
    /* PML4[0] -> PDPT, PDPT[0..4] -> PD0..PD3 */
    movl $pdpt, %eax
    orl $3, %eax
    movl %eax, pml4
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $12, %eax
    addl $pds, %eax
    orl $3, %eax
    movl %eax, pdpt(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jne 1b
    /* 2048 PD entries of 2 MiB: present, writable, PS */
    xorl %ecx, %ecx
2:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, pds(,%ecx,8)
    movl %ecx, %eax
    shrl $11, %eax
    movl %eax, pds+4(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 2b
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt gdt_ptr
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    movl mb_info, %edi
    call kmain
3:
    hlt
    jmp 3b

    .section .rodata
    .balign 8
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt

    .section .bss
    .balign 4096
pml4:
    .skip 4096
pdpt:
    .skip 4096
pds:
    .skip 4 * 4096
boot_stack:
    .skip 256 * 1024
boot_stack_top:
mb_info:
    .skip 8
"#,
    options(att_syntax)
);
