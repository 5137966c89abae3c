//! Host tests of the image builder: `xl` configs, dom0's step scripts, validation.

use super::dom0::dom0_step;
use super::guest::GUEST_MODULES;
use super::validate::validate;
use super::xl::guest_cfg;
use crate::kernel::HostKernel;
use crate::scenario::{
    BlockBackend, Boot, ConsoleBackend, Disk, GuestStep, GuestType, NetBackend, NetFrontend,
    Workload,
};

fn step(t: GuestType, backends: &[BlockBackend]) -> GuestStep {
    GuestStep::new("g-1", t, backends, &[Workload::Pattern { disk: 0 }])
}

#[test]
fn guest_cfg_per_type_and_backend() {
    let pv = guest_cfg(2, &step(GuestType::Pv, &[BlockBackend::KernelBlkback]));
    assert!(pv.contains("type = \"pv\""));
    assert!(!pv.contains("tsc_mode"));
    assert!(pv.contains("'format=raw,vdev=xvda,access=rw,target=/dev/sluice-s2d0'"));
    let pvh = guest_cfg(
        0,
        &step(
            GuestType::Pvh,
            &[BlockBackend::KernelBlkback, BlockBackend::Userspace],
        ),
    );
    assert!(pvh.contains("type = \"pvh\""));
    assert!(pvh.contains("tsc_mode = \"native\""));
    assert!(pvh.contains(
        "'format=raw,vdev=xvdb,access=rw,backendtype=phy,script=block-userspace,target=/dev/sluice-s0d1'"
    ));
    assert!(pvh.contains("extra = \"console=hvc0 quiet sluice.step=g-1\""));
}

fn boot(steps: Vec<GuestStep>) -> Boot {
    Boot {
        name: "b".into(),
        console: ConsoleBackend::Xenconsoled,
        daemons: vec![],
        steps,
        fio_in_dom0: false,
    }
}

#[test]
fn misbehaving_backend_steps_pick_their_daemon() {
    use crate::scenario::{BackendMisbehaviour, Dom0Daemon};
    let u = BlockBackend::Userspace;
    let daemon = |n: &str| Dom0Daemon {
        name: n.into(),
        binary: "/bin/true".into(),
        args: vec!["--x".into()],
        serves_block: true,
        serves_net: false,
    };
    let bad = GuestStep::new(
        "bad",
        GuestType::Pv,
        &[u.clone(), u.clone()],
        &[
            Workload::MisbehavingBackend {
                disk: 1,
                mode: BackendMisbehaviour::Vanish,
            },
            Workload::Pattern { disk: 0 },
            Workload::UnloadFrontend,
        ],
    )
    .with_block_daemon("hostile")
    .with_blkfront_args(&["io_timeout=10"]);
    let good = GuestStep::new(
        "good",
        GuestType::Pv,
        std::slice::from_ref(&u),
        &[Workload::Pattern { disk: 0 }],
    );
    let mut b = boot(vec![bad.clone(), good.clone()]);
    b.daemons = vec![daemon("blkback"), daemon("hostile")];
    validate(&b).unwrap();
    let names = |s: &GuestStep| -> Vec<String> {
        b.block_daemons(s).iter().map(|d| d.name.clone()).collect()
    };
    assert_eq!(names(&bad), ["hostile"]);
    assert_eq!(
        names(&good),
        ["blkback"],
        "a named daemon runs only for its steps"
    );
    let script = dom0_step(&b, &bad);
    assert!(script.contains("stop_daemon blkback\n"), "{script}");
    assert!(
        script.contains("start_daemon hostile '--x' 'xvdb=vanish'\n"),
        "{script}"
    );
    let script = dom0_step(&b, &good);
    assert!(script.contains("stop_daemon hostile\n"), "{script}");
    assert!(script.contains("start_daemon blkback '--x'\n"), "{script}");
    // A misbehaving disk needs the daemon; unload comes last; the daemon must exist;
    // module arguments stay plain.
    let mut no_daemon = bad.clone();
    no_daemon.block_daemon = None;
    let mut unload_first = bad.clone();
    unload_first.workloads.rotate_right(1);
    let mut unknown = bad.clone();
    unknown.block_daemon = Some("nobody".into());
    let quoted = bad.clone().with_blkfront_args(&["x=$(reboot)"]);
    for s in [no_daemon, unload_first, unknown, quoted] {
        let mut b2 = boot(vec![s]);
        b2.daemons = vec![daemon("blkback"), daemon("hostile")];
        assert!(validate(&b2).is_err());
    }
}

