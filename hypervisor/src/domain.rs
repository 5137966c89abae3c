//! Domains: guest-physical memory behind one nested page table each, a PVH ELF loaded
//! into it, its vCPUs, and their teardown.

use crate::addr::{Gpa, Hpa};
use alloc::vec::Vec;

mod memory;
mod mmio;
mod npt;
use crate::arch::phys;
use crate::arch::svm::Svm;
use crate::evtchn::{Port, NR_PORTS};
use crate::mm::{FrameAllocator, PAGE};
use crate::time::Clock;
use crate::virt::{VcpuState, VirtBackend};
pub use mmio::MmioCost;
pub use npt::LARGE;
use sluice_abi::hypercall::XenErrno;
use sluice_abi::start_info::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, XEN_ELFNOTE_PHYS32_ENTRY,
};
use zerocopy::IntoBytes;

const NPT_FLAGS: u64 = 0x7; // present, writable, user (NPT walks are user accesses)
const NPT_WRITABLE: u64 = 0x2;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

pub const START_INFO_GPA: Gpa = Gpa(0x1000);
const CMDLINE_GPA: Gpa = Gpa(0x2000);
const MEMMAP_GPA: Gpa = Gpa(0x3000);
/// The start info's module list (one entry: the initrd), after the memory map.
const MODLIST_GPA: Gpa = Gpa(0x3800);
/// The guest's ACPI tables (crate::guest_acpi), in the reserved hole below 1 MiB.
const ACPI_GPA: Gpa = Gpa(0xE_0000);

/// vCPUs a domain may have (`vcpus=N` on its command line; vCPU 0 starts at the PVH
/// entry, the others are started by VCPUOP_initialise + VCPUOP_up).
pub const MAX_VCPUS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// A secondary vCPU not brought up yet (or taken down: VCPUOP_down).
    Down,
    Runnable,
    /// Waiting for an event (SCHEDOP_block, HLT).
    Blocked,
    Dead,
}

/// One vCPU's scheduling state.
pub struct Vcpu<V> {
    /// Its architectural state; `None` while a CPU runs it (that CPU holds it), and for
    /// a secondary vCPU before VCPUOP_initialise.
    pub slot: Option<V>,
    pub state: RunState,
    /// The CPU running it now, and the one that ran it last.
    pub running_on: Option<usize>,
    pub last_cpu: Option<usize>,
    /// Its nested page table changed while it ran: flush before its next run.
    pub flush_pending: bool,
    /// Its VMCB frame (0: the domain has fewer vCPUs).
    vmcb: Hpa,
    /// Its emulated local APIC (x2APIC mode).
    pub lapic: crate::vlapic::VLapic,
}

impl<V> Vcpu<V> {
    const fn none() -> Vcpu<V> {
        Vcpu {
            slot: None,
            state: RunState::Down,
            running_on: None,
            last_cpu: None,
            flush_pending: false,
            vmcb: Hpa(0),
            lapic: crate::vlapic::VLapic {
                tpr: 0,
                svr: 0xFF,
                lvt: [1 << 16; 7],
                esr: 0,
                tmict: 0,
                tdcr: 0,
                isr: [0; 4],
            },
        }
    }
}

