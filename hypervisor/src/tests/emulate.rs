//! MMIO instruction emulation: the decoder's accepted forms and their effects, hostile
//! bytes and prefixes, and the fetch through the guest's page tables.

use super::*;
use crate::emulate::{decode, Dest, MmioInsn, MmioOp, Unhandleable, MAX_INSN};

/// RDI = 0x1000 + `off` ... the registers an access at page offset `off` uses.
fn regs(off: u64) -> [u64; 16] {
    let mut g = [0u64; 16];
    g[0] = 0x1122_3344_5566_7788; // rax
    g[1] = 2; // rcx
    g[6] = 0x8877_6655_4433_2211; // rsi
    g[7] = 0xFFFF_C900_0000_1000 + off; // rdi
    g[8] = 0xDEAD_BEEF_CAFE_F00D; // r8
    g
}

fn ok(bytes: &[u8], write: bool, off: u64) -> MmioInsn {
    decode(bytes, 0xFFFF_FFFF_8100_0000, &regs(off), write, off).unwrap()
}

fn err(bytes: &[u8], write: bool, off: u64) -> Unhandleable {
    decode(bytes, 0xFFFF_FFFF_8100_0000, &regs(off), write, off).unwrap_err()
}

#[test]
fn linux_mmio_loads_decode_to_their_register_and_width() {
    let load = |b: &[u8], size, d| MmioInsn {
        len: b.len() as u8,
        size,
        op: MmioOp::Load(d),
    };
    // readl: mov eax,[rdi]; readq: mov rax,[rdi]; readw: mov ax,[rdi]; readb: mov al,[rdi]
    for (b, size, d) in [
        (&[0x8B, 0x07][..], 4, Dest::W32(0)),
        (&[0x48, 0x8B, 0x07], 8, Dest::W64(0)),
        (&[0x66, 0x8B, 0x07], 2, Dest::W16(0)),
        (&[0x8A, 0x07], 1, Dest::Low8(0)),
        (&[0x8A, 0x27], 1, Dest::High8(0)),      // mov ah,[rdi]
        (&[0x40, 0x8A, 0x37], 1, Dest::Low8(6)), // mov sil,[rdi]
        (&[0x44, 0x8B, 0x07], 4, Dest::W32(8)),  // mov r8d,[rdi]
        (&[0x0F, 0xB6, 0x07], 1, Dest::W32(0)),  // movzx eax,byte [rdi]
        (&[0x0F, 0xB7, 0x07], 2, Dest::W32(0)),  // movzx eax,word [rdi]
        (&[0x48, 0x0F, 0xB6, 0x07], 1, Dest::W64(0)), // movzx rax,byte [rdi]
        (&[0x66, 0x0F, 0xB6, 0x07], 1, Dest::W16(0)), // movzx ax,byte [rdi]
        (&[0x44, 0x0F, 0xB7, 0x3F], 2, Dest::W32(15)), // movzx r15d,word [rdi]
    ] {
        assert_eq!(ok(b, false, 0x10), load(b, size, d), "{:x?}", b);
    }
}

#[test]
fn linux_mmio_stores_take_their_value_masked_to_the_width() {
    let store = |b: &[u8], size, v| MmioInsn {
        len: b.len() as u8,
        size,
        op: MmioOp::Store(v),
    };
    for (b, size, v) in [
        (&[0x89, 0x37][..], 4, 0x4433_2211),             // mov [rdi],esi
        (&[0x48, 0x89, 0x37], 8, 0x8877_6655_4433_2211), // mov [rdi],rsi
        (&[0x66, 0x89, 0x37], 2, 0x2211),                // mov [rdi],si
        (&[0x88, 0x27], 1, 0x77),                        // mov [rdi],ah
        (&[0x44, 0x88, 0x07], 1, 0x0D),                  // mov [rdi],r8b
        (&[0xC7, 0x07, 0x78, 0x56, 0x34, 0x12], 4, 0x1234_5678), // mov dword [rdi],imm
        (&[0x48, 0xC7, 0x07, 0xFF, 0xFF, 0xFF, 0xFF], 8, u64::MAX), // imm32 sign-extended
        (&[0x66, 0xC7, 0x07, 0x34, 0x12], 2, 0x1234),
        (&[0xC6, 0x07, 0xAB], 1, 0xAB),
    ] {
        assert_eq!(ok(b, true, 0x10), store(b, size, v), "{:x?}", b);
    }
}

