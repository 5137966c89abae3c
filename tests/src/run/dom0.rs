//! dom0's side of a step: the actions a guest asks dom0 for (`@@ACTION`: detach and
//! attach, backend restarts, network transfers...), typed into dom0's step script, and
//! [`dom0_run`] for plain commands in dom0's shell.

use super::limit;
use crate::error::Failure;
use crate::progress::note;
use crate::scenario::{BlockBackend, Boot, GuestStep};
use crate::serial::Machine;
use anyhow::{bail, Result};
use std::time::Duration;

/// Carries out a guest's request for a dom0 action on one of its disks (`@@ACTION TOKEN
/// VERB DISK`, printed by the guest's `dom0` shell function, which then waits): leaves
/// the guest console (Ctrl-]), types the command for dom0's step script to run,
/// reattaches, and types the answer `@@GO TOKEN rc=N` for the guest.
pub(super) fn dom0_action(
    m: &mut Machine,
    boot: &Boot,
    step_idx: usize,
    step: &GuestStep,
    token: &str,
    verb: &str,
    disk: &str,
) -> Result<()> {
    let name = &step.name;
    if let Some(cmd) = net_action(verb, disk, name) {
        return dom0_command(m, name, token, &cmd);
    }
    // Workload::NetJumbo's MTU changes and sized pings.
    if let Some(cmd) = crate::net::jumbo_action(verb, disk) {
        return dom0_command(m, name, token, &cmd);
    }
    // Workload::NetDetachAttach: the step's one vif, by its MAC.
    if let (Some(v), "vif") = (&step.vif, disk) {
        let cmd = match verb {
            "net-detach" => Some(format!(
                "xl network-detach {name} {}",
                crate::images::vif_mac(step_idx)
            )),
            "net-attach" => Some(format!(
                "xl network-attach {name} '{}'",
                crate::images::vif_spec(step_idx, v.backend)
            )),
            _ => None,
        };
        if let Some(cmd) = cmd {
            return dom0_command(m, name, token, &cmd);
        }
    }
    // Secondary consoles (Workload::SecondaryConsole): `disk` is the console number.
    if let (Some(verb), Ok(n)) = (
        match verb {
            "console-add" => Some("/sluice/bin/sluice-console-add $(xl domid NAME) N"),
            "console-rt" => Some("console_rt NAME N"),
            _ => None,
        },
        disk.parse::<u32>(),
    ) {
        let cmd = verb.replace("NAME", name).replace('N', &n.to_string());
        return dom0_command(m, name, token, &cmd);
    }
    let di = (0..step.disks.len())
        .find(|&i| crate::scenario::vdev(i) == disk)
        .ok_or_else(|| {
            Failure::Infrastructure(format!("{name}: dom0 action {verb} on unknown disk {disk}"))
        })?;
    let cmd = match verb {
        "detach" => format!("xl block-detach {name} {disk}"),
        "attach" => format!(
            "xl block-attach {name} '{}'",
            crate::images::disk_spec(step_idx, di, &step.disks[di])
        ),
        "restart-backend-midwrite" => {
            let daemons: Vec<String> = boot
                .block_daemons(step)
                .into_iter()
                .map(|d| {
                    format!(
                        "restart_midwrite {} {}",
                        d.name,
                        crate::images::daemon_args(d)
                    )
                })
                .collect();
            if daemons.len() != 1 || step.disks[di].backend != BlockBackend::Userspace {
                bail!(Failure::Infrastructure(format!(
                    "{name}: restart-backend-midwrite needs one userspace block backend daemon"
                )));
            }
            daemons.join(" && ")
        }
        "restart-backend" => {
            let daemons: Vec<String> = boot
                .block_daemons(step)
                .into_iter()
                .map(|d| {
                    format!(
                        "kill_daemon {n} && start_daemon {n} {}",
                        crate::images::daemon_args(d),
                        n = d.name
                    )
                })
                .collect();
            if daemons.is_empty() || step.disks[di].backend != BlockBackend::Userspace {
                bail!(Failure::Infrastructure(format!(
                    "{name}: restart-backend needs a userspace block backend daemon"
                )));
            }
            daemons.join(" && ")
        }
        "destroy-after-writes" => format!(
            "destroy_after_writes {name} {}",
            match step.disks[di].of {
                Some((s, k)) => crate::images::disk_serial(s, k),
                None => crate::images::disk_serial(step_idx, di),
            }
        ),
        "backend-idle" => {
            let daemons: Vec<String> = boot
                .block_daemons(step)
                .into_iter()
                .map(|d| format!("backend_idle {}", d.name))
                .collect();
            if daemons.is_empty() {
                bail!(Failure::Infrastructure(format!(
                    "{name}: backend-idle needs a userspace block backend daemon"
                )));
            }
            daemons.join(" && ")
        }
        _ => bail!(Failure::Infrastructure(format!(
            "{name}: unknown dom0 action {verb:?}"
        ))),
    };
    dom0_command(m, name, token, &cmd)
}

