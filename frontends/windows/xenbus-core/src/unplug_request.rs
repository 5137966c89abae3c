//! When emulated devices may be unplugged: only at a boot after the PV driver of that
//! class proved itself on this machine, and only while the last boot that unplugged
//! them was confirmed by it.
//!
//! Records, REG_DWORDs under xenbus' `Parameters` key ([`PARAMETERS`]), per class
//! ([`Class`]: disks -> xenvbd, NICs -> xennet):
//!
//! - `Request<Class>` = 1: the PV driver connected and completed I/O in a boot with no
//!   failure of that class ([`proved`]); a failed PV start sets it to 0 ([`failed`]).
//! - `Unconfirmed<Class>` = 1: written by xenbus *before* it unplugs the class at boot;
//!   cleared by [`proved`] in that boot. Still 1 at the next boot means the last boot
//!   with the class unplugged never saw the PV driver prove itself (it failed, hung or
//!   crashed): that boot falls back to the emulated devices and the request is cleared.
//!
//! At boot ([`boot`], xenbus' DriverEntry, boot start, before the emulated storage
//! drivers bind): a class is unplugged only if requested, not unconfirmed, its PV
//! driver's service is boot start (`Start` = 0: present before the boot volume is
//! needed) and the `Unconfirmed` mark could be written first. A request that does not
//! hold is cleared (it must be earned again). dom0's blacklist and a QEMU without the
//! protocol unplug nothing, and then no mark stays behind. Values other than exactly 1
//! count as "no".

use crate::unplug::{self, mask, Outcome, PortIo, Unplug};

/// xenbus' parameters key (absolute kernel registry path).
pub const PARAMETERS: &str =
    "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\xenbus\\Parameters";
/// The services key; a class's driver is `<SERVICES>\<service>`, value `Start`.
pub const SERVICES: &str = "\\Registry\\Machine\\System\\CurrentControlSet\\Services";

/// REG_DWORD access to the registry (the driver's: `Zw*Key` at PASSIVE_LEVEL).
pub trait Registry {
    /// The REG_DWORD `value` of `key`; `None` if absent, of another type or unreadable.
    fn read_dword(&mut self, key: &str, value: &str) -> Option<u32>;
    /// Writes REG_DWORD `value` of `key` (creating the key); false if it failed.
    fn write_dword(&mut self, key: &str, value: &str, data: u32) -> bool;
}

/// A class of emulated devices with a PV replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Emulated IDE/SCSI and NVMe disks; PV driver xenvbd.
    Disks,
    /// Emulated NICs; PV driver xennet.
    Nics,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 2] = [Class::Disks, Class::Nics];

    /// Its bits of the unplug mask.
    pub fn mask(self) -> u16 {
        match self {
            Class::Disks => mask::ALL_IDE_SCSI_DISKS | mask::NVME_DISKS,
            Class::Nics => mask::ALL_NICS,
        }
    }

    /// The PV driver's service name.
    pub fn service(self) -> &'static str {
        match self {
            Class::Disks => "xenvbd",
            Class::Nics => "xennet",
        }
    }

    /// The request value's name.
    pub fn request(self) -> &'static str {
        match self {
            Class::Disks => "RequestDisks",
            Class::Nics => "RequestNics",
        }
    }

    /// The unconfirmed-boot value's name.
    pub fn unconfirmed(self) -> &'static str {
        match self {
            Class::Disks => "UnconfirmedDisks",
            Class::Nics => "UnconfirmedNics",
        }
    }

    fn set(self, u: &mut Unplug, on: bool) {
        match self {
            Class::Disks => u.disks = on,
            Class::Nics => u.nics = on,
        }
    }
}

/// What [`boot`] did with one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No request: left plugged.
    NotRequested,
    /// The last boot that unplugged it was never confirmed: left plugged, request
    /// cleared (fallback to the emulated devices).
    FellBack,
    /// Requested, but its PV driver is not boot start (or not installed): left
    /// plugged, request cleared.
    NotBootStart,
    /// The unconfirmed mark could not be written: left plugged.
    NoRecord,
    /// Asked to be unplugged (see the handshake's outcome for whether it was).
    Unplugged,
}

/// The result of [`boot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The handshake's outcome.
    pub outcome: Outcome,
    /// Per class, in [`Class::ALL`]'s order.
    pub why: [Why; 2],
}

fn yes(v: Option<u32>) -> bool {
    v == Some(1)
}

/// Decides what to unplug from the records and runs the handshake (xenbus'
/// DriverEntry, once per boot, on the platform device's fixed ports).
pub fn boot(reg: &mut impl Registry, ports: &mut impl PortIo, build: u32) -> Report {
    let mut want = Unplug::default();
    let mut why = [Why::NotRequested; 2];
    for (i, c) in Class::ALL.into_iter().enumerate() {
        if !yes(reg.read_dword(PARAMETERS, c.request())) {
            continue;
        }
        let service = alloc::format!("{SERVICES}\\{}", c.service());
        why[i] = if yes(reg.read_dword(PARAMETERS, c.unconfirmed())) {
            Why::FellBack
        } else if reg.read_dword(&service, "Start") != Some(0) {
            Why::NotBootStart
        } else if !reg.write_dword(PARAMETERS, c.unconfirmed(), 1) {
            Why::NoRecord
        } else {
            c.set(&mut want, true);
            Why::Unplugged
        };
        if matches!(why[i], Why::FellBack | Why::NotBootStart) {
            reg.write_dword(PARAMETERS, c.request(), 0);
            reg.write_dword(PARAMETERS, c.unconfirmed(), 0);
        }
    }
    let outcome = unplug::unplug(ports, build, want);
    if !matches!(outcome, Outcome::Done { .. }) {
        // Nothing was unplugged: no boot to confirm.
        for (i, c) in Class::ALL.into_iter().enumerate() {
            if why[i] == Why::Unplugged {
                reg.write_dword(PARAMETERS, c.unconfirmed(), 0);
            }
        }
    }
    Report { outcome, why }
}

/// The PV driver of `class` connected and completed I/O (PASSIVE_LEVEL): request the
/// unplug for the next boots and confirm this one, unless a device of the class failed
/// in this boot (`failed_this_boot`: the driver's own flag). The request is written
/// before the confirmation, so a crash between them reads as unconfirmed (fallback).
pub fn proved(reg: &mut impl Registry, class: Class, failed_this_boot: bool) -> bool {
    !failed_this_boot
        && reg.write_dword(PARAMETERS, class.request(), 1)
        && reg.write_dword(PARAMETERS, class.unconfirmed(), 0)
}

/// A PV device of `class` failed to start (PASSIVE_LEVEL): no unplug at the next boot.
pub fn failed(reg: &mut impl Registry, class: Class) -> bool {
    reg.write_dword(PARAMETERS, class.request(), 0)
}

#[cfg(test)]
#[path = "unplug_request_tests.rs"]
mod tests;
