//! QEMU with its serial console on a pipe, and an expect-style API over it: wait for a
//! regex with a timeout, send a line. Everything read is appended to a log file as it
//! arrives, so a hung run still leaves its console behind.
//!
//! Every wait also scans the new output for crash signatures (kernel oops, segfaults,
//! glibc heap aborts, Xen panics) and fails with [`Failure::Crash`] at once.

use crate::error::Failure;
use anyhow::{Context, Result};
use regex::bytes::Regex;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lines that mean something crashed, wherever they appear.
pub const CRASH_PATTERNS: &str = r"(?m)(Kernel panic|killed by signal: |BUG: |Oops: |general protection fault|segfault at|Segmentation fault|Illegal instruction|Bus error|Aborted|corrupted double-linked|malloc\(\)|free\(\): |double free|stack smashing|\(XEN\) \*\*\*\* Panic|\(XEN\) Xen BUG|\(XEN\) FATAL|Assertion .* failed|page allocation failure).*";

/// The QEMU command line for a Xen boot.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Uncompressed Xen (multiboot).
    pub xen: PathBuf,
    pub xen_args: String,
    pub dom0_kernel: PathBuf,
    pub dom0_args: String,
    pub dom0_initrd: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Raw images, each a virtio disk in dom0.
    pub disks: Vec<VirtioDisk>,
    /// More QEMU arguments (devices), e.g. an IOMMU and a NIC for Xen to pass through.
    pub extra: Vec<String>,
}

/// A raw image file on the host, seen by dom0 as a virtio disk.
#[derive(Debug, Clone)]
pub struct VirtioDisk {
    pub image: PathBuf,
    /// The disk's serial (dom0 links `/dev/SERIAL` to it).
    pub serial: String,
    /// Logical and physical sector size: 512 or 4096.
    pub sector_size: u32,
}

/// The CPU the test bed's QEMU gives Xen (platform.md: without -monitor Xen faults on
/// MWAIT; without -smap,-smep the PV dom0 crashes early). A benchmark that compares a
/// guest on Xen with one on Sluice runs Sluice on this CPU too.
pub const QEMU_CPU: &str = "EPYC,+svm,+npt,-monitor,-smap,-smep";

impl QemuConfig {
    pub fn command(&self) -> Result<Command> {
        for p in [&self.dom0_kernel, &self.dom0_initrd] {
            if p.to_string_lossy().contains(',') {
                // QEMU splits the multiboot module list on commas.
                anyhow::bail!("path {} contains a comma", p.display());
            }
        }
        if self.dom0_args.contains(',') {
            anyhow::bail!("dom0 arguments must not contain commas: {}", self.dom0_args);
        }
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-M", "q35", "-accel", "tcg"])
            .args(["-cpu", QEMU_CPU])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(&self.xen)
            .args(["-append", &self.xen_args])
            .arg("-initrd")
            .arg(format!(
                "{} {},{}",
                self.dom0_kernel.display(),
                self.dom0_args,
                self.dom0_initrd.display()
            ));
        // Before the disks: an IOMMU is created before the devices it translates for.
        c.args(&self.extra);
        for (i, d) in self.disks.iter().enumerate() {
            // discard=unmap: a discard that reaches dom0's disk punches a hole in the
            // image, which the host checks.
            c.arg("-drive").arg(format!(
                "file={},if=none,id=disk{i},format=raw,cache=writeback,discard=unmap",
                d.image.display()
            ));
            c.arg("-device").arg(format!(
                "virtio-blk-pci,drive=disk{i},serial={},logical_block_size={sz},physical_block_size={sz}",
                d.serial,
                sz = d.sector_size
            ));
        }
        Ok(c)
    }
}

#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    eof: bool,
}

struct Shared {
    buf: Mutex<Buffer>,
    cond: Condvar,
}

/// A running QEMU and its console.
pub struct Machine {
    child: Child,
    stdin: ChildStdin,
    shared: Arc<Shared>,
    /// Expect searches start here; a match moves it past the match.
    cursor: usize,
    /// Crash scanning has covered everything before this.
    scanned: usize,
    crash: Regex,
    log: PathBuf,
    echo: bool,
}

/// What a successful wait matched.
#[derive(Debug, Clone)]
pub struct Matched {
    /// Capture groups (index 0 is the whole match); `None` for groups that did not take part.
    pub groups: Vec<Option<String>>,
    /// Console text between the previous cursor and the start of the match.
    pub before: String,
}