/// What an access through the guest-memory API does: a write needs the nested page
/// table entry writable (a read-only grant mapping stays read-only for the hypervisor
/// writing on the guest's behalf too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A domain on virtualisation backend `B` (the hypervisor's is SVM, the host tests' a
/// fake: the domain reaches its vCPUs only through [`VirtBackend`] and [`VcpuState`]).
pub struct Domain<B: VirtBackend = Svm> {
    pub id: u16,
    pub name: [u8; 32],
    pub name_len: usize,
    pub mem_bytes: u64,
    /// It asked for devices (`assign=`): an ECAM window in its ACPI and E820.
    pub ecam: bool,
    npt_root: Hpa,
    /// Its vCPUs (`nr_vcpus` of them exist).
    pub vcpus: [Vcpu<B::Vcpu>; MAX_VCPUS],
    pub nr_vcpus: usize,
    /// The vCPU whose exit is being handled, and where the scheduler looks first.
    pub cur: usize,
    pub next_vcpu: usize,
    /// Per CPU: which of its vCPUs ran there last under the domain's ASID (another one
    /// there needs a TLB flush: they share the ASID).
    pub last_vcpu_on: [u8; crate::arch::smp::MAX_CPUS],
    /// Shut down or killed: no vCPU runs again; torn down once none is on a CPU.
    pub dying: bool,
    /// The reason its guest gave with SCHEDOP_shutdown (none when killed).
    pub shutdown_reason: Option<u32>,
    /// Slices one of its vCPUs began while another of them ran on another CPU.
    pub side_by_side: u64,
    /// The backend, for secondary vCPUs' VMCBs.
    svm: B,
    pub console: [u8; 160],
    pub console_len: usize,
    pub console_rate: crate::hypercall::ConsoleRate,
    /// The shared_info frame (pending/mask bitmaps, vcpu_info); in the guest's physmap
    /// once it asks (XENMEM_add_to_physmap).
    pub shared_info: Hpa,
    /// Where shared_info is mapped, and the RAM frame it displaced there.
    pub shared_info_at: Option<(Gpa, Hpa)>,
    pub evtchn: [Port; NR_PORTS],
    /// The grant table frames (v1 entries, 512 a frame): the first `nr_grant_frames`
    /// are allocated (frame 0 at creation, the rest on demand by GNTTABOP_setup_table
    /// or add_to_physmap), and where the guest mapped each (with the RAM it displaced).
    /// (On the heap: the domains are built on the boot stack.)
    pub grant: alloc::boxed::Box<crate::grant::GrantFrames>,
    pub nr_grant_frames: u32,
    pub clock: Clock,
    /// Per vCPU: timers, polls, VIRQ_TIMER ports; per port the vCPU it notifies.
    pub smp: alloc::boxed::Box<crate::vsmp::Smp>,
    /// Grant mappings this domain holds (GNTTABOP_map_grant_ref handles).
    pub grant_maps: [Option<crate::grant::GrantMap>; crate::grant::MAX_MAPS],
    /// Times the LAPIC tick ended its slice.
    pub preemptions: u64,
    /// 2 MiB leaves of its nested page table split into 4 KiB ones, and merged back.
    pub npt_splits: u64,
    pub npt_merges: u64,
    /// Its IOMMU domains (empty: device assignment is a later step), when an IOMMU is up.
    pub iommu: Option<crate::iommu::IommuDomain>,
    /// Its assigned PCI functions (`assign=`), if any.
    pub pci: Option<alloc::boxed::Box<crate::vpci::DomainPci>>,
    /// An ICR write was logged (once per domain).
    pub icr_logged: bool,
    /// Where each vCPU registered its vcpu_info (VCPUOP_register_vcpu_info); until
    /// then it is shared_info's `vcpu_info[k]`.
    pub vcpu_info_at: [Option<Gpa>; MAX_VCPUS],
    /// HVM_PARAM_CALLBACK_IRQ as set (the vector type: upcalls as that vector).
    pub callback_irq: u64,
    /// Guest MSR accesses answered with #GP (the first few are logged).
    pub msr_refused: u32,
    /// Each vCPU's runstate (crate::hvm::Runstate) and where it is published.
    /// (On the heap: the domains are built on the boot stack.)
    pub runstate: alloc::boxed::Box<[crate::hvm::Runstate; MAX_VCPUS]>,
}