#[test]
fn the_memory_operand_must_be_the_faulting_address() {
    // mov [rdi+rcx*4+0x10],r8d: rdi + 8 + 0x10.
    let b = [0x44, 0x89, 0x44, 0x8F, 0x10];
    let rip = 0xFFFF_FFFF_8100_0000;
    assert_eq!(
        decode(&b, rip, &regs(0), true, 0x18).unwrap().op,
        MmioOp::Store(0xCAFE_F00D)
    );
    assert_eq!(
        decode(&b, rip, &regs(0), true, 0x10).unwrap_err(),
        Unhandleable::Address
    );
    // RIP-relative: mov eax,[rip+0x1000] from a page-aligned rip: the operand's page
    // offset is the instruction's length.
    let rip_rel = [0x8B, 0x05, 0x00, 0x10, 0x00, 0x00];
    assert_eq!(
        decode(&rip_rel, 0x40_0000, &regs(0), false, 6)
            .unwrap()
            .size,
        4
    );
    assert_eq!(
        decode(&rip_rel, 0x40_0000, &regs(0), false, 0).unwrap_err(),
        Unhandleable::Address
    );
    // Crossing the page: 4 bytes at 0xFFE, 8 bytes at 0xFF9.
    assert_eq!(err(&[0x8B, 0x07], false, 0xFFE), Unhandleable::Straddle);
    assert_eq!(
        err(&[0x48, 0x89, 0x37], true, 0xFF9),
        Unhandleable::Straddle
    );
    assert_eq!(ok(&[0x48, 0x89, 0x37], true, 0xFF8).size, 8);
}

#[test]
fn hostile_bytes_prefixes_and_forms_are_unhandleable() {
    use Unhandleable::*;
    for (b, write, want) in [
        (&[][..], false, Decode),
        (&[0xFF, 0xFF, 0xFF, 0xFF], false, Decode),
        (&[0x48, 0xC7, 0x07, 0xFF], true, Decode), // truncated immediate
        (&[0x0F, 0x0B], false, Unsupported(iced_x86::Code::Ud2)),
        (&[0xFF, 0x07], true, Unsupported(iced_x86::Code::Inc_rm32)),
        (
            &[0x0F, 0xBE, 0x07],
            false,
            Unsupported(iced_x86::Code::Movsx_r32_rm8),
        ),
        (
            &[0xF3, 0xA5],
            true,
            Unsupported(iced_x86::Code::Movsd_m32_m32),
        ),
        (
            &[0x87, 0x07],
            true,
            Unsupported(iced_x86::Code::Xchg_rm32_r32),
        ),
        (
            &[0xA1, 0, 0, 0, 0, 0, 0, 0, 0],
            false,
            Unsupported(iced_x86::Code::Mov_EAX_moffs32),
        ),
        (&[0x64, 0x8B, 0x07], false, Form), // fs:
        (&[0x65, 0x89, 0x37], true, Form),  // gs:
        (&[0x89, 0xF8], true, Form),        // mov eax,edi: no memory operand
        (&[0x8B, 0x07], true, Direction),   // a load where the fault says write
        (&[0x89, 0x37], false, Direction),
    ] {
        assert_eq!(err(b, write, 0x10), want, "{:x?}", b);
    }
    // LOCK on MOV is #UD: refused whether the decoder takes it or not.
    assert!(decode(&[0xF0, 0x89, 0x37], 0, &regs(0x10), true, 0x10).is_err());
    // 15 bytes: 13 operand-size prefixes + mov ax,[rdi] decodes; one more is too long.
    let mut b = [0x66u8; 16];
    b[13..15].copy_from_slice(&[0x8B, 0x07]);
    assert_eq!(ok(&b[..15], false, 0x10).len, 15);
    let mut long = [0x66u8; 16];
    long[14..16].copy_from_slice(&[0x8B, 0x07]);
    assert_eq!(err(&long, false, 0x10), Unhandleable::Decode);
}

