//! The guest's view of an assigned function, and reset + quarantine, over the fake.
use proptest::prelude::*;
use sluice_pciback::config::*;
use sluice_pciback::fake::{qemu, FakeBus, FakeFunction};
use sluice_pciback::inventory::{describe, BarKind, Function};
use sluice_pciback::reset::{Method, ResetMachine, Step, PENDING_POLLS};
use sluice_pciback::vcfg::{BarConflict, Event, Trapped, VirtualConfig, CMD_GUEST};
use sluice_pciback::Bdf;

const RAM: [(u64, u64); 2] = [(0, 0x8000_0000), (0x1_0000_0000, 0x2_0000_0000)];
const LAPIC: [(u64, u64); 1] = [(0xfee0_0000, 0xfee0_1000)];

fn setup(f: FakeFunction) -> (FakeBus, Function, VirtualConfig) {
    let b = f.bdf;
    let mut bus = FakeBus::new(vec![f]);
    let inv = describe(&mut bus, b, None);
    let v = VirtualConfig::new(&inv, &RAM, &LAPIC, 1 << 40);
    bus.get_mut(b).writes.clear();
    (bus, inv, v)
}

const B: Bdf = Bdf::new(0, 1, 0);

#[test]
fn ids_pass_unhandled_reads_ones_and_writes_drop_once() {
    let (mut bus, _, mut v) = setup(qemu::e1000e(B));
    assert_eq!(v.read(&mut bus, 0, Width::B4), 0x10d3_8086);
    assert_eq!(v.read(&mut bus, 0x0a, Width::B2), 0x0200);
    assert_eq!(
        v.read(&mut bus, 0x0e, Width::B1),
        0,
        "single-function type-0 header"
    );
    assert_eq!(
        v.read(&mut bus, 0x100, Width::B4),
        0,
        "no extended capabilities"
    );
    assert_eq!(v.read(&mut bus, 0x104, Width::B4), u32::MAX, "AER hidden");
    assert_eq!(v.read(&mut bus, 0x30, Width::B4), 0, "ROM hidden");
    assert_eq!(v.read(&mut bus, 0x3d, Width::B1), 0, "no INTx pin");
    assert_eq!(v.read(&mut bus, 0x2, Width::B4), u32::MAX, "misaligned");
    let ev = v.write(&mut bus, 0x104, Width::B4, 0x1234);
    assert_eq!(
        ev,
        vec![Event::DroppedWrite {
            off: 0x104,
            width: 1
        }]
    );
    assert!(
        v.write(&mut bus, 0x00, Width::B4, 0).is_empty(),
        "logged once"
    );
    assert_eq!(v.dropped, 5);
    assert!(bus.get(B).writes.is_empty());
}

#[test]
fn capability_list_keeps_pm_msi_msix_pcie_and_hides_the_rest() {
    let f = FakeFunction::endpoint(B, 0x1af4, 0x1000, 0x020000)
        .cap(CAP_VENDOR, &[4, 0])
        .pm(false)
        .cap(CAP_VENDOR, &[4, 0])
        .msi(false, true, 4)
        .pcie(0, true)
        .bar(
            0,
            sluice_pciback::fake::FakeBar::Mem32 {
                size: 0x4000,
                prefetch: false,
            },
        )
        .msix(2, (0, 0x1000), (0, 0x3800))
        .ext_cap(ECAP_SRIOV, &[0; 0x3c]);
    let (mut bus, _, mut v) = setup(f);
    assert_ne!(
        v.read(&mut bus, STATUS, Width::B2) as u16 & STATUS_CAP_LIST,
        0
    );
    let mut ids = vec![];
    let mut p = v.read(&mut bus, CAP_PTR, Width::B1) as u16;
    while p != 0 && ids.len() < 64 {
        ids.push(v.read(&mut bus, p, Width::B1) as u8);
        p = v.read(&mut bus, p + 1, Width::B1) as u16;
    }
    assert_eq!(ids, vec![CAP_PM, CAP_MSI, CAP_PCIE, CAP_MSIX]);
    assert_eq!(
        v.read(&mut bus, 0x40, Width::B4),
        u32::MAX,
        "vendor-specific hidden"
    );
    assert_eq!(
        v.trapped(),
        vec![
            Trapped {
                bar: 0,
                start: 0x1000,
                end: 0x2000
            },
            Trapped {
                bar: 0,
                start: 0x3000,
                end: 0x4000
            }
        ]
    );
}