/// What a domain is built from.
#[derive(Clone, Copy)]
pub struct DomainSpec<'a> {
    pub name: &'a str,
    /// Host-physical range of the PVH ELF image.
    pub image: (u64, u64),
    pub mem_bytes: u64,
    pub cmdline: &'a str,
    pub vcpus: usize,
    /// Host-physical range of an initrd, passed as the start info's module 0.
    pub initrd: Option<(u64, u64)>,
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug in the log
pub enum CreateError {
    NoMemory,
    BadElf(&'static str),
    /// Its ASID (the domain id) is beyond what the CPU offers.
    NoAsid,
    /// The command line does not fit its page with the terminating NUL.
    CmdlineTooLong,
}

/// Reads `buf.len()` bytes of the boot image at offset `off`, refusing reads past its end.
fn image_read(image: (u64, u64), off: u64, buf: &mut [u8]) -> Result<(), CreateError> {
    let end = off
        .checked_add(buf.len() as u64)
        .ok_or(CreateError::BadElf("offset overflow"))?;
    if image.0 + end > image.1 {
        return Err(CreateError::BadElf("truncated"));
    }
    phys::read(image.0 + off, buf);
    Ok(())
}

fn rd<const N: usize>(image: (u64, u64), off: u64) -> Result<[u8; N], CreateError> {
    let mut b = [0u8; N];
    image_read(image, off, &mut b)?;
    Ok(b)
}

fn u16_at(image: (u64, u64), off: u64) -> Result<u64, CreateError> {
    Ok(u16::from_le_bytes(rd(image, off)?) as u64)
}
fn u32_at(image: (u64, u64), off: u64) -> Result<u64, CreateError> {
    Ok(u32::from_le_bytes(rd(image, off)?) as u64)
}
fn u64_at(image: (u64, u64), off: u64) -> Result<u64, CreateError> {
    Ok(u64::from_le_bytes(rd(image, off)?))
}

impl<B: VirtBackend + Clone> Domain<B> {
    /// Builds a domain of `mem_bytes` from the ELF image at host-physical `image` with
    /// a PVH entry note, `cmdline` passed through the start info.
    pub fn create(
        svm: &B,
        fa: &mut FrameAllocator,
        id: u16,
        spec: &DomainSpec,
        clock: Clock,
    ) -> Result<Domain<B>, CreateError> {
        let DomainSpec {
            name,
            image,
            mem_bytes,
            cmdline,
            vcpus: nr_vcpus,
            initrd,
        } = *spec;
        let nr_vcpus = nr_vcpus.clamp(1, MAX_VCPUS);
        if id == 0 || id as u32 >= svm.asids() {
            return Err(CreateError::NoAsid);
        }
        let npt_root = Hpa(fa.alloc().ok_or(CreateError::NoMemory)?);
        let vmcb = match fa.alloc() {
            Some(v) => Hpa(v),
            None => {
                fa.free(npt_root.0);
                return Err(CreateError::NoMemory);
            }
        };
        let shared_info = match fa.alloc() {
            Some(f) => Hpa(f),
            None => {
                fa.free(npt_root.0);
                fa.free(vmcb.0);
                return Err(CreateError::NoMemory);
            }
        };
        let Some(grant_frame) = fa.alloc() else {
            fa.free(npt_root.0);
            fa.free(vmcb.0);
            fa.free(shared_info.0);
            return Err(CreateError::NoMemory);
        };
        let mut nm = [0u8; 32];
        let n = name.len().min(32);
        nm[..n].copy_from_slice(&name.as_bytes()[..n]);
        let mut d = Domain {
            id,
            name: nm,
            name_len: n,
            mem_bytes,
            ecam: crate::vpci::wants_devices(cmdline),
            npt_root,
            vcpus: [const { Vcpu::none() }; MAX_VCPUS],
            nr_vcpus: 1,
            cur: 0,
            next_vcpu: 0,
            last_vcpu_on: [0; crate::arch::smp::MAX_CPUS],
            dying: false,
            shutdown_reason: None,
            side_by_side: 0,
            svm: svm.clone(),
            console: [0; 160],
            console_len: 0,
            console_rate: Default::default(),
            shared_info,
            shared_info_at: None,
            evtchn: [Port::Free; NR_PORTS],
            grant: {
                let mut g = alloc::boxed::Box::new(crate::grant::GrantFrames {
                    frames: [Hpa(0); crate::grant::MAX_GRANT_FRAMES],
                    at: [None; crate::grant::MAX_GRANT_FRAMES],
                    active: alloc::vec::Vec::new(),
                });
                g.frames[0] = Hpa(grant_frame);
                g
            },
            nr_grant_frames: 1,
            clock,
            smp: Default::default(),
            grant_maps: [None; crate::grant::MAX_MAPS],
            preemptions: 0,
            npt_splits: 0,
            npt_merges: 0,
            iommu: None,
            pci: None,
            icr_logged: false,
            vcpu_info_at: [None; MAX_VCPUS],
            callback_irq: 0,
            msr_refused: 0,
            runstate: Default::default(),
        };
        d.vcpus[0].vmcb = vmcb;
        d.vcpus[0].state = RunState::Runnable;
        for k in 1..nr_vcpus {
            match fa.alloc() {
                Some(f) => d.vcpus[k].vmcb = Hpa(f),
                None => {
                    d.destroy(fa);
                    return Err(CreateError::NoMemory);
                }
            }
            d.nr_vcpus += 1;
        }
        match d.populate(fa, image, cmdline, initrd) {
            Ok(entry) => {
                d.vcpus[0].slot = Some(svm.create_vcpu(
                    vmcb.0,
                    id as u32,
                    npt_root.0,
                    entry,
                    START_INFO_GPA.0 as u32,
                ));
                Ok(d)
            }
            Err(e) => {
                d.destroy(fa);
                Err(e)
            }
        }
    }