#[test]
fn random_bytes_never_panic_and_what_decodes_is_well_formed() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut b = [0u8; MAX_INSN];
        for byte in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        // Bias half the runs toward the accepted opcodes.
        if i % 2 == 0 {
            b[0] = [0x88, 0x89, 0x8A, 0x8B, 0xC6, 0xC7][(x >> 8) as usize % 6];
        }
        for write in [false, true] {
            if let Ok(m) = decode(&b, x, &regs(0), write, (x >> 20) & 0xFFF) {
                accepted += 1;
                assert!(matches!(m.size, 1 | 2 | 4 | 8));
                assert!(m.len as usize <= MAX_INSN && m.len > 0);
                assert_eq!(matches!(m.op, MmioOp::Store(_)), write);
            }
        }
    }
    // The page-offset check makes random acceptances rare, but some must pass.
    assert!(accepted > 0);
}

const GVA: u64 = 0x40_0000;

/// Long-mode paging for domain 0: GVA 0x400000 -> GPA 0x20000, 0x401000 -> 0x30000,
/// 0x402000 not present; a 2 MiB page at GVA 0x600000 -> GPA 0.
fn paging(m: &mut Machine) {
    let (pml4, pdpt, pd, pt) = (0x10000u64, 0x11000u64, 0x12000u64, 0x13000u64);
    m.put(0, pml4, &(pdpt | 3));
    m.put(0, pdpt, &(pd | 3));
    m.put(0, pd + 2 * 8, &(pt | 3));
    m.put(0, pd + 3 * 8, &0x83u64);
    m.put(0, pt, &0x20003u64);
    m.put(0, pt + 8, &0x30003u64);
    let v = m.doms[0].as_mut().unwrap().vcpu();
    v.long_mode = true;
    v.cr0 = 1 << 31 | 1;
    v.cr3 = pml4;
    v.rax = 0x1122_3344_5566_7788;
    v.regs.rdi = 0xFFFF_C900_0000_0010;
}

fn at(m: &mut Machine, rip: u64, gpa: u64, bytes: &[u8]) {
    m.d(0).write_gpa(Gpa(gpa), bytes).unwrap();
    m.doms[0].as_mut().unwrap().vcpu().rip = rip;
}

#[test]
fn the_instruction_is_fetched_through_the_guest_page_tables_across_pages() {
    let mut m = machine(1);
    paging(&mut m);
    // movzx eax,word [rdi] split over the two pages (3 + 0 ... the last byte on the
    // second, which is another frame).
    at(&mut m, GVA + 0xFFE, 0x20FFE, &[0x0F, 0xB7]);
    m.d(0).write_gpa(Gpa(0x30000), &[0x07]).unwrap();
    let d = m.doms[0].as_mut().unwrap();
    let insn = d.mmio_insn(0xFE00_0010, 0, false).unwrap();
    assert_eq!(insn.len, 3);
    d.mmio_complete(&insn, 0xBEEF);
    assert_eq!(d.vcpu().rax, 0xBEEF, "32-bit destination zero-extends");
    assert_eq!(d.vcpu().rip, GVA + 0x1001);
    // A byte load into AH keeps the rest of RAX.
    at(&mut m, GVA, 0x20000, &[0x8A, 0x27]);
    let d = m.doms[0].as_mut().unwrap();
    d.vcpu().rax = 0x1122_3344_5566_7788;
    let insn = d.mmio_insn(0xFE00_0010, 0, false).unwrap();
    d.mmio_complete(&insn, 0xAB);
    assert_eq!(d.vcpu().rax, 0x1122_3344_5566_AB88);
    // A 2 MiB page: GVA 0x650000 is GPA 0x50000.
    at(&mut m, 0x65_0000, 0x5_0000, &[0x89, 0x07]);
    let d = m.doms[0].as_mut().unwrap();
    d.vcpu().rax = 0x1122_3344_5566_7788;
    let insn = d.mmio_insn(0xFE00_0010, 2, false).unwrap();
    assert_eq!(insn.op, MmioOp::Store(0x5566_7788));
}

