//! Host unit tests of the hypervisor's core over the fake machine: each test builds its
//! own machine (a frame allocator over 48 MiB of fake RAM, domains from a tiny PVH ELF)
//! and drives the same code the hypervisor runs, guest arguments in guest memory.

#[cfg(test)]
mod emulate;
#[cfg(test)]
mod grant;
#[cfg(test)]
mod hvm;
#[cfg(test)]
mod image;
#[cfg(test)]
mod memory;
#[cfg(test)]
mod misc;
#[cfg(test)]
mod mmio;
#[cfg(test)]
mod multiboot;
#[cfg(test)]
mod npt;
#[cfg(test)]
mod tlb;
#[cfg(test)]
mod vpci;
mod vsmp;

use crate::addr::{Gpa, Hpa};
use crate::arch::{phys, svm::Svm};
use crate::domain::{Domain, DomainSpec};
use crate::hypercall::Progress;
use crate::mm::FrameAllocator;
use crate::time::Clock;
use sluice_abi::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantEntryV1,
};
use sluice_abi::hypercall::XenErrno;
use std::prelude::rust_2021::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Where the fake RAM is, and the test guest image (outside it, as a boot module).
const RAM: (u64, u64) = (16 << 20, 64 << 20);
const IMAGE: u64 = 4 << 20;
/// Each domain's memory.
const DOMAIN_MEM: u64 = 2 << 20;
/// Where helpers put a hypercall's argument in the caller's memory (paging is off in
/// the fake vCPUs, so a guest-virtual address is the guest-physical one).
pub const ARG: u64 = 0x8000;
pub const HOST_MAP: u32 = 1 << 1;
pub const READONLY: u32 = 1 << 2;
pub const GTF_READING: u16 = 1 << 3;
pub const GTF_WRITING: u16 = 1 << 4;

pub struct Machine {
    pub fa: FrameAllocator,
    pub doms: Vec<Option<Domain>>,
    /// Frames handed out before any domain existed (the frame table, ...).
    pub base: u64,
    /// Hypercall entries the last `grant_batch` took (continuations + 1).
    pub entries: u32,
}

