//! Host tests of the unplug records: over a fake registry and a fake QEMU, one boot
//! after another.

use super::*;
use crate::unplug::{MAGIC, MAGIC_BLACKLISTED, PORT_MAGIC, PORT_PRODUCT};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[derive(Default)]
struct FakeReg {
    values: BTreeMap<(String, String), u32>,
    /// Values of volatile keys: gone at each boot ([`boot_once`]).
    volatile: BTreeMap<(String, String), u32>,
    /// Writes to this value fail.
    broken: Option<&'static str>,
}

impl Registry for FakeReg {
    fn read_dword(&mut self, key: &str, value: &str) -> Option<u32> {
        let k = (key.to_string(), value.to_string());
        self.values.get(&k).or(self.volatile.get(&k)).copied()
    }
    fn write_dword(&mut self, key: &str, value: &str, data: u32) -> bool {
        if self.broken == Some(value) {
            return false;
        }
        self.values
            .insert((key.to_string(), value.to_string()), data);
        true
    }
    fn write_volatile_dword(&mut self, key: &str, value: &str, data: u32) -> bool {
        if self.broken == Some(value) {
            return false;
        }
        self.volatile
            .insert((key.to_string(), value.to_string()), data);
        true
    }
}

impl FakeReg {
    fn installed(start: u32) -> Self {
        let mut r = FakeReg::default();
        r.set(&format!("{SERVICES}\\xenvbd"), "Start", start);
        r.set(&format!("{SERVICES}\\xennet"), "Start", start);
        r
    }
    fn set(&mut self, key: &str, value: &str, data: u32) {
        self.values
            .insert((key.to_string(), value.to_string()), data);
    }
    fn param(&self, value: &str) -> Option<u32> {
        self.values
            .get(&(PARAMETERS.to_string(), value.to_string()))
            .copied()
    }
}

/// QEMU's ports: the masks written, and the unconfirmed marks present at each mask
/// write (the mark must be on record before anything is unplugged).
#[derive(Default)]
struct FakeQemu {
    blacklisted: bool,
    absent: bool,
    masks: Vec<u16>,
    registered: bool,
}

impl PortIo for FakeQemu {
    fn inb(&mut self, port: u16) -> u8 {
        assert_eq!(port, PORT_PRODUCT);
        1
    }
    fn inw(&mut self, port: u16) -> u16 {
        assert_eq!(port, PORT_MAGIC);
        match (self.absent, self.blacklisted && self.registered) {
            (true, _) => 0xffff,
            (false, true) => MAGIC_BLACKLISTED,
            (false, false) => MAGIC,
        }
    }
    fn outw(&mut self, port: u16, value: u16) {
        if port == PORT_MAGIC {
            self.masks.push(value);
        }
    }
    fn outl(&mut self, _port: u16, _value: u32) {
        self.registered = true;
    }
}

fn boot_once(reg: &mut FakeReg) -> (Report, Vec<u16>) {
    boot_with(reg, FakeQemu::default())
}

/// A reboot (volatile keys gone), then xenbus' DriverEntry against `q`.
fn boot_with(reg: &mut FakeReg, mut q: FakeQemu) -> (Report, Vec<u16>) {
    reg.volatile.clear();
    let r = boot(reg, &mut q, 1);
    (r, q.masks)
}

const DISKS: u16 = mask::ALL_IDE_SCSI_DISKS | mask::NVME_DISKS;

#[test]
fn fresh_install_unplugs_nothing_and_writes_nothing() {
    let mut reg = FakeReg::installed(0);
    let before = reg.values.len();
    let (r, masks) = boot_once(&mut reg);
    assert_eq!(masks, [0]);
    assert_eq!(r.why, [Why::NotRequested; 2]);
    assert_eq!(reg.values.len(), before);
}

#[test]
fn proved_disk_is_unplugged_next_boot_and_must_be_confirmed_again() {
    let mut reg = FakeReg::installed(0);
    assert!(proved(&mut reg, Class::Disks, false));
    let (r, masks) = boot_once(&mut reg);
    assert_eq!(masks, [DISKS]);
    assert_eq!(r.why, [Why::Unplugged, Why::NotRequested]);
    assert_eq!(reg.param("UnconfirmedDisks"), Some(1));
    // xenvbd proves itself in that boot too: the next boot unplugs again.
    assert!(proved(&mut reg, Class::Disks, false));
    assert_eq!(reg.param("UnconfirmedDisks"), Some(0));
    assert_eq!(boot_once(&mut reg).1, [DISKS]);
}