#[test]
fn guest_sizes_and_places_bars_never_over_ram_or_each_other() {
    let (mut bus, inv, mut v) = setup(qemu::nvme(B));
    // 64-bit sizing by the guest.
    v.write(&mut bus, 0x10, Width::B4, u32::MAX);
    v.write(&mut bus, 0x14, Width::B4, u32::MAX);
    assert_eq!(v.read(&mut bus, 0x10, Width::B4), 0xffff_c004);
    assert_eq!(v.read(&mut bus, 0x14, Width::B4), u32::MAX);
    // Placed over RAM: memory decode refused, the device's memory bit stays off.
    v.write(&mut bus, 0x10, Width::B4, 0x4000_0000);
    v.write(&mut bus, 0x14, Width::B4, 0);
    let ev = v.write(
        &mut bus,
        COMMAND,
        Width::B2,
        (CMD_MEMORY | CMD_MASTER).into(),
    );
    assert_eq!(
        ev,
        vec![Event::BarRefused {
            index: 0,
            guest: 0x4000_0000,
            why: BarConflict::OverlapsRam
        }]
    );
    assert_eq!(bus.get(B).get16(COMMAND), CMD_MASTER);
    assert_eq!(v.read(&mut bus, COMMAND, Width::B2) as u16 & CMD_MEMORY, 0);
    // Over the LAPIC page, then above the guest's address width.
    v.write(&mut bus, 0x10, Width::B4, 0xfee0_0000);
    let ev = v.write(&mut bus, COMMAND, Width::B2, CMD_MEMORY.into());
    assert_eq!(
        ev,
        vec![Event::BarRefused {
            index: 0,
            guest: 0xfee0_0000,
            why: BarConflict::OverlapsReserved
        }]
    );
    v.write(&mut bus, 0x14, Width::B4, 0x100);
    let ev = v.write(&mut bus, COMMAND, Width::B2, CMD_MEMORY.into());
    assert!(matches!(
        ev[..],
        [Event::BarRefused {
            why: BarConflict::OutOfRange,
            ..
        }]
    ));
    // A good place: mapped at the guest address; a BAR write while decoding is dropped.
    v.write(&mut bus, 0x14, Width::B4, 0);
    v.write(&mut bus, 0x10, Width::B4, 0xc000_0000);
    let ev = v.write(
        &mut bus,
        COMMAND,
        Width::B2,
        (CMD_MEMORY | CMD_MASTER).into(),
    );
    assert_eq!(
        ev,
        vec![Event::MapBar {
            index: 0,
            kind: BarKind::Mem64,
            guest: 0xc000_0000,
            host: inv.bars[0].addr,
            size: 0x4000
        }]
    );
    assert_eq!(bus.get(B).get16(COMMAND), CMD_MEMORY | CMD_MASTER);
    assert!(matches!(
        v.write(&mut bus, 0x10, Width::B4, 0xd000_0000)[..],
        [Event::DroppedWrite { .. }]
    ));
    assert_eq!(v.read(&mut bus, 0x10, Width::B4), 0xc000_0004);
    let ev = v.write(&mut bus, COMMAND, Width::B2, 0);
    assert_eq!(
        ev,
        vec![Event::UnmapBar {
            index: 0,
            guest: 0xc000_0000
        }]
    );
}

#[test]
fn two_bars_of_one_function_cannot_overlap() {
    let (mut bus, _, mut v) = setup(qemu::e1000e(B));
    v.write(&mut bus, 0x10, Width::B4, 0xc000_0000);
    v.write(&mut bus, 0x14, Width::B4, 0xc000_0000);
    let ev = v.write(&mut bus, COMMAND, Width::B2, CMD_MEMORY.into());
    assert!(ev.contains(&Event::BarRefused {
        index: 0,
        guest: 0xc000_0000,
        why: BarConflict::OverlapsBar(1)
    }));
    assert_eq!(bus.get(B).get16(COMMAND) & CMD_MEMORY, 0);
}

#[test]
fn command_is_filtered() {
    let (mut bus, _, mut v) = setup(qemu::edu(B));
    v.write(&mut bus, COMMAND, Width::B2, 0xffff);
    assert_eq!(bus.get(B).get16(COMMAND) & !CMD_GUEST, 0);
    assert_eq!(bus.get(B).get16(COMMAND), CMD_GUEST);
}

