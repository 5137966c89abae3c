//! MMIO instruction emulation: a guest access to a trapped device range (never mapped
//! in its nested page table) exits as a nested page fault, and QEMU's SVM gives no
//! decode assist, so the instruction at RIP is fetched through the guest's own page
//! tables and the guest-memory API (its RAM only), decoded by `iced-x86`, and only the
//! forms Linux's `readb/w/l/q` and `writeb/w/l/q` produce are emulated: MOV r<->m,
//! MOV imm->m, MOVZX loads, 1/2/4/8 bytes. Anything else, a fault on the way, a memory
//! operand that is not the faulting address, or an access crossing a page is
//! unhandleable: the caller crashes the domain with the reason (as Xen's
//! X86EMUL_UNHANDLEABLE on an MMIO exit), the hypervisor carries on.

use crate::domain::Domain;
use crate::mm::PAGE;
use crate::virt::{VcpuState, VirtBackend};
use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction, OpKind, Register};

/// The longest x86 instruction.
pub const MAX_INSN: usize = 15;

/// Why an MMIO exit cannot be emulated (the domain is crashed with this reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhandleable {
    /// Not 64-bit code (or 5-level paging): only long-mode guests are decoded.
    Mode,
    /// The fault came while an event was delivered, or on an instruction fetch or a
    /// guest page-table access: no data access of the instruction at RIP.
    NotData,
    /// RIP's first byte is not readable guest RAM through its page tables.
    Fetch,
    /// The bytes are no instruction (or need more bytes than could be read).
    Decode,
    /// A valid instruction this emulator does not do (its iced-x86 code).
    Unsupported(Code),
    /// A LOCK or FS/GS segment prefix, or a register operand where memory is needed.
    Form,
    /// The instruction reads where the fault says write, or the reverse.
    Direction,
    /// The memory operand is not the faulting guest-physical address.
    Address,
    /// The access crosses a page, or leaves the trapped range.
    Straddle,
}

impl core::fmt::Display for Unhandleable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unhandleable::Mode => f.write_str("not 64-bit code"),
            Unhandleable::NotData => f.write_str("not a data access of the instruction at rip"),
            Unhandleable::Fetch => f.write_str("instruction bytes not readable"),
            Unhandleable::Decode => f.write_str("undecodable instruction"),
            Unhandleable::Unsupported(c) => write!(f, "instruction {:?} not emulated", c),
            Unhandleable::Form => f.write_str("prefix or operand form not emulated"),
            Unhandleable::Direction => f.write_str("access direction differs from the fault"),
            Unhandleable::Address => f.write_str("memory operand is not the faulting address"),
            Unhandleable::Straddle => f.write_str("access crosses a page or the trapped range"),
        }
    }
}

/// Where a load's value goes: general-purpose register `n` (0 = RAX .. 15 = R15), with
/// the architectural rule for its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Bits 7:0 (others kept).
    Low8(u8),
    /// Bits 15:8: AH, CH, DH, BH (others kept).
    High8(u8),
    /// Bits 15:0 (others kept).
    W16(u8),
    /// Bits 31:0, zero-extended into 63:32.
    W32(u8),
    W64(u8),
}

/// One decoded MMIO access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInsn {
    /// Its length (RIP advances by it).
    pub len: u8,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// A store of this value (low `size` bytes), or a load into `Dest`.
    pub op: MmioOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioOp {
    Store(u64),
    Load(Dest),
}

/// A general-purpose register's number (0 = RAX .. 15 = R15), width in bytes and
/// whether it is a high byte (AH, CH, DH, BH); None for any other register. (From
/// iced-x86's register order, which its documentation fixes.)
fn gpr(reg: Register) -> Option<(u8, u8, bool)> {
    let r = reg as u32;
    let from = |first: Register, last: Register| {
        (first as u32..=last as u32)
            .contains(&r)
            .then(|| (r - first as u32) as u8)
    };
    if let Some(n) = from(Register::AL, Register::BL) {
        Some((n, 1, false))
    } else if let Some(n) = from(Register::AH, Register::BH) {
        Some((n, 1, true))
    } else if let Some(n) = from(Register::SPL, Register::R15L) {
        Some((n + 4, 1, false))
    } else if let Some(n) = from(Register::AX, Register::R15W) {
        Some((n, 2, false))
    } else if let Some(n) = from(Register::EAX, Register::R15D) {
        Some((n, 4, false))
    } else {
        from(Register::RAX, Register::R15).map(|n| (n, 8, false))
    }
}

