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
//!
//! NICs differ in two ways, because a PV NIC cannot prove itself beside the emulated
//! one (both are the same vif, the same MAC on dom0's bridge: the emulated and PV paths
//! must never drive it at once). xennet asks for the unplug as soon as it loads in a
//! boot with the emulated NICs present ([`nic_role`] -> [`NicRole::Hold`]: it keeps
//! its vif unconnected and its link down in that boot), and drives the vif only in a
//! boot whose handshake unplugged the NICs ([`NicRole::Drive`]), known from a
//! **volatile** record xenbus writes at boot ([`THIS_BOOT`]: gone at the next boot, so a
//! boot that did not write it reads as "emulated NICs present"). And xennet may be
//! demand start (an NDIS miniport binds after the emulated NIC is gone, no boot device
//! depends on it): the NIC class needs its service installed and not disabled
//! (`Start` 0-3). A boot that unplugged the NICs and never saw xennet receive a frame
//! falls back as disks do and also leaves `FellBackNics` = 1, after which xennet asks
//! no more (the way back is deleting that value, INSTALL.md).

use crate::unplug::{self, mask, Outcome, PortIo, Unplug};

/// xenbus' parameters key (absolute kernel registry path).
pub const PARAMETERS: &str =
    "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\xenbus\\Parameters";
/// A volatile key (gone at the next boot) xenbus writes at each boot: value
/// [`UNPLUGGED`] = the mask this boot's handshake wrote (0 when it wrote none).
pub const THIS_BOOT: &str =
    "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\xenbus\\Parameters\\ThisBoot";
/// [`THIS_BOOT`]'s value.
pub const UNPLUGGED: &str = "Unplugged";
/// The services key; a class's driver is `<SERVICES>\<service>`, value `Start`.
pub const SERVICES: &str = "\\Registry\\Machine\\System\\CurrentControlSet\\Services";

/// REG_DWORD access to the registry (the driver's: `Zw*Key` at PASSIVE_LEVEL).
pub trait Registry {
    /// The REG_DWORD `value` of `key`; `None` if absent, of another type or unreadable.
    fn read_dword(&mut self, key: &str, value: &str) -> Option<u32>;
    /// Writes REG_DWORD `value` of `key` (creating the key); false if it failed.
    fn write_dword(&mut self, key: &str, value: &str, data: u32) -> bool;
    /// Writes REG_DWORD `value` of `key`, creating the key volatile (it and its values
    /// are gone at the next boot); false if it failed.
    fn write_volatile_dword(&mut self, key: &str, value: &str, data: u32) -> bool;
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

    /// The fell-back value's name (NICs': written by a fallback; [`nic_role`] then
    /// asks no more. Disks need a new proof instead, so theirs is never written).
    pub fn fell_back(self) -> &'static str {
        match self {
            Class::Disks => "FellBackDisks",
            Class::Nics => "FellBackNics",
        }
    }

    /// Whether the PV driver's service `Start` allows the unplug: disks need boot start
    /// (the boot volume), NICs an installed, enabled service (0-3; 4 is disabled).
    pub fn startable(self, start: Option<u32>) -> bool {
        match self {
            Class::Disks => start == Some(0),
            Class::Nics => matches!(start, Some(0..=3)),
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
    /// Requested, but its PV driver's service cannot take over ([`Class::startable`]:
    /// not boot start for disks; missing or disabled): left plugged, request cleared.
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
        } else if !c.startable(reg.read_dword(&service, "Start")) {
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
        if why[i] == Why::FellBack && c == Class::Nics {
            reg.write_dword(PARAMETERS, c.fell_back(), 1);
        }
    }
    let outcome = unplug::unplug(ports, build, want);
    let done = match outcome {
        Outcome::Done { mask, .. } => mask,
        _ => 0,
    };
    // This boot's record for the PV drivers (xennet drives its vif only if the NICs
    // are gone). A failed write leaves no record: read as "nothing unplugged".
    reg.write_volatile_dword(THIS_BOOT, UNPLUGGED, u32::from(done));
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

/// What xennet does with its vif in this boot ([`nic_role`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicRole {
    /// This boot's handshake unplugged the emulated NICs: xennet is the only path.
    Drive,
    /// The emulated NICs may be present: leave the vif unconnected, link down.
    /// `requested`: the unplug is asked for the next boot (false after a fallback,
    /// `FellBackNics` = 1, or when the request could not be written).
    Hold {
        /// The request is on record.
        requested: bool,
    },
}

/// xennet's MiniportInitializeEx (PASSIVE_LEVEL): drive the vif if this boot unplugged
/// the emulated NICs ([`THIS_BOOT`]), else hold it and ask for the unplug at the next
/// boot (unless an earlier unplugged boot fell back).
pub fn nic_role(reg: &mut impl Registry) -> NicRole {
    let unplugged = reg.read_dword(THIS_BOOT, UNPLUGGED).unwrap_or(0);
    if unplugged & u32::from(Class::Nics.mask()) != 0 {
        return NicRole::Drive;
    }
    let requested = !yes(reg.read_dword(PARAMETERS, Class::Nics.fell_back()))
        && reg.write_dword(PARAMETERS, Class::Nics.request(), 1);
    NicRole::Hold { requested }
}

#[cfg(test)]
#[path = "unplug_request_tests.rs"]
mod tests;