/// A minimal PVH ELF: one 16-byte PT_LOAD at 1 MiB, the PHYS32 entry note.
fn elf() -> Vec<u8> {
    let mut e = vec![0u8; 0x200];
    e[..6].copy_from_slice(b"\x7fELF\x02\x01");
    e[32..40].copy_from_slice(&64u64.to_le_bytes());
    e[54..56].copy_from_slice(&56u16.to_le_bytes());
    e[56..58].copy_from_slice(&2u16.to_le_bytes());
    let ph = |e: &mut Vec<u8>, at: usize, ty: u32, off: u64, paddr: u64, sz: u64| {
        e[at..at + 4].copy_from_slice(&ty.to_le_bytes());
        e[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        e[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
        e[at + 32..at + 40].copy_from_slice(&sz.to_le_bytes());
        e[at + 40..at + 48].copy_from_slice(&sz.to_le_bytes());
    };
    ph(&mut e, 64, 1, 0x100, 0x10_0000, 16);
    ph(&mut e, 120, 4, 0x180, 0, 20);
    let note = [4u32, 4, 18, u32::from_le_bytes(*b"Xen\0"), 0x10_0000];
    for (i, w) in note.iter().enumerate() {
        e[0x180 + 4 * i..0x184 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    e
}

/// A machine with `n` domains (ids 1..=n at indices 0..n).
pub fn machine(n: usize) -> Machine {
    let (mut fa, spec) = allocator();
    let base = fa.handed_out;
    let svm = Svm::new();
    let doms = (1..=n as u16)
        .map(|id| Some(Domain::create(&svm, &mut fa, id, &spec, Clock::calibrate()).unwrap()))
        .collect();
    Machine {
        fa,
        doms,
        base,
        entries: 0,
    }
}

/// A frame allocator over the fake RAM (frame table set up), and the spec of a domain
/// of the test image.
pub fn allocator() -> (FrameAllocator, DomainSpec<'static>) {
    let mut fa = FrameAllocator::new();
    fa.add_region(RAM.0, RAM.1);
    // A boot module inside the RAM (never handed out).
    fa.reserve(RAM.0 + 0x10_0000, RAM.0 + 0x12_0000);
    assert!(fa.init_frame_table());
    (fa, spec())
}

/// The spec of a domain of the test image (written where it lives).
pub fn spec() -> DomainSpec<'static> {
    let image = elf();
    phys::write(IMAGE, &image);
    DomainSpec {
        name: "t",
        image: (IMAGE, IMAGE + image.len() as u64),
        mem_bytes: DOMAIN_MEM,
        cmdline: "",
        vcpus: 1,
        initrd: None,
    }
}

impl Machine {
    pub fn d(&self, i: usize) -> &Domain {
        self.doms[i].as_ref().unwrap()
    }

    /// Writes `v` at ARG in domain `i`'s memory.
    pub fn put<T: IntoBytes + Immutable>(&self, i: usize, gpa: u64, v: &T) {
        self.d(i).write_gpa(Gpa(gpa), v.as_bytes()).unwrap();
    }

    pub fn get<T: FromBytes + IntoBytes + KnownLayout>(&self, i: usize, gpa: u64) -> T {
        let mut v = T::new_zeroed();
        self.d(i).read_gpa(Gpa(gpa), v.as_mut_bytes()).unwrap();
        v
    }

    /// The host address of guest-physical `gpa` of domain `i` (reading).
    pub fn hpa(&self, i: usize, gpa: u64) -> Hpa {
        self.d(i)
            .translate(Gpa(gpa), crate::domain::Access::Read)
            .unwrap()
    }

    /// Domain `i` grants its page at `gpa` to domain id `to` as `gref`.
    pub fn grant(&self, i: usize, gref: u32, to: u16, gpa: u64, readonly: bool) {
        let e = GrantEntryV1::permit_access(to, (gpa >> 12) as u32, readonly);
        let pa = self.entry_pa(i, gref);
        phys::write(pa, e.as_bytes());
    }

    pub fn entry_pa(&self, i: usize, gref: u32) -> u64 {
        self.d(i).grant.frames[(gref / 512) as usize].0 + (gref % 512) as u64 * 8
    }

    pub fn flags(&self, i: usize, gref: u32) -> u16 {
        let mut b = [0u8; 2];
        phys::read(self.entry_pa(i, gref), &mut b);
        u16::from_le_bytes(b) & (GTF_READING | GTF_WRITING)
    }

    fn gnttab<T: FromBytes + IntoBytes + Immutable + KnownLayout>(
        &mut self,
        i: usize,
        cmd: u64,
        op: &T,
    ) -> (Result<i64, XenErrno>, T) {
        self.put(i, ARG, op);
        let r = self.grant_batch(i, cmd, ARG, 1);
        (r, self.get(i, ARG))
    }

    /// A grant-op batch as a guest runs it: re-entered with the continuation's
    /// arguments (cmd, handle, count) while the hypervisor preempts it; the number of
    /// entries it took is in `self.entries`.
    pub fn grant_batch(
        &mut self,
        i: usize,
        cmd: u64,
        arg: u64,
        count: u64,
    ) -> Result<i64, XenErrno> {
        let (mut cmd, mut arg, mut count) = (cmd, arg, count);
        self.entries = 0;
        loop {
            self.entries += 1;
            match crate::grant::grant_table_op(&mut self.doms, i, &mut self.fa, cmd, arg, count)? {
                Progress::Done(r) => return Ok(r),
                Progress::Preempted([c, a, n]) => (cmd, arg, count) = (c, a, n),
            }
        }
    }

    /// GNTTABOP_map_grant_ref by domain `i`: (status, handle).
    pub fn map(&mut self, i: usize, dom: u16, gref: u32, gpa: u64, flags: u32) -> (i16, u32) {
        let op = GnttabMapGrantRef {
            host_addr: gpa,
            flags,
            gref,
            dom,
            ..Default::default()
        };
        let (r, op) = self.gnttab(i, 0, &op);
        assert_eq!(r, Ok(0));
        (op.status, op.handle)
    }

    pub fn unmap(&mut self, i: usize, gpa: u64, handle: u32) -> i16 {
        let op = GnttabUnmapGrantRef {
            host_addr: gpa,
            handle,
            ..Default::default()
        };
        let (r, op) = self.gnttab(i, 1, &op);
        assert_eq!(r, Ok(0));
        op.status
    }

    /// GNTTABOP_copy of 16 bytes by domain `i`.
    pub fn copy(&mut self, i: usize, src: GnttabCopyPtr, dst: GnttabCopyPtr, flags: u16) -> i16 {
        let op = GnttabCopy {
            source: src,
            dest: dst,
            len: 16,
            flags,
            ..Default::default()
        };
        let (r, op) = self.gnttab(i, 5, &op);
        assert_eq!(r, Ok(0));
        op.status
    }

    /// Tears domain `i` down as the scheduler does (grants released, then destroyed).
    pub fn kill(&mut self, i: usize) {
        crate::evtchn::close_all(&mut self.doms, i);
        crate::grant::release_all(&mut self.doms, i, &mut self.fa);
        self.doms[i].as_mut().unwrap().destroy(&mut self.fa);
        self.doms[i] = None;
        for d in self.doms.iter().flatten() {
            assert_eq!(
                d.audit(&mut self.fa),
                0,
                "d{} reaches a frame it may not",
                d.id
            );
        }
    }
}