#[test]
fn unconfirmed_boot_falls_back_to_emulated_and_clears_the_request() {
    let mut reg = FakeReg::installed(0);
    proved(&mut reg, Class::Disks, false);
    assert_eq!(boot_once(&mut reg).1, [DISKS]);
    // That boot's PV disk never proved itself (hung, crashed, failed silently).
    let (r, masks) = boot_once(&mut reg);
    assert_eq!(masks, [0]);
    assert_eq!(r.why[0], Why::FellBack);
    assert_eq!(reg.param("RequestDisks"), Some(0));
    // And it stays emulated until the PV driver proves itself again.
    assert_eq!(boot_once(&mut reg).1, [0]);
}

#[test]
fn a_failure_in_the_boot_wins_over_a_later_proof() {
    let mut reg = FakeReg::installed(0);
    proved(&mut reg, Class::Disks, false);
    boot_once(&mut reg);
    // One disk failed to start, another then completed I/O: no confirmation.
    assert!(failed(&mut reg, Class::Disks));
    assert!(!proved(&mut reg, Class::Disks, true));
    assert_eq!(boot_once(&mut reg).1, [0]);
}

#[test]
fn demand_start_or_missing_driver_keeps_devices_and_clears_the_request() {
    for start in [Some(3), None] {
        let mut reg = match start {
            Some(s) => FakeReg::installed(s),
            None => FakeReg::default(),
        };
        proved(&mut reg, Class::Disks, false);
        let (r, masks) = boot_once(&mut reg);
        assert_eq!(masks, [0]);
        assert_eq!(r.why[0], Why::NotBootStart);
        assert_eq!(reg.param("RequestDisks"), Some(0));
    }
}

#[test]
fn no_mark_on_record_no_unplug() {
    let mut reg = FakeReg::installed(0);
    proved(&mut reg, Class::Disks, false);
    reg.broken = Some("UnconfirmedDisks");
    let (r, masks) = boot_once(&mut reg);
    assert_eq!(masks, [0]);
    assert_eq!(r.why[0], Why::NoRecord);
}

#[test]
fn blacklist_or_no_protocol_unplugs_nothing_and_leaves_no_mark() {
    for (blacklisted, absent) in [(true, false), (false, true)] {
        let mut reg = FakeReg::installed(0);
        proved(&mut reg, Class::Disks, false);
        let q = FakeQemu {
            blacklisted,
            absent,
            ..FakeQemu::default()
        };
        let (r, masks) = boot_with(&mut reg, q);
        assert!(masks.is_empty());
        assert!(!matches!(r.outcome, Outcome::Done { .. }));
        assert_eq!(reg.param("UnconfirmedDisks"), Some(0));
        // The request stands: a later boot on a host that allows it unplugs.
        assert_eq!(boot_once(&mut reg).1, [DISKS]);
    }
}

#[test]
fn only_exactly_one_counts_as_yes() {
    for v in [0, 2, 0xffff_ffff] {
        let mut reg = FakeReg::installed(0);
        reg.set(PARAMETERS, "RequestDisks", v);
        reg.set(PARAMETERS, "RequestNics", v);
        assert_eq!(boot_once(&mut reg).1, [0]);
    }
    // An unconfirmed mark of garbage is not "confirmed": it is not 1 either, so the
    // request applies (the mark is rewritten as 1 before the unplug).
    let mut reg = FakeReg::installed(0);
    proved(&mut reg, Class::Disks, false);
    reg.set(PARAMETERS, "UnconfirmedDisks", 7);
    assert_eq!(boot_once(&mut reg).1, [DISKS]);
    assert_eq!(reg.param("UnconfirmedDisks"), Some(1));
}

#[test]
fn nics_map_to_bit_1_independently_of_disks() {
    let mut reg = FakeReg::installed(0);
    proved(&mut reg, Class::Nics, false);
    assert_eq!(boot_once(&mut reg).1, [mask::ALL_NICS]);
    proved(&mut reg, Class::Nics, false);
    proved(&mut reg, Class::Disks, false);
    assert_eq!(boot_once(&mut reg).1, [DISKS | mask::ALL_NICS]);
    // NICs unconfirmed, disks confirmed: only the NICs fall back.
    proved(&mut reg, Class::Disks, false);
    let (r, masks) = boot_once(&mut reg);
    assert_eq!(masks, [DISKS]);
    assert_eq!(r.why, [Why::Unplugged, Why::FellBack]);
}