/// Register `reg`'s value from `gprs` (RAX..R15 by number); None for any other register.
fn reg_value(gprs: &[u64; 16], reg: Register) -> Option<u64> {
    let (n, width, high) = gpr(reg)?;
    let full = gprs[n as usize];
    Some(if high {
        (full >> 8) & 0xFF
    } else {
        full & mask(width)
    })
}

fn dest(reg: Register) -> Option<Dest> {
    let (n, width, high) = gpr(reg)?;
    Some(match (width, high) {
        (1, true) => Dest::High8(n),
        (1, false) => Dest::Low8(n),
        (2, _) => Dest::W16(n),
        (4, _) => Dest::W32(n),
        _ => Dest::W64(n),
    })
}

fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// Decodes `bytes` (what could be read at `rip`, at most 15) as 64-bit code and checks
/// it is an emulated MMIO access whose memory operand is at guest-virtual address
/// offset `page_off` within its page (the faulting address's), of direction `write`.
/// `gpr` are the registers RAX..R15 (for the address and a stored register).
pub fn decode(
    bytes: &[u8],
    rip: u64,
    gpr: &[u64; 16],
    write: bool,
    page_off: u64,
) -> Result<MmioInsn, Unhandleable> {
    let bytes = &bytes[..bytes.len().min(MAX_INSN)];
    let mut decoder = Decoder::with_ip(64, bytes, rip, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    decoder.decode_out(&mut insn);
    if insn.is_invalid() || decoder.last_error() != DecoderError::None {
        return Err(Unhandleable::Decode);
    }
    // (memory operand, store or load, bytes)
    let (mem_op, store, size) = match insn.code() {
        Code::Mov_rm8_r8 | Code::Mov_rm8_imm8 => (0, true, 1),
        Code::Mov_rm16_r16 | Code::Mov_rm16_imm16 => (0, true, 2),
        Code::Mov_rm32_r32 | Code::Mov_rm32_imm32 => (0, true, 4),
        Code::Mov_rm64_r64 | Code::Mov_rm64_imm32 => (0, true, 8),
        Code::Mov_r8_rm8 | Code::Movzx_r16_rm8 | Code::Movzx_r32_rm8 | Code::Movzx_r64_rm8 => {
            (1, false, 1)
        }
        Code::Mov_r16_rm16 | Code::Movzx_r16_rm16 | Code::Movzx_r32_rm16 | Code::Movzx_r64_rm16 => {
            (1, false, 2)
        }
        Code::Mov_r32_rm32 => (1, false, 4),
        Code::Mov_r64_rm64 => (1, false, 8),
        c => return Err(Unhandleable::Unsupported(c)),
    };
    if insn.op_kind(mem_op) != OpKind::Memory
        || insn.has_lock_prefix()
        || matches!(insn.memory_segment(), Register::FS | Register::GS)
    {
        return Err(Unhandleable::Form);
    }
    if store != write {
        return Err(Unhandleable::Direction);
    }
    // The linear address (ES/CS/SS/DS bases are 0 in 64-bit mode): its page offset must
    // be the fault's, and the access must stay in that page.
    let ea = insn
        .virtual_address(mem_op, 0, |r, _, _| match r {
            Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
            r => reg_value(gpr, r),
        })
        .ok_or(Unhandleable::Form)?;
    if ea & (PAGE - 1) != page_off {
        return Err(Unhandleable::Address);
    }
    if page_off + u64::from(size) > PAGE {
        return Err(Unhandleable::Straddle);
    }
    let other = 1 - mem_op;
    let op = if store {
        let v = match insn.op_kind(other) {
            OpKind::Register => {
                reg_value(gpr, insn.op_register(other)).ok_or(Unhandleable::Form)?
            }
            // imm32 sign-extended to 64 bits for MOV r/m64, imm32.
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64 => insn.immediate(other),
            _ => return Err(Unhandleable::Form),
        };
        MmioOp::Store(v & mask(size))
    } else {
        if insn.op_kind(other) != OpKind::Register {
            return Err(Unhandleable::Form);
        }
        MmioOp::Load(dest(insn.op_register(other)).ok_or(Unhandleable::Form)?)
    };
    Ok(MmioInsn {
        len: insn.len() as u8,
        size,
        op,
    })
}

/// RAX..R15 of a vCPU.
pub fn gprs<V: VcpuState>(v: &mut V) -> [u64; 16] {
    let rax = v.rax();
    let rsp = v.rsp();
    let r = v.regs();
    [
        rax, r.rcx, r.rdx, r.rbx, rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
        r.r14, r.r15,
    ]
}

fn set_gpr<V: VcpuState>(v: &mut V, n: u8, val: u64) {
    match n {
        0 => v.set_rax(val),
        4 => v.set_rsp(val),
        _ => {
            let r = v.regs();
            let slot = match n {
                1 => &mut r.rcx,
                2 => &mut r.rdx,
                3 => &mut r.rbx,
                5 => &mut r.rbp,
                6 => &mut r.rsi,
                7 => &mut r.rdi,
                8 => &mut r.r8,
                9 => &mut r.r9,
                10 => &mut r.r10,
                11 => &mut r.r11,
                12 => &mut r.r12,
                13 => &mut r.r13,
                14 => &mut r.r14,
                _ => &mut r.r15,
            };
            *slot = val;
        }
    }
}

/// Writes a load's `value` (already `size` bytes wide) to its destination register.
pub fn load_into<V: VcpuState>(v: &mut V, d: Dest, value: u64) {
    let (n, keep, val) = match d {
        Dest::Low8(n) => (n, !0xFF, value & 0xFF),
        Dest::High8(n) => (n, !0xFF00, (value & 0xFF) << 8),
        Dest::W16(n) => (n, !0xFFFF, value & 0xFFFF),
        Dest::W32(n) => (n, 0, value & 0xFFFF_FFFF),
        Dest::W64(n) => (n, 0, value),
    };
    let old = gprs(v)[n as usize];
    set_gpr(v, n, (old & keep) | val);
}

impl<B: VirtBackend + Clone> Domain<B> {
    /// Decodes the instruction of the current vCPU behind a nested page fault at `gpa`
    /// (`flags`: the fault's EXITINFO1) in a trapped range: paging through the guest's
    /// tables, bytes through the guest-memory API (a page after the first that is not
    /// readable just ends them; the decoder then needs them or not).
    pub fn mmio_insn(
        &mut self,
        gpa: u64,
        flags: u64,
        delivering: bool,
    ) -> Result<MmioInsn, Unhandleable> {
        // EXITINFO1: bit 1 write, bit 3 reserved bit, bit 4 instruction fetch, bit 33
        // the guest's own page-table walk.
        if delivering || flags & (1 << 3 | 1 << 4 | 1 << 33) != 0 {
            return Err(Unhandleable::NotData);
        }
        let v = self.vcpu();
        if !v.code64() {
            return Err(Unhandleable::Mode);
        }
        let rip = v.rip();
        let gpr = gprs(v);
        let mut bytes = [0u8; MAX_INSN];
        let first = ((PAGE - (rip & (PAGE - 1))) as usize).min(MAX_INSN);
        let g = self.gva_to_gpa(rip).map_err(|_| Unhandleable::Fetch)?;
        self.read_gpa(g, &mut bytes[..first])
            .map_err(|_| Unhandleable::Fetch)?;
        let mut n = first;
        if first < MAX_INSN {
            let next = rip.wrapping_add(first as u64);
            if let Ok(g) = self.gva_to_gpa(next) {
                if self.read_gpa(g, &mut bytes[first..]).is_ok() {
                    n = MAX_INSN;
                }
            }
        }
        decode(&bytes[..n], rip, &gpr, flags & 2 != 0, gpa & (PAGE - 1))
    }

    /// Completes an emulated access: a load's `value` into its register, RIP past it.
    pub fn mmio_complete(&mut self, insn: &MmioInsn, value: u64) {
        let v = self.vcpu();
        if let MmioOp::Load(d) = insn.op {
            load_into(v, d, value & mask(insn.size));
        }
        let rip = v.rip();
        v.set_rip(rip.wrapping_add(u64::from(insn.len)));
    }
}