#[test]
fn validation_rejects_bad_configs() {
    let ok = step(GuestType::Pv, &[BlockBackend::KernelBlkback]);
    validate(&boot(vec![ok.clone()])).unwrap();
    // Duplicate step names, bad characters, a workload on a missing disk, tiny disks.
    assert!(validate(&boot(vec![ok.clone(), ok.clone()])).is_err());
    let mut bad = ok.clone();
    bad.name = "Bad_Name".into();
    assert!(validate(&boot(vec![bad])).is_err());
    let mut nodisk = ok.clone();
    nodisk.workloads = vec![Workload::Ext4 { disk: 1 }];
    assert!(validate(&boot(vec![nodisk])).is_err());
    let mut tiny = ok.clone();
    tiny.disks = vec![Disk {
        of: None,
        size_mib: 1,
        backend: BlockBackend::KernelBlkback,
        sector_size: 512,
        readonly: false,
    }];
    assert!(validate(&boot(vec![tiny])).is_err());
    // A disk of an earlier step's: only an earlier step's own disk of the same size;
    // a guest destroyed mid-write is alone in its step, on a userspace disk.
    let u = BlockBackend::Userspace;
    let step =
        |n: &str, w: Workload| GuestStep::new(n, GuestType::Pv, std::slice::from_ref(&u), &[w]);
    let destroy = step("d", Workload::CrashDestroy { disk: 0 });
    let verify = step("v", Workload::CrashVerify { disk: 0 }).with_disk_of(0, 0, 0);
    assert!(validate(&boot(vec![destroy.clone(), verify.clone()])).is_ok());
    assert!(validate(&boot(vec![verify.clone(), destroy.clone()])).is_err());
    let mut bigger = verify.clone();
    bigger.disks[0].size_mib *= 2;
    assert!(validate(&boot(vec![destroy.clone(), bigger])).is_err());
    let mut crowded = destroy.clone();
    crowded.workloads.push(Workload::ConsoleRoundTrip);
    assert!(validate(&boot(vec![crowded])).is_err());
    let kernel = GuestStep::new(
        "k",
        GuestType::Pv,
        &[BlockBackend::KernelBlkback],
        &[Workload::CrashKill { disk: 0 }],
    );
    assert!(validate(&boot(vec![kernel])).is_err());
    let mut b = boot(vec![ok]);
    b.console = ConsoleBackend::Userspace;
    assert!(validate(&b).is_err(), "userspace console without a daemon");
}