impl Matched {
    pub fn group(&self, i: usize) -> &str {
        self.groups.get(i).and_then(|g| g.as_deref()).unwrap_or("")
    }
}

impl Machine {
    /// Starts QEMU; its console is appended to `log` as it arrives. With `echo`, the
    /// console is also copied to stderr (for `cargo xtask demo` and debugging).
    pub fn spawn(cfg: &QemuConfig, log: &Path, echo: bool) -> Result<Machine> {
        Machine::spawn_command(cfg.command()?, log, echo)
    }

    /// Drives any program as if it were the console (QEMU in [`Machine::spawn`]; a shell
    /// in this module's tests).
    pub fn spawn_command(mut cmd: Command, log: &Path, echo: bool) -> Result<Machine> {
        let mut logf = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        writeln!(logf, "# {cmd:?}")?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context(
                "starting qemu-system-x86_64: run `cargo xtask setup` (installs qemu-system-x86)",
            )?;
        let stdin = child.stdin.take().expect("piped");
        let shared = Arc::new(Shared {
            buf: Mutex::new(Buffer::default()),
            cond: Condvar::new(),
        });
        for (mut src, tag) in [
            (
                Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
                "",
            ),
            (
                Box::new(child.stderr.take().expect("piped")),
                "[qemu stderr] ",
            ),
        ] {
            let shared = shared.clone();
            let mut logf = logf.try_clone()?;
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match src.read(&mut chunk) {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => n,
                    };
                    let mut b = shared.buf.lock().expect("serial buffer lock");
                    if n == 0 {
                        if tag.is_empty() {
                            b.eof = true;
                        }
                        shared.cond.notify_all();
                        return;
                    }
                    let mut data = chunk[..n].to_vec();
                    if !tag.is_empty() {
                        data = [tag.as_bytes(), &data].concat();
                    }
                    // Xen's serial output uses CR LF; keep the log plain.
                    data.retain(|&c| c != b'\r');
                    let _ = logf.write_all(&data);
                    if echo {
                        let _ = std::io::stderr().write_all(&data);
                    }
                    b.data.extend_from_slice(&data);
                    shared.cond.notify_all();
                }
            });
        }
        Ok(Machine {
            child,
            stdin,
            shared,
            cursor: 0,
            scanned: 0,
            crash: Regex::new(CRASH_PATTERNS).expect("valid crash regex"),
            log: log.to_path_buf(),
            echo,
        })
    }

    /// The serial log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the console is copied to stderr.
    pub fn echoes(&self) -> bool {
        self.echo
    }

    /// Everything read so far, from byte `from`.
    pub fn text_from(&self, from: usize) -> String {
        let b = self.shared.buf.lock().expect("serial buffer lock");
        String::from_utf8_lossy(&b.data[from.min(b.data.len())..]).into_owned()
    }

    /// The current expect position.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Waits until `pattern` matches the console after the cursor, or `timeout` passes.
    /// `context` says what was being waited for (it goes into the error).
    pub fn expect(&mut self, pattern: &str, timeout: Duration, context: &str) -> Result<Matched> {
        let re = Regex::new(pattern).with_context(|| format!("bad regex {pattern}"))?;
        let deadline = Instant::now() + timeout;
        let mut b = self.shared.buf.lock().expect("serial buffer lock");
        loop {
            // Crash lines fail the wait even when the awaited marker also appeared.
            if let Some(m) = self.crash.find(&b.data[self.scanned..]) {
                let line = String::from_utf8_lossy(m.as_bytes()).trim().to_string();
                return Err(Failure::Crash(line).into());
            }
            // Re-scan the last partial line next time (a pattern may be cut mid-line).
            self.scanned = b.data[..]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(self.scanned, |p| p + 1)
                .max(self.scanned);
            if let Some(c) = re.captures(&b.data[self.cursor..]) {
                let whole = c.get(0).expect("group 0");
                let groups = c
                    .iter()
                    .map(|g| g.map(|g| String::from_utf8_lossy(g.as_bytes()).into_owned()))
                    .collect();
                let before =
                    String::from_utf8_lossy(&b.data[self.cursor..self.cursor + whole.start()])
                        .into_owned();
                self.cursor += whole.end();
                return Ok(Matched { groups, before });
            }
            if b.eof {
                return Err(Failure::QemuExited {
                    pattern: pattern.into(),
                    context: context.into(),
                }
                .into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::Timeout {
                    pattern: pattern.into(),
                    secs: timeout.as_secs(),
                    context: context.into(),
                    tail: console_tail(&b.data[self.cursor..]),
                }
                .into());
            }
            b = self
                .shared
                .cond
                .wait_timeout(b, deadline - now)
                .expect("serial buffer lock")
                .0;
        }
    }

    /// Types `line` and a newline into the console. Sent in small pieces: Xen's serial
    /// receive ring is small and dom0 drains it only when scheduled.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let data = format!("{line}\n");
        for piece in data.as_bytes().chunks(16) {
            self.stdin.write_all(piece)?;
            self.stdin.flush()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Types `bytes` as they are (no newline), e.g. the console escape Ctrl-].
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stdin.write_all(bytes)?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Waits for QEMU to exit on its own; kills it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(Failure::Infrastructure(format!(
                    "QEMU did not exit within {} s of dom0's poweroff",
                    timeout.as_secs()
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last lines of `data` (at most [`TAIL_BYTES`]), each indented, for an error message.
fn console_tail(data: &[u8]) -> String {
    const TAIL_BYTES: usize = 1500;
    let from = data.len().saturating_sub(TAIL_BYTES);
    let text = String::from_utf8_lossy(&data[from..]);
    let lines: Vec<String> = text
        .lines()
        .map(|l| format!("    | {}", l.trim_end_matches('\r')))
        .collect();
    if lines.is_empty() {
        "    | (nothing)".into()
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> (Machine, PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log =
            std::env::temp_dir().join(format!("sluice-serial-{}-{n}.log", std::process::id()));
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        (Machine::spawn_command(c, &log, false).unwrap(), log)
    }

    #[test]
    fn expect_matches_in_order_and_captures() {
        let (mut m, log) = shell("echo 'a 1'; echo 'b 2'; read x; echo \"got $x\"");
        let r = m.expect(r"b (\d)", Duration::from_secs(10), "b").unwrap();
        assert_eq!(r.group(1), "2");
        assert!(r.before.contains("a 1"));
        // The cursor moved past "b 2": "a" no longer matches.
        assert!(m
            .expect(r"a 1", Duration::from_millis(300), "a again")
            .is_err());
        m.send_line("hello").unwrap();
        m.expect("got hello", Duration::from_secs(10), "echo")
            .unwrap();
        assert!(std::fs::read_to_string(&log).unwrap().contains("got hello"));
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn timeout_and_exit_are_failures() {
        let (mut m, log) = shell("echo 'last words'; sleep 5");
        m.expect("last", Duration::from_secs(10), "l").unwrap();
        let e = m
            .expect("never", Duration::from_millis(200), "t")
            .unwrap_err();
        // The error names what the console printed after the previous match.
        assert!(
            matches!(e.downcast_ref::<Failure>(), Some(Failure::Timeout { tail, .. }) if tail.contains("|  words")),
            "{e:#}"
        );
        let (mut m2, log2) = shell("echo bye");
        let e = m2
            .expect("never", Duration::from_secs(10), "t")
            .unwrap_err();
        assert!(matches!(
            e.downcast_ref::<Failure>(),
            Some(Failure::QemuExited { .. })
        ));
        let _ = std::fs::remove_file(log);
        let _ = std::fs::remove_file(log2);
    }

    #[test]
    fn crash_lines_fail_even_when_the_marker_appears() {
        for line in [
            "[   12.1] BUG: kernel NULL pointer dereference",
            "xl[123]: segfault at 0 ip 0000 sp 0000 error 4",
            "malloc(): corrupted top size",
            "Kernel panic - not syncing: Attempted to kill init!",
            "(XEN) **** Panic on CPU 0 ****",
            "killed by signal: dd if=/x of=/y",
        ] {
            let (mut m, log) = shell(&format!("echo '{line}'; echo DONE"));
            let e = m
                .expect("DONE", Duration::from_secs(10), "done")
                .unwrap_err();
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::Crash(_))),
                "{line}: {e:#}"
            );
            let _ = std::fs::remove_file(log);
        }
    }
}