/// The dom0 command of a network action ([`crate::Workload::Net`]); `arg` is an address
/// or a sha256 (checked here: it is typed into dom0's shell); the transfers also get the
/// guest's name (`domain`), to stop when it is gone.
fn net_action(verb: &str, arg: &str, domain: &str) -> Option<String> {
    if !arg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.') {
        return None;
    }
    Some(match verb {
        "net-ping" => format!("ping -c 3 -W 10 {arg}"),
        "net-listen" => format!("net_listen {arg}"),
        "net-received" => format!("net_received {arg} {domain}"),
        "net-send" => format!("net_send {arg} {domain}"),
        "net-sent" => format!("net_sent {arg}"),
        "net-restart" => format!("restart_daemon {arg}"),
        _ => return None,
    })
}

/// Leaves the guest console of step `name`, runs `cmd` in dom0's step script, answers
/// the guest's action `token` with its status.
fn dom0_command(m: &mut Machine, name: &str, token: &str, cmd: &str) -> Result<()> {
    note(&format!("{name}: dom0 action: {cmd}"));
    let start = m.cursor();
    m.send_raw(b"\x1d")?;
    m.expect(
        &format!("@@DOM0-ACTION-READY {name}"),
        limit(60),
        "dom0's step script after leaving the guest console",
    )?;
    // Xen's serial input now and then garbles a typed byte under TCG (seen in CI: dom0
    // read `net_9eceived` for `net_received`): dom0 runs the line only if its checksum
    // matches (`action_or_gone`), else it answers GARBLED and the line is typed again.
    let sum = &crate::pattern::sha256_hex(cmd.as_bytes())[..16];
    for attempt in 1.. {
        m.send_line(&format!("{cmd} @@SUM {sum}"))?;
        let r = m.expect(
            &format!("@@DOM0-ACTION-(RUN|GARBLED) {name}"),
            limit(30),
            "dom0 taking the typed action",
        );
        match r {
            Ok(r) if r.group(1) == "RUN" => break,
            Err(e) if !matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) => {
                return Err(e)
            }
            _ if attempt < 4 => {
                // A lost newline leaves the line unfinished: finish it (dom0 refuses it).
                note(&format!(
                    "{name}: dom0 did not take the typed action intact; typing it again"
                ));
                m.send_line("")?;
                let _ = m.expect(
                    &format!("@@DOM0-ACTION-GARBLED {name}"),
                    limit(5),
                    "dom0 refusing the unfinished line",
                );
            }
            Ok(_) => bail!(Failure::Infrastructure(format!(
                "{name}: dom0 refused the typed action {cmd:?} {attempt} times (garbled)"
            ))),
            Err(e) => return Err(e),
        }
    }
    let r = m.expect(
        &format!(r"@@DOM0-ACTION-DONE {name} rc=(\d+)\r?\n"),
        limit(300),
        cmd,
    )?;
    let rc = r.group(1).to_string();
    m.expect(
        &format!("@@DOM0-CONSOLE-AGAIN {name}"),
        limit(60),
        "dom0 reattaching the guest console",
    )?;
    // `xl console` takes a moment to attach; what is typed before may be lost, so type
    // the answer again until the guest acknowledges it (it ignores repeats).
    for attempt in 1.. {
        std::thread::sleep(Duration::from_secs(2));
        m.send_line(&format!("@@GO {token} rc={rc}"))?;
        match m.expect(
            &format!("@@ACTION-ACK {token}"),
            limit(20),
            "guest taking dom0's answer",
        ) {
            Ok(_) => break,
            // The guest is gone (it crashed, e.g. the TCG triple fault): nobody will take
            // the answer; the step's end, left for the caller, says what happened.
            Err(e)
                if matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. }))
                    && m.text_from(start).contains(&format!("@@STEP-END {name} ")) =>
            {
                note(&format!("{name}: the guest is gone; its step ends"));
                break;
            }
            Err(e)
                if attempt < 6
                    && matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs a shell command in dom0 and returns its output. The end marker is printed with
/// printf so the echoed command line cannot match it.
pub fn dom0_run(m: &mut Machine, cmd: &str, timeout: Duration) -> Result<String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    m.send_line(&format!("{cmd}; printf '@@RC{n}%s=%d\\n' x $?"))?;
    let r = m.expect(&format!(r"@@RC{n}x=(\d+)"), timeout, cmd)?;
    // Drop the echoed command line.
    let out = r
        .before
        .split_once('\n')
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    if r.group(1) != "0" {
        bail!(Failure::Infrastructure(format!(
            "dom0 command `{cmd}` exited with {}: {out}",
            r.group(1)
        )));
    }
    Ok(out)
}