#[test]
fn validation_keeps_workloads_apart() {
    let two = |w: &[Workload]| {
        GuestStep::new(
            "g-1",
            GuestType::Pv,
            &[BlockBackend::Userspace, BlockBackend::Userspace],
            w,
        )
    };
    let all_on_a = [
        Workload::Pattern { disk: 0 },
        Workload::Discard { disk: 0 },
        Workload::DetachAttach { disk: 0 },
        Workload::RestartBackend { disk: 0 },
        Workload::ReloadFrontend { disk: 0 },
        Workload::SectorSize { disk: 0 },
        Workload::Ext4 { disk: 1 },
    ];
    validate(&boot(vec![two(&all_on_a)])).unwrap();
    // Two writers of one region, ext4 sharing its disk, a restart of kernel blkback,
    // an odd sector size, a small disk for the 64 MiB layouts.
    let twice = [Workload::Discard { disk: 0 }, Workload::Discard { disk: 0 }];
    assert!(validate(&boot(vec![two(&twice)])).is_err());
    let shared = [
        Workload::Ext4 { disk: 1 },
        Workload::DetachAttach { disk: 1 },
    ];
    assert!(validate(&boot(vec![two(&shared)])).is_err());
    let kernel = GuestStep::new(
        "g-1",
        GuestType::Pv,
        &[BlockBackend::KernelBlkback],
        &[Workload::RestartBackend { disk: 0 }],
    );
    assert!(validate(&boot(vec![kernel])).is_err());
    assert!(validate(&boot(vec![two(&[]).with_sector_size(1, 1024)])).is_err());
    validate(&boot(vec![two(&[]).with_sector_size(1, 4096)])).unwrap();
    // Read-only disks: only non-writing workloads, and ReadOnly only on them.
    validate(&boot(vec![
        two(&[Workload::ReadOnly { disk: 1 }]).with_readonly(1)
    ]))
    .unwrap();
    assert!(validate(&boot(vec![two(&[Workload::ReadOnly { disk: 1 }])])).is_err());
    assert!(validate(&boot(vec![
        two(&[Workload::Pattern { disk: 1 }]).with_readonly(1)
    ]))
    .is_err());
    let mut small = two(&[Workload::Discard { disk: 0 }]);
    small.disks[0].size_mib = 32;
    assert!(validate(&boot(vec![small])).is_err());
}

#[test]
fn hostile_frontend_needs_a_free_userspace_disk() {
    let u = BlockBackend::Userspace;
    let hostile = |w: &[Workload]| {
        GuestStep::new("g-1", GuestType::Pv, &[u.clone(), u.clone()], w).without_blkfront_at_boot()
    };
    let ok = [
        Workload::ConsoleRoundTrip,
        Workload::HostileFrontend { disk: 0 },
        Workload::Pattern { disk: 1 },
    ];
    validate(&boot(vec![hostile(&ok)])).unwrap();
    // blkfront at boot would own the disk.
    let mut loaded = hostile(&ok);
    loaded.blkfront_at_boot = true;
    assert!(validate(&boot(vec![loaded])).is_err());
    // Another workload on its disk, or a disk workload before it.
    let shared = [
        Workload::HostileFrontend { disk: 0 },
        Workload::Pattern { disk: 0 },
    ];
    assert!(validate(&boot(vec![hostile(&shared)])).is_err());
    let late = [
        Workload::Pattern { disk: 1 },
        Workload::HostileFrontend { disk: 0 },
    ];
    assert!(validate(&boot(vec![hostile(&late)])).is_err());
    let kernel = GuestStep::new(
        "g-1",
        GuestType::Pv,
        &[BlockBackend::KernelBlkback],
        &[Workload::HostileFrontend { disk: 0 }],
    )
    .without_blkfront_at_boot();
    assert!(validate(&boot(vec![kernel])).is_err());
}

#[test]
fn regions_fit_a_64_mib_disk_and_stay_apart() {
    let total = 64 << 11;
    let ws = [
        Workload::Pattern { disk: 0 },
        Workload::Discard { disk: 0 },
        Workload::DetachAttach { disk: 0 },
        Workload::RestartBackend { disk: 0 },
        Workload::ReloadFrontend { disk: 0 },
        Workload::HostileFrontend { disk: 0 },
    ];
    let mut all: Vec<(u64, u64)> = ws.iter().flat_map(|w| w.regions(total).unwrap()).collect();
    all.sort();
    for pair in all.windows(2) {
        assert!(pair[0].0 + pair[0].1 < pair[1].0, "{all:?}");
    }
    assert!(all.iter().all(|&(s, l)| s + l <= total), "{all:?}");
}