#[test]
fn msi_becomes_an_event_and_only_the_remapped_message_reaches_the_device() {
    let (mut bus, inv, mut v) = setup(qemu::edu(B));
    let o = inv.msi.unwrap().off;
    assert!(v.write(&mut bus, o + 4, Width::B4, 0xfee0_1000).is_empty());
    v.write(&mut bus, o + 8, Width::B4, 0);
    v.write(&mut bus, o + 0xc, Width::B2, 0x41);
    let ev = v.write(&mut bus, o + 2, Width::B2, 0x71);
    assert_eq!(
        ev,
        vec![Event::MsiEnable {
            addr: 0xfee0_1000,
            data: 0x41,
            vectors: 1
        }],
        "MME clamped to MMC"
    );
    assert!(
        bus.get(B).writes.is_empty(),
        "the guest's message never reaches the device"
    );
    assert_eq!(v.read(&mut bus, o + 4, Width::B4), 0xfee0_1000);
    v.msi_program(&mut bus, 0xfee0_0010, 0x5);
    assert_eq!(bus.get(B).get32(o + 4), 0xfee0_0010);
    assert_eq!(bus.get(B).get16(o + 0xc), 0x5);
    assert_eq!(bus.get(B).get16(o + 2) & 1, 1);
    assert_eq!(
        v.write(&mut bus, o + 2, Width::B2, 0),
        vec![Event::MsiDisable]
    );
    assert_eq!(bus.get(B).get16(o + 2) & 1, 0);
}

#[test]
fn msix_unmask_programs_and_table_accesses_are_bounded() {
    let (mut bus, inv, mut v) = setup(qemu::e1000e(B));
    let o = inv.msix.unwrap().off;
    v.write(&mut bus, o + 2, Width::B2, 0x8000);
    assert_eq!(
        bus.get(B).get16(o + 2) & 0x8000,
        0x8000,
        "enable reaches the device"
    );
    assert!(v.msix_table_write(16, Width::B4, 0xfee0_2000).is_empty());
    assert!(v.msix_table_write(24, Width::B4, 0x33).is_empty());
    assert_eq!(v.msix_table_read(28, Width::B4), 1, "masked after reset");
    assert_eq!(
        v.msix_table_write(28, Width::B4, 0),
        vec![Event::MsixUnmask {
            entry: 1,
            addr: 0xfee0_2000,
            data: 0x33
        }]
    );
    assert_eq!(
        v.msix_table_write(28, Width::B4, 1),
        vec![Event::MsixMask { entry: 1 }]
    );
    assert!(
        matches!(
            v.msix_table_write(5 * 16, Width::B4, 0)[..],
            [Event::DroppedWrite { .. }]
        ),
        "past the table"
    );
    assert_eq!(v.msix_table_read(5 * 16, Width::B4), u32::MAX);
    assert_eq!(
        v.trapped(),
        vec![
            Trapped {
                bar: 3,
                start: 0,
                end: 0x1000
            },
            Trapped {
                bar: 3,
                start: 0x2000,
                end: 0x3000
            }
        ]
    );
}

fn run(m: &mut ResetMachine, bus: &mut FakeBus) -> (Vec<Step>, sluice_pciback::reset::Outcome) {
    let mut steps = vec![];
    for _ in 0..10_000 {
        let s = m.step(bus);
        steps.push(s);
        match s {
            Step::Quarantine => return (steps, m.quarantined()),
            Step::Done(o) => return (steps, o),
            Step::Delay(_) => {}
        }
    }
    panic!("reset machine did not finish");
}

#[test]
fn flr_after_bus_master_off_and_pending_drained_then_quarantine() {
    let mut f = qemu::nvme(B);
    f.pending_reads = 3;
    f.put16(COMMAND, CMD_MEMORY | CMD_MASTER);
    f.put32(0x10, 0xc000_0004);
    let (mut bus, inv, _) = setup(f);
    let mut m = ResetMachine::new(&inv);
    let (steps, out) = run(&mut m, &mut bus);
    assert_eq!(out.method, Some(Method::Flr));
    assert!(!out.pending_timed_out);
    assert_eq!(steps.iter().filter(|s| **s == Step::Delay(10)).count(), 3);
    let d = bus.get(B);
    assert_eq!(d.flr_count, 1);
    let exp = inv.cap(CAP_PCIE).unwrap();
    let first_master_off = d
        .writes
        .iter()
        .position(|w| w.0 == COMMAND && w.2 as u16 & CMD_MASTER == 0)
        .unwrap();
    let flr = d
        .writes
        .iter()
        .position(|w| w.0 == exp + EXP_DEVCTL)
        .unwrap();
    assert!(first_master_off < flr);
    assert_eq!(d.get16(COMMAND) & (CMD_MASTER | CMD_MEMORY), 0);
    assert_eq!(d.get32(0x10), 0xc000_0004, "BARs restored after the reset");
}