    /// The vCPU whose exit is handled (it is back in the domain then).
    pub fn vcpu(&mut self) -> &mut B::Vcpu {
        self.vcpus[self.cur]
            .slot
            .as_mut()
            .expect("the vCPU is back in its domain while its exit is handled")
    }

    /// Whether any of its vCPUs is on a CPU now.
    pub fn on_cpu(&self) -> bool {
        self.vcpus.iter().any(|v| v.running_on.is_some())
    }

    /// VCPUOP_initialise for secondary vCPU `k`: a 32-bit protected-mode start (paging
    /// as given) at `eip` with `esp` and `ebx`; the vCPU stays down until VCPUOP_up.
    pub fn init_secondary(
        &mut self,
        k: usize,
        eip: u32,
        esp: u32,
        ebx: u32,
    ) -> Result<(), XenErrno> {
        if k == 0 {
            return Err(XenErrno::Eexist);
        }
        if k >= self.nr_vcpus {
            return Err(XenErrno::Enoent);
        }
        let v = &mut self.vcpus[k];
        if v.slot.is_some() || v.state != RunState::Down {
            return Err(XenErrno::Eexist);
        }
        let mut cpu = self
            .svm
            .create_vcpu(v.vmcb.0, self.id as u32, self.npt_root.0, eip, ebx);
        cpu.set_rsp(esp as u64);
        v.slot = Some(cpu);
        Ok(())
    }

    /// A STARTUP IPI for secondary vCPU `k` (never started): real mode at
    /// `vector << 12`; the caller makes it runnable.
    pub fn start_real_mode(&mut self, k: usize, vector: u8) -> Result<(), XenErrno> {
        if k == 0 || k >= self.nr_vcpus {
            return Err(XenErrno::Enoent);
        }
        let v = &mut self.vcpus[k];
        if v.slot.is_some() || v.state != RunState::Down {
            return Err(XenErrno::Eexist);
        }
        let cpu = self
            .svm
            .create_vcpu_real(v.vmcb.0, self.id as u32, self.npt_root.0, vector);
        v.slot = Some(cpu);
        Ok(())
    }