const NICS: u16 = mask::ALL_NICS;

#[test]
fn nic_takeover_asks_in_a_plugged_boot_and_drives_only_in_an_unplugged_one() {
    // xennet is demand start (3), as NDIS miniports are.
    let mut reg = FakeReg::installed(3);
    assert_eq!(boot_once(&mut reg).1, [0]);
    // Emulated NICs present: xennet holds its vif and asks for the unplug.
    assert_eq!(nic_role(&mut reg), NicRole::Hold { requested: true });
    let (r, masks) = boot_once(&mut reg);
    assert_eq!(masks, [NICS]);
    assert_eq!(r.why[1], Why::Unplugged);
    assert_eq!(nic_role(&mut reg), NicRole::Drive);
    // A frame received confirms the boot: the next one unplugs again.
    assert!(proved(&mut reg, Class::Nics, false));
    assert_eq!(boot_once(&mut reg).1, [NICS]);
    assert_eq!(nic_role(&mut reg), NicRole::Drive);
}

#[test]
fn nic_demand_start_is_enough_but_disks_need_boot_start_and_disabled_is_refused() {
    assert!(Class::Nics.startable(Some(3)) && Class::Nics.startable(Some(0)));
    assert!(!Class::Disks.startable(Some(3)));
    for start in [Some(4), None] {
        let mut reg = match start {
            Some(s) => FakeReg::installed(s),
            None => FakeReg::default(),
        };
        assert_eq!(nic_role(&mut reg), NicRole::Hold { requested: true });
        let (r, masks) = boot_once(&mut reg);
        assert_eq!(masks, [0]);
        assert_eq!(r.why[1], Why::NotBootStart);
        assert_eq!(reg.param("RequestNics"), Some(0));
        assert!(matches!(nic_role(&mut reg), NicRole::Hold { .. }));
    }
}

#[test]
fn an_unconfirmed_nic_boot_falls_back_once_and_xennet_asks_no_more() {
    let mut reg = FakeReg::installed(3);
    nic_role(&mut reg);
    assert_eq!(boot_once(&mut reg).1, [NICS]);
    assert_eq!(nic_role(&mut reg), NicRole::Drive);
    // xennet never received a frame in that boot (or failed: request cleared).
    assert!(failed(&mut reg, Class::Nics));
    // Plugged; xennet, holding, asks again...
    assert_eq!(boot_once(&mut reg).1, [0]);
    assert_eq!(nic_role(&mut reg), NicRole::Hold { requested: true });
    // ...but the mark is still there: fallback, and the loop stops.
    let (r, masks) = boot_once(&mut reg);
    assert_eq!((r.why[1], masks), (Why::FellBack, [0].to_vec()));
    assert_eq!(reg.param("FellBackNics"), Some(1));
    assert_eq!(nic_role(&mut reg), NicRole::Hold { requested: false });
    assert_eq!(boot_once(&mut reg).1, [0]);
    // Disks leave no such mark (they must prove themselves again instead).
    assert_eq!(reg.param("FellBackDisks"), None);
}

#[test]
fn no_record_of_this_boot_reads_as_emulated_nics_present() {
    // An unplugged boot, then one where the protocol is gone and one where the
    // volatile record cannot be written: the stale "unplugged" never carries over.
    let mut reg = FakeReg::installed(3);
    nic_role(&mut reg);
    assert_eq!(boot_once(&mut reg).1, [NICS]);
    assert_eq!(nic_role(&mut reg), NicRole::Drive);
    proved(&mut reg, Class::Nics, false);
    let absent = FakeQemu {
        absent: true,
        ..FakeQemu::default()
    };
    assert!(boot_with(&mut reg, absent).1.is_empty());
    assert_eq!(nic_role(&mut reg), NicRole::Hold { requested: true });
    reg.broken = Some(UNPLUGGED);
    assert_eq!(boot_once(&mut reg).1, [NICS]);
    assert_eq!(nic_role(&mut reg), NicRole::Hold { requested: true });
}