#[test]
fn a_fault_on_the_way_is_unhandleable_not_a_panic() {
    let mut m = machine(1);
    paging(&mut m);
    // An instruction that fits before the unmapped page decodes; one that needs it not.
    at(&mut m, GVA + 0x1FFE, 0x30FFE, &[0x8B, 0x07]);
    let d = m.doms[0].as_mut().unwrap();
    assert!(d.mmio_insn(0xFE00_0010, 0, false).is_ok());
    at(&mut m, GVA + 0x1FFF, 0x30FFF, &[0x8B]);
    let d = m.doms[0].as_mut().unwrap();
    assert_eq!(
        d.mmio_insn(0xFE00_0010, 0, false),
        Err(Unhandleable::Decode)
    );
    // RIP itself unmapped, non-canonical, or past the domain's RAM through its tables.
    for rip in [GVA + 0x2000, 0x8000_0000_0000_0000, 0x0000_8000_0000_0000] {
        m.doms[0].as_mut().unwrap().vcpu().rip = rip;
        let d = m.doms[0].as_mut().unwrap();
        assert_eq!(d.mmio_insn(0xFE00_0010, 0, false), Err(Unhandleable::Fetch));
    }
    m.put(0, 0x13000 + 2 * 8, &((DOMAIN_MEM + 0x1000) | 3));
    m.doms[0].as_mut().unwrap().vcpu().rip = GVA + 0x2000;
    let d = m.doms[0].as_mut().unwrap();
    assert_eq!(d.mmio_insn(0xFE00_0010, 0, false), Err(Unhandleable::Fetch));
    // The size bit in the PML4 is reserved.
    m.put(0, 0x10000, &(0x11000u64 | 0x83));
    m.doms[0].as_mut().unwrap().vcpu().rip = GVA;
    let d = m.doms[0].as_mut().unwrap();
    assert_eq!(d.mmio_insn(0xFE00_0010, 0, false), Err(Unhandleable::Fetch));
    m.put(0, 0x10000, &(0x11000u64 | 3));
    // A page-table entry not present.
    m.put(0, 0x11000, &0u64);
    let d = m.doms[0].as_mut().unwrap();
    assert_eq!(d.mmio_insn(0xFE00_0010, 0, false), Err(Unhandleable::Fetch));
    m.put(0, 0x11000, &(0x12000u64 | 3));
    // Not a data access, an event in delivery, compatibility mode, 5-level paging.
    at(&mut m, GVA, 0x20000, &[0x8B, 0x07]);
    let d = m.doms[0].as_mut().unwrap();
    assert!(d.mmio_insn(0xFE00_0010, 0, false).is_ok());
    for flags in [1 << 4, 1 << 33, 1 << 3] {
        assert_eq!(
            d.mmio_insn(0xFE00_0010, flags, false),
            Err(Unhandleable::NotData)
        );
    }
    assert_eq!(
        d.mmio_insn(0xFE00_0010, 0, true),
        Err(Unhandleable::NotData)
    );
    d.vcpu().compat = true;
    assert_eq!(d.mmio_insn(0xFE00_0010, 0, false), Err(Unhandleable::Mode));
    d.vcpu().compat = false;
    d.vcpu().cr4 = 1 << 12;
    assert_eq!(d.mmio_insn(0xFE00_0010, 0, false), Err(Unhandleable::Fetch));
    // Nothing was emulated: RIP never moved.
    assert_eq!(d.vcpu().rip, GVA);
}