    /// The domain's E820 map, as in its start info: its RAM, and for a domain with
    /// devices its ECAM window reserved (Linux takes an MCFG window only where the
    /// firmware reserved it).
    pub fn e820(&self) -> Vec<(u64, u64, u32)> {
        let mut map = alloc::vec![
            (0x4000, 0xA_0000 - 0x4000, 1),
            (0x10_0000, self.mem_bytes - 0x10_0000, 1),
        ];
        if self.ecam {
            map.push((crate::vpci::ECAM_GPA, crate::vpci::ECAM_SIZE, 2));
        }
        map
    }

    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    fn populate(
        &mut self,
        fa: &mut FrameAllocator,
        image: (u64, u64),
        cmdline: &str,
        initrd: Option<(u64, u64)>,
    ) -> Result<u32, CreateError> {
        let mut gpa = Gpa(0);
        while gpa.0 < self.mem_bytes {
            // RAM in 2 MiB leaves wherever an aligned contiguous run is free.
            if gpa.0.is_multiple_of(LARGE) && gpa.0 + LARGE <= self.mem_bytes {
                if let Some(base) = fa.alloc_contiguous(LARGE / PAGE, LARGE) {
                    let frames = (0..LARGE / PAGE).map(|i| Hpa(base + i * PAGE));
                    if self.map_large(fa, gpa, Hpa(base)).is_none() {
                        frames.for_each(|f| fa.free(f.0));
                        return Err(CreateError::NoMemory);
                    }
                    frames.for_each(|f| fa.assign(f, self.id));
                    gpa = Gpa(gpa.0 + LARGE);
                    continue;
                }
            }
            let frame = Hpa(fa.alloc().ok_or(CreateError::NoMemory)?);
            if self.map(fa, gpa, frame).is_none() {
                fa.free(frame.0);
                return Err(CreateError::NoMemory);
            }
            fa.assign(frame, self.id);
            gpa = Gpa(gpa.0 + PAGE);
        }
        let (entry, image_end) = self.load_elf(image)?;
        let module = match initrd {
            Some(range) => Some(self.load_initrd(range, image_end)?),
            None => None,
        };
        let memmap: Vec<HvmMemmapTableEntry> = self
            .e820()
            .into_iter()
            .map(|(addr, size, map_type)| HvmMemmapTableEntry {
                addr,
                size,
                map_type,
                reserved: 0,
            })
            .collect();
        let info = HvmStartInfo {
            magic: sluice_abi::start_info::XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            cmdline_paddr: CMDLINE_GPA.0,
            memmap_paddr: MEMMAP_GPA.0,
            memmap_entries: memmap.len() as u32,
            rsdp_paddr: ACPI_GPA.0 + crate::guest_acpi::RSDP_OFF as u64,
            nr_modules: module.is_some() as u32,
            modlist_paddr: if module.is_some() { MODLIST_GPA.0 } else { 0 },
            ..Default::default()
        };
        // The page at CMDLINE_GPA is zeroed RAM: the NUL after the line is already there.
        if cmdline.len() >= PAGE as usize {
            return Err(CreateError::CmdlineTooLong);
        }
        let cl = cmdline.as_bytes();
        let load = |d: &Domain<B>, gpa: Gpa, b: &[u8]| {
            d.write_gpa(gpa, b).map_err(|_| CreateError::NoMemory)
        };
        load(self, START_INFO_GPA, info.as_bytes())?;
        load(self, CMDLINE_GPA, cl)?;
        load(self, MEMMAP_GPA, memmap.as_bytes())?;
        load(
            self,
            ACPI_GPA,
            &crate::guest_acpi::build(ACPI_GPA.0, self.nr_vcpus, self.ecam),
        )?;
        if let Some(m) = module {
            load(self, MODLIST_GPA, m.as_bytes())?;
        }
        Ok(entry)
    }

    /// Copies an initrd to the top of guest memory (page-aligned, above the kernel's
    /// last segment, as a boot loader places it); returns its module-list entry.
    fn load_initrd(
        &self,
        range: (u64, u64),
        image_end: u64,
    ) -> Result<HvmModlistEntry, CreateError> {
        let size = range.1.saturating_sub(range.0);
        let at = self
            .mem_bytes
            .checked_sub(size.next_multiple_of(PAGE))
            .filter(|&at| at >= image_end.next_multiple_of(PAGE) && size > 0)
            .ok_or(CreateError::BadElf("initrd does not fit above the kernel"))?;
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < size {
            let n = (size - done).min(4096) as usize;
            phys::read(range.0 + done, &mut buf[..n]);
            self.write_gpa(Gpa(at + done), &buf[..n])
                .map_err(|_| CreateError::NoMemory)?;
            done += n as u64;
        }
        Ok(HvmModlistEntry {
            paddr: at,
            size,
            cmdline_paddr: 0,
            reserved: 0,
        })
    }

