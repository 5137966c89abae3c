//! Making a domain from what the boot loader gave (its module, initrd and command line),
//! at boot and again when it reboots (Xen's `on_reboot="restart"`, the default of xl;
//! `on_reboot=destroy` on its command line opts out, as xl's option of that name).

use crate::arch::svm::Svm;
use crate::domain::{Domain, DomainSpec};
use crate::iommu::Protection;
use crate::mm::FrameAllocator;
use crate::passthrough::{self, Inventory};
use crate::{hvm, log, time, DOMAIN_MEM, MAX_DOMAIN_MIB};
use alloc::string::String;

/// Reboots of one domain slot the hypervisor carries out; the next one ends it (a guest
/// in a reboot loop cannot keep the machine busy forever).
pub const MAX_REBOOTS: u32 = 8;

/// What a domain is made from, kept for as long as the hypervisor runs.
pub struct Launch {
    /// Host-physical range of its PVH ELF image (a boot module, never handed out).
    pub image: (u64, u64),
    /// Host-physical range of its initrd module.
    pub initrd: Option<(u64, u64)>,
    /// Its module's arguments (the guest's command line).
    pub args: String,
    /// Reboots so far.
    pub reboots: u32,
}

impl Launch {
    fn word(&self, key: &str) -> Option<&str> {
        self.args.split(' ').find_map(|a| a.strip_prefix(key))
    }
    pub fn name(&self) -> &str {
        self.word("name=").unwrap_or("domU")
    }
    /// Whether a reboot of the guest makes it again (`on_reboot=destroy` says no).
    pub fn restarts(&self) -> bool {
        self.word("on_reboot=") != Some("destroy")
    }
}

/// The hypervisor's state a domain is made in.
pub struct Parts<'a> {
    pub svm: &'a Svm,
    pub fa: &'a mut FrameAllocator,
    pub protection: Option<&'a mut Protection>,
    pub inventory: &'a mut Option<Inventory>,
    /// The other domains (for the devices they hold).
    pub domains: &'a [Option<Domain>],
    pub clock: time::Clock,
}

/// Makes domain `id` from `l`: memory, image, PV console, IOMMU domain, assigned
/// devices (reset first). `None` (logged) when it cannot be made or an assignment is
/// refused; everything it took is returned then.
pub fn create(p: Parts<'_>, id: u16, l: &Launch) -> Option<Domain> {
    let args = l.args.as_str();
    let mem_bytes = l
        .word("memory=")
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(DOMAIN_MEM, |mib| mib.clamp(2, MAX_DOMAIN_MIB) << 20);
    let name = l.name();
    let spec = DomainSpec {
        name,
        image: l.image,
        mem_bytes,
        cmdline: args,
        vcpus: l.word("vcpus=").and_then(|n| n.parse().ok()).unwrap_or(1),
        initrd: l.initrd,
    };
    let mut d = match Domain::create(p.svm, p.fa, id, &spec, p.clock) {
        Ok(d) => d,
        Err(e) => {
            log!("domain {} ({}): not created: {:?}", id, name, e);
            return None;
        }
    };
    log!(
        "domain {} ({}): created, {} KiB, {} vCPU{}, cmdline '{}'",
        id,
        name,
        mem_bytes / 1024,
        d.nr_vcpus,
        if d.nr_vcpus == 1 { "" } else { "s" },
        args
    );
    log!(
        "domain {} ({}): nested page table: {} of its RAM's 2 MiB in 2 MiB leaves",
        id,
        name,
        d.large_leaves(),
    );
    // Xen gives every domain a PV console; here a domain whose command line names hvc0
    // (the test guests' port numbering stays as it was).
    if args.split(' ').any(|a| a == "console=hvc0") {
        match hvm::console_setup(&mut d) {
            Ok(()) => log!("domain {} ({}): PV console (hvc0) ring", id, name),
            Err(e) => log!("domain {} ({}): no PV console: {:?}", id, name, e),
        }
    }
    if let Some((a, b)) = l.initrd {
        log!("domain {} ({}): initrd, {} bytes", id, name, b - a);
    }
    let mut protection = p.protection;
    if let Some(prot) = protection.as_deref_mut() {
        match prot.create_domain() {
            Ok(io) => {
                log!(
                    "domain {} ({}): IOMMU domain {} (no devices assigned)",
                    id,
                    name,
                    io.first_id().unwrap_or(0)
                );
                d.iommu = Some(io);
            }
            Err(e) => log!("domain {} ({}): no IOMMU domain: {}", id, name, e),
        }
    }
    let others = p.domains;
    let taken = |b| passthrough::assigned(others, b);
    if !passthrough::assign_at_create(
        &mut d,
        args,
        protection.as_deref_mut(),
        p.inventory,
        p.fa,
        &taken,
    ) {
        if let (Some(prot), Some(io)) = (protection, d.iommu.take()) {
            prot.destroy_domain(io);
        }
        let freed = d.destroy(p.fa);
        log!(
            "domain {} ({}): not started (assignment refused), {} frames freed",
            id,
            name,
            freed
        );
        return None;
    }
    Some(d)
}