#[test]
fn pending_forever_is_bounded() {
    let mut f = qemu::nvme(B);
    f.pending_reads = u32::MAX;
    let (mut bus, inv, _) = setup(f);
    let (steps, out) = run(&mut ResetMachine::new(&inv), &mut bus);
    assert!(out.pending_timed_out);
    assert_eq!(
        steps.iter().filter(|s| **s == Step::Delay(10)).count() as u32,
        PENDING_POLLS
    );
    assert_eq!(bus.get(B).flr_count, 1);
}

#[test]
fn pm_bus_and_no_reset() {
    let (mut bus, inv, _) = setup(qemu::e1000e(B));
    let (_, out) = run(&mut ResetMachine::new(&inv), &mut bus);
    assert_eq!((out.method, bus.get(B).pm_resets), (Some(Method::Pm), 1));

    let mut bus = FakeBus::new(vec![
        qemu::pcie_pci_bridge(Bdf::new(0, 4, 0), 1),
        qemu::edu(Bdf::new(1, 1, 0)),
        qemu::edu(Bdf::new(1, 2, 0)),
    ]);
    let inv = describe(&mut bus, Bdf::new(1, 1, 0), Some(Bdf::new(0, 4, 0)));
    let (_, out) = run(&mut ResetMachine::new(&inv), &mut bus);
    assert_eq!(out.method, Some(Method::Bus(Bdf::new(0, 4, 0))));
    assert_eq!(
        (
            bus.get(Bdf::new(1, 1, 0)).bus_resets,
            bus.get(Bdf::new(1, 2, 0)).bus_resets
        ),
        (1, 1)
    );
    assert_eq!(
        bus.get(Bdf::new(0, 4, 0)).get16(BRIDGE_CONTROL) & BRIDGE_CTL_BUS_RESET,
        0
    );

    let (mut bus, inv, _) = setup(qemu::edu(B));
    let (_, out) = run(&mut ResetMachine::new(&inv), &mut bus);
    assert_eq!(out.method, None, "no reset: straight to quarantine");
}