    /// Copies the PT_LOAD segments into guest memory; returns the PHYS32 entry point and
    /// the end of the highest segment.
    fn load_elf(&self, image: (u64, u64)) -> Result<(u32, u64), CreateError> {
        let ident: [u8; 6] = rd(image, 0)?;
        if ident[..4] != *b"\x7fELF" || ident[4] != 2 || ident[5] != 1 {
            return Err(CreateError::BadElf("not a little-endian ELF64"));
        }
        let phoff = u64_at(image, 32)?;
        let phentsize = u16_at(image, 54)?;
        let phnum = u16_at(image, 56)?;
        if phentsize < 56 {
            return Err(CreateError::BadElf("program header size"));
        }
        let mut entry = None;
        let mut image_end = 0;
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            let ty = u32_at(image, ph)?;
            let off = u64_at(image, ph + 8)?;
            let paddr = u64_at(image, ph + 24)?;
            let filesz = u64_at(image, ph + 32)?;
            let memsz = u64_at(image, ph + 40)?;
            match ty {
                1 => {
                    let end = paddr
                        .checked_add(memsz)
                        .ok_or(CreateError::BadElf("segment"))?;
                    if filesz > memsz || end > self.mem_bytes {
                        return Err(CreateError::BadElf("segment outside the domain's memory"));
                    }
                    image_end = image_end.max(end);
                    let mut buf = [0u8; 512];
                    let mut done = 0;
                    while done < filesz {
                        let n = (filesz - done).min(512) as usize;
                        image_read(image, off + done, &mut buf[..n])?;
                        self.write_gpa(Gpa(paddr + done), &buf[..n])
                            .map_err(|_| CreateError::BadElf("segment"))?;
                        done += n as u64;
                    }
                }
                4 => {
                    let mut p = off;
                    while p + 12 <= off + filesz {
                        let namesz = u32_at(image, p)?;
                        let descsz = u32_at(image, p + 4)?;
                        let nty = u32_at(image, p + 8)?;
                        let name: [u8; 4] = rd(image, p + 12)?;
                        let desc = p + 12 + namesz.next_multiple_of(4);
                        if namesz == 4
                            && name == *b"Xen\0"
                            && nty == XEN_ELFNOTE_PHYS32_ENTRY as u64
                        {
                            entry = Some(u32_at(image, desc)? as u32);
                        }
                        p = desc + descsz.next_multiple_of(4);
                    }
                }
                _ => {}
            }
        }
        entry
            .map(|e| (e, image_end))
            .ok_or(CreateError::BadElf("no XEN_ELFNOTE_PHYS32_ENTRY note"))
    }

    /// Frees every frame: guest memory, nested page tables and the VMCB. Returns the
    /// number of frames given back.
    pub fn destroy(&mut self, fa: &mut FrameAllocator) -> u64 {
        // Only the domain's own frames in its physmap are freed there: the hypervisor's
        // (shared_info, grant frames) are freed once, below; another domain's (a grant
        // mapping: all are undone before this) never.
        let mut n = self.free_npt(fa);
        let grant_at = self.grant.at.iter_mut().map(|a| a.take());
        for (_, ram) in core::iter::once(self.shared_info_at.take())
            .chain(grant_at)
            .flatten()
        {
            fa.free(ram.0);
            n += 1;
        }
        for f in self.grant.frames.iter_mut().filter(|f| f.0 != 0) {
            fa.free(f.0);
            *f = Hpa(0);
            n += 1;
        }
        self.nr_grant_frames = 0;
        if self.shared_info.0 != 0 {
            fa.free(self.shared_info.0);
            self.shared_info = Hpa(0);
            n += 1;
        }
        for v in self.vcpus.iter_mut() {
            if v.vmcb.0 != 0 {
                fa.free(v.vmcb.0);
                v.vmcb = Hpa(0);
                n += 1;
            }
            v.state = RunState::Dead;
            v.slot = None;
        }
        n
    }
}