#[test]
fn vif_lines_and_net_validation() {
    let net = |n: &str, b: NetBackend| {
        GuestStep::new(n, GuestType::Pv, &[], &[Workload::Net]).with_vif(b)
    };
    let u = guest_cfg(3, &net("u", NetBackend::Userspace));
    assert!(u.contains("vif = [ 'mac=00:16:3e:00:99:03,bridge=xenbr0,script=vif-userspace' ]"));
    assert!(!u.contains("\ndisk ="), "{u}");
    let k = guest_cfg(1, &net("k", NetBackend::Kernel));
    assert!(
        k.contains("vif = [ 'mac=00:16:3e:00:99:01,bridge=xenbr0' ]"),
        "{k}"
    );
    assert!(validate(&boot(vec![net("u", NetBackend::Userspace)])).is_ok());
    let b = boot(vec![
        net("u", NetBackend::Userspace),
        net("k", NetBackend::Kernel),
    ]);
    assert!(
        validate(&b).is_ok(),
        "kernel and userspace netback take turns in one boot"
    );
    let perf =
        |w: &[Workload]| GuestStep::new("p", GuestType::Pv, &[], w).with_vif(NetBackend::Kernel);
    let p = Workload::NetPerf { seconds: 1 };
    assert!(validate(&boot(vec![perf(&[Workload::Net, p.clone()])])).is_ok());
    assert!(validate(&boot(vec![perf(std::slice::from_ref(&p))])).is_ok());
    let mut novif = perf(&[p]);
    novif.vif = None;
    assert!(
        validate(&boot(vec![novif])).is_err(),
        "iperf3 without a vif"
    );
    let mut novif = net("n", NetBackend::Userspace);
    novif.vif = None;
    assert!(
        validate(&boot(vec![novif])).is_err(),
        "net workload without a vif"
    );
    assert!(b.has_vifs() && b.needs_kernel_netback());
    // A vif driven by a module of ours, 2 vCPUs: reload allowed, module staged.
    let ko = std::path::PathBuf::from("/x/sluice-netfront.ko");
    let mut m = GuestStep::new(
        "m",
        GuestType::Pvh,
        &[],
        &[Workload::Net, Workload::NetReloadFrontend],
    )
    .with_vif_frontend(NetBackend::Kernel, NetFrontend::Module(ko.clone()));
    m.vcpus = 2;
    assert!(validate(&boot(vec![m.clone()])).is_ok());
    assert!(guest_cfg(0, &m).contains("vcpus = 2"));
    assert_eq!(
        m.vif.as_ref().unwrap().module(),
        Some((&ko, "sluice_netfront".to_string()))
    );
    assert_eq!(
        crate::net::guest_module_path(&m).as_deref(),
        Some("/lib/modules/step-m-sluice-netfront.ko")
    );
    m.vcpus = 3;
    assert!(validate(&boot(vec![m])).is_err(), "3 vCPUs on 2 CPUs");
    let stock = GuestStep::new("s", GuestType::Pv, &[], &[Workload::NetReloadFrontend])
        .with_vif(NetBackend::Kernel);
    assert!(
        validate(&boot(vec![stock])).is_err(),
        "reloading stock xen-netfront"
    );
}

#[test]
fn blkback_loaded_only_when_a_disk_needs_it() {
    let u = boot(vec![step(GuestType::Pv, &[BlockBackend::Userspace])]);
    assert!(!u.needs_kernel_blkback());
    let k = boot(vec![
        step(GuestType::Pv, &[BlockBackend::Userspace]),
        GuestStep::new("g-2", GuestType::Pv, &[BlockBackend::KernelBlkback], &[]),
    ]);
    assert!(k.needs_kernel_blkback());
}

#[test]
fn host_kernel_modules_resolve_dependencies_first() {
    let Ok(k) = HostKernel::discover() else {
        eprintln!("no host kernel installed; nothing to resolve");
        return;
    };
    let mods = k.modules_in_load_order(GUEST_MODULES).unwrap();
    let pos = |name: &str| {
        mods.iter()
            .position(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from {mods:?}"))
    };
    assert!(pos("jbd2") < pos("ext4"));
    assert!(pos("mbcache") < pos("ext4"));
    assert!(k.modules_in_load_order(&["no-such-module"]).is_err());
}