#[derive(Clone, Debug)]
enum Op {
    Read(u16, usize),
    Write(u16, usize, u32),
    Table(u64, usize, u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let w = prop_oneof![Just(1usize), Just(2), Just(4)];
    prop_oneof![
        (0u16..0x1100, w.clone()).prop_map(|(o, w)| Op::Read(o, w)),
        (0u16..0x1100, w.clone(), any::<u32>()).prop_map(|(o, w, v)| Op::Write(o, w, v)),
        (0u64..0x1000, w, any::<u32>(), any::<bool>())
            .prop_map(|(o, w, v, r)| Op::Table(o, w, v, r)),
    ]
}

proptest! {
    /// No access panics; the device sees writes only to handled registers (command,
    /// status, PCIe DevCtl, MSI mask/enable, MSI-X control) with only allowed bits
    /// changed, and reads only of handled registers.
    #[test]
    fn guest_accesses_never_reach_unhandled_registers(dev in 0..3u8, ops in proptest::collection::vec(op(), 1..200)) {
        let f = match dev { 0 => qemu::e1000e(B), 1 => qemu::nvme(B), _ => qemu::edu(B) };
        let (mut bus, inv, mut v) = setup(f);
        bus.get_mut(B).reads.clear();
        let before = bus.get(B).cfg.clone();
        for o in ops {
            match o {
                Op::Read(off, w) => { v.read(&mut bus, off, Width::from_bytes(w).unwrap()); }
                Op::Write(off, w, val) => { v.write(&mut bus, off, Width::from_bytes(w).unwrap(), val); }
                Op::Table(off, w, val, r) => {
                    if r { v.msix_table_read(off, Width::from_bytes(w).unwrap()); } else { v.msix_table_write(off, Width::from_bytes(w).unwrap(), val); }
                }
            }
        }
        let mut allowed = vec![COMMAND, STATUS];
        if let Some(e) = inv.cap(CAP_PCIE) { allowed.push(e + EXP_DEVCTL); }
        if let Some(m) = inv.msi { allowed.push(m.off + 2); }
        if let Some(m) = inv.msix { allowed.push(m.off + 2); }
        let d = bus.get(B);
        for &(off, _, _) in &d.writes {
            prop_assert!(allowed.contains(&off), "write to {:#x} reached the device", off);
        }
        // Bytes outside the allowed registers are unchanged.
        for (i, (a, b)) in before.iter().zip(d.cfg.iter()).enumerate() {
            let i = i as u16;
            if !allowed.iter().any(|&r| (r..r + 2).contains(&i)) { prop_assert_eq!(a, b, "byte {:#x} changed", i); }
        }
        prop_assert_eq!(d.get16(COMMAND) & !CMD_GUEST, u16::from_le_bytes([before[4], before[5]]) & !CMD_GUEST);
        // Reads only of handled registers: header, kept capabilities.
        let kept: Vec<(u16, u16)> = inv.caps.iter().filter(|c| matches!(c.id, CAP_PM | CAP_MSI | CAP_MSIX | CAP_PCIE)).map(|c| (c.off, c.off + 0x3c)).collect();
        for &(off, _) in &d.reads {
            prop_assert!(off < 0x40 || kept.iter().any(|&(s, e)| (s..e).contains(&off)), "read of {:#x} reached the device", off);
        }
    }
}

#[test]
fn a_capability_near_the_end_never_exposes_extended_space() {
    // PCIe capability at 0xe0 as on QEMU's real e1000e: its 0x3c bytes would run
    // into 0x100 (the AER header); also a hidden vendor capability right after PM.
    let f = FakeFunction::endpoint(B, 0x8086, 0x10d3, 0x020000)
        .pm(false)
        .cap(CAP_VENDOR, &[0x55; 6])
        .next_cap_at(0xe0)
        .pcie(0, false)
        .ext_cap(0x0001, &[0x77; 8]);
    let (mut bus, _, mut v) = setup(f);
    assert_eq!(v.read(&mut bus, 0x100, Width::B4), 0);
    assert_eq!(v.read(&mut bus, 0x104, Width::B4), u32::MAX);
    assert_eq!(v.read(&mut bus, 0xfc, Width::B4), bus.get(B).get32(0xfc));
    assert_eq!(
        v.read(&mut bus, 0x48, Width::B4),
        u32::MAX,
        "vendor capability after PM hidden"
    );
    bus.get_mut(B).reads.clear();
    v.read(&mut bus, 0x100, Width::B4);
    assert!(bus.get(B).reads.is_empty());
}

#[test]
fn waits_for_the_device_to_come_back_and_gives_up_bounded() {
    let mut f = qemu::nvme(B);
    f.ready_reads = 5;
    f.put32(0x10, 0xc000_0004);
    let (mut bus, inv, _) = setup(f);
    let (_, out) = run(&mut ResetMachine::new(&inv), &mut bus);
    assert!(!out.not_ready);
    assert_eq!(
        bus.get(B).get32(0x10),
        0xc000_0004,
        "restored once it answered"
    );

    let mut f = qemu::nvme(B);
    f.ready_reads = u32::MAX;
    let (mut bus, inv, _) = setup(f);
    let (steps, out) = run(&mut ResetMachine::new(&inv), &mut bus);
    assert!(out.not_ready);
    assert_eq!(
        steps.iter().filter(|s| **s == Step::Delay(10)).count() as u32,
        sluice_pciback::reset::READY_POLLS
    );
}

#[test]
fn a_record_less_msi_capability_is_hidden_not_a_panic() {
    let (mut bus, mut inv, _) = setup(qemu::e1000e(B));
    inv.msi = None;
    inv.msix = None;
    let mut v = VirtualConfig::new(&inv, &RAM, &LAPIC, 1 << 40);
    let mut ids = vec![];
    let mut p = v.read(&mut bus, CAP_PTR, Width::B1) as u16;
    while p != 0 && ids.len() < 64 {
        ids.push(v.read(&mut bus, p, Width::B1) as u8);
        p = v.read(&mut bus, p + 1, Width::B1) as u16;
    }
    assert_eq!(ids, vec![CAP_PM, CAP_PCIE]);
    assert!(v.trapped().is_empty());
}
